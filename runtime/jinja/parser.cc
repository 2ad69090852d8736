#include "runtime/jinja/parser.h"

#include <algorithm>
#include <initializer_list>

#include "runtime/jinja/builtins.h"
#include "runtime/jinja/error.h"

namespace ringmoe::jinja {
namespace {

constexpr int kMaxDepth = 200;  // nesting of expressions and blocks; deeper input is an error, not a crash

class Parser {
 public:
  explicit Parser(const std::vector<Token>& tokens) : tokens_(tokens) {}

  Body ParseTemplate() {
    std::string end_tag;
    Body body = ParseBody({}, end_tag);
    return body;
  }

 private:
  struct DepthGuard {
    explicit DepthGuard(Parser& parser) : parser(parser) {
      if (++parser.depth_ > kMaxDepth)
        throw TemplateError(parser.Peek().position, "template nested too deeply");
    }
    ~DepthGuard() { --parser.depth_; }
    Parser& parser;
  };

  const Token& Peek(size_t ahead = 0) const { return tokens_[std::min(index_ + ahead, tokens_.size() - 1)]; }
  const Token& Next() {
    const Token& token = tokens_[index_];
    if (index_ + 1 < tokens_.size()) ++index_;
    return token;
  }
  bool IsOperator(const char* op, size_t ahead = 0) const {
    return Peek(ahead).kind == Token::Kind::kOperator && Peek(ahead).text == op;
  }
  bool IsName(const char* name, size_t ahead = 0) const {
    return Peek(ahead).kind == Token::Kind::kName && Peek(ahead).text == name;
  }
  static std::string Describe(const Token& token) {
    switch (token.kind) {
      case Token::Kind::kEnd:
        return "end of template";
      case Token::Kind::kBlockEnd:
        return "'%}'";
      case Token::Kind::kVariableEnd:
        return "'}}'";
      case Token::Kind::kText:
        return "template text";
      case Token::Kind::kString:
        return "a string";
      default:
        return "'" + token.text + "'";
    }
  }
  [[noreturn]] void Fail(const std::string& message) const { throw TemplateError(Peek().position, message); }
  void ExpectOperator(const char* op) {
    if (!IsOperator(op)) Fail(std::string("expected '") + op + "', found " + Describe(Peek()));
    Next();
  }
  void ExpectBlockEnd() {
    if (Peek().kind != Token::Kind::kBlockEnd) Fail("expected '%}', found " + Describe(Peek()));
    Next();
  }
  std::string ExpectName() {
    if (Peek().kind != Token::Kind::kName) Fail("expected a name, found " + Describe(Peek()));
    return Next().text;
  }

  // Statements until one of `end_tags` opens a block ({% end_tag ...); that tag's name is left in end_tag
  // and its name token consumed. At top level (no end tags) runs to the end of the template.
  Body ParseBody(std::initializer_list<const char*> end_tags, std::string& end_tag) {
    DepthGuard guard(*this);
    Body body;
    while (true) {
      const Token& token = Peek();
      switch (token.kind) {
        case Token::Kind::kEnd:
          if (end_tags.size() > 0) {
            Fail(std::string("unexpected end of template: expected '") + *(end_tags.end() - 1) + "'");
          }
          return body;
        case Token::Kind::kText: {
          auto stmt = MakeStmt(Stmt::Kind::kText, token.position);
          stmt->text = token.text;
          Next();
          body.push_back(std::move(stmt));
          break;
        }
        case Token::Kind::kVariableBegin: {
          auto stmt = MakeStmt(Stmt::Kind::kPrint, token.position);
          Next();
          stmt->expr = ParseTuple();
          if (Peek().kind != Token::Kind::kVariableEnd) Fail("expected '}}', found " + Describe(Peek()));
          Next();
          body.push_back(std::move(stmt));
          break;
        }
        case Token::Kind::kBlockBegin: {
          const Token& name = Peek(1);
          if (name.kind != Token::Kind::kName) {
            Next();
            Fail("expected a tag name after '{%', found " + Describe(name));
          }
          for (const char* end : end_tags) {
            if (name.text == end) {
              Next();
              Next();
              end_tag = end;
              return body;
            }
          }
          Next();
          body.push_back(ParseStatement());
          break;
        }
        default:
          Fail("unexpected " + Describe(token));
      }
    }
  }

  static std::unique_ptr<Stmt> MakeStmt(Stmt::Kind kind, Position position) {
    auto stmt = std::make_unique<Stmt>();
    stmt->kind = kind;
    stmt->position = position;
    return stmt;
  }

  std::unique_ptr<Stmt> ParseStatement() {
    const Token& tag = Next();
    const std::string& name = tag.text;
    std::string end_tag;
    if (name == "if") {
      auto stmt = MakeStmt(Stmt::Kind::kIf, tag.position);
      stmt->conditions.push_back(ParseExpression());
      ExpectBlockEnd();
      while (true) {
        stmt->bodies.push_back(ParseBody({"elif", "else", "endif"}, end_tag));
        if (end_tag == "elif") {
          stmt->conditions.push_back(ParseExpression());
          ExpectBlockEnd();
        } else if (end_tag == "else") {
          ExpectBlockEnd();
          stmt->else_body = ParseBody({"endif"}, end_tag);
          ExpectBlockEnd();
          return stmt;
        } else {
          ExpectBlockEnd();
          return stmt;
        }
      }
    }
    if (name == "for") {
      auto stmt = MakeStmt(Stmt::Kind::kFor, tag.position);
      stmt->targets = ParseTargets();
      if (!IsName("in")) Fail("expected 'in' in for loop, found " + Describe(Peek()));
      Next();
      stmt->expr = ParseTuple(/*with_condition=*/false);
      if (IsName("if")) {
        Next();
        stmt->filter = ParseExpression();
      }
      if (IsName("recursive")) Fail("recursive for loops are not supported");
      ExpectBlockEnd();
      ++loop_depth_;
      stmt->bodies.push_back(ParseBody({"else", "endfor"}, end_tag));
      --loop_depth_;
      ExpectBlockEnd();
      if (end_tag == "else") {
        stmt->else_body = ParseBody({"endfor"}, end_tag);
        ExpectBlockEnd();
      }
      return stmt;
    }
    if (name == "set") {
      auto stmt = MakeStmt(Stmt::Kind::kSet, tag.position);
      if (Peek().kind == Token::Kind::kName && IsOperator(".", 1)) {
        stmt->targets.push_back(Next().text);
        Next();
        stmt->attribute = ExpectName();
      } else {
        stmt->targets = ParseTargets();
      }
      if (IsOperator("=")) {
        Next();
        stmt->expr = ParseTuple();
        ExpectBlockEnd();
        return stmt;
      }
      if (!stmt->attribute.empty() || stmt->targets.size() != 1) Fail("expected '=' in set");
      ExpectBlockEnd();
      stmt->kind = Stmt::Kind::kSetBlock;
      stmt->bodies.push_back(ParseBody({"endset"}, end_tag));
      ExpectBlockEnd();
      return stmt;
    }
    if (name == "macro") {
      auto stmt = MakeStmt(Stmt::Kind::kMacro, tag.position);
      stmt->name = ExpectName();
      ExpectOperator("(");
      while (!IsOperator(")")) {
        if (!stmt->params.empty()) ExpectOperator(",");
        if (IsOperator(")")) break;
        std::string param = ExpectName();
        ExprPtr default_value;
        if (IsOperator("=")) {
          Next();
          default_value = ParseExpression();
        } else if (!stmt->params.empty() && stmt->params.back().second != nullptr) {
          Fail("non-default argument follows default argument");
        }
        stmt->params.emplace_back(std::move(param), std::move(default_value));
      }
      Next();
      ExpectBlockEnd();
      const int outer_loop_depth = loop_depth_;
      loop_depth_ = 0;  // a macro body is not inside the loop around its definition
      stmt->bodies.push_back(ParseBody({"endmacro"}, end_tag));
      loop_depth_ = outer_loop_depth;
      if (Peek().kind == Token::Kind::kName) Next();  // {% endmacro name %}
      ExpectBlockEnd();
      return stmt;
    }
    if (name == "break" || name == "continue") {
      if (loop_depth_ == 0) throw TemplateError(tag.position, "'" + name + "' outside of a loop");
      auto stmt = MakeStmt(name == "break" ? Stmt::Kind::kBreak : Stmt::Kind::kContinue, tag.position);
      ExpectBlockEnd();
      return stmt;
    }
    if (name == "generation") {
      auto stmt = MakeStmt(Stmt::Kind::kPassThrough, tag.position);
      ExpectBlockEnd();
      stmt->bodies.push_back(ParseBody({"endgeneration"}, end_tag));
      ExpectBlockEnd();
      return stmt;
    }
    static const char* const kUnsupported[] = {"call",  "filter", "include",    "import", "from", "extends",
                                               "block", "with",   "autoescape", "raw",    "do",   "trans"};
    for (const char* unsupported : kUnsupported) {
      if (name == unsupported) throw TemplateError(tag.position, "the '" + name + "' tag is not supported");
    }
    throw TemplateError(tag.position, "unknown tag '" + name + "'");
  }

  std::vector<std::string> ParseTargets() {
    std::vector<std::string> targets;
    const bool parenthesised = IsOperator("(");
    if (parenthesised) Next();
    targets.push_back(ExpectName());
    while (IsOperator(",")) {
      Next();
      if (Peek().kind != Token::Kind::kName) break;
      targets.push_back(Next().text);
    }
    if (parenthesised) ExpectOperator(")");
    return targets;
  }

  ExprPtr Make(Expr::Kind kind, Position position) {
    auto expr = std::make_unique<Expr>();
    expr->kind = kind;
    expr->position = position;
    return expr;
  }

  // expr (',' expr)* as a tuple when there is a comma.
  ExprPtr ParseTuple(bool with_condition = true) {
    const Position position = Peek().position;
    ExprPtr first = ParseExpression(with_condition);
    if (!IsOperator(",")) return first;
    auto tuple = Make(Expr::Kind::kTuple, position);
    tuple->items.push_back(std::move(first));
    while (IsOperator(",")) {
      Next();
      if (Peek().kind == Token::Kind::kBlockEnd || Peek().kind == Token::Kind::kVariableEnd || IsName("if"))
        break;
      tuple->items.push_back(ParseExpression(with_condition));
    }
    return tuple;
  }

  ExprPtr ParseExpression(bool with_condition = true) {
    DepthGuard guard(*this);
    ExprPtr expr = ParseOr();
    while (with_condition && IsName("if")) {
      auto condition = Make(Expr::Kind::kCondition, Next().position);
      condition->items.push_back(ParseOr());
      condition->items.insert(condition->items.begin() + 1, std::move(expr));
      if (IsName("else")) {
        Next();
        condition->items.push_back(ParseExpression());
      } else {
        condition->items.push_back(nullptr);
      }
      // items: condition, value, else-value
      expr = std::move(condition);
    }
    return expr;
  }

  ExprPtr Binary(Expr::Kind kind, std::string op, ExprPtr left, ExprPtr right, Position position) {
    auto expr = Make(kind, position);
    expr->name = std::move(op);
    expr->items.push_back(std::move(left));
    expr->items.push_back(std::move(right));
    return expr;
  }

  ExprPtr ParseOr() {
    ExprPtr left = ParseAnd();
    while (IsName("or")) {
      const Position position = Next().position;
      left = Binary(Expr::Kind::kOr, "or", std::move(left), ParseAnd(), position);
    }
    return left;
  }

  ExprPtr ParseAnd() {
    ExprPtr left = ParseNot();
    while (IsName("and")) {
      const Position position = Next().position;
      left = Binary(Expr::Kind::kAnd, "and", std::move(left), ParseNot(), position);
    }
    return left;
  }

  ExprPtr ParseNot() {
    if (IsName("not")) {
      DepthGuard guard(*this);
      auto expr = Make(Expr::Kind::kNot, Next().position);
      expr->items.push_back(ParseNot());
      return expr;
    }
    return ParseCompare();
  }

  ExprPtr ParseCompare() {
    const Position position = Peek().position;
    ExprPtr first = ParseMath1();
    ExprPtr compare;
    while (true) {
      std::string op;
      if (Peek().kind == Token::Kind::kOperator &&
          (Peek().text == "==" || Peek().text == "!=" || Peek().text == "<" || Peek().text == ">" ||
           Peek().text == "<=" || Peek().text == ">=")) {
        op = Next().text;
      } else if (IsName("in")) {
        Next();
        op = "in";
      } else if (IsName("not") && IsName("in", 1)) {
        Next();
        Next();
        op = "notin";
      } else {
        break;
      }
      if (!compare) {
        compare = Make(Expr::Kind::kCompare, position);
        compare->items.push_back(std::move(first));
      }
      compare->ops.push_back(op);
      compare->items.push_back(ParseMath1());
    }
    return compare ? std::move(compare) : std::move(first);
  }

  ExprPtr ParseMath1() {
    ExprPtr left = ParseConcat();
    while (IsOperator("+") || IsOperator("-")) {
      const Token& op = Next();
      left = Binary(Expr::Kind::kBinary, op.text, std::move(left), ParseConcat(), op.position);
    }
    return left;
  }

  ExprPtr ParseConcat() {
    ExprPtr left = ParseMath2();
    while (IsOperator("~")) {
      const Token& op = Next();
      left = Binary(Expr::Kind::kBinary, "~", std::move(left), ParseMath2(), op.position);
    }
    return left;
  }

  ExprPtr ParseMath2() {
    ExprPtr left = ParsePow();
    while (IsOperator("*") || IsOperator("/") || IsOperator("//") || IsOperator("%")) {
      const Token& op = Next();
      left = Binary(Expr::Kind::kBinary, op.text, std::move(left), ParsePow(), op.position);
    }
    return left;
  }

  ExprPtr ParsePow() {
    ExprPtr left = ParseUnary(true);
    while (IsOperator("**")) {
      const Token& op = Next();
      left = Binary(Expr::Kind::kBinary, "**", std::move(left), ParseUnary(true), op.position);
    }
    return left;
  }

  ExprPtr ParseUnary(bool with_filter) {
    DepthGuard guard(*this);
    ExprPtr node;
    if (IsOperator("-") || IsOperator("+")) {
      const Token& op = Next();
      node = Make(op.text == "-" ? Expr::Kind::kNeg : Expr::Kind::kPos, op.position);
      node->items.push_back(ParseUnary(false));
    } else {
      node = ParsePostfix(ParsePrimary());
    }
    return with_filter ? ParseFilterExpr(std::move(node)) : std::move(node);
  }

  ExprPtr ParsePrimary() {
    const Token& token = Peek();
    switch (token.kind) {
      case Token::Kind::kName: {
        Next();
        auto expr = Make(Expr::Kind::kLiteral, token.position);
        if (token.text == "true" || token.text == "True") {
          expr->value = Value::Bool(true);
        } else if (token.text == "false" || token.text == "False") {
          expr->value = Value::Bool(false);
        } else if (token.text == "none" || token.text == "None") {
          expr->value = Value::None();
        } else {
          expr->kind = Expr::Kind::kName;
          expr->name = token.text;
        }
        return expr;
      }
      case Token::Kind::kString: {
        auto expr = Make(Expr::Kind::kLiteral, token.position);
        std::string text;
        while (Peek().kind == Token::Kind::kString) text += Next().text;  // adjacent literals concatenate
        expr->value = Value::String(std::move(text));
        return expr;
      }
      case Token::Kind::kInt: {
        auto expr = Make(Expr::Kind::kLiteral, Next().position);
        expr->value = Value::Int(token.int_value);
        return expr;
      }
      case Token::Kind::kFloat: {
        auto expr = Make(Expr::Kind::kLiteral, Next().position);
        expr->value = Value::Float(token.float_value);
        return expr;
      }
      case Token::Kind::kOperator:
        if (token.text == "(") {
          Next();
          if (IsOperator(")")) {
            Next();
            return Make(Expr::Kind::kTuple, token.position);
          }
          ExprPtr inner = ParseExpression();
          if (IsOperator(",")) {
            auto tuple = Make(Expr::Kind::kTuple, token.position);
            tuple->items.push_back(std::move(inner));
            while (IsOperator(",")) {
              Next();
              if (IsOperator(")")) break;
              tuple->items.push_back(ParseExpression());
            }
            inner = std::move(tuple);
          }
          ExpectOperator(")");
          return inner;
        }
        if (token.text == "[") {
          Next();
          auto list = Make(Expr::Kind::kList, token.position);
          while (!IsOperator("]")) {
            if (!list->items.empty()) ExpectOperator(",");
            if (IsOperator("]")) break;
            list->items.push_back(ParseExpression());
          }
          Next();
          return list;
        }
        if (token.text == "{") {
          Next();
          auto dict = Make(Expr::Kind::kDict, token.position);
          while (!IsOperator("}")) {
            if (!dict->items.empty()) ExpectOperator(",");
            if (IsOperator("}")) break;
            dict->items.push_back(ParseExpression());
            ExpectOperator(":");
            dict->items.push_back(ParseExpression());
          }
          Next();
          return dict;
        }
        break;
      default:
        break;
    }
    Fail("unexpected " + Describe(token) + " in an expression");
  }

  void ParseCallArguments(Expr& call) {
    ExpectOperator("(");
    bool first = true;
    while (!IsOperator(")")) {
      if (!first) ExpectOperator(",");
      first = false;
      if (IsOperator(")")) break;
      if (IsOperator("*") || IsOperator("**")) Fail("*args and **kwargs in calls are not supported");
      if (Peek().kind == Token::Kind::kName && IsOperator("=", 1)) {
        std::string name = Next().text;
        Next();
        call.keywords.emplace_back(std::move(name), ParseExpression());
      } else {
        if (!call.keywords.empty()) Fail("positional argument follows keyword argument");
        call.items.push_back(ParseExpression());
      }
    }
    Next();
  }

  ExprPtr ParsePostfix(ExprPtr node) {
    while (true) {
      if (IsOperator(".")) {
        const Position position = Next().position;
        if (Peek().kind == Token::Kind::kInt) {
          auto item = Make(Expr::Kind::kGetItem, position);
          auto index = Make(Expr::Kind::kLiteral, position);
          index->value = Value::Int(Next().int_value);
          item->items.push_back(std::move(node));
          item->items.push_back(std::move(index));
          node = std::move(item);
          continue;
        }
        auto attribute = Make(Expr::Kind::kGetAttr, position);
        attribute->name = ExpectName();
        attribute->items.push_back(std::move(node));
        node = std::move(attribute);
      } else if (IsOperator("[")) {
        const Position position = Next().position;
        ExprPtr start, stop, step;
        bool slice = false;
        if (!IsOperator(":")) start = ParseExpression();
        if (IsOperator(":")) {
          slice = true;
          Next();
          if (!IsOperator(":") && !IsOperator("]")) stop = ParseExpression();
          if (IsOperator(":")) {
            Next();
            if (!IsOperator("]")) step = ParseExpression();
          }
        }
        ExpectOperator("]");
        auto item = Make(slice ? Expr::Kind::kSlice : Expr::Kind::kGetItem, position);
        item->items.push_back(std::move(node));
        item->items.push_back(std::move(start));
        if (slice) {
          item->items.push_back(std::move(stop));
          item->items.push_back(std::move(step));
        }
        node = std::move(item);
      } else if (IsOperator("(")) {
        auto call = Make(Expr::Kind::kCall, Peek().position);
        call->items.push_back(std::move(node));
        ParseCallArguments(*call);
        node = std::move(call);
      } else {
        return node;
      }
    }
  }

  ExprPtr ParseFilterExpr(ExprPtr node) {
    while (true) {
      if (IsOperator("|")) {
        auto filter = Make(Expr::Kind::kFilter, Next().position);
        filter->name = ExpectName();
        if (!IsKnownFilter(filter->name)) {
          throw TemplateError(filter->position, "no filter named '" + filter->name + "'");
        }
        filter->items.push_back(std::move(node));
        if (IsOperator("(")) ParseCallArguments(*filter);
        node = std::move(filter);
      } else if (IsName("is")) {
        auto test = Make(Expr::Kind::kTest, Next().position);
        if (IsName("not")) {
          Next();
          test->negated = true;
        }
        test->name = ExpectName();
        if (!IsKnownTest(test->name))
          throw TemplateError(test->position, "no test named '" + test->name + "'");
        test->items.push_back(std::move(node));
        if (IsOperator("(")) {
          ParseCallArguments(*test);
        } else if ((Peek().kind == Token::Kind::kName || Peek().kind == Token::Kind::kString ||
                    Peek().kind == Token::Kind::kInt || Peek().kind == Token::Kind::kFloat ||
                    IsOperator("[") || IsOperator("{")) &&
                   !IsName("else") && !IsName("or") && !IsName("and") && !IsName("if") && !IsName("in") &&
                   !IsName("not")) {
          test->items.push_back(ParsePostfix(ParsePrimary()));
        }
        node = std::move(test);
      } else if (IsOperator("(")) {
        auto call = Make(Expr::Kind::kCall, Peek().position);
        call->items.push_back(std::move(node));
        ParseCallArguments(*call);
        node = std::move(call);
      } else {
        return node;
      }
    }
  }

  const std::vector<Token>& tokens_;
  size_t index_ = 0;
  int depth_ = 0;
  int loop_depth_ = 0;
};

}  // namespace

Body Parse(const std::vector<Token>& tokens) { return Parser(tokens).ParseTemplate(); }

}  // namespace ringmoe::jinja
