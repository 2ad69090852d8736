// ringmoe._core: the pybind11 binding of python/src/session.h. The Python package (python/ringmoe/) wraps it:
// dicts become JSON text here and back, absl::Status errors become Python exceptions, and the GIL is released
// whenever the engine works (opening, planning, running a file, waiting for the next result).
#include <Python.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "python/src/session.h"
#include "runtime/log/log.h"

namespace py = pybind11;

namespace ringmoe::python {
namespace {

// absl status codes to Python's exceptions: bad arguments are ValueError, files that are missing or
// unreadable are OSError (FileNotFoundError, PermissionError), cancellation is ringmoe.CancelledError's
// base (RuntimeError), anything else RuntimeError. The message is the status's own, naming the file, field
// or request at fault.
[[noreturn]] void Raise(const absl::Status& status) {
  PyObject* type = PyExc_RuntimeError;
  switch (status.code()) {
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kOutOfRange:
    case absl::StatusCode::kAlreadyExists:
      type = PyExc_ValueError;
      break;
    case absl::StatusCode::kNotFound:
      type = PyExc_FileNotFoundError;
      break;
    case absl::StatusCode::kPermissionDenied:
      type = PyExc_PermissionError;
      break;
    case absl::StatusCode::kDataLoss:
    case absl::StatusCode::kUnavailable:
      type = PyExc_OSError;
      break;
    default:
      break;
  }
  PyErr_SetString(type, std::string(status.message()).c_str());
  throw py::error_already_set();
}

template <typename T>
T ValueOrRaise(absl::StatusOr<T> value) {
  if (!value.ok()) Raise(value.status());
  return std::move(*value);
}

template <typename T>
std::optional<T> Optional(const py::dict& options, const char* key) {
  if (!options.contains(key) || options[key].is_none()) return std::nullopt;
  return options[key].cast<T>();
}

OpenOptions OpenOptionsFrom(const py::dict& options) {
  OpenOptions open;
  static const char* const kKnown[] = {"threads",
                                       "cpu_dtype",
                                       "tokenizer",
                                       "device",
                                       "hardware",
                                       "gpu_mem",
                                       "cpu_mem",
                                       "kv_cache",
                                       "max_batch",
                                       "prefill_chunk",
                                       "micro_batches",
                                       "resident_moe_layers",
                                       "layer_parts",
                                       "ring_slots",
                                       "kv_gpu_fraction",
                                       "routed_copies",
                                       "cpu_prefill_attention",
                                       "plan_for"};
  for (const auto& item : options) {
    const std::string key = py::str(item.first);
    if (std::find(std::begin(kKnown), std::end(kKnown), key) == std::end(kKnown)) {
      throw py::type_error("Engine.open() got an unexpected option '" + key + "'");
    }
  }
  open.threads = Optional<int>(options, "threads").value_or(0);
  open.cpu_dtype = Optional<std::string>(options, "cpu_dtype").value_or("auto");
  open.tokenizer = Optional<std::string>(options, "tokenizer").value_or("");
  open.plan.device = Optional<std::string>(options, "device").value_or("auto");
  open.plan.hardware = Optional<std::string>(options, "hardware").value_or("");
  open.plan.gpu_mem = Optional<std::string>(options, "gpu_mem").value_or("");
  open.plan.cpu_mem = Optional<std::string>(options, "cpu_mem").value_or("");
  open.plan.kv_cache = Optional<std::string>(options, "kv_cache").value_or("");
  open.plan.max_batch = Optional<int>(options, "max_batch");
  open.plan.prefill_chunk = Optional<int>(options, "prefill_chunk");
  open.plan.micro_batches = Optional<int>(options, "micro_batches");
  open.plan.resident_moe_layers = Optional<int>(options, "resident_moe_layers");
  open.plan.layer_parts = Optional<int>(options, "layer_parts");
  open.plan.ring_slots = Optional<int>(options, "ring_slots");
  open.plan.kv_gpu_fraction = Optional<double>(options, "kv_gpu_fraction");
  open.plan.routed_copies = Optional<std::string>(options, "routed_copies").value_or("auto");
  open.plan.cpu_prefill_attention = Optional<bool>(options, "cpu_prefill_attention").value_or(false);
  open.plan_for =
      Optional<std::vector<std::string>>(options, "plan_for").value_or(std::vector<std::string>{});
  return open;
}

// Waits for the job's next line with the GIL released, in slices, so that Ctrl-C reaches Python (the job is
// then cancelled by the KeyboardInterrupt's cleanup in the iterator). None at the end of the job.
py::object NextLine(GenerateJob& job) {
  std::string line;
  while (true) {
    GenerateJob::Wait wait;
    {
      py::gil_scoped_release release;
      wait = job.Next(0.1, &line);
    }
    if (wait == GenerateJob::Wait::kLine) return py::str(line);
    if (wait == GenerateJob::Wait::kEnd) {
      if (absl::Status status = job.status(); !status.ok()) Raise(status);
      return py::none();
    }
    if (PyErr_CheckSignals() != 0) throw py::error_already_set();
  }
}

py::dict SummaryDict(const RunFileSummary& summary) {
  py::dict dict;
  dict["input_lines"] = summary.input_lines;
  dict["kept_lines"] = summary.kept_lines;
  dict["ran_requests"] = summary.ran_requests;
  dict["bad_lines"] = summary.bad_lines;
  dict["failed_requests"] = summary.failed_requests;
  dict["cancelled_requests"] = summary.cancelled_requests;
  dict["prompt_tokens"] = summary.prompt_tokens;
  dict["generated_tokens"] = summary.generated_tokens;
  dict["seconds"] = summary.seconds;
  return dict;
}

}  // namespace
}  // namespace ringmoe::python

PYBIND11_MODULE(_core, module) {
  using namespace ringmoe::python;  // NOLINT: the binding names every class of session.h
  module.doc() = "ringmoe's C++ engine (use the ringmoe package, not this module)";

  py::class_<GenerateJob>(module, "GenerateJob")
      .def("next_line", &NextLine,
           "The next result line (JSON text) as it finishes, or None when every result was handed over.")
      .def(
          "cancel", [](GenerateJob& job, double grace) { job.Cancel(grace); }, py::arg("grace_seconds") = 0.0)
      .def_property_readonly("total", &GenerateJob::total);

  py::class_<EngineSession>(module, "EngineSession")
      .def_static(
          "open",
          [](const std::string& model_dir, const py::dict& options) {
            OpenOptions open = OpenOptionsFrom(options);
            absl::StatusOr<std::unique_ptr<EngineSession>> session;
            {
              py::gil_scoped_release release;
              session = EngineSession::Open(model_dir, std::move(open));
            }
            return ValueOrRaise(std::move(session));
          },
          py::arg("model_dir"), py::arg("options"))
      .def(
          "plan",
          [](const EngineSession& session, const std::vector<std::string>& lines) {
            absl::StatusOr<std::pair<std::string, std::string>> report;
            {
              py::gil_scoped_release release;
              report = session.Plan(lines);
            }
            return ValueOrRaise(std::move(report));
          },
          py::arg("request_lines"))
      .def(
          "start",
          [](EngineSession& session, const std::vector<std::string>& lines) {
            return ValueOrRaise(session.Start(lines));
          },
          py::arg("request_lines"), py::keep_alive<0, 1>())  // the job keeps its engine alive
      .def(
          "run_file",
          [](EngineSession& session, const std::string& input, const std::string& output, int shard_index,
             int shard_count, bool resume) {
            absl::StatusOr<ringmoe::Shard> shard =
                ringmoe::ParseShard(std::to_string(shard_index) + "/" + std::to_string(shard_count));
            if (!shard.ok()) Raise(shard.status());
            absl::StatusOr<RunFileSummary> summary;
            {
              py::gil_scoped_release release;
              summary = session.RunFile(input, output, *shard, resume);
            }
            return SummaryDict(ValueOrRaise(std::move(summary)));
          },
          py::arg("input"), py::arg("output"), py::arg("shard_index") = 0, py::arg("shard_count") = 1,
          py::arg("resume") = false)
      .def(
          "cancel", [](EngineSession& session, double grace) { session.Cancel(grace); },
          py::arg("grace_seconds") = 0.0)
      .def("info_json", &EngineSession::InfoJson);

  module.def(
      "configure_logging",
      [](const std::string& level, const std::string& file) {
        absl::StatusOr<ringmoe::log::Level> parsed = ringmoe::log::ParseLevel(level);
        if (!parsed.ok()) Raise(parsed.status());
        if (absl::Status status = ringmoe::log::Configure(*parsed, file); !status.ok()) Raise(status);
      },
      py::arg("level") = "info", py::arg("file") = "");
  module.attr("__version__") = RINGMOE_VERSION;
}
