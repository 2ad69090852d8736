// The arithmetic type of a run: the GPU path computes in bf16 (f32 accumulation); the CPU path in f32, or in
// bf16 when asked, or for kAuto when the checkpoint is not f32 and the CPU has AMX or AVX512-BF16. The
// frontend asks the same question before planning, so that a CPU plan's KV cache has the engine's type.
#pragma once

#include <string>

#include "io/checkpoint.h"
#include "io/dtype.h"
#include "ringmoe/engine.h"

namespace ringmoe {

// `checkpoint` may be null (a plan made from config.json alone): then it counts as not f32.
io::DType ChooseComputeType(ComputeType requested, const io::Checkpoint* checkpoint, bool gpu);
// The same for a model folder, opening its checkpoint's header when there is one.
io::DType ChooseComputeType(ComputeType requested, const std::string& model_dir, bool gpu);

}  // namespace ringmoe
