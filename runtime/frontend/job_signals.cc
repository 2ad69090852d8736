#include "runtime/frontend/job_signals.h"

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>

namespace ringmoe {
namespace {

std::atomic<int> stop_signal{0};  // the first signal's number
std::atomic<int> exit_status{0};  // non-zero once a second signal asks to exit at once
std::atomic<int> writes_in_progress{0};
const char* program_name = "ringmoe";
static_assert(std::atomic<int>::is_always_lock_free, "the handler needs lock-free atomics");

void WriteStderr(const char* text) {
  // A failed write to stderr has no better place to be reported.
  ssize_t ignored = ::write(STDERR_FILENO, text, std::strlen(text));
  (void)ignored;
}

void OnStopSignal(int signal_number) {
  const int saved_errno = errno;
  int expected = 0;
  if (stop_signal.compare_exchange_strong(expected, signal_number)) {
    WriteStderr("\n");
    WriteStderr(program_name);
    WriteStderr(": ");
    WriteStderr(SignalName(signal_number));
    WriteStderr(": stopping (no new requests; the results so far are kept); send it again to exit at once\n");
    errno = saved_errno;
    return;
  }
  // The second signal. exit_status first, then the check: a writer that starts a line after this store sees
  // it before writing (OutputWriteGuard's constructor), one that is writing sees it when it finishes.
  exit_status.store(128 + signal_number);
  if (writes_in_progress.load() == 0) {
    WriteStderr(program_name);
    WriteStderr(": second signal: exiting at once; the output holds whole lines only\n");
    ::_exit(128 + signal_number);
  }
  errno = saved_errno;
}

void ExitIfAsked() {
  if (const int status = exit_status.load(); status != 0) {
    WriteStderr(program_name);
    WriteStderr(": second signal: exiting at once; the output holds whole lines only\n");
    ::_exit(status);
  }
}

}  // namespace

void InstallJobSignalHandlers(const char* program) {
  program_name = program;
  struct sigaction action;
  std::memset(&action, 0, sizeof(action));
  action.sa_handler = OnStopSignal;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_RESTART;  // a read or write the signal interrupts goes on
  ::sigaction(SIGINT, &action, nullptr);
  ::sigaction(SIGTERM, &action, nullptr);
}

void RestoreDefaultSignalHandlers() {
  ::signal(SIGINT, SIG_DFL);
  ::signal(SIGTERM, SIG_DFL);
}

int JobStopSignal() { return stop_signal.load(); }

const char* SignalName(int signal_number) {
  switch (signal_number) {
    case SIGINT:
      return "SIGINT";
    case SIGTERM:
      return "SIGTERM";
    case SIGHUP:
      return "SIGHUP";
    default:
      return "a signal";
  }
}

OutputWriteGuard::OutputWriteGuard() {
  writes_in_progress.fetch_add(1);
  ExitIfAsked();  // (the count stays raised: the process is gone)
}

OutputWriteGuard::~OutputWriteGuard() {
  writes_in_progress.fetch_sub(1);
  ExitIfAsked();
}

}  // namespace ringmoe
