#pragma once

#include "arguments.h"

namespace mla::cli {

// Each command's spec (usage, options, entry point); main.cpp lists them in one table.
CommandSpec infoCommand();
CommandSpec generateCommand();
CommandSpec evalCommand();
CommandSpec synthCommand();
CommandSpec analyzeCommand();
CommandSpec convertCommand();
CommandSpec sessionCommand();
CommandSpec exportCommand();
CommandSpec recoverCommand();

} // namespace mla::cli
