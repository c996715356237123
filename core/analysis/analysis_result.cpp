#include "analysis/analysis_result.h"

namespace mla {

KeyValueSpectra makeSpectra(std::vector<double> joint, std::vector<double> key, std::vector<double> value)
{
    KeyValueSpectra s;
    s.joint = std::move(joint);
    s.key = std::move(key);
    s.value = std::move(value);
    s.jointError = relativeErrorCurve(s.joint);
    s.keyError = relativeErrorCurve(s.key);
    s.valueError = relativeErrorCurve(s.value);
    return s;
}

std::vector<LayerPairSelection> AnalysisResult::selections() const
{
    std::vector<LayerPairSelection> out;
    for (const auto& l : layers)
        out.push_back(l.selection);
    return out;
}

bool AnalysisResult::hasActivationSpectra() const
{
    for (const auto& l : layers) {
        if (l.activationSpectra.empty())
            return false;
    }
    return !layers.empty();
}

bool AnalysisResult::hasCovariances() const
{
    for (const auto& l : layers) {
        if (l.inputCovariance.size() == 0)
            return false;
    }
    return !layers.empty();
}

} // namespace mla
