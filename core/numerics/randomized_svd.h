#pragma once

#include "numerics/decompositions.h"

namespace mla {

// Rank-k factors (k <= min(rows, cols), no padding) by randomized subspace iteration (Halko, Martinsson, Tropp 2011,
// algorithm 4.4): a Gaussian sketch of the row space, options.powerIterations passes of M^T M re-orthonormalised by
// Householder QR after every product, then a Rayleigh-Ritz step (eigen-decomposition of (M Q)^T (M Q)) for V_k.
// The products with M run in float (GEMM at twice the double rate), everything else in double. optimalResidual is -1:
// the full spectrum is not computed; residual is measured, so residual / optimal can be checked by the caller.
LowRankFactors randomizedLowRank(const MatrixRM& m, Eigen::Index k, const LowRankOptions& options, const JobControl& job = {});

} // namespace mla
