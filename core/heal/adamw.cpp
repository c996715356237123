#include "heal/adamw.h"

#include "util/error.h"

#include <algorithm>
#include <cmath>
#include <numbers>

namespace mla::heal {
namespace {

bool isMatrix(BlockTensor t)
{
    switch (t) {
    case BlockTensor::Q: case BlockTensor::KRope: case BlockTensor::DownKv: case BlockTensor::DownK:
    case BlockTensor::DownV: case BlockTensor::UpK: case BlockTensor::UpV: case BlockTensor::O:
        return true;
    default:
        return false;
    }
}

} // namespace

double scheduledLearningRate(const AdamWSettings& s, std::int64_t step)
{
    const std::int64_t warmup = std::clamp<std::int64_t>(static_cast<std::int64_t>(std::llround(s.warmupFraction * static_cast<double>(s.steps))),
                                                         0, std::max<std::int64_t>(s.steps - 1, 0));
    if (step <= warmup)
        return s.learningRate * static_cast<double>(step) / static_cast<double>(warmup);
    const double span = static_cast<double>(std::max<std::int64_t>(s.steps - warmup, 1));
    const double progress = std::min(1.0, static_cast<double>(step - warmup) / span);
    const double floor = s.learningRate * s.finalFraction;
    return floor + (s.learningRate - floor) * 0.5 * (1.0 + std::cos(std::numbers::pi * progress));
}

AdamW::AdamW(const AdamWSettings& settings, const BlockTensors<float>& params, const TrainMask& mask)
    : m_settings(settings), m_mask(mask), m_first(params.zerosLike()), m_second(params.zerosLike())
{
}

double AdamW::step(BlockTensors<float>& params, const BlockTensors<float>& gradient)
{
    ++m_step;
    double squared = 0.0;
    for (std::size_t i = 0; i < kBlockTensorCount; ++i) {
        if (!m_mask[i])
            continue;
        if (gradient.t[i].rows() != params.t[i].rows() || gradient.t[i].cols() != params.t[i].cols())
            throw Error("internal: gradient of " + std::string(blockTensorName(static_cast<BlockTensor>(i))) + " has the wrong shape");
        const float* g = gradient.t[i].data();
        for (Eigen::Index k = 0; k < gradient.t[i].size(); ++k)
            squared += static_cast<double>(g[k]) * static_cast<double>(g[k]);
    }
    const double norm = std::sqrt(squared);
    const double clip = m_settings.clipNorm > 0.0 && norm > m_settings.clipNorm ? m_settings.clipNorm / norm : 1.0;
    const double lr = scheduledLearningRate(m_settings, m_step);
    const double b1 = m_settings.beta1, b2 = m_settings.beta2;
    const double correction1 = 1.0 - std::pow(b1, static_cast<double>(m_step));
    const double correction2 = 1.0 - std::pow(b2, static_cast<double>(m_step));
    const float stepSize = static_cast<float>(lr / correction1);
    const float rootCorrection2 = static_cast<float>(std::sqrt(correction2));
    const float eps = static_cast<float>(m_settings.epsilon);
    const float b1f = static_cast<float>(b1), b2f = static_cast<float>(b2);
    const float clipf = static_cast<float>(clip);
    for (std::size_t i = 0; i < kBlockTensorCount; ++i) {
        if (!m_mask[i])
            continue;
        const float decay = isMatrix(static_cast<BlockTensor>(i)) ? static_cast<float>(1.0 - lr * m_settings.weightDecay) : 1.0f;
        float* w = params.t[i].data();
        float* m = m_first.t[i].data();
        float* v = m_second.t[i].data();
        const float* g = gradient.t[i].data();
        const Eigen::Index n = params.t[i].size();
#pragma omp parallel for schedule(static)
        for (Eigen::Index k = 0; k < n; ++k) {
            const float gk = g[k] * clipf;
            m[k] = b1f * m[k] + (1.0f - b1f) * gk;
            v[k] = b2f * v[k] + (1.0f - b2f) * gk * gk;
            w[k] = w[k] * decay - stepSize * m[k] / (std::sqrt(v[k]) / rootCorrection2 + eps);
        }
    }
    return norm;
}

} // namespace mla::heal
