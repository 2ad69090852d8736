// The parsed template: statement and expression nodes, each with the line and column it starts at (1-based),
// so that render errors can name them. Built once by the parser; immutable afterwards.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "runtime/jinja/value.h"

namespace ringmoe::jinja {

struct Position {
  int line = 1;
  int column = 1;
};

struct Expr;
using ExprPtr = std::unique_ptr<Expr>;

struct Expr {
  enum class Kind {
    kLiteral,    // value
    kName,       // name
    kList,       // items
    kTuple,      // items
    kDict,       // items = key, value, key, value...
    kGetAttr,    // items[0].name
    kGetItem,    // items[0][items[1]]
    kSlice,      // items[0][items[1]:items[2]:items[3]] (null parts absent)
    kCall,       // items[0](items[1..], keywords)
    kFilter,     // items[0] | name(items[1..], keywords)
    kTest,       // items[0] is [not] name(items[1..])
    kNeg,        // -items[0]
    kPos,        // +items[0]
    kNot,        // not items[0]
    kAnd,        // items[0] and items[1]
    kOr,         // items[0] or items[1]
    kBinary,     // items[0] op items[1]: + - * / // % ** ~
    kCompare,    // items[0] ops[0] items[1] ops[1] items[2]...: == != < > <= >= in notin
    kCondition,  // items[1] if items[0] else items[2] (items[2] null: Undefined)
  };
  Kind kind;
  Position position;
  Value value;
  std::string name;  // name, attribute, filter, test or operator
  bool negated = false;
  std::vector<ExprPtr> items;
  std::vector<std::string> ops;
  std::vector<std::pair<std::string, ExprPtr>> keywords;
};

struct Stmt;
using Body = std::vector<std::unique_ptr<Stmt>>;

struct Stmt {
  enum class Kind {
    kText,      // text
    kPrint,     // {{ expr }}
    kIf,        // conditions[k] -> bodies[k]; else_body
    kFor,       // for targets in expr [if filter]: bodies[0]; else_body
    kSet,       // set targets (or target_object.attribute) = expr
    kSetBlock,  // set targets[0] %} bodies[0] {% endset
    kMacro,     // macro name(params) bodies[0]
    kBreak,
    kContinue,
    kPassThrough,  // generation blocks (transformers' AssistantTracker): render bodies[0]
  };
  Kind kind;
  Position position;
  std::string text;
  ExprPtr expr;
  ExprPtr filter;
  std::vector<ExprPtr> conditions;
  std::vector<Body> bodies;
  Body else_body;
  std::vector<std::string> targets;
  std::string attribute;  // for `set ns.attribute = ...`
  std::string name;
  std::vector<std::pair<std::string, ExprPtr>> params;  // macro parameters and their defaults (may be null)
};

}  // namespace ringmoe::jinja
