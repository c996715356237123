#pragma once

#include <string_view>

namespace mla {

// config.json of an MLA export names these (not its source architecture), so that only code that knows the layout
// loads it: ours, and resources/modeling_mla.py, which the export carries. The source architecture (llama, qwen2, ...)
// is kept in the mha2mla block as base_model_type.
inline constexpr std::string_view kMlaModelType = "mha2mla";
inline constexpr std::string_view kMlaArchitecture = "MlaForCausalLM";

} // namespace mla
