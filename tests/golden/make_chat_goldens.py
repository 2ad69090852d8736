#!/usr/bin/env python3
"""Chat-template rendering goldens: conversations rendered by Python's jinja2, set up as transformers 5.x sets
it up for apply_chat_template, for each published template under tests/data/chat_templates/.

Usage:  /usr/bin/python3 tests/golden/make_chat_goldens.py [--data tests/data] [--with-ids]

The environment is transformers' (utils/chat_template_utils.py, _compile_jinja_template and
render_jinja_template): ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
extensions=[loopcontrols]), tojson overridden by json.dumps(x, ensure_ascii=False, indent=None,
separators=None, sort_keys=False), globals raise_exception (TemplateError) and strftime_now; render() gets
messages, tools (None when absent), documents (None), add_generation_prompt (False by default), the tokenizer's
special tokens and every other keyword. continue_final_message cuts the text after the final message as
apply_chat_template does. strftime_now formats a fixed time (FIXED_NOW, local time) so that goldens do not
depend on the day they are made; the C++ test renders with the same time.

Writes:
  chat_goldens/manifest.json   [{"name", "template" (file under chat_templates/), "config" (special tokens as
                               tokenizer_config.json gives them), "tokenizer" (file under tokenizers/ or null),
                               "now" [Y, M, D, h, m, s], "jinja2_version"}]
  chat_goldens/<name>.jsonl    one case per line: {"request": {...}, "text": "..."} or {"request": ..., "error":
                               "..."} for requests the template itself rejects (raise_exception or a Python
                               error); with --with-ids also "ids" (the text encoded by the `tokenizers`
                               library, add_special_tokens=False, as apply_chat_template(tokenize=True) does).

Cases are generated deterministically (random.Random(seed per template)): with and without a system message,
one to many turns, a final user turn with and without the generation prompt, assistant prefill
(continue_final_message), tool definitions, tool calls and tool results where the template supports them,
template-specific switches (Qwen3 enable_thinking and reasoning_content, gpt-oss reasoning_effort, thinking,
builtin_tools and model_identity, Llama builtin_tools and tools_in_user_message), and unicode text.
"""

import argparse
import copy
import datetime
import json
import os
import random
import sys

import jinja2
import jinja2.ext
from jinja2.sandbox import ImmutableSandboxedEnvironment

FIXED_NOW = (2025, 3, 14, 9, 26, 53)
MIN_RENDERED = 150  # successful renderings per template

# name, template file, special tokens, tokenizer (for --with-ids), template family (what the cases exercise)
TEMPLATES = [
    ("qwen3", "qwen3.jinja", {"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"}, "qwen3", "qwen3"),
    ("qwen2_5", "qwen2_5.jinja", {"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"}, "qwen3", "qwen"),
    ("llama3_3", "llama3_3.jinja", {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"}, "llama3_1",
     "llama3"),
    ("llama3_1_lenml", "llama3_1_lenml.jinja", {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"},
     "llama3_1", "plain"),
    ("mixtral", "mixtral.jinja", {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}, None,
     "alternating"),
    ("deepseek_v3", "deepseek_v3.jinja",
     {"bos_token": {"__type": "AddedToken", "content": "<｜begin▁of▁sentence｜>"},
      "eos_token": {"__type": "AddedToken", "content": "<｜end▁of▁sentence｜>"}}, "deepseek_v3", "deepseek"),
    ("deepseek_r1", "deepseek_r1.jinja",
     {"bos_token": "<｜begin▁of▁sentence｜>", "eos_token": "<｜end▁of▁sentence｜>"}, "deepseek_v3", "deepseek"),
    ("gpt_oss", "gpt_oss.jinja", {"bos_token": "<|startoftext|>", "eos_token": "<|return|>",
                                  "pad_token": "<|endoftext|>"}, "gptoss", "gpt_oss"),
    ("phi3_5_moe", "phi3_5_moe.jinja", {"bos_token": "<s>", "eos_token": "<|endoftext|>", "unk_token": "<unk>"},
     None, "plain"),
]

TEXTS = [
    "Hello!", "What is 2 + 2?", "Tell me a joke about cats.", "Résumé of café culture, naïvely.",
    "日本語で答えてください。", "Привет, как дела?", "مرحبا بالعالم", "emoji 😀🎉👩‍💻 and flags 🇫🇷",
    "  leading and trailing spaces  ", "line one\nline two\n\nline four", "tabs\tand\\backslashes\\",
    "quotes: 'single' and \"double\"", "template-like {{ not a var }} {% if %} {# x #}", "",
    "A longer message. " * 8, "ünïcödé ∑ ∫ √ ≠ ≤", "<think>inner</think>visible", "中文和English混合",
    "Ends with newline\n", "\u00a0non-breaking\u00a0spaces\u00a0", "math: 3 < 5 && 5 > 3", "null",
]
SYSTEMS = ["You are a helpful assistant.", "Réponds en français. 🙂", "Be terse.", "  padded system  ",
           "System with\nnewlines\n"]

TOOLS = [
    {"type": "function", "function": {
        "name": "get_weather", "description": "Get the current weather for a city.",
        "parameters": {"type": "object", "properties": {
            "city": {"type": "string", "description": "City name, e.g. Paris"},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"], "description": "Unit"}},
            "required": ["city"]}}},
    {"type": "function", "function": {
        "name": "search_docs", "description": "Search the documentation — ünïcode ok.",
        "parameters": {"type": "object", "properties": {
            "query": {"type": "string"},
            "limit": {"type": "integer", "default": 5},
            "tags": {"type": "array", "items": {"type": "string"}},
            "filters": {"type": "object", "properties": {"lang": {"type": "string"}}},
            "exact": {"type": "boolean", "nullable": True}},
            "required": ["query"]}}},
    {"type": "function", "function": {
        "name": "no_args", "description": "Takes nothing.", "parameters": {"type": "object", "properties": {}}}},
]


def make_environment():
    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    def strftime_now(format):
        return datetime.datetime(*FIXED_NOW).strftime(format)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env


def special_tokens(config):
    tokens = {}
    for key, value in config.items():
        tokens[key] = value["content"] if isinstance(value, dict) else value
    return tokens


def render(compiled, config, request):
    """apply_chat_template(tokenize=False) for one request object."""
    kwargs = dict(request)
    messages = kwargs.pop("messages")
    tools = kwargs.pop("tools", None)
    documents = kwargs.pop("documents", None)
    add_generation_prompt = kwargs.pop("add_generation_prompt", False)
    continue_final_message = kwargs.pop("continue_final_message", False)
    kwargs.update(kwargs.pop("chat_template_kwargs", {}))
    template_kwargs = {**special_tokens(config), **kwargs}
    rendered = compiled.render(messages=messages, tools=tools, documents=documents,
                               add_generation_prompt=add_generation_prompt, **template_kwargs)
    if continue_final_message:
        final_message = messages[-1]["content"]
        if final_message.strip() not in rendered:
            raise ValueError("continue_final_message: the final message does not appear in the rendered chat")
        at = rendered.rindex(final_message.strip())
        # The template kept the message's trailing spacing: so does the cut (transformers 5.17 keeps "  x  "
        # as "  x  " where the template copies it verbatim; checked by check_chat_goldens_with_transformers.py).
        if rendered[at:at + len(final_message.lstrip())] == final_message.lstrip():
            rendered = rendered[:at + len(final_message.lstrip())]
        else:
            rendered = rendered[:at + len(final_message.strip())]
    return rendered


def tool_call(rng, family, index):
    tool = rng.choice(TOOLS)["function"]
    arguments = {"city": rng.choice(["Paris", "東京", "São Paulo"]), "unit": "celsius"} if tool["name"] == \
        "get_weather" else ({"query": rng.choice(TEXTS[:6]), "limit": rng.randint(1, 9)} if tool["name"] ==
                            "search_docs" else {})
    if family == "deepseek":
        arguments = json.dumps(arguments, ensure_ascii=False)  # these templates concatenate a JSON string
    call = {"type": "function", "function": {"name": tool["name"], "arguments": arguments}}
    if rng.random() < 0.5:
        call["id"] = "call_%d" % index
    return call


def make_case(rng, family, index):
    supports_tools = family in ("qwen3", "qwen", "llama3", "deepseek", "gpt_oss")
    request = {}
    messages = []
    if rng.random() < 0.5 and family != "alternating" or (family == "alternating" and rng.random() < 0.3):
        messages.append({"role": "developer" if family == "gpt_oss" and rng.random() < 0.3 else "system",
                         "content": rng.choice(SYSTEMS)})
    turns = rng.choice([1, 1, 2, 3, 4, 6])
    use_tools = supports_tools and rng.random() < 0.4
    if use_tools:
        request["tools"] = rng.sample(TOOLS, rng.randint(1, len(TOOLS)))
    for turn in range(turns):
        messages.append({"role": "user", "content": rng.choice(TEXTS)})
        last_turn = turn == turns - 1
        if last_turn:
            break
        if use_tools and rng.random() < 0.5:
            calls = [tool_call(rng, family, index * 10 + turn)]
            if family in ("qwen3", "qwen", "deepseek", "llama3") and rng.random() < 0.3:
                calls.append(tool_call(rng, family, index * 10 + turn + 5))
            if family == "deepseek" and rng.random() < 0.6:
                content = None  # DeepSeek-V3's template renders tool calls only for content None
            else:
                content = rng.choice(["", "Let me check."])
            assistant = {"role": "assistant", "content": content, "tool_calls": calls}
            if family == "gpt_oss" and assistant["content"] and rng.random() < 0.5:
                assistant["thinking"], assistant["content"] = assistant["content"], ""
            messages.append(assistant)
            for call in calls:
                result = rng.choice(['{"temperature": 21, "sky": "clear"}', "42", "résultat ✓", "no results"])
                messages.append({"role": "tool", "content": result, "tool_call_id": call.get("id", "x")})
            messages.append({"role": "assistant", "content": rng.choice(TEXTS)})
        else:
            reply = {"role": "assistant", "content": rng.choice(TEXTS)}
            if family == "qwen3" and rng.random() < 0.3:
                reply["reasoning_content"] = rng.choice(["Thinking about it…", "step 1\nstep 2", ""])
            if family == "gpt_oss" and rng.random() < 0.3:
                reply["thinking"] = "Reasoning ✓"
            messages.append(reply)
    if rng.random() < 0.05:  # two user turns in a row: templates that insist on alternation reject it
        messages.insert(len(messages) - 1, {"role": "user", "content": rng.choice(TEXTS)})
    ending = rng.random()
    if ending < 0.55:
        request["add_generation_prompt"] = True
    elif ending < 0.8:
        prefill = rng.choice(["Sure, ", "The answer is", "  spaced prefill  ", "Voilà : ", "<think>\nHmm"])
        messages.append({"role": "assistant", "content": prefill})
        request["continue_final_message"] = True
    elif ending < 0.9:
        messages.append({"role": "assistant", "content": rng.choice(TEXTS)})
    if family == "qwen3" and rng.random() < 0.5:
        if rng.random() < 0.5:
            request["enable_thinking"] = rng.random() < 0.5
        else:
            request["chat_template_kwargs"] = {"enable_thinking": rng.random() < 0.5}
    if family == "gpt_oss":
        if rng.random() < 0.5:
            request["reasoning_effort"] = rng.choice(["low", "medium", "high"])
        if rng.random() < 0.2:
            request["builtin_tools"] = rng.sample(["browser", "python"], rng.randint(1, 2))
        if rng.random() < 0.2:
            request["model_identity"] = "You are Ringmoe's test model."
    if family == "llama3":
        request["date_string"] = rng.choice(["26 Jul 2024", "14 Mar 2025"])
        if use_tools and rng.random() < 0.4:
            request["tools_in_user_message"] = False
        if rng.random() < 0.1:
            request["builtin_tools"] = ["brave_search", "wolfram_alpha"]
    request["messages"] = messages
    order = ["messages"] + [k for k in request if k != "messages"]
    return {k: request[k] for k in order}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=os.path.join(os.path.dirname(__file__), "..", "data"))
    parser.add_argument("--with-ids", action="store_true", help="also encode with the `tokenizers` library")
    args = parser.parse_args()
    env = make_environment()
    out_dir = os.path.join(args.data, "chat_goldens")
    os.makedirs(out_dir, exist_ok=True)
    manifest = []
    for seed, (name, template_file, config, tokenizer_name, family) in enumerate(TEMPLATES):
        source = open(os.path.join(args.data, "chat_templates", template_file), encoding="utf-8").read()
        compiled = env.from_string(source)
        encoder = None
        if args.with_ids and tokenizer_name:
            import gzip
            from tokenizers import Tokenizer
            path = os.path.join(args.data, "tokenizers", tokenizer_name + ".tokenizer.json.gz")
            encoder = Tokenizer.from_str(gzip.open(path, "rt", encoding="utf-8").read())
        rng = random.Random(1000 + seed)
        lines, rendered_count, error_count, index = [], 0, 0, 0
        while rendered_count < MIN_RENDERED:
            request = make_case(rng, family, index)
            index += 1
            case = {"request": request}
            try:
                case["text"] = render(compiled, config, copy.deepcopy(request))
                rendered_count += 1
                if encoder is not None:
                    case["ids"] = encoder.encode(case["text"], add_special_tokens=False).ids
            except Exception as error:  # the template (or prefill) rejects the request: a golden error case
                if error_count >= MIN_RENDERED // 5:
                    continue
                case["error"] = "%s: %s" % (type(error).__name__, error)
                error_count += 1
            lines.append(json.dumps(case, ensure_ascii=False))
        with open(os.path.join(out_dir, name + ".jsonl"), "w", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")
        manifest.append({"name": name, "template": template_file, "config": config,
                         "tokenizer": tokenizer_name + ".tokenizer.json.gz" if tokenizer_name else None,
                         "now": list(FIXED_NOW), "jinja2_version": jinja2.__version__})
        print("%s: %d rendered, %d rejected by the template" % (name, rendered_count, error_count), file=sys.stderr)
    with open(os.path.join(out_dir, "manifest.json"), "w", encoding="utf-8") as f:
        json.dump(manifest, f, ensure_ascii=False, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
