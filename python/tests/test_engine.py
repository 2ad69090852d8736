"""The Python module: open, plan, generate (greedy equal to the CLI), results as they finish, cancel, run_file
and --shard, errors as exceptions."""

import threading
import time

import pytest

import ringmoe
from conftest import (ENGINE_OPTIONS, HARDWARE, TINY_MODEL, cli_run_file, read_jsonl, run_cli, succeeded,
                      token_ids, write_jsonl)


def greedy_requests(golden, extra_text_prompts=()):
    requests = [{"custom_id": f"golden-{i}", "prompt": case["prompt_ids"], "max_tokens": golden["max_new_tokens"],
                 "temperature": 0} for i, case in enumerate(golden["prompts"])]
    for i, text in enumerate(extra_text_prompts):
        requests.append({"custom_id": f"text-{i}", "prompt": text, "max_tokens": 9, "temperature": 0})
    return requests


def test_open_reports_the_model_and_its_plan(engine):
    info = engine.info
    assert info["model_type"] == "qwen3_moe"
    assert info["device"] == "cpu"
    assert info["vocab_size"] == 1000
    assert info["has_tokenizer"]
    assert info["plan"]["device"] == "cpu"
    assert ringmoe.__version__.count(".") == 2


def test_plan_report_for_requests(engine, golden):
    report = engine.plan(greedy_requests(golden))
    assert report["workload"]["num_requests"] == len(golden["prompts"])
    assert report["device"] == "cpu"
    assert report["prediction"]["throughput"]["output_tokens_per_s"] > 0
    text = engine.plan(greedy_requests(golden), text=True)
    assert "tokens/s" in text


def test_generate_is_greedy_equal_to_the_cli(engine, golden, tmp_path):
    requests = greedy_requests(golden, ["Hello world", "The quick brown fox", "1 2 3 4"])
    write_jsonl(tmp_path / "in.jsonl", requests)
    cli = {line["custom_id"]: token_ids(line) for line in cli_run_file(tmp_path / "in.jsonl", tmp_path / "out.jsonl")}
    results = list(engine.generate(requests))
    assert sorted(result["custom_id"] for result in results) == sorted(request["custom_id"] for request in requests)
    python = {result["custom_id"]: token_ids(result) for result in results}
    assert python == cli
    # And both are the golden tokens (up to EOS) for the golden prompts.
    for i, case in enumerate(golden["prompts"]):
        assert python[f"golden-{i}"] == case["tokens"][:len(python[f"golden-{i}"])]
        assert len(python[f"golden-{i}"]) >= 1


def test_results_come_as_they_finish(engine):
    # One long request and many one-token ones: the short ones must come out while the long one still runs.
    requests = [{"custom_id": "long", "prompt": [5, 6, 7], "max_tokens": 300, "temperature": 0,
                 "ignore_eos": True}]
    requests += [{"custom_id": f"short-{i}", "prompt": [10 + i], "max_tokens": 1, "temperature": 0}
                 for i in range(8)]
    arrival = []
    for result in engine.generate(requests):
        arrival.append(result["custom_id"])
    assert arrival[-1] == "long"
    assert sorted(arrival[:-1]) == sorted(f"short-{i}" for i in range(8))


def test_first_result_arrives_before_the_job_ends(engine):
    requests = [{"custom_id": "long", "prompt": [5, 6, 7], "max_tokens": 400, "temperature": 0,
                 "ignore_eos": True},
                {"custom_id": "short", "prompt": [8], "max_tokens": 1, "temperature": 0}]
    start = time.monotonic()
    generation = engine.generate(requests)
    first = next(generation)
    first_at = time.monotonic() - start
    rest = list(generation)
    end_at = time.monotonic() - start
    assert first["custom_id"] == "short"
    assert [result["custom_id"] for result in rest] == ["long"]
    assert first_at < end_at / 2, (first_at, end_at)


def test_gil_is_released_while_the_engine_works(engine):
    # The main thread blocks in next() until the one long request ends. Only a thread that can take the GIL
    # meanwhile can cancel it; if next() held the GIL, the request would run its 1000 tokens to the end.
    requests = [{"custom_id": "long", "prompt": [5, 6, 7], "max_tokens": 1000, "temperature": 0,
                 "ignore_eos": True}]
    generation = engine.generate(requests)
    ran = threading.Event()

    def cancel_soon():
        time.sleep(0.05)
        ran.set()
        generation.cancel()

    helper = threading.Thread(target=cancel_soon)
    helper.start()
    result = next(generation)
    helper.join()
    assert ran.is_set()
    assert result["error"] is not None and result["error"]["code"] == "cancelled", result
    assert list(generation) == []


def test_cancel_ends_the_job_with_every_request_reported_once(engine):
    requests = [{"custom_id": "first", "prompt": [3], "max_tokens": 1, "temperature": 0}]
    requests += [{"custom_id": f"long-{i}", "prompt": [20 + i, 21], "max_tokens": 600, "temperature": 0,
                  "ignore_eos": True} for i in range(40)]
    generation = engine.generate(requests)
    results = [next(generation)]
    generation.cancel()
    start = time.monotonic()
    results += list(generation)
    assert time.monotonic() - start < 30
    assert sorted(r["custom_id"] for r in results) == sorted(r["custom_id"] for r in requests)
    cancelled = [r for r in results if r["error"] is not None]
    assert cancelled, "cancel stopped nothing"
    assert all(r["error"]["code"] == "cancelled" for r in cancelled)
    # The engine takes the next job as usual.
    again = list(engine.generate([{"custom_id": "after", "prompt": [3], "max_tokens": 2, "temperature": 0}]))
    assert succeeded(again[0]), again[0]


def test_cancel_from_another_thread_and_leaving_the_loop_early(engine):
    requests = [{"custom_id": f"long-{i}", "prompt": [30 + i], "max_tokens": 1000, "temperature": 0,
                 "ignore_eos": True} for i in range(20)]
    start = time.monotonic()
    generation = engine.generate(requests)
    timer = threading.Timer(0.1, engine.cancel)
    timer.start()
    results = list(generation)
    timer.join()
    assert time.monotonic() - start < 30
    assert len(results) == 20
    assert any(r["error"] is not None and r["error"]["code"] == "cancelled" for r in results)
    # Break out of the loop at the first (short) result: the long ones are cancelled, and the engine is free
    # again at once.
    short = [{"custom_id": "short", "prompt": [3], "max_tokens": 1, "temperature": 0}]
    start = time.monotonic()
    with engine.generate(short + requests) as generation:
        for first in generation:
            break
    assert first["custom_id"] == "short"
    assert generation.total == 21
    assert time.monotonic() - start < 30
    after = list(engine.generate([{"custom_id": "after", "prompt": [3], "max_tokens": 2, "temperature": 0}]))
    assert [r["custom_id"] for r in after] == ["after"] and succeeded(after[0])


def test_errors_are_exceptions(engine):
    with pytest.raises(FileNotFoundError):
        ringmoe.Engine.open(TINY_MODEL / "missing", **ENGINE_OPTIONS)
    with pytest.raises(ValueError, match="cpu_dtype"):
        ringmoe.Engine.open(TINY_MODEL, device="cpu", cpu_dtype="f16")
    with pytest.raises(ValueError, match="device"):
        ringmoe.Engine.open(TINY_MODEL, device="tpu")
    with pytest.raises(TypeError, match="no_such_option"):
        ringmoe.Engine.open(TINY_MODEL, no_such_option=1)
    with pytest.raises(ValueError, match="max_tokens"):
        engine.generate([{"custom_id": "a", "prompt": [1], "max_tokens": 0}])
    with pytest.raises(ValueError, match="custom_id 'a' also"):
        engine.generate([{"custom_id": "a", "prompt": [1]}, {"custom_id": "a", "prompt": [2]}])
    with pytest.raises(TypeError):
        engine.generate({"custom_id": "a", "prompt": [1]})
    with pytest.raises(ValueError):
        engine.plan([])
    # One job at a time per engine.
    running = engine.generate([{"custom_id": "long", "prompt": [1], "max_tokens": 300, "ignore_eos": True}])
    with pytest.raises(RuntimeError, match="already generating"):
        engine.generate([{"custom_id": "b", "prompt": [1]}])
    running.close()


def test_a_request_that_fails_alone_is_an_error_result(engine):
    results = list(engine.generate([{"custom_id": "bad", "prompt": [5000], "max_tokens": 2},
                                    {"custom_id": "good", "prompt": [5], "max_tokens": 2, "temperature": 0}]))
    by_id = {r["custom_id"]: r for r in results}
    # A request the engine rejects is an HTTP 400 in OpenAI's batch form (BATCH_FORMAT.md, "Failed requests").
    bad = by_id["bad"]
    assert bad["error"] is None and bad["response"]["status_code"] == 400, bad
    assert bad["response"]["body"]["error"]["type"] == "invalid_request_error", bad
    assert bad["response"]["body"]["error"]["code"] == "invalid_request", bad
    assert succeeded(by_id["good"]), by_id["good"]


def test_run_file_shards_and_resume_match_the_cli_shards(engine, tmp_path):
    requests = [{"custom_id": f"r{i}", "prompt": [i % 900 + 1, 7], "max_tokens": 3, "temperature": 0}
                for i in range(30)]
    write_jsonl(tmp_path / "in.jsonl", requests)
    whole = {r["custom_id"]: token_ids(r) for r in cli_run_file(tmp_path / "in.jsonl", tmp_path / "all.jsonl")}
    shards = []
    for k in range(3):
        cli = cli_run_file(tmp_path / "in.jsonl", tmp_path / f"cli-{k}.jsonl", "--shard", f"{k}/3")
        assert sorted(r["custom_id"] for r in cli) == sorted(f"r{i}" for i in range(k, 30, 3))
        summary = engine.run_file(tmp_path / "in.jsonl", tmp_path / f"py-{k}.jsonl", shard=(k, 3))
        assert summary["input_lines"] == len(cli) and summary["ran_requests"] == len(cli)
        python = read_jsonl(tmp_path / f"py-{k}.jsonl")
        assert {r["custom_id"]: token_ids(r) for r in python} == {r["custom_id"]: token_ids(r) for r in cli}
        shards += python
    assert {r["custom_id"]: token_ids(r) for r in shards} == whole
    # Resume: a file cut after 4 results and a torn line runs only the rest.
    lines = (tmp_path / "py-0.jsonl").read_text().splitlines(keepends=True)
    (tmp_path / "py-0.jsonl").write_text("".join(lines[:4]) + lines[4][:10])
    with pytest.raises(ValueError, match="resume"):
        engine.run_file(tmp_path / "in.jsonl", tmp_path / "py-0.jsonl", shard=(0, 3))
    summary = engine.run_file(tmp_path / "in.jsonl", tmp_path / "py-0.jsonl", shard=(0, 3), resume=True)
    assert summary["kept_lines"] == 4 and summary["ran_requests"] == 6
    resumed = read_jsonl(tmp_path / "py-0.jsonl")
    assert sorted(r["custom_id"] for r in resumed) == sorted(f"r{i}" for i in range(0, 30, 3))


def test_cli_rejects_a_bad_shard(tmp_path):
    write_jsonl(tmp_path / "in.jsonl", [{"custom_id": "a", "prompt": [1]}])
    done = run_cli("run", "--model", TINY_MODEL, "--input", tmp_path / "in.jsonl", "--output",
                   tmp_path / "out.jsonl", "--shard", "3/3")
    assert done.returncode == 2
    assert "--shard" in done.stderr


def test_logging_to_a_file(tmp_path):
    ringmoe.configure_logging("debug", str(tmp_path / "log.txt"))
    try:
        with pytest.raises(ValueError):
            ringmoe.configure_logging("loud")
    finally:
        ringmoe.configure_logging("info")
    assert (tmp_path / "log.txt").exists()


def test_a_cancel_at_once_stops_this_job_and_never_the_next(engine):
    requests = [{"custom_id": f"long-{i}", "prompt": [40 + i], "max_tokens": 600, "temperature": 0,
                 "ignore_eos": True} for i in range(10)]
    for _ in range(5):
        generation = engine.generate(requests)
        generation.cancel()  # before (or as) its Generate starts: still this job's
        results = list(generation)
        assert len(results) == 10
        assert all(r["error"] is not None and r["error"]["code"] == "cancelled" for r in results)
        # A cancel racing the end of a short job is consumed with it: the next job runs whole.
        short = engine.generate([{"custom_id": "s", "prompt": [3], "max_tokens": 1, "temperature": 0}])
        list(short)
        short.cancel()
        engine.cancel()
        after = list(engine.generate([{"custom_id": "after", "prompt": [3], "max_tokens": 3, "temperature": 0}]))
        assert succeeded(after[0]), after[0]


def test_a_cancelled_run_file_writes_no_line_for_what_it_stopped_and_resume_finishes_it(engine, tmp_path):
    requests = [{"custom_id": f"r{i}", "prompt": [60 + i], "max_tokens": 1 if i < 3 else 1000, "temperature": 0,
                 "ignore_eos": True} for i in range(12)]
    write_jsonl(tmp_path / "in.jsonl", requests)

    def cancel_once_the_short_ones_are_written():
        # The three one-token requests finish at the first step; the rest have ~1000 steps to go.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            path = tmp_path / "out.jsonl"
            if path.exists() and path.read_text().count("\n") >= 3:
                break
            time.sleep(0.005)
        engine.cancel()

    canceller = threading.Thread(target=cancel_once_the_short_ones_are_written)
    canceller.start()
    first = engine.run_file(tmp_path / "in.jsonl", tmp_path / "out.jsonl")
    canceller.join()
    assert first["cancelled_requests"] > 0
    written = read_jsonl(tmp_path / "out.jsonl")
    assert len(written) == 12 - first["cancelled_requests"]
    assert all(succeeded(r) for r in written)
    second = engine.run_file(tmp_path / "in.jsonl", tmp_path / "out.jsonl", resume=True)
    assert second["kept_lines"] == len(written) and second["cancelled_requests"] == 0
    assert sorted(r["custom_id"] for r in read_jsonl(tmp_path / "out.jsonl")) == sorted(r["custom_id"] for r in requests)
