"""The official `anthropic` SDK against ds4rs serve.

argv: TOOL_URL TEXT_URL as in openai_sdk.py. Exits non-zero on any mismatch.
"""
import sys

import anthropic

tool_url, text_url = sys.argv[1], sys.argv[2]
TOOLS = [{"name": "bash", "description": "Run a command",
          "input_schema": {"type": "object", "properties": {"command": {"type": "string"}}}}]
MSGS = [{"role": "user", "content": "list files"}]
ARGS = {"command": "ls -la; pwd", "timeout": 30}

tools = anthropic.Anthropic(base_url=tool_url, api_key="dsv4-local")
text = anthropic.Anthropic(base_url=text_url, api_key="dsv4-local")

m = tools.messages.create(model="claude-sonnet-4-5", max_tokens=300, messages=MSGS, tools=TOOLS)
assert m.stop_reason == "tool_use", m
kinds = [b.type for b in m.content]
assert kinds == ["thinking", "text", "tool_use"], kinds
assert m.content[0].thinking == "I should list files."
assert m.content[1].text == "Let me look."
use = m.content[2]
assert use.name == "bash" and use.input == ARGS and use.id.startswith("toolu_")
assert m.usage.output_tokens > 0 and m.usage.cache_creation_input_tokens > 0

# Round trip: the tool_use and its result go back.
follow = MSGS + [{"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in m.content]},
                 {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id,
                                               "content": "main.rs"}]}]
m2 = tools.messages.create(model="claude-sonnet-4-5", max_tokens=300, messages=follow, tools=TOOLS)
assert m2.stop_reason == "tool_use"
assert m2.usage.cache_read_input_tokens > 0, m2.usage

with tools.messages.stream(model="claude-sonnet-4-5", max_tokens=300, messages=MSGS, tools=TOOLS) as s:
    events = [e.type for e in s]
    final = s.get_final_message()
assert events[0] == "message_start" and events[-1] == "message_stop", events
assert [b.type for b in final.content] == ["thinking", "text", "tool_use"]
assert final.content[0].thinking == "I should list files."
assert final.content[0].signature
assert final.content[2].input == ARGS, final.content[2]
assert final.stop_reason == "tool_use"

m = text.messages.create(model="claude-haiku", max_tokens=100, stop_sequences=["STOP"],
                         thinking={"type": "disabled"}, messages=[{"role": "user", "content": "hi"}])
assert m.stop_reason == "stop_sequence" and m.stop_sequence == "STOP", m
assert m.content[0].text == "Hello there. "
m = text.messages.create(model="claude-haiku", max_tokens=2, thinking={"type": "disabled"},
                         messages=[{"role": "user", "content": "hi"}])
assert m.stop_reason == "max_tokens" and m.usage.output_tokens == 2

try:
    text.messages.create(model="claude-haiku", max_tokens=5, messages=[{"role": 5, "content": "x"}])
    raise AssertionError("bad request accepted")
except anthropic.BadRequestError as e:
    assert e.status_code == 400 and e.body["error"]["type"] == "invalid_request_error", e.body
print("anthropic sdk ok")
