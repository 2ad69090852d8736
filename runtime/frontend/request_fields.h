// The request fields a batch line may carry, and what happens to the others: OpenAI rejects unrecognised
// arguments, so a line with a field that neither OpenAI's completions / chat completions APIs nor ringmoe's
// extensions define is an error naming the field ("temprature", "max_token"), unless `ringmoe run --lenient`
// turns that into one warning per field name for the whole job (the line then runs without the field).
//
// Fields OpenAI defines that ringmoe does not act on (e.g. user, metadata) are not "unknown": see
// runtime/BATCH_FORMAT.md for how each is treated. Stateless; thread-compatible.
#pragma once

#include <cstdio>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/frontend/batch_io.h"

namespace ringmoe {

// Whether `name` is a known field of a batch line's envelope (custom_id, method, url, body).
bool IsEnvelopeField(std::string_view name);
// Whether `name` is a known request-body field for the completions (chat = false) or chat endpoint.
bool IsKnownBodyField(std::string_view name, bool chat);

// Applies the policy to lines whose parse recorded unknown fields (BatchLine::unknown_fields): without
// `lenient` each such line becomes an invalid_request error naming its first unknown field; with it, each
// distinct unknown field name is reported once on `warnings` and the lines run.
void ApplyUnknownFieldPolicy(std::vector<BatchLine>* lines, bool lenient, std::FILE* warnings);
// The same for one line of a streamed job: `warned` holds the field names already reported.
void ApplyUnknownFieldPolicy(BatchLine* line, bool lenient, std::set<std::string>* warned,
                             std::FILE* warnings);

}  // namespace ringmoe
