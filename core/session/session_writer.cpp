// saveSession: the schema of docs/session-format.md, version 3.
#include "session/session.h"

#include "session/analysis_json.h"
#include "session/hdf5_writer.h"
#include "session/session_schema.h"
#include "settings/settings_table.h"
#include "util/error.h"
#include "util/staged_output.h"
#include "util/version.h"

#include <ctime>

namespace mla {
namespace {

using Dims = std::vector<std::uint64_t>;

std::uint64_t u(std::int64_t v)
{
    return static_cast<std::uint64_t>(v);
}

std::string isoNow()
{
    const std::time_t now = std::time(nullptr);
    std::tm utc{};
    gmtime_r(&now, &utc);
    char text[32];
    std::strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%SZ", &utc);
    return text;
}

class SessionWriter {
public:
    SessionWriter(const Session& session, const std::filesystem::path& staging, const std::filesystem::path& path,
                  const JobControl& job)
        : m_s(session), m_a(session.analysis), m_c(session.analysis.config), m_path(path), m_job(job), m_w(staging, path)
    {
    }

    void write()
    {
        const bool analysed = !m_a.layers.empty();
        const double analysisShare = analysed ? 0.8 : 0.0;
        m_job.progress(0.0, "saving session: model");
        writeRoot();
        writeModel();
        m_job.progress(0.05, "saving session: settings");
        writeSettings(m_w.root(), schema::kSettings, m_s.settings, SettingScope::Workbench);
        if (analysed) {
            m_job.progress(0.1, "saving session: calibration");
            writeCalibration();
            writeAnalysis(0.15, 0.15 + analysisShare * 0.95);
        }
        m_job.progress(0.95, "saving session: results");
        if (m_s.sanity || m_s.heal) {
            h5::Handle results = m_w.createGroup(m_w.root(), schema::kResults);
            if (m_s.sanity)
                writeSanity(results.id(), *m_s.sanity);
            if (m_s.heal)
                writeHeal(results.id(), *m_s.heal);
        }
        m_job.checkCancelled();
        m_w.close();
    }

private:
    [[noreturn]] void internal(const std::string& problem) const
    {
        throw Error(m_path, "cannot save this session: " + problem);
    }

    void writeRoot()
    {
        const hid_t root = m_w.root();
        m_w.attribute(root, schema::kFormat, kSessionFormatName);
        m_w.attribute(root, schema::kSchemaVersion, std::int64_t{kSessionSchemaVersion});
        m_w.attribute(root, schema::kTool, kToolName);
        m_w.attribute(root, schema::kToolVersion, kVersion);
        m_w.attribute(root, schema::kCreated, isoNow());
    }

    void writeModel()
    {
        h5::Handle g = m_w.createGroup(m_w.root(), schema::kModel);
        m_w.attribute(g.id(), "source_path", m_a.modelPath);
        m_w.attribute(g.id(), "fingerprint", m_a.modelFingerprint);
        m_w.attribute(g.id(), "config_json", configToHuggingFace(m_c).dump());
        m_w.attribute(g.id(), "source_config_json", m_s.modelConfigJson);
        m_w.attribute(g.id(), "parameter_count", m_s.parameterCount);
        // Copies of the shape for readers that do not parse JSON; the loader checks them against config_json.
        m_w.attribute(g.id(), "architecture", m_c.architecture);
        m_w.attribute(g.id(), "hidden_size", m_c.hidden);
        m_w.attribute(g.id(), "intermediate_size", m_c.ffn);
        m_w.attribute(g.id(), "num_hidden_layers", m_c.layers);
        m_w.attribute(g.id(), "num_attention_heads", m_c.heads);
        m_w.attribute(g.id(), "num_key_value_heads", m_c.kvHeads);
        m_w.attribute(g.id(), "head_dim", m_c.headDim);
        m_w.attribute(g.id(), "vocab_size", m_c.vocab);
    }

    // Every field of the settings table in `scope`: scalars as attributes, per-layer lists as datasets, and all of it
    // as one JSON attribute for convenience (the attributes are authoritative).
    void writeSettings(hid_t parent, const char* name, const Settings& s, SettingScope scope)
    {
        h5::Handle g = m_w.createGroup(parent, name);
        for (const SettingField& f : settingFields()) {
            if (scope == SettingScope::Conversion && f.scope != SettingScope::Conversion)
                continue;
            const SettingValue v = f.get(s);
            switch (f.type) {
            case SettingType::Flag:
                m_w.attribute(g.id(), f.hdf5, std::int64_t{std::get<bool>(v)});
                break;
            case SettingType::Integer:
                m_w.attribute(g.id(), f.hdf5, std::get<std::int64_t>(v));
                break;
            case SettingType::Number:
                m_w.attribute(g.id(), f.hdf5, std::get<double>(v));
                break;
            case SettingType::Text:
                m_w.attribute(g.id(), f.hdf5, std::get<std::string>(v));
                break;
            case SettingType::IntegerList: {
                const auto& list = std::get<std::vector<std::int64_t>>(v);
                m_w.dataset(g.id(), f.hdf5, {list.size()}, list.data(), f.units, f.meaning);
                break;
            }
            }
        }
        m_w.attribute(g.id(), "json", settingsJson(s, scope).dump());
    }

    void writeCalibration()
    {
        h5::Handle g = m_w.createGroup(m_w.root(), schema::kCalibration);
        m_w.attribute(g.id(), "source", m_a.calibrationSource);
        m_w.attribute(g.id(), "description", m_a.calibrationDescription);
        m_w.attribute(g.id(), "token_count", m_a.calibrationTokens);
        m_w.attribute(g.id(), "sequence_count", static_cast<std::int64_t>(m_a.calibrationIds.size()));
        std::vector<std::int32_t> ids;
        std::vector<std::int64_t> offsets{0};
        for (const auto& sequence : m_a.calibrationIds) {
            ids.insert(ids.end(), sequence.begin(), sequence.end());
            offsets.push_back(static_cast<std::int64_t>(ids.size()));
        }
        m_w.dataset(g.id(), "ids", {ids.size()}, ids.data(), "token ids",
                    "every calibration sequence, concatenated; sequence s is ids[sequence_offsets[s]:sequence_offsets[s+1]]");
        m_w.dataset(g.id(), "sequence_offsets", {offsets.size()}, offsets.data(), "index into ids",
                    "start of each sequence in ids, then the total length");
    }

    // One [layer][rows][pairs] array from the same member of every layer's scores.
    void writeScores(hid_t g, const char* name, MatrixXdRM LayerRopeScores::*member, std::int64_t rows, const char* units,
                     const char* description)
    {
        const std::int64_t pairs = m_c.headDim / 2;
        std::vector<double> values;
        values.reserve(u(m_c.layers * rows * pairs));
        for (std::int64_t l = 0; l < m_c.layers; ++l) {
            const MatrixXdRM& m = m_a.layers[u(l)].scores.*member;
            if (m.rows() != rows || m.cols() != pairs)
                internal(std::string(name) + " of layer " + std::to_string(l) + " is " + std::to_string(m.rows()) + " x "
                         + std::to_string(m.cols()) + ", expected " + std::to_string(rows) + " x " + std::to_string(pairs));
            values.insert(values.end(), m.data(), m.data() + m.size());
        }
        m_w.dataset(g, name, {u(m_c.layers), u(rows), u(pairs)}, values.data(), units, description);
    }

    void writeSpectra(hid_t analysis, bool activation)
    {
        const char* space = activation ? schema::kActivationSpace : schema::kWeightSpace;
        h5::Handle spectraParent = m_w.createGroup(analysis, space);
        h5::Handle errorParent = m_w.createGroup(m_errorCurves.id(), space);
        const char* units = activation ? "singular value (whitened by the calibration inputs)" : "singular value";
        for (int kind = 0; kind < 3; ++kind) {
            h5::Handle sg = m_w.createGroup(spectraParent.id(), schema::kSpectrumKinds[kind]);
            h5::Handle eg = m_w.createGroup(errorParent.id(), schema::kSpectrumKinds[kind]);
            for (std::int64_t l = 0; l < m_c.layers; ++l) {
                const KeyValueSpectra& s = activation ? m_a.layers[u(l)].activationSpectra : m_a.layers[u(l)].weightSpectra;
                const std::vector<double>* values[] = {&s.joint, &s.key, &s.value};
                const std::vector<double>* errors[] = {&s.jointError, &s.keyError, &s.valueError};
                m_w.dataset(sg.id(), schema::layerName(l), {values[kind]->size()}, values[kind]->data(), units,
                            "singular values, descending");
                m_w.dataset(eg.id(), schema::layerName(l), {errors[kind]->size()}, errors[kind]->data(), "fraction",
                            "relative Frobenius error of the best rank-k approximation, k = 0..n");
            }
        }
    }

    void writeAnalysis(double begin, double end)
    {
        const std::int64_t L = m_c.layers;
        if (static_cast<std::int64_t>(m_a.layers.size()) != L)
            internal("the analysis has " + std::to_string(m_a.layers.size()) + " layers, the model " + std::to_string(L));
        h5::Handle g = m_w.createGroup(m_w.root(), schema::kAnalysis);
        m_w.attribute(g.id(), "layers", L);
        m_w.attribute(g.id(), "heads", m_c.heads);
        m_w.attribute(g.id(), "kv_heads", m_c.kvHeads);
        m_w.attribute(g.id(), "pairs", m_c.headDim / 2);
        m_w.attribute(g.id(), "score_context", m_a.scoreContext);
        Settings analysed;
        analysed.conversion = m_a.settings;
        writeSettings(g.id(), schema::kSettings, analysed, SettingScope::Conversion);

        writeScores(g.id(), schema::kQueryPairNorms, &LayerRopeScores::queryNorm, m_c.heads, "activation units",
                    "mean over calibration tokens of the L2 norm of each query head's pair [layer][head][pair]");
        writeScores(g.id(), schema::kKeyPairNorms, &LayerRopeScores::keyNorm, m_c.kvHeads, "activation units",
                    "mean L2 norm of each key head's pair [layer][kv_head][pair]");
        writeScores(g.id(), schema::kRopeScores, &LayerRopeScores::perKvHead, m_c.kvHeads, "activation units squared",
                    "2-norm score (query norm x key norm) summed over each KV group [layer][kv_head][pair]");
        writeScores(g.id(), schema::kRopeScoresQ, &LayerRopeScores::perQuery, m_c.heads, "activation units squared",
                    "2-norm score per query head (paper-compatible) [layer][head][pair]");
        writeScores(g.id(), schema::kRotationLoss, &LayerRopeScores::rotationLoss, m_c.kvHeads, "squared attention logit",
                    "expected squared logit change if the pair stopped rotating, per KV group [layer][kv_head][pair]");
        writeScores(g.id(), schema::kRotationLossQ, &LayerRopeScores::rotationLossPerQuery, m_c.heads,
                    "squared attention logit", "rotation loss per query head [layer][head][pair]");
        m_job.progress(begin + 0.2 * (end - begin), "saving session: kept pairs");

        h5::Handle kept = m_w.createGroup(g.id(), schema::kKeptPairs);
        for (std::int64_t l = 0; l < L; ++l) {
            const LayerPairSelection& selection = m_a.layers[u(l)].selection;
            if (static_cast<std::int64_t>(selection.size()) != m_c.kvHeads)
                internal("the selection of layer " + std::to_string(l) + " lists " + std::to_string(selection.size())
                         + " KV heads, expected " + std::to_string(m_c.kvHeads));
            std::vector<std::int32_t> pairs;
            for (const auto& head : selection) {
                if (head.size() != selection[0].size())
                    internal("KV heads of layer " + std::to_string(l) + " keep different numbers of pairs");
                pairs.insert(pairs.end(), head.begin(), head.end());
            }
            m_w.dataset(kept.id(), schema::layerName(l), {selection.size(), selection[0].size()}, pairs.data(), "pair index",
                        "RoPE pairs that keep their rotation [kv_head][...], ascending; pair j = dims (j, j + head_dim/2)");
        }
        m_job.progress(begin + 0.35 * (end - begin), "saving session: spectra");

        h5::Handle spectra = m_w.createGroup(g.id(), schema::kSpectra);
        m_errorCurves = m_w.createGroup(g.id(), schema::kErrorCurves);
        writeSpectra(spectra.id(), false);
        bool anyActivation = false;
        for (const auto& layer : m_a.layers)
            anyActivation = anyActivation || !layer.activationSpectra.empty();
        if (anyActivation)
            writeSpectra(spectra.id(), true);
        m_errorCurves.reset();

        bool anyCovariance = false;
        for (const auto& layer : m_a.layers)
            anyCovariance = anyCovariance || layer.inputCovariance.size() > 0;
        if (anyCovariance) {
            h5::Handle cov = m_w.createGroup(g.id(), schema::kInputCovariance);
            for (std::int64_t l = 0; l < L; ++l) {
                m_job.progress(begin + (0.5 + 0.5 * static_cast<double>(l) / static_cast<double>(L)) * (end - begin),
                               "saving session: input covariances");
                const MatrixXdRM& c = m_a.layers[u(l)].inputCovariance;
                if (c.size() == 0)
                    continue;
                if (c.rows() != m_c.hidden || c.cols() != m_c.hidden)
                    internal("the input covariance of layer " + std::to_string(l) + " is not hidden x hidden");
                m_w.dataset(cov.id(), schema::layerName(l), {u(c.rows()), u(c.cols())}, c.data(), "activation units squared",
                            "E[x x^T] of the attention input over the calibration tokens");
            }
        }
    }

    void writeSanity(hid_t parent, const SanityReport& r)
    {
        h5::Handle g = m_w.createGroup(parent, "sanity");
        m_w.scalar(g.id(), "original_perplexity", r.originalPpl, "perplexity", "of the original model on the evaluation tokens");
        m_w.scalar(g.id(), "converted_perplexity", r.convertedPpl, "perplexity", "of the converted model on the same tokens");
        m_w.scalar(g.id(), "kl_divergence", r.kl, "nats per token", "mean KL(original || converted) of the next-token distributions");
        m_w.scalar(g.id(), "top1_agreement", r.top1Agreement, "fraction", "positions where both models rank the same token first");
        m_w.scalar(g.id(), "evaluated_tokens", r.evaluatedTokens, "tokens", "positions the metrics were measured on");
        m_w.scalar(g.id(), "original_kv_bytes_per_token", r.originalKvBytesPerToken, "bytes per token",
                   "KV cache measured while generating with the original model");
        m_w.scalar(g.id(), "converted_kv_bytes_per_token", r.convertedKvBytesPerToken, "bytes per token",
                   "KV cache measured while generating with the converted model");
        m_w.scalar(g.id(), "original_bf16_kv_bytes_per_token", r.originalBf16KvBytesPerToken, "bytes per token",
                   "KV cache of the original model with a BF16 cache (the combined saving's baseline)");
        h5::Handle cache = m_w.createGroup(g.id(), "kv_cache");
        m_w.attribute(cache.id(), "format", r.withCache.format);
        m_w.scalar(cache.id(), "converted_perplexity", r.withCache.ppl, "perplexity", "of the converted model with this KV cache format");
        m_w.scalar(cache.id(), "kl_divergence", r.withCache.kl, "nats per token", "mean KL(original || converted with this cache)");
        m_w.scalar(cache.id(), "top1_agreement", r.withCache.top1Agreement, "fraction", "positions where both rank the same token first");
        m_w.scalar(cache.id(), "kv_bytes_per_token", r.withCache.kvBytesPerToken, "bytes per token", "the cache as allocated");
        h5::Handle gens = m_w.createGroup(g.id(), "generations");
        m_w.attribute(gens.id(), "count", static_cast<std::int64_t>(r.generations.size()));
        for (std::size_t i = 0; i < r.generations.size(); ++i) {
            const GenerationComparison& c = r.generations[i];
            h5::Handle one = m_w.createGroup(gens.id(), schema::generationName(i));
            m_w.attribute(one.id(), "prompt", c.prompt);
            m_w.attribute(one.id(), "original_text", c.originalText);
            m_w.attribute(one.id(), "converted_text", c.convertedText);
            m_w.attribute(one.id(), "first_difference", c.firstDifference);
            const std::vector<std::int32_t> a(c.originalIds.begin(), c.originalIds.end());
            const std::vector<std::int32_t> b(c.convertedIds.begin(), c.convertedIds.end());
            m_w.dataset(one.id(), "original_ids", {a.size()}, a.data(), "token ids", "greedy continuation of the original model");
            m_w.dataset(one.id(), "converted_ids", {b.size()}, b.data(), "token ids", "greedy continuation of the converted model");
        }
    }

    void writeQuality(hid_t parent, const char* name, const HealQuality& q)
    {
        h5::Handle g = m_w.createGroup(parent, name);
        m_w.scalar(g.id(), "kl_divergence", q.kl, "nats per token", "mean KL(original || model) on the held-out healing sequences");
        m_w.scalar(g.id(), "perplexity", q.perplexity, "perplexity", "of the model on the held-out healing sequences");
        m_w.scalar(g.id(), "original_perplexity", q.originalPerplexity, "perplexity", "of the original model on the same tokens");
        m_w.scalar(g.id(), "top1_agreement", q.top1Agreement, "fraction", "positions where the model and the original rank the same token first");
        m_w.scalar(g.id(), "positions", q.positions, "tokens", "positions measured");
    }

    void writeHeal(hid_t parent, const SessionHeal& h)
    {
        const HealOptions& o = h.options;
        const HealReport& r = h.report;
        h5::Handle g = m_w.createGroup(parent, schema::kHeal);
        m_w.attribute(g.id(), "start", h.start);
        m_w.attribute(g.id(), "steps", o.steps);
        m_w.attribute(g.id(), "tokens", o.data.tokens);
        m_w.attribute(g.id(), "sequence_length", o.data.sequenceLength);
        m_w.attribute(g.id(), "batch_sequences", o.batchSequences);
        m_w.attribute(g.id(), "learning_rate", o.learningRate.value_or(-1.0));
        m_w.attribute(g.id(), "relative_learning_rate", o.relativeLearningRate);
        m_w.attribute(g.id(), "seed", static_cast<std::int64_t>(o.seed));
        m_w.attribute(g.id(), "data_source", calibrationSourceName(o.data.source));
        m_w.attribute(g.id(), "data_file", o.data.file.string());
        m_w.attribute(g.id(), "data_description", r.dataDescription);
        m_w.attribute(g.id(), "train_tokens", r.trainTokens);
        m_w.attribute(g.id(), "held_out_tokens", r.heldOutTokens);
        m_w.attribute(g.id(), "layers_healed", r.layersHealed);
        m_w.attribute(g.id(), "cancelled", std::int64_t{r.cancelled ? 1 : 0});
        m_w.attribute(g.id(), "seconds", r.seconds);

        const std::uint64_t n = r.layers.size();
        std::vector<std::int64_t> layer, steps, bestStep, stoppedEarly, diverged;
        std::vector<double> before, after, rate, seconds;
        for (const LayerHealReport& l : r.layers) {
            layer.push_back(l.layer);
            steps.push_back(l.steps);
            bestStep.push_back(l.bestStep);
            stoppedEarly.push_back(l.stoppedEarly ? 1 : 0);
            diverged.push_back(l.diverged ? 1 : 0);
            before.push_back(l.heldOutBefore);
            after.push_back(l.heldOutAfter);
            rate.push_back(l.learningRate);
            seconds.push_back(l.seconds);
        }
        m_w.dataset(g.id(), "layer", {n}, layer.data(), "layer index", "the layers healed, in order");
        m_w.dataset(g.id(), "held_out_loss_before", {n}, before.data(), "fraction",
                    "block-output MSE on the held-out sequences before healing the layer, over the mean squared target");
        m_w.dataset(g.id(), "held_out_loss_after", {n}, after.data(), "fraction", "the same with the weights kept");
        m_w.dataset(g.id(), "layer_learning_rate", {n}, rate.data(), "learning rate", "peak AdamW learning rate of the layer");
        m_w.dataset(g.id(), "layer_steps", {n}, steps.data(), "steps", "training steps run");
        m_w.dataset(g.id(), "best_step", {n}, bestStep.data(), "step", "the step whose weights were kept (0: the converted weights)");
        m_w.dataset(g.id(), "stopped_early", {n}, stoppedEarly.data(), "flag", "1: the held-out loss stopped improving");
        m_w.dataset(g.id(), "diverged", {n}, diverged.data(), "flag", "1: a training loss was not finite");
        m_w.dataset(g.id(), "layer_seconds", {n}, seconds.data(), "seconds", "time spent on the layer");
        if (r.before)
            writeQuality(g.id(), "before", *r.before);
        if (r.after)
            writeQuality(g.id(), "after", *r.after);
        if (h.sanity)
            writeSanity(g.id(), *h.sanity);
    }

    const Session& m_s;
    const AnalysisResult& m_a;
    const ModelConfig& m_c;
    std::filesystem::path m_path;
    const JobControl& m_job;
    Hdf5Writer m_w;
    h5::Handle m_errorCurves;
};

} // namespace

FileKind sessionFileKind()
{
    return {"an HDF5 session file", isHdf5File};
}

void requireSessionDestination(const std::filesystem::path& path, const OutputOptions& output)
{
    requireOutputFile(path, output, sessionFileKind());
}

void saveSession(const Session& session, const std::filesystem::path& path, const JobControl& job, const OutputOptions& output)
{
    // A session without a model shape cannot be reopened; refuse before anything touches the disk.
    session.analysis.config.validate(path);
    job.checkCancelled();
    OutputOptions options = output;
    if (!session.analysis.modelPath.empty())
        options.inputs.emplace_back(session.analysis.modelPath);
    StagedFile staged(path, options, sessionFileKind());
    {
        h5::LibraryGuard guard;
        SessionWriter writer(session, staged.path(), path, job);
        writer.write();
    }
    // The last cancellation point comes before the rename: once the file is in place the save has happened.
    job.progress(1.0, "session saved");
    staged.commit();
}

} // namespace mla
