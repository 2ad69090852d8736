#include "runtime/frontend/progress.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <thread>
#include <vector>

namespace ringmoe {
namespace {

// A FILE* writing into memory, and a clock the test moves by hand.
class ProgressTest : public ::testing::Test {
 protected:
  void SetUp() override {
    out_ = open_memstream(&buffer_, &size_);
    ASSERT_NE(out_, nullptr);
  }
  void TearDown() override {
    if (out_ != nullptr) std::fclose(out_);
    std::free(buffer_);
  }

  std::string Output() {
    std::fflush(out_);
    return std::string(buffer_, size_);
  }

  std::unique_ptr<ProgressReporter> Make(int total, bool interactive, double interval = 10.0) {
    return std::make_unique<ProgressReporter>(total, out_, interactive, interval, [this] { return now_; });
  }

  static int Count(const std::string& text, const std::string& needle) {
    int count = 0;
    for (size_t at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) ++count;
    return count;
  }

  FILE* out_ = nullptr;
  char* buffer_ = nullptr;
  size_t size_ = 0;
  double now_ = 1000.0;  // Not zero, so a reporter that ignored its start time would show a wrong elapsed.
};

TEST_F(ProgressTest, InteractiveRedrawsAtMostTenTimesASecond) {
  auto progress = Make(10, /*interactive=*/true);
  progress->Update(0, 0, 0);  // The first update always draws.
  EXPECT_EQ(Count(Output(), "\r"), 1);
  for (int i = 1; i <= 9; ++i) {  // 9 updates within 90 ms: no redraw.
    now_ += 0.01;
    progress->Update(0, i, 0);
  }
  EXPECT_EQ(Count(Output(), "\r"), 1);
  now_ += 0.011;  // 101 ms after the first draw.
  progress->Update(1, 10, 50);
  EXPECT_EQ(Count(Output(), "\r"), 2);

  // 100 updates spread over 2 s redraw about 20 times, never more.
  for (int i = 0; i < 100; ++i) {
    now_ += 0.02;
    progress->Update(1, 10 + i, 50);
  }
  int draws = Count(Output(), "\r");
  EXPECT_GE(draws, 2 + 15);  // Float steps of 0.02 s may need six steps to reach 0.1 s.
  EXPECT_LE(draws, 2 + 20);
  EXPECT_EQ(Count(Output(), "\n"), 0) << "interactive updates stay on one line";
}

TEST_F(ProgressTest, InteractiveLineShowsBarCountsRatesAndEta) {
  auto progress = Make(4, /*interactive=*/true);
  now_ += 2.0;
  progress->Update(1, 100, 400);  // 1 of 4 done after 2 s: 6 s to go at that pace.
  std::string text = Output();
  EXPECT_EQ(text.rfind("\r[", 0), 0u) << text;
  EXPECT_NE(text.find("[######..................] 1/4 req (25%)"), std::string::npos) << text;
  EXPECT_NE(text.find("gen 50.0 tok/s"), std::string::npos) << text;
  EXPECT_NE(text.find("prompt 200.0 tok/s"), std::string::npos) << text;
  EXPECT_NE(text.find("00:02 elapsed"), std::string::npos) << text;
  EXPECT_NE(text.find("ETA 00:06"), std::string::npos) << text;
  EXPECT_NE(text.find("\x1b[K"), std::string::npos) << "erases leftovers of a longer previous line";
}

TEST_F(ProgressTest, InteractiveFinishDrawsTheFinalStateAndEndsTheLine) {
  auto progress = Make(2, /*interactive=*/true);
  progress->Update(0, 0, 0);
  now_ += 0.01;
  progress->Update(2, 30, 10);  // Throttled away...
  EXPECT_EQ(Output().find("2/2"), std::string::npos);
  now_ += 0.01;
  progress->Finish();  // ...but Finish always draws.
  std::string text = Output();
  EXPECT_NE(text.find("[########################] 2/2 req (100%)"), std::string::npos) << text;
  EXPECT_EQ(text.back(), '\n');
  progress->Finish();           // Idempotent.
  progress->Update(2, 99, 99);  // Ignored after Finish.
  EXPECT_EQ(Output(), text);
}

TEST_F(ProgressTest, InteractiveDestructorEndsAnUnfinishedLine) {
  auto progress = Make(2, /*interactive=*/true);
  progress->Update(1, 1, 1);
  progress.reset();
  std::string text = Output();
  EXPECT_EQ(text.back(), '\n');
  EXPECT_EQ(Count(text, "\n"), 1);
}

TEST_F(ProgressTest, LogModePrintsOneLineEveryIntervalAndASummary) {
  auto progress = Make(100, /*interactive=*/false, /*interval=*/10.0);
  for (int second = 1; second <= 35; ++second) {
    now_ += 1.0;
    progress->Update(second, 10 * second, 100 * second);
  }
  std::string text = Output();
  EXPECT_EQ(Count(text, "\n"), 3) << text;  // At 10, 20 and 30 s.
  EXPECT_EQ(Count(text, "\r"), 0);
  EXPECT_EQ(Count(text, "\x1b"), 0) << "no terminal escapes in log files";
  EXPECT_NE(
      text.find(
          "progress: 10/100 req (10%) | gen 10.0 tok/s | prompt 100.0 tok/s | 00:10 elapsed | ETA 01:30"),
      std::string::npos)
      << text;
  EXPECT_NE(text.find("progress: 20/100 req"), std::string::npos) << text;
  EXPECT_NE(text.find("progress: 30/100 req"), std::string::npos) << text;

  now_ += 5.0;  // 40 s in.
  progress->Update(100, 400, 4000);
  progress->Finish();
  text = Output();
  EXPECT_EQ(Count(text, "\n"), 5) << text;  // The 40 s line and the summary.
  EXPECT_NE(text.find("progress: done 100/100 requests in 00:40 | 400 tokens generated (10.0 tok/s) | "
                      "4000 prompt tokens (100.0 tok/s)\n"),
            std::string::npos)
      << text;
}

TEST_F(ProgressTest, AnSsdTierAddsItsRateAndShareOfTheTime) {
  auto progress = Make(10, /*interactive=*/false, /*interval=*/10.0);
  now_ += 10.0;
  // 15 GB in 8 s of reads over 10 s; the ring stood waiting for them 2.5 s.
  progress->UpdateSsd(15'000'000'000, 8.0, 2.5);
  progress->Update(2, 100, 1000);
  now_ += 10.0;
  progress->UpdateSsd(30'000'000'000, 16.0, 3.0);
  progress->Update(10, 200, 2000);
  progress->Finish();
  const std::string text = Output();
  EXPECT_NE(
      text.find("progress: 2/10 req (20%) | gen 10.0 tok/s | prompt 100.0 tok/s | ssd 1.88 GB/s, 15.0 GB "
                "read, reads busy 80%, ring waited 25% | 00:10 elapsed"),
      std::string::npos)
      << text;
  EXPECT_NE(text.find("(100.0 tok/s) | ssd 1.88 GB/s, 30.0 GB read, reads busy 80%, ring waited 15%\n"),
            std::string::npos)
      << text;
}

TEST_F(ProgressTest, WithoutAnSsdTierTheLineHasNoSsdPart) {
  auto progress = Make(1, /*interactive=*/true);
  progress->Update(0, 0, 0);
  progress->Finish();
  EXPECT_EQ(Output().find("ssd"), std::string::npos) << Output();
}

TEST_F(ProgressTest, LogModeKeepsItsScheduleAfterAGap) {
  auto progress = Make(10, /*interactive=*/false, /*interval=*/10.0);
  now_ += 35.0;  // A long step: one line, not three.
  progress->Update(1, 1, 1);
  EXPECT_EQ(Count(Output(), "\n"), 1);
  now_ += 4.0;  // 39 s: the next line is due at 40 s.
  progress->Update(2, 2, 2);
  EXPECT_EQ(Count(Output(), "\n"), 1);
  now_ += 1.0;
  progress->Update(3, 3, 3);
  EXPECT_EQ(Count(Output(), "\n"), 2);
}

TEST_F(ProgressTest, ZeroRequestsAndLongDurationsFormatSanely) {
  auto progress = Make(0, /*interactive=*/false, /*interval=*/1.0);
  now_ += 3725.0;  // 1 h 2 min 5 s.
  progress->Update(0, 0, 0);
  progress->Finish();
  std::string text = Output();
  EXPECT_NE(text.find("0/0 req (100%)"), std::string::npos) << text;
  EXPECT_NE(text.find("1:02:05 elapsed"), std::string::npos) << text;
  EXPECT_NE(text.find("done 0/0 requests in 1:02:05"), std::string::npos) << text;
}

TEST_F(ProgressTest, EtaIsUnknownBeforeTheFirstRequestFinishes) {
  auto progress = Make(5, /*interactive=*/false, /*interval=*/1.0);
  now_ += 1.0;
  progress->Update(0, 12, 300);
  EXPECT_NE(Output().find("ETA --:--"), std::string::npos) << Output();
}

// Update from a "scheduler" thread while the main thread calls Finish: no crash, no output after Finish.
TEST(ProgressThreads, UpdateRacesWithFinish) {
  char* buffer = nullptr;
  size_t size = 0;
  FILE* out = open_memstream(&buffer, &size);
  ASSERT_NE(out, nullptr);
  {
    ProgressReporter progress(1000, out, /*interactive=*/false, /*log_interval_seconds=*/0.0);
    std::thread scheduler([&] {
      for (int i = 1; i <= 1000; ++i) progress.Update(i, i, i);
    });
    progress.Finish();
    scheduler.join();
  }
  std::fflush(out);
  std::string text(buffer, size);
  std::fclose(out);
  std::free(buffer);
  // Log interval 0 logs every update before Finish; the summary must be the last line.
  size_t summary = text.find("progress: done");
  ASSERT_NE(summary, std::string::npos) << text;
  EXPECT_EQ(text.find('\n', summary), text.size() - 1);
}

}  // namespace
}  // namespace ringmoe
