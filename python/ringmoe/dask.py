"""ringmoe.dask: one batch job over a Dask distributed cluster.

    from dask.distributed import Client
    import ringmoe.dask
    client = Client("scheduler:8786")                 # or LocalCluster(...); one worker per GPU or server
    summary = ringmoe.dask.run(client, "models/Qwen3-30B-A3B", "requests.jsonl", "results.jsonl",
                               work_dir="/shared/job1", engine_options={"device": "gpu"})

The input (one JSONL file, or several, taken in order as one) is split into `partitions` shards with the rule
of `ringmoe run --shard K/N`: partition K holds the lines whose index (0-based, non-blank lines) modulo N is K.
Each partition is one Dask task: the worker opens an engine once (kept for its later partitions) and runs its
share with the CLI's output rules into work_dir/part-K-of-N.jsonl, appending each result as it finishes. A
task that is retried (its worker was killed, say) resumes that file: the results it holds are kept and only the
rest run. When every partition is done, the partition files are merged into `output`, each custom_id exactly
once, and the merge is checked against the input. `work_dir` must be a folder every worker and the client see
(a shared filesystem); rerunning run() with the same work_dir resumes the whole job.

The summary holds each partition's counts and the executed plan of the engine that ran it, and the totals;
with plan_report=True each partition also plans its share (engine.plan: needs a hardware profile in
engine_options["hardware"] or cached on the worker) and the predictions are summed.
"""

import hashlib
import json
import os
import threading

__all__ = ["run", "merge_outputs", "partition_path"]

_engines = {}
_engines_lock = threading.Lock()


def partition_path(work_dir, index, count):
    return os.path.join(work_dir, f"part-{index:05d}-of-{count:05d}.jsonl")


def _engine_for(model_dir, engine_options):
    """The worker process's engine for this model and these options, opened on first use. The lock beside it
    runs one partition at a time per engine (an engine runs one batch at a time)."""
    import ringmoe

    key = (model_dir, json.dumps(engine_options, sort_keys=True))
    with _engines_lock:
        if key not in _engines:
            _engines[key] = (ringmoe.Engine.open(model_dir, **engine_options), threading.Lock())
        return _engines[key]


def _read_shard_requests(input_path, index, count):
    with open(input_path, encoding="utf-8") as lines:
        requests = [line for line in lines if line.strip()]
    return [json.loads(line) for line in requests[index::count]]


def _run_partition(model_dir, engine_options, input_path, work_dir, index, count, plan_report):
    engine, lock = _engine_for(model_dir, engine_options)
    with lock:
        summary = engine.run_file(input_path, partition_path(work_dir, index, count), shard=(index, count),
                                  resume=True)
        summary["partition"] = index
        summary["worker_pid"] = os.getpid()
        summary["executed_plan"] = engine.info["plan"]
        if plan_report:
            requests = _read_shard_requests(input_path, index, count)
            summary["plan_report"] = engine.plan(requests) if requests else None
    return summary


def _combined_input(inputs, work_dir):
    """One input file: the only one given, or the given files concatenated (in order) into work_dir."""
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    inputs = [os.fspath(path) for path in inputs]
    if not inputs:
        raise ValueError("no input files")
    for path in inputs:
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{path}: no such input file")
    if len(inputs) == 1:
        return os.path.abspath(inputs[0])
    combined = os.path.join(work_dir, "input.jsonl")
    temporary = combined + ".tmp"
    with open(temporary, "wb") as out:
        for path in inputs:
            with open(path, "rb") as part:
                data = part.read()
            out.write(data)
            if data and not data.endswith(b"\n"):
                out.write(b"\n")
    # The same inputs give the same file, so partitions of an earlier run resume against the same lines.
    os.replace(temporary, combined)
    return combined


def merge_outputs(input_path, work_dir, count, output):
    """Merges the partition files into `output` (written whole, then renamed into place), checking that every
    input line has exactly one result: each custom_id once, or once per line where the input repeats it (the
    repeats are error lines). Returns the number of lines written."""
    with open(input_path, encoding="utf-8") as lines:
        expected = sum(1 for line in lines if line.strip())
    seen = set()
    written = 0
    temporary = os.fspath(output) + ".tmp"
    with open(temporary, "w", encoding="utf-8") as out:
        for index in range(count):
            with open(partition_path(work_dir, index, count), encoding="utf-8") as part:
                for line in part:
                    if not line.endswith("\n"):
                        raise RuntimeError(f"partition {index} ends with a cut line: it did not finish")
                    result = json.loads(line)
                    # The output id ends with the input line number: tells a repeated custom_id's lines apart.
                    key = (result["custom_id"], result["id"].rsplit("_", 1)[-1])
                    if key in seen:
                        raise RuntimeError(f"custom_id {result['custom_id']!r} has two results (partition {index})")
                    seen.add(key)
                    out.write(line)
                    written += 1
        out.flush()
        os.fsync(out.fileno())
    if written != expected:
        os.unlink(temporary)
        raise RuntimeError(f"the partitions hold {written} results for {expected} input lines")
    os.replace(temporary, output)
    return written


def run(client, model_dir, inputs, output, *, work_dir, partitions=None, engine_options=None, retries=3,
        plan_report=False):
    """Runs the batch job in `inputs` over the cluster of `client` and writes every result to `output`.

    partitions: how many shards (default: 4 per worker, so a retried one is a small share). engine_options:
    keyword arguments of ringmoe.Engine.open for every worker (device, threads, hardware, plan pins, ...).
    retries: how often Dask may rerun a failed partition (a killed worker's partitions are rerun anyway).
    Returns {"partitions": [per-partition summaries], "totals": {...}, "output": output}."""
    from dask.distributed import wait

    engine_options = dict(engine_options or {})
    os.makedirs(work_dir, exist_ok=True)
    work_dir = os.path.abspath(work_dir)
    model_dir = os.path.abspath(os.fspath(model_dir))
    input_path = _combined_input(inputs, work_dir)
    if partitions is None:
        workers = len(client.scheduler_info().get("workers", {}))
        partitions = max(1, 4 * workers)
    if partitions < 1:
        raise ValueError("partitions must be >= 1")
    # Keys name the job (its work_dir and input), so two jobs on one cluster never share a task.
    job = hashlib.sha1(f"{work_dir}\0{input_path}\0{model_dir}".encode()).hexdigest()[:12]
    futures = [
        client.submit(_run_partition, model_dir, engine_options, input_path, work_dir, index, partitions,
                      plan_report, key=f"ringmoe-partition-{index}-of-{partitions}-{job}", pure=False,
                      retries=retries)
        for index in range(partitions)
    ]
    wait(futures)
    summaries = client.gather(futures)
    lines = merge_outputs(input_path, work_dir, partitions, output)
    totals = {name: sum(summary[name] for summary in summaries)
              for name in ("input_lines", "kept_lines", "ran_requests", "bad_lines", "failed_requests",
                           "prompt_tokens", "generated_tokens")}
    totals["output_lines"] = lines
    totals["workers"] = len({summary["worker_pid"] for summary in summaries})
    if plan_report:
        # Each partition's prediction is for an engine running it alone; the workers run theirs side by side.
        durations = [s["plan_report"]["prediction"]["throughput"]["duration_s"]
                     for s in summaries if s.get("plan_report")]
        totals["predicted_partition_seconds_sum"] = sum(durations)
        totals["predicted_job_seconds"] = sum(durations) / max(1, totals["workers"])
    return {"partitions": summaries, "totals": totals, "output": os.fspath(output)}


def main(argv=None):
    """python3 -m ringmoe.dask: run() from the command line, on a scheduler (--scheduler ADDRESS) or on a
    LocalCluster of --local-workers processes. Prints the summary's totals as JSON."""
    import argparse

    parser = argparse.ArgumentParser(prog="python3 -m ringmoe.dask", description=run.__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, help="model folder")
    parser.add_argument("--input", required=True, nargs="+", help="request JSONL file(s), taken in order")
    parser.add_argument("--output", required=True, help="the merged results")
    parser.add_argument("--work-dir", required=True, help="partition files; shared by every worker")
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--scheduler", help="address of a running Dask scheduler (tcp://host:8786)")
    where.add_argument("--local-workers", type=int, help="start a LocalCluster of this many worker processes")
    parser.add_argument("--partitions", type=int, help="default: 4 per worker")
    parser.add_argument("--engine-options", default="{}",
                        help='JSON object of ringmoe.Engine.open options, e.g. \'{"device": "gpu"}\'')
    arguments = parser.parse_args(argv)
    from dask.distributed import Client, LocalCluster

    engine_options = json.loads(arguments.engine_options)
    if arguments.scheduler:
        client = Client(arguments.scheduler)
        cluster = None
    else:
        cluster = LocalCluster(n_workers=arguments.local_workers, threads_per_worker=1, processes=True,
                               dashboard_address=None)
        client = Client(cluster)
    try:
        summary = run(client, arguments.model, arguments.input, arguments.output, work_dir=arguments.work_dir,
                      partitions=arguments.partitions, engine_options=engine_options)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    print(json.dumps(summary["totals"], indent=1))
    return 0


if __name__ == "__main__":
    # Through the imported module, so that tasks name ringmoe.dask._run_partition (which workers import)
    # rather than this __main__ copy, which cloudpickle would ship by value with its lock.
    from ringmoe.dask import main as _main

    raise SystemExit(_main())
