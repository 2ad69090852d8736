// gpu/: the CUDA layer of the offload pipeline - everything below the engine's forward pass.
//
// What this folder owns:
//   device.h         GpuAvailable / RequireGpu (clear reasons for --device auto), properties, cudaMemGetInfo.
//   device_arena.h   DeviceArena / DeviceBuffer: every device allocation, under the --gpu-mem cap.
//   host_memory.h    PinnedHostBuffer (cudaHostAlloc), HostRegistration (cudaHostRegister, <= 1 GiB chunks).
//   stream.h         Stream, Event (RAII), asynchronous copies.
//   blas.h           BlasHandle: cuBLAS with its workspace taken from the arena.
//   expert_packing.h Packed per-layer expert layout (fused gate/up + down), sections, routed-expert ranges.
//   section_ring.h   SectionRing (N device slots, copy/compute overlap ordered by events) and the
//                    HostSectionSource producer interface with its pinned-memory implementation.
//   tiered_section_source.h  SsdSectionSource (sections read from the checkpoint on SSD into pinned staging,
//                    io::SectionPrefetcher) and TieredSectionSource (pinned and SSD sections as one source).
//   routing_ops.h    Router top-k (twin: cpu::RouteTopK).
//   group_routing_ops.h  DeepSeek's group-limited router (twin: cpu::RouteGroupLimited).
//   mla_ops.h        MLA prefill pieces: rotary of any rope type (twin: cpu::ApplyRotary), strided block
//                    copies.
//   moe_ops.h        MoeRunner: sort by expert, grouped expert GEMMs with SwiGLU, combine (twin:
//                    cpu::MoeForward).
//   dense_ops.h      bf16 linear (cpu::Linear), RMSNorm (cpu::RmsNorm), residual add, conversions, greedy
//                    argmax + log-softmax for lm_head logits.
//   row_ops.h        Row gathers, small uploads read by a kernel from pinned memory, the sigmoid gate.
//   gpu_probe.h      ProbeGpu for the planner: copy bandwidths and expert GEMM rates.
//   DESIGN.md        How the engine is meant to drive the ring, the streams/events and micro-batches.
//
// Every header here is plain C++ (opaque handles, void* device pointers): runtime/ includes them in builds
// with or without CUDA. CUDA-only headers end in .cuh and are private to this folder. In a build without CUDA
// (-DRINGMOE_CUDA=OFF) every entry point returns UnavailableError("built without CUDA").
#pragma once

#include "gpu/blas.h"
#include "gpu/dense_ops.h"
#include "gpu/device.h"
#include "gpu/device_arena.h"
#include "gpu/expert_packing.h"
#include "gpu/gpu_probe.h"
#include "gpu/group_routing_ops.h"
#include "gpu/host_memory.h"
#include "gpu/mla_ops.h"
#include "gpu/moe_ops.h"
#include "gpu/routing_ops.h"
#include "gpu/row_ops.h"
#include "gpu/section_ring.h"
#include "gpu/stream.h"
#include "gpu/tiered_section_source.h"
