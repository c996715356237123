#pragma once

#include <QWidget>

class QComboBox;
class QSpinBox;
class QTableView;

namespace mla {

class ModelInfoModel;
class Workbench;

// Architecture, sizes and the KV cache of the open model, with the context length, batch and cache format that the
// cache size (here and in the preview's memory plot) is computed for.
class ModelPanel : public QWidget {
    Q_OBJECT
public:
    explicit ModelPanel(Workbench* workbench, QWidget* parent = nullptr);

    ModelInfoModel* infoModel() const { return m_info; }
    QSpinBox* contextSpin() const { return m_context; }
    QSpinBox* batchSpin() const { return m_batch; }
    QComboBox* formatCombo() const { return m_format; }

private:
    void refresh();
    void refreshCache();

    Workbench* m_workbench;
    ModelInfoModel* m_info = nullptr;
    QTableView* m_view = nullptr;
    QSpinBox* m_context = nullptr;
    QSpinBox* m_batch = nullptr;
    QComboBox* m_format = nullptr;
};

} // namespace mla
