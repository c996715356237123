#include "plots/plot_widget.h"

#include "plots/svg_paint_device.h"

#include "plots/qcustomplot_include.h"
#include "util/error.h"
#include "util/staged_output.h"

#include <QApplication>
#include <QFile>
#include <QFileDialog>
#include <QFileInfo>
#include <QMenu>
#include <QMessageBox>
#include <QSaveFile>
#include <QSettings>
#include <QStackedLayout>
#include <QLabel>
#include <QStandardPaths>
#include <QVBoxLayout>

namespace mla {

PlotWidget::PlotWidget(QWidget* parent) : QWidget(parent)
{
    m_plot = new QCustomPlot(this);
    m_plot->setContextMenuPolicy(Qt::CustomContextMenu);
    m_plot->setNoAntialiasingOnDrag(true);
    m_plot->setAntialiasedElements(QCP::aePlottables | QCP::aeItems);
    // QCustomPlot already owns an "overlay" layer (topmost, above axes and legend); ours sits just above the plottables
    // and below the axes, created once per plot.
    if (!m_plot->layer(highlightLayer()))
        m_plot->addLayer(highlightLayer(), m_plot->layer(QStringLiteral("main")), QCustomPlot::limAbove);
    connect(m_plot, &QWidget::customContextMenuRequested, this, &PlotWidget::showContextMenu);
    // The empty state replaces the whole plot: no axes left from earlier data, no ticks for nothing.
    m_emptyLabel = new QLabel(this);
    m_emptyLabel->setAlignment(Qt::AlignCenter);
    m_emptyLabel->setWordWrap(true);
    m_emptyLabel->setForegroundRole(QPalette::PlaceholderText);
    m_emptyLabel->setContentsMargins(24, 24, 24, 24);
    m_emptyLabel->setTextInteractionFlags(Qt::TextSelectableByMouse);
    m_emptyLabel->setMinimumWidth(10);
    m_stack = new QStackedLayout(this);
    m_stack->setContentsMargins(0, 0, 0, 0);
    m_stack->addWidget(m_plot);
    m_stack->addWidget(m_emptyLabel);
    m_stack->setCurrentWidget(m_plot);
    setMinimumSize(240, 160);
    applyPalette();
}

PlotWidget::~PlotWidget() = default;

void PlotWidget::setEmptyMessage(const QString& message)
{
    m_emptyLabel->setText(message);
    QWidget* shown = message.isEmpty() ? static_cast<QWidget*>(m_plot) : m_emptyLabel;
    if (m_stack->currentWidget() == shown)
        return;
    m_stack->setCurrentWidget(shown);
    if (shown == m_plot) {
        // The stack sizes only the page it shows: the plot gets its size (and its axes their places) now, not after
        // the next layout pass, so that a mouse event or an export right away finds them where they are drawn.
        m_plot->setGeometry(contentsRect());
        m_plot->replot();
    }
}

QString PlotWidget::emptyMessage() const
{
    return m_stack->currentWidget() == m_emptyLabel ? m_emptyLabel->text() : QString();
}

QString PlotWidget::highlightLayer()
{
    return QStringLiteral("highlight");
}

QStringList PlotWidget::exportFormats()
{
    return {QStringLiteral("png"), QStringLiteral("pdf"), QStringLiteral("svg"), QStringLiteral("csv")};
}

void PlotWidget::setTitle(const QString& title)
{
    m_title = title;
    setAccessibleName(title);
}

QSize PlotWidget::exportSize() const
{
    const QSize s = m_plot->size();
    if (s.width() < 50 || s.height() < 50)
        return {900, 560};
    return s;
}

QImage PlotWidget::renderImage(double scale)
{
    const QSize s = exportSize();
    return m_plot->toPixmap(s.width(), s.height(), scale).toImage();
}

bool PlotWidget::exportTo(const QString& path, QString* error)
{
    const QString suffix = QFileInfo(path).suffix().toLower();
    const QSize s = exportSize();
    bool ok = false;
    QString why;
    try {
        // Core's output policy (the file dialog has asked before replacing a file): never an input of the open
        // model, a device or a link; written under a temporary name and moved into place when complete.
        StagedFile staged(QFile::encodeName(path).toStdString(), OutputOptions{true, {}});
        const QString target = QFile::decodeName(staged.path().c_str());
        if (suffix == QLatin1String("csv")) {
            ok = writeCsv(target, &why);
        } else if (suffix == QLatin1String("png")) {
            ok = m_plot->savePng(target, s.width(), s.height(), 2.0);
        } else if (suffix == QLatin1String("pdf")) {
            ok = m_plot->savePdf(target, s.width(), s.height(), QCP::epNoCosmetic, QStringLiteral("MLA Workbench"), m_title);
        } else if (suffix == QLatin1String("svg")) {
            SvgPaintDevice device(s, m_title);
            QCPPainter painter(&device);
            if (painter.isActive()) {
                m_plot->toPainter(&painter, s.width(), s.height());
                painter.end();
                ok = device.save(target, &why);
            } else {
                why = tr("cannot paint the SVG document");
            }
        } else {
            why = tr("unknown format \"%1\" (use png, pdf, svg or csv)").arg(suffix);
        }
        if (ok && QFileInfo(target).size() > 0)
            staged.commit();
    } catch (const Error& e) {
        ok = false;
        why = QString::fromUtf8(e.what());
    }
    if (ok && (!QFileInfo::exists(path) || QFileInfo(path).size() == 0)) {
        ok = false;
        why = tr("nothing was written");
    }
    if (!ok && why.isEmpty())
        why = tr("cannot write %1").arg(path);
    if (error)
        *error = why;
    if (ok)
        Q_EMIT exported(path);
    return ok;
}

bool PlotWidget::writeCsv(const QString& path, QString* error) const
{
    QSaveFile f(path);
    if (!f.open(QIODevice::WriteOnly | QIODevice::Text)) {
        *error = f.errorString();
        return false;
    }
    const QByteArray text = csv().toUtf8();
    if (text.isEmpty()) {
        *error = tr("the plot holds no data yet");
        return false;
    }
    f.write(text);
    if (!f.commit()) {
        *error = f.errorString();
        return false;
    }
    return true;
}

void PlotWidget::showContextMenu(const QPoint& pos)
{
    QMenu menu(this);
    addContextActions(&menu);
    if (!menu.isEmpty())
        menu.addSeparator();
    menu.addAction(tr("Save as PNG…"), this, [this] { exportInteractively(QStringLiteral("png")); });
    menu.addAction(tr("Save as PDF…"), this, [this] { exportInteractively(QStringLiteral("pdf")); });
    menu.addAction(tr("Save as SVG…"), this, [this] { exportInteractively(QStringLiteral("svg")); });
    menu.addSeparator();
    menu.addAction(tr("Export data as CSV…"), this, [this] { exportInteractively(QStringLiteral("csv")); });
    menu.exec(m_plot->mapToGlobal(pos));
}

void PlotWidget::exportInteractively(const QString& format)
{
    QSettings settings;
    const QString dir = settings.value(QStringLiteral("export/lastDir"), QStandardPaths::writableLocation(QStandardPaths::PicturesLocation)).toString();
    QString base = m_title.isEmpty() ? QStringLiteral("plot") : m_title;
    base.replace(QRegularExpression(QStringLiteral("[^A-Za-z0-9_-]+")), QStringLiteral("-"));
    const QString filter = format == QLatin1String("csv") ? tr("CSV data (*.csv)") : tr("%1 image (*.%2)").arg(format.toUpper(), format);
    QString path = QFileDialog::getSaveFileName(this, tr("Export %1").arg(m_title), dir + QLatin1Char('/') + base + QLatin1Char('.') + format, filter);
    if (path.isEmpty())
        return;
    if (QFileInfo(path).suffix().isEmpty())
        path += QLatin1Char('.') + format;
    settings.setValue(QStringLiteral("export/lastDir"), QFileInfo(path).absolutePath());
    QString error;
    if (!exportTo(path, &error))
        QMessageBox::warning(this, tr("Export failed"), tr("Could not write %1: %2").arg(path, error));
}

void PlotWidget::addContextActions(QMenu*) {}

QColor PlotWidget::foreground() const
{
    return palette().color(QPalette::WindowText);
}

QColor PlotWidget::background() const
{
    return palette().color(QPalette::Base);
}

QColor PlotWidget::gridColour() const
{
    QColor c = foreground();
    c.setAlpha(40);
    return c;
}

QColor PlotWidget::accent(int index) const
{
    // Okabe-Ito: distinguishable for colour-blind readers, on light and dark backgrounds.
    static const QColor colours[] = {QColor(0x00, 0x72, 0xb2), QColor(0xe6, 0x9f, 0x00), QColor(0x00, 0x9e, 0x73),
                                     QColor(0xd5, 0x5e, 0x00), QColor(0xcc, 0x79, 0xa7), QColor(0x56, 0xb4, 0xe9),
                                     QColor(0xf0, 0xe4, 0x42)};
    QColor c = colours[index % 7];
    if (background().lightness() < 128 && index % 7 == 0)
        c = QColor(0x56, 0xb4, 0xe9); // blue is too dark on a dark background
    return c;
}

void PlotWidget::styleAxisRect(QCPAxisRect* rect)
{
    const QColor fg = foreground();
    for (QCPAxis* axis : rect->axes()) {
        axis->setBasePen(QPen(fg, 1));
        axis->setTickPen(QPen(fg, 1));
        axis->setSubTickPen(QPen(fg, 1));
        axis->setTickLabelColor(fg);
        axis->setLabelColor(fg);
        axis->grid()->setPen(QPen(gridColour(), 1, Qt::DotLine));
        axis->grid()->setSubGridPen(Qt::NoPen);
        axis->grid()->setZeroLinePen(Qt::NoPen);
        QFont f = font();
        axis->setTickLabelFont(f);
        axis->setLabelFont(f);
    }
    rect->setBackground(background());
}

void PlotWidget::styleLegend(QCPLegend* legend)
{
    QColor bg = background();
    bg.setAlpha(220);
    legend->setBrush(bg);
    legend->setBorderPen(QPen(gridColour()));
    legend->setTextColor(foreground());
    legend->setFont(font());
}

void PlotWidget::applyPalette()
{
    m_plot->setBackground(background());
    for (QCPAxisRect* rect : m_plot->axisRects())
        styleAxisRect(rect);
    if (m_plot->legend)
        styleLegend(m_plot->legend);
    requestReplot();
}

void PlotWidget::requestReplot()
{
    m_plot->replot(QCustomPlot::rpQueuedReplot);
}

void PlotWidget::changeEvent(QEvent* event)
{
    QWidget::changeEvent(event);
    if (event->type() == QEvent::PaletteChange || event->type() == QEvent::StyleChange)
        applyPalette();
}

} // namespace mla
