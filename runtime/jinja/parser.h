// Tokens to the statement tree. Everything that can be checked before rendering is checked here: syntax,
// unknown or unsupported tags, unknown filters and tests, unbalanced blocks. Throws TemplateError.
#pragma once

#include <vector>

#include "runtime/jinja/ast.h"
#include "runtime/jinja/lexer.h"

namespace ringmoe::jinja {

Body Parse(const std::vector<Token>& tokens);

}  // namespace ringmoe::jinja
