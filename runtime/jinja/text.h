// Python str semantics over UTF-8: strings index, slice, strip and change case by code point, as Python does.
// Invalid UTF-8 bytes count as one code point each (U+FFFD stands for them only where a code point is
// needed).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace ringmoe::jinja {

// Splits UTF-8 into code points, each as its own byte string (invalid bytes stay single bytes).
std::vector<std::string> SplitCodePoints(std::string_view text);
size_t CodePointCount(std::string_view text);

// str.isspace() for one code point given as UTF-8.
bool IsPythonSpace(std::string_view code_point);

// str.strip()/lstrip()/rstrip(): `chars` null means whitespace, else the set of code points in *chars.
std::string PythonStrip(std::string_view text, const std::string* chars, bool left, bool right);

// str.upper()/lower() (simple case mapping per code point), str.capitalize(), Jinja's title filter and
// Python's str.title().
std::string ToUpper(std::string_view text);
std::string ToLower(std::string_view text);
std::string Capitalize(std::string_view text);
std::string JinjaTitle(std::string_view text);
std::string PythonTitle(std::string_view text);

// str.split(sep, maxsplit) (sep null: runs of whitespace) and str.replace(old, new, count).
std::vector<std::string> PythonSplit(std::string_view text, const std::string* sep, int64_t maxsplit);
std::string PythonReplace(std::string_view text, std::string_view from, std::string_view to, int64_t count);

// Appends code point `cp` as UTF-8.
void AppendUtf8(uint32_t cp, std::string& out);
// Decodes one code point at text[i]; advances i. Invalid bytes decode to 0xDC00 + byte (Python's surrogate
// escape), so that they round-trip.
uint32_t DecodeUtf8(std::string_view text, size_t& i);

}  // namespace ringmoe::jinja
