#include "runtime/jinja/text.h"

#include <utf8proc.h>

#include <algorithm>

namespace ringmoe::jinja {

uint32_t DecodeUtf8(std::string_view text, size_t& i) {
  const auto byte = [&](size_t k) { return static_cast<unsigned char>(text[k]); };
  const unsigned char lead = byte(i);
  int length = 0;
  uint32_t cp = 0;
  if (lead < 0x80) {
    ++i;
    return lead;
  } else if ((lead & 0xE0) == 0xC0 && lead >= 0xC2) {
    length = 2;
    cp = lead & 0x1F;
  } else if ((lead & 0xF0) == 0xE0) {
    length = 3;
    cp = lead & 0x0F;
  } else if ((lead & 0xF8) == 0xF0 && lead <= 0xF4) {
    length = 4;
    cp = lead & 0x07;
  } else {
    ++i;
    return 0xDC00 + lead;
  }
  if (i + length > text.size()) {
    ++i;
    return 0xDC00 + lead;
  }
  for (int k = 1; k < length; ++k) {
    if ((byte(i + k) & 0xC0) != 0x80) {
      ++i;
      return 0xDC00 + lead;
    }
    cp = (cp << 6) | (byte(i + k) & 0x3F);
  }
  const bool overlong = (length == 3 && cp < 0x800) || (length == 4 && (cp < 0x10000 || cp > 0x10FFFF));
  if (overlong || (cp >= 0xD800 && cp <= 0xDFFF)) {
    ++i;
    return 0xDC00 + lead;
  }
  i += length;
  return cp;
}

void AppendUtf8(uint32_t cp, std::string& out) {
  if (cp >= 0xDC80 && cp <= 0xDCFF) {  // an invalid byte carried through (see DecodeUtf8)
    out.push_back(static_cast<char>(cp - 0xDC00));
  } else if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

namespace {

std::vector<uint32_t> Decode(std::string_view text) {
  std::vector<uint32_t> cps;
  cps.reserve(text.size());
  for (size_t i = 0; i < text.size();) cps.push_back(DecodeUtf8(text, i));
  return cps;
}

std::string Encode(const std::vector<uint32_t>& cps) {
  std::string out;
  out.reserve(cps.size());
  for (uint32_t cp : cps) AppendUtf8(cp, out);
  return out;
}

bool IsSpaceCp(uint32_t cp) {
  return (cp >= 0x09 && cp <= 0x0D) || (cp >= 0x1C && cp <= 0x20) || cp == 0x85 || cp == 0xA0 ||
         cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F ||
         cp == 0x205F || cp == 0x3000;
}

bool IsSurrogateEscape(uint32_t cp) { return cp >= 0xDC80 && cp <= 0xDCFF; }

uint32_t Upper(uint32_t cp) {
  return IsSurrogateEscape(cp) ? cp : static_cast<uint32_t>(utf8proc_toupper(cp));
}
uint32_t Lower(uint32_t cp) {
  return IsSurrogateEscape(cp) ? cp : static_cast<uint32_t>(utf8proc_tolower(cp));
}
bool IsCased(uint32_t cp) { return !IsSurrogateEscape(cp) && (Upper(cp) != cp || Lower(cp) != cp); }

}  // namespace

std::vector<std::string> SplitCodePoints(std::string_view text) {
  std::vector<std::string> out;
  for (size_t i = 0; i < text.size();) {
    const size_t start = i;
    DecodeUtf8(text, i);
    out.emplace_back(text.substr(start, i - start));
  }
  return out;
}

size_t CodePointCount(std::string_view text) {
  size_t count = 0;
  for (size_t i = 0; i < text.size(); ++count) DecodeUtf8(text, i);
  return count;
}

bool IsPythonSpace(std::string_view code_point) {
  size_t i = 0;
  return !code_point.empty() && IsSpaceCp(DecodeUtf8(code_point, i));
}

std::string PythonStrip(std::string_view text, const std::string* chars, bool left, bool right) {
  const std::vector<uint32_t> cps = Decode(text);
  std::vector<uint32_t> set;
  if (chars != nullptr) set = Decode(*chars);
  const auto strip = [&](uint32_t cp) {
    return chars == nullptr ? IsSpaceCp(cp) : std::find(set.begin(), set.end(), cp) != set.end();
  };
  size_t begin = 0, end = cps.size();
  if (left) {
    while (begin < end && strip(cps[begin])) ++begin;
  }
  if (right) {
    while (end > begin && strip(cps[end - 1])) --end;
  }
  return Encode(std::vector<uint32_t>(cps.begin() + begin, cps.begin() + end));
}

std::string ToUpper(std::string_view text) {
  std::vector<uint32_t> cps = Decode(text);
  for (uint32_t& cp : cps) cp = Upper(cp);
  return Encode(cps);
}

std::string ToLower(std::string_view text) {
  std::vector<uint32_t> cps = Decode(text);
  for (uint32_t& cp : cps) cp = Lower(cp);
  return Encode(cps);
}

std::string Capitalize(std::string_view text) {
  std::vector<uint32_t> cps = Decode(text);
  for (size_t k = 0; k < cps.size(); ++k) cps[k] = k == 0 ? Upper(cps[k]) : Lower(cps[k]);
  return Encode(cps);
}

std::string JinjaTitle(std::string_view text) {
  // Jinja: words start after runs of whitespace, '-', '(', '{', '[' or '<'; first letter upper, rest lower.
  std::vector<uint32_t> cps = Decode(text);
  bool word_start = true;
  for (uint32_t& cp : cps) {
    const bool separator = IsSpaceCp(cp) || cp == '-' || cp == '(' || cp == '{' || cp == '[' || cp == '<';
    if (separator) {
      word_start = true;
      continue;
    }
    cp = word_start ? Upper(cp) : Lower(cp);
    word_start = false;
  }
  return Encode(cps);
}

std::string PythonTitle(std::string_view text) {
  std::vector<uint32_t> cps = Decode(text);
  bool previous_cased = false;
  for (uint32_t& cp : cps) {
    const bool cased = IsCased(cp);
    if (cased) cp = previous_cased ? Lower(cp) : Upper(cp);
    previous_cased = cased;
  }
  return Encode(cps);
}

std::vector<std::string> PythonSplit(std::string_view text, const std::string* sep, int64_t maxsplit) {
  std::vector<std::string> parts;
  if (sep == nullptr) {
    const std::vector<uint32_t> cps = Decode(text);
    size_t k = 0;
    while (k < cps.size()) {
      while (k < cps.size() && IsSpaceCp(cps[k])) ++k;
      if (k == cps.size()) break;
      if (maxsplit >= 0 && static_cast<int64_t>(parts.size()) == maxsplit) {
        size_t end = cps.size();
        while (end > k && IsSpaceCp(cps[end - 1])) --end;
        parts.push_back(Encode(std::vector<uint32_t>(cps.begin() + k, cps.begin() + end)));
        return parts;
      }
      const size_t start = k;
      while (k < cps.size() && !IsSpaceCp(cps[k])) ++k;
      parts.push_back(Encode(std::vector<uint32_t>(cps.begin() + start, cps.begin() + k)));
    }
    return parts;
  }
  size_t start = 0;
  while (maxsplit < 0 || static_cast<int64_t>(parts.size()) < maxsplit) {
    const size_t found = text.find(*sep, start);
    if (found == std::string_view::npos) break;
    parts.emplace_back(text.substr(start, found - start));
    start = found + sep->size();
  }
  parts.emplace_back(text.substr(start));
  return parts;
}

std::string PythonReplace(std::string_view text, std::string_view from, std::string_view to, int64_t count) {
  std::string out;
  if (from.empty()) {  // Python inserts `to` before every code point and at the end.
    int64_t done = 0;
    for (const std::string& cp : SplitCodePoints(text)) {
      if (count < 0 || done < count) {
        out += to;
        ++done;
      }
      out += cp;
    }
    if (count < 0 || done < count) out += to;
    return out;
  }
  size_t start = 0;
  int64_t done = 0;
  while (count < 0 || done < count) {
    const size_t found = text.find(from, start);
    if (found == std::string_view::npos) break;
    out.append(text.substr(start, found - start));
    out.append(to);
    start = found + from.size();
    ++done;
  }
  out.append(text.substr(start));
  return out;
}

}  // namespace ringmoe::jinja
