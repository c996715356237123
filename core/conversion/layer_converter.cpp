#include "conversion/layer_converter.h"

#include "analysis/analyzer.h"
#include "analysis/key_value_split.h"
#include "backend/compute_backend.h"
#include "numerics/gram.h"
#include "util/error.h"

#include <cmath>

namespace mla {
namespace {

struct Factors {
    MatrixRM up;
    MatrixRM down;
    double squaredResidual = 0.0; // ||M' - up' down'||_F^2 of the matrix decomposed (scaled, whitened), as measured
    double squaredNorm = 0.0;     // ||M'||_F^2
};

constexpr double kWhiteningRidge = 1e-6;

double relativeError(const ComputeBackend& backend, const MatrixRM& m, const MatrixRM& up, const MatrixRM& down)
{
    const double norm = m.cast<double>().norm();
    if (norm == 0.0)
        return 0.0;
    return backend.reconstructionError(m, up, down) / norm;
}

// Singular values into the down projections as square roots, when the settings ask for it (the paper's placement).
void placeSigma(Factors& f, const std::vector<double>& singular, const ConversionSettings& settings)
{
    if (settings.sigma != SigmaPlacement::Sqrt)
        return;
    for (std::size_t i = 0; i < singular.size() && static_cast<Eigen::Index>(i) < f.down.rows(); ++i) {
        if (singular[i] <= 0.0)
            continue;
        const float root = static_cast<float>(std::sqrt(singular[i]));
        f.down.row(static_cast<Eigen::Index>(i)) *= root;
        f.up.col(static_cast<Eigen::Index>(i)) /= root;
    }
}

// The factors of m from the factors lr of its whitened product ms = m S: up = M S V_k, down = V_k^T S^{-1}.
Factors unwhitened(const LowRankFactors& lr, const MatrixXdRM& ms, const MatrixXdRM& whitening, const ConversionSettings& settings)
{
    Factors f;
    // down = V^T S^{-1}: solve S^T X^T = V, i.e. X = V^T S^{-1} without forming the inverse.
    const MatrixXdRM vt = lr.down.cast<double>();
    const MatrixXdRM downT = whitening.transpose().triangularView<Eigen::Upper>().solve(vt.transpose());
    f.down = downT.transpose().cast<float>();
    // up = M S V_k: the factorisation's own up (it is M S V_k, in double, before its rounding to float).
    f.up = lr.up;
    f.squaredResidual = lr.residual * lr.residual;
    f.squaredNorm = ms.squaredNorm();
    placeSigma(f, lr.singular, settings);
    return f;
}

// Best rank-k factors of m (weight space), or of m S in activation space when `whitening` is given:
// m S ~= (m S V)(V^T) gives up = m S V and down = V^T S^{-1}, which minimises E||m x - up down x||^2.
Factors factorize(const ComputeBackend& backend, const MatrixRM& m, std::int64_t k, const ConversionSettings& settings,
                  const MatrixXdRM* whitening, const JobControl& job)
{
    const LowRankOptions options = lowRankOptions(settings);
    if (whitening) {
        const MatrixXdRM ms = backend.multiply(m, *whitening);
        return unwhitened(backend.lowRankFactors(ms.cast<float>(), k, options, job), ms, *whitening, settings);
    }
    LowRankFactors lr = backend.lowRankFactors(m, k, options, job);
    Factors f;
    f.up = std::move(lr.up);
    f.down = std::move(lr.down);
    f.squaredResidual = lr.residual * lr.residual;
    f.squaredNorm = m.cast<double>().squaredNorm();
    placeSigma(f, lr.singular, settings);
    return f;
}

// Whether the joint decomposition of these rows can take its whitened product and Gram from `kv`: the CPU's exact
// path (lowRankFactors) on the rows' side, which is what factorize() would run, with the same matrix.
bool sharesKeyValue(const ComputeBackend& backend, const WhitenedKeyValue* kv, std::int64_t rows, std::int64_t cols, std::int64_t k,
                    const ConversionSettings& settings)
{
    return kv && !backend.device().gpu && rows > 0 && k > 0 && smallerGramSide(rows, cols) == GramSide::Rows
           && lowRankIsExact(rows, cols, k, lowRankOptions(settings));
}

// factorize() of the rows `rows` of [K; V], whitened, from the layer's shared product and Gram.
Factors factorizeShared(const WhitenedKeyValue& kv, const std::vector<std::int64_t>& rows, std::int64_t k, const ConversionSettings& settings,
                        const MatrixXdRM& whitening, const JobControl& job)
{
    const auto n = static_cast<Eigen::Index>(rows.size());
    MatrixXdRM ms(n, kv.product.cols());
    Eigen::MatrixXd gram(n, n);
    for (Eigen::Index i = 0; i < n; ++i) {
        ms.row(i) = kv.product.row(rows[static_cast<std::size_t>(i)]);
        for (Eigen::Index j = 0; j < n; ++j)
            gram(i, j) = kv.gram(rows[static_cast<std::size_t>(i)], rows[static_cast<std::size_t>(j)]);
    }
    const SpectralDecomposition spectral =
        SpectralDecomposition::fromGram(std::move(gram), GramSide::Rows, n, ms.cols(), job.slice(0.0, 0.6));
    return unwhitened(spectral.factors(ms.cast<float>(), k, job.slice(0.6, 1.0)), ms, whitening, settings);
}

void account(ConvertedAttention& out, const Factors& f)
{
    out.factorSquaredResidual += f.squaredResidual;
    out.factorSquaredNorm += f.squaredNorm;
}

} // namespace

LowRankOptions lowRankOptions(const ConversionSettings& settings)
{
    LowRankOptions options;
    if (settings.decomposition == DecompositionMethod::Randomized) {
        options.exactLimit = 0;
        options.powerIterations = static_cast<int>(settings.powerIterations);
    }
    return options;
}

MatrixXdRM attentionWhitening(const MatrixXdRM& covariance) { return whiteningFactor(covariance, kWhiteningRidge); }

WhitenedKeyValue whitenedKeyValue(const ComputeBackend& backend, const LayerWeights& layer, const MatrixXdRM& whitening)
{
    const MatrixRM k = layer.k.toMatrix(), v = layer.v.toMatrix();
    MatrixRM kv(k.rows() + v.rows(), k.cols());
    kv.topRows(k.rows()) = k;
    kv.bottomRows(v.rows()) = v;
    WhitenedKeyValue out;
    out.product = backend.multiply(kv, whitening);
    out.gram = gramMatrix(MatrixRM(out.product.cast<float>()), GramSide::Rows);
    return out;
}

ConvertedAttention convertAttention(const ComputeBackend& backend, const ModelConfig& c, const LayerWeights& layer, const MlaLayerConfig& target,
                                    const ConversionSettings& settings, const MatrixXdRM* covariance, const JobControl& job,
                                    const AttentionConversionShortcuts& shortcuts)
{
    auto errorOf = [&](const MatrixRM& m, const MatrixRM& up, const MatrixRM& down) {
        return shortcuts.relativeErrors ? relativeError(backend, m, up, down) : 0.0;
    };
    if (layer.k.empty() || layer.v.empty())
        throw Error("internal: converting a layer that has no key/value projections");
    ConvertedAttention out;
    reorderQuery(c, layer, target.keptPairs, out.q, out.qBias);
    const KeyValueSplit split = splitKeyValue(c, layer, target.keptPairs);
    out.kRope = split.kRope;
    out.kRopeBias = split.kRopeBias;
    out.upKBias = split.kNopeBias;
    out.upVBias = split.vBias;

    MatrixXdRM whitening;
    const MatrixXdRM* white = nullptr;
    if (settings.activationAware) {
        if (!covariance)
            throw Error("internal: activation-aware conversion needs the calibration covariance");
        if (shortcuts.whitening) {
            white = shortcuts.whitening;
        } else {
            whitening = attentionWhitening(*covariance);
            white = &whitening;
        }
    }

    const bool hasNope = split.kNope.rows() > 0;
    switch (target.method) {
    case LatentMethod::Joint: {
        const MatrixRM joint = jointKeyValue(split);
        // Balance: keys and values of very different energy let the larger block take the whole latent. Scaling
        // each block to unit energy (measured in the space the decomposition works in) before the joint
        // decomposition, and undoing the scale in the up projections, gives both a fair share.
        double keyScale = 1.0, valueScale = 1.0;
        if (settings.balanceKeyValue && hasNope) {
            auto energy = [&](const MatrixRM& block) {
                if (white)
                    return backend.multiply(block, *white).norm();
                const MatrixXdRM wide = block.cast<double>();
                return wide.norm();
            };
            const double ek = energy(split.kNope), ev = energy(split.v);
            if (ek > 0 && ev > 0) {
                keyScale = 1.0 / ek;
                valueScale = 1.0 / ev;
            }
        }
        MatrixRM scaled = joint;
        scaled.topRows(split.kNope.rows()) *= static_cast<float>(keyScale);
        scaled.bottomRows(split.v.rows()) *= static_cast<float>(valueScale);
        Factors f;
        if (white && keyScale == 1.0 && valueScale == 1.0
            && sharesKeyValue(backend, shortcuts.keyValue, joint.rows(), joint.cols(), target.latentK, settings)) {
            std::vector<std::int64_t> rows = split.nopeRows;
            for (std::int64_t r = 0; r < split.v.rows(); ++r)
                rows.push_back(layer.k.rows() + r);
            f = factorizeShared(*shortcuts.keyValue, rows, target.latentK, settings, *white, job);
        } else {
            f = factorize(backend, scaled, target.latentK, settings, white, job);
        }
        account(out, f);
        out.downKv = std::move(f.down);
        out.upK = f.up.topRows(split.kNope.rows()) / static_cast<float>(keyScale);
        out.upV = f.up.bottomRows(split.v.rows()) / static_cast<float>(valueScale);
        if (shortcuts.relativeErrors) {
            MatrixRM up(joint.rows(), out.downKv.rows());
            up.topRows(out.upK.rows()) = out.upK;
            up.bottomRows(out.upV.rows()) = out.upV;
            out.jointRelativeError = errorOf(joint, up, out.downKv);
            if (hasNope)
                out.keyRelativeError = errorOf(split.kNope, out.upK, out.downKv);
            out.valueRelativeError = errorOf(split.v, out.upV, out.downKv);
        }
        break;
    }
    case LatentMethod::Split: {
        if (hasNope) {
            Factors k = factorize(backend, split.kNope, target.latentK, settings, white, job);
            account(out, k);
            out.downK = std::move(k.down);
            out.upK = std::move(k.up);
            out.keyRelativeError = errorOf(split.kNope, out.upK, out.downK);
        } else {
            out.downK = MatrixRM::Zero(target.latentK, c.hidden);
        }
        Factors v = factorize(backend, split.v, target.latentV, settings, white, job);
        account(out, v);
        out.downV = std::move(v.down);
        out.upV = std::move(v.up);
        out.valueRelativeError = errorOf(split.v, out.upV, out.downV);
        break;
    }
    case LatentMethod::Key: {
        if (hasNope) {
            Factors k = factorize(backend, split.kNope, target.latentK, settings, white, job);
            account(out, k);
            out.downK = std::move(k.down);
            out.upK = std::move(k.up);
            out.keyRelativeError = errorOf(split.kNope, out.upK, out.downK);
        } else {
            out.downK = MatrixRM::Zero(target.latentK, c.hidden);
        }
        out.upV = split.v;
        break;
    }
    case LatentMethod::Value: {
        out.upK = split.kNope;
        Factors v = factorize(backend, split.v, target.latentV, settings, white, job);
        account(out, v);
        out.downV = std::move(v.down);
        out.upV = std::move(v.up);
        out.valueRelativeError = errorOf(split.v, out.upV, out.downV);
        break;
    }
    case LatentMethod::None:
        out.upK = split.kNope;
        out.upV = split.v;
        break;
    }
    if (target.method == LatentMethod::Split || target.method == LatentMethod::Key || target.method == LatentMethod::Value) {
        const double kn = split.kNope.cast<double>().squaredNorm();
        const double vn = split.v.cast<double>().squaredNorm();
        const double total = kn + vn;
        out.jointRelativeError = total > 0 ? std::sqrt((out.keyRelativeError * out.keyRelativeError * kn
                                                        + out.valueRelativeError * out.valueRelativeError * vn) / total)
                                           : 0.0;
    }
    return out;
}

} // namespace mla
