// libFuzzer target: arbitrary bytes as a Jinja chat template, parsed and (when it parses) rendered through
// ringmoe's Jinja subset with a few chat contexts.
//
// Checks beyond "does not crash, leak or trip a sanitizer": a template either fails to parse with a message
// naming a line and column, or renders to a result or an error (never an exception out of the library);
// rendering twice gives the same result (no state leaks between renders); the output limit holds.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "nlohmann/json.hpp"
#include "runtime/jinja/jinja.h"

namespace {

void Check(bool condition) {
  if (!condition) std::abort();
}

const nlohmann::ordered_json& Context(uint8_t selector) {
  static const nlohmann::ordered_json contexts[] = {
      nlohmann::ordered_json::object(),
      nlohmann::ordered_json::parse(R"({"messages": [{"role": "system", "content": "Be brief."},
          {"role": "user", "content": "Hi é 😀"}, {"role": "assistant", "content": "<think>x</think>Hello",
          "tool_calls": [{"type": "function", "function": {"name": "f", "arguments": {"a": [1, 2.5, null]}}}]},
          {"role": "tool", "content": "42"}], "add_generation_prompt": true, "bos_token": "<s>",
          "eos_token": "</s>", "tools": [{"type": "function", "function": {"name": "f", "description": "d",
          "parameters": {"type": "object", "properties": {"a": {"type": "array", "items": {"type": "number"}}},
          "required": ["a"]}}}]})"),
      nlohmann::ordered_json::parse(R"({"messages": [], "tools": null, "documents": null,
          "add_generation_prompt": false, "x": {"y": [{"z": "w"}]}, "n": -3, "f": 1e300})"),
  };
  return contexts[selector % 3];
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const nlohmann::ordered_json& context = Context(data[0]);
  const std::string source(reinterpret_cast<const char*>(data) + 1, size - 1);
  absl::StatusOr<ringmoe::jinja::Template> tpl = ringmoe::jinja::Template::Parse(source, "fuzz");
  if (!tpl.ok()) {
    Check(std::string(tpl.status().message()).rfind("fuzz", 0) == 0);
    return 0;
  }
  ringmoe::jinja::RenderOptions options;
  options.max_output_bytes = 1 << 20;
  options.max_steps = 20000;
  options.now = 1700000000;
  absl::StatusOr<std::string> first = tpl->Render(context, options);
  absl::StatusOr<std::string> second = tpl->Render(context, options);
  Check(first.ok() == second.ok());
  if (first.ok()) {
    Check(*first == *second);
    Check(first->size() <= options.max_output_bytes);
  } else {
    Check(first.status() == second.status());
  }
  return 0;
}
