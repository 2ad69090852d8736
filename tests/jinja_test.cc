// runtime/jinja: the Jinja2 subset, checked against what Python's jinja2 (as transformers configures it)
// renders for the same template; expected strings were produced by jinja2 3.1 with trim_blocks and
// lstrip_blocks on.
#include "runtime/jinja/jinja.h"

#include <gtest/gtest.h>

#include <ctime>
#include <string>

#include "nlohmann/json.hpp"
#include "runtime/jinja/value.h"

namespace ringmoe::jinja {
namespace {

std::string Render(const std::string& source,
                   const nlohmann::ordered_json& context = nlohmann::ordered_json::object()) {
  absl::StatusOr<Template> tpl = Template::Parse(source);
  if (!tpl.ok()) return "PARSE ERROR: " + std::string(tpl.status().message());
  absl::StatusOr<std::string> out = tpl->Render(context);
  if (!out.ok()) return "RENDER ERROR: " + std::string(out.status().message());
  return *out;
}

std::string ParseError(const std::string& source) {
  absl::StatusOr<Template> tpl = Template::Parse(source, "t.jinja");
  return tpl.ok() ? "" : std::string(tpl.status().message());
}

TEST(JinjaLiterals, PrintLikePython) {
  EXPECT_EQ(Render("{{ 1 }} {{ 1.0 }} {{ 2.5e-7 }} {{ 1e20 }} {{ 0.1 + 0.2 }}"),
            "1 1.0 2.5e-07 1e+20 0.30000000000000004");
  EXPECT_EQ(Render("{{ none }} {{ true }} {{ False }} {{ 'a' 'b' }}"), "None True False ab");
  EXPECT_EQ(Render("{{ [1, 'a', none, [true]] }} {{ {'k': \"it's\"} }}"),
            "[1, 'a', None, [True]] {'k': \"it's\"}");
  EXPECT_EQ(Render("{{ undefined_name }}|{{ {'a': 1}.b }}|"), "||");
  EXPECT_EQ(Render("{{ (1, 2) }} {{ (1,) }} {{ () }} {{ (1, 2) == [1, 2] }} {{ [(1, 'a')] }}"),
            "(1, 2) (1,) () False [(1, 'a')]");
}

TEST(JinjaOperators, ArithmeticFollowsPython) {
  EXPECT_EQ(Render("{{ 7 // 2 }} {{ -7 // 2 }} {{ -7 % 3 }} {{ 7 / 2 }} {{ 2 ** 10 }} {{ 3 * 'ab' }}"),
            "3 -4 2 3.5 1024 ababab");
  EXPECT_EQ(Render("{{ 'a' ~ 1 ~ none }} {{ [1] + [2] }} {{ 'x' + 'y' }}"), "a1None [1, 2] xy");
  EXPECT_EQ(Render("{{ 1 == 1.0 }} {{ 'b' in 'abc' }} {{ 2 not in [1, 3] }} {{ 1 < 2 < 3 }} {{ 'a' < 'b' }}"),
            "True True True True True");
  EXPECT_EQ(Render("{{ 0 or 'x' }} {{ 1 and 'y' }} {{ not none }} {{ 'a' if 0 else 'b' }}{{ 'c' if false }}"),
            "x y True b");
  EXPECT_NE(Render("{{ 'a' + 1 }}").find("RENDER ERROR"), std::string::npos);
  EXPECT_NE(Render("{{ 1 // 0 }}").find("division"), std::string::npos);
  EXPECT_NE(Render("{{ 9223372036854775807 + 1 }}").find("overflow"), std::string::npos);
}

TEST(JinjaSubscripts, SlicesAndIndexesByCodePoint) {
  const nlohmann::ordered_json context = {{"s", "héllo😀"}, {"xs", {1, 2, 3, 4}}};
  EXPECT_EQ(
      Render("{{ xs[::-1] }} {{ xs[1:3] }} {{ xs[-1] }} {{ xs[10] }}|{{ xs[:-1] }} {{ xs[::2] }}", context),
      "[4, 3, 2, 1] [2, 3] 4 |[1, 2, 3] [1, 3]");
  EXPECT_EQ(Render("{{ s[1] }} {{ s[-1] }} {{ s[1:3] }} {{ s | length }} {{ s[::-1] }}", context),
            "é 😀 él 6 😀olléh");
}

TEST(JinjaStatements, ForLoopVariables) {
  const nlohmann::ordered_json context = {{"xs", {"a", "b", "c"}}};
  EXPECT_EQ(Render("{% for x in xs %}{{ loop.index }}{{ loop.index0 }}{{ loop.revindex }}{{ loop.first }}"
                   "{{ loop.last }}{{ loop.length }}{{ loop.previtem }}{{ loop.nextitem }};{% endfor %}",
                   context),
            "103TrueFalse3b;212FalseFalse3ac;321FalseTrue3b;");
  EXPECT_EQ(Render("{% for x in xs if x != 'b' %}{{ x }}{{ loop.length }}{% endfor %}", context), "a2c2");
  EXPECT_EQ(Render("{% for x in [] %}x{% else %}empty{% endfor %}"), "empty");
  EXPECT_EQ(Render("{% for k, v in {'a': 1, 'b': 2}.items() %}{{ k }}={{ v }} {% endfor %}"), "a=1 b=2 ");
  EXPECT_EQ(Render("{% for k in {'z': 1, 'a': 2} %}{{ k }}{% endfor %}"), "za");
  EXPECT_EQ(Render("{% for i in range(6) %}{% if i == 4 %}{% break %}{% endif %}{% if i == 1 %}{% continue %}"
                   "{% endif %}{{ i }}{% endfor %}"),
            "023");
  EXPECT_EQ(Render("{% for x in xs %}{{ loop.cycle('o', 'e') }}{% endfor %}", context), "oeo");
}

TEST(JinjaStatements, SetScopesAndNamespaces) {
  // A set inside a loop does not leak out of it; a namespace carries state across iterations.
  EXPECT_EQ(Render("{% set x = 1 %}{% for i in [1, 2] %}{% set x = x + i %}{% endfor %}{{ x }}"), "1");
  EXPECT_EQ(Render("{% set ns = namespace(x=1) %}{% for i in [1, 2] %}{% set ns.x = ns.x + i %}{% endfor %}"
                   "{{ ns.x }}"),
            "4");
  EXPECT_EQ(Render("{% if true %}{% set y = 'kept' %}{% endif %}{{ y }}"), "kept");
  EXPECT_EQ(Render("{% set a, b = [1, 2] %}{{ b }}{{ a }}"), "21");
  EXPECT_EQ(Render("{% set block %}x{{ 1 + 1 }}{% endset %}[{{ block }}]"), "[x2]");
  EXPECT_NE(Render("{% set d = {} %}{% set d.x = 1 %}").find("non-namespace"), std::string::npos);
}

TEST(JinjaStatements, MacrosTakeDefaultsAndKeywords) {
  EXPECT_EQ(
      Render(
          "{% macro f(a, b='B') %}<{{ a }}{{ b }}>{% endmacro %}{{ f(1) }}{{ f(2, 'c') }}{{ f(b=3, a=4) }}"),
      "<1B><2c><43>");
  EXPECT_EQ(
      Render("{% macro fact(n) %}{% if n > 1 %}{{ n }}*{{ fact(n - 1) }}{% else %}1{% endif %}{% endmacro %}"
             "{{ fact(4) }}"),
      "4*3*2*1");
  EXPECT_NE(Render("{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}").find("too deeply"), std::string::npos);
}

TEST(JinjaWhitespace, TrimAndLstripBlocksAsTransformersSetsThem) {
  EXPECT_EQ(Render("a\n  {% if true %}\n  b\n  {% endif %}\nc"), "a\n  b\nc");
  EXPECT_EQ(Render("a  {%- if true -%}  b  {%- endif -%}  c"), "abc");
  EXPECT_EQ(Render("{{ 'x' }}\n{{ 'y' }}\n"), "x\ny");  // newline after }} kept; one trailing newline dropped
  EXPECT_EQ(Render("a\n  {#- note #}\nb"), "ab");
  EXPECT_EQ(Render("  {%+ if true %}x{% endif %}"), "  x");
  EXPECT_EQ(Render("{% if true +%}\nx{% endif %}"), "\nx");
  EXPECT_EQ(Render("x\r\ny"), "x\ny");
}

TEST(JinjaFilters, CommonFilters) {
  const nlohmann::ordered_json context = {
      {"ms", {{{"role", "user"}, {"n", 1}}, {{"role", "bot"}, {"n", 2}}, {{"role", "user"}, {"n", 3}}}}};
  EXPECT_EQ(
      Render("{{ ms | map(attribute='role') | join(',') }} {{ ms | selectattr('role', 'equalto', 'user') | "
             "map(attribute='n') | list }} {{ ms | rejectattr('role', 'eq', 'user') | list | length }}",
             context),
      "user,bot,user [1, 3] 1");
  EXPECT_EQ(Render("{{ '  x  ' | trim }}|{{ 'ab' | upper }}{{ 'AB' | lower }} {{ 'hello wORLD' | title }} "
                   "{{ 'hello World' | capitalize }} {{ 'aXbX' | replace('X', '-') }}"),
            "x|ABab Hello World Hello world a-b-");
  EXPECT_EQ(
      Render(
          "{{ [3, 1, 2] | first }}{{ [3, 1, 2] | last }}{{ [3, 1] | reverse | list }} {{ '12' | int + 1 }} "
          "{{ 'x' | int }} {{ 2.7 | int }} {{ 42 | string }}"),
      "32[1, 3] 13 0 2 42");
  EXPECT_EQ(
      Render("{{ missing | default('d') }} {{ '' | default('e', true) }} {{ {'a': 1} | items | list }}"),
      "d e [('a', 1)]");
  EXPECT_EQ(Render("{{ [1, 2, 3, 4] | select('even') | list }} {{ [1, 2, 3] | reject('odd') | list }}"),
            "[2, 4] [2]");
}

TEST(JinjaFilters, ToJsonMatchesTransformers) {
  const nlohmann::ordered_json context = {
      {"v", {{"z", 1}, {"a", {1.5, nullptr, true}}, {"s", "é\"\n\u0001<"}}}};
  // Insertion order, non-ASCII kept, no HTML escaping (transformers' tojson, not Jinja's).
  EXPECT_EQ(Render("{{ v | tojson }}", context), R"({"z": 1, "a": [1.5, null, true], "s": "é\"\n\u0001<"})");
  EXPECT_EQ(Render("{{ v | tojson(sort_keys=true) }}", context),
            R"({"a": [1.5, null, true], "s": "é\"\n\u0001<", "z": 1})");
  EXPECT_EQ(
      Render("{{ v | tojson(indent=2) }}", context),
      "{\n  \"z\": 1,\n  \"a\": [\n    1.5,\n    null,\n    true\n  ],\n  \"s\": \"é\\\"\\n\\u0001<\"\n}");
  EXPECT_EQ(Render("{{ 'é😀' | tojson(ensure_ascii=true) }} {{ {} | tojson(indent=4) }} {{ [] | tojson }}"),
            R"("\u00e9\ud83d\ude00" {} [])");
  EXPECT_NE(Render("{{ nothing | tojson }}").find("undefined"), std::string::npos);
}

TEST(JinjaTests, TypeAndValueTests) {
  EXPECT_EQ(
      Render("{{ x is defined }}{{ x is undefined }}{{ none is none }}{{ 'a' is string }}{{ {} is mapping }}"
             "{{ [] is iterable }}{{ 'a' is sequence }}{{ 1.5 is number }}{{ true is boolean }}"),
      "FalseTrueTrueTrueTrueTrueTrueTrueTrue");
  EXPECT_EQ(
      Render("{{ true is true }}{{ 1 is true }}{{ false is false }}{{ 3 is odd }}{{ 4 is divisibleby 2 }}"
             "{{ 'a' is equalto 'a' }}{{ 2 is eq(3) }}{{ x is not defined }}"),
      "TrueFalseTrueTrueTrueTrueFalseTrue");
}

TEST(JinjaMethods, StringAndDictMethods) {
  EXPECT_EQ(
      Render(
          "{{ ' a b '.strip() }}|{{ 'xxaxx'.lstrip('x') }}|{{ 'a,b,,c'.split(',') }}|{{ 'a  b'.split() }}"),
      "a b|axx|['a', 'b', '', 'c']|['a', 'b']");
  EXPECT_EQ(
      Render(
          "{{ 'abc'.startswith('ab') }}{{ 'abc'.endswith(('x', 'c')) }}{{ 'Ab'.upper() }}{{ 'Ab'.lower() }}"
          "{{ 'a-b'.replace('-', '+') }}{{ '{} {}'.format(1, 'x') }}{{ 'hello world'.title() }}"),
      "TrueTrueABaba+b1 xHello World");
  EXPECT_EQ(
      Render("{% set d = {'a': 1, 'b': 2} %}{{ d.keys() | list }}{{ d.values() | list }}{{ d.get('a') }}"
             "{{ d.get('z') }}{{ d.get('z', 0) }}"),
      "['a', 'b'][1, 2]1None0");
  // transformers renders in Jinja's immutable sandbox: mutating a list is refused.
  EXPECT_NE(Render("{% set xs = [] %}{{ xs.append(1) }}").find("unsafe"), std::string::npos);
}

TEST(JinjaGlobals, RaiseExceptionAndStrftimeNow) {
  absl::StatusOr<Template> tpl =
      Template::Parse("line one\n{{ raise_exception('bad role: ' ~ r) }}", "t.jinja");
  ASSERT_TRUE(tpl.ok());
  absl::StatusOr<std::string> out = tpl->Render(nlohmann::ordered_json{{"r", "x"}});
  ASSERT_FALSE(out.ok());
  EXPECT_NE(std::string(out.status().message()).find("t.jinja:2:"), std::string::npos) << out.status();
  EXPECT_NE(std::string(out.status().message()).find("bad role: x"), std::string::npos) << out.status();

  std::tm fixed{};
  fixed.tm_year = 2024 - 1900;
  fixed.tm_mon = 6;
  fixed.tm_mday = 26;
  fixed.tm_hour = 12;
  fixed.tm_isdst = -1;
  RenderOptions options;
  options.now = std::mktime(&fixed);
  absl::StatusOr<Template> date = Template::Parse("{{ strftime_now('%d %b %Y') }}");
  ASSERT_TRUE(date.ok());
  EXPECT_EQ(*date->Render(nlohmann::ordered_json::object(), options), "26 Jul 2024");
}

TEST(JinjaErrors, ReportedAtLoadWithLineAndColumn) {
  EXPECT_EQ(ParseError("ok\n{% if x %}"),
            "t.jinja:2:11: syntax error: unexpected end of template: expected 'endif'");
  EXPECT_NE(ParseError("a\n  {% frobnicate %}").find("t.jinja:2:6: syntax error: unknown tag 'frobnicate'"),
            std::string::npos)
      << ParseError("a\n  {% frobnicate %}");
  EXPECT_NE(ParseError("{{ x | nosuchfilter }}").find("no filter named 'nosuchfilter'"), std::string::npos);
  EXPECT_NE(ParseError("{{ x is nosuchtest }}").find("no test named 'nosuchtest'"), std::string::npos);
  EXPECT_NE(ParseError("{% include 'x' %}").find("not supported"), std::string::npos);
  EXPECT_NE(ParseError("{{ 'unterminated }}").find("unterminated string"), std::string::npos);
  EXPECT_NE(ParseError("{% break %}").find("outside of a loop"), std::string::npos);
  EXPECT_NE(ParseError("{{ " + std::string(300, '(') + "1" + std::string(300, ')') + " }}")
                .find("nested too deeply"),
            std::string::npos);
  EXPECT_EQ(ParseError("{% for x in y %}{% endfor %}{% macro m(a, b=1) %}{% endmacro %}"), "");
}

TEST(JinjaLimits, RunawayTemplatesStopWithAnError) {
  absl::StatusOr<Template> tpl = Template::Parse(
      "{% for i in range(100000) %}{% for j in range(100000) %}x"
      "{% endfor %}{% endfor %}");
  ASSERT_TRUE(tpl.ok());
  RenderOptions options;
  options.max_output_bytes = 1000;
  absl::StatusOr<std::string> out = tpl->Render(nlohmann::ordered_json::object(), options);
  ASSERT_FALSE(out.ok());
  EXPECT_NE(std::string(out.status().message()).find("output limit"), std::string::npos);
  EXPECT_NE(Render("{{ range(1000000) | length }}").find("range too big"), std::string::npos);
}

}  // namespace
}  // namespace ringmoe::jinja
