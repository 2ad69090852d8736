#!/usr/bin/env python3
"""Cross-checks the chat-rendering goldens (tests/data/chat_goldens, made by make_chat_goldens.py with the
standalone jinja2 set up as transformers sets it up) against transformers' own apply_chat_template, on the GPU
machine where transformers is installed.

Usage:  python3 tests/golden/check_chat_goldens_with_transformers.py [--data tests/data] [--per-template N]

For each template of the manifest, the first N cases that render (not the template's own errors) go through
PreTrainedTokenizerFast(tokenizer_file=...).apply_chat_template(tokenize=False) with the same messages, tools,
documents, add_generation_prompt, continue_final_message and extra keywords; templates without a tokenizer of
their own borrow qwen3's vocabulary (rendering reads only the special tokens, which come from the manifest).
Templates that print today's date (strftime_now) are compared with the golden's fixed date replaced by the
date transformers rendered. Prints one line per template and exits 1 on any difference.
"""

import argparse
import copy
import datetime
import gzip
import json
import os
import sys
import tempfile

from transformers import PreTrainedTokenizerFast


def special_tokens(config):
    return {k: (v["content"] if isinstance(v, dict) else v) for k, v in config.items()}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", default=os.path.join(os.path.dirname(__file__), "..", "data"))
    parser.add_argument("--per-template", type=int, default=60)
    args = parser.parse_args()
    golden_dir = os.path.join(args.data, "chat_goldens")
    manifest = json.load(open(os.path.join(golden_dir, "manifest.json"), encoding="utf-8"))
    failures = 0
    for entry in manifest:
        tokenizer_name = entry["tokenizer"] or "qwen3.tokenizer.json.gz"
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False, encoding="utf-8") as f:
            f.write(gzip.open(os.path.join(args.data, "tokenizers", tokenizer_name), "rt", encoding="utf-8").read())
            tokenizer_file = f.name
        tokens = special_tokens(entry["config"])
        known = {k: v for k, v in tokens.items() if k in ("bos_token", "eos_token", "unk_token", "pad_token")}
        tokenizer = PreTrainedTokenizerFast(tokenizer_file=tokenizer_file, **known)
        os.unlink(tokenizer_file)
        source = open(os.path.join(args.data, "chat_templates", entry["template"]), encoding="utf-8").read()
        tokenizer.chat_template = source
        fixed = datetime.datetime(*entry["now"])
        today = datetime.datetime.now()
        checked = same = 0
        first_difference = None
        for line in open(os.path.join(golden_dir, entry["name"] + ".jsonl"), encoding="utf-8"):
            case = json.loads(line)
            if "text" not in case:
                continue
            if checked >= args.per_template:
                break
            request = copy.deepcopy(case["request"])
            messages = request.pop("messages")
            tools = request.pop("tools", None)
            documents = request.pop("documents", None)
            add_generation_prompt = request.pop("add_generation_prompt", False)
            continue_final_message = request.pop("continue_final_message", False)
            request.update(request.pop("chat_template_kwargs", {}))
            extra = {**{k: v for k, v in tokens.items() if k not in known}, **request}
            want = case["text"]
            try:
                got = tokenizer.apply_chat_template(messages, tools=tools, documents=documents,
                                                    add_generation_prompt=add_generation_prompt,
                                                    continue_final_message=continue_final_message,
                                                    tokenize=False, **extra)
            except Exception as error:  # noqa: BLE001 - any failure is a difference
                got = "<%s: %s>" % (type(error).__name__, error)
            if "strftime_now" in source and got != want:
                for fmt in ("%d %b %Y", "%Y-%m-%d", "%B %d, %Y"):
                    want = want.replace(fixed.strftime(fmt), today.strftime(fmt))
            checked += 1
            if got == want:
                same += 1
            elif first_difference is None:
                at = next((i for i, (a, b) in enumerate(zip(got, want)) if a != b), min(len(got), len(want)))
                first_difference = "at char %d: transformers %r, golden %r" % (at, got[at:at + 60], want[at:at + 60])
        failures += checked - same
        print("%s: %d of %d identical to transformers %s%s" % (
            entry["name"], same, checked, __import__("transformers").__version__,
            "" if first_difference is None else "; first difference " + first_difference))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
