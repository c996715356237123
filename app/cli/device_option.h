#pragma once

#include "arguments.h"
#include "backend/compute_backend.h"

#include <memory>

namespace mla::cli {

// --device auto|cpu|cuda|cuda:N on the commands that compute (analyze, convert, eval, generate): where calibration
// forward passes, decompositions and inference run (docs/cuda-backend.md).
OptionSpec deviceOption();

// The compute backend --device asks for (default auto: a CUDA GPU when one works, else the CPU), for this command's
// execution context. Says on stderr where the work runs when that is a GPU or --device was given (not with --quiet),
// and always when a GPU was asked for and the CPU is used instead.
std::shared_ptr<const ComputeBackend> backendFromDeviceOption(const Arguments& args);

} // namespace mla::cli
