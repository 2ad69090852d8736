// ringmoe_cpu: the CPU half of the engine. It owns the CPU kernels of the forward pass (embedding, RMSNorm,
// RoPE (default and YaRN, both pairings), attention over the paged KV cache (and MLA: mla_attention.h),
// routing (and DeepSeek group-limited routing: group_routing.h), SwiGLU, expert-grouped MoE), FP8 block
// (de)quantisation (fp8_blocks.h: FP8 checkpoints, --expert-dtype fp8, the fp8 KV cache's rows) and the
// oneDNN matmuls, plus the worker pool they run on. Each kernel is a plain function over spans; mutable state
// (scratch, pools) is passed in. The GPU ops in gpu/ are twins of these and are tested against them.
//
// This header only gathers the per-concern headers for convenience.
#pragma once

#include "cpu/activation.h"
#include "cpu/attention.h"
#include "cpu/cpu_features.h"
#include "cpu/fp8_blocks.h"
#include "cpu/group_routing.h"
#include "cpu/linear.h"
#include "cpu/mla_attention.h"
#include "cpu/moe.h"
#include "cpu/norm.h"
#include "cpu/rope.h"
#include "cpu/routing.h"
#include "cpu/thread_pool.h"
