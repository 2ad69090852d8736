// The README's API example is the file the build compiles; this keeps the two identical.
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>
#include <string>

namespace {

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

TEST(Readme, ShowsTheCompiledApiExample) {
  const std::string example = ReadFile(std::string(RINGMOE_SOURCE_DIR) + "/runtime/example/api_example.cc");
  const std::string readme = ReadFile(std::string(RINGMOE_SOURCE_DIR) + "/README.md");
  ASSERT_FALSE(example.empty());
  EXPECT_NE(readme.find("```cpp\n" + example + "```"), std::string::npos)
      << "copy runtime/example/api_example.cc into README.md's C++ API section";
}

TEST(Readme, QuickStartIsTwoCommandsThatExist) {
  const std::string readme = ReadFile(std::string(RINGMOE_SOURCE_DIR) + "/README.md");
  const size_t start = readme.find("## Quick start");
  ASSERT_NE(start, std::string::npos);
  const std::string section = readme.substr(start, readme.find("\n## ", start + 1) - start);
  size_t blocks = 0;
  for (size_t at = section.find("```sh"); at != std::string::npos; at = section.find("```sh", at + 1)) ++blocks;
  EXPECT_EQ(blocks, 2u);
  for (const char* path : {".ci/install-deps", "tests/run_all.sh", "tests/data/models/tiny-qwen3-moe/config.json",
                           "tests/data/requests/quickstart.jsonl"}) {
    EXPECT_NE(section.find(std::string(path).substr(0, std::string(path).find("/config.json"))), std::string::npos)
        << path;
    EXPECT_TRUE(std::ifstream(std::string(RINGMOE_SOURCE_DIR) + "/" + path).good()) << path;
  }
}

}  // namespace
