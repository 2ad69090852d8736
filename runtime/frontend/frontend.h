// runtime/frontend/: what the `ringmoe` command and the benchmarks share above the engine (library
// ringmoe_frontend).
//
// This folder owns:
//   batch_io.h   The OpenAI Batch JSONL format: request lines in, result lines out (BATCH_FORMAT.md).
//   error_lines.h  A failed request's output line, in OpenAI's form (HTTP status and error body).
//   batch_reader.h  Streaming a batch file: the repeated-custom_id scan and the later passes.
//   job_lines.h  The lines a job answers (shard, --resume, unknown fields, chat prompts), streamed.
//   chat_lines.h /v1/chat/completions lines: messages through the chat template, chat.completion results.
//   request_fields.h  The fields a request may carry; unknown ones fail the line unless --lenient.
//   sampling_fields.h  n, top_k, min_p, the penalties, min_tokens, logit_bias: parsed and range-checked.
//   generation_defaults.h  Defaults from generation_config.json for the fields a request omits (vLLM's way).
//   choices_output.h  The output line of a request with n > 1 choices.
//   scoring_fields.h  logprobs with top alternatives, top_logprobs and echo (scoring): parsing and output.
//   batch_output.h  The output file: lines appended as results finish, --resume, no clobbering, one writer.
//   job_signals.h  SIGINT/SIGTERM during a job: stop cleanly, and a second signal exits between two lines.
//   job_plan.h   A batch file's workload, planning it (profile, device, search) and the measured run.
//   byte_size.h  "6GiB"-style sizes for flags.
//   progress.h   The progress line of `ringmoe run`.
//   shard.h      --shard K/N: which lines of a batch file one of N processes runs.
#pragma once

#include "runtime/frontend/batch_io.h"
#include "runtime/frontend/batch_output.h"
#include "runtime/frontend/batch_reader.h"
#include "runtime/frontend/byte_size.h"
#include "runtime/frontend/chat_lines.h"
#include "runtime/frontend/choices_output.h"
#include "runtime/frontend/error_lines.h"
#include "runtime/frontend/generation_defaults.h"
#include "runtime/frontend/job_lines.h"
#include "runtime/frontend/job_plan.h"
#include "runtime/frontend/job_signals.h"
#include "runtime/frontend/progress.h"
#include "runtime/frontend/request_fields.h"
#include "runtime/frontend/sampling_fields.h"
#include "runtime/frontend/scoring_fields.h"
#include "runtime/frontend/shard.h"
