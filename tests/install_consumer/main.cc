// Uses an installed ringmoe through its public headers only: opens MODEL_DIR with the default (CPU) plan,
// generates 8 greedy tokens after the prompt ids {399} and prints them, with the tokenizer's vocabulary size.
// Computes in f32 so that the tokens are those golden.json records for tests/data/models/tiny-qwen3-moe.
//   install_consumer tests/data/models/tiny-qwen3-moe   ->   tokens: 182 382 706 250 358 889 255 748
#include <cstdio>
#include <vector>

#include "ringmoe/engine.h"
#include "ringmoe/tokenizer.h"

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s MODEL_DIR\n", argv[0]);
    return 2;
  }
  ringmoe::EngineOptions options;
  options.cpu_compute = ringmoe::ComputeType::kF32;
  absl::StatusOr<ringmoe::Engine> engine = ringmoe::Engine::Open(argv[1], options);
  if (!engine.ok()) {
    std::fprintf(stderr, "%s\n", engine.status().ToString().c_str());
    return 1;
  }

  std::vector<ringmoe::Request> requests(1);
  requests[0].id = "greedy";
  requests[0].prompt_ids = {399};
  requests[0].max_tokens = 8;
  absl::StatusOr<std::vector<ringmoe::Result>> results = engine->Generate(requests);
  if (!results.ok()) {
    std::fprintf(stderr, "%s\n", results.status().ToString().c_str());
    return 1;
  }
  const ringmoe::Result& result = results->front();
  if (!result.status.ok() || result.token_ids.empty()) {
    std::fprintf(stderr, "no tokens: %s\n", result.status.ToString().c_str());
    return 1;
  }
  std::printf("tokens:");
  for (int32_t token : result.token_ids) std::printf(" %d", token);
  std::printf("\nvocab: %d\n", engine->tokenizer() != nullptr ? engine->tokenizer()->vocab_size() : 0);
  return 0;
}
