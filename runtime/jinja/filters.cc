// Jinja2's filters and tests (the ones chat templates use), with transformers' tojson.
#include <algorithm>
#include <cmath>
#include <map>

#include "runtime/jinja/builtins.h"
#include "runtime/jinja/error.h"
#include "runtime/jinja/text.h"

namespace ringmoe::jinja {
namespace {

[[noreturn]] void Fail(const std::string& message) { throw TemplateError(message); }

const Value* Argument(const CallArgs& args, size_t index, std::string_view name) {
  if (index < args.positional.size()) return &args.positional[index];
  return args.Keyword(name);
}

bool BoolArgument(const CallArgs& args, size_t index, std::string_view name, bool fallback) {
  const Value* value = Argument(args, index, name);
  return value == nullptr ? fallback : value->Truthy();
}

// Jinja's attribute getter: "a.b.0" walks attributes and integer items.
Value GetPath(const Value& item, const std::string& path) {
  Value current = item;
  size_t start = 0;
  while (true) {
    const size_t dot = path.find('.', start);
    const std::string part = path.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    if (!part.empty() && std::all_of(part.begin(), part.end(), ::isdigit) && part.size() < 18) {
      current = GetItem(current, Value::Int(std::stoll(part)));
    } else {
      current = GetItem(current, Value::String(part));
    }
    if (dot == std::string::npos) return current;
    start = dot + 1;
  }
}

std::string AttributeArgument(const CallArgs& args, size_t index) {
  const Value* attribute = Argument(args, index, "attribute");
  if (attribute == nullptr || attribute->IsNone()) return "";
  if (attribute->IsInt()) return std::to_string(attribute->AsInt());
  if (!attribute->IsString()) Fail("attribute must be a string");
  return attribute->AsString();
}

// The sort key Jinja uses when case_sensitive is false: strings lower-cased.
Value SortKey(const Value& value, bool case_sensitive) {
  if (!case_sensitive && value.IsString()) return Value::String(ToLower(value.AsString()));
  return value;
}

std::vector<Value> SortedItems(std::vector<Value> items, bool reverse, bool case_sensitive,
                               const std::string& attribute) {
  std::vector<std::pair<Value, Value>> keyed;
  for (Value& item : items) {
    Value key = SortKey(attribute.empty() ? item : GetPath(item, attribute), case_sensitive);
    keyed.emplace_back(std::move(key), std::move(item));
  }
  std::stable_sort(keyed.begin(), keyed.end(), [&](const auto& a, const auto& b) {
    return reverse ? Compare("<", b.first, a.first) : Compare("<", a.first, b.first);
  });
  std::vector<Value> out;
  for (auto& [key, item] : keyed) out.push_back(std::move(item));
  return out;
}

CallArgs RestArguments(const CallArgs& args, size_t from) {
  CallArgs rest;
  for (size_t k = from; k < args.positional.size(); ++k) rest.positional.push_back(args.positional[k]);
  rest.keyword = args.keyword;
  return rest;
}

std::optional<int64_t> ParsePythonInt(const std::string& text, int64_t base) {
  std::string digits = PythonStrip(text, nullptr, true, true);
  digits.erase(std::remove(digits.begin(), digits.end(), '_'), digits.end());
  if (digits.empty()) return std::nullopt;
  errno = 0;
  char* end = nullptr;
  const long long value = std::strtoll(digits.c_str(), &end, static_cast<int>(base));
  if (errno != 0 || end != digits.c_str() + digits.size()) return std::nullopt;
  return value;
}

std::optional<double> ParsePythonFloat(const std::string& text) {
  std::string digits = PythonStrip(text, nullptr, true, true);
  if (digits.empty()) return std::nullopt;
  char* end = nullptr;
  const double value = std::strtod(digits.c_str(), &end);
  if (end != digits.c_str() + digits.size()) return std::nullopt;
  return value;
}

std::string HtmlEscape(const std::string& text) {
  std::string out;
  for (char c : text) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&#34;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

// printf-style formatting for the format filter: %s, %d/%i, %r and %%.
std::string PrintfFormat(const std::string& format, const std::vector<Value>& values) {
  std::string out;
  size_t next = 0;
  for (size_t i = 0; i < format.size(); ++i) {
    if (format[i] != '%') {
      out += format[i];
      continue;
    }
    if (i + 1 >= format.size()) Fail("incomplete format");
    const char spec = format[++i];
    if (spec == '%') {
      out += '%';
      continue;
    }
    if (next >= values.size()) Fail("not enough arguments for format string");
    const Value& value = values[next++];
    if (spec == 's') {
      out += PythonStr(value);
    } else if (spec == 'r') {
      out += PythonRepr(value);
    } else if (spec == 'd' || spec == 'i') {
      if (!value.IsNumber()) Fail("%d format: a number is required");
      out += std::to_string(value.IsFloat() ? static_cast<int64_t>(value.AsFloat()) : value.AsInt());
    } else {
      Fail(std::string("unsupported format character '") + spec + "'");
    }
  }
  if (next != values.size()) Fail("not all arguments converted during string formatting");
  return out;
}

Value ToJson(const Value& value, const CallArgs& args) {
  // transformers: tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False) -> json.dumps.
  JsonDumpOptions options;
  options.ensure_ascii = BoolArgument(args, 0, "ensure_ascii", false);
  if (const Value* indent = Argument(args, 1, "indent"); indent != nullptr && !indent->IsNone()) {
    options.has_indent = true;
    if (indent->IsString()) {
      options.indent = indent->AsString();
    } else if (indent->IsInt() || indent->IsBool()) {
      options.indent = std::string(static_cast<size_t>(std::clamp<int64_t>(indent->AsInt(), 0, 1024)), ' ');
    } else {
      Fail("tojson: indent must be an int or a str");
    }
  }
  if (const Value* separators = Argument(args, 2, "separators");
      separators != nullptr && !separators->IsNone()) {
    if (!separators->IsList() || separators->AsList().size() != 2 || !separators->AsList()[0].IsString() ||
        !separators->AsList()[1].IsString()) {
      Fail("tojson: separators must be a pair of strings");
    }
    options.has_separators = true;
    options.item_separator = separators->AsList()[0].AsString();
    options.key_separator = separators->AsList()[1].AsString();
  }
  options.sort_keys = BoolArgument(args, 3, "sort_keys", false);
  std::string out, error;
  if (!PythonJsonDumps(value, options, out, error)) Fail(error);
  if (out.size() > kMaxStringBytes) Fail("string too long");
  return Value::String(std::move(out));
}

using FilterFunction = Value (*)(const Value&, CallArgs&);

Value SelectOrReject(const Value& value, CallArgs& args, bool select, bool by_attribute) {
  std::vector<Value> out;
  std::string attribute;
  size_t test_index = 0;
  if (by_attribute) {
    if (args.positional.empty()) Fail("selectattr/rejectattr need an attribute");
    attribute = PythonStr(args.positional[0]);
    test_index = 1;
  }
  for (const Value& item : Iterate(value)) {
    const Value subject = by_attribute ? GetPath(item, attribute) : item;
    bool passed;
    if (args.positional.size() > test_index) {
      if (!args.positional[test_index].IsString()) Fail("the test name must be a string");
      const std::string& test = args.positional[test_index].AsString();
      if (!IsKnownTest(test)) Fail("no test named '" + test + "'");
      CallArgs rest = RestArguments(args, test_index + 1);
      passed = ApplyTest(test, subject, rest);
    } else {
      passed = subject.Truthy();
    }
    if (passed == select) out.push_back(item);
  }
  return Value::Generator(std::move(out));
}

Value FirstOrLast(const Value& value, bool first) {
  if (!first && value.IsGenerator()) Fail("'generator' object is not reversible");
  std::vector<Value> items = Iterate(value);
  if (items.empty()) return Value::Undefined("first");
  return first ? items.front() : items.back();
}

const std::map<std::string, FilterFunction, std::less<>>& Filters() {
  static const auto* filters = new std::map<std::string, FilterFunction, std::less<>>{
      {"abs",
       [](const Value& v, CallArgs&) {
         if (v.IsFloat()) return Value::Float(std::fabs(v.AsFloat()));
         if (!v.IsNumber()) Fail("bad operand type for abs()");
         return v.AsInt() < 0 ? Negate(v) : Value::Int(v.AsInt());
       }},
      {"attr",
       [](const Value& v, CallArgs& a) {
         const Value* name = Argument(a, 0, "name");
         if (name == nullptr || !name->IsString()) Fail("attr needs a name");
         return GetAttribute(v, name->AsString());
       }},
      {"capitalize", [](const Value& v, CallArgs&) { return Value::String(Capitalize(PythonStr(v))); }},
      {"count", [](const Value& v, CallArgs&) { return Value::Int(Length(v)); }},
      {"default",
       [](const Value& v, CallArgs& a) {
         const Value* fallback = Argument(a, 0, "default_value");
         if (v.IsUndefined() || (BoolArgument(a, 1, "boolean", false) && !v.Truthy())) {
           return fallback != nullptr ? *fallback : Value::String("");
         }
         return v;
       }},
      {"dictsort",
       [](const Value& v, CallArgs& a) {
         if (!v.IsDict()) Fail("dictsort expects a dict");
         const bool by_value = Argument(a, 1, "by") != nullptr && PythonStr(*Argument(a, 1, "by")) == "value";
         std::vector<Value> pairs;
         for (const auto& [key, item] : v.AsDict().entries)
           pairs.push_back(Value::Tuple({Value::String(key), item}));
         return Value::List(SortedItems(std::move(pairs), BoolArgument(a, 2, "reverse", false),
                                        BoolArgument(a, 0, "case_sensitive", false), by_value ? "1" : "0"));
       }},
      {"escape", [](const Value& v, CallArgs&) { return Value::String(HtmlEscape(PythonStr(v))); }},
      {"first", [](const Value& v, CallArgs&) { return FirstOrLast(v, true); }},
      {"float",
       [](const Value& v, CallArgs& a) {
         const Value* fallback = Argument(a, 0, "default");
         const Value result_default = fallback != nullptr ? *fallback : Value::Float(0.0);
         if (v.IsNumber()) return Value::Float(v.AsFloat());
         if (v.IsString()) {
           if (auto parsed = ParsePythonFloat(v.AsString())) return Value::Float(*parsed);
         }
         return result_default;
       }},
      {"format",
       [](const Value& v, CallArgs& a) {
         if (!a.keyword.empty()) Fail("format: keyword arguments are not supported");
         return Value::String(PrintfFormat(PythonStr(v), a.positional));
       }},
      {"indent",
       [](const Value& v, CallArgs& a) {
         const Value* width = Argument(a, 0, "width");
         std::string indention =
             width == nullptr ? "    "
             : width->IsString()
                 ? width->AsString()
                 : std::string(static_cast<size_t>(std::clamp<int64_t>(width->AsInt(), 0, 1024)), ' ');
         const bool first = BoolArgument(a, 1, "first", false), blank = BoolArgument(a, 2, "blank", false);
         std::vector<std::string> lines;
         const std::string s = PythonStr(v) + "\n";
         size_t start = 0;
         for (size_t i = 0; i < s.size(); ++i) {
           if (s[i] == '\n' || s[i] == '\r') {
             lines.push_back(s.substr(start, i - start));
             if (s[i] == '\r' && i + 1 < s.size() && s[i + 1] == '\n') ++i;
             start = i + 1;
           }
         }
         std::string out;
         for (size_t k = 0; k < lines.size(); ++k) {
           if (k > 0) out += "\n";
           if (k > 0 && (blank || !lines[k].empty())) out += indention;
           out += lines[k];
         }
         if (first) out = indention + out;
         return Value::String(std::move(out));
       }},
      {"int",
       [](const Value& v, CallArgs& a) {
         const Value* fallback = Argument(a, 0, "default");
         const Value result_default = fallback != nullptr ? *fallback : Value::Int(0);
         const Value* base = Argument(a, 1, "base");
         if (v.IsFloat()) {
           if (!std::isfinite(v.AsFloat()) || std::fabs(v.AsFloat()) >= 9.2e18) return result_default;
           return Value::Int(static_cast<int64_t>(v.AsFloat()));
         }
         if (v.IsNumber()) return Value::Int(v.AsInt());
         if (v.IsString()) {
           if (auto parsed =
                   ParsePythonInt(v.AsString(), base != nullptr && base->IsInt() ? base->AsInt() : 10)) {
             return Value::Int(*parsed);
           }
           if (auto parsed = ParsePythonFloat(v.AsString());
               parsed && std::isfinite(*parsed) && std::fabs(*parsed) < 9.2e18) {
             return Value::Int(static_cast<int64_t>(*parsed));
           }
         }
         return result_default;
       }},
      {"items",
       [](const Value& v, CallArgs&) {
         if (v.IsUndefined()) return Value::Generator({});
         if (!v.IsDict()) Fail("items: can only iterate over a dict");
         std::vector<Value> pairs;
         for (const auto& [key, item] : v.AsDict().entries)
           pairs.push_back(Value::Tuple({Value::String(key), item}));
         return Value::List(std::move(pairs));
       }},
      {"join",
       [](const Value& v, CallArgs& a) {
         const Value* separator = Argument(a, 0, "d");
         const std::string attribute = AttributeArgument(a, 1);
         std::string out;
         bool first = true;
         for (const Value& item : Iterate(v)) {
           if (!first && separator != nullptr) out += PythonStr(*separator);
           out += PythonStr(attribute.empty() ? item : GetPath(item, attribute));
           first = false;
           if (out.size() > kMaxStringBytes) Fail("string too long");
         }
         return Value::String(std::move(out));
       }},
      {"last", [](const Value& v, CallArgs&) { return FirstOrLast(v, false); }},
      {"length", [](const Value& v, CallArgs&) { return Value::Int(Length(v)); }},
      {"list", [](const Value& v, CallArgs&) { return Value::List(Iterate(v)); }},
      {"lower", [](const Value& v, CallArgs&) { return Value::String(ToLower(PythonStr(v))); }},
      {"map",
       [](const Value& v, CallArgs& a) {
         std::vector<Value> out;
         if (!a.positional.empty()) {
           if (!a.positional[0].IsString()) Fail("map: the filter name must be a string");
           const std::string filter = a.positional[0].AsString();
           if (!IsKnownFilter(filter)) Fail("no filter named '" + filter + "'");
           CallArgs rest = RestArguments(a, 1);
           for (const Value& item : Iterate(v)) out.push_back(ApplyFilter(filter, item, rest));
           return Value::Generator(std::move(out));
         }
         const std::string attribute = AttributeArgument(a, 0);
         if (attribute.empty()) Fail("map needs a filter name or attribute=");
         const Value* fallback = a.Keyword("default");
         for (const Value& item : Iterate(v)) {
           Value mapped = GetPath(item, attribute);
           if (mapped.IsUndefined() && fallback != nullptr) mapped = *fallback;
           out.push_back(std::move(mapped));
         }
         return Value::Generator(std::move(out));
       }},
      {"max",
       [](const Value& v, CallArgs& a) {
         std::vector<Value> items = SortedItems(Iterate(v), true, BoolArgument(a, 0, "case_sensitive", false),
                                                AttributeArgument(a, 1));
         return items.empty() ? Value::Undefined("max") : items.front();
       }},
      {"min",
       [](const Value& v, CallArgs& a) {
         std::vector<Value> items = SortedItems(
             Iterate(v), false, BoolArgument(a, 0, "case_sensitive", false), AttributeArgument(a, 1));
         return items.empty() ? Value::Undefined("min") : items.front();
       }},
      {"reject", [](const Value& v, CallArgs& a) { return SelectOrReject(v, a, false, false); }},
      {"rejectattr", [](const Value& v, CallArgs& a) { return SelectOrReject(v, a, false, true); }},
      {"replace",
       [](const Value& v, CallArgs& a) {
         const Value* from = Argument(a, 0, "old");
         const Value* to = Argument(a, 1, "new");
         if (from == nullptr || to == nullptr) Fail("replace needs old and new");
         const Value* count = Argument(a, 2, "count");
         std::string out = PythonReplace(PythonStr(v), PythonStr(*from), PythonStr(*to),
                                         count == nullptr || count->IsNone() ? -1 : count->AsInt());
         if (out.size() > kMaxStringBytes) Fail("string too long");
         return Value::String(std::move(out));
       }},
      {"reverse",
       [](const Value& v, CallArgs&) {
         if (v.IsString()) {
           std::vector<std::string> cps = SplitCodePoints(v.AsString());
           std::string out;
           for (auto it = cps.rbegin(); it != cps.rend(); ++it) out += *it;
           return Value::String(std::move(out));
         }
         std::vector<Value> items = Iterate(v);
         std::reverse(items.begin(), items.end());
         // reversed(list) is an iterator; a generator is listed and reversed into a list (Jinja's fallback).
         return v.IsList() && !v.IsGenerator() ? Value::Generator(std::move(items))
                                               : Value::List(std::move(items));
       }},
      {"round",
       [](const Value& v, CallArgs& a) {
         if (!v.IsNumber()) Fail("round expects a number");
         const Value* precision = Argument(a, 0, "precision");
         const double scale =
             std::pow(10.0, precision == nullptr ? 0 : std::clamp<int64_t>(precision->AsInt(), -300, 300));
         const Value* method = Argument(a, 1, "method");
         const std::string how = method == nullptr ? "common" : PythonStr(*method);
         double x = v.AsFloat() * scale;
         x = how == "ceil" ? std::ceil(x) : how == "floor" ? std::floor(x) : std::round(x);
         return Value::Float(x / scale);
       }},
      {"safe", [](const Value& v, CallArgs&) { return v; }},
      {"select", [](const Value& v, CallArgs& a) { return SelectOrReject(v, a, true, false); }},
      {"selectattr", [](const Value& v, CallArgs& a) { return SelectOrReject(v, a, true, true); }},
      {"sort",
       [](const Value& v, CallArgs& a) {
         return Value::List(SortedItems(Iterate(v), BoolArgument(a, 0, "reverse", false),
                                        BoolArgument(a, 1, "case_sensitive", false),
                                        AttributeArgument(a, 2)));
       }},
      {"string", [](const Value& v, CallArgs&) { return Value::String(PythonStr(v)); }},
      {"sum",
       [](const Value& v, CallArgs& a) {
         const std::string attribute = AttributeArgument(a, 0);
         const Value* start = Argument(a, 1, "start");
         Value total = start != nullptr ? *start : Value::Int(0);
         for (const Value& item : Iterate(v)) {
           total = BinaryOperation("+", total, attribute.empty() ? item : GetPath(item, attribute));
         }
         return total;
       }},
      {"title", [](const Value& v, CallArgs&) { return Value::String(JinjaTitle(PythonStr(v))); }},
      {"tojson", [](const Value& v, CallArgs& a) { return ToJson(v, a); }},
      {"trim",
       [](const Value& v, CallArgs& a) {
         const Value* chars = Argument(a, 0, "chars");
         const std::string* set = chars != nullptr && chars->IsString() ? &chars->AsString() : nullptr;
         return Value::String(PythonStrip(PythonStr(v), set, true, true));
       }},
      {"unique",
       [](const Value& v, CallArgs& a) {
         const bool case_sensitive = BoolArgument(a, 0, "case_sensitive", false);
         const std::string attribute = AttributeArgument(a, 1);
         std::vector<Value> out, seen;
         for (const Value& item : Iterate(v)) {
           Value key = SortKey(attribute.empty() ? item : GetPath(item, attribute), case_sensitive);
           if (std::none_of(seen.begin(), seen.end(), [&](const Value& s) { return PythonEquals(s, key); })) {
             seen.push_back(std::move(key));
             out.push_back(item);
           }
         }
         return Value::Generator(std::move(out));
       }},
      {"upper", [](const Value& v, CallArgs&) { return Value::String(ToUpper(PythonStr(v))); }},
      {"wordcount",
       [](const Value& v, CallArgs&) {
         return Value::Int(static_cast<int64_t>(PythonSplit(PythonStr(v), nullptr, -1).size()));
       }},
  };
  return *filters;
}

const char* const kTests[] = {"boolean",  "callable",    "defined", "divisibleby", "eq",       "equalto",
                              "escaped",  "even",        "false",   "filter",      "float",    "ge",
                              "gt",       "greaterthan", "in",      "integer",     "iterable", "le",
                              "lessthan", "lower",       "lt",      "mapping",     "ne",       "none",
                              "number",   "odd",         "sameas",  "sequence",    "string",   "test",
                              "true",     "undefined",   "upper"};

}  // namespace

bool IsKnownFilter(std::string_view name) { return Filters().count(name) > 0 || name == "d" || name == "e"; }

bool IsKnownTest(std::string_view name) {
  return std::any_of(std::begin(kTests), std::end(kTests), [&](const char* test) { return name == test; });
}

Value ApplyFilter(const std::string& name, const Value& value, CallArgs& args) {
  const std::string& canonical = name == "d"   ? std::string("default")
                                 : name == "e" ? std::string("escape")
                                               : name;
  const auto it = Filters().find(canonical);
  if (it == Filters().end()) Fail("no filter named '" + name + "'");
  // Most filters read an Undefined as "" or as empty (Jinja's soft_str and iteration); these need a value.
  if (value.IsUndefined() && (canonical == "tojson" || canonical == "abs" || canonical == "round" ||
                              canonical == "attr" || canonical == "dictsort")) {
    Fail("'" + value.AsString() + "' is undefined (applying filter '" + name + "')");
  }
  return it->second(value, args);
}

bool ApplyTest(const std::string& name, const Value& value, CallArgs& args) {
  const Value* other = Argument(args, 0, "b");
  const auto need_other = [&]() -> const Value& {
    if (other == nullptr) Fail("test '" + name + "' needs an argument");
    return *other;
  };
  if (name == "defined") return !value.IsUndefined();
  if (name == "undefined") return value.IsUndefined();
  if (name == "none") return value.IsNone();
  if (name == "boolean") return value.IsBool();
  if (name == "true") return value.IsBool() && value.AsBool();
  if (name == "false") return value.IsBool() && !value.AsBool();
  if (name == "string") return value.IsString();
  if (name == "mapping") return value.IsDict();
  if (name == "number") return value.IsNumber();
  if (name == "integer") return value.IsInt();
  if (name == "float") return value.IsFloat();
  if (name == "iterable") return value.IsUndefined() || value.IsString() || value.IsList() || value.IsDict();
  if (name == "sequence") {
    return value.IsUndefined() || value.IsString() || (value.IsList() && !value.IsGenerator()) ||
           value.IsDict();
  }
  if (name == "callable") return value.IsCallable();
  if (name == "escaped") return false;
  if (name == "filter") return value.IsString() && IsKnownFilter(value.AsString());
  if (name == "test") return value.IsString() && IsKnownTest(value.AsString());
  if (name == "lower") return value.IsString() && ToLower(value.AsString()) == value.AsString();
  if (name == "upper") return value.IsString() && ToUpper(value.AsString()) == value.AsString();
  if (name == "odd" || name == "even" || name == "divisibleby") {
    if (!value.IsInt() && !value.IsBool()) Fail("test '" + name + "' needs an integer");
    if (name == "divisibleby") {
      const Value& divisor = need_other();
      if (!divisor.IsInt() || divisor.AsInt() == 0) Fail("divisibleby needs a non-zero integer");
      return value.AsInt() % divisor.AsInt() == 0;
    }
    return (value.AsInt() % 2 != 0) == (name == "odd");
  }
  if (name == "eq" || name == "equalto") return Compare("==", value, need_other());
  if (name == "ne") return Compare("!=", value, need_other());
  if (name == "lt" || name == "lessthan") return Compare("<", value, need_other());
  if (name == "le") return Compare("<=", value, need_other());
  if (name == "gt" || name == "greaterthan") return Compare(">", value, need_other());
  if (name == "ge") return Compare(">=", value, need_other());
  if (name == "in") return Compare("in", value, need_other());
  if (name == "sameas") {
    const Value& b = need_other();
    if (value.kind() != b.kind()) return false;
    if (value.IsList()) return &value.AsList() == &b.AsList();
    if (value.IsDict() || value.IsNamespace()) return &value.AsDict() == &b.AsDict();
    return PythonEquals(value, b);
  }
  Fail("no test named '" + name + "'");
}

}  // namespace ringmoe::jinja
