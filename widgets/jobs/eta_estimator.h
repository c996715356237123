#pragma once

namespace mla {

// Remaining time of a job from its progress fraction over time. The rate is smoothed over the whole run (elapsed /
// fraction) and blended with the recent rate so that a slow first stage (e.g. calibration) does not mislead for long.
// Returns -1 until the estimate means something (some progress and some time).
class EtaEstimator {
public:
    void reset();
    // `elapsedSeconds` since the job started, `fraction` in [0, 1].
    void update(double elapsedSeconds, double fraction);
    double remainingSeconds() const { return m_remaining; }

private:
    double m_lastElapsed = 0.0;
    double m_lastFraction = 0.0;
    double m_rate = 0.0;       // smoothed fraction per second
    double m_remaining = -1.0;
};

} // namespace mla
