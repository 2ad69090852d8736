// Template's public boundary: TemplateError (and any other exception) becomes absl::Status here.
#include <new>

#include "absl/status/status.h"
#include "runtime/jinja/error.h"
#include "runtime/jinja/jinja.h"
#include "runtime/jinja/lexer.h"
#include "runtime/jinja/parser.h"
#include "runtime/jinja/renderer.h"

namespace ringmoe::jinja {

struct Template::Tree {
  Body body;
};

namespace {

absl::Status ToStatus(const std::string& name, const TemplateError& error, const char* stage) {
  std::string where = name;
  if (error.has_position()) {
    where += ":" + std::to_string(error.position().line) + ":" + std::to_string(error.position().column);
  }
  if (error.raised_by_template) {
    return absl::InvalidArgumentError(where + ": the template raised an error: " + error.what());
  }
  return absl::InvalidArgumentError(where + ": " + stage + ": " + error.what());
}

}  // namespace

absl::StatusOr<Template> Template::Parse(std::string_view source, std::string name) {
  try {
    auto tree = std::make_shared<Tree>();
    tree->body = jinja::Parse(Tokenize(std::string(source), LexerOptions{}));
    Template result;
    result.tree_ = std::move(tree);
    result.name_ = std::move(name);
    return result;
  } catch (const TemplateError& error) {
    return ToStatus(name, error, "syntax error");
  } catch (const std::bad_alloc&) {
    return absl::ResourceExhaustedError(name + ": out of memory while parsing the template");
  }
}

absl::StatusOr<std::string> Template::Render(const Dict& context, const RenderOptions& options) const {
  try {
    return RenderTree(tree_->body, context, options);
  } catch (const TemplateError& error) {
    return ToStatus(name_, error, "render error");
  } catch (const std::bad_alloc&) {
    return absl::ResourceExhaustedError(name_ + ": out of memory while rendering the template");
  } catch (const std::exception& error) {
    return absl::InternalError(name_ + ": render error: " + error.what());
  }
}

absl::StatusOr<std::string> Template::Render(const nlohmann::ordered_json& context,
                                             const RenderOptions& options) const {
  if (!context.is_object())
    return absl::InvalidArgumentError(name_ + ": the render context must be a JSON object");
  Value values = Value::FromJson(context);
  return Render(values.AsDict(), options);
}

}  // namespace ringmoe::jinja
