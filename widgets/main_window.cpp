#include "main_window.h"

namespace mla {

MainWindow::MainWindow(QWidget* parent) : QMainWindow(parent)
{
    setWindowTitle(QStringLiteral("MLA Workbench"));
    resize(1280, 800);
}

} // namespace mla
