#pragma once

#include "model/model_config.h"
#include "tensor/dtype.h"
#include "util/job_control.h"
#include "util/output_safety.h"

#include <filesystem>
#include <string>
#include <vector>

namespace mla {

// Public model shapes (from each model's published config.json), for synthetic checkpoints with random weights used
// in scale tests and benchmarks.
struct SyntheticShape {
    std::string name;
    std::string description;
    ModelConfig config;
};

const std::vector<SyntheticShape>& syntheticShapes();
const SyntheticShape& syntheticShape(const std::string& name); // Error listing the known names

struct SyntheticOptions {
    std::int64_t layers = 0;   // 0: the shape's own layer count
    DType dtype = DType::BF16;
    std::uint64_t seed = 1;
    std::uint64_t shardBytes = 0; // 0: one model.safetensors; else shards of at most this many bytes + index
    OutputOptions output;         // where the folder may go (util/output_safety.h)
};

// Writes config.json and safetensors weights (uniform random with the usual 0.02 standard deviation, norms at 1)
// into `folder`, one tensor at a time, so a 7B-shaped checkpoint never sits in memory. The folder appears complete or
// not at all.
void writeSyntheticCheckpoint(const SyntheticShape& shape, const SyntheticOptions& options, const std::filesystem::path& folder,
                              const JobControl& job = {});

} // namespace mla
