// The headers every test parses: precompiled once for all core and app tests (tests/CMakeLists.txt). Parsing them
// is most of a test file's compile time (QtTest alone is about half), so the test suite builds much faster with them
// precompiled. External headers only, so that editing a project header rebuilds no more than it did.
#pragma once

#include <QtTest>
#include <QProcess>

#include <Eigen/Dense>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <vector>

// Last: it redefines Qt Test's main macro for the batched executables (every user of this header is one).
#include "common/test_batch.h"
