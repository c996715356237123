#pragma once

#include <cstdint>

// llama.cpp's token types (llama_token_type, GGUF's tokenizer.ggml.token_type), the same numbers as SentencePiece's
// piece types: one table for the GGUF vocabulary reader and writer and the tokenizers that honour them.
namespace mla::gguf_token {

inline constexpr std::int32_t normal = 1;
inline constexpr std::int32_t unknown = 2;
inline constexpr std::int32_t control = 3;
inline constexpr std::int32_t userDefined = 4;
inline constexpr std::int32_t unused = 5;
inline constexpr std::int32_t byte = 6;

} // namespace mla::gguf_token
