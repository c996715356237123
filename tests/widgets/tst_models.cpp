// The workbench's item models: each is checked with QAbstractItemModelTester and for what it shows.

#include "common/test_support.h"
#include "conversion/preview.h"
#include "models/generation_model.h"
#include "models/layer_preview_model.h"
#include "models/model_info_model.h"
#include "models/sanity_metrics_model.h"
#include "model/model_loader.h"
#include "common/synthetic_analysis.h"

#include <QAbstractItemModelTester>
#include <QSignalSpy>
#include <QTest>

using namespace mla;

namespace {

SanityReport sampleReport()
{
    SanityReport r;
    r.originalPpl = 3.5;
    r.convertedPpl = 4.2;
    r.kl = 0.12;
    r.top1Agreement = 0.81;
    r.evaluatedTokens = 508;
    r.originalKvBytesPerToken = 2560;
    r.convertedKvBytesPerToken = 640;
    r.withCache = {"int4/64+rope:int8/64", 4.9, 0.2, 0.7, 200};
    r.originalBf16KvBytesPerToken = 1280;
    GenerationComparison g;
    g.prompt = "Once";
    g.originalIds = {10, 11, 12, 13};
    g.convertedIds = {10, 11, 14};
    g.firstDifference = 2;
    r.generations.push_back(g);
    return r;
}

} // namespace

class TestModels : public QObject {
    Q_OBJECT
private Q_SLOTS:
    void modelInfo()
    {
        ModelInfoModel model;
        QAbstractItemModelTester tester(&model, QAbstractItemModelTester::FailureReportingMode::QtTest);
        QCOMPARE(model.rowCount(), 0);
        const Model demo = loadModel(test::demoDir() / "stories260K.bin");
        model.setModel(&demo.config, {QStringLiteral("stories260K.bin"), QStringLiteral("llama2c"), QString(), demo.parameterCount(), 1e6});
        QVERIFY(model.rowCount() >= 15);
        QCOMPARE(model.columnCount(), 2);
        // The KV row states 2 * L * n_kv * d_h and its formula.
        bool found = false;
        for (int r = 0; r < model.rowCount(); ++r) {
            if (model.index(r, 0).data().toString() == QStringLiteral("KV elements / token")) {
                QCOMPARE(model.index(r, 1).data(ModelInfoModel::RawValueRole).toLongLong(),
                         qlonglong(2 * demo.config.layers * demo.config.kvHeads * demo.config.headDim));
                QVERIFY(model.index(r, 1).data(Qt::ToolTipRole).toString().contains(QStringLiteral("2 · L · n_kv · d_h")));
                found = true;
            }
        }
        QVERIFY(found);
        // The cache row follows context and batch.
        model.setCacheParameters(1000, 3, CacheFormat::BF16);
        const double perToken = 2.0 * static_cast<double>(demo.config.kvElementsPerToken());
        const QModelIndex last = model.index(model.rowCount() - 1, 1);
        QCOMPARE(last.data(ModelInfoModel::RawValueRole).toDouble(), perToken * 1000 * 3);
        model.setModel(nullptr, {});
        QCOMPARE(model.rowCount(), 0);
    }

    void layerPreview()
    {
        const ModelConfig c = test::threeLayerShape();
        const AnalysisResult a = test::syntheticAnalysis(c);
        ConversionSettings s;
        s.ropePairs = 1;
        s.latentDim = 12;
        const ConversionPreview p = previewConversion(a, s, 100000);
        QVERIFY(p.problem.empty());

        LayerPreviewModel model;
        QAbstractItemModelTester tester(&model, QAbstractItemModelTester::FailureReportingMode::QtTest);
        model.setPreview(p, {false, true, false}, c.kvHeads);
        QCOMPARE(model.rowCount(), 3);
        QCOMPARE(model.columnCount(), int(LayerPreviewModel::ColumnCount));
        QCOMPARE(model.index(0, LayerPreviewModel::LatentColumn).data(Qt::EditRole).toLongLong(), 12LL);
        QCOMPARE(model.index(0, LayerPreviewModel::DkvColumn).data().toString(), QStringLiteral("3"));
        QCOMPARE(model.index(0, LayerPreviewModel::PairsColumn).data().toString(), QStringLiteral("1 (2 dims)"));
        QCOMPARE(model.index(1, LayerPreviewModel::LockColumn).data(Qt::CheckStateRole).toInt(), int(Qt::Checked));
        QCOMPARE(model.index(0, LayerPreviewModel::WeightErrorColumn).data(LayerPreviewModel::SortRole).toDouble(), p.layers[0].weightError);
        QVERIFY(model.flags(model.index(0, LayerPreviewModel::LatentColumn)) & Qt::ItemIsEditable);

        // Editing asks for a new latent; it does not change the model by itself (the workbench answers).
        QSignalSpy edited(&model, &LayerPreviewModel::latentEdited);
        QSignalSpy locked(&model, &LayerPreviewModel::lockToggled);
        QVERIFY(model.setData(model.index(2, LayerPreviewModel::LatentColumn), 7));
        QCOMPARE(edited.count(), 1);
        QCOMPARE(edited.at(0).at(0).toInt(), 2);
        QCOMPARE(edited.at(0).at(1).toLongLong(), 7LL);
        QVERIFY(!model.setData(model.index(2, LayerPreviewModel::LatentColumn), 0));
        QVERIFY(model.setData(model.index(0, LayerPreviewModel::LockColumn), Qt::Checked, Qt::CheckStateRole));
        QCOMPARE(locked.count(), 1);

        // A same-shape update is a dataChanged, not a reset.
        QSignalSpy reset(&model, &QAbstractItemModel::modelReset);
        QSignalSpy changed(&model, &QAbstractItemModel::dataChanged);
        s.latentDim = 20;
        model.setPreview(previewConversion(a, s, 100000), {}, c.kvHeads);
        QCOMPARE(reset.count(), 0);
        QCOMPARE(changed.count(), 1);
        QCOMPARE(model.index(0, LayerPreviewModel::LatentColumn).data(Qt::EditRole).toLongLong(), 20LL);

        // svd none: no latent to edit.
        s.method = LatentMethod::None;
        model.setPreview(previewConversion(a, s, 100000), {}, c.kvHeads);
        QVERIFY(!(model.flags(model.index(0, LayerPreviewModel::LatentColumn)) & Qt::ItemIsEditable));
        model.setPreview({}, {}, 1);
        QCOMPARE(model.rowCount(), 0);
    }

    void sanityMetrics()
    {
        SanityMetricsModel model;
        QAbstractItemModelTester tester(&model, QAbstractItemModelTester::FailureReportingMode::QtTest);
        QCOMPARE(model.rowCount(), 0);
        model.setReport(sampleReport());
        QCOMPARE(model.rowCount(), 6);
        QCOMPARE(model.columnCount(), 5);
        QCOMPARE(model.index(0, SanityMetricsModel::OriginalColumn).data().toString(), QStringLiteral("3.500"));
        QCOMPARE(model.index(0, SanityMetricsModel::ConvertedColumn).data().toString(), QStringLiteral("4.200"));
        QCOMPARE(model.index(0, SanityMetricsModel::ChangeColumn).data().toString(), QStringLiteral("+20.0%"));
        QCOMPARE(model.index(2, SanityMetricsModel::ConvertedColumn).data().toString(), QStringLiteral("81.0%"));
        QCOMPARE(model.index(3, SanityMetricsModel::ChangeColumn).data().toString(), QStringLiteral("\u221275.0%"));
        // The chosen cache format's column: its quality next to the float32 cache's, and its allocated bytes.
        QCOMPARE(model.cacheFormat(), QStringLiteral("int4/64+rope:int8/64"));
        QVERIFY(model.headerData(SanityMetricsModel::CacheColumn, Qt::Horizontal).toString().contains(QStringLiteral("int4/64+rope:int8/64")));
        QCOMPARE(model.index(0, SanityMetricsModel::CacheColumn).data().toString(), QStringLiteral("4.900 (+40.0%)"));
        QCOMPARE(model.index(1, SanityMetricsModel::CacheColumn).data().toString(), QStringLiteral("0.2000"));
        QCOMPARE(model.index(2, SanityMetricsModel::CacheColumn).data().toString(), QStringLiteral("70.0%"));
        QCOMPARE(model.index(3, SanityMetricsModel::CacheColumn).data().toString(), QStringLiteral("200 B"));
        // MLA and the int4 cache together against the original in BF16: 1 - 200 / 1280.
        QCOMPARE(model.index(4, SanityMetricsModel::OriginalColumn).data().toString(), QStringLiteral("1.25 KiB"));
        QCOMPARE(model.index(4, SanityMetricsModel::CacheColumn).data().toString(), QStringLiteral("\u221284.4%"));
        QCOMPARE(model.index(4, SanityMetricsModel::MetricColumn).data(SanityMetricsModel::RawValueRole).toDouble(), 1.0 - 200.0 / 1280.0);
        model.setReport(std::nullopt);
        QCOMPARE(model.rowCount(), 0);
    }

    void generation()
    {
        GenerationModel model;
        QAbstractItemModelTester tester(&model, QAbstractItemModelTester::FailureReportingMode::QtTest);
        const SanityReport r = sampleReport();
        model.setComparison(&r.generations[0], nullptr);
        QCOMPARE(model.rowCount(), 4); // the longer side
        QCOMPARE(model.prompt(), QStringLiteral("Once"));
        QCOMPARE(model.firstDifference(), 2);
        QVERIFY(!model.differs(0));
        QVERIFY(!model.index(1, GenerationModel::OriginalColumn).data(GenerationModel::DiffersRole).toBool());
        QVERIFY(model.index(2, GenerationModel::OriginalColumn).data(GenerationModel::DiffersRole).toBool());
        QVERIFY(model.index(3, GenerationModel::ConvertedColumn).data(GenerationModel::DiffersRole).toBool()); // past the end
        QVERIFY(model.index(2, GenerationModel::ConvertedColumn).data(Qt::BackgroundRole).isValid());
        QCOMPARE(model.index(2, GenerationModel::ConvertedColumn).data(GenerationModel::TokenIdRole).toInt(), 14);
        QCOMPARE(model.index(3, GenerationModel::ConvertedColumn).data().toString(), QString());
        // With a tokenizer, pieces are text.
        const auto tokenizer = loadTokenizer(test::demoDir() / "tok512.bin");
        model.setComparison(&r.generations[0], tokenizer.get());
        QCOMPARE(model.piece(0, false), QString::fromStdString(tokenizer->decodePiece(-1, 10)));
        model.setComparison(nullptr, nullptr);
        QCOMPARE(model.rowCount(), 0);
    }

    void generationAlignsInsertedTokens()
    {
        // The converted model inserts one token: a positional diff flagged every later token, the aligned one flags
        // that token alone (issue 18: "one inserted token marks everything after it as different").
        GenerationModel model;
        QAbstractItemModelTester tester(&model, QAbstractItemModelTester::FailureReportingMode::QtTest);
        GenerationComparison g;
        g.originalIds = {10, 11, 12, 13, 14, 15};
        g.convertedIds = {10, 11, 99, 12, 13, 14, 15};
        g.firstDifference = 2;
        model.setComparison(&g, nullptr);
        QCOMPARE(model.rowCount(), 7);
        QCOMPARE(model.commonTokens(), qint64(6));
        int differing = 0;
        for (int row = 0; row < model.rowCount(); ++row)
            differing += model.differs(row) ? 1 : 0;
        QCOMPARE(differing, 1);
        QCOMPARE(model.op(2), AlignOp::OnlySecond);
        QCOMPARE(model.index(2, GenerationModel::OriginalColumn).data(GenerationModel::TokenIdRole).toInt(), -1);
        QCOMPARE(model.index(2, GenerationModel::ConvertedColumn).data(GenerationModel::TokenIdRole).toInt(), 99);
        QCOMPARE(model.index(2, GenerationModel::PositionColumn).data().toString(), QStringLiteral("\u2013 | 2"));
        QCOMPARE(model.index(5, GenerationModel::PositionColumn).data().toString(), QStringLiteral("4 | 5"));
        QCOMPARE(model.index(5, GenerationModel::OriginalColumn).data(GenerationModel::TokenIdRole).toInt(), 14);
        QCOMPARE(model.index(5, GenerationModel::ConvertedColumn).data(GenerationModel::TokenIdRole).toInt(), 14);
        QVERIFY(!model.index(6, GenerationModel::ConvertedColumn).data(GenerationModel::DiffersRole).toBool());
    }
};

QTEST_MAIN(TestModels)
#include "tst_models.moc"
