// Python and Jinja2 semantics the renderer calls: operators, attribute and item lookup, iteration, the
// methods of str/dict/list, filters and tests. These throw TemplateError without a position; the renderer
// adds the position of the expression being evaluated.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "runtime/jinja/value.h"

namespace ringmoe::jinja {

// Caps that keep a hostile template from exhausting memory through one operation.
inline constexpr size_t kMaxStringBytes = size_t{16} << 20;
inline constexpr size_t kMaxListItems = size_t{1} << 18;

bool IsKnownFilter(std::string_view name);
bool IsKnownTest(std::string_view name);

Value ApplyFilter(const std::string& name, const Value& value, CallArgs& args);
bool ApplyTest(const std::string& name, const Value& value, CallArgs& args);

// obj.name: dict keys, namespace attributes, and bound methods of str, dict and list (what Python's getattr
// finds first); Undefined when absent. Throws for an attribute of Undefined.
Value GetAttribute(const Value& object, const std::string& name);
// obj[key]: items first, then attributes (Jinja's getitem). Throws for an item of Undefined.
Value GetItem(const Value& object, const Value& key);
Value GetSlice(const Value& object, const Value& start, const Value& stop, const Value& step);

// The items a for loop or a filter walks: list items, dict keys, string code points; Undefined is empty.
std::vector<Value> Iterate(const Value& value);

// + - * / // % ** ~ on two values.
Value BinaryOperation(const std::string& op, const Value& left, const Value& right);
Value Negate(const Value& value);
// == != < > <= >= in notin.
bool Compare(const std::string& op, const Value& left, const Value& right);

// Python's len(); throws for values without a length.
int64_t Length(const Value& value);

}  // namespace ringmoe::jinja
