#pragma once

// Names and bounds of the session file schema (docs/session-format.md). The writer and the reader both use these,
// so a renamed dataset cannot drift between them.
#include <cstdint>
#include <cstdio>
#include <string>

namespace mla::schema {

// Root attributes.
inline constexpr const char* kFormat = "format";
inline constexpr const char* kSchemaVersion = "schema_version";
inline constexpr const char* kTool = "tool";
inline constexpr const char* kToolVersion = "tool_version";
inline constexpr const char* kCreated = "created";

// Top-level groups.
inline constexpr const char* kModel = "model";
inline constexpr const char* kCalibration = "calibration";
inline constexpr const char* kAnalysis = "analysis";
inline constexpr const char* kSettings = "settings";
inline constexpr const char* kResults = "results";
inline constexpr const char* kHeal = "heal"; // in /results (schema 3)

// /analysis datasets [layer][head or kv_head][pair].
inline constexpr const char* kQueryPairNorms = "query_pair_norms";
inline constexpr const char* kKeyPairNorms = "key_pair_norms";
inline constexpr const char* kRopeScores = "rope_scores";
inline constexpr const char* kRopeScoresQ = "rope_scores_q";
inline constexpr const char* kRotationLoss = "rotation_loss";
inline constexpr const char* kRotationLossQ = "rotation_loss_q";
inline constexpr const char* kKeptPairs = "kept_pairs";
inline constexpr const char* kSpectra = "spectra";
inline constexpr const char* kErrorCurves = "error_curves";
inline constexpr const char* kInputCovariance = "input_covariance";
inline constexpr const char* kWeightSpace = "weight";
inline constexpr const char* kActivationSpace = "activation";
inline constexpr const char* kSpectrumKinds[] = {"joint", "key", "value"};

// Bounds that stop a damaged file from sizing an allocation. Far above any real session.
inline constexpr std::uint64_t kMaxCalibrationTokens = std::uint64_t(1) << 28;
inline constexpr std::uint64_t kMaxSequences = std::uint64_t(1) << 22;
inline constexpr std::uint64_t kMaxArrayValues = std::uint64_t(1) << 28; // 2 GiB of doubles
inline constexpr std::size_t kMaxGenerations = 4096;
inline constexpr std::uint64_t kMaxGeneratedIds = std::uint64_t(1) << 24;

// Per-layer members of a group: layer_000, layer_001, ... (at least three digits, so h5py's name order is layer
// order for up to 1000 layers; read them by name, not by position).
inline std::string layerName(std::int64_t layer)
{
    char name[32];
    std::snprintf(name, sizeof name, "layer_%03lld", static_cast<long long>(layer));
    return name;
}

inline std::string generationName(std::size_t index)
{
    char name[32];
    std::snprintf(name, sizeof name, "generation_%03zu", index);
    return name;
}

} // namespace mla::schema
