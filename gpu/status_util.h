// Kept until gpu_forward.cc/gpu_step_ops.cc move over: the project's status macros are io/status_macros.h.
#pragma once

#include "io/status_macros.h"

#define RINGMOE_GPU_RETURN_IF_ERROR RINGMOE_RETURN_IF_ERROR
