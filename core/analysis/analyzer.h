#pragma once

#include "analysis/analysis_result.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"
#include "util/job_control.h"

namespace mla {

class OriginalTrajectory;

class ComputeBackend;

struct AnalysisOptions {
    CalibrationOptions calibration;
    ConversionSettings settings;     // strategy, pairs, uniform start: what the selection and spectra follow
    bool spectra = true;             // singular-value spectra of the key/value projections (weights)
    bool activationSpectra = true;   // also whitened spectra (needs the input second moment per layer)
    // Keep each layer's input covariance in the result so that spectra can be recomputed for other selections
    // without calibration. Automatic: kept when hidden <= this size.
    std::int64_t keepCovarianceUpToHidden = 2048;
    double ridge = 1e-6;             // relative ridge of the whitening Cholesky: C + ridge * mean(diag C) * I
};

// Calibrates, scores every RoPE pair, selects the kept pairs and computes the key/value spectra, layer by layer, on
// `backend`. With `keep`, the original model's hidden states entering each layer are kept there as far as its cap
// allows (a conversion's later passes over the calibration read them).
AnalysisResult analyzeModel(const ComputeBackend& backend, const Model& model, const Tokenizer* tokenizer, const AnalysisOptions& options,
                            const JobControl& job = {}, OriginalTrajectory* keep = nullptr);

// The same with a calibration set prepared elsewhere (e.g. a session's stored ids).
AnalysisResult analyzeModel(const ComputeBackend& backend, const Model& model, const CalibrationSet& calibration, const std::string& calibrationSource,
                            const AnalysisOptions& options, const JobControl& job = {}, OriginalTrajectory* keep = nullptr);

// Recomputes the selection and the spectra for new settings from the stored scores (and covariances when kept),
// without calibrating again. Needs the weights.
void reselect(const ComputeBackend& backend, AnalysisResult& analysis, const Model& model, const ConversionSettings& settings, double ridge = 1e-6,
              const JobControl& job = {});

// Spectra of one layer for a selection; activation spectra when `covariance` is non-empty.
KeyValueSpectra layerWeightSpectra(const ComputeBackend& backend, const ModelConfig& config, const LayerWeights& layer, const LayerPairSelection& selection,
                                   const JobControl& job = {});
KeyValueSpectra layerActivationSpectra(const ComputeBackend& backend, const ModelConfig& config, const LayerWeights& layer, const LayerPairSelection& selection,
                                       const MatrixXdRM& covariance, double ridge, const JobControl& job = {});

// The whitening factor S with S S^T = C + ridge * mean(diag C) * I (lower Cholesky factor).
MatrixXdRM whiteningFactor(const MatrixXdRM& covariance, double ridge);

// A stable digest of the config and tensor index (names, shapes, dtypes), for sessions.
std::string modelFingerprint(const Model& model);

} // namespace mla
