// runtime/jinja/: the subset of Jinja2 that Hugging Face chat templates use (library ringmoe_jinja),
// rendering the way transformers' apply_chat_template does: trim_blocks and lstrip_blocks on, loop controls,
// a tojson that keeps non-ASCII and key order, raise_exception() and strftime_now() globals, the immutable
// sandbox (lists and dicts cannot be mutated; namespace() objects can).
//
// This folder owns:
//   jinja.h       Template: parse once (every syntax error, unknown tag, filter or test reported then, with
//   the
//                 template line and column), render many times.
//   value.h       Value: the Python-like values templates compute with; JSON in, Python str()/json.dumps out.
//   lexer.h       text to tokens, whitespace control.
//   parser.h      tokens to the statement tree (ast.h).
//   renderer.h    the tree and a context to text.
//   builtins.h    operators, lookups, str/dict/list methods (operations.cc), filters and tests (filters.cc).
//   text.h        Python str semantics over UTF-8.
//   error.h       the internal exception, turned into absl::Status at this header's boundary.
#pragma once

#include <cstdint>
#include <ctime>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"
#include "runtime/jinja/value.h"

namespace ringmoe::jinja {

struct Stmt;

struct RenderOptions {
  // Limits that turn a runaway template into an error rather than an exhausted machine.
  size_t max_output_bytes = size_t{256} << 20;
  int64_t max_steps = 50'000'000;  // statements run, loop iterations and macro calls
  // The time strftime_now() formats (local time); unset: the current time.
  std::optional<std::time_t> now;
};

// A parsed template. Immutable; Render may be called from several threads at once.
class Template {
 public:
  // `name` prefixes error messages (e.g. the file the template came from).
  static absl::StatusOr<Template> Parse(std::string_view source, std::string name = "template");

  // Renders with the top-level variables of `context` (a JSON object; key order is kept).
  absl::StatusOr<std::string> Render(const nlohmann::ordered_json& context,
                                     const RenderOptions& options = {}) const;
  // Same, from values (e.g. for callers that add their own globals).
  absl::StatusOr<std::string> Render(const Dict& context, const RenderOptions& options = {}) const;

  const std::string& name() const { return name_; }

 private:
  struct Tree;
  std::shared_ptr<const Tree> tree_;
  std::string name_;
};

}  // namespace ringmoe::jinja
