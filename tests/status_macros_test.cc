// io/status_macros.h: RINGMOE_RETURN_IF_ERROR and RINGMOE_ASSIGN_OR_RETURN in functions returning
// absl::Status and absl::StatusOr, each expression evaluated once, the error passed on unchanged.
#include "io/status_macros.h"

#include <map>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "gtest/gtest.h"

namespace ringmoe {
namespace {

absl::Status Step(bool ok, int* calls) {
  ++*calls;
  return ok ? absl::OkStatus() : absl::NotFoundError("step failed");
}

absl::StatusOr<int> Value(int value, int* calls) {
  ++*calls;
  if (value < 0) return absl::OutOfRangeError("negative");
  return value;
}

absl::StatusOr<std::unique_ptr<int>> MoveOnly(int value) { return std::make_unique<int>(value); }

// Both steps run when the first is OK; none after a failing one.
absl::Status TwoSteps(bool first_ok, int* calls, bool* reached_end) {
  RINGMOE_RETURN_IF_ERROR(Step(first_ok, calls));
  RINGMOE_RETURN_IF_ERROR(Step(true, calls));
  *reached_end = true;
  return absl::OkStatus();
}

absl::StatusOr<std::string> StepThenText(bool ok, int* calls) {
  RINGMOE_RETURN_IF_ERROR(Step(ok, calls));
  return std::string("done");
}

// Two declarations in one scope (distinct temporaries per line), one assignment to an existing variable.
absl::StatusOr<int> Sum(int a, int b, int c, int* calls) {
  RINGMOE_ASSIGN_OR_RETURN(int x, Value(a, calls));
  RINGMOE_ASSIGN_OR_RETURN(const int y, Value(b, calls));
  int z = 100;
  RINGMOE_ASSIGN_OR_RETURN(z, Value(c, calls));
  return x + y + z;
}

absl::Status AssignInStatusFunction(int value, int* out, int* calls) {
  RINGMOE_ASSIGN_OR_RETURN(*out, Value(value, calls));
  return absl::OkStatus();
}

TEST(StatusMacrosTest, ReturnIfErrorPassesOkAndStopsAtTheFirstError) {
  int calls = 0;
  bool reached_end = false;
  EXPECT_TRUE(TwoSteps(true, &calls, &reached_end).ok());
  EXPECT_EQ(calls, 2);
  EXPECT_TRUE(reached_end);

  calls = 0;
  reached_end = false;
  const absl::Status status = TwoSteps(false, &calls, &reached_end);
  EXPECT_EQ(status, absl::NotFoundError("step failed"));
  EXPECT_EQ(calls, 1);
  EXPECT_FALSE(reached_end);
}

TEST(StatusMacrosTest, ReturnIfErrorInAStatusOrFunction) {
  int calls = 0;
  absl::StatusOr<std::string> text = StepThenText(true, &calls);
  ASSERT_TRUE(text.ok()) << text.status();
  EXPECT_EQ(*text, "done");
  text = StepThenText(false, &calls);
  EXPECT_EQ(text.status(), absl::NotFoundError("step failed"));
  EXPECT_EQ(calls, 2);
}

TEST(StatusMacrosTest, AssignOrReturnDeclaresAssignsAndReturnsTheError) {
  int calls = 0;
  absl::StatusOr<int> sum = Sum(1, 2, 3, &calls);
  ASSERT_TRUE(sum.ok()) << sum.status();
  EXPECT_EQ(*sum, 6);
  EXPECT_EQ(calls, 3);

  calls = 0;
  sum = Sum(1, -2, 3, &calls);
  EXPECT_EQ(sum.status(), absl::OutOfRangeError("negative"));
  EXPECT_EQ(calls, 2);  // The third value is never asked for.

  int out = 7;
  calls = 0;
  EXPECT_TRUE(AssignInStatusFunction(5, &out, &calls).ok());
  EXPECT_EQ(out, 5);
  EXPECT_EQ(AssignInStatusFunction(-1, &out, &calls), absl::OutOfRangeError("negative"));
  EXPECT_EQ(out, 5);  // Untouched on error.
  EXPECT_EQ(calls, 2);
}

TEST(StatusMacrosTest, AssignOrReturnMovesMoveOnlyValuesAndTakesCommasInTheExpression) {
  auto run = []() -> absl::StatusOr<int> {
    RINGMOE_ASSIGN_OR_RETURN(std::unique_ptr<int> p, MoveOnly(41));
    // The expression may hold unparenthesised commas (template arguments).
    RINGMOE_ASSIGN_OR_RETURN(auto table, absl::StatusOr<std::map<int, int>>(std::map<int, int>{{1, 1}}));
    return *p + table.at(1);
  };
  absl::StatusOr<int> result = run();
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(*result, 42);
}

}  // namespace
}  // namespace ringmoe
