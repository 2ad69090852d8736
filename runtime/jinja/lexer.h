// Template text to tokens, with Jinja2's whitespace control as transformers configures it: trim_blocks (the
// newline after a block or comment tag is dropped), lstrip_blocks (spaces and tabs before a block or comment
// tag at the start of a line are dropped), "-" on a tag strips all whitespace on that side, "+" turns the
// trimming off. Newlines are normalised to "\n" and one trailing newline is dropped, as Jinja2 does.
#pragma once

#include <string>
#include <vector>

#include "runtime/jinja/ast.h"

namespace ringmoe::jinja {

struct Token {
  enum class Kind {
    kText,
    kBlockBegin,
    kBlockEnd,
    kVariableBegin,
    kVariableEnd,
    kName,
    kString,
    kInt,
    kFloat,
    kOperator,
    kEnd
  };
  Kind kind;
  std::string text;  // text, name, operator, or the decoded string literal
  Position position;
  int64_t int_value = 0;
  double float_value = 0;
};

struct LexerOptions {
  bool trim_blocks = true;
  bool lstrip_blocks = true;
};

// Throws TemplateError on a lexical error (unterminated tag, string or comment; an unknown character).
std::vector<Token> Tokenize(const std::string& source, const LexerOptions& options);

}  // namespace ringmoe::jinja
