#pragma once

#include <cstdint>

namespace mla {

// Token sampling exactly as llama2.c's run.c does it (same xorshift generator, same top-p cut), so that a seed gives
// the same text as llama2.c: temperature 0 is a plain argmax over all ids. Unlike run.c it is safe for any input:
// logits holding NaN or +inf are an Error naming the cause (the model's weights or activations), a temperature so
// small that logits / temperature overflow samples from the stable form exp((l - max) / T) (the argmax, in effect),
// and a top-p nucleus that would be empty keeps the most probable token.
class Sampler {
public:
    Sampler(float temperature, float topP, std::uint64_t seed);

    // `logits` is modified (scaled and turned into probabilities, without top-p only up to the token drawn) unless
    // greedy.
    int sample(float* logits, std::int64_t n);

    static int argmax(const float* values, std::int64_t n);

private:
    std::uint32_t randomU32();
    float randomF32();

    float m_temperature;
    float m_topP;
    std::uint64_t m_state;
};

} // namespace mla
