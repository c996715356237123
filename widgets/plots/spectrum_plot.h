#pragma once

#include "plots/plot_widget.h"

#include <QList>

#include <vector>

class QCPAxisRect;
class QCPItemStraightLine;
class QCPItemText;

namespace mla {

// Singular values per layer on a logarithmic axis (top) and the cumulative retained energy (bottom), sharing the
// rank axis, with a draggable rank cursor: dragging it asks for a new rank (the latent width follows).
class SpectrumPlot : public PlotWidget {
    Q_OBJECT
public:
    struct Series {
        QString name;                 // "layer 3", "layer 3 · key"
        std::vector<double> singular; // descending
        std::vector<double> retained; // retained energy for rank 0..n
        double shade = 0.0;           // position along the layer colour ramp, 0..1
        bool dashed = false;          // e.g. the value side of a split view
    };

    explicit SpectrumPlot(QWidget* parent = nullptr);

    void setSeries(const QList<Series>& series, const QString& valueLabel);
    // The message shown instead of the plot while there are no series (why there are none).
    void setPlaceholder(const QString& text);
    void setHighlighted(int index); // -1: none (all drawn alike)
    // The rank the conversion keeps on this spectrum; hidden when it does not apply (e.g. svd none).
    void setRankCursor(std::int64_t rank, bool visible);
    void setRankLimits(std::int64_t minimum, std::int64_t maximum);
    std::int64_t rankCursor() const { return m_rank; }
    bool rankCursorVisible() const { return m_cursorVisible; }
    int seriesCount() const { return static_cast<int>(m_series.size()); }
    // Entries in the legend: one per series up to 8; for more, none, or two (keys solid, values dashed) when split.
    int legendEntries() const { return m_legendEntries; }

    // Moves the cursor as a drag to `rank` would (tests, keyboard): emits rankDragged and rankDragFinished.
    void dragCursorTo(std::int64_t rank);

    QString csv() const override;

Q_SIGNALS:
    void rankDragged(qint64 rank);
    void rankDragFinished(qint64 rank);

protected:
    void applyPalette() override;
    bool eventFilter(QObject* watched, QEvent* event) override;

private:
    void rebuild();
    void placeCursor();
    bool fitLegend(); // the value range leaves the legend's corner free of curves; true when it changed
    std::int64_t rankAtPixel(double x) const;

    QCPAxisRect* m_top = nullptr;
    QCPAxisRect* m_bottom = nullptr;
    QCPItemStraightLine* m_cursorTop = nullptr;
    QCPItemStraightLine* m_cursorBottom = nullptr;
    QCPItemText* m_cursorLabel = nullptr;
    QList<Series> m_series;
    QString m_placeholder;
    int m_legendEntries = 0;
    QString m_valueLabel;
    double m_lowest = 0.0;  // the singular values' axis range without the legend's band (0: no values)
    double m_highest = 0.0;
    int m_legendColumns = 1;
    int m_highlighted = -1;
    std::int64_t m_rank = 0;
    std::int64_t m_minRank = 0;
    std::int64_t m_maxRank = 0;
    bool m_cursorVisible = false;
    bool m_dragging = false;
};

} // namespace mla
