// Generate completions for two prompts with the C++ API.
//   ./build/ringmoe_api_example tests/data/models/tiny-qwen3-moe
#include <cstdio>
#include <vector>

#include "ringmoe/engine.h"

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s MODEL_DIR\n", argv[0]);
    return 2;
  }
  ringmoe::EngineOptions options;
  options.plan.batch = 64;
  absl::StatusOr<ringmoe::Engine> engine = ringmoe::Engine::Open(argv[1], options);
  if (!engine.ok()) {
    std::fprintf(stderr, "%s\n", engine.status().ToString().c_str());
    return 1;
  }

  std::vector<ringmoe::Request> requests(2);
  requests[0].id = "greedy";
  requests[0].prompt_text = "The licence is";
  requests[0].max_tokens = 16;
  requests[1].id = "sampled";
  requests[1].prompt_text = "Free software";
  requests[1].max_tokens = 16;
  requests[1].sampling = {.temperature = 0.8f, .top_p = 0.95f, .seed = 42};

  int streamed = 0;
  absl::StatusOr<std::vector<ringmoe::Result>> results =
      engine->Generate(requests, [&](const ringmoe::TokenEvent&) { ++streamed; });
  if (!results.ok()) {
    std::fprintf(stderr, "%s\n", results.status().ToString().c_str());
    return 1;
  }
  for (const ringmoe::Result& result : *results) {
    if (!result.status.ok()) {
      std::printf("%s: error: %s\n", result.id.c_str(), result.status.ToString().c_str());
      continue;
    }
    std::printf("%s: %zu tokens: %s\n", result.id.c_str(), result.token_ids.size(), result.text.c_str());
  }
  std::printf("%d tokens streamed\n", streamed);
  return 0;
}
