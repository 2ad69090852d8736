// Operators, lookups, iteration and the methods of str, dict and list, with Python's semantics.
#include <algorithm>
#include <cmath>
#include <limits>
#include <optional>

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

const std::string* OptionalString(const CallArgs& args, size_t index, std::string_view name,
                                  const char* method) {
  const Value* value = Argument(args, index, name);
  if (value == nullptr || value->IsNone()) return nullptr;
  if (!value->IsString()) Fail(std::string(method) + "() argument must be str or None");
  return &value->AsString();
}

const std::string& RequiredString(const CallArgs& args, size_t index, std::string_view name,
                                  const char* method) {
  const Value* value = Argument(args, index, name);
  if (value == nullptr || !value->IsString()) Fail(std::string(method) + "() expects a str argument");
  return value->AsString();
}

int64_t OptionalInt(const CallArgs& args, size_t index, std::string_view name, int64_t fallback) {
  const Value* value = Argument(args, index, name);
  if (value == nullptr || value->IsNone()) return fallback;
  if (!value->IsInt() && !value->IsBool()) Fail("an integer argument was expected");
  return value->AsInt();
}

bool AffixMatch(const std::string& text, const Value& affix, bool prefix) {
  const auto match = [&](const Value& candidate) {
    if (!candidate.IsString())
      Fail(prefix ? "startswith first arg must be str or a tuple of str"
                  : "endswith first arg must be str or a tuple of str");
    const std::string& a = candidate.AsString();
    if (a.size() > text.size()) return false;
    return prefix ? text.compare(0, a.size(), a) == 0
                  : text.compare(text.size() - a.size(), a.size(), a) == 0;
  };
  if (affix.IsList()) {
    return std::any_of(affix.AsList().begin(), affix.AsList().end(), match);
  }
  return match(affix);
}

// str.format with {} / {0} / {name} fields (format specs are not supported).
std::string PythonFormat(const std::string& format, const CallArgs& args) {
  std::string out;
  size_t auto_index = 0;
  for (size_t i = 0; i < format.size(); ++i) {
    const char c = format[i];
    if (c == '{' && i + 1 < format.size() && format[i + 1] == '{') {
      out += '{';
      ++i;
    } else if (c == '}' && i + 1 < format.size() && format[i + 1] == '}') {
      out += '}';
      ++i;
    } else if (c == '{') {
      const size_t end = format.find('}', i);
      if (end == std::string::npos) Fail("Single '{' encountered in format string");
      const std::string field = format.substr(i + 1, end - i - 1);
      if (field.find_first_of(":!.[") != std::string::npos)
        Fail("format specs are not supported in format()");
      const Value* value = nullptr;
      if (field.empty()) {
        if (auto_index >= args.positional.size()) Fail("Replacement index out of range for format()");
        value = &args.positional[auto_index++];
      } else if (std::all_of(field.begin(), field.end(), ::isdigit)) {
        const size_t index = std::stoul(field);
        if (index >= args.positional.size()) Fail("Replacement index out of range for format()");
        value = &args.positional[index];
      } else {
        value = args.Keyword(field);
        if (value == nullptr) Fail("format(): no argument named '" + field + "'");
      }
      out += PythonStr(*value);
      i = end;
    } else if (c == '}') {
      Fail("Single '}' encountered in format string");
    } else {
      out += c;
    }
  }
  return out;
}

Value StringMethod(const std::string& text, const std::string& name) {
  static const char* const kMethods[] = {
      "strip", "lstrip",     "rstrip",     "split",   "rsplit",  "startswith", "endswith", "upper",
      "lower", "title",      "capitalize", "replace", "format",  "find",       "rfind",    "count",
      "join",  "splitlines", "isdigit",    "isalpha", "isalnum", "isspace",    "isupper",  "islower"};
  if (std::find_if(std::begin(kMethods), std::end(kMethods), [&](const char* m) { return name == m; }) ==
      std::end(kMethods)) {
    return Value::Undefined(name);
  }
  return Value::Function(name, [text, name](CallArgs& args) -> Value {
    const char* method = name.c_str();
    if (name == "strip" || name == "lstrip" || name == "rstrip") {
      return Value::String(
          PythonStrip(text, OptionalString(args, 0, "chars", method), name != "rstrip", name != "lstrip"));
    }
    if (name == "split" || name == "rsplit") {
      const std::string* sep = OptionalString(args, 0, "sep", method);
      if (sep != nullptr && sep->empty()) Fail("empty separator");
      const int64_t maxsplit = OptionalInt(args, 1, "maxsplit", -1);
      std::vector<std::string> parts;
      if (name == "rsplit" && maxsplit >= 0) {
        // Split from the right: reverse, split, reverse back (byte-wise reversal is safe for ASCII
        // separators; general separators fall back to splitting everything and rejoining the head).
        std::vector<std::string> all = PythonSplit(text, sep, -1);
        if (static_cast<int64_t>(all.size()) > maxsplit + 1 && sep != nullptr) {
          const size_t head = all.size() - static_cast<size_t>(maxsplit);
          std::string joined;
          for (size_t k = 0; k < head; ++k) joined += (k ? *sep : "") + all[k];
          parts.push_back(joined);
          parts.insert(parts.end(), all.begin() + head, all.end());
        } else {
          parts = all;
        }
      } else {
        parts = PythonSplit(text, sep, maxsplit);
      }
      std::vector<Value> items;
      for (auto& part : parts) items.push_back(Value::String(std::move(part)));
      return Value::List(std::move(items));
    }
    if (name == "startswith" || name == "endswith") {
      const Value* affix = Argument(args, 0, "prefix");
      if (affix == nullptr) Fail(name + "() takes at least 1 argument");
      return Value::Bool(AffixMatch(text, *affix, name == "startswith"));
    }
    if (name == "upper") return Value::String(ToUpper(text));
    if (name == "lower") return Value::String(ToLower(text));
    if (name == "title") return Value::String(PythonTitle(text));
    if (name == "capitalize") return Value::String(Capitalize(text));
    if (name == "replace") {
      return Value::String(PythonReplace(text, RequiredString(args, 0, "old", method),
                                         RequiredString(args, 1, "new", method),
                                         OptionalInt(args, 2, "count", -1)));
    }
    if (name == "format") return Value::String(PythonFormat(text, args));
    if (name == "find" || name == "rfind") {
      const std::string& needle = RequiredString(args, 0, "sub", method);
      const size_t at = name == "find" ? text.find(needle) : text.rfind(needle);
      return Value::Int(at == std::string::npos ? -1
                                                : static_cast<int64_t>(CodePointCount(text.substr(0, at))));
    }
    if (name == "count") {
      const std::string& needle = RequiredString(args, 0, "sub", method);
      if (needle.empty()) return Value::Int(static_cast<int64_t>(CodePointCount(text)) + 1);
      int64_t count = 0;
      for (size_t at = text.find(needle); at != std::string::npos; at = text.find(needle, at + needle.size()))
        ++count;
      return Value::Int(count);
    }
    if (name == "join") {
      const Value* items = Argument(args, 0, "iterable");
      if (items == nullptr) Fail("join() takes exactly one argument");
      std::string out;
      bool first = true;
      for (const Value& item : Iterate(*items)) {
        if (!item.IsString()) Fail("sequence item: expected str instance");
        if (!first) out += text;
        out += item.AsString();
        first = false;
      }
      return Value::String(std::move(out));
    }
    if (name == "splitlines") {
      std::vector<Value> lines;
      size_t start = 0;
      for (size_t i = 0; i < text.size(); ++i) {
        if (text[i] == '\n' || text[i] == '\r') {
          lines.push_back(Value::String(text.substr(start, i - start)));
          if (text[i] == '\r' && i + 1 < text.size() && text[i + 1] == '\n') ++i;
          start = i + 1;
        }
      }
      if (start < text.size()) lines.push_back(Value::String(text.substr(start)));
      return Value::List(std::move(lines));
    }
    const auto all = [&](auto predicate) {
      if (text.empty()) return Value::Bool(false);
      for (const std::string& cp : SplitCodePoints(text)) {
        if (!predicate(cp)) return Value::Bool(false);
      }
      return Value::Bool(true);
    };
    if (name == "isdigit")
      return all([](const std::string& cp) {
        return cp.size() == 1 && std::isdigit(static_cast<unsigned char>(cp[0]));
      });
    if (name == "isalpha")
      return all([](const std::string& cp) {
        return cp.size() > 1 || std::isalpha(static_cast<unsigned char>(cp[0]));
      });
    if (name == "isalnum")
      return all([](const std::string& cp) {
        return cp.size() > 1 || std::isalnum(static_cast<unsigned char>(cp[0]));
      });
    if (name == "isspace") return all([](const std::string& cp) { return IsPythonSpace(cp); });
    if (name == "isupper") return Value::Bool(ToUpper(text) == text && ToLower(text) != text);
    return Value::Bool(ToLower(text) == text && ToUpper(text) != text);  // islower
  });
}

Value DictMethod(const Value& dict, const std::string& name) {
  if (name == "items" || name == "keys" || name == "values") {
    return Value::Function(name, [dict, name](CallArgs&) {
      std::vector<Value> items;
      for (const auto& [key, value] : dict.AsDict().entries) {
        if (name == "items") {
          items.push_back(Value::Tuple({Value::String(key), value}));
        } else {
          items.push_back(name == "keys" ? Value::String(key) : value);
        }
      }
      return Value::List(std::move(items));
    });
  }
  if (name == "get") {
    return Value::Function(name, [dict](CallArgs& args) {
      const Value* key = Argument(args, 0, "key");
      if (key == nullptr) Fail("get expected at least 1 argument");
      const Value* fallback = Argument(args, 1, "default");
      if (key->IsString()) {
        if (const Value* found = dict.AsDict().Find(key->AsString())) return *found;
      }
      return fallback != nullptr ? *fallback : Value::None();
    });
  }
  static const char* const kMutating[] = {"update", "pop", "popitem", "setdefault", "clear"};
  for (const char* mutating : kMutating) {
    if (name == mutating) {
      return Value::Function(name, [name](CallArgs&) -> Value {
        Fail("access to attribute '" + name + "' of 'dict' object is unsafe");
      });
    }
  }
  return Value::Undefined(name);
}

Value ListMethod(const Value& list, const std::string& name) {
  if (name == "index" || name == "count") {
    return Value::Function(name, [list, name](CallArgs& args) {
      const Value* needle = Argument(args, 0, "value");
      if (needle == nullptr) Fail(name + "() takes exactly one argument");
      int64_t count = 0;
      const auto& items = list.AsList();
      for (size_t k = 0; k < items.size(); ++k) {
        if (PythonEquals(items[k], *needle)) {
          if (name == "index") return Value::Int(static_cast<int64_t>(k));
          ++count;
        }
      }
      if (name == "index") Fail("value is not in list");
      return Value::Int(count);
    });
  }
  static const char* const kMutating[] = {"append", "extend", "insert", "pop",
                                          "remove", "clear",  "sort",   "reverse"};
  for (const char* mutating : kMutating) {
    if (name == mutating) {
      // transformers renders in an ImmutableSandboxedEnvironment: mutating a list is a SecurityError there.
      return Value::Function(name, [name](CallArgs&) -> Value {
        Fail("access to attribute '" + name + "' of 'list' object is unsafe");
      });
    }
  }
  return Value::Undefined(name);
}

int64_t CheckedAdd(int64_t a, int64_t b) {
  int64_t out;
  if (__builtin_add_overflow(a, b, &out)) Fail("integer overflow");
  return out;
}
int64_t CheckedSub(int64_t a, int64_t b) {
  int64_t out;
  if (__builtin_sub_overflow(a, b, &out)) Fail("integer overflow");
  return out;
}
int64_t CheckedMul(int64_t a, int64_t b) {
  int64_t out;
  if (__builtin_mul_overflow(a, b, &out)) Fail("integer overflow");
  return out;
}

Value Repeat(const Value& sequence, int64_t times) {
  if (times <= 0) return sequence.IsString() ? Value::String("") : Value::List();
  if (sequence.IsString()) {
    if (sequence.AsString().size() * static_cast<uint64_t>(times) > kMaxStringBytes) Fail("string too long");
    std::string out;
    for (int64_t k = 0; k < times; ++k) out += sequence.AsString();
    return Value::String(std::move(out));
  }
  if (sequence.AsList().size() * static_cast<uint64_t>(times) > kMaxListItems) Fail("list too long");
  std::vector<Value> out;
  for (int64_t k = 0; k < times; ++k)
    out.insert(out.end(), sequence.AsList().begin(), sequence.AsList().end());
  return Value::List(std::move(out));
}

[[noreturn]] void UnsupportedOperands(const std::string& op, const Value& a, const Value& b) {
  if (a.IsUndefined() || b.IsUndefined()) {
    Fail("'" + (a.IsUndefined() ? a : b).AsString() + "' is undefined");
  }
  Fail("unsupported operand type(s) for " + op + ": '" + a.TypeName() + "' and '" + b.TypeName() + "'");
}

int CompareOrder(const Value& a, const Value& b, const std::string& op) {
  if (a.IsNumber() && b.IsNumber()) {
    if (a.IsFloat() || b.IsFloat()) return a.AsFloat() < b.AsFloat() ? -1 : a.AsFloat() > b.AsFloat() ? 1 : 0;
    return a.AsInt() < b.AsInt() ? -1 : a.AsInt() > b.AsInt() ? 1 : 0;
  }
  if (a.IsString() && b.IsString()) {
    const int c = a.AsString().compare(b.AsString());  // UTF-8 byte order is code point order
    return c < 0 ? -1 : c > 0 ? 1 : 0;
  }
  if (a.IsList() && b.IsList()) {
    const auto& x = a.AsList();
    const auto& y = b.AsList();
    for (size_t k = 0; k < x.size() && k < y.size(); ++k) {
      if (!PythonEquals(x[k], y[k])) return CompareOrder(x[k], y[k], op);
    }
    return x.size() < y.size() ? -1 : x.size() > y.size() ? 1 : 0;
  }
  Fail("'" + op + "' not supported between instances of '" + a.TypeName() + "' and '" + b.TypeName() + "'");
}

}  // namespace

int64_t Length(const Value& value) {
  switch (value.kind()) {
    case Value::Kind::kUndefined:
      return 0;
    case Value::Kind::kString:
      return static_cast<int64_t>(CodePointCount(value.AsString()));
    case Value::Kind::kList:
      if (value.IsGenerator()) Fail("object of type 'generator' has no len()");
      return static_cast<int64_t>(value.AsList().size());
    case Value::Kind::kDict:
      return static_cast<int64_t>(value.AsDict().entries.size());
    default:
      Fail(std::string("object of type '") + value.TypeName() + "' has no len()");
  }
}

Value GetAttribute(const Value& object, const std::string& name) {
  switch (object.kind()) {
    case Value::Kind::kUndefined:
      Fail("'" + object.AsString() + "' is undefined (looking up attribute '" + name + "')");
    case Value::Kind::kDict: {
      Value method = DictMethod(object, name);
      if (!method.IsUndefined()) return method;
      const Value* found = object.AsDict().Find(name);
      return found != nullptr ? *found : Value::Undefined(name);
    }
    case Value::Kind::kNamespace: {
      const Value* found = object.AsDict().Find(name);
      return found != nullptr ? *found : Value::Undefined(name);
    }
    case Value::Kind::kString:
      return StringMethod(object.AsString(), name);
    case Value::Kind::kList:
      return ListMethod(object, name);
    default:
      return Value::Undefined(name);
  }
}

Value GetItem(const Value& object, const Value& key) {
  switch (object.kind()) {
    case Value::Kind::kUndefined:
      Fail("'" + object.AsString() + "' is undefined (looking up item " + PythonRepr(key) + ")");
    case Value::Kind::kDict:
    case Value::Kind::kNamespace:
      if (key.IsString()) {
        if (const Value* found = object.AsDict().Find(key.AsString())) return *found;
        return object.IsDict() ? GetAttribute(object, key.AsString()) : Value::Undefined(key.AsString());
      }
      return Value::Undefined(PythonStr(key));
    case Value::Kind::kList:
    case Value::Kind::kString: {
      if (object.IsGenerator()) return Value::Undefined(PythonStr(key));  // iterators cannot be indexed
      if (key.IsString()) return GetAttribute(object, key.AsString());
      if (!key.IsInt() && !key.IsBool()) return Value::Undefined(PythonStr(key));
      int64_t index = key.AsInt();
      if (object.IsList()) {
        const int64_t size = static_cast<int64_t>(object.AsList().size());
        if (index < 0) index += size;
        if (index < 0 || index >= size) return Value::Undefined(PythonStr(key));
        return object.AsList()[static_cast<size_t>(index)];
      }
      const std::vector<std::string> cps = SplitCodePoints(object.AsString());
      const int64_t size = static_cast<int64_t>(cps.size());
      if (index < 0) index += size;
      if (index < 0 || index >= size) return Value::Undefined(PythonStr(key));
      return Value::String(cps[static_cast<size_t>(index)]);
    }
    default:
      return Value::Undefined(PythonStr(key));
  }
}

Value GetSlice(const Value& object, const Value& start_value, const Value& stop_value,
               const Value& step_value) {
  if (object.IsUndefined()) Fail("'" + object.AsString() + "' is undefined (slicing it)");
  if (!object.IsList() && !object.IsString())
    Fail(std::string("'") + object.TypeName() + "' object is not subscriptable");
  const auto bound = [](const Value& v, const char* what) -> std::optional<int64_t> {
    if (v.IsUndefined() || v.IsNone()) return std::nullopt;
    if (!v.IsInt() && !v.IsBool()) Fail(std::string("slice ") + what + " must be an integer or None");
    return v.AsInt();
  };
  const int64_t step = bound(step_value, "step").value_or(1);
  if (step == 0) Fail("slice step cannot be zero");
  std::vector<std::string> cps;
  if (object.IsString()) cps = SplitCodePoints(object.AsString());
  const int64_t size =
      object.IsString() ? static_cast<int64_t>(cps.size()) : static_cast<int64_t>(object.AsList().size());
  const auto clamp = [&](std::optional<int64_t> v, int64_t fallback) {
    if (!v) return fallback;
    int64_t i = *v;
    if (i < 0) i = std::max<int64_t>(i + size, step < 0 ? -1 : 0);
    return std::min<int64_t>(i, step < 0 ? size - 1 : size);
  };
  const int64_t start = clamp(bound(start_value, "start"), step < 0 ? size - 1 : 0);
  const int64_t stop = clamp(bound(stop_value, "stop"), step < 0 ? -1 : size);
  std::vector<size_t> picked;
  for (int64_t i = start; step > 0 ? i < stop : i > stop; i += step) picked.push_back(static_cast<size_t>(i));
  if (object.IsString()) {
    std::string out;
    for (size_t i : picked) out += cps[i];
    return Value::String(std::move(out));
  }
  std::vector<Value> out;
  for (size_t i : picked) out.push_back(object.AsList()[i]);
  return Value::List(std::move(out));
}

std::vector<Value> Iterate(const Value& value) {
  switch (value.kind()) {
    case Value::Kind::kUndefined:
      return {};
    case Value::Kind::kList:
      return value.AsList();
    case Value::Kind::kDict: {
      std::vector<Value> keys;
      for (const auto& entry : value.AsDict().entries) keys.push_back(Value::String(entry.first));
      return keys;
    }
    case Value::Kind::kString: {
      std::vector<Value> chars;
      for (auto& cp : SplitCodePoints(value.AsString())) chars.push_back(Value::String(std::move(cp)));
      return chars;
    }
    default:
      Fail(std::string("'") + value.TypeName() + "' object is not iterable");
  }
}

Value Negate(const Value& value) {
  if (value.IsFloat()) return Value::Float(-value.AsFloat());
  if (value.IsInt() || value.IsBool()) return Value::Int(CheckedSub(0, value.AsInt()));
  Fail(std::string("bad operand type for unary -: '") + value.TypeName() + "'");
}

Value BinaryOperation(const std::string& op, const Value& a, const Value& b) {
  if (op == "~") {
    std::string out = PythonStr(a) + PythonStr(b);
    if (out.size() > kMaxStringBytes) Fail("string too long");
    return Value::String(std::move(out));
  }
  const bool numbers = a.IsNumber() && b.IsNumber();
  const bool floats = numbers && (a.IsFloat() || b.IsFloat());
  if (op == "+") {
    if (numbers)
      return floats ? Value::Float(a.AsFloat() + b.AsFloat()) : Value::Int(CheckedAdd(a.AsInt(), b.AsInt()));
    if (a.IsString() && b.IsString()) {
      if (a.AsString().size() + b.AsString().size() > kMaxStringBytes) Fail("string too long");
      return Value::String(a.AsString() + b.AsString());
    }
    if (a.IsList() && b.IsList()) {
      if (a.AsList().size() + b.AsList().size() > kMaxListItems) Fail("list too long");
      std::vector<Value> out = a.AsList();
      out.insert(out.end(), b.AsList().begin(), b.AsList().end());
      return Value::List(std::move(out));
    }
    UnsupportedOperands(op, a, b);
  }
  if (op == "*") {
    if (numbers)
      return floats ? Value::Float(a.AsFloat() * b.AsFloat()) : Value::Int(CheckedMul(a.AsInt(), b.AsInt()));
    if ((a.IsString() || a.IsList()) && (b.IsInt() || b.IsBool())) return Repeat(a, b.AsInt());
    if ((b.IsString() || b.IsList()) && (a.IsInt() || a.IsBool())) return Repeat(b, a.AsInt());
    UnsupportedOperands(op, a, b);
  }
  if (op == "%" && a.IsString()) Fail("printf-style '%' formatting of strings is not supported");
  if (!numbers) UnsupportedOperands(op, a, b);
  if (op == "-")
    return floats ? Value::Float(a.AsFloat() - b.AsFloat()) : Value::Int(CheckedSub(a.AsInt(), b.AsInt()));
  if (op == "/") {
    if (b.AsFloat() == 0) Fail("division by zero");
    return Value::Float(a.AsFloat() / b.AsFloat());
  }
  if (op == "//" || op == "%") {
    if (floats) {
      if (b.AsFloat() == 0) Fail(op == "%" ? "float modulo" : "float floor division by zero");
      const double x = a.AsFloat(), y = b.AsFloat();
      double mod = std::fmod(x, y);
      if (mod != 0 && ((y < 0) != (mod < 0))) mod += y;
      return op == "%" ? Value::Float(mod) : Value::Float(std::round((x - mod) / y));
    }
    const int64_t x = a.AsInt(), y = b.AsInt();
    if (y == 0) Fail("integer division or modulo by zero");
    if (x == std::numeric_limits<int64_t>::min() && y == -1) Fail("integer overflow");
    int64_t quotient = x / y, remainder = x % y;
    if (remainder != 0 && ((remainder < 0) != (y < 0))) {
      remainder += y;
      --quotient;
    }
    return Value::Int(op == "%" ? remainder : quotient);
  }
  if (op == "**") {
    if (!floats && b.AsInt() >= 0) {
      int64_t result = 1, base = a.AsInt();
      for (int64_t e = b.AsInt(); e > 0; --e) {
        result = CheckedMul(result, base);
        if (result == 0 || result == 1) break;
      }
      return Value::Int(result);
    }
    return Value::Float(std::pow(a.AsFloat(), b.AsFloat()));
  }
  Fail("unknown operator " + op);
}

bool Compare(const std::string& op, const Value& a, const Value& b) {
  if (op == "==") return PythonEquals(a, b);
  if (op == "!=") return !PythonEquals(a, b);
  if (op == "in" || op == "notin") {
    bool found = false;
    if (b.IsString()) {
      if (!a.IsString()) Fail("'in <string>' requires string as left operand");
      found = b.AsString().find(a.AsString()) != std::string::npos;
    } else if (b.IsDict() || b.IsNamespace()) {
      found = a.IsString() && b.AsDict().Find(a.AsString()) != nullptr;
    } else if (b.IsList()) {
      found = std::any_of(b.AsList().begin(), b.AsList().end(),
                          [&](const Value& item) { return PythonEquals(item, a); });
    } else if (!b.IsUndefined()) {
      Fail(std::string("argument of type '") + b.TypeName() + "' is not iterable");
    }
    return op == "in" ? found : !found;
  }
  const int order = CompareOrder(a, b, op);
  if (op == "<") return order < 0;
  if (op == ">") return order > 0;
  if (op == "<=") return order <= 0;
  return order >= 0;
}

}  // namespace ringmoe::jinja
