"""ringmoe: batch inference of Mixture-of-Experts models, from Python.

    import ringmoe
    engine = ringmoe.Engine.open("models/tiny", device="cpu")
    requests = [{"custom_id": "a", "prompt": "Hello", "max_tokens": 8, "temperature": 0}]
    for result in engine.generate(requests):       # each result as soon as it finishes
        print(result["custom_id"], result["response"]["body"]["choices"][0]["text"])

Requests and results are dicts in the shape of a `ringmoe run` input and output line (runtime/BATCH_FORMAT.md):
a request has custom_id, prompt (text or token ids), max_tokens, temperature, top_p, seed, stop, logprobs, ...
(the short form, or the full Batch form with "body"); a result has custom_id, response (status_code 200 and the
completion, with choices[0]["text"] and ["token_ids"]) and error (None). A request that failed alone has, as in
OpenAI's batch output, response {"status_code": 400, 500 or 503, "body": {"error": {"message", "type", "param",
"code"}}}, or, when cancelled, response None and error {"code": "cancelled", "message", "param"}.

Errors raise: ValueError for bad options or requests, FileNotFoundError / OSError for missing or unreadable
files, RuntimeError when the engine fails. ringmoe.dask spreads one job over a Dask cluster.
"""

import json
import threading

from . import _core

__version__ = _core.__version__
__all__ = ["Engine", "Generation", "configure_logging", "__version__"]


def configure_logging(level="info", file=None):
    """Sets the engine's log level (trace, debug, info, warning, error, off) and, optionally, a file that the
    log (with timestamps) is appended to, as `ringmoe run --log-level/--log-file` do."""
    _core.configure_logging(level, file or "")


def _request_lines(requests):
    if isinstance(requests, (str, bytes, dict)):
        raise TypeError("requests must be a list (or another iterable) of request dicts")
    lines = []
    for request in requests:
        if not isinstance(request, dict):
            raise TypeError(f"each request must be a dict, got {type(request).__name__}")
        lines.append(json.dumps(request, ensure_ascii=False, separators=(",", ":")))
    return lines


class Generation:
    """The results of one Engine.generate call, iterated as they finish (completion order).

    The engine works on a thread of its own with the GIL released; results reach the iterator through a
    queue. cancel() (from any thread) stops the job: requests not finished then come out as results with
    error code "cancelled". Leaving the loop early (break, an exception) cancels the rest too."""

    def __init__(self, job, total):
        self._job = job
        self.total = total
        self._finished = False

    def __iter__(self):
        return self

    def __next__(self):
        if self._finished:
            raise StopIteration
        try:
            line = self._job.next_line()
        except BaseException:
            self._finished = True
            self._job.cancel()
            raise
        if line is None:
            self._finished = True
            raise StopIteration
        return json.loads(line)

    def cancel(self, grace_seconds=0.0):
        """Stops the job; requests still running get grace_seconds to finish before they are cancelled."""
        self._job.cancel(grace_seconds)

    def close(self):
        """Cancels what still runs and waits until the job has ended."""
        if not self._finished:
            self._job.cancel(0.0)
            for _ in self:
                pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def __del__(self):
        if not getattr(self, "_finished", True):
            try:
                self._job.cancel(0.0)
            except Exception:
                pass


class Engine:
    """A model loaded once, that runs batches of requests. One generate (or run_file) at a time; plan,
    info and cancel may be called from any thread meanwhile."""

    def __init__(self, session, model_dir):
        self._session = session
        self.model_dir = model_dir
        self._lock = threading.Lock()
        self._generation = None

    @classmethod
    def open(cls, model_dir, *, threads=0, cpu_dtype="auto", tokenizer=None, device="auto", hardware=None,
             plan_for=None, **plan_options):
        """Loads the model in `model_dir` (config.json, *.safetensors, tokenizer.json).

        threads: CPU threads (0: every core). cpu_dtype: auto, f32 or bf16. tokenizer: tokenizer.json or its
        folder (default: the model folder). device: cpu, gpu or auto. hardware: a hardware profile JSON
        (`ringmoe probe --out`) for plans. plan_for: requests of the job to come; when given, the plan is
        searched for them as `ringmoe run` does (this needs a hardware profile: `hardware`, or this machine's,
        probed once), else the engine runs the plan the pins and defaults make (`ringmoe run --no-plan`).
        plan_options: the plan flags of `ringmoe run`, with underscores: gpu_mem, cpu_mem, kv_cache (sizes
        such as "6GiB"), max_batch, prefill_chunk, micro_batches, resident_moe_layers, layer_parts,
        ring_slots, kv_gpu_fraction, routed_copies, cpu_prefill_attention."""
        options = dict(plan_options)
        options.update(threads=threads, cpu_dtype=cpu_dtype, tokenizer=tokenizer, device=device,
                       hardware=hardware)
        if plan_for is not None:
            options["plan_for"] = _request_lines(plan_for)
        return cls(_core.EngineSession.open(str(model_dir), options), str(model_dir))

    @property
    def info(self):
        """The model (type, layers, vocabulary, parameters, device) and the plan the engine runs."""
        return json.loads(self._session.info_json())

    def plan(self, requests, text=False):
        """The plan report for a job of these requests (predicted throughput, bottleneck, memory per tier), as
        `ringmoe plan --input` prints it: a dict (the report's JSON), or the text when text=True."""
        report_json, report_text = self._session.plan(_request_lines(requests))
        return report_text if text else json.loads(report_json)

    def generate(self, requests):
        """Starts running `requests` and returns a Generation: iterate it for the results as they finish.
        A request that is not valid raises ValueError before anything runs."""
        with self._lock:
            job = self._session.start(_request_lines(requests))
            self._generation = Generation(job, job.total)
            return self._generation

    def run_file(self, input, output, *, shard=(0, 1), resume=False):
        """`ringmoe run --input input --output output --shard K/N [--resume]` in this process: one result line
        per input line of the shard, appended to `output` as each finishes; an existing output is refused
        unless resume=True, which keeps its results and runs only the rest. cancel() stops it: cancelled
        requests get no line, so a resumed run runs them. Returns counts and seconds."""
        index, count = shard
        return self._session.run_file(str(input), str(output), int(index), int(count), bool(resume))

    def cancel(self, grace_seconds=0.0):
        """Stops the generate or run_file in progress (from any thread); nothing when none runs."""
        self._session.cancel(grace_seconds)
