"""Shared fixtures of the Python suite: the tiny model, the built `ringmoe` binary, an open engine.

ctest (python/CMakeLists.txt) sets PYTHONPATH to the build tree's package and RINGMOE_BINARY_DIR /
RINGMOE_SOURCE_DIR; run by hand: PYTHONPATH=build/python RINGMOE_BINARY_DIR=build python3 -m pytest python/tests
"""

import json
import os
import pathlib
import subprocess

import pytest

SOURCE_DIR = pathlib.Path(os.environ.get("RINGMOE_SOURCE_DIR", pathlib.Path(__file__).resolve().parents[2]))
BINARY_DIR = pathlib.Path(os.environ.get("RINGMOE_BINARY_DIR", SOURCE_DIR / "build"))
TINY_MODEL = SOURCE_DIR / "tests/data/models/tiny-qwen3-moe"
HARDWARE = SOURCE_DIR / "bench/h200_profile.json"
# Greedy tokens must not depend on the machine's bf16 support: f32 everywhere, as the golden tests do.
ENGINE_OPTIONS = {"device": "cpu", "cpu_dtype": "f32", "threads": 2}


@pytest.fixture(scope="session")
def engine():
    import ringmoe

    return ringmoe.Engine.open(TINY_MODEL, hardware=str(HARDWARE), **ENGINE_OPTIONS)


@pytest.fixture(scope="session")
def golden():
    return json.loads((TINY_MODEL / "golden.json").read_text())


def write_jsonl(path, requests):
    path.write_text("".join(json.dumps(request) + "\n" for request in requests))


def read_jsonl(path):
    return [json.loads(line) for line in pathlib.Path(path).read_text().splitlines()]


def run_cli(*arguments):
    """Runs the built `ringmoe` binary; returns the CompletedProcess (text)."""
    return subprocess.run([str(BINARY_DIR / "ringmoe"), *map(str, arguments)], capture_output=True, text=True,
                          timeout=600)


def cli_run_file(input_path, output_path, *extra):
    done = run_cli("run", "--model", TINY_MODEL, "--input", input_path, "--output", output_path, "--no-plan",
                   "--quiet", "--device", "cpu", "--cpu-dtype", "f32", "--threads", "2", "--overwrite", *extra)
    assert done.returncode == 0, done.stderr
    return read_jsonl(output_path)


def succeeded(result):
    """Whether a result line answers its request: a failed one has an HTTP error response (400, 500, 503) or,
    when cancelled, no response and an "error" (runtime/BATCH_FORMAT.md, "Failed requests")."""
    return result["error"] is None and result["response"] is not None and result["response"]["status_code"] == 200


def token_ids(result):
    assert succeeded(result), result
    return result["response"]["body"]["choices"][0]["token_ids"]
