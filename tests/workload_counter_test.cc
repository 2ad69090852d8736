// WorkloadCounter (runtime/frontend/job_plan.h): a streamed job counted one line at a time gives the planner
// the same workload as planner::MakeWorkload over the whole list, so the plan does not change with streaming.
#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

#include "planner/planner.h"
#include "runtime/frontend/job_plan.h"

namespace ringmoe {
namespace {

TEST(WorkloadCounter, CountsAsMakeWorkloadDoes) {
  ModelSpec spec;
  spec.max_position_embeddings = 4096;
  std::mt19937 random(7);
  std::vector<int64_t> prompts, gens;
  WorkloadCounter counter(nullptr, "no tokenizer");
  int bad = 0, good = 0;
  for (int i = 0; i < 5000; ++i) {
    BatchLine line;
    line.line_number = i + 1;
    if (i % 97 == 0) {
      line.request = absl::InvalidArgumentError("bad");
      ++bad;
    } else {
      Request request;
      request.prompt_ids.assign(1 + random() % 3000, 5);
      request.max_tokens = 1 + static_cast<int>(random() % 2000);
      request.n = i % 5 == 0 ? 1 + static_cast<int>(random() % 4) : 1;
      ++good;
      // n choices: n sequences in flight, as the planner counts them.
      for (int choice = 0; choice < request.n; ++choice) {
        prompts.push_back(static_cast<int64_t>(request.prompt_ids.size()));
        gens.push_back(request.max_tokens);
      }
      line.request = std::move(request);
    }
    counter.Add(line);
  }
  absl::StatusOr<planner::Workload> counted = counter.Finish(spec, "in.jsonl");
  ASSERT_TRUE(counted.ok()) << counted.status();
  const planner::Workload whole = planner::MakeWorkload(prompts, gens, spec.max_position_embeddings, "");
  EXPECT_EQ(counted->num_requests, whole.num_requests);
  EXPECT_EQ(counted->mean_prompt_tokens, whole.mean_prompt_tokens);
  EXPECT_EQ(counted->mean_gen_tokens, whole.mean_gen_tokens);
  EXPECT_EQ(counted->max_context_tokens, whole.max_context_tokens);
  EXPECT_EQ(counter.requests(), good);
  EXPECT_EQ(good, 5000 - bad);
  EXPECT_GT(counted->num_requests, good) << "some lines ask for several choices";
  EXPECT_NE(counted->prompt_length_note.find(std::to_string(bad) + " bad lines left out"), std::string::npos)
      << counted->prompt_length_note;
}

TEST(WorkloadCounter, NoGoodLineIsAnErrorNamingTheSource) {
  WorkloadCounter counter(nullptr, "no tokenizer");
  BatchLine line;
  line.request = absl::InvalidArgumentError("bad");
  counter.Add(line);
  absl::StatusOr<planner::Workload> counted = counter.Finish(ModelSpec{}, "in.jsonl");
  EXPECT_TRUE(absl::IsInvalidArgument(counted.status())) << counted.status();
  EXPECT_NE(std::string(counted.status().message()).find("in.jsonl"), std::string::npos);
}

}  // namespace
}  // namespace ringmoe
