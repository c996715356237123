#pragma once

#include <Eigen/Core>

#include <cmath>
#include <cstdint>

// Deterministic pseudo-random fills for start vectors and sketches. SplitMix64 (Steele, Lea, Flood 2014) is used
// instead of <random> distributions because those are implementation-defined: the same seed must give the same
// factors with every standard library.
namespace mla {

class SplitMix64 {
public:
    SplitMix64(std::uint64_t seed, std::uint64_t stream) : m_state(seed * 0x9e3779b97f4a7c15ull ^ (stream + 0x632be59bd9b4e019ull))
    {
        next();
    }

    std::uint64_t next()
    {
        std::uint64_t z = (m_state += 0x9e3779b97f4a7c15ull);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        return z ^ (z >> 31);
    }

    // Uniform in (0, 1): 53 random bits, never exactly 0.
    double uniform() { return (static_cast<double>(next() >> 11) + 0.5) * (1.0 / 9007199254740992.0); }

    // Standard normal by Box-Muller (one of the pair is used; speed is irrelevant next to the GEMMs it feeds).
    double gaussian()
    {
        const double u1 = uniform();
        const double u2 = uniform();
        return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
    }

private:
    std::uint64_t m_state;
};

// Uniform in (-1, 1), as LAPACK's dstein starts inverse iteration.
template <typename Derived>
void fillUniform(Eigen::MatrixBase<Derived>& x, std::uint64_t seed, std::uint64_t stream)
{
    SplitMix64 rng(seed, stream);
    for (Eigen::Index c = 0; c < x.cols(); ++c)
        for (Eigen::Index r = 0; r < x.rows(); ++r)
            x(r, c) = 2.0 * rng.uniform() - 1.0;
}

// Standard normal entries; column c comes from stream `stream + c`, so a matrix's leading columns do not depend on how
// many columns it has.
template <typename Derived>
void fillGaussian(Eigen::MatrixBase<Derived>& x, std::uint64_t seed, std::uint64_t stream)
{
    for (Eigen::Index c = 0; c < x.cols(); ++c) {
        SplitMix64 rng(seed, stream + static_cast<std::uint64_t>(c));
        for (Eigen::Index r = 0; r < x.rows(); ++r)
            x(r, c) = static_cast<typename Derived::Scalar>(rng.gaussian());
    }
}

} // namespace mla
