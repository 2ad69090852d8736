// The values a template computes with: Python's None, bool, int, float, str, list and dict, plus Jinja's
// Undefined, namespace() objects and callables (macros, globals, bound methods). Lists, dicts and namespaces
// are shared by reference, as in Python; strings and numbers are copied.
//
// Threading: a Value is not synchronised; values built for one render stay on that render's thread.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "nlohmann/json.hpp"

namespace ringmoe::jinja {

class Value;

// An insertion-ordered str -> Value map (Python dicts keep insertion order, and tojson writes it).
struct Dict {
  std::vector<std::pair<std::string, Value>> entries;

  const Value* Find(std::string_view key) const;
  Value* Find(std::string_view key);
  void Set(std::string key, Value value);
};

// Arguments of a call: positional, then keyword, in source order.
struct CallArgs {
  std::vector<Value> positional;
  std::vector<std::pair<std::string, Value>> keyword;

  const Value* Keyword(std::string_view name) const;
};

struct Callable {
  std::string name;
  std::function<Value(CallArgs&)> call;
};

class Value {
 public:
  enum class Kind : uint8_t {
    kUndefined,
    kNone,
    kBool,
    kInt,
    kFloat,
    kString,
    kList,
    kDict,
    kNamespace,
    kCallable
  };

  Value() = default;  // Undefined.
  static Value Undefined(std::string name = "");
  static Value None();
  static Value Bool(bool value);
  static Value Int(int64_t value);
  static Value Float(double value);
  static Value String(std::string value);
  static Value List(std::vector<Value> items = {});
  // A Python tuple: a list in every respect but printing ("(1, 2)") and equality with lists.
  static Value Tuple(std::vector<Value> items);
  // What Jinja's map/select/reject/selectattr/rejectattr/items/unique filters (and reverse of a list) return:
  // a Python iterator, which is always true, has no len(), is not a sequence and cannot be indexed or dumped
  // as JSON; `| list` makes it a list again.
  static Value Generator(std::vector<Value> items);
  static Value MakeDict(Dict dict = {});
  static Value Namespace(Dict attributes = {});
  static Value Function(std::string name, std::function<Value(CallArgs&)> call);

  // JSON in: objects keep their key order. JSON out: Undefined and callables have no JSON form (returns
  // false).
  static Value FromJson(const nlohmann::ordered_json& json);

  Kind kind() const { return kind_; }
  bool IsUndefined() const { return kind_ == Kind::kUndefined; }
  bool IsNone() const { return kind_ == Kind::kNone; }
  bool IsBool() const { return kind_ == Kind::kBool; }
  bool IsInt() const { return kind_ == Kind::kInt; }
  bool IsFloat() const { return kind_ == Kind::kFloat; }
  bool IsNumber() const { return kind_ == Kind::kInt || kind_ == Kind::kFloat || kind_ == Kind::kBool; }
  bool IsString() const { return kind_ == Kind::kString; }
  bool IsList() const { return kind_ == Kind::kList; }
  bool IsTuple() const { return kind_ == Kind::kList && tuple_; }
  bool IsGenerator() const { return kind_ == Kind::kList && generator_; }
  bool IsDict() const { return kind_ == Kind::kDict; }
  bool IsNamespace() const { return kind_ == Kind::kNamespace; }
  bool IsCallable() const { return kind_ == Kind::kCallable; }

  bool AsBool() const { return bool_; }
  int64_t AsInt() const {
    return kind_ == Kind::kBool ? (bool_ ? 1 : 0) : int_;
  }  // bool is an int, as in Python
  double AsFloat() const { return kind_ == Kind::kFloat ? float_ : static_cast<double>(AsInt()); }
  const std::string& AsString() const { return string_; }  // also the name an Undefined stands for
  std::vector<Value>& AsList() const { return *list_; }
  Dict& AsDict() const { return *dict_; }  // dicts and namespaces
  const Callable& AsCallable() const { return *callable_; }

  bool Truthy() const;
  const char* TypeName() const;

 private:
  Kind kind_ = Kind::kUndefined;
  bool bool_ = false;
  bool tuple_ = false;
  bool generator_ = false;
  int64_t int_ = 0;
  double float_ = 0;
  std::string string_;
  std::shared_ptr<std::vector<Value>> list_;
  std::shared_ptr<Dict> dict_;
  std::shared_ptr<const Callable> callable_;
};

// Python's str() and repr() of a value (what {{ x }} prints, and how lists and dicts print their items).
std::string PythonStr(const Value& value);
std::string PythonRepr(const Value& value);
std::string PythonFloatRepr(double value);

// Python's json.dumps(value, ensure_ascii=, indent=, separators=, sort_keys=) as transformers' tojson filter
// calls it. indent: empty for None, else the indent string. Returns false (with `error` set) for a value json
// cannot encode.
struct JsonDumpOptions {
  bool ensure_ascii = false;
  bool has_indent = false;
  std::string indent;
  bool has_separators = false;
  std::string item_separator = ", ";
  std::string key_separator = ": ";
  bool sort_keys = false;
};
bool PythonJsonDumps(const Value& value, const JsonDumpOptions& options, std::string& out,
                     std::string& error);

// Python's == between values (1 == 1.0 == True; lists and dicts compare deeply).
bool PythonEquals(const Value& a, const Value& b);

}  // namespace ringmoe::jinja
