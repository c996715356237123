// loadSession: format check, schema version dispatch (the migration table) and the reader of versions 1 to 3. Everything
// read is checked against the model config stored in the same file before it is used as a size or an index.
#include "session/session.h"

#include "session/hdf5_reader.h"
#include "session/session_schema.h"
#include "settings/settings_rules.h"
#include "settings/settings_table.h"
#include "util/error.h"
#include "util/json_util.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <new>

namespace mla {
namespace {

std::size_t z(std::int64_t v)
{
    return static_cast<std::size_t>(v);
}

// Schemas 1 to 3 share the layout; version 2 adds the workbench fields of /settings (settings_table.h), version 3
// the heal (/results/heal).
class SessionReader {
public:
    SessionReader(const Hdf5Reader& r, int version) : m_r(r), m_version(version) {}

    Session read()
    {
        Session s;
        const hid_t root = m_r.root();
        s.toolVersion = m_r.stringAttribute(root, schema::kToolVersion, "/");
        s.createdAt = m_r.stringAttribute(root, schema::kCreated, "/");
        readModel(s);
        h5::Handle settings = m_r.group(root, schema::kSettings, "/");
        s.settings = readSettings(settings.id(), "/settings", SettingScope::Workbench);
        if (auto analysis = m_r.optionalGroup(root, schema::kAnalysis, "/")) {
            readCalibration(s.analysis);
            readAnalysis(analysis->id(), s.analysis);
        }
        if (auto results = m_r.optionalGroup(root, schema::kResults, "/")) {
            if (auto sanity = m_r.optionalGroup(results->id(), "sanity", "/results"))
                s.sanity = readSanity(sanity->id(), "/results/sanity");
            if (m_version >= 3) {
                if (auto heal = m_r.optionalGroup(results->id(), schema::kHeal, "/results"))
                    s.heal = readHeal(heal->id());
            }
        }
        return s;
    }

private:
    void readModel(Session& s)
    {
        h5::Handle g = m_r.group(m_r.root(), schema::kModel, "/");
        const std::string where = "/model";
        AnalysisResult& a = s.analysis;
        a.modelPath = m_r.stringAttribute(g.id(), "source_path", where);
        a.modelFingerprint = m_r.stringAttribute(g.id(), "fingerprint", where);
        s.modelConfigJson = m_r.stringAttribute(g.id(), "source_config_json", where);
        s.parameterCount = m_r.integerAttribute(g.id(), "parameter_count", where, 0, std::numeric_limits<std::int64_t>::max());
        const std::string configText = m_r.stringAttribute(g.id(), "config_json", where);
        checkJsonNesting(configText, m_r.path(), "/model config_json");
        const nlohmann::json config = nlohmann::json::parse(configText, nullptr, false);
        if (config.is_discarded() || !config.is_object())
            m_r.fail("/model config_json is not a JSON object");
        a.config = configFromHuggingFace(config, m_r.path());
        m_c = a.config;
        if (m_c.isMla())
            m_r.fail("/model config_json describes an already converted (MLA) model");
        // The plain copies must agree with the JSON: a disagreement means the file was damaged or edited by hand.
        const std::pair<const char*, std::int64_t> copies[] = {
            {"hidden_size", m_c.hidden}, {"intermediate_size", m_c.ffn}, {"num_hidden_layers", m_c.layers},
            {"num_attention_heads", m_c.heads}, {"num_key_value_heads", m_c.kvHeads}, {"head_dim", m_c.headDim},
            {"vocab_size", m_c.vocab}};
        for (const auto& [name, value] : copies) {
            if (m_r.integerAttribute(g.id(), name, where, std::numeric_limits<std::int64_t>::min(),
                                     std::numeric_limits<std::int64_t>::max()) != value)
                m_r.fail("/model attribute '" + std::string(name) + "' disagrees with config_json");
        }
        if (m_r.stringAttribute(g.id(), "architecture", where) != m_c.architecture)
            m_r.fail("/model attribute 'architecture' disagrees with config_json");
        m_pairs = m_c.headDim / 2;
    }

    std::int64_t flag(hid_t g, const char* name, const std::string& where) const
    {
        return m_r.integerAttribute(g, name, where, 0, 1);
    }

    // Every field of the settings table in `scope` that this schema version stores; the others keep their defaults.
    Settings readSettings(hid_t g, const std::string& where, SettingScope scope) const
    {
        Settings s;
        for (const SettingField& f : settingFields()) {
            if ((scope == SettingScope::Conversion && f.scope != SettingScope::Conversion) || f.sinceSchema > m_version)
                continue;
            SettingValue v;
            switch (f.type) {
            case SettingType::Flag:
                v = flag(g, f.hdf5, where) != 0;
                break;
            case SettingType::Integer: {
                const auto [lo, hi] = f.integerRange(&m_c);
                v = m_r.integerAttribute(g, f.hdf5, where, lo, hi);
                break;
            }
            case SettingType::Number:
                v = m_r.numberAttribute(g, f.hdf5, where);
                break;
            case SettingType::Text:
                v = m_r.stringAttribute(g, f.hdf5, where);
                break;
            case SettingType::IntegerList: {
                const auto [lo, hi] = f.integerRange(&m_c);
                v = perLayer(g, f.hdf5, where, lo, hi);
                break;
            }
            }
            const std::string problem = settingProblem(f, v, &m_c);
            if (!problem.empty())
                m_r.fail(where + " " + f.hdf5 + " " + problem);
            f.set(s, v);
        }
        return s;
    }

    std::vector<std::int64_t> perLayer(hid_t g, const char* name, const std::string& where, std::int64_t min,
                                       std::int64_t max) const
    {
        std::vector<std::int64_t> values = m_r.integers(g, name, where, {-1}, u(m_c.layers));
        if (!values.empty() && static_cast<std::int64_t>(values.size()) != m_c.layers)
            m_r.fail(where + "/" + name + " lists " + std::to_string(values.size()) + " layers, the model has "
                     + std::to_string(m_c.layers));
        for (auto v : values) {
            if (v < min || v > max)
                m_r.fail(where + "/" + name + " holds " + std::to_string(v) + ", outside [" + std::to_string(min) + ", "
                         + std::to_string(max) + "]");
        }
        return values;
    }

    static std::uint64_t u(std::int64_t v) { return static_cast<std::uint64_t>(v); }

    void readCalibration(AnalysisResult& a) const
    {
        h5::Handle g = m_r.group(m_r.root(), schema::kCalibration, "/");
        const std::string where = "/calibration";
        a.calibrationSource = m_r.stringAttribute(g.id(), "source", where);
        a.calibrationDescription = m_r.stringAttribute(g.id(), "description", where);
        a.calibrationTokens = m_r.integerAttribute(g.id(), "token_count", where, 0, std::numeric_limits<std::int64_t>::max());
        const std::int64_t sequences = m_r.integerAttribute(g.id(), "sequence_count", where, 0,
                                                            static_cast<std::int64_t>(schema::kMaxSequences));
        const std::vector<std::int64_t> ids = m_r.integers(g.id(), "ids", where, {-1}, schema::kMaxCalibrationTokens);
        const std::vector<std::int64_t> offsets = m_r.integers(g.id(), "sequence_offsets", where, {sequences + 1},
                                                               schema::kMaxSequences + 1);
        if (offsets.front() != 0 || offsets.back() != static_cast<std::int64_t>(ids.size())
            || !std::is_sorted(offsets.begin(), offsets.end()))
            m_r.fail(where + "/sequence_offsets must rise from 0 to the number of ids");
        for (auto id : ids) {
            if (id < 0 || id >= m_c.vocab)
                m_r.fail(where + "/ids holds id " + std::to_string(id) + ", outside the vocabulary of "
                         + std::to_string(m_c.vocab));
        }
        a.calibrationIds.resize(z(sequences));
        for (std::int64_t s = 0; s < sequences; ++s)
            a.calibrationIds[z(s)].assign(ids.begin() + offsets[z(s)], ids.begin() + offsets[z(s) + 1]);
    }

    void readScores(hid_t g, const char* name, MatrixXdRM LayerRopeScores::*member, std::int64_t rows,
                    std::vector<LayerAnalysis>& layers) const
    {
        const std::vector<double> values = m_r.doubles(g, name, "/analysis", {m_c.layers, rows, m_pairs}, schema::kMaxArrayValues);
        const std::size_t block = z(rows * m_pairs);
        for (std::int64_t l = 0; l < m_c.layers; ++l)
            layers[z(l)].scores.*member = Eigen::Map<const MatrixXdRM>(values.data() + z(l) * block, rows, m_pairs);
    }

    void readKeptPairs(hid_t analysis, std::vector<LayerAnalysis>& layers) const
    {
        h5::Handle g = m_r.group(analysis, schema::kKeptPairs, "/analysis");
        const std::string where = "/analysis/kept_pairs";
        for (std::int64_t l = 0; l < m_c.layers; ++l) {
            std::vector<std::int64_t> shape;
            const std::vector<std::int64_t> pairs = m_r.integers(g.id(), schema::layerName(l), where, {m_c.kvHeads, -1},
                                                                 u(m_c.kvHeads * m_pairs), &shape);
            const std::int64_t kept = shape[1];
            if (kept > m_pairs)
                m_r.fail(where + "/" + schema::layerName(l) + " keeps more pairs than a head has");
            LayerPairSelection selection(z(m_c.kvHeads));
            for (std::int64_t h = 0; h < m_c.kvHeads; ++h) {
                for (std::int64_t i = 0; i < kept; ++i) {
                    const std::int64_t j = pairs[z(h * kept + i)];
                    if (j < 0 || j >= m_pairs || (i > 0 && j <= selection[z(h)].back()))
                        m_r.fail(where + "/" + schema::layerName(l) + " must hold ascending, distinct pair indices in [0, "
                                 + std::to_string(m_pairs) + ")");
                    selection[z(h)].push_back(static_cast<int>(j));
                }
            }
            layers[z(l)].selection = std::move(selection);
        }
    }

    // Longest spectrum any of the three matrices can have: min(rows, cols) <= hidden.
    std::uint64_t maxSpectrum() const { return u(m_c.hidden + 2 * m_c.kvDim()); }

    void readSpectra(hid_t spectra, hid_t errors, const char* space, bool activation, std::vector<LayerAnalysis>& layers) const
    {
        h5::Handle sp = m_r.group(spectra, space, "/analysis/spectra");
        h5::Handle ep = m_r.group(errors, space, "/analysis/error_curves");
        for (int kind = 0; kind < 3; ++kind) {
            const char* kindName = schema::kSpectrumKinds[kind];
            const std::string sWhere = std::string("/analysis/spectra/") + space;
            const std::string eWhere = std::string("/analysis/error_curves/") + space;
            h5::Handle sg = m_r.group(sp.id(), kindName, sWhere);
            h5::Handle eg = m_r.group(ep.id(), kindName, eWhere);
            for (std::int64_t l = 0; l < m_c.layers; ++l) {
                const std::string name = schema::layerName(l);
                std::vector<double> values = m_r.doubles(sg.id(), name, sWhere + "/" + kindName, {-1}, maxSpectrum());
                std::vector<double> curve = m_r.doubles(eg.id(), name, eWhere + "/" + kindName, {-1}, maxSpectrum() + 1);
                // Plots index the curve by rank 0..n: it must have exactly one more entry than the spectrum.
                const bool ok = values.empty() ? curve.size() <= 1 : curve.size() == values.size() + 1;
                if (!ok)
                    m_r.fail(eWhere + "/" + kindName + "/" + name + " has " + std::to_string(curve.size()) + " entries for "
                             + std::to_string(values.size()) + " singular values (expected one more)");
                KeyValueSpectra& s = activation ? layers[z(l)].activationSpectra : layers[z(l)].weightSpectra;
                std::vector<double>* valueSlots[] = {&s.joint, &s.key, &s.value};
                std::vector<double>* errorSlots[] = {&s.jointError, &s.keyError, &s.valueError};
                *valueSlots[kind] = std::move(values);
                *errorSlots[kind] = std::move(curve);
            }
        }
    }

    void readAnalysis(hid_t g, AnalysisResult& a) const
    {
        const std::string where = "/analysis";
        const std::pair<const char*, std::int64_t> shape[] = {
            {"layers", m_c.layers}, {"heads", m_c.heads}, {"kv_heads", m_c.kvHeads}, {"pairs", m_pairs}};
        for (const auto& [name, value] : shape) {
            if (m_r.integerAttribute(g, name, where, 0, std::numeric_limits<std::int64_t>::max()) != value)
                m_r.fail(where + " attribute '" + std::string(name) + "' disagrees with the model config");
        }
        a.scoreContext = m_r.integerAttribute(g, "score_context", where, 0, std::numeric_limits<std::int64_t>::max());
        h5::Handle settings = m_r.group(g, schema::kSettings, where);
        a.settings = readSettings(settings.id(), where + "/settings", SettingScope::Conversion).conversion;

        a.layers.resize(z(m_c.layers));
        readScores(g, schema::kQueryPairNorms, &LayerRopeScores::queryNorm, m_c.heads, a.layers);
        readScores(g, schema::kKeyPairNorms, &LayerRopeScores::keyNorm, m_c.kvHeads, a.layers);
        readScores(g, schema::kRopeScores, &LayerRopeScores::perKvHead, m_c.kvHeads, a.layers);
        readScores(g, schema::kRopeScoresQ, &LayerRopeScores::perQuery, m_c.heads, a.layers);
        readScores(g, schema::kRotationLoss, &LayerRopeScores::rotationLoss, m_c.kvHeads, a.layers);
        readScores(g, schema::kRotationLossQ, &LayerRopeScores::rotationLossPerQuery, m_c.heads, a.layers);
        readKeptPairs(g, a.layers);

        h5::Handle spectra = m_r.group(g, schema::kSpectra, where);
        h5::Handle errors = m_r.group(g, schema::kErrorCurves, where);
        readSpectra(spectra.id(), errors.id(), schema::kWeightSpace, false, a.layers);
        if (m_r.hasChild(spectra.id(), schema::kActivationSpace))
            readSpectra(spectra.id(), errors.id(), schema::kActivationSpace, true, a.layers);

        if (auto cov = m_r.optionalGroup(g, schema::kInputCovariance, where)) {
            const std::string covWhere = where + "/" + schema::kInputCovariance;
            for (std::int64_t l = 0; l < m_c.layers; ++l) {
                const std::string name = schema::layerName(l);
                if (!m_r.hasChild(cov->id(), name))
                    continue;
                const std::vector<double> values = m_r.doubles(cov->id(), name, covWhere, {m_c.hidden, m_c.hidden},
                                                               schema::kMaxArrayValues);
                a.layers[z(l)].inputCovariance = Eigen::Map<const MatrixXdRM>(values.data(), m_c.hidden, m_c.hidden);
            }
        }
    }

    std::vector<int> ids(hid_t g, const char* name, const std::string& where) const
    {
        const std::vector<std::int64_t> values = m_r.integers(g, name, where, {-1}, schema::kMaxGeneratedIds);
        std::vector<int> out;
        out.reserve(values.size());
        for (auto v : values) {
            if (v < 0 || v >= m_c.vocab)
                m_r.fail(where + "/" + name + " holds id " + std::to_string(v) + ", outside the vocabulary");
            out.push_back(static_cast<int>(v));
        }
        return out;
    }

    SanityReport readSanity(hid_t g, const std::string& where) const
    {
        SanityReport r;
        r.originalPpl = m_r.scalarNumber(g, "original_perplexity", where);
        r.convertedPpl = m_r.scalarNumber(g, "converted_perplexity", where);
        r.kl = m_r.scalarNumber(g, "kl_divergence", where);
        r.top1Agreement = m_r.scalarNumber(g, "top1_agreement", where);
        r.evaluatedTokens = m_r.scalarInteger(g, "evaluated_tokens", where);
        r.originalKvBytesPerToken = m_r.scalarNumber(g, "original_kv_bytes_per_token", where);
        r.convertedKvBytesPerToken = m_r.scalarNumber(g, "converted_kv_bytes_per_token", where);
        // Sessions written before quantised caches have neither: their check ran float32 caches only.
        r.withCache.ppl = r.convertedPpl;
        r.withCache.kl = r.kl;
        r.withCache.top1Agreement = r.top1Agreement;
        r.withCache.kvBytesPerToken = r.convertedKvBytesPerToken;
        if (m_r.hasChild(g, "original_bf16_kv_bytes_per_token"))
            r.originalBf16KvBytesPerToken = m_r.scalarNumber(g, "original_bf16_kv_bytes_per_token", where);
        if (auto cache = m_r.optionalGroup(g, "kv_cache", where)) {
            const std::string cacheWhere = where + "/kv_cache";
            r.withCache.format = m_r.stringAttribute(cache->id(), "format", cacheWhere);
            KvCacheFormat parsed;
            if (!parseKvCacheFormat(r.withCache.format, parsed))
                m_r.fail(cacheWhere + " names an unknown KV cache format '" + r.withCache.format + "'");
            r.withCache.ppl = m_r.scalarNumber(cache->id(), "converted_perplexity", cacheWhere);
            r.withCache.kl = m_r.scalarNumber(cache->id(), "kl_divergence", cacheWhere);
            r.withCache.top1Agreement = m_r.scalarNumber(cache->id(), "top1_agreement", cacheWhere);
            r.withCache.kvBytesPerToken = m_r.scalarNumber(cache->id(), "kv_bytes_per_token", cacheWhere);
        }
        h5::Handle gens = m_r.group(g, "generations", where);
        const std::string gensWhere = where + "/generations";
        const std::int64_t count = m_r.integerAttribute(gens.id(), "count", gensWhere, 0,
                                                        static_cast<std::int64_t>(schema::kMaxGenerations));
        for (std::int64_t i = 0; i < count; ++i) {
            const std::string name = schema::generationName(z(i));
            h5::Handle one = m_r.group(gens.id(), name, gensWhere);
            const std::string oneWhere = gensWhere + "/" + name;
            GenerationComparison c;
            c.prompt = m_r.stringAttribute(one.id(), "prompt", oneWhere);
            c.originalText = m_r.stringAttribute(one.id(), "original_text", oneWhere);
            c.convertedText = m_r.stringAttribute(one.id(), "converted_text", oneWhere);
            c.firstDifference = m_r.integerAttribute(one.id(), "first_difference", oneWhere, -1,
                                                     static_cast<std::int64_t>(schema::kMaxGeneratedIds));
            c.originalIds = ids(one.id(), "original_ids", oneWhere);
            c.convertedIds = ids(one.id(), "converted_ids", oneWhere);
            r.generations.push_back(std::move(c));
        }
        return r;
    }

    HealQuality readQuality(hid_t g, const std::string& where) const
    {
        HealQuality q;
        q.kl = m_r.scalarNumber(g, "kl_divergence", where);
        q.perplexity = m_r.scalarNumber(g, "perplexity", where);
        q.originalPerplexity = m_r.scalarNumber(g, "original_perplexity", where);
        q.top1Agreement = m_r.scalarNumber(g, "top1_agreement", where);
        q.positions = m_r.scalarInteger(g, "positions", where);
        if (q.positions < 0)
            m_r.fail(where + "/positions is negative");
        return q;
    }

    SessionHeal readHeal(hid_t g) const
    {
        const std::string where = std::string("/results/") + schema::kHeal;
        constexpr std::int64_t big = std::numeric_limits<std::int64_t>::max();
        SessionHeal h;
        HealOptions& o = h.options;
        HealReport& r = h.report;
        h.start = m_r.stringAttribute(g, "start", where);
        o.steps = m_r.integerAttribute(g, "steps", where, 1, big);
        o.data.tokens = m_r.integerAttribute(g, "tokens", where, 1, big);
        o.data.sequenceLength = m_r.integerAttribute(g, "sequence_length", where, 2, big);
        o.batchSequences = m_r.integerAttribute(g, "batch_sequences", where, 1, big);
        const double peak = m_r.numberAttribute(g, "learning_rate", where);
        if (peak == -1.0)
            o.learningRate.reset();
        else if (std::isfinite(peak) && peak > 0.0)
            o.learningRate = peak;
        else
            m_r.fail(where + " learning_rate is neither a positive number nor -1 (relative)");
        o.relativeLearningRate = m_r.numberAttribute(g, "relative_learning_rate", where);
        if (!(std::isfinite(o.relativeLearningRate) && o.relativeLearningRate > 0.0))
            m_r.fail(where + " relative_learning_rate is not a positive number");
        o.seed = static_cast<std::uint64_t>(m_r.integerAttribute(g, "seed", where, std::numeric_limits<std::int64_t>::min(), big));
        const std::string source = m_r.stringAttribute(g, "data_source", where);
        bool known = false;
        for (auto candidate : {CalibrationOptions::Source::Samples, CalibrationOptions::Source::Text, CalibrationOptions::Source::Ids}) {
            if (calibrationSourceName(candidate) == source) {
                o.data.source = candidate;
                known = true;
            }
        }
        if (!known)
            m_r.fail(where + " data_source '" + source + "' is not samples, text or ids");
        o.data.file = m_r.stringAttribute(g, "data_file", where);
        r.dataDescription = m_r.stringAttribute(g, "data_description", where);
        r.trainTokens = m_r.integerAttribute(g, "train_tokens", where, 0, big);
        r.heldOutTokens = m_r.integerAttribute(g, "held_out_tokens", where, 0, big);
        r.layersHealed = m_r.integerAttribute(g, "layers_healed", where, 0, m_c.layers);
        r.cancelled = m_r.integerAttribute(g, "cancelled", where, 0, 1) != 0;
        r.seconds = m_r.numberAttribute(g, "seconds", where);

        const std::vector<std::int64_t> layer = m_r.integers(g, "layer", where, {-1}, z(m_c.layers));
        const std::int64_t n = static_cast<std::int64_t>(layer.size());
        const std::vector<double> before = m_r.doubles(g, "held_out_loss_before", where, {n}, z(n));
        const std::vector<double> after = m_r.doubles(g, "held_out_loss_after", where, {n}, z(n));
        const std::vector<double> rate = m_r.doubles(g, "layer_learning_rate", where, {n}, z(n));
        const std::vector<std::int64_t> steps = m_r.integers(g, "layer_steps", where, {n}, z(n));
        const std::vector<std::int64_t> bestStep = m_r.integers(g, "best_step", where, {n}, z(n));
        const std::vector<std::int64_t> stoppedEarly = m_r.integers(g, "stopped_early", where, {n}, z(n));
        const std::vector<std::int64_t> diverged = m_r.integers(g, "diverged", where, {n}, z(n));
        const std::vector<double> seconds = m_r.doubles(g, "layer_seconds", where, {n}, z(n));
        for (std::size_t i = 0; i < layer.size(); ++i) {
            if (layer[i] < 0 || layer[i] >= m_c.layers)
                m_r.fail(where + "/layer holds layer " + std::to_string(layer[i]) + ", outside the model's "
                         + std::to_string(m_c.layers) + " layers");
            if (steps[i] < 0 || bestStep[i] < 0 || bestStep[i] > steps[i])
                m_r.fail(where + ": layer " + std::to_string(layer[i]) + " has inconsistent steps");
            LayerHealReport l;
            l.layer = layer[i];
            l.heldOutBefore = before[i];
            l.heldOutAfter = after[i];
            l.learningRate = rate[i];
            l.steps = steps[i];
            l.bestStep = bestStep[i];
            l.stoppedEarly = stoppedEarly[i] != 0;
            l.diverged = diverged[i] != 0;
            l.seconds = seconds[i];
            r.layers.push_back(l);
        }
        if (auto q = m_r.optionalGroup(g, "before", where))
            r.before = readQuality(q->id(), where + "/before");
        if (auto q = m_r.optionalGroup(g, "after", where))
            r.after = readQuality(q->id(), where + "/after");
        if (auto sanity = m_r.optionalGroup(g, "sanity", where))
            h.sanity = readSanity(sanity->id(), where + "/sanity");
        return h;
    }

    const Hdf5Reader& m_r;
    int m_version;
    ModelConfig m_c;
    std::int64_t m_pairs = 0;
};

Session loadVersion1(const Hdf5Reader& reader)
{
    Session s = SessionReader(reader, 1).read();
    // Schema 1 kept no locks; per-layer widths without an allocation came from layers locked by hand.
    s.settings.lockedLayers = inferredLocks(s.settings.conversion, s.analysis.config);
    return s;
}

Session loadVersion2(const Hdf5Reader& reader)
{
    return SessionReader(reader, 2).read();
}

Session loadVersion3(const Hdf5Reader& reader)
{
    return SessionReader(reader, 3).read();
}

// Version 4 adds the conversion target and the FlashMLA switch (docs/deepseek-export.md); older files read them as
// mha2mla and off.
Session loadVersion4(const Hdf5Reader& reader)
{
    return SessionReader(reader, 4).read();
}

// Version 5 adds how the latent factors are computed (decomposition, power_iterations); older files read them as exact
// and 1.
Session loadVersion5(const Hdf5Reader& reader)
{
    return SessionReader(reader, 5).read();
}

// Version 6 adds the calibration tokens of the sequential refit (refit_tokens); older files read it as automatic.
Session loadVersion6(const Hdf5Reader& reader)
{
    return SessionReader(reader, 6).read();
}

// The migration hook: one loader per schema version this tool can read, each returning a current Session. When the
// schema changes, the new version gets a loader and the old loaders stay, so older files keep opening.
struct SchemaLoader {
    int version;
    Session (*load)(const Hdf5Reader&);
};

constexpr SchemaLoader kSchemaLoaders[] = {
    {1, &loadVersion1},
    {2, &loadVersion2},
    {3, &loadVersion3},
    {4, &loadVersion4},
    {5, &loadVersion5},
    {6, &loadVersion6},
};

Session readSession(const std::filesystem::path& path, std::optional<std::uint64_t> memoryBudget)
{
    h5::LibraryGuard guard;
    const Hdf5Reader reader(path, memoryBudget);
    const hid_t root = reader.root();
    if (!reader.hasAttribute(root, schema::kFormat))
        reader.fail("not an MLA Workbench session (an HDF5 file without the '" + std::string(schema::kFormat)
                    + "' attribute of session files)");
    std::string format;
    try {
        format = reader.stringAttribute(root, schema::kFormat, "/");
    } catch (const Error&) {
        // e.g. a file h5py wrote, whose text attributes are variable-length strings
        reader.fail("not an MLA Workbench session (its '" + std::string(schema::kFormat)
                    + "' attribute is not the fixed-length text of session files)");
    }
    if (format != kSessionFormatName)
        reader.fail("not an MLA Workbench session (its format is '" + format + "')");
    const std::int64_t version = reader.integerAttribute(root, schema::kSchemaVersion, "/", std::numeric_limits<int>::min(),
                                                         std::numeric_limits<int>::max());
    if (version > kSessionSchemaVersion)
        reader.fail("written by a newer MLA Workbench (session schema version " + std::to_string(version)
                    + "; this version reads up to " + std::to_string(kSessionSchemaVersion)
                    + "): update MLA Workbench to open it");
    for (const SchemaLoader& loader : kSchemaLoaders) {
        if (loader.version == version) {
            Session s = loader.load(reader);
            s.schemaVersion = static_cast<int>(version);
            return s;
        }
    }
    reader.fail("session schema version " + std::to_string(version) + " is not supported (this version reads "
                + std::to_string(kSchemaLoaders[0].version) + " to " + std::to_string(kSessionSchemaVersion) + ")");
}

} // namespace

Session loadSession(const std::filesystem::path& path, std::optional<std::uint64_t> memoryBudget)
{
    try {
        return readSession(path, memoryBudget);
    } catch (const Error&) {
        throw;
    } catch (const std::bad_alloc&) {
        throw Error(path, "damaged session: it asks for more memory than is available");
    } catch (const std::exception& e) {
        throw Error(path, std::string("damaged session: ") + e.what());
    }
}

} // namespace mla
