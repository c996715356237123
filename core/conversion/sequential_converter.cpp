#include "conversion/sequential_converter.h"

#include "analysis/key_value_split.h"
#include "conversion/budget_allocation.h"
#include "conversion/candidate_errors.h"
#include "conversion/layer_pipeline.h"
#include "conversion/least_squares.h"
#include "engine/ops.h"
#include "model/tensor_plan.h"
#include "numerics/gram.h"
#include "util/error.h"
#include "util/parallel_for.h"

namespace mla {
namespace {

const CalibrationSet& nonEmpty(const CalibrationSet& calibration)
{
    if (calibration.sequences.empty())
        throw Error("the sequential conversion needs calibration sequences");
    return calibration;
}

MatrixRM subtractBias(MatrixRM m, const VectorF& bias)
{
    if (bias.size() > 0)
        m.rowwise() -= bias.transpose();
    return m;
}

// Attention output (o_proj applied) of a one-layer model on normalised inputs.
MatrixRM attentionOutput(const Transformer& t, const LayerWeights& w, const MatrixRM& x)
{
    MatrixRM out;
    linear(w.o, w.oBias, t.attentionContext(0, x), out);
    return out;
}

struct Observed : ForwardObserver {
    MatrixRM keys, values;
    void onLayer(const LayerActivations& a) override
    {
        keys = *a.keys;
        values = *a.values;
    }
};

} // namespace

std::size_t sequentialCalibrationCount(const ModelConfig& config, const std::vector<std::vector<int>>& sequences, std::int64_t refitTokens)
{
    std::int64_t total = 0;
    for (const std::vector<int>& s : sequences)
        total += static_cast<std::int64_t>(s.size());
    if (refitTokens == kRefitTokensAll)
        return sequences.size();
    const std::int64_t goal = refitTokens == kRefitTokensAuto
                                  ? std::max((total + 1) / 2, kRefitTokensPerFeature * std::max(config.qDim(), config.hidden))
                                  : refitTokens;
    std::int64_t tokens = 0;
    for (std::size_t i = 0; i < sequences.size(); ++i) {
        tokens += static_cast<std::int64_t>(sequences[i].size());
        if (tokens >= goal)
            return i + 1;
    }
    return sequences.size();
}

Model singleLayerModel(const Model& base, const LayerWeights& layer, const std::optional<MlaLayerConfig>& mla)
{
    Model m;
    m.config = base.config;
    m.config.layers = 1;
    m.config.mla.reset();
    if (mla) {
        MlaConfig c;
        c.layers = {*mla};
        m.config.mla = c;
    }
    m.embedding = base.embedding;
    m.output = base.output;
    m.outputNorm = base.outputNorm;
    m.layers = {layer};
    return m;
}

SequentialConverter::SequentialConverter(const ComputeBackend& backend, const Model& original, const ConversionPlan& plan, const CalibrationSet& calibration,
                                         const JobControl& job, const OriginalTrajectory* kept)
    : m_backend(backend), m_original(original), m_plan(plan), m_job(job), m_converted(original),
      m_originalInputs(Transformer(original), nonEmpty(calibration).sequences,
                       sequentialCalibrationCount(original.config, calibration.sequences, plan.settings.refitTokens), kept)
{
    m_converted.config = plan.converted;
    const std::span<const MatrixRM> embedded = m_originalInputs.current();
    m_hiddenConverted.assign(embedded.begin(), embedded.end());
}

const LayerWeights& SequentialConverter::convertLayer(std::int64_t l)
{
    return convertLayer(l, m_job);
}

const LayerWeights& SequentialConverter::convertLayer(std::int64_t l, const JobControl& job)
{
    if (l != m_next)
        throw Error("internal: layers must be converted in order");
    const ModelConfig& c = m_plan.original;
    const LayerWeights& ow = m_original.layers[static_cast<std::size_t>(l)];
    const MlaLayerConfig& target = m_plan.converted.mla->layers[static_cast<std::size_t>(l)];
    const ConversionSettings& settings = m_plan.settings;
    const float eps = static_cast<float>(c.rmsEps);
    const std::size_t n = m_hiddenConverted.size();
    const std::span<const MatrixRM> originalInputs = m_originalInputs.current();
    auto progress = [&](double f, const char* stage) {
        job.progress((static_cast<double>(l) + f) / static_cast<double>(c.layers),
                       std::string(stage) + " (" + m_rate.describe(static_cast<double>(l) + f, static_cast<double>(c.layers)) + ")");
    };

    // Inputs of both models, the original layer's targets, and the covariance of the converted inputs.
    const Transformer originalLayer(singleLayerModel(m_original, ow, std::nullopt), MlaForm::Expanded);
    std::vector<MatrixRM> xo(n), xc(n), targetOut(n), targetKv(n);
    MatrixXdRM covariance = MatrixXdRM::Zero(c.hidden, c.hidden);
    std::int64_t tokens = 0;
    const KeyValueSplit split = splitKeyValue(c, ow, target.keptPairs);
    progress(0.0, "targets");
    const Tensor kNopeWeights = Tensor::fromMatrix(split.kNope), valueWeights = Tensor::fromMatrix(split.v);
    parallelForEach(static_cast<std::int64_t>(n), [&](std::int64_t i) {
        const auto s = static_cast<std::size_t>(i);
        rmsNormRows(originalInputs[s], ow.attnNorm, eps, xo[s]);
        rmsNormRows(m_hiddenConverted[s], ow.attnNorm, eps, xc[s]);
        targetOut[s] = attentionOutput(originalLayer, ow, xo[s]);
        // Position-free keys and values of the original layer on its own inputs, without their biases.
        MatrixRM kNope, v;
        linear(kNopeWeights, VectorF(), xo[s], kNope);
        linear(valueWeights, VectorF(), xo[s], v);
        targetKv[s].resize(xo[s].rows(), kNope.cols() + v.cols());
        targetKv[s] << kNope, v;
    });
    for (std::size_t s = 0; s < n; ++s) {
        addGram(covariance, xc[s]);
        tokens += xc[s].rows();
    }
    covariance /= static_cast<double>(tokens);

    // The converted layer's attention outputs on the converted inputs (o_proj applied) and their relative error
    // against the targets. The chosen candidate's outputs also advance the converted hidden states, so attention runs
    // once per candidate and not again to advance.
    auto relativeError = [&](const std::vector<MatrixRM>& outputs) {
        double err = 0.0, norm = 0.0;
        for (std::size_t s = 0; s < n; ++s) {
            err += (outputs[s] - targetOut[s]).cast<double>().squaredNorm();
            norm += targetOut[s].cast<double>().squaredNorm();
        }
        return norm > 0 ? err / norm : err;
    };
    auto evaluate = [&](const LayerWeights& w, std::vector<MatrixRM>& outputs) {
        const Transformer t(singleLayerModel(m_original, w, target), MlaForm::Expanded);
        outputs.resize(n);
        parallelForEach(static_cast<std::int64_t>(n),
                        [&](std::int64_t s) { outputs[static_cast<std::size_t>(s)] = attentionOutput(t, w, xc[static_cast<std::size_t>(s)]); });
        return relativeError(outputs);
    };

    // 1. Factors, with or without the key/value balance.
    ConversionSettings plain = settings;
    plain.activationAware = settings.activationAware;
    std::vector<bool> balanceChoices;
    if (settings.chooseBalance)
        balanceChoices = {false, true};
    else
        balanceChoices = {settings.balanceKeyValue};
    std::vector<ConvertedAttention> factors;
    for (bool balanced : balanceChoices) {
        progress(0.2, "decomposing");
        ConversionSettings s = plain;
        s.balanceKeyValue = balanced;
        factors.push_back(convertAttention(m_backend, c, ow, target, s, &covariance, job));
    }
    // With two joint candidates, the one with the lower output error estimated on sampled query rows (as the
    // allocation measures its candidates) is evaluated in full; the other costs no attention pass over every token.
    const bool estimated = factors.size() > 1 && target.method == LatentMethod::Joint;
    std::size_t chosen = 0;
    if (estimated) {
        progress(0.3, "choosing the key/value balance");
        const LayerCandidateErrors estimate(c, ow, xc, targetOut, candidateErrorOptions(AllocationOptions{}));
        double lowest = std::numeric_limits<double>::infinity();
        for (std::size_t i = 0; i < factors.size(); ++i) {
            const double e = estimate.errors(factors[i], target.keptPairs, {target.latentK}).front();
            if (e < lowest) {
                lowest = e;
                chosen = i;
            }
        }
    }
    LayerWeights best = ow;
    std::vector<MatrixRM> bestOutputs, outputs;
    double bestError = std::numeric_limits<double>::infinity();
    bool bestBalanced = false;
    for (std::size_t i = 0; i < factors.size(); ++i) {
        if (estimated && i != chosen)
            continue;
        LayerWeights w = ow;
        installConverted(w, factors[i]);
        const double e = evaluate(w, outputs);
        if (e < bestError) {
            bestError = e;
            best = std::move(w);
            bestOutputs.swap(outputs);
            bestBalanced = balanceChoices[i];
        }
    }
    LayerFitReport report;
    report.tokens = tokens;
    report.outputErrorInitial = bestError;
    report.balanced = bestBalanced;

    if (settings.refit) {
        // 2. Up projections: features are the latent(s) of the converted inputs. A joint latent feeds both sides.
        progress(0.5, "refitting up projections");
        const std::int64_t nopeRows = split.kNope.rows();
        auto latentOf = [&](const Tensor& down, const MatrixRM& x) {
            MatrixRM lat;
            linear(down, VectorF(), x, lat);
            return lat;
        };
        auto refit = [&](const Tensor& down, Tensor& up, std::int64_t firstColumn, std::int64_t columns) {
            if (down.empty() || up.empty() || columns == 0)
                return;
            LeastSquaresFit fit(down.rows(), columns);
            for (std::size_t s = 0; s < n; ++s)
                fit.add(latentOf(down, xc[s]), targetKv[s].middleCols(firstColumn, columns));
            const MatrixRM w0 = up.toMatrix();
            report.upResidualBefore += fit.residual(w0);
            const MatrixRM w1 = fit.solve(w0, settings.refitRidge);
            report.upResidualAfter += fit.residual(w1);
            up = Tensor::fromMatrix(w1);
        };
        if (target.method == LatentMethod::Joint) {
            if (nopeRows > 0)
                refit(best.downKv, best.upK, 0, nopeRows);
            refit(best.downKv, best.upV, nopeRows, split.v.rows());
        } else {
            if (target.compressesKeys() && nopeRows > 0)
                refit(best.downK, best.upK, 0, nopeRows);
            if (target.compressesValues())
                refit(best.downV, best.upV, nopeRows, split.v.rows());
        }

        // 3. W_o: from the converted attention context to the original attention output (bias kept). The contexts
        // do not depend on W_o, so the refitted layer's outputs are the new W_o applied to them.
        progress(0.75, "refitting the output projection");
        const Transformer t(singleLayerModel(m_original, best, target), MlaForm::Expanded);
        LeastSquaresFit fit(c.qDim(), c.hidden);
        std::vector<MatrixRM> contexts(n);
        parallelForEach(static_cast<std::int64_t>(n),
                        [&](std::int64_t s) { contexts[static_cast<std::size_t>(s)] = t.attentionContext(0, xc[static_cast<std::size_t>(s)]); });
        for (std::size_t s = 0; s < n; ++s)
            fit.add(contexts[s], subtractBias(targetOut[s], ow.oBias));
        const MatrixRM w0 = ow.o.toMatrix();
        report.outputResidualBefore = fit.residual(w0);
        const MatrixRM w1 = fit.solve(w0, settings.refitRidge);
        report.outputResidualAfter = fit.residual(w1);
        best.o = Tensor::fromMatrix(w1);
        parallelForEach(static_cast<std::int64_t>(n), [&](std::int64_t s) {
            linear(best.o, best.oBias, contexts[static_cast<std::size_t>(s)], bestOutputs[static_cast<std::size_t>(s)]);
        });
        report.outputErrorFinal = relativeError(bestOutputs);
    } else {
        report.outputErrorFinal = bestError;
    }

    // Advance both models' hidden states through this layer (no layer reads them after the last): the attention
    // outputs are those computed above (the original's are the targets), so only the feed-forward blocks run here,
    // and the original's not even that when the calibration pass kept its next inputs.
    progress(0.9, "advancing");
    m_converted.layers[static_cast<std::size_t>(l)] = best;
    if (l + 1 < c.layers) {
        const Transformer convertedLayer(singleLayerModel(m_original, best, target), MlaForm::Expanded);
        m_originalInputs.advance(originalLayer, targetOut);
        parallelForEach(static_cast<std::int64_t>(n), [&](std::int64_t s) {
            convertedLayer.finishLayer(0, m_hiddenConverted[static_cast<std::size_t>(s)], bestOutputs[static_cast<std::size_t>(s)]);
        });
    }
    m_reports.push_back(report);
    ++m_next;
    return m_converted.layers[static_cast<std::size_t>(l)];
}

Model convertSequentially(const ComputeBackend& backend, const Model& original, const ConversionPlan& plan, const CalibrationSet& calibration,
                          const JobControl& job, std::vector<LayerFitReport>* reports, const OriginalTrajectory* kept)
{
    SequentialConverter converter(backend, original, plan, calibration, job, kept);
    for (std::int64_t l = 0; l < plan.original.layers; ++l)
        converter.convertLayer(l);
    if (reports)
        *reports = converter.reports();
    return converter.converted();
}

ExportReport exportSequentially(const ComputeBackend& backend, const Model& original, const ConversionPlan& plan, const CalibrationSet& calibration,
                                const ExportOptions& options, const JobControl& job, std::vector<LayerFitReport>* reports,
                                const OriginalTrajectory* kept)
{
    SequentialConverter converter(backend, original, plan, calibration, job, kept);
    Model current = original;
    current.config = plan.converted;
    std::int64_t done = -1;
    // Layer l is converted (on the converted model's hidden states after layer l-1) while layer l-1 is written and
    // layer l+1 read; each layer's tensors go back to the original's views once the next layer starts.
    LayerPipeline<LayerWeights> pipeline(
        plan.original.layers, [&](std::int64_t l) { readLayerPages(original.layers[static_cast<std::size_t>(l)]); },
        [&](std::int64_t l, const JobControl& layerJob) { return converter.convertLayer(l, layerJob); }, job, options.pipelined);
    const double planSize = static_cast<double>(tensorPlan(plan.converted).size());
    std::size_t asked = 0;
    ExportReport report = writeModelWith(original, plan.converted, options, [&](const PlannedTensor& p) -> Tensor {
        const double fraction = static_cast<double>(asked++) / planSize;
        if (p.layer >= 0 && p.layer != done) {
            if (done >= 0)
                current.layers[static_cast<std::size_t>(done)] = original.layers[static_cast<std::size_t>(done)];
            current.layers[static_cast<std::size_t>(p.layer)] = pipeline.take(p.layer, fraction);
            done = p.layer;
        }
        return modelTensor(current, p.role, p.layer);
    }, job);
    pipeline.stop();
    if (reports)
        *reports = converter.reports();
    return report;
}

} // namespace mla
