// Walks the statement tree with a context and writes the text. One Renderer per render call (not shared).
#pragma once

#include <string>

#include "runtime/jinja/ast.h"
#include "runtime/jinja/jinja.h"

namespace ringmoe::jinja {

// Throws TemplateError (with the position of the failing statement or expression).
std::string RenderTree(const Body& body, const Dict& context, const RenderOptions& options);

}  // namespace ringmoe::jinja
