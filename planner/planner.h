// planner/: how fast a batch job will run on this machine, what limits it, and the plan the engine runs with.
//
// This folder owns:
//   hardware_profile.h  HardwareProfile (what `ringmoe probe` measured) and its JSON form; the per-machine
//   cache
//                       ~/.cache/ringmoe/hardware-<hostname>.json and bench/h200_profile.json share the
//                       format.
//   probe.h             ProbeMachine: topology (hwloc), DRAM and CPU attention bandwidth (TBB), oneDNN matmul
//                       rates (probe_cpu.cc); GPU copies and grouped GEMMs via gpu/gpu_probe.h; SSD reads via
//                       io/uring_reader.h.
//   model_costs.h       Bytes and FLOPs per layer and weight group, from ModelSpec (config.json) alone.
//   perf_model.h        Plan -> memory per tier and per-stage step times (copies, GEMMs, CPU attention, DRAM
//                       contention, SSD), for decode steps, prefill chunks and the whole job.
//   plan_search.h       The plan with the highest predicted end-to-end throughput; user pins; what-ifs.
//   report.h            PlanReport: the table printed by `ringmoe plan` and before/after `ringmoe run`, the
//                       measured-beside-predicted table (MeasuredRun), and --report-json.
// The equations are in planner/DESIGN.md. The planner (ringmoe_planner) reads ModelSpec from io/ and links no device code; probe/ (ringmoe_probe)
// measures the machine and links cpu/, gpu/ and io/. Nothing here includes runtime/.
//
// Typical use (what `ringmoe plan` does):
//   auto profile = planner::LoadOrProbeProfile(hardware_path, {.ssd_dir = model_dir}, &used_path);
//   planner::PlanInputs inputs{.spec = spec, .model_name = model_dir, .profile = *profile, ...};
//   auto report = planner::BuildPlanReport(inputs);
//   std::cout << planner::FormatPlanReport(*report);
//   ... run ...
//   std::cout << planner::FormatMeasuredBesidePredicted(*report, measured);
//
// What the engine takes from a Prediction p (report.prediction):
//   GpuPlacement{.resident_moe_layers = p.memory.gpu_resident_moe_layers, .ring_slots = p.plan.ring_sections,
//                .micro_batches = p.plan.micro_batches, .workspace_bytes = p.memory.gpu_workspace_bytes}
//   EngineOptions::max_batch = p.effective_batch; max_step_tokens = p.effective_batch + p.plan.prefill_chunk.
#pragma once

#include "planner/hardware_profile.h"
#include "planner/model_costs.h"
#include "planner/perf_model.h"
#include "planner/plan_search.h"
#include "planner/probe/probe.h"
#include "planner/report.h"
