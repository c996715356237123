#pragma once

#include "model/model.h"
#include "model/tensor_names.h"

#include <cstdint>
#include <vector>

namespace mla {

// Every tensor a config implies, with its shape, in the order a Hugging Face checkpoint lists them. The loader checks
// a file against it and the writers write from it, so the two can never disagree.
struct PlannedTensor {
    TensorRole role;
    std::int64_t layer; // -1 for model-level tensors
    std::vector<std::int64_t> shape;
};

std::vector<PlannedTensor> tensorPlan(const ModelConfig& config);

bool isVectorRole(TensorRole role);

// The model's tensor for a planned role (vectors converted to an owned float32 tensor).
Tensor modelTensor(const Model& model, TensorRole role, std::int64_t layer);
// Stores a tensor into the model's slot for the role.
void setModelTensor(Model& model, TensorRole role, std::int64_t layer, const Tensor& tensor);

} // namespace mla
