#pragma once

#include "arguments.h"

namespace mla::cli {

// --device auto|cpu|cuda on the commands that compute (analyze, convert, eval, generate): where calibration forward
// passes, decompositions and inference run (docs/cuda-backend.md).
OptionSpec deviceOption();

// Sets the process-wide compute backend from --device (default auto: a CUDA GPU when one works, else the CPU). Says on
// stderr where the work runs when that is a GPU or --device was given (not with --quiet), and always when CUDA was
// asked for and the CPU is used instead.
void applyDeviceOption(const Arguments& args);

} // namespace mla::cli
