#include "conversion/presets.h"

#include "util/error.h"

namespace mla {

const std::vector<PresetInfo>& conversionPresets()
{
    static const std::vector<PresetInfo> presets = {
        {"paper", "MHA2MLA public code: 2-norm, joint weight SVD, sigma in the up projections, one latent width"},
        {"best", "per-layer budget allocation, rotation-loss pairs, whitened joint decomposition with key/value balance, "
                 "sequential least-squares refits"},
    };
    return presets;
}

void applyPreset(const std::string& name, ConversionSettings& s)
{
    if (name == "paper") {
        s.strategy = RopeStrategy::TwoNorm;
        s.method = LatentMethod::Joint;
        s.sigma = SigmaPlacement::Up;
        s.activationAware = false;
        s.balanceKeyValue = false;
        s.chooseBalance = false;
        s.refit = false;
        s.allocate = false;
    } else if (name == "best") {
        s.strategy = RopeStrategy::RotationLoss;
        s.method = LatentMethod::Joint;
        s.sigma = SigmaPlacement::Up;
        s.activationAware = true;
        s.balanceKeyValue = false;
        s.chooseBalance = true;
        s.refit = true;
        s.allocate = true;
    } else {
        throw Error("unknown preset '" + name + "' (paper, best)");
    }
    s.preset = name;
}

bool settingsNeedCalibrationPass(const ConversionSettings& s)
{
    return s.activationAware || s.refit || s.allocate || s.chooseBalance;
}

} // namespace mla
