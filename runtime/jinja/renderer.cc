#include "runtime/jinja/renderer.h"

#include <ctime>
#include <memory>
#include <unordered_map>

#include "runtime/jinja/builtins.h"
#include "runtime/jinja/error.h"

namespace ringmoe::jinja {
namespace {

constexpr int kMaxMacroDepth = 100;
// Statements and expressions being evaluated at once (macros multiply the parser's nesting limit); keeps the
// native stack bounded.
constexpr int kMaxEvalDepth = 800;
constexpr int64_t kMaxRange = 100000;  // Jinja's sandbox refuses larger range() results too

struct Scope {
  std::shared_ptr<Scope> parent;
  std::unordered_map<std::string, Value> variables;

  const Value* Find(const std::string& name) const {
    for (const Scope* scope = this; scope != nullptr; scope = scope->parent.get()) {
      const auto it = scope->variables.find(name);
      if (it != scope->variables.end()) return &it->second;
    }
    return nullptr;
  }
};
using ScopePtr = std::shared_ptr<Scope>;

enum class Flow { kNormal, kBreak, kContinue };

class Renderer {
 public:
  explicit Renderer(const RenderOptions& options) : options_(options) {}

  ~Renderer() {
    // namespace() objects are the only values a template can make point at themselves; empty them so that
    // such cycles do not outlive the render.
    for (Value& ns : namespaces_) ns.AsDict().entries.clear();
    if (root_) root_->variables.clear();
  }

  std::string Run(const Body& body, const Dict& context) {
    root_ = std::make_shared<Scope>();
    for (const auto& [name, value] : context.entries) root_->variables[name] = value;
    std::string out;
    out_ = &out;
    RenderBody(body, root_);
    return out;
  }

 private:
  void Step(Position position) {
    if (++steps_ > options_.max_steps)
      throw TemplateError(position, "the template ran too long (step limit)");
  }

  void Write(const std::string& text, Position position) {
    if (out_->size() + text.size() > options_.max_output_bytes) {
      throw TemplateError(position, "the rendered text exceeds the output limit");
    }
    out_->append(text);
  }

  Flow RenderBody(const Body& body, const ScopePtr& scope) {
    for (const auto& stmt : body) {
      const Flow flow = RenderStatement(*stmt, scope);
      if (flow != Flow::kNormal) return flow;
    }
    return Flow::kNormal;
  }

  struct DepthGuard {
    DepthGuard(int& depth, Position position) : depth(depth) {
      if (++depth > kMaxEvalDepth) {
        --depth;
        throw TemplateError(position, "the template nests too deeply while rendering");
      }
    }
    ~DepthGuard() { --depth; }
    int& depth;
  };

  Flow RenderStatement(const Stmt& stmt, const ScopePtr& scope) {
    Step(stmt.position);
    DepthGuard guard(eval_depth_, stmt.position);
    try {
      switch (stmt.kind) {
        case Stmt::Kind::kText:
          Write(stmt.text, stmt.position);
          return Flow::kNormal;
        case Stmt::Kind::kPrint:
          Write(PythonStr(Eval(*stmt.expr, scope)), stmt.position);
          return Flow::kNormal;
        case Stmt::Kind::kIf:
          for (size_t k = 0; k < stmt.conditions.size(); ++k) {
            if (Eval(*stmt.conditions[k], scope).Truthy()) return RenderBody(stmt.bodies[k], scope);
          }
          return RenderBody(stmt.else_body, scope);
        case Stmt::Kind::kFor:
          return RenderFor(stmt, scope);
        case Stmt::Kind::kSet:
          Assign(stmt, Eval(*stmt.expr, scope), scope);
          return Flow::kNormal;
        case Stmt::Kind::kSetBlock:
          scope->variables[stmt.targets[0]] = Value::String(Capture(stmt.bodies[0], scope));
          return Flow::kNormal;
        case Stmt::Kind::kMacro:
          scope->variables[stmt.name] = MakeMacro(stmt, scope);
          return Flow::kNormal;
        case Stmt::Kind::kBreak:
          return Flow::kBreak;
        case Stmt::Kind::kContinue:
          return Flow::kContinue;
        case Stmt::Kind::kPassThrough:
          return RenderBody(stmt.bodies[0], scope);
      }
    } catch (const TemplateError& error) {
      if (error.has_position()) throw;
      TemplateError located(stmt.position, error.what());
      located.raised_by_template = error.raised_by_template;
      throw located;
    }
    return Flow::kNormal;
  }

  std::string Capture(const Body& body, const ScopePtr& scope) {
    std::string captured;
    std::string* outer = out_;
    out_ = &captured;
    try {
      RenderBody(body, scope);
    } catch (...) {
      out_ = outer;
      throw;
    }
    out_ = outer;
    return captured;
  }

  void Bind(const std::vector<std::string>& targets, const Value& value, Scope& scope) {
    if (targets.size() == 1) {
      scope.variables[targets[0]] = value;
      return;
    }
    const std::vector<Value> items = Iterate(value);
    if (items.size() != targets.size()) {
      throw TemplateError(items.size() > targets.size() ? "too many values to unpack"
                                                        : "not enough values to unpack");
    }
    for (size_t k = 0; k < targets.size(); ++k) scope.variables[targets[k]] = items[k];
  }

  void Assign(const Stmt& stmt, const Value& value, const ScopePtr& scope) {
    if (stmt.attribute.empty()) {
      Bind(stmt.targets, value, *scope);
      return;
    }
    const Value* target = scope->Find(stmt.targets[0]);
    if (target == nullptr || !target->IsNamespace()) {
      throw TemplateError("cannot assign attribute on non-namespace object");
    }
    target->AsDict().Set(stmt.attribute, value);
  }

  Flow RenderFor(const Stmt& stmt, const ScopePtr& scope) {
    const Value iterable = Eval(*stmt.expr, scope);
    if (iterable.IsNone() || iterable.IsNamespace() || iterable.IsNumber() || iterable.IsCallable()) {
      throw TemplateError(std::string("'") + iterable.TypeName() + "' object is not iterable");
    }
    std::vector<Value> items = Iterate(iterable);
    if (stmt.filter) {
      std::vector<Value> kept;
      auto filter_scope = std::make_shared<Scope>();
      filter_scope->parent = scope;
      for (Value& item : items) {
        Step(stmt.position);
        Bind(stmt.targets, item, *filter_scope);
        if (Eval(*stmt.filter, filter_scope).Truthy()) kept.push_back(std::move(item));
      }
      items = std::move(kept);
    }
    if (items.empty()) return RenderBody(stmt.else_body, scope);
    const int64_t length = static_cast<int64_t>(items.size());
    for (int64_t index = 0; index < length; ++index) {
      Step(stmt.position);
      auto body_scope = std::make_shared<Scope>();
      body_scope->parent = scope;
      Bind(stmt.targets, items[static_cast<size_t>(index)], *body_scope);
      Dict loop;
      loop.Set("index", Value::Int(index + 1));
      loop.Set("index0", Value::Int(index));
      loop.Set("revindex", Value::Int(length - index));
      loop.Set("revindex0", Value::Int(length - index - 1));
      loop.Set("first", Value::Bool(index == 0));
      loop.Set("last", Value::Bool(index == length - 1));
      loop.Set("length", Value::Int(length));
      loop.Set("depth", Value::Int(1));
      loop.Set("depth0", Value::Int(0));
      loop.Set("previtem", index > 0 ? items[static_cast<size_t>(index - 1)] : Value::Undefined("previtem"));
      loop.Set("nextitem",
               index + 1 < length ? items[static_cast<size_t>(index + 1)] : Value::Undefined("nextitem"));
      loop.Set("cycle", Value::Function("cycle", [index](CallArgs& args) {
                 if (args.positional.empty()) throw TemplateError("no items for cycling given");
                 return args.positional[static_cast<size_t>(index) % args.positional.size()];
               }));
      body_scope->variables["loop"] = Value::Namespace(std::move(loop));
      if (RenderBody(stmt.bodies[0], body_scope) == Flow::kBreak) break;
    }
    return Flow::kNormal;
  }

  Value MakeMacro(const Stmt& stmt, const ScopePtr& scope) {
    std::weak_ptr<Scope> defining = scope;  // weak: the scope holds the macro, the macro must not hold it
    const Stmt* macro = &stmt;
    return Value::Function(stmt.name, [this, macro, defining](CallArgs& args) -> Value {
      ScopePtr parent = defining.lock();
      if (!parent) throw TemplateError("macro '" + macro->name + "' called after its scope ended");
      if (args.positional.size() > macro->params.size()) {
        throw TemplateError("macro '" + macro->name + "' takes not more than " +
                            std::to_string(macro->params.size()) + " argument(s)");
      }
      for (const auto& [name, value] : args.keyword) {
        bool known = false;
        for (const auto& param : macro->params) known = known || param.first == name;
        if (!known)
          throw TemplateError("macro '" + macro->name + "' takes no keyword argument '" + name + "'");
      }
      if (++macro_depth_ > kMaxMacroDepth) {
        --macro_depth_;
        throw TemplateError("macro calls nested too deeply");
      }
      struct DepthRelease {
        int& depth;
        ~DepthRelease() { --depth; }
      } release{macro_depth_};
      auto call_scope = std::make_shared<Scope>();
      call_scope->parent = parent;
      for (size_t k = 0; k < macro->params.size(); ++k) {
        const auto& [name, default_value] = macro->params[k];
        if (k < args.positional.size()) {
          call_scope->variables[name] = args.positional[k];
        } else if (const Value* keyword = args.Keyword(name)) {
          call_scope->variables[name] = *keyword;
        } else if (default_value) {
          call_scope->variables[name] = Eval(*default_value, call_scope);
        } else {
          call_scope->variables[name] = Value::Undefined(name);
        }
      }
      return Value::String(Capture(macro->bodies[0], call_scope));
    });
  }

  Value Global(const std::string& name) {
    if (name == "raise_exception") {
      return Value::Function(name, [](CallArgs& args) -> Value {
        TemplateError error(args.positional.empty() ? std::string() : PythonStr(args.positional[0]));
        error.raised_by_template = true;
        throw error;
      });
    }
    if (name == "strftime_now") {
      return Value::Function(name, [this](CallArgs& args) {
        if (args.positional.empty() || !args.positional[0].IsString()) {
          throw TemplateError("strftime_now needs a format string");
        }
        const std::time_t now = options_.now.value_or(std::time(nullptr));
        std::tm local{};
        localtime_r(&now, &local);
        char buffer[512];
        const size_t size =
            std::strftime(buffer, sizeof(buffer), args.positional[0].AsString().c_str(), &local);
        return Value::String(std::string(buffer, size));
      });
    }
    if (name == "namespace" || name == "dict") {
      const bool is_namespace = name == "namespace";
      return Value::Function(name, [this, is_namespace](CallArgs& args) {
        Dict attributes;
        for (const Value& positional : args.positional) {
          if (!positional.IsDict())
            throw TemplateError("namespace()/dict() takes a dict and keyword arguments");
          for (const auto& [key, value] : positional.AsDict().entries) attributes.Set(key, value);
        }
        for (auto& [key, value] : args.keyword) attributes.Set(key, value);
        if (!is_namespace) return Value::MakeDict(std::move(attributes));
        Value ns = Value::Namespace(std::move(attributes));
        namespaces_.push_back(ns);
        return ns;
      });
    }
    if (name == "range") {
      return Value::Function(name, [](CallArgs& args) {
        std::vector<int64_t> bounds;
        for (const Value& v : args.positional) {
          if (!v.IsInt() && !v.IsBool()) throw TemplateError("range() arguments must be integers");
          bounds.push_back(v.AsInt());
        }
        if (bounds.empty() || bounds.size() > 3) throw TemplateError("range expected 1 to 3 arguments");
        const int64_t start = bounds.size() == 1 ? 0 : bounds[0];
        const int64_t stop = bounds.size() == 1 ? bounds[0] : bounds[1];
        const int64_t step = bounds.size() == 3 ? bounds[2] : 1;
        if (step == 0) throw TemplateError("range() arg 3 must not be zero");
        std::vector<Value> items;
        for (int64_t i = start; step > 0 ? i < stop : i > stop; i += step) {
          if (static_cast<int64_t>(items.size()) >= kMaxRange) {
            throw TemplateError("range too big, refusing to create a range of more than 100000 items");
          }
          items.push_back(Value::Int(i));
          if ((step > 0 && i > INT64_MAX - step) || (step < 0 && i < INT64_MIN - step)) break;
        }
        return Value::List(std::move(items));
      });
    }
    return Value::Undefined(name);
  }

  Value Lookup(const std::string& name, const ScopePtr& scope) {
    if (const Value* value = scope->Find(name)) return *value;
    return Global(name);
  }

  CallArgs EvalArguments(const Expr& expr, size_t first, const ScopePtr& scope) {
    CallArgs args;
    for (size_t k = first; k < expr.items.size(); ++k) args.positional.push_back(Eval(*expr.items[k], scope));
    for (const auto& [name, value] : expr.keywords) args.keyword.emplace_back(name, Eval(*value, scope));
    return args;
  }

  Value Eval(const Expr& expr, const ScopePtr& scope) {
    DepthGuard guard(eval_depth_, expr.position);
    try {
      return EvalUnlocated(expr, scope);
    } catch (const TemplateError& error) {
      if (error.has_position()) throw;
      TemplateError located(expr.position, error.what());
      located.raised_by_template = error.raised_by_template;
      throw located;
    }
  }

  Value EvalUnlocated(const Expr& expr, const ScopePtr& scope) {
    switch (expr.kind) {
      case Expr::Kind::kLiteral:
        return expr.value;
      case Expr::Kind::kName:
        return Lookup(expr.name, scope);
      case Expr::Kind::kList:
      case Expr::Kind::kTuple: {
        std::vector<Value> items;
        for (const auto& item : expr.items) items.push_back(Eval(*item, scope));
        return expr.kind == Expr::Kind::kTuple ? Value::Tuple(std::move(items))
                                               : Value::List(std::move(items));
      }
      case Expr::Kind::kDict: {
        Dict dict;
        for (size_t k = 0; k + 1 < expr.items.size(); k += 2) {
          const Value key = Eval(*expr.items[k], scope);
          dict.Set(key.IsString() ? key.AsString() : PythonStr(key), Eval(*expr.items[k + 1], scope));
        }
        return Value::MakeDict(std::move(dict));
      }
      case Expr::Kind::kGetAttr:
        return GetAttribute(Eval(*expr.items[0], scope), expr.name);
      case Expr::Kind::kGetItem:
        return GetItem(Eval(*expr.items[0], scope), Eval(*expr.items[1], scope));
      case Expr::Kind::kSlice: {
        const auto part = [&](size_t k) {
          return expr.items[k] ? Eval(*expr.items[k], scope) : Value::None();
        };
        return GetSlice(Eval(*expr.items[0], scope), part(1), part(2), part(3));
      }
      case Expr::Kind::kCall: {
        const Value callee = Eval(*expr.items[0], scope);
        CallArgs args = EvalArguments(expr, 1, scope);
        if (!callee.IsCallable()) {
          if (callee.IsUndefined()) throw TemplateError("'" + callee.AsString() + "' is undefined (called)");
          throw TemplateError(std::string("'") + callee.TypeName() + "' object is not callable");
        }
        Step(expr.position);
        return callee.AsCallable().call(args);
      }
      case Expr::Kind::kFilter: {
        const Value value = Eval(*expr.items[0], scope);
        CallArgs args = EvalArguments(expr, 1, scope);
        return ApplyFilter(expr.name, value, args);
      }
      case Expr::Kind::kTest: {
        const Value value = Eval(*expr.items[0], scope);
        CallArgs args = EvalArguments(expr, 1, scope);
        return Value::Bool(ApplyTest(expr.name, value, args) != expr.negated);
      }
      case Expr::Kind::kNeg:
        return Negate(Eval(*expr.items[0], scope));
      case Expr::Kind::kPos: {
        Value value = Eval(*expr.items[0], scope);
        if (!value.IsNumber())
          throw TemplateError(std::string("bad operand type for unary +: '") + value.TypeName() + "'");
        return value.IsBool() ? Value::Int(value.AsInt()) : value;
      }
      case Expr::Kind::kNot:
        return Value::Bool(!Eval(*expr.items[0], scope).Truthy());
      case Expr::Kind::kAnd: {
        Value left = Eval(*expr.items[0], scope);
        return left.Truthy() ? Eval(*expr.items[1], scope) : left;
      }
      case Expr::Kind::kOr: {
        Value left = Eval(*expr.items[0], scope);
        return left.Truthy() ? left : Eval(*expr.items[1], scope);
      }
      case Expr::Kind::kBinary:
        return BinaryOperation(expr.name, Eval(*expr.items[0], scope), Eval(*expr.items[1], scope));
      case Expr::Kind::kCompare: {
        Value left = Eval(*expr.items[0], scope);
        for (size_t k = 0; k < expr.ops.size(); ++k) {
          Value right = Eval(*expr.items[k + 1], scope);
          if (!Compare(expr.ops[k], left, right)) return Value::Bool(false);
          left = std::move(right);
        }
        return Value::Bool(true);
      }
      case Expr::Kind::kCondition:
        if (Eval(*expr.items[0], scope).Truthy()) return Eval(*expr.items[1], scope);
        return expr.items[2] ? Eval(*expr.items[2], scope) : Value::Undefined();
    }
    return Value::Undefined();
  }

  const RenderOptions& options_;
  ScopePtr root_;
  std::string* out_ = nullptr;
  int64_t steps_ = 0;
  int macro_depth_ = 0;
  int eval_depth_ = 0;
  std::vector<Value> namespaces_;
};

}  // namespace

std::string RenderTree(const Body& body, const Dict& context, const RenderOptions& options) {
  Renderer renderer(options);
  return renderer.Run(body, context);
}

}  // namespace ringmoe::jinja
