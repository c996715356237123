#include "conversion/deepseek_layer.h"

#include "conversion/layer_converter.h"
#include "conversion/least_squares.h"
#include "numerics/gram.h"
#include "util/error.h"

#include <Eigen/Cholesky>

#include <cmath>

namespace mla {
namespace {

using cd = std::complex<double>;

Eigen::VectorXd vectorOrZero(const VectorF& v, std::int64_t n)
{
    return v.size() > 0 ? Eigen::VectorXd(v.cast<double>()) : Eigen::VectorXd::Zero(n);
}

struct BiasFold {
    MatrixXdRM weight;
    double residual = 0.0; // E||b - fold(x)||^2 / E||W x + b||^2
};

// The W' closest to producing W x + b without a bias on the calibration inputs: least squares with a ridge toward
// W, W' = W + b u^T with u = (sum x x^T + lambda I)^{-1} sum x. Exact when some input direction is constant.
BiasFold foldBias(const MatrixXdRM& w, const Eigen::VectorXd& b, const DeepSeekLayerInputs& in, double ridge)
{
    BiasFold f{w, 0.0};
    if (b.squaredNorm() == 0.0 || in.tokens == 0)
        return f;
    const Eigen::Index n = in.gram.rows();
    const double lambda = std::max(ridge * in.gram.trace() / static_cast<double>(n), 1e-300);
    MatrixXdRM a = in.gram;
    a.diagonal().array() += lambda;
    const Eigen::VectorXd u = a.llt().solve(in.sum);
    f.weight.noalias() += b * u.transpose();
    const double tokens = static_cast<double>(in.tokens);
    const Eigen::VectorXd mean = in.sum / tokens;
    const MatrixXdRM second = in.gram / tokens;
    const double left = b.squaredNorm() * std::max(0.0, 1.0 - 2.0 * u.dot(mean) + u.dot(second * u));
    const double total = (w * second).cwiseProduct(w).sum() + 2.0 * b.dot(w * mean) + b.squaredNorm();
    f.residual = total > 0.0 ? left / total : 0.0;
    return f;
}

MatrixRM rowsTimes(const MatrixRM& x, const MatrixXdRM& w)
{
    return (x.cast<double>() * w.transpose()).cast<float>();
}

} // namespace

DeepSeekLayerInputs deepSeekLayerInputs(std::vector<MatrixRM> xc, std::vector<MatrixRM> xo)
{
    DeepSeekLayerInputs in;
    const Eigen::Index hidden = xc.empty() ? 0 : xc[0].cols();
    in.gram = MatrixXdRM::Zero(hidden, hidden);
    in.sum = Eigen::VectorXd::Zero(hidden);
    for (const MatrixRM& x : xc) {
        addGram(in.gram, x);
        in.sum += x.cast<double>().colwise().sum().transpose();
        in.tokens += x.rows();
    }
    in.xc = std::move(xc);
    in.xo = std::move(xo);
    return in;
}

ModelConfig deepSeekTargetConfig(const ModelConfig& original, std::int64_t ropeDim, std::int64_t kvLoraRank, double ropeTheta,
                                 bool latentNorm)
{
    ModelConfig c = original;
    c.architecture = "deepseek_v3";
    c.kvHeads = c.heads;
    c.headDim = original.headDim + ropeDim;
    c.rope = RopeConfig();
    c.rope.theta = ropeTheta;
    c.tieEmbeddings = false;
    c.qkvBias = false;
    c.outputBias = false;
    c.qkNorm = false;
    c.slidingWindow = 0;
    c.mla.reset();
    DeepSeekAttentionConfig a;
    a.kvLoraRank = kvLoraRank;
    a.ropeDim = ropeDim;
    a.nopeDim = original.headDim;
    a.valueDim = original.headDim;
    a.ropeInterleave = true;
    a.latentNorm = latentNorm;
    c.deepseek = a;
    return c;
}

Model singleDeepSeekLayerModel(const Model& base, const ModelConfig& target, const LayerWeights& layer)
{
    Model m;
    m.config = target;
    m.config.layers = 1;
    m.embedding = base.embedding;
    m.output = base.output;
    m.outputNorm = base.outputNorm;
    m.layers = {layer};
    return m;
}

LayerWeights buildDeepSeekLayer(const ComputeBackend& backend, const ModelConfig& original, const ModelConfig& target, const LayerWeights& layer,
                                const std::vector<RopeComponent>& components, const std::vector<int>& slotComponents,
                                const DeepSeekLayerInputs& in, const ConversionSettings& settings, bool balanced,
                                DeepSeekLayerReport& report, const JobControl& job)
{
    const DeepSeekAttentionConfig& a = *target.deepseek;
    const std::int64_t d = original.headDim, half = d / 2, H = original.heads, G = original.kvHeads, group = original.group();
    const std::int64_t hidden = original.hidden, kvDim = original.kvDim(), R = a.ropeDim, L = a.kvLoraRank;
    if (static_cast<std::int64_t>(slotComponents.size()) != R / 2)
        throw Error("internal: shared RoPE slots do not match qk_rope_head_dim");
    if (in.tokens == 0)
        throw Error("internal: the DeepSeek conversion needs calibration inputs");
    const MatrixXdRM wk = layer.k.toMatrix().cast<double>();
    const MatrixXdRM wv = layer.v.toMatrix().cast<double>();
    const Eigen::VectorXd bq = vectorOrZero(layer.qBias, H * d);
    const Eigen::VectorXd bk = vectorOrZero(layer.kBias, kvDim);
    const Eigen::VectorXd bv = vectorOrZero(layer.vBias, kvDim);
    report = DeepSeekLayerReport();
    report.balanced = balanced;

    // Queries: the bias folded by least squares (it multiplies the keys of every position differently).
    const BiasFold query = foldBias(layer.q.toMatrix().cast<double>(), bq, in, settings.refitRidge);
    report.queryBiasResidual = query.residual;
    const MatrixXdRM& wq = query.weight;

    // The shared RoPE head: slot i holds component c (frequency pair j), its key rows are the complex combination
    // sum_g down[g] (row a + i row b) of the KV heads' pair rows, in interleaved order (dims 2i, 2i+1). The keys keep
    // what the kept components do not carry (position-free from now on); each query head reads a slot through
    // conj(up[g]) times its own pair.
    MatrixXdRM rope = MatrixXdRM::Zero(R, hidden);
    Eigen::VectorXd ropeBias = Eigen::VectorXd::Zero(R);
    MatrixXdRM kRest = wk;
    MatrixXdRM qRope = MatrixXdRM::Zero(H * R, hidden);
    const std::vector<double> ladder = ropeLadder(target.rope.theta, R);
    double layerEnergy = 0.0;
    for (const auto& comp : components)
        layerEnergy += comp.energy;
    for (std::int64_t i = 0; i < R / 2; ++i) {
        const int ci = slotComponents[static_cast<std::size_t>(i)];
        DeepSeekLayerReport::Slot slot;
        slot.ladder = ladder[static_cast<std::size_t>(i)];
        if (ci < 0) {
            report.ropeSlots.push_back(slot);
            continue;
        }
        const RopeComponent& comp = components[static_cast<std::size_t>(ci)];
        slot.pair = comp.pair;
        slot.frequency = comp.frequency;
        slot.energy = layerEnergy > 0.0 ? comp.energy / layerEnergy : 0.0;
        report.ropeSlots.push_back(slot);
        const std::int64_t j = comp.pair;
        Eigen::RowVectorXd re = Eigen::RowVectorXd::Zero(hidden), im = Eigen::RowVectorXd::Zero(hidden);
        cd bias(0.0, 0.0);
        for (std::int64_t g = 0; g < G; ++g) {
            const cd down = comp.down[static_cast<std::size_t>(g)];
            re += down.real() * wk.row(g * d + j) - down.imag() * wk.row(g * d + j + half);
            im += down.real() * wk.row(g * d + j + half) + down.imag() * wk.row(g * d + j);
            bias += down * cd(bk(g * d + j), bk(g * d + j + half));
        }
        rope.row(2 * i) = re;
        rope.row(2 * i + 1) = im;
        ropeBias(2 * i) = bias.real();
        ropeBias(2 * i + 1) = bias.imag();
        for (std::int64_t g = 0; g < G; ++g) {
            const cd up = comp.up[static_cast<std::size_t>(g)];
            kRest.row(g * d + j) -= up.real() * re - up.imag() * im;
            kRest.row(g * d + j + half) -= up.real() * im + up.imag() * re;
        }
        for (std::int64_t h = 0; h < H; ++h) {
            const cd up = comp.up[static_cast<std::size_t>(h / group)];
            const auto qa = wq.row(h * d + j);
            const auto qb = wq.row(h * d + j + half);
            qRope.row(h * R + 2 * i) = up.real() * qa + up.imag() * qb;
            qRope.row(h * R + 2 * i + 1) = up.real() * qb - up.imag() * qa;
        }
    }
    // The rotated key has no bias in the engines: fold its share of the key bias (the position-free share is exact:
    // q . b is the same for every key of a query, and the softmax removes it).
    const BiasFold ropeFold = foldBias(rope, ropeBias, in, settings.refitRidge);
    report.keyBiasResidual = ropeFold.residual;

    // The latent: joint factors of [position-free keys; values], whitened on the layer's inputs when asked.
    LayerWeights synthetic = layer;
    synthetic.k = Tensor::fromMatrix(kRest.cast<float>());
    synthetic.kBias = synthetic.vBias = synthetic.qBias = VectorF();
    MlaLayerConfig latentOnly;
    latentOnly.keptPairs.assign(static_cast<std::size_t>(G), {});
    latentOnly.method = LatentMethod::Joint;
    latentOnly.latentK = L;
    ConversionSettings s = settings;
    s.method = LatentMethod::Joint;
    s.balanceKeyValue = balanced;
    const MatrixXdRM covariance = in.gram / static_cast<double>(in.tokens);
    const ConvertedAttention factors = convertAttention(backend, original, synthetic, latentOnly, s, settings.activationAware ? &covariance : nullptr, job);
    MatrixRM down = factors.downKv;
    MatrixRM up(2 * kvDim, L);
    up.topRows(kvDim) = factors.upK;
    up.bottomRows(kvDim) = factors.upV;

    // Scale the latent to an RMS of about 1 per token, far above any engine's eps (1e-6 in transformers, rms_norm_eps
    // in vLLM and SGLang), so that the norm does not depend on which eps an engine uses.
    const auto eps = static_cast<float>(a.latentNormEps);
    double meanSquare = 0.0;
    for (const MatrixRM& x : in.xc)
        meanSquare += (x * down.transpose()).squaredNorm();
    meanSquare /= static_cast<double>(in.tokens * L);
    if (meanSquare > 0.0) {
        const auto toUnit = static_cast<float>(1.0 / std::sqrt(meanSquare));
        down *= toUnit;
        up /= toUnit;
    }

    // kv_b_proj by least squares from what the engine computes, RMSNorm(c) (or c in the ablation), to the original
    // position-free keys and values (with the value bias: it passes through the softmax unchanged) on the original
    // model's inputs; ridge toward the factors.
    LeastSquaresFit fit(L, 2 * kvDim), unnormalised(L, 2 * kvDim);
    const MatrixXdRM restAndValues = [&] {
        MatrixXdRM m(2 * kvDim, hidden);
        m.topRows(kvDim) = kRest;
        m.bottomRows(kvDim) = wv;
        return m;
    }();
    double rhoSum = 0.0, valueEnergy = 0.0;
    for (std::size_t q = 0; q < in.xc.size(); ++q) {
        MatrixRM target = rowsTimes(in.xo[q], restAndValues);
        target.rightCols(kvDim).rowwise() += bv.cast<float>().transpose();
        valueEnergy += target.rightCols(kvDim).cast<double>().squaredNorm();
        const MatrixRM c = in.xc[q] * down.transpose();
        MatrixRM f = c;
        if (a.latentNorm) {
            for (Eigen::Index t = 0; t < c.rows(); ++t) {
                const float rms = std::sqrt(c.row(t).squaredNorm() / static_cast<float>(L) + eps);
                f.row(t) /= rms;
                rhoSum += rms;
            }
        } else {
            rhoSum += static_cast<double>(c.rows());
        }
        fit.add(f, target);
        unnormalised.add(c, target);
    }
    const double rho = rhoSum / static_cast<double>(in.tokens);
    report.valueBiasShare = valueEnergy > 0.0 ? static_cast<double>(in.tokens) * bv.squaredNorm() / valueEnergy : 0.0;
    const double energy = std::max(fit.targetEnergy(), 1e-300);
    report.latentResidualNoNorm = unnormalised.residual(up) / energy;
    const MatrixRM scaled = up * static_cast<float>(rho);
    report.latentResidualNormScaled = fit.residual(scaled) / energy;
    const MatrixRM fitted = fit.solve(scaled, settings.refitRidge);
    report.latentResidualNormFitted = fit.residual(fitted) / energy;

    // Assemble. The softmax scale goes from d^-0.5 to (d + R)^-0.5: the queries take the ratio.
    const double qScale = std::sqrt(static_cast<double>(d + R) / static_cast<double>(d));
    MatrixXdRM qOut(H * (d + R), hidden);
    for (std::int64_t h = 0; h < H; ++h) {
        qOut.middleRows(h * (d + R), d) = wq.middleRows(h * d, d) * qScale;
        qOut.middleRows(h * (d + R) + d, R) = qRope.middleRows(h * R, R) * qScale;
    }
    MatrixRM kvA(L + R, hidden);
    kvA.topRows(L) = down;
    kvA.bottomRows(R) = ropeFold.weight.cast<float>();
    MatrixRM kvB(H * 2 * d, L);
    for (std::int64_t h = 0; h < H; ++h) {
        const std::int64_t g = h / group;
        kvB.middleRows(h * 2 * d, d) = fitted.middleRows(g * d, d) / static_cast<float>(rho);
        kvB.middleRows(h * 2 * d + d, d) = fitted.middleRows(kvDim + g * d, d) / static_cast<float>(rho);
    }

    LayerWeights out = layer;
    out.q = Tensor::fromMatrix(qOut.cast<float>());
    out.k = out.v = Tensor();
    out.qBias = out.kBias = out.vBias = out.oBias = VectorF();
    out.qNorm = out.kNorm = VectorF();
    out.kvA = Tensor::fromMatrix(kvA);
    out.kvANorm = VectorF::Constant(L, a.latentNorm ? static_cast<float>(rho) : 1.0f);
    out.kvB = Tensor::fromMatrix(kvB);
    return out;
}

} // namespace mla
