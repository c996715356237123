#pragma once

#include "heal/heal_block.h"

#include <cstdint>

namespace mla::heal {

struct AdamWSettings {
    double learningRate = 1e-3;
    std::int64_t steps = 200;
    double warmupFraction = 0.1;      // linear warm-up over this fraction of the steps
    double finalFraction = 0.1;       // cosine decay from the peak to learningRate * finalFraction at the last step
    double beta1 = 0.9;
    double beta2 = 0.999;
    double epsilon = 1e-8;
    double weightDecay = 0.0;         // decoupled, on matrices only (never biases or norms)
    double clipNorm = 1.0;            // global gradient 2-norm; 0: no clipping
};

// The learning rate at step t (1-based): linear warm-up, then cosine decay.
double scheduledLearningRate(const AdamWSettings& settings, std::int64_t step);

// AdamW (Loshchilov & Hutter) over the trained tensors of a block, float32 moments. Every update is elementwise and
// the gradient norm is summed in double in tensor and element order, so a step is the same whatever the threads.
class AdamW {
public:
    AdamW(const AdamWSettings& settings, const BlockTensors<float>& params, const TrainMask& mask);

    // One update from `gradient` (clipped to clipNorm first). Returns the gradient norm before clipping.
    double step(BlockTensors<float>& params, const BlockTensors<float>& gradient);
    std::int64_t stepsTaken() const { return m_step; }

private:
    AdamWSettings m_settings;
    TrainMask m_mask;
    BlockTensors<float> m_first;
    BlockTensors<float> m_second;
    std::int64_t m_step = 0;
};

} // namespace mla::heal
