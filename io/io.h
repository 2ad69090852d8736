// io/: everything that reads model files from disk.
//
// What this folder owns:
//   dtype.h         Element types of checkpoint tensors (F32, BF16, F16, ...), their safetensors spellings,
//   and
//                   exact conversions to and from f32.
//   regular_file.h  Reading only regular files (a FIFO or device is refused before it is opened) and a JSON
//                   nesting check for hostile files.
//   mapped_file.h   MappedFile: read-only memory maps; checkpoints are mapped, never read whole.
//   safetensors.h   Validated parsing of the safetensors header (hostile input: fuzzed).
//   checkpoint.h    Checkpoint: a model folder's tensors over one file or index-named shards, every offset,
//                   dtype and shape checked; TensorView hands out the bytes.
//   fp8_weights.h   Which tensors of a block-FP8 checkpoint may be F8_E4M3, and each weight's weight_scale_inv,
//                   checked from the headers (run and plan alike).
//   uring_reader.h  UringReader: io_uring (O_DIRECT where the filesystem allows) reads of many ranges, the SSD
//                   tier's reader and the planner's bandwidth probe.
//   section_reader.h  SectionPrefetcher: the SSD tier's sections read ahead from the checkpoint files
//                   (aligned superset ranges, O_DIRECT) into staging buffers, in the ring's cyclic order.
//   model_spec.h    ModelSpec: config.json parsed and validated. deepseek_config.h reads DeepSeek-V2/V3's
//                   keys (MLA, group-limited routing, YaRN) for it; config_reader.h: the typed reads of both.
//   section_file.h  --ssd-dir: the SSD sections laid out once per model and plan in the ring's layout,
//                   striped over one file per drive, with a manifest that rejects stale files.
// Nothing here knows about models beyond tensor names, shapes and config.json (model_spec.h).
#pragma once

#include "io/checkpoint.h"
#include "io/dtype.h"
#include "io/fp8_weights.h"
#include "io/mapped_file.h"
#include "io/regular_file.h"
#include "io/safetensors.h"
#include "io/section_file.h"
#include "io/section_reader.h"
#include "io/uring_reader.h"
