#include "engine/sampler.h"

#include "util/error.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

namespace mla {

Sampler::Sampler(float temperature, float topP, std::uint64_t seed)
    : m_temperature(temperature), m_topP(topP), m_state(seed == 0 ? 1 : seed)
{
}

std::uint32_t Sampler::randomU32()
{
    m_state ^= m_state >> 12;
    m_state ^= m_state << 25;
    m_state ^= m_state >> 27;
    return static_cast<std::uint32_t>((m_state * 0x2545F4914F6CDD1Dull) >> 32);
}

float Sampler::randomF32()
{
    return static_cast<float>(randomU32() >> 8) / 16777216.0f;
}

int Sampler::argmax(const float* values, std::int64_t n)
{
    std::int64_t best = 0;
    for (std::int64_t i = 1; i < n; ++i) {
        if (values[i] > values[best])
            best = i;
    }
    return static_cast<int>(best);
}

int Sampler::sample(float* logits, std::int64_t n)
{
    if (n <= 0)
        throw Error("internal: sampling from an empty vocabulary");
    // One pass finds what makes the logits unusable and their maximum (NaN excluded: it is an error below).
    std::int64_t nan = 0, posInf = 0, finite = 0;
    float maxLogit = -std::numeric_limits<float>::infinity();
    for (std::int64_t i = 0; i < n; ++i) {
        const float v = logits[i];
        if (std::isnan(v)) {
            ++nan;
            continue;
        }
        if (std::isinf(v) && v > 0)
            ++posInf;
        else if (std::isfinite(v))
            ++finite;
        maxLogit = std::max(maxLogit, v);
    }
    if (nan > 0 || posInf > 0)
        throw Error("the model produced " + std::to_string(nan) + " NaN and " + std::to_string(posInf) + " +inf logits of "
                    + std::to_string(n) + ": its weights or activations hold NaN or overflow, so no token can be chosen");
    if (finite == 0)
        throw Error("the model produced -inf for every logit: no token can be chosen");
    if (m_temperature == 0.0f || n == 1)
        return argmax(logits, n);
    // run.c's form, kept bit for bit where it is finite; a tiny temperature overflows it to inf - inf = NaN, and then
    // the stable form of the same softmax is used. Dividing by a temperature of 1 changes no value, so that pass (and
    // the search for the maximum of the quotients, which is then maxLogit) is skipped.
    const bool overflows = !std::isfinite(maxLogit / m_temperature) || !std::isfinite(m_temperature);
    float maxValue = maxLogit;
    if (!overflows && m_temperature != 1.0f) {
        for (std::int64_t i = 0; i < n; ++i)
            logits[i] /= m_temperature;
        maxValue = *std::max_element(logits, logits + n);
    }
    float sum = 0.0f;
    for (std::int64_t i = 0; i < n; ++i) {
        logits[i] = overflows ? std::exp((logits[i] - maxLogit) / m_temperature) : std::exp(logits[i] - maxValue);
        sum += logits[i];
    }

    const float coin = randomF32();
    if (m_topP <= 0.0f || m_topP >= 1.0f) {
        // run.c divides every value by the sum and then walks the cumulative sum; the same quotients and sums, made
        // only as far as the token drawn (the values after it are left unnormalised).
        float cdf = 0.0f;
        for (std::int64_t i = 0; i < n; ++i) {
            logits[i] /= sum;
            cdf += logits[i];
            if (coin < cdf)
                return static_cast<int>(i);
        }
        return static_cast<int>(n - 1);
    }
    for (std::int64_t i = 0; i < n; ++i)
        logits[i] /= sum;

    // Nucleus sampling: candidates below (1 - topP) / (n - 1) cannot be in the nucleus and are dropped before sorting.
    const float cutoff = (1.0f - m_topP) / static_cast<float>(n - 1);
    std::vector<std::pair<float, int>> candidates;
    for (std::int64_t i = 0; i < n; ++i) {
        if (logits[i] >= cutoff)
            candidates.emplace_back(logits[i], static_cast<int>(i));
    }
    if (candidates.empty()) // a nucleus smaller than any one token's share: keep the most probable token
        return argmax(logits, n);
    std::sort(candidates.begin(), candidates.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
    float cumulative = 0.0f;
    std::size_t last = candidates.size() - 1;
    for (std::size_t i = 0; i < candidates.size(); ++i) {
        cumulative += candidates[i].first;
        if (cumulative > m_topP) {
            last = i;
            break;
        }
    }
    const float r = coin * cumulative;
    float cdf = 0.0f;
    for (std::size_t i = 0; i <= last; ++i) {
        cdf += candidates[i].first;
        if (r < cdf)
            return candidates[i].second;
    }
    return candidates[last].second;
}

} // namespace mla
