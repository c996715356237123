#pragma once

#include "engine/transformer.h"

namespace mla {

// DeepSeek attention's rope tables and, for the absorbed form, kv_b_proj in float32 (engine/deepseek_attention.cpp).
std::shared_ptr<const DeepSeekRuntime> makeDeepSeekRuntime(const Model& model, MlaForm form);

} // namespace mla
