#include "jobs/eta_estimator.h"

#include <algorithm>

namespace mla {

void EtaEstimator::reset()
{
    *this = EtaEstimator();
}

void EtaEstimator::update(double elapsedSeconds, double fraction)
{
    fraction = std::clamp(fraction, 0.0, 1.0);
    if (fraction >= 1.0) {
        m_remaining = 0.0;
        return;
    }
    const double dt = elapsedSeconds - m_lastElapsed;
    const double df = fraction - m_lastFraction;
    if (fraction < m_lastFraction) { // a job whose stages restart their own progress: start over
        m_lastElapsed = elapsedSeconds;
        m_lastFraction = fraction;
        m_rate = 0.0;
        m_remaining = -1.0;
        return;
    }
    if (dt < 0.2)
        return; // too short an interval to say anything new
    const double overall = elapsedSeconds > 0.0 ? fraction / elapsedSeconds : 0.0;
    const double recent = df / dt;
    m_rate = m_rate > 0.0 ? 0.7 * m_rate + 0.3 * (0.5 * overall + 0.5 * recent) : overall;
    m_lastElapsed = elapsedSeconds;
    m_lastFraction = fraction;
    if (fraction < 0.01 || elapsedSeconds < 0.5 || m_rate <= 0.0) {
        m_remaining = -1.0;
        return;
    }
    m_remaining = (1.0 - fraction) / m_rate;
}

} // namespace mla
