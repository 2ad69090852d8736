// The library's internal error: thrown while lexing, parsing or rendering, caught at Template's public
// boundary (template.cc) and returned there as absl::Status naming the template line and column. Never
// escapes the library.
#pragma once

#include <stdexcept>
#include <string>

#include "runtime/jinja/ast.h"

namespace ringmoe::jinja {

class TemplateError : public std::runtime_error {
 public:
  TemplateError(Position position, const std::string& message)
      : std::runtime_error(message), position_(position), has_position_(position.line > 0) {}
  explicit TemplateError(const std::string& message) : std::runtime_error(message), position_{0, 0} {}

  Position position() const { return position_; }
  bool has_position() const { return has_position_; }
  // raise_exception() in the template: the message is the template's own.
  bool raised_by_template = false;

 private:
  Position position_;
  bool has_position_ = false;
};

}  // namespace ringmoe::jinja
