// Tokenizer speed: single-thread encode throughput of English prose with the Qwen3 tokenizer (target >= 5
// MB/s) and the load time of the 200k-token gpt-oss tokenizer (target < 0.5 s), beside the Hugging Face
// `tokenizers` library's own figures from tests/data/tokenizers/reference_speed.json (measured on the GPU
// machine's CPU).
#include <fmt/format.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "ringmoe/tokenizer.h"
#include "runtime/tokenizer/file_reader.h"

namespace {

using Clock = std::chrono::steady_clock;

double SecondsSince(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// CPU time of this thread: on a shared, busy machine it shows the work done, apart from time spent
// descheduled.
double ThreadCpuSeconds() {
  timespec now;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &now);
  return now.tv_sec + now.tv_nsec * 1e-9;
}

std::string ReadText(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

struct LoadTime {
  double wall_s = 1e9;
  double cpu_s = 1e9;
};

// Fastest of `runs` loads of `path` (wall clock and thread CPU time, each the minimum over the runs).
LoadTime BestLoadSeconds(const std::string& path, int runs) {
  LoadTime best;
  for (int i = 0; i < runs; ++i) {
    const auto start = Clock::now();
    const double cpu_start = ThreadCpuSeconds();
    absl::StatusOr<ringmoe::Tokenizer> tokenizer = ringmoe::Tokenizer::Load(path);
    const double seconds = SecondsSince(start);
    best.cpu_s = std::min(best.cpu_s, ThreadCpuSeconds() - cpu_start);
    if (!tokenizer.ok()) {
      std::fprintf(stderr, "tokenizer_bench: %s\n", std::string(tokenizer.status().message()).c_str());
      std::exit(1);
    }
    best.wall_s = std::min(best.wall_s, seconds);
  }
  return best;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Tokenizer encode throughput and load time, beside targets and the tokenizers library."};
  std::string data_dir = std::string(RINGMOE_SOURCE_DIR) + "/tests/data/tokenizers";
  std::string prose_path = std::string(RINGMOE_SOURCE_DIR) + "/bench/data/prose.txt";
  std::string json_path;
  double min_seconds = 2.0;
  app.add_option("--data", data_dir, "folder with the tokenizer files and reference_speed.json");
  app.add_option("--prose", prose_path, "English prose to encode");
  app.add_option("--seconds", min_seconds, "minimum time per throughput measurement");
  app.add_option("--json", json_path, "write the figures as JSON");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& error) {
    return app.exit(error);
  }
  if (!std::filesystem::exists(prose_path)) prose_path = "/usr/share/common-licenses/GPL-3";
  const std::string prose = ReadText(prose_path);
  if (prose.empty()) {
    std::fprintf(stderr, "tokenizer_bench: cannot read %s\n", prose_path.c_str());
    return 1;
  }
  nlohmann::json reference;
  if (std::ifstream in(data_dir + "/reference_speed.json"); in)
    reference = nlohmann::json::parse(in, nullptr, false);
  const auto reference_value = [&](const nlohmann::json::json_pointer& pointer) -> double {
    return reference.is_object() && reference.contains(pointer) ? reference[pointer].get<double>() : 0.0;
  };

  // Encode throughput, Qwen3, one thread. The first pass starts with an empty word cache; the sustained
  // figure repeats the text as the reference measurement does (its word cache is warm too).
  absl::StatusOr<ringmoe::Tokenizer> qwen3 = ringmoe::Tokenizer::Load(data_dir + "/qwen3.tokenizer.json.gz");
  if (!qwen3.ok()) {
    std::fprintf(stderr, "tokenizer_bench: %s\n", std::string(qwen3.status().message()).c_str());
    return 1;
  }
  auto start = Clock::now();
  size_t tokens = qwen3->Encode(prose, false)->size();
  const double cold_mb_per_s = prose.size() / SecondsSince(start) / 1e6;
  int repetitions = 0;
  start = Clock::now();
  const double encode_cpu_start = ThreadCpuSeconds();
  double elapsed = 0;
  while (elapsed < min_seconds) {
    tokens = qwen3->Encode(prose, false)->size();
    ++repetitions;
    elapsed = SecondsSince(start);
  }
  const double encode_mb_per_s = prose.size() * repetitions / elapsed / 1e6;
  const double encode_cpu_mb_per_s =
      prose.size() * repetitions / (ThreadCpuSeconds() - encode_cpu_start) / 1e6;
  // Words the cache has not seen: 4 MB of pseudo-random lowercase words, encoded once.
  std::string unique_words;
  {
    uint64_t state = 88172645463325252ULL;
    const auto next = [&state] {
      state ^= state << 13, state ^= state >> 7, state ^= state << 17;
      return state;
    };
    while (unique_words.size() < 4000000) {
      const int length = 2 + static_cast<int>(next() % 9);
      for (int i = 0; i < length; ++i) unique_words.push_back(static_cast<char>('a' + next() % 26));
      unique_words.push_back(next() % 10 == 0 ? '\n' : ' ');
    }
  }
  start = Clock::now();
  const size_t unique_tokens = qwen3->Encode(unique_words, false)->size();
  const double unique_mb_per_s = unique_words.size() / SecondsSince(start) / 1e6;
  const std::vector<int32_t> ids = *qwen3->Encode(prose, false);
  repetitions = 0;
  start = Clock::now();
  elapsed = 0;
  while (elapsed < min_seconds / 2) {
    volatile size_t size = qwen3->Decode(ids, false).size();
    (void)size;
    ++repetitions;
    elapsed = SecondsSince(start);
  }
  const double decode_mb_per_s = prose.size() * repetitions / elapsed / 1e6;

  // Load time of gpt-oss (200k tokens, 446k merges): from the .gz and from a plain copy.
  const std::string gz_path = data_dir + "/gptoss.tokenizer.json.gz";
  const std::string plain_path =
      (std::filesystem::temp_directory_path() / "ringmoe_bench_gptoss.tokenizer.json").string();
  {
    absl::StatusOr<std::string> json = ringmoe::tokenizer_internal::ReadFileMaybeGzip(gz_path);
    if (!json.ok()) {
      std::fprintf(stderr, "tokenizer_bench: %s\n", std::string(json.status().message()).c_str());
      return 1;
    }
    std::ofstream(plain_path, std::ios::binary) << *json;
  }
  const LoadTime load_gz = BestLoadSeconds(gz_path, 5);
  const LoadTime load_plain = BestLoadSeconds(plain_path, 5);
  std::filesystem::remove(plain_path);

  const double ref_encode = reference_value("/encode/qwen3/MB_per_s"_json_pointer);
  const double ref_decode = reference_value("/encode/qwen3/decode_MB_per_s"_json_pointer);
  const double ref_load_plain = reference_value("/load/gptoss/from_str_s_min"_json_pointer);
  const double ref_load_gz = reference_value("/load/gptoss/gunzip_plus_from_str_s_min"_json_pointer);
  const auto ratio = [](double a, double b) { return b > 0 ? a / b : 0.0; };

  fmt::print("prose: {} ({} bytes, {} Qwen3 tokens)\n", prose_path, prose.size(), tokens);
  const auto row = [](const char* figure, double measured, const char* target, double reference,
                      double speedup) {
    fmt::print("{:<36} {:>10.3f} {:>8} {:>12.3f} {:>12.2f}x\n", figure, measured, target, reference, speedup);
  };
  fmt::print("{:<36} {:>10} {:>8} {:>12} {:>13}\n", "figure", "measured", "target", "tokenizers", "speed-up");
  row("qwen3 encode MB/s (1 thread, wall)", encode_mb_per_s, ">= 5", ref_encode,
      ratio(encode_mb_per_s, ref_encode));
  row("qwen3 encode MB/s (per CPU second)", encode_cpu_mb_per_s, ">= 5", ref_encode,
      ratio(encode_cpu_mb_per_s, ref_encode));
  row("qwen3 encode MB/s, first pass", cold_mb_per_s, "", ref_encode, ratio(cold_mb_per_s, ref_encode));
  row("qwen3 encode MB/s, unseen words", unique_mb_per_s, "", ref_encode, ratio(unique_mb_per_s, ref_encode));
  row("qwen3 decode MB/s", decode_mb_per_s, "", ref_decode, ratio(decode_mb_per_s, ref_decode));
  row("gpt-oss load s, .json.gz (wall)", load_gz.wall_s, "< 0.5", ref_load_gz,
      ratio(ref_load_gz, load_gz.wall_s));
  row("gpt-oss load s, .json.gz (CPU)", load_gz.cpu_s, "< 0.5", ref_load_gz,
      ratio(ref_load_gz, load_gz.cpu_s));
  row("gpt-oss load s, plain .json (wall)", load_plain.wall_s, "< 0.5", ref_load_plain,
      ratio(ref_load_plain, load_plain.wall_s));
  row("gpt-oss load s, plain .json (CPU)", load_plain.cpu_s, "< 0.5", ref_load_plain,
      ratio(ref_load_plain, load_plain.cpu_s));
  fmt::print("(ratios > 1 mean ringmoe is faster; the reference figures come from another machine's CPU)\n");

  if (!json_path.empty()) {
    nlohmann::json out = {
        {"prose_file", prose_path},
        {"prose_bytes", prose.size()},
        {"qwen3_tokens", tokens},
        {"qwen3_encode_MB_per_s", encode_mb_per_s},
        {"qwen3_encode_per_cpu_second_MB_per_s", encode_cpu_mb_per_s},
        {"qwen3_encode_first_pass_MB_per_s", cold_mb_per_s},
        {"qwen3_encode_unseen_words_MB_per_s", unique_mb_per_s},
        {"qwen3_unseen_words_tokens", unique_tokens},
        {"qwen3_encode_target_MB_per_s", 5.0},
        {"qwen3_encode_reference_MB_per_s", ref_encode},
        {"qwen3_decode_MB_per_s", decode_mb_per_s},
        {"qwen3_decode_reference_MB_per_s", ref_decode},
        {"gptoss_load_gz_s", load_gz.wall_s},
        {"gptoss_load_plain_s", load_plain.wall_s},
        {"gptoss_load_gz_cpu_s", load_gz.cpu_s},
        {"gptoss_load_plain_cpu_s", load_plain.cpu_s},
        {"gptoss_load_target_s", 0.5},
        {"gptoss_load_reference_gz_s", ref_load_gz},
        {"gptoss_load_reference_plain_s", ref_load_plain},
    };
    std::ofstream(json_path) << out.dump(2) << "\n";
  }
  return 0;
}
