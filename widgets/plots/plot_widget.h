#pragma once

#include <QString>
#include <QWidget>

class QCustomPlot;
class QCPAxis;
class QCPAxisRect;
class QCPLegend;
class QLabel;
class QMenu;
class QStackedLayout;

namespace mla {

// The base of every plot in the workbench. QCustomPlot stays inside: the rest of the application sees a small API
// per plot (setData-style calls) and this one export path. The context menu saves the plot as PNG, PDF or SVG and
// its data as CSV; the colours follow the widget palette (light or dark) and are refreshed when it changes.
class PlotWidget : public QWidget {
    Q_OBJECT
public:
    explicit PlotWidget(QWidget* parent = nullptr);
    ~PlotWidget() override;

    // The one export path: the format comes from the suffix (png, pdf, svg, csv). Returns false with `error` set.
    bool exportTo(const QString& path, QString* error = nullptr);
    static QStringList exportFormats(); // png, pdf, svg, csv
    // The plot layer for highlights and outlines: above the plotted data, below the axes and the legend.
    static QString highlightLayer();

    // The plotted data as CSV, a header line first; empty when nothing is plotted.
    virtual QString csv() const = 0;

    QString title() const { return m_title; }
    void setTitle(const QString& title);
    // The size exports use when the widget has none yet (e.g. never shown).
    QSize exportSize() const;

    // The empty state: `message` in place of the plot (no axes, nothing left of earlier data); an empty message shows
    // the plot again. Views set it whenever they have nothing to plot (no model, no analysis, settings that cannot
    // convert).
    void setEmptyMessage(const QString& message);
    QString emptyMessage() const; // empty while the plot is shown

    // Paints the plot into an image of its current size (tests, screenshots).
    QImage renderImage(double scale = 1.0);

Q_SIGNALS:
    void exported(const QString& path);

protected:
    QCustomPlot* plot() const { return m_plot; }
    // Colours for the current palette: subclasses call these when building items and restyle in applyPalette().
    QColor foreground() const;
    QColor background() const;
    QColor gridColour() const;
    QColor accent(int index) const; // a qualitative series colour
    void styleAxisRect(QCPAxisRect* rect);
    void styleLegend(QCPLegend* legend);
    virtual void applyPalette();
    // Extra context menu entries of a plot, added before the export entries.
    virtual void addContextActions(QMenu* menu);
    void requestReplot(); // queued: many data changes in one event-loop turn cost one replot

    void changeEvent(QEvent* event) override;

private:
    void showContextMenu(const QPoint& pos);
    void exportInteractively(const QString& format);
    bool writeCsv(const QString& path, QString* error) const;

    QCustomPlot* m_plot = nullptr;
    QLabel* m_emptyLabel = nullptr;
    QStackedLayout* m_stack = nullptr;
    QString m_title;
};

} // namespace mla
