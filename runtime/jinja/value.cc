#include "runtime/jinja/value.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>

#include "runtime/jinja/text.h"

namespace ringmoe::jinja {

const Value* Dict::Find(std::string_view key) const {
  for (const auto& [name, value] : entries) {
    if (name == key) return &value;
  }
  return nullptr;
}

Value* Dict::Find(std::string_view key) {
  for (auto& [name, value] : entries) {
    if (name == key) return &value;
  }
  return nullptr;
}

void Dict::Set(std::string key, Value value) {
  if (Value* existing = Find(key)) {
    *existing = std::move(value);
    return;
  }
  entries.emplace_back(std::move(key), std::move(value));
}

const Value* CallArgs::Keyword(std::string_view name) const {
  for (const auto& [key, value] : keyword) {
    if (key == name) return &value;
  }
  return nullptr;
}

Value Value::Undefined(std::string name) {
  Value v;
  v.string_ = std::move(name);
  return v;
}

Value Value::None() {
  Value v;
  v.kind_ = Kind::kNone;
  return v;
}

Value Value::Bool(bool value) {
  Value v;
  v.kind_ = Kind::kBool;
  v.bool_ = value;
  return v;
}

Value Value::Int(int64_t value) {
  Value v;
  v.kind_ = Kind::kInt;
  v.int_ = value;
  return v;
}

Value Value::Float(double value) {
  Value v;
  v.kind_ = Kind::kFloat;
  v.float_ = value;
  return v;
}

Value Value::String(std::string value) {
  Value v;
  v.kind_ = Kind::kString;
  v.string_ = std::move(value);
  return v;
}

Value Value::List(std::vector<Value> items) {
  Value v;
  v.kind_ = Kind::kList;
  v.list_ = std::make_shared<std::vector<Value>>(std::move(items));
  return v;
}

Value Value::Tuple(std::vector<Value> items) {
  Value v = List(std::move(items));
  v.tuple_ = true;
  return v;
}

Value Value::Generator(std::vector<Value> items) {
  Value v = List(std::move(items));
  v.generator_ = true;
  return v;
}

Value Value::MakeDict(Dict dict) {
  Value v;
  v.kind_ = Kind::kDict;
  v.dict_ = std::make_shared<Dict>(std::move(dict));
  return v;
}

Value Value::Namespace(Dict attributes) {
  Value v = MakeDict(std::move(attributes));
  v.kind_ = Kind::kNamespace;
  return v;
}

Value Value::Function(std::string name, std::function<Value(CallArgs&)> call) {
  Value v;
  v.kind_ = Kind::kCallable;
  v.callable_ = std::make_shared<const Callable>(Callable{std::move(name), std::move(call)});
  return v;
}

Value Value::FromJson(const nlohmann::ordered_json& json) {
  switch (json.type()) {
    case nlohmann::ordered_json::value_t::null:
      return None();
    case nlohmann::ordered_json::value_t::boolean:
      return Bool(json.get<bool>());
    case nlohmann::ordered_json::value_t::number_integer:
      return Int(json.get<int64_t>());
    case nlohmann::ordered_json::value_t::number_unsigned: {
      const uint64_t u = json.get<uint64_t>();
      return u > static_cast<uint64_t>(INT64_MAX) ? Float(static_cast<double>(u))
                                                  : Int(static_cast<int64_t>(u));
    }
    case nlohmann::ordered_json::value_t::number_float:
      return Float(json.get<double>());
    case nlohmann::ordered_json::value_t::string:
      return String(json.get<std::string>());
    case nlohmann::ordered_json::value_t::array: {
      std::vector<Value> items;
      items.reserve(json.size());
      for (const auto& item : json) items.push_back(FromJson(item));
      return List(std::move(items));
    }
    case nlohmann::ordered_json::value_t::object: {
      Dict dict;
      for (const auto& [key, item] : json.items()) dict.Set(key, FromJson(item));
      return MakeDict(std::move(dict));
    }
    default:
      return None();
  }
}

bool Value::Truthy() const {
  switch (kind_) {
    case Kind::kUndefined:
    case Kind::kNone:
      return false;
    case Kind::kBool:
      return bool_;
    case Kind::kInt:
      return int_ != 0;
    case Kind::kFloat:
      return float_ != 0;
    case Kind::kString:
      return !string_.empty();
    case Kind::kList:
      return generator_ || !list_->empty();
    case Kind::kDict:
      return !dict_->entries.empty();
    default:
      return true;
  }
}

const char* Value::TypeName() const {
  switch (kind_) {
    case Kind::kUndefined:
      return "undefined";
    case Kind::kNone:
      return "NoneType";
    case Kind::kBool:
      return "bool";
    case Kind::kInt:
      return "int";
    case Kind::kFloat:
      return "float";
    case Kind::kString:
      return "str";
    case Kind::kList:
      return "list";
    case Kind::kDict:
      return "dict";
    case Kind::kNamespace:
      return "Namespace";
    default:
      return "function";
  }
}

std::string PythonFloatRepr(double value) {
  if (std::isnan(value)) return "nan";
  if (std::isinf(value)) return value < 0 ? "-inf" : "inf";
  if (value == 0) return std::signbit(value) ? "-0.0" : "0.0";
  char buffer[64];
  const auto result = std::to_chars(buffer, buffer + sizeof(buffer), value, std::chars_format::scientific);
  std::string text(buffer, result.ptr);  // e.g. "-1.2345e+02": shortest round-trip digits
  std::string sign;
  if (text[0] == '-') {
    sign = "-";
    text.erase(0, 1);
  }
  const size_t e = text.find('e');
  const int exponent = std::stoi(text.substr(e + 1));
  std::string digits = text.substr(0, e);
  digits.erase(std::remove(digits.begin(), digits.end(), '.'), digits.end());
  if (exponent >= -4 && exponent < 16) {
    std::string out;
    if (exponent >= 0) {
      std::string integer = digits.substr(0, std::min<size_t>(digits.size(), exponent + 1));
      integer.append(exponent + 1 - integer.size(), '0');
      std::string fraction =
          digits.size() > static_cast<size_t>(exponent + 1) ? digits.substr(exponent + 1) : "0";
      out = integer + "." + fraction;
    } else {
      out = "0." + std::string(-exponent - 1, '0') + digits;
    }
    return sign + out;
  }
  std::string mantissa = digits.substr(0, 1);
  if (digits.size() > 1) mantissa += "." + digits.substr(1);
  char exponent_text[16];
  std::snprintf(exponent_text, sizeof(exponent_text), "e%c%02d", exponent < 0 ? '-' : '+',
                std::abs(exponent));
  return sign + mantissa + exponent_text;
}

namespace {

std::string StringRepr(const std::string& text) {
  const bool has_single = text.find('\'') != std::string::npos;
  const bool has_double = text.find('"') != std::string::npos;
  const char quote = has_single && !has_double ? '"' : '\'';
  std::string out(1, quote);
  for (size_t i = 0; i < text.size();) {
    const uint32_t cp = DecodeUtf8(text, i);
    if (cp == '\\') {
      out += "\\\\";
    } else if (cp == static_cast<uint32_t>(quote)) {
      out += '\\';
      out += quote;
    } else if (cp == '\n') {
      out += "\\n";
    } else if (cp == '\r') {
      out += "\\r";
    } else if (cp == '\t') {
      out += "\\t";
    } else if (cp < 0x20 || (cp >= 0x7F && cp < 0xA0) || (cp >= 0xDC80 && cp <= 0xDCFF)) {
      char buffer[8];
      std::snprintf(buffer, sizeof(buffer), "\\x%02x", cp >= 0xDC80 ? cp - 0xDC00 : cp);
      out += buffer;
    } else {
      AppendUtf8(cp, out);
    }
  }
  out += quote;
  return out;
}

void AppendJsonString(const std::string& text, bool ensure_ascii, std::string& out) {
  out += '"';
  for (size_t i = 0; i < text.size();) {
    const size_t start = i;
    const uint32_t cp = DecodeUtf8(text, i);
    char buffer[16];
    switch (cp) {
      case '"':
        out += "\\\"";
        continue;
      case '\\':
        out += "\\\\";
        continue;
      case '\n':
        out += "\\n";
        continue;
      case '\r':
        out += "\\r";
        continue;
      case '\t':
        out += "\\t";
        continue;
      case '\b':
        out += "\\b";
        continue;
      case '\f':
        out += "\\f";
        continue;
      default:
        break;
    }
    if (cp < 0x20 || (ensure_ascii && cp > 0x7E)) {
      if (cp >= 0x10000) {
        const uint32_t v = cp - 0x10000;
        std::snprintf(buffer, sizeof(buffer), "\\u%04x\\u%04x", 0xD800 + (v >> 10), 0xDC00 + (v & 0x3FF));
      } else {
        std::snprintf(buffer, sizeof(buffer), "\\u%04x", cp);
      }
      out += buffer;
    } else {
      out.append(text, start, i - start);
    }
  }
  out += '"';
}

bool DumpJson(const Value& value, const JsonDumpOptions& options, int depth, std::string& out,
              std::string& error) {
  if (depth > 200) {
    error = "tojson: value nested too deeply";
    return false;
  }
  const auto newline = [&](int level) {
    out += '\n';
    for (int k = 0; k < level; ++k) out += options.indent;
  };
  const std::string item_separator =
      options.has_separators ? options.item_separator : (options.has_indent ? "," : ", ");
  const std::string key_separator = options.has_separators ? options.key_separator : ": ";
  switch (value.kind()) {
    case Value::Kind::kNone:
      out += "null";
      return true;
    case Value::Kind::kBool:
      out += value.AsBool() ? "true" : "false";
      return true;
    case Value::Kind::kInt:
      out += std::to_string(value.AsInt());
      return true;
    case Value::Kind::kFloat: {
      const double f = value.AsFloat();
      if (std::isnan(f)) {
        out += "NaN";
      } else if (std::isinf(f)) {
        out += f < 0 ? "-Infinity" : "Infinity";
      } else {
        out += PythonFloatRepr(f);
      }
      return true;
    }
    case Value::Kind::kString:
      AppendJsonString(value.AsString(), options.ensure_ascii, out);
      return true;
    case Value::Kind::kList: {
      if (value.IsGenerator()) {
        error = "Object of type generator is not JSON serializable";
        return false;
      }
      const auto& items = value.AsList();
      if (items.empty()) {
        out += "[]";
        return true;
      }
      out += '[';
      for (size_t k = 0; k < items.size(); ++k) {
        if (k > 0) out += item_separator;
        if (options.has_indent) newline(depth + 1);
        if (!DumpJson(items[k], options, depth + 1, out, error)) return false;
      }
      if (options.has_indent) newline(depth);
      out += ']';
      return true;
    }
    case Value::Kind::kDict: {
      std::vector<const std::pair<std::string, Value>*> entries;
      for (const auto& entry : value.AsDict().entries) entries.push_back(&entry);
      if (entries.empty()) {
        out += "{}";
        return true;
      }
      if (options.sort_keys) {
        std::stable_sort(entries.begin(), entries.end(),
                         [](const auto* a, const auto* b) { return a->first < b->first; });
      }
      out += '{';
      for (size_t k = 0; k < entries.size(); ++k) {
        if (k > 0) out += item_separator;
        if (options.has_indent) newline(depth + 1);
        AppendJsonString(entries[k]->first, options.ensure_ascii, out);
        out += key_separator;
        if (!DumpJson(entries[k]->second, options, depth + 1, out, error)) return false;
      }
      if (options.has_indent) newline(depth);
      out += '}';
      return true;
    }
    default:
      error = std::string("Object of type ") + value.TypeName() + " is not JSON serializable";
      return false;
  }
}

std::string Repr(const Value& value, int depth);

std::string ContainerRepr(const Value& value, int depth) {
  if (depth > 100) return "...";
  if (value.IsGenerator()) return "<generator object>";
  std::string out;
  if (value.IsList()) {
    out = value.IsTuple() ? "(" : "[";
    const auto& items = value.AsList();
    for (size_t k = 0; k < items.size(); ++k) {
      if (k > 0) out += ", ";
      out += Repr(items[k], depth + 1);
    }
    if (value.IsTuple()) return out + (items.size() == 1 ? ",)" : ")");
    return out + "]";
  }
  out = value.IsNamespace() ? "<Namespace {" : "{";
  const auto& entries = value.AsDict().entries;
  for (size_t k = 0; k < entries.size(); ++k) {
    if (k > 0) out += ", ";
    out += StringRepr(entries[k].first) + ": " + Repr(entries[k].second, depth + 1);
  }
  return out + (value.IsNamespace() ? "}>" : "}");
}

std::string Repr(const Value& value, int depth) {
  switch (value.kind()) {
    case Value::Kind::kString:
      return StringRepr(value.AsString());
    case Value::Kind::kUndefined:
      return "Undefined";
    case Value::Kind::kList:
    case Value::Kind::kDict:
    case Value::Kind::kNamespace:
      return ContainerRepr(value, depth);
    default:
      return PythonStr(value);
  }
}

}  // namespace

std::string PythonStr(const Value& value) {
  switch (value.kind()) {
    case Value::Kind::kUndefined:
      return "";
    case Value::Kind::kNone:
      return "None";
    case Value::Kind::kBool:
      return value.AsBool() ? "True" : "False";
    case Value::Kind::kInt:
      return std::to_string(value.AsInt());
    case Value::Kind::kFloat:
      return PythonFloatRepr(value.AsFloat());
    case Value::Kind::kString:
      return value.AsString();
    case Value::Kind::kCallable:
      return "<function " + value.AsCallable().name + ">";
    default:
      return ContainerRepr(value, 0);
  }
}

std::string PythonRepr(const Value& value) { return Repr(value, 0); }

bool PythonJsonDumps(const Value& value, const JsonDumpOptions& options, std::string& out,
                     std::string& error) {
  return DumpJson(value, options, 0, out, error);
}

bool PythonEquals(const Value& a, const Value& b) {
  if (a.IsNumber() && b.IsNumber()) {
    if (a.IsFloat() || b.IsFloat()) return a.AsFloat() == b.AsFloat();
    return a.AsInt() == b.AsInt();
  }
  if (a.kind() != b.kind()) return false;
  switch (a.kind()) {
    case Value::Kind::kUndefined:
    case Value::Kind::kNone:
      return true;
    case Value::Kind::kString:
      return a.AsString() == b.AsString();
    case Value::Kind::kList: {
      if (a.IsTuple() != b.IsTuple()) return false;  // (1, 2) != [1, 2] in Python
      if (a.IsGenerator() || b.IsGenerator()) return &a.AsList() == &b.AsList();
      const auto& x = a.AsList();
      const auto& y = b.AsList();
      if (x.size() != y.size()) return false;
      for (size_t k = 0; k < x.size(); ++k) {
        if (!PythonEquals(x[k], y[k])) return false;
      }
      return true;
    }
    case Value::Kind::kDict: {
      const auto& x = a.AsDict().entries;
      const auto& y = b.AsDict();
      if (x.size() != y.entries.size()) return false;
      for (const auto& [key, item] : x) {
        const Value* other = y.Find(key);
        if (other == nullptr || !PythonEquals(item, *other)) return false;
      }
      return true;
    }
    case Value::Kind::kNamespace:
      return &a.AsDict() == &b.AsDict();
    default:
      return &a.AsCallable() == &b.AsCallable();
  }
}

}  // namespace ringmoe::jinja
