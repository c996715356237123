#pragma once

// What compute_backend.cpp needs from the CUDA backend; no CUDA header here, so the file that includes it compiles
// with or without the toolkit (it is only included when MLA_WITH_CUDA is defined).
#include "backend/compute_backend.h"

#include <memory>
#include <string>
#include <vector>

namespace mla::cuda {

// The backend on GPU `device`, or null with the reason (no driver, no such device, a failing driver or an unsupported
// GPU).
std::shared_ptr<const ComputeBackend> createCudaBackend(int device, std::string& whyNot);
// The CUDA devices present (empty with the reason when none).
std::vector<ComputeDevice> cudaDevices(std::string& whyNot);

} // namespace mla::cuda
