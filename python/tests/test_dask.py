"""ringmoe.dask on a LocalCluster of 2 worker processes: a few thousand requests, each custom_id once in the
merged output, greedy results identical to a single-process run, also when a worker is killed mid-job."""

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time

import pytest

import ringmoe.dask
from conftest import ENGINE_OPTIONS, HARDWARE, TINY_MODEL, read_jsonl, token_ids, write_jsonl

distributed = pytest.importorskip("distributed")

REQUESTS = 2000
PARTITIONS = 4
WORKER_OPTIONS = dict(ENGINE_OPTIONS, threads=1)


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    """The input and the single-process results (the reference), computed once."""
    folder = tmp_path_factory.mktemp("dask")
    generator = random.Random(23)
    requests = [{"custom_id": f"req-{i:05d}",
                 "prompt": [generator.randrange(1, 990) for _ in range(generator.randrange(1, 9))],
                 "max_tokens": generator.randrange(1, 7), "temperature": 0} for i in range(REQUESTS)]
    # Half of the input in each of two files: ringmoe.dask takes several files as one job.
    write_jsonl(folder / "in-a.jsonl", requests[:REQUESTS // 2])
    write_jsonl(folder / "in-b.jsonl", requests[REQUESTS // 2:])
    write_jsonl(folder / "all.jsonl", requests)
    reference_engine = ringmoe.Engine.open(TINY_MODEL, **ENGINE_OPTIONS)
    reference_engine.run_file(folder / "all.jsonl", folder / "reference.jsonl")
    reference = {r["custom_id"]: token_ids(r) for r in read_jsonl(folder / "reference.jsonl")}
    assert len(reference) == REQUESTS
    return folder, [folder / "in-a.jsonl", folder / "in-b.jsonl"], reference


@pytest.fixture()
def client():
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                       dashboard_address=None)
    with distributed.Client(cluster) as connected:
        yield connected
    cluster.close()


def check_output(path, reference):
    results = read_jsonl(path)
    ids = [r["custom_id"] for r in results]
    assert len(ids) == len(set(ids)) == REQUESTS
    assert {r["custom_id"]: token_ids(r) for r in results} == reference


def test_two_workers_give_the_single_process_results(job, client):
    folder, inputs, reference = job
    summary = ringmoe.dask.run(client, TINY_MODEL, inputs, folder / "out.jsonl", work_dir=folder / "work",
                               partitions=PARTITIONS, engine_options=dict(WORKER_OPTIONS, hardware=str(HARDWARE)),
                               plan_report=True)
    check_output(folder / "out.jsonl", reference)
    assert summary["totals"]["output_lines"] == REQUESTS
    assert summary["totals"]["ran_requests"] == REQUESTS
    assert summary["totals"]["workers"] == 2
    assert all(p["executed_plan"]["device"] == "cpu" for p in summary["partitions"])
    # Each partition planned its own share; the job's prediction sums them over the workers.
    shares = [p["plan_report"]["workload"]["num_requests"] for p in summary["partitions"]]
    assert sum(shares) == REQUESTS
    durations = [p["plan_report"]["prediction"]["throughput"]["duration_s"] for p in summary["partitions"]]
    assert all(seconds > 0 for seconds in durations)
    assert summary["totals"]["predicted_job_seconds"] == pytest.approx(sum(durations) / 2)


def test_a_worker_killed_mid_job_changes_nothing(job, client):
    folder, inputs, reference = job
    work_dir = folder / "work-killed"
    outcome = {}

    def run_job():
        try:
            outcome["summary"] = ringmoe.dask.run(client, TINY_MODEL, inputs, folder / "out-killed.jsonl",
                                                  work_dir=work_dir, partitions=PARTITIONS,
                                                  engine_options=WORKER_OPTIONS)
        except BaseException as error:  # reported by the assertion below
            outcome["error"] = error

    runner = threading.Thread(target=run_job)
    runner.start()
    pids = client.run(os.getpid)
    share = REQUESTS // PARTITIONS
    victim = None
    deadline = time.monotonic() + 300
    while victim is None and runner.is_alive() and time.monotonic() < deadline:
        # A partition part-way through (some results written, not all) and the worker running it.
        for index in range(PARTITIONS):
            path = ringmoe.dask.partition_path(str(work_dir), index, PARTITIONS)
            written = open(path).read().count("\n") if os.path.exists(path) else 0
            if 0 < written < share // 2:
                for address, keys in client.processing().items():
                    if any(str(key).startswith(f"ringmoe-partition-{index}-") for key in keys):
                        victim = (index, address, pids[address])
                break
        time.sleep(0.02)
    assert victim is not None, "no partition was caught part-way through"
    index, _, pid = victim
    os.kill(pid, signal.SIGKILL)
    runner.join(600)
    assert "error" not in outcome, outcome.get("error")
    check_output(folder / "out-killed.jsonl", reference)
    retried = outcome["summary"]["partitions"][index]
    assert retried["worker_pid"] != pid
    assert retried["kept_lines"] > 0  # resumed: the results written before the kill were kept
    assert outcome["summary"]["totals"]["output_lines"] == REQUESTS


def test_command_line(job, tmp_path):
    folder, inputs, reference = job
    done = subprocess.run([sys.executable, "-m", "ringmoe.dask", "--model", str(TINY_MODEL), "--input",
                           *map(str, inputs), "--output", str(tmp_path / "out.jsonl"), "--work-dir",
                           str(tmp_path / "work"), "--local-workers", "2", "--partitions", "3",
                           "--engine-options", json.dumps(WORKER_OPTIONS)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    totals = json.loads(done.stdout)
    assert totals["output_lines"] == REQUESTS
    check_output(tmp_path / "out.jsonl", reference)
