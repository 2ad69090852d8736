// planner/: how fast a batch job will run on this machine, what limits it, and the plan the engine runs with.
//
// This folder owns:
//   execution_plan.h    ExecutionPlan: the one plan the engine runs (text and JSON both ways); PlanPins, the
//                       partial plan flags make; DefaultPlan (--no-plan); SpreadResidentLayers; ValidatePlan.
//   memory_table.h      What the engine allocates on the GPU, pinned and in host memory for (spec, plan).
//   hardware_profile.h  HardwareProfile (what `ringmoe probe` measured) and its JSON form; the per-machine
//                       cache ~/.cache/ringmoe/hardware-<hostname>.json and bench/h200_profile.json share it.
//   model_costs.h       Bytes and FLOPs per layer and weight group, from ModelSpec (config.json) alone.
//   perf_model.h        ExecutionPlan -> memory per tier and per-stage step times (copies, GEMMs, CPU
//   attention,
//                       DRAM contention, SSD), for decode steps, prefill chunks and the whole job (the step
//                       times are in step_time.cc).
//   plan_search.h       The plan with the highest predicted end-to-end throughput; user pins; what-ifs.
//   report.h            PlanReport: the table printed by `ringmoe plan` and before/after `ringmoe run`, the
//                       measured-beside-predicted table (MeasuredRun), and --report-json.
//   probe/probe.h       ProbeMachine (library ringmoe_probe): topology (hwloc), DRAM and CPU attention
//                       bandwidth, oneDNN matmul rates; GPU copies and grouped GEMMs via gpu/gpu_probe.h; SSD
//                       reads via io/uring_reader.h.
// The equations are in planner/DESIGN.md. ringmoe_planner reads ModelSpec from io/ and links no device code;
// probe/ measures the machine and links cpu/, gpu/ and io/. Nothing here includes runtime/.
//
// Typical use (what `ringmoe plan` does):
//   auto profile = planner::LoadOrProbeProfile(hardware_path, {.ssd_dir = model_dir}, &used_path);
//   planner::PlanInputs inputs{.spec = spec, .model_name = model_dir, .profile = *profile, ...};
//   auto report = planner::BuildPlanReport(inputs);
//   std::cout << planner::FormatPlanReport(*report);
//   ... run ...
//   std::cout << planner::FormatMeasuredBesidePredicted(*report, measured);
//
// What the engine takes: report.plan, an ExecutionPlan (execution_plan.h), as EngineOptions::plan, unchanged.
// Everything it allocates for that plan is listed by memory_table.h.
#pragma once

#include "planner/execution_plan.h"
#include "planner/hardware_profile.h"
#include "planner/memory_table.h"
#include "planner/model_costs.h"
#include "planner/perf_model.h"
#include "planner/plan_search.h"
#include "planner/probe/probe.h"
#include "planner/report.h"
