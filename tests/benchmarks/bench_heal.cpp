// Heal cost per layer: one AdamW step of block-wise distillation (forward, hand-written backward, update) on a layer
// of a real model's shape converted the paper's way at 75% KV saving (d_h/16 RoPE pairs per head, joint latent),
// with random weights and inputs. Reports seconds per step, per 1k tokens, and per layer at 200 steps, so that the
// cost of healing a whole model can be read off: layers x steps x (tokens per step / 1000) x s/1k tokens.
// The baseline in the same run is the block's forward pass alone (the floor any training step pays).
//
// Figures, not pass/fail. Usage: bench_heal [--shape stories260K|smollm-135m|llama2-7b] [--tokens N] [--seq-len T]
//                                           [--steps K]
#include "heal/adamw.h"
#include "heal/heal_block.h"

#include <omp.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>

using namespace mla;
using namespace mla::heal;

namespace {

using Clock = std::chrono::steady_clock;

struct Shape {
    const char* name;
    std::int64_t hidden, ffn, heads, kvHeads, headDim;
};

constexpr Shape kShapes[] = {
    {"stories260K", 64, 172, 8, 4, 8},
    {"smollm-135m", 576, 1536, 9, 3, 64},
    {"llama2-7b", 4096, 11008, 32, 32, 128},
};

Mat<float> randomMatrix(std::int64_t rows, std::int64_t cols, std::mt19937& rng, float sd, float mean = 0.0f)
{
    std::normal_distribution<float> normal(mean, sd);
    Mat<float> m(rows, cols);
    for (Eigen::Index i = 0; i < m.size(); ++i)
        m.data()[i] = normal(rng);
    return m;
}

} // namespace

int main(int argc, char** argv)
{
    std::string shapeName = "llama2-7b";
    std::int64_t tokens = 1024, seqLen = 256, steps = 3;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!std::strcmp(argv[i], "--shape"))
            shapeName = argv[i + 1];
        else if (!std::strcmp(argv[i], "--tokens"))
            tokens = std::stoll(argv[i + 1]);
        else if (!std::strcmp(argv[i], "--seq-len"))
            seqLen = std::stoll(argv[i + 1]);
        else if (!std::strcmp(argv[i], "--steps"))
            steps = std::stoll(argv[i + 1]);
        else {
            std::fprintf(stderr, "usage: bench_heal [--shape NAME] [--tokens N] [--seq-len T] [--steps K]\n");
            return 2;
        }
    }
    const Shape* shape = nullptr;
    for (const Shape& s : kShapes)
        if (shapeName == s.name)
            shape = &s;
    if (!shape || tokens < seqLen || seqLen < 2 || steps < 1) {
        std::fprintf(stderr, "bench_heal: unknown shape or bad sizes\n");
        return 2;
    }

    // The paper's setting at 75%: p = d_h/16 pairs per head (at least 1), the rest of a quarter of the MHA cache as
    // one joint latent.
    ModelConfig c;
    c.hidden = shape->hidden;
    c.ffn = shape->ffn;
    c.layers = 1;
    c.heads = shape->heads;
    c.kvHeads = shape->kvHeads;
    c.headDim = shape->headDim;
    const std::int64_t pairs = std::max<std::int64_t>(1, shape->headDim / 16);
    MlaLayerConfig m;
    m.keptPairs.assign(static_cast<std::size_t>(shape->kvHeads), {});
    for (auto& k : m.keptPairs)
        for (int j = 0; j < pairs; ++j)
            k.push_back(j);
    m.latentK = 2 * shape->kvHeads * shape->headDim / 4 - 2 * pairs * shape->kvHeads;
    MlaConfig mla;
    mla.layers = {m};
    c.mla = mla;
    const BlockShape s = blockShape(c, 0);

    using B = BlockTensor;
    std::mt19937 rng(1);
    const float sd = 1.0f / std::sqrt(static_cast<float>(c.hidden));
    BlockTensors<float> p;
    p[B::Q] = randomMatrix(c.qDim(), c.hidden, rng, sd);
    p[B::KRope] = randomMatrix(c.kvHeads * 2 * pairs, c.hidden, rng, sd);
    p[B::DownKv] = randomMatrix(m.latentK, c.hidden, rng, sd);
    p[B::UpK] = randomMatrix(c.kvHeads * (c.headDim - 2 * pairs), m.latentK, rng, 1.0f / std::sqrt(static_cast<float>(m.latentK)));
    p[B::UpV] = randomMatrix(c.kvDim(), m.latentK, rng, 1.0f / std::sqrt(static_cast<float>(m.latentK)));
    p[B::O] = randomMatrix(c.hidden, c.qDim(), rng, sd);
    p[B::AttnNorm] = Mat<float>::Ones(1, c.hidden);
    p[B::FfnNorm] = Mat<float>::Ones(1, c.hidden);
    FrozenFfn<float> ffn;
    ffn.gate = randomMatrix(c.ffn, c.hidden, rng, sd);
    ffn.up = randomMatrix(c.ffn, c.hidden, rng, sd);
    ffn.down = randomMatrix(c.hidden, c.ffn, rng, 1.0f / std::sqrt(static_cast<float>(c.ffn)));
    BlockBatch<float> batch;
    const std::int64_t sequences = tokens / seqLen;
    for (std::int64_t q = 0; q <= sequences; ++q)
        batch.starts.push_back(q * seqLen);
    batch.input = randomMatrix(sequences * seqLen, c.hidden, rng, 1.0f);
    batch.target = batch.input + randomMatrix(sequences * seqLen, c.hidden, rng, 0.1f);
    const TrainMask mask = trainMask(s, p, false);
    AdamWSettings settings;
    settings.steps = steps;
    AdamW optimiser(settings, p, mask);
    BlockTensors<float> gradient;
    BlockWorkspace<float> workspace;
    const double n = static_cast<double>(sequences * seqLen);

    std::printf("heal step, %s-shaped layer (hidden %lld, %lld heads / %lld KV, head %lld, ffn %lld), paper 75%%: %lld pairs, "
                "joint latent %lld; %lld tokens per step (%lld x %lld), %d threads\n",
                shape->name, static_cast<long long>(c.hidden), static_cast<long long>(c.heads), static_cast<long long>(c.kvHeads),
                static_cast<long long>(c.headDim), static_cast<long long>(c.ffn), static_cast<long long>(pairs),
                static_cast<long long>(m.latentK), static_cast<long long>(sequences * seqLen), static_cast<long long>(sequences),
                static_cast<long long>(seqLen), omp_get_max_threads());
    blockLoss(s, p, ffn, batch, &workspace); // warm-up
    double forwardBest = 1e30;
    for (std::int64_t i = 0; i < steps; ++i) {
        const auto t0 = Clock::now();
        blockLoss(s, p, ffn, batch, &workspace);
        forwardBest = std::min(forwardBest, std::chrono::duration<double>(Clock::now() - t0).count());
    }
    double stepBest = 1e30;
    for (std::int64_t i = 0; i < steps; ++i) {
        const auto t0 = Clock::now();
        blockLossAndGradient(s, p, ffn, batch, mask, gradient, &workspace);
        optimiser.step(p, gradient);
        stepBest = std::min(stepBest, std::chrono::duration<double>(Clock::now() - t0).count());
    }
    const double perK = stepBest * 1000.0 / n;
    std::printf("  forward only (baseline): %.4f s\n", forwardBest);
    std::printf("  training step:           %.4f s = %.2f x the forward\n", stepBest, stepBest / forwardBest);
    std::printf("  per 1k tokens:           %.4f s\n", perK);
    std::printf("  per layer at 200 steps of %lld tokens: %.1f s\n", static_cast<long long>(sequences * seqLen), 200.0 * stepBest);
    return 0;
}
