// SIGINT and SIGTERM during a `ringmoe run` job: the first one asks the job to stop (the caller cancels the
// engine, flushes the output and says how to resume); a second one ends the process at once, but never in the
// middle of an output line, so the output stays valid JSONL.
//
// The handler only touches lock-free atomics and calls write(2) and _exit(2), which are async-signal-safe.
// The output writer brackets each line's write(2) with OutputWriteGuard: a second signal that arrives during
// a write lets the write finish and the writer exits right after it; one that arrives between writes exits in
// the handler. Either way no line is cut by the exit.
//
// Threading: process-wide state. InstallJobSignalHandlers once per process (the CLI's run command); the other
// calls from any thread.
#pragma once

namespace ringmoe {

// Installs the handlers for SIGINT and SIGTERM. `program` prefixes the message the handler prints on the
// first signal (e.g. "ringmoe run").
void InstallJobSignalHandlers(const char* program);
// Puts back the default dispositions.
void RestoreDefaultSignalHandlers();
// 0 until the first SIGINT/SIGTERM, then that signal's number.
int JobStopSignal();
// The name of a signal number ("SIGINT", "SIGTERM", else "signal N").
const char* SignalName(int signal_number);

// Marks one output write in progress for the handler (see above). No effect while no handler is installed.
class OutputWriteGuard {
 public:
  OutputWriteGuard();
  ~OutputWriteGuard();
  OutputWriteGuard(const OutputWriteGuard&) = delete;
  OutputWriteGuard& operator=(const OutputWriteGuard&) = delete;
};

}  // namespace ringmoe
