// The project's status macros (absl 20220623 has no public RETURN_IF_ERROR / ASSIGN_OR_RETURN). Both work in
// any function returning absl::Status or absl::StatusOr<T>: the non-OK status is returned as is and converts
// to either. Header-only; in io/ because every layer may use it.
//
//   RINGMOE_RETURN_IF_ERROR(WriteHeader(out));              // expr: an absl::Status
//   RINGMOE_ASSIGN_OR_RETURN(auto file, OpenFile(path));    // expr: an absl::StatusOr<T>; declares `file`
//   RINGMOE_ASSIGN_OR_RETURN(spec_, ParseSpec(text));       // or assigns to an existing variable
//
// RINGMOE_ASSIGN_OR_RETURN expands to several statements (it must, to declare lhs in the enclosing scope):
// use it as a statement of its own inside braces, at most once per line (its temporary is named after
// __LINE__), and with an lhs free of unparenthesised commas (`auto [a, b]` or `std::pair<int, int> p` would
// split the macro's arguments; declare those with auto and unpack after).
#pragma once

#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define RINGMOE_STATUS_CONCAT_INNER_(a, b) a##b
#define RINGMOE_STATUS_CONCAT_(a, b) RINGMOE_STATUS_CONCAT_INNER_(a, b)

// Evaluates its argument, `expr` (an absl::Status), once and returns it from the enclosing function unless it
// is OK.
#define RINGMOE_RETURN_IF_ERROR(...) \
  RINGMOE_RETURN_IF_ERROR_IMPL_(RINGMOE_STATUS_CONCAT_(ringmoe_status_, __LINE__), (__VA_ARGS__))
#define RINGMOE_RETURN_IF_ERROR_IMPL_(status, expr) \
  do {                                              \
    ::absl::Status status = (expr);                 \
    if (!status.ok()) return status;                \
  } while (0)

// Evaluates `expr` (an absl::StatusOr<T>; the arguments after lhs, so it may hold commas) once; returns its
// status from the enclosing function unless it is OK, else moves its value into `lhs` (a declaration such as
// `auto x` or `const Spec spec`, or a variable).
#define RINGMOE_ASSIGN_OR_RETURN(lhs, ...) \
  RINGMOE_ASSIGN_OR_RETURN_IMPL_(RINGMOE_STATUS_CONCAT_(ringmoe_status_or_, __LINE__), lhs, (__VA_ARGS__))
#define RINGMOE_ASSIGN_OR_RETURN_IMPL_(status_or, lhs, expr) \
  auto status_or = (expr);                                   \
  if (!status_or.ok()) return std::move(status_or).status(); \
  lhs = *std::move(status_or)
