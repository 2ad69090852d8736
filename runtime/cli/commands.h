// The `ringmoe` subcommands. Each lives in its own file under runtime/cli/ and parses its own flags.
#pragma once

namespace ringmoe::cli {

// Each returns the process exit code: 0 on success, 1 when the job failed, 2 on bad usage, 128 + the signal
// when a job stopped on SIGINT/SIGTERM.
int RunCommand(int argc, char** argv);       // ringmoe run: OpenAI Batch JSONL in and out.
int TokenizeCommand(int argc, char** argv);  // ringmoe tokenize: encode/decode JSON lines.
int PlanCommand(int argc, char** argv);      // ringmoe plan: the predicted-throughput report.
int ProbeCommand(int argc, char** argv);     // ringmoe probe: measure this machine.

}  // namespace ringmoe::cli
