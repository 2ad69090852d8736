// runtime/engine/: the engine core behind the public ringmoe/engine.h (library ringmoe_engine).
//
// This folder owns:
//   engine.cc           Engine::Open (loads the model, builds what the plan says) and Generate (the step loop).
//   request_state.h     One request's life: validation, tokenisation, stops, incremental detokenisation.
//   scheduler.h         Continuous batching over the paged KV cache: decodes plus prefill chunks per step.
//   sampler.h           Greedy and seeded temperature / top-p sampling.
//   logits_processors.h min_tokens, logit_bias, the penalties, min_p and top_k before a token is chosen.
//   choice_fork.h       Request::n > 1: the other choices start from the first's prompt blocks (shared KV).
//   logprobs.h          Top alternatives and the prompt's own log-probabilities (echo, scoring).
//   kv_cache.h          Paged K/V blocks in host memory (and the ids of the GPU's share), the block allocator.
//   model_weights.h     Every checkpoint tensor checked against the ModelSpec and laid out for the CPU kernels.
//   forward.h           ForwardPass (one scheduler step through every layer) and CpuForward.
//   attention_step.h    The CPU half of a layer's attention, shared by both forward passes.
//   mla_step.h          DeepSeek's multi-head latent attention on the CPU (absorbed form, compressed cache).
//   gpu_model.h         GpuModel: weights placed on the GPU, in pinned memory and in the ring, as the plan says.
//   gpu_forward.h       GpuForward: the offload step (GPU work queued by gpu_feeder.h's thread, CPU attention),
//                       composed of step_layout.h (the step's rows and micro-batches), gpu_step_buffers.h
//                       (device and pinned buffers), expert_streamer.h (the ring) and gpu_step_ops.h (the
//                       GPU work of each stage); gpu_stage_clock.h times those stages on the GPU (diagnostics).
// It depends on planner/ (the plan it runs), cpu/, gpu/ and io/; nothing in those folders includes it.
#pragma once

#include "runtime/engine/forward.h"
#include "runtime/engine/gpu_forward.h"
#include "runtime/engine/choice_fork.h"
#include "runtime/engine/kv_cache.h"
#include "runtime/engine/logits_processors.h"
#include "runtime/engine/logprobs.h"
#include "runtime/engine/model_weights.h"
#include "runtime/engine/request_state.h"
#include "runtime/engine/sampler.h"
#include "runtime/engine/scheduler.h"
