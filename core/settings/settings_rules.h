#pragma once

#include "conversion/budget_allocation.h"
#include "model/model_config.h"
#include "settings/settings.h"

#include <cstdint>
#include <vector>

// The rules that keep a Settings value consistent while a user edits it: per-layer widths follow the locks, a moved
// budget resets the allocation, a new model starts from its defaults. Plain functions on the value (the workbench
// pushes their results as undo steps; tests call them directly), so no rule lives in a GUI class.
namespace mla {

// The latent width every unlocked layer takes: the explicit width, else the one the target saving gives with layer
// 0's pair count. 0 when there is none (method none) or the settings cannot reach the saving.
std::int64_t globalLatent(const ConversionSettings& settings, const ModelConfig& config);

// Each layer's latent width under the settings, as a conversion would realise it (per-layer list, else the explicit
// width, else the saving with that layer's pairs; split counts both latents). Empty when the settings cannot be
// realised (the preview then reports the problem).
std::vector<std::int64_t> layerLatents(const ConversionSettings& settings, const ModelConfig& config);

// Every unlocked layer takes `latent`, each locked layer keeps its width from `current` (when it has one). Empty when
// nothing is locked.
std::vector<std::int64_t> latentsWithLocks(std::int64_t layers, std::int64_t latent, const std::vector<std::int64_t>& current,
                                           const std::vector<bool>& locked);

// Sizes the locks to the model and makes the per-layer widths follow them: nothing locked, no per-layer list;
// otherwise the unlocked layers take the global width and the locked ones keep theirs. Under allocation the per-layer
// lists are the allocation's and stay as they are.
void normalise(Settings& settings, const ModelConfig& config);

// A new model's starting point: the model-independent choices (strategy, method, sigma, saving, options, calibration)
// kept, pair count and latent width back to their defaults (-1: resolved from the model), per-layer lists and locks
// cleared.
Settings defaultsFor(Settings settings, const ModelConfig& config);

// --- edits: each returns the settings after one user action (apply normalise() before using them).
// The global latent width moves: unlocked layers follow, per-layer pairs are dropped, a pending allocation resets.
Settings withGlobalLatent(const Settings& before, const ModelConfig& config, std::int64_t latent);
// The target saving moves and the latent follows it from now on.
Settings withTargetSaving(const Settings& before, const ModelConfig& config, double saving);
// One layer's width set by hand: it is locked at `latent`, every other layer keeps its current width.
Settings withLayerLatent(const Settings& before, const ModelConfig& config, std::int64_t layer, std::int64_t latent);
Settings withLayerLocked(const Settings& before, const ModelConfig& config, std::int64_t layer, bool locked);
// An allocation's per-layer pairs and widths (not normalised: they are the allocation's).
Settings withAllocation(const Settings& before, const Allocation& allocation);

// The total cached elements per token an allocation spends: the explicit budget, else the one a fixed latent width
// gives every layer (locked layers at their own width), else the target saving of the original cache.
std::int64_t allocationBudget(const Settings& settings, const ModelConfig& config);

// The locks that settings stored without them imply (sessions of schema 1): without an allocation, per-layer widths
// come from layers set by hand, so every layer whose width differs from the global one is locked (all of them when
// there is no global width). Empty when nothing is locked.
std::vector<bool> inferredLocks(const ConversionSettings& settings, const ModelConfig& config);

// Whether a conversion of these settings allocates per layer first: allocation asked for and no per-layer widths yet.
bool allocationPending(const ConversionSettings& settings);

} // namespace mla
