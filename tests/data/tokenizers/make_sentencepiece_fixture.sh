#!/usr/bin/env bash
# Regenerates tiny_bpe.model, the SentencePiece fixture of tests/core/tokenizer/tst_sentencepiece_tokenizer.cpp:
# a 384-piece BPE model with byte fallback trained on sentencepiece_corpus.txt. Uses the trainer library that
# libsentencepiece-dev already ships (libsentencepiece_train.so), so no extra package is needed.
# Identity normalization and kept whitespace make decode(encode(x)) == x exact, which the tests rely on.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

cat > "$work/train.cpp" <<'CPP'
#include <sentencepiece_trainer.h>
#include <iostream>
int main(int argc, char** argv)
{
    if (argc != 3) return 2;
    const std::string args = std::string("--input=") + argv[1] + " --model_prefix=" + argv[2]
        + " --model_type=bpe --vocab_size=384 --byte_fallback=true --character_coverage=1.0"
          " --normalization_rule_name=identity --remove_extra_whitespaces=false --split_digits=true"
          " --num_threads=1 --minloglevel=1";
    const auto status = sentencepiece::SentencePieceTrainer::Train(args);
    if (!status.ok()) { std::cerr << status.ToString() << "\n"; return 1; }
    return 0;
}
CPP
c++ -std=c++17 -O1 -o "$work/train" "$work/train.cpp" -lsentencepiece_train -lsentencepiece
# Relative paths: the trainer records them in the model, which then stays byte-identical from run to run.
cp "$here/sentencepiece_corpus.txt" "$work/corpus.txt"
(cd "$work" && ./train corpus.txt tiny_bpe)
cp "$work/tiny_bpe.model" "$here/tiny_bpe.model"
echo "wrote $here/tiny_bpe.model ($(stat -c %s "$here/tiny_bpe.model") bytes)"
