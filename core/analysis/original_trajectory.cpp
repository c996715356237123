#include "analysis/original_trajectory.h"

#include "util/error.h"
#include "util/memory_budget.h"
#include "util/parallel_for.h"

#include <algorithm>

namespace mla {

void OriginalTrajectory::start(std::vector<std::vector<int>> sequences, std::int64_t layers)
{
    m_sequences = std::move(sequences);
    m_modelLayers = layers;
    m_tokens = 0;
    for (const auto& s : m_sequences)
        m_tokens += static_cast<std::int64_t>(s.size());
    m_layers.clear();
    m_bytes = 0;
}

bool OriginalTrajectory::wants(std::int64_t layer, std::int64_t hiddenWidth) const
{
    return layer >= 1 && layer < m_modelLayers && layer == keptLayers() + 1 && !m_sequences.empty()
           && m_bytes + layerBytes(m_tokens, hiddenWidth) <= m_cap;
}

void OriginalTrajectory::keep(std::int64_t layer, std::vector<MatrixRM> hidden)
{
    if (hidden.size() != m_sequences.size() || hidden.empty())
        throw Error("internal: a trajectory layer without one matrix per calibration sequence");
    for (std::size_t s = 0; s < hidden.size(); ++s) {
        if (hidden[s].rows() != static_cast<Eigen::Index>(m_sequences[s].size()))
            throw Error("internal: a trajectory layer whose rows are not the sequence's tokens");
    }
    if (!wants(layer, hidden[0].cols()))
        throw Error("internal: a trajectory layer kept out of order or over the cap");
    m_bytes += layerBytes(m_tokens, hidden[0].cols());
    m_layers.push_back(std::move(hidden));
}

const std::vector<MatrixRM>* OriginalTrajectory::inputs(std::int64_t layer) const
{
    if (layer < 1 || layer > keptLayers())
        return nullptr;
    return &m_layers[static_cast<std::size_t>(layer - 1)];
}

bool OriginalTrajectory::covers(const std::vector<std::vector<int>>& sequences, std::size_t count) const
{
    if (count > sequences.size() || count > m_sequences.size())
        return false;
    return std::equal(sequences.begin(), sequences.begin() + static_cast<std::ptrdiff_t>(count), m_sequences.begin());
}

std::uint64_t OriginalTrajectory::defaultCap(std::uint64_t modelBytes)
{
    return std::min(availableMemory().bytes / 4, modelBytes / 3);
}

std::uint64_t OriginalTrajectory::layerBytes(std::int64_t tokens, std::int64_t hiddenWidth)
{
    return static_cast<std::uint64_t>(tokens) * static_cast<std::uint64_t>(hiddenWidth) * sizeof(float);
}

OriginalLayerInputs::OriginalLayerInputs(const Transformer& model, const std::vector<std::vector<int>>& sequences, std::size_t count,
                                         const OriginalTrajectory* kept)
    : m_kept(kept && kept->keptLayers() > 0 && kept->covers(sequences, count) ? kept : nullptr), m_sequences(&sequences), m_count(count)
{
    if (count > sequences.size())
        throw Error("internal: more calibration sequences asked for than given");
    m_own.reserve(count);
    for (std::size_t s = 0; s < count; ++s)
        m_own.push_back(model.embed(sequences[s]));
}

void OriginalLayerInputs::keepComputedIn(OriginalTrajectory* keep)
{
    m_keep = keep && m_count > 0 && keep->sequences() == m_count && keep->covers(*m_sequences, m_count) ? keep : nullptr;
}

std::span<const MatrixRM> OriginalLayerInputs::current() const
{
    if (m_from)
        return {m_from->data(), m_count};
    return {m_own.data(), m_own.size()};
}

void OriginalLayerInputs::advance(const Transformer& layerModel, const std::vector<MatrixRM>& attentionOutputs)
{
    if (attentionOutputs.size() != m_count)
        throw Error("internal: attention outputs for another number of sequences");
    if (const std::vector<MatrixRM>* next = m_kept ? m_kept->inputs(m_layer + 1) : nullptr) {
        m_from = next;
        m_own.clear();
        ++m_read;
    } else {
        if (m_from) {
            m_own.assign(m_from->begin(), m_from->begin() + static_cast<std::ptrdiff_t>(m_count));
            m_from = nullptr;
        }
        parallelForEach(static_cast<std::int64_t>(m_count), [&](std::int64_t s) {
            layerModel.finishLayer(0, m_own[static_cast<std::size_t>(s)], attentionOutputs[static_cast<std::size_t>(s)]);
        });
        if (m_keep && !m_own.empty() && m_keep->wants(m_layer + 1, m_own.front().cols()))
            m_keep->keep(m_layer + 1, m_own);
    }
    ++m_layer;
}

} // namespace mla
