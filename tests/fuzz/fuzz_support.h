#pragma once

// Shared pieces of the fuzz targets: a scratch file for parsers that only take a path, and a short run of a model
// that loaded, so that a file which passes the readers is also pushed through the engine as `generate` would.

#include "model/model.h"
#include "tokenizer/tokenizer.h"

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>

namespace mla::fuzz {

// Writes `data` to a file called `name` in this process's scratch folder (created on first use, removed at exit) and
// returns its path. The same name is overwritten on the next call.
std::filesystem::path writeScratchFile(const std::string& name, const std::uint8_t* data, std::size_t size);
std::filesystem::path scratchDir();

// Runs one token through a small model (the forward pass of `generate`), reading every weight once. Models whose
// weights exceed a few MiB are skipped: a fuzzed file cannot hold more than that anyway.
void exerciseModel(const Model& model);

// Encodes a few fixed texts and `extraText`, decodes the results and every piece of the vocabulary (up to a bound).
void exerciseTokenizer(const Tokenizer& tokenizer, const std::string& extraText);

} // namespace mla::fuzz

// Each target defines this (the libFuzzer entry point).
extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size);
