"""The official `openai` SDK against ds4rs serve.

argv: TOOL_URL (scripted: reasoning, text, one bash call) TEXT_URL (scripted:
"Hello there. STOP here and more text."). Exits non-zero on any mismatch.
"""
import json
import sys

import openai

tool_url, text_url = sys.argv[1], sys.argv[2]
TOOLS = [{"type": "function", "function": {"name": "bash", "description": "Run a command",
          "parameters": {"type": "object", "properties": {"command": {"type": "string"}}}}}]
MSGS = [{"role": "user", "content": "list files"}]
ARGS = {"command": "ls -la; pwd", "timeout": 30}

tools = openai.OpenAI(base_url=tool_url + "/v1", api_key="dsv4-local")
text = openai.OpenAI(base_url=text_url + "/v1", api_key="dsv4-local")

assert [m.id for m in tools.models.list().data] == ["deepseek-v4-flash"]
assert tools.models.retrieve("deepseek-chat").id == "deepseek-chat"

r = tools.chat.completions.create(model="deepseek-v4-flash", messages=MSGS, tools=TOOLS)
c = r.choices[0]
assert c.finish_reason == "tool_calls", c
assert c.message.content == "Let me look.", c.message
assert c.message.model_extra["reasoning_content"] == "I should list files."
call = c.message.tool_calls[0]
assert call.id.startswith("call_") and call.function.name == "bash"
assert json.loads(call.function.arguments) == ARGS
assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens
assert r.usage.prompt_tokens_details.cached_tokens is not None

# Round trip: the call and its result go back; the reply is another call.
follow = MSGS + [c.message.model_dump(exclude_none=True),
                 {"role": "tool", "tool_call_id": call.id, "content": "main.rs"}]
r2 = tools.chat.completions.create(model="deepseek-v4-flash", messages=follow, tools=TOOLS)
assert r2.choices[0].finish_reason == "tool_calls"
assert r2.usage.prompt_tokens_details.cached_tokens > 0, r2.usage

stream = tools.chat.completions.create(model="deepseek-v4-flash", messages=MSGS, tools=TOOLS,
                                       stream=True, stream_options={"include_usage": True})
reasoning, content, args, names, finish, usage = "", "", "", [], None, None
for chunk in stream:
    if chunk.usage:
        usage = chunk.usage
    if not chunk.choices:
        continue
    d = chunk.choices[0].delta
    reasoning += (d.model_extra or {}).get("reasoning_content") or ""
    content += d.content or ""
    for tc in d.tool_calls or []:
        if tc.function.name:
            names.append(tc.function.name)
        args += tc.function.arguments or ""
    finish = chunk.choices[0].finish_reason or finish
assert (reasoning, content, names, finish) == ("I should list files.", "Let me look.", ["bash"], "tool_calls"), (reasoning, content, names, finish)
assert json.loads(args) == ARGS
assert usage and usage.completion_tokens > 0

r = text.chat.completions.create(model="deepseek-chat", messages=[{"role": "user", "content": "hi"}],
                                 stop=["STOP"], max_tokens=100)
assert r.choices[0].message.content == "Hello there. ", r.choices[0].message
assert r.choices[0].finish_reason == "stop"
r = text.chat.completions.create(model="deepseek-chat", messages=[{"role": "user", "content": "hi"}],
                                 max_tokens=2)
assert r.choices[0].finish_reason == "length" and r.usage.completion_tokens == 2

c = text.completions.create(model="deepseek-chat", prompt="hi", stop=["STOP"], max_tokens=50)
assert c.choices[0].text == "Hello there. " and c.choices[0].finish_reason == "stop", c
assert c.id.startswith("cmpl-")
pieces = [ch.choices[0].text for ch in
          text.completions.create(model="deepseek-chat", prompt="hi", max_tokens=50, stream=True)
          if ch.choices]
assert "".join(pieces) == "Hello there. STOP here and more text.", pieces

# Responses API: items, a tool round trip with reused prefix, streaming.
RTOOLS = [{"type": "function", "name": "bash", "description": "Run a command",
           "parameters": {"type": "object", "properties": {"command": {"type": "string"}}}}]
r = tools.responses.create(model="deepseek-v4-flash", input="list files", tools=RTOOLS,
                           reasoning={"effort": "high", "summary": "auto"})
assert r.status == "completed", r
assert [i.type for i in r.output] == ["reasoning", "message", "function_call"], r.output
assert r.output[0].summary[0].text == "I should list files."
assert r.output_text == "Let me look.", r.output_text
fc = r.output[2]
assert fc.call_id.startswith("call_") and fc.name == "bash" and fc.id.startswith("fc_")
assert json.loads(fc.arguments) == ARGS
assert r.usage.total_tokens == r.usage.input_tokens + r.usage.output_tokens
follow = ([{"role": "user", "content": "list files"}]
          + [i.model_dump(exclude_none=True) for i in r.output]
          + [{"type": "function_call_output", "call_id": fc.call_id, "output": "main.rs"}])
r2 = tools.responses.create(model="deepseek-v4-flash", input=follow, tools=RTOOLS,
                            reasoning={"summary": "auto"})
assert r2.output[-1].type == "function_call"
cached = r2.usage.input_tokens_details.cached_tokens
assert cached >= r.usage.input_tokens + r.usage.output_tokens - 1, (r.usage, r2.usage)

events = list(tools.responses.create(model="deepseek-v4-flash", input="list files",
                                     tools=RTOOLS, stream=True))
assert [e.sequence_number for e in events] == list(range(len(events)))
assert events[0].type == "response.created" and events[-1].type == "response.completed"
assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == "Let me look."
done = [e for e in events if e.type == "response.function_call_arguments.done"]
assert len(done) == 1 and json.loads(done[0].arguments) == ARGS
final = events[-1].response
assert [i.type for i in final.output] == ["message", "function_call"], final.output
assert final.usage.input_tokens > 0

try:
    tools.responses.create(model="deepseek-v4-flash", input=[
        {"type": "function_call_output", "call_id": "call_unknown", "output": "x"}])
    raise AssertionError("orphan tool output accepted")
except openai.BadRequestError as e:
    assert "continuation state is not available" in str(e), e

try:
    text.chat.completions.create(model="deepseek-chat", messages="nope")
    raise AssertionError("bad request accepted")
except openai.BadRequestError as e:
    assert e.status_code == 400 and "invalid JSON request" in str(e)
print("openai sdk ok")
