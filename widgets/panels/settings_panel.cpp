#include "panels/settings_panel.h"

#include "conversion/presets.h"
#include "document/formatting.h"
#include "document/workbench.h"
#include "view_data/view_data.h"

#include <QCheckBox>
#include <QComboBox>
#include <QDoubleSpinBox>
#include <QEvent>
#include <QFileDialog>
#include <QFormLayout>
#include <QGroupBox>
#include <QHBoxLayout>
#include <QLabel>
#include <QLineEdit>
#include <QPushButton>
#include <QSlider>
#include <QSpinBox>
#include <QVBoxLayout>

namespace mla {
namespace {

// Consecutive changes of one control merge into one undo step.
enum MergeId { MergePairs = 101, MergeLatent, MergeSaving, MergeStart, MergePowerIterations };

QLabel* note(QWidget* parent)
{
    auto* l = new QLabel(parent);
    l->setWordWrap(true);
    QFont f = l->font();
    f.setPointSizeF(f.pointSizeF() * 0.9);
    l->setFont(f);
    l->setForegroundRole(QPalette::PlaceholderText);
    return l;
}

QWidget* sliderRow(QSlider* slider, QSpinBox* spin, QWidget* parent)
{
    auto* w = new QWidget(parent);
    auto* h = new QHBoxLayout(w);
    h->setContentsMargins(0, 0, 0, 0);
    h->addWidget(slider, 1);
    h->addWidget(spin);
    QObject::connect(slider, &QSlider::valueChanged, spin, &QSpinBox::setValue);
    QObject::connect(spin, &QSpinBox::valueChanged, slider, &QSlider::setValue);
    return w;
}

} // namespace

SettingsPanel::SettingsPanel(Workbench* workbench, QWidget* parent) : QWidget(parent), m_workbench(workbench)
{
    build();
    connect(m_workbench, &Workbench::modelChanged, this, &SettingsPanel::refresh);
    connect(m_workbench, &Workbench::analysisChanged, this, &SettingsPanel::refresh);
    connect(m_workbench, &Workbench::settingsChanged, this, &SettingsPanel::refresh);
    connect(m_workbench, &Workbench::previewChanged, this, &SettingsPanel::refresh);
    refresh();
}

void SettingsPanel::build()
{
    // ---- recipe
    m_preset = new QComboBox(this);
    m_preset->addItem(tr("Custom"), QString());
    m_preset->setItemData(0, tr("The settings exactly as you set them."), Qt::ToolTipRole);
    for (const PresetInfo& p : conversionPresets()) {
        m_preset->addItem(QString::fromStdString(p.name), QString::fromStdString(p.name));
        m_preset->setItemData(m_preset->count() - 1, QString::fromStdString(p.description), Qt::ToolTipRole);
    }
    m_preset->setToolTip(tr("A named starting point. paper: the MHA2MLA public code's initialisation. best: per-layer budget "
                            "allocation, rotation-loss pairs, whitened joint decomposition and least-squares refits. "
                            "Changing any setting afterwards makes it Custom."));

    // ---- target layout
    m_target = new QComboBox(this);
    m_target->addItem(tr("MHA2MLA layout"), static_cast<int>(ConversionTarget::Mha2mla));
    m_target->setItemData(0, tr("The MHA2MLA research layout: partial RoPE kept per KV head and a latent whose widths may differ per "
                                "layer. Our engine and the MHA2MLA authors' patched transformers run it; it can be healed."),
                          Qt::ToolTipRole);
    m_target->addItem(tr("DeepSeek-V3 layout"), static_cast<int>(ConversionTarget::DeepSeekV3));
    m_target->setItemData(1, tr("DeepseekV3ForCausalLM: stock transformers, vLLM and SGLang load it, and llama.cpp as its deepseek2 "
                                "GGUF (File > Export as GGUF). One shared RoPE head (qk_rope_head_dim) and one latent width "
                                "(kv_lora_rank) for every layer; no per-layer widths and no heal."),
                          Qt::ToolTipRole);
    m_target->setToolTip(tr("<p>The layout of the converted model.</p><p><b>MHA2MLA</b>: the research layout (partial RoPE per KV head, "
                            "per-layer widths); our engine runs it and it can be healed.</p><p><b>DeepSeek-V3</b>: what stock "
                            "transformers, vLLM, SGLang and (as GGUF) llama.cpp load: one shared RoPE head and one latent width "
                            "for every layer; the pairs below are then the shared head's, the latent is kv_lora_rank.</p>"));
    m_flashMla = new QCheckBox(tr("FlashMLA shape (512 + 64)"), this);
    m_flashMla->setToolTip(tr("DeepSeek-V3 target only: kv_lora_rank 512 and qk_rope_head_dim 64, the only shape FlashMLA runs "
                              "(and one of vLLM's latent-cache shapes). Fixes the widths: the pairs, latent and saving below do not "
                              "apply. Refused, saying why, when the model is too small for it."));
    m_targetNote = note(this);

    // ---- partial RoPE
    m_strategy = new QComboBox(this);
    const RopeStrategy strategies[] = {RopeStrategy::High, RopeStrategy::Low, RopeStrategy::Uniform, RopeStrategy::TwoNorm,
                                       RopeStrategy::RotationLoss};
    for (RopeStrategy s : strategies)
        m_strategy->addItem(QString::fromUtf8(ropeStrategyName(s).data()), static_cast<int>(s));
    m_strategy->setToolTip(tr("<p>Which p of the d<sub>h</sub>/2 frequency pairs keep RoPE, per KV head (query heads follow their KV head):</p>"
                              "<ul><li><b>high</b>: j &lt; p (the fastest rotating)</li><li><b>low</b>: j ≥ d<sub>h</sub>/2 − p</li>"
                              "<li><b>uniform</b>: j = start + ⌊i·d<sub>h</sub>/(2p)⌋</li>"
                              "<li><b>2-norm</b>: the p largest score<sub>kv</sub>[l,k,j] = Σ<sub>h∈k</sub> qn[l,h,j]·kn[l,k,j] "
                              "(bounds |q<sub>j</sub>·k<sub>j</sub>| by Cauchy–Schwarz)</li>"
                              "<li><b>rotation-loss</b>: the p pairs whose loss of rotation would change the logits most "
                              "(≈0 for pairs that barely turn within the context)</li></ul>"));
    m_uniformStart = new QSpinBox(this);
    m_uniformStart->setToolTip(tr("uniform: kept pairs j = start + ⌊i·d<sub>h</sub>/(2p)⌋, i = 0…p−1"));
    m_pairsSlider = new QSlider(Qt::Horizontal, this);
    m_pairs = new QSpinBox(this);
    const QString pairsTip = tr("<p>p pairs per head keep RoPE: r = 2p dims. The other d<sub>h</sub> − r dims become position-free "
                                "(“nope”) and go into the latent. Cached per layer: d<sub>c</sub> + n<sub>kv</sub>·r.</p>"
                                "<p>The paper's default is p = d<sub>h</sub>/16.</p>");
    m_pairsSlider->setToolTip(pairsTip);
    m_pairs->setToolTip(pairsTip);
    m_pairsNote = note(this);

    // ---- low-rank key/value
    m_method = new QComboBox(this);
    const std::pair<LatentMethod, QString> methods[] = {
        {LatentMethod::Joint, tr("joint SVD")}, {LatentMethod::Split, tr("split (key | value)")},
        {LatentMethod::Key, tr("key only")}, {LatentMethod::Value, tr("value only")}, {LatentMethod::None, tr("none (partial RoPE only)")}};
    for (const auto& [m, label] : methods)
        m_method->addItem(label, static_cast<int>(m));
    m_method->setToolTip(tr("<p><b>joint</b>: SVD of M = [W<sub>k_nope</sub>; W<sub>v</sub>] ≈ U<sub>r</sub>S<sub>r</sub>V<sub>r</sub><sup>T</sup>; "
                            "W<sub>dkv</sub> = V<sub>r</sub><sup>T</sup> (what is cached), [W<sub>uk</sub>; W<sub>uv</sub>] = U<sub>r</sub>S<sub>r</sub>. "
                            "One latent serves keys and values.</p><p><b>split</b>: separate SVDs of W<sub>k_nope</sub> and W<sub>v</sub>, "
                            "d<sub>c</sub>/2 each (same cache as joint).</p><p><b>key / value only</b>: compress one side, keep the other whole.</p>"
                            "<p><b>none</b>: no latent, only partial RoPE (ablations, the exactness identity).</p>"));
    m_latentSlider = new QSlider(Qt::Horizontal, this);
    m_latent = new QSpinBox(this);
    const QString latentTip = tr("<p>d<sub>c</sub>, the width of the cached latent c<sub>t</sub> = W<sub>dkv</sub>x<sub>t</sub> "
                                 "(split: both latents together). Predicted relative error of rank k: "
                                 "√(Σ<sub>i&gt;k</sub> s<sub>i</sub>² / Σ<sub>i</sub> s<sub>i</sub>²).</p>"
                                 "<p>The paper's rank per KV head is d<sub>kv</sub> = d<sub>c</sub>/n<sub>kv</sub>.</p>");
    m_latentSlider->setToolTip(latentTip);
    m_latent->setToolTip(latentTip);
    m_latentNote = note(this);
    m_saving = new QDoubleSpinBox(this);
    m_saving->setRange(1.0, 99.0);
    m_saving->setDecimals(1);
    m_saving->setSuffix(QStringLiteral(" %"));
    m_saving->setToolTip(tr("<p>KV saving = 1 − (d<sub>c</sub> + n<sub>kv</sub>·r) / (2·n<sub>kv</sub>·d<sub>h</sub>) per layer.</p>"
                            "<p>Typing a saving sets d<sub>c</sub> = (1 − saving)·2·n<sub>kv</sub>·d<sub>h</sub> − n<sub>kv</sub>·r "
                            "for you, and keeps it when p or the method change. Shows the saving of the current settings.</p>"));
    m_sigma = new QComboBox(this);
    m_sigma->addItem(tr("up projections (code)"), static_cast<int>(SigmaPlacement::Up));
    m_sigma->addItem(tr("√ on each side (paper)"), static_cast<int>(SigmaPlacement::Sqrt));
    m_sigma->setToolTip(tr("Where the singular values go: W<sub>dkv</sub> = V<sub>r</sub><sup>T</sup>, W<sub>up</sub> = U<sub>r</sub>S<sub>r</sub> "
                           "(public code) or S<sup>½</sup> on each side (paper). The product is identical; it only matters as a "
                           "starting point for fine-tuning."));
    m_decomposition = new QComboBox(this);
    m_decomposition->addItem(tr("exact"), static_cast<int>(DecompositionMethod::Exact));
    m_decomposition->addItem(tr("randomized (narrow latents)"), static_cast<int>(DecompositionMethod::Randomized));
    m_decomposition->setToolTip(tr("<p>How the latent factors are computed. Exact: the best rank-d<sub>c</sub> factors (Gram matrix and "
                                   "its full eigen-decomposition; the default). Randomized: subspace iteration on a random sketch, "
                                   "which can be faster on the CPU when d<sub>c</sub> is well below a quarter of the key/value "
                                   "matrix's rank, with a larger reconstruction error.</p><p>A randomized conversion "
                                   "measures both on its first layer and shows the error and the time of each in its summary and "
                                   "the model card. The GPU always decomposes exactly.</p>"));
    m_powerIterations = new QSpinBox(this);
    m_powerIterations->setRange(0, static_cast<int>(kMaxPowerIterations));
    m_powerIterations->setToolTip(tr("Subspace iterations of the randomized decomposition: each one brings its error closer to the "
                                     "exact one and costs two more products with the key/value matrix."));
    m_activation = new QCheckBox(tr("Activation-aware (whitened)"), this);
    m_activation->setToolTip(tr("<p>Decompose on real inputs: C = X<sup>T</sup>X/N = SS<sup>T</sup>, SVD of MS, W<sub>dkv</sub> = "
                                "V<sub>r</sub><sup>T</sup>S<sup>−1</sup>. Minimises E‖Mx − M<sub>r</sub>x‖² instead of ‖M − M<sub>r</sub>‖<sub>F</sub>. "
                                "Uses the analysis's calibration.</p>"));
    m_balance = new QCheckBox(tr("Balance key / value energy"), this);
    m_balance->setToolTip(tr("Scale the key and value blocks of M to equal Frobenius norm before the joint decomposition and "
                             "undo it after, so the larger side does not take the whole rank."));
    m_refit = new QCheckBox(tr("Least-squares refit"), this);
    m_refit->setToolTip(tr("Refit W<sub>uk</sub>, W<sub>uv</sub> and W<sub>o</sub> layer by layer on the inputs each layer really sees: "
                           "min Σ‖[k<sub>nope</sub>; v]<sub>orig</sub> − W<sub>up</sub>c‖² + λ‖W<sub>up</sub> − W<sub>up,0</sub>‖²."));
    m_allocate = new QCheckBox(tr("Allocate per layer for the budget"), this);
    m_allocate->setToolTip(tr("Choose p and d<sub>c</sub> per layer for the same total KV budget, minimising the measured "
                              "attention-output error (an exact multiple-choice knapsack), at conversion time."));

    m_allocateNow = new QPushButton(tr("Allocate now"), this);
    m_allocateNow->setToolTip(tr("Measure every layer's candidates on the calibration and fill in the per-layer pairs and latents "
                                 "for the current budget, so the preview shows them; layers you locked keep their width."));

    // ---- calibration
    m_calibSource = new QComboBox(this);
    m_calibSource->addItem(tr("Samples from the model"), static_cast<int>(CalibrationOptions::Source::Samples));
    m_calibSource->addItem(tr("Text file"), static_cast<int>(CalibrationOptions::Source::Text));
    m_calibSource->addItem(tr("Token ids file"), static_cast<int>(CalibrationOptions::Source::Ids));
    m_calibSource->setToolTip(tr("Where calibration tokens come from: the scores qn, kn average ‖q<sub>j</sub>‖, ‖k<sub>j</sub>‖ over them, "
                                 "and activation-aware methods use their covariance X<sup>T</sup>X/N."));
    m_samples = new QSpinBox(this);
    m_samples->setRange(1, 4096);
    m_samples->setToolTip(tr("Sequences sampled from the model itself (temperature 1, from BOS)"));
    m_sequenceLength = new QSpinBox(this);
    m_sequenceLength->setRange(8, 1 << 20);
    m_sequenceLength->setToolTip(tr("Tokens per calibration sequence (capped at the model's context)"));
    m_calibFile = new QLineEdit(this);
    m_calibFile->setPlaceholderText(tr("text or ids file…"));
    m_calibFile->setToolTip(tr("Text: tokenised and cut into windows starting with BOS. Ids: one sequence per line, used as given."));
    m_browse = new QPushButton(tr("Browse…"), this);

    m_status = note(this);

    // ---- layout
    auto* layout = new QVBoxLayout(this);
    layout->setContentsMargins(4, 4, 4, 4);
    auto* recipe = new QFormLayout;
    recipe->addRow(tr("Preset"), m_preset);
    recipe->addRow(tr("Target"), m_target);
    recipe->addRow(m_flashMla);
    recipe->addRow(m_targetNote);
    layout->addLayout(recipe);

    auto* rope = new QGroupBox(tr("Partial RoPE"), this);
    auto* ropeForm = new QFormLayout(rope);
    ropeForm->addRow(tr("Strategy"), m_strategy);
    ropeForm->addRow(tr("Uniform start"), m_uniformStart);
    ropeForm->addRow(tr("Pairs / head"), sliderRow(m_pairsSlider, m_pairs, rope));
    ropeForm->addRow(m_pairsNote);
    layout->addWidget(rope);

    auto* kv = new QGroupBox(tr("Low-rank keys and values"), this);
    auto* kvForm = new QFormLayout(kv);
    kvForm->addRow(tr("SVD method"), m_method);
    kvForm->addRow(tr("Latent d_c"), sliderRow(m_latentSlider, m_latent, kv));
    kvForm->addRow(m_latentNote);
    kvForm->addRow(tr("KV saving"), m_saving);
    kvForm->addRow(tr("Sigma"), m_sigma);
    kvForm->addRow(tr("Decomposition"), m_decomposition);
    kvForm->addRow(tr("Power iterations"), m_powerIterations);
    kvForm->addRow(m_activation);
    kvForm->addRow(m_balance);
    kvForm->addRow(m_refit);
    auto* allocateRow = new QWidget(kv);
    auto* allocateLayout = new QHBoxLayout(allocateRow);
    allocateLayout->setContentsMargins(0, 0, 0, 0);
    allocateLayout->addWidget(m_allocate, 1);
    allocateLayout->addWidget(m_allocateNow);
    kvForm->addRow(allocateRow);
    layout->addWidget(kv);

    auto* calib = new QGroupBox(tr("Calibration"), this);
    auto* calibForm = new QFormLayout(calib);
    calibForm->addRow(tr("Source"), m_calibSource);
    calibForm->addRow(tr("Samples"), m_samples);
    calibForm->addRow(tr("Length"), m_sequenceLength);
    auto* fileRow = new QWidget(calib);
    auto* fileLayout = new QHBoxLayout(fileRow);
    fileLayout->setContentsMargins(0, 0, 0, 0);
    fileLayout->addWidget(m_calibFile, 1);
    fileLayout->addWidget(m_browse);
    calibForm->addRow(tr("File"), fileRow);
    layout->addWidget(calib);
    layout->addWidget(m_status);
    layout->addStretch(1);

    // ---- behaviour
    connect(m_preset, &QComboBox::activated, this, [this](int i) {
        const QString name = m_preset->itemData(i).toString();
        changeConversion(tr("Preset %1").arg(m_preset->itemText(i)), -1, [&](ConversionSettings& s) {
            if (name.isEmpty())
                s.preset.clear();
            else
                applyPreset(name.toStdString(), s);
        }, false);
    });
    connect(m_target, &QComboBox::currentIndexChanged, this, [this](int i) {
        m_workbench->setTarget(static_cast<ConversionTarget>(m_target->itemData(i).toInt()), m_flashMla->isChecked());
    });
    connect(m_flashMla, &QCheckBox::toggled, this, [this](bool on) {
        m_workbench->setTarget(static_cast<ConversionTarget>(m_target->currentData().toInt()), on);
    });
    connect(m_strategy, &QComboBox::currentIndexChanged, this, [this](int i) {
        changeConversion(tr("Strategy %1").arg(m_strategy->itemText(i)), -1,
                         [&](ConversionSettings& s) { s.strategy = static_cast<RopeStrategy>(m_strategy->itemData(i).toInt()); });
    });
    connect(m_uniformStart, &QSpinBox::valueChanged, this, [this](int v) {
        changeConversion(tr("Uniform start %1").arg(v), MergeStart, [&](ConversionSettings& s) { s.uniformStart = v; });
    });
    connect(m_pairs, &QSpinBox::valueChanged, this, [this](int v) {
        changeConversion(tr("RoPE pairs %1").arg(v), MergePairs, [&](ConversionSettings& s) {
            s.ropePairs = v;
            s.ropePairsPerLayer.clear();
        });
    });
    connect(m_method, &QComboBox::currentIndexChanged, this, [this](int i) {
        changeConversion(tr("Method %1").arg(m_method->itemText(i)), -1,
                         [&](ConversionSettings& s) { s.method = static_cast<LatentMethod>(m_method->itemData(i).toInt()); });
    });
    connect(m_latent, &QSpinBox::valueChanged, this, [this](int v) { m_workbench->setGlobalLatent(v, MergeLatent); });
    connect(m_saving, &QDoubleSpinBox::valueChanged, this, [this](double v) { m_workbench->setTargetSaving(v / 100.0, MergeSaving); });
    connect(m_sigma, &QComboBox::currentIndexChanged, this, [this](int i) {
        changeConversion(tr("Sigma %1").arg(m_sigma->itemText(i)), -1,
                         [&](ConversionSettings& s) { s.sigma = static_cast<SigmaPlacement>(m_sigma->itemData(i).toInt()); });
    });
    connect(m_decomposition, &QComboBox::currentIndexChanged, this, [this](int i) {
        // Not a recipe change: the presets leave the decomposition as it is, so the preset stays named.
        changeConversion(tr("Decomposition %1").arg(m_decomposition->itemText(i)), -1, [&](ConversionSettings& s) {
            s.decomposition = static_cast<DecompositionMethod>(m_decomposition->itemData(i).toInt());
        }, false);
    });
    connect(m_powerIterations, &QSpinBox::valueChanged, this, [this](int v) {
        changeConversion(tr("Power iterations %1").arg(v), MergePowerIterations, [&](ConversionSettings& s) { s.powerIterations = v; }, false);
    });
    auto flag = [this](QCheckBox* box, bool ConversionSettings::*member) {
        connect(box, &QCheckBox::toggled, this, [this, box, member](bool on) {
            changeConversion(tr("%1 %2").arg(box->text(), on ? tr("on") : tr("off")), -1, [&](ConversionSettings& s) { s.*member = on; });
        });
    };
    flag(m_activation, &ConversionSettings::activationAware);
    flag(m_balance, &ConversionSettings::balanceKeyValue);
    flag(m_refit, &ConversionSettings::refit);
    flag(m_allocate, &ConversionSettings::allocate);

    connect(m_allocateNow, &QPushButton::clicked, m_workbench, &Workbench::allocate);
    connect(m_workbench, &Workbench::busyChanged, this, &SettingsPanel::refresh);
    connect(m_calibSource, &QComboBox::currentIndexChanged, this, [this] { setCalibrationFromControls(tr("Calibration source")); });
    connect(m_samples, &QSpinBox::editingFinished, this, [this] { setCalibrationFromControls(tr("Calibration samples")); });
    connect(m_sequenceLength, &QSpinBox::editingFinished, this, [this] { setCalibrationFromControls(tr("Calibration length")); });
    connect(m_calibFile, &QLineEdit::editingFinished, this, [this] { setCalibrationFromControls(tr("Calibration file")); });
    connect(m_browse, &QPushButton::clicked, this, &SettingsPanel::browseCalibrationFile);

    // Focus or hover on a control points the explainer at its topic.
    const std::pair<QWidget*, const char*> topics[] = {
        {m_strategy, "rope"}, {m_uniformStart, "rope"}, {m_pairsSlider, "rope"}, {m_pairs, "rope"}, {m_method, "svd"},
        {m_latentSlider, "svd"}, {m_latent, "svd"}, {m_sigma, "absorb"}, {m_decomposition, "svd"}, {m_saving, "cache"}, {m_activation, "svd"},
        {m_calibSource, "rope"}};
    for (const auto& [w, topic] : topics) {
        w->setProperty("mlaTopic", QString::fromLatin1(topic));
        w->installEventFilter(this);
    }
}

bool SettingsPanel::eventFilter(QObject* watched, QEvent* event)
{
    if (event->type() == QEvent::FocusIn || event->type() == QEvent::Enter) {
        const QString topic = watched->property("mlaTopic").toString();
        if (!topic.isEmpty())
            Q_EMIT topicRequested(topic);
    }
    return QWidget::eventFilter(watched, event);
}

void SettingsPanel::changeConversion(const QString& what, int mergeId, const std::function<void(ConversionSettings&)>& edit, bool custom)
{
    ConversionSettings s = m_workbench->settings();
    edit(s);
    if (custom)
        s.preset.clear();
    m_workbench->changeSettings(s, what, mergeId);
}

void SettingsPanel::setCalibrationFromControls(const QString& what)
{
    CalibrationOptions c = m_workbench->calibration();
    CalibrationOptions n = c;
    n.source = static_cast<CalibrationOptions::Source>(m_calibSource->currentData().toInt());
    n.samples = m_samples->value();
    n.sequenceLength = m_sequenceLength->value();
    n.file = m_calibFile->text().trimmed().toStdString();
    if (n.source == c.source && n.samples == c.samples && n.sequenceLength == c.sequenceLength && n.file == c.file)
        return;
    m_workbench->changeCalibration(n, what);
}

void SettingsPanel::browseCalibrationFile()
{
    const bool ids = m_calibSource->currentData().toInt() == static_cast<int>(CalibrationOptions::Source::Ids);
    const QString path = QFileDialog::getOpenFileName(this, ids ? tr("Token ids file") : tr("Calibration text"), m_calibFile->text(),
                                                      ids ? tr("Token ids (*.txt *.ids);;All files (*)") : tr("Text (*.txt *.md);;All files (*)"));
    if (path.isEmpty())
        return;
    m_calibFile->setText(path);
    if (m_calibSource->currentData().toInt() == static_cast<int>(CalibrationOptions::Source::Samples))
        m_calibSource->setCurrentIndex(ids ? 2 : 1);
    setCalibrationFromControls(tr("Calibration file"));
}

QString SettingsPanel::targetText() const
{
    const ConversionSettings& s = m_workbench->settings();
    if (s.target != ConversionTarget::DeepSeekV3)
        return tr("MHA2MLA research layout: our engine runs it; per-layer widths and heal apply.");
    QString text = tr("DeepSeek-V3 layout: stock transformers, vLLM, SGLang and (as GGUF) llama.cpp load it.");
    if (const auto& w = m_workbench->deepSeekWidths()) {
        text += QLatin1Char(' ') + tr("kv_lora_rank %1 + qk_rope_head_dim %2 = %3 values per token and layer")
                                       .arg(w->kvLoraRank)
                                       .arg(w->ropeDim)
                                       .arg(w->kvLoraRank + w->ropeDim);
        if (w->kvLoraRank + w->ropeDim == 576 || w->kvLoraRank + w->ropeDim == 320)
            text += tr(" (a vLLM latent-cache shape)");
        text += QLatin1Char('.');
    }
    return text;
}

void SettingsPanel::refresh()
{
    const ModelConfig* c = m_workbench->config();
    setEnabled(c != nullptr);
    const QList<QWidget*> controls = {m_preset, m_target, m_flashMla, m_strategy, m_uniformStart, m_pairsSlider, m_pairs, m_method, m_latentSlider, m_latent,
                                      m_saving, m_sigma, m_decomposition, m_powerIterations, m_activation, m_balance, m_refit, m_allocate, m_calibSource, m_samples,
                                      m_sequenceLength, m_calibFile};
    std::vector<QSignalBlocker> blockers;
    blockers.reserve(static_cast<std::size_t>(controls.size()));
    for (QWidget* w : controls)
        blockers.emplace_back(w);

    const ConversionSettings& s = m_workbench->settings();
    const CalibrationOptions& cal = m_workbench->calibration();
    m_preset->setCurrentIndex(std::max(0, m_preset->findData(QString::fromStdString(s.preset))));
    const bool deepSeek = s.target == ConversionTarget::DeepSeekV3;
    m_target->setCurrentIndex(std::max(0, m_target->findData(static_cast<int>(s.target))));
    m_flashMla->setChecked(s.flashMla);
    m_flashMla->setEnabled(deepSeek);
    m_strategy->setCurrentIndex(std::max(0, m_strategy->findData(static_cast<int>(s.strategy))));
    m_method->setCurrentIndex(std::max(0, m_method->findData(static_cast<int>(s.method))));
    m_sigma->setCurrentIndex(std::max(0, m_sigma->findData(static_cast<int>(s.sigma))));
    m_decomposition->setCurrentIndex(std::max(0, m_decomposition->findData(static_cast<int>(s.decomposition))));
    m_powerIterations->setValue(static_cast<int>(s.powerIterations));
    m_activation->setChecked(s.activationAware);
    m_balance->setChecked(s.balanceKeyValue);
    m_refit->setChecked(s.refit);
    m_allocate->setChecked(s.allocate);
    m_allocateNow->setEnabled(!deepSeek && s.allocate && m_workbench->analysis() && m_workbench->hasModel() && !m_workbench->isBusy());
    m_allocate->setText(deepSeek ? tr("Measure the rope / latent split") : tr("Allocate per layer for the budget"));
    m_allocate->setToolTip(deepSeek ? tr("DeepSeek-V3 target: one split for every layer. Convert measures several splits of the budget "
                                         "between qk_rope_head_dim and kv_lora_rank on calibration data and keeps the best (unless "
                                         "you set the pairs or the latent).")
                                    : tr("Choose p and d<sub>c</sub> per layer for the same total KV budget, minimising the measured "
                                         "attention-output error (an exact multiple-choice knapsack), at conversion time."));
    m_calibSource->setCurrentIndex(std::max(0, m_calibSource->findData(static_cast<int>(cal.source))));
    m_samples->setValue(static_cast<int>(cal.samples));
    m_sequenceLength->setValue(static_cast<int>(cal.sequenceLength));
    m_calibFile->setText(QString::fromStdString(cal.file.string()));
    const bool fromFile = cal.source != CalibrationOptions::Source::Samples;
    m_samples->setEnabled(!fromFile);
    m_calibFile->setEnabled(fromFile);
    m_browse->setEnabled(fromFile);
    m_sequenceLength->setEnabled(cal.source != CalibrationOptions::Source::Ids);
    if (!c)
        return;

    const std::int64_t half = c->pairsPerHead();
    m_uniformStart->setRange(0, static_cast<int>(std::max<std::int64_t>(half - 1, 0)));
    m_uniformStart->setValue(static_cast<int>(s.uniformStart));
    m_uniformStart->setEnabled(s.strategy == RopeStrategy::Uniform && !deepSeek);
    m_strategy->setEnabled(!deepSeek);
    m_sigma->setEnabled(!deepSeek);
    m_decomposition->setEnabled(!deepSeek);
    m_powerIterations->setEnabled(!deepSeek && s.decomposition == DecompositionMethod::Randomized);
    // DeepSeek-V3: the pairs of the one shared RoPE head, up to every KV head's pairs.
    const std::int64_t mostPairs = deepSeek ? c->kvHeads * half : half;
    m_pairsSlider->setRange(0, static_cast<int>(mostPairs));
    m_pairs->setRange(0, static_cast<int>(mostPairs));
    const std::int64_t p = m_workbench->resolvedRopePairs();
    m_pairsSlider->setValue(static_cast<int>(p));
    m_pairs->setValue(static_cast<int>(p));
    m_pairsSlider->setEnabled(!s.flashMla);
    m_pairs->setEnabled(!s.flashMla);
    m_targetNote->setText(targetText());
    if (deepSeek) {
        const LatentRange range = latentRange(*c, 0, LatentMethod::Joint);
        const std::int64_t latent = m_workbench->resolvedLatent();
        m_pairsNote->setText(tr("qk_rope_head_dim = 2p = %1: one rotated key head shared by every query head (built from the KV heads' "
                                "pairs by a per-frequency rotation); the rest of each key goes into the latent.")
                                 .arg(2 * p));
        m_latentSlider->setRange(static_cast<int>(range.minimum), static_cast<int>(range.maximum));
        m_latent->setRange(static_cast<int>(range.minimum), static_cast<int>(std::max(range.maximum, latent)));
        m_latentSlider->setValue(static_cast<int>(latent));
        m_latent->setValue(static_cast<int>(latent));
        const bool free = !s.flashMla;
        m_latentSlider->setEnabled(free);
        m_latent->setEnabled(free);
        m_saving->setEnabled(free);
        QString text = tr("kv_lora_rank = %1 for every layer; cached per layer: kv_lora_rank + qk_rope_head_dim = %1 + %2 = %3 elements.")
                           .arg(latent)
                           .arg(2 * p)
                           .arg(latent + 2 * p);
        if (s.latentDim <= 0 && !s.flashMla)
            text += QLatin1Char(' ') + tr("Follows the %1 target saving.").arg(fmt::percent(s.targetSaving));
        m_latentNote->setText(text);
        const ConversionPreview& preview = m_workbench->preview();
        const double saving = preview.problem.empty() && preview.kv.originalTotal > 0 ? preview.kv.saving() : s.targetSaving;
        m_saving->setValue(100.0 * saving);
        m_status->setText(preview.problem.empty() ? QString() : tr("⚠ %1").arg(QString::fromStdString(preview.problem)));
        return;
    }
    QString pairsText = tr("r = 2p = %1 of d_h = %2 dims keep RoPE; %3 position-free dims per head go into the latent.")
                            .arg(2 * p)
                            .arg(c->headDim)
                            .arg(c->headDim - 2 * p);
    if (!s.ropePairsPerLayer.empty())
        pairsText += QLatin1Char(' ') + tr("Pairs are set per layer (allocation).");
    if (ropeStrategyNeedsScores(s.strategy) && !m_workbench->analysis())
        pairsText += QLatin1Char(' ') + tr("Run Analyze (F5) to rank the pairs.");
    m_pairsNote->setText(pairsText);

    const LatentRange range = latentRange(*c, p, s.method);
    const bool latentApplies = s.method != LatentMethod::None;
    m_latentSlider->setRange(static_cast<int>(range.minimum), static_cast<int>(range.maximum));
    m_latent->setRange(static_cast<int>(range.minimum), static_cast<int>(std::max(range.maximum, m_workbench->resolvedLatent())));
    const std::int64_t latent = m_workbench->resolvedLatent();
    m_latentSlider->setValue(static_cast<int>(latent));
    m_latent->setValue(static_cast<int>(latent));
    m_latentSlider->setEnabled(latentApplies);
    m_latent->setEnabled(latentApplies);
    m_saving->setEnabled(latentApplies);
    m_sigma->setEnabled(latentApplies);
    m_decomposition->setEnabled(latentApplies);
    m_powerIterations->setEnabled(latentApplies && s.decomposition == DecompositionMethod::Randomized);
    const ConversionPreview& preview = m_workbench->preview();
    if (latentApplies) {
        const std::int64_t locked = std::count(m_workbench->lockedLayers().begin(), m_workbench->lockedLayers().end(), true);
        QString text = tr("d_kv = d_c / n_kv = %1 per KV head; cached per layer: d_c + n_kv·r = %2 + %3 = %4 elements.")
                           .arg(fmt::perHead(latent, c->kvHeads))
                           .arg(latent)
                           .arg(c->kvHeads * 2 * p)
                           .arg(latent + c->kvHeads * 2 * p);
        if (s.latentDim <= 0)
            text += QLatin1Char(' ') + tr("Follows the %1 target saving.").arg(fmt::percent(s.targetSaving));
        if (const QString why = fmt::perHeadNote(latent, c->kvHeads); !why.isEmpty())
            text += QLatin1Char(' ') + why;
        if (locked > 0)
            text += QLatin1Char(' ') + tr("%n layer(s) locked by hand.", nullptr, static_cast<int>(locked));
        m_latentNote->setText(text);
    } else {
        m_latentNote->setText(tr("No latent: keys and values stay whole; only the dropped rotations change the model."));
    }
    const double saving = preview.problem.empty() && preview.kv.originalTotal > 0 ? preview.kv.saving() : s.targetSaving;
    m_saving->setValue(100.0 * saving);
    m_status->setText(preview.problem.empty() ? (m_workbench->settingsWarnings().isEmpty() ? QString() : tr("⚠ %1").arg(m_workbench->settingsWarnings().join(QStringLiteral("\n⚠ "))))
                                              : tr("⚠ %1").arg(QString::fromStdString(preview.problem)));
}

} // namespace mla
