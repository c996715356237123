#!/usr/bin/env python3
"""Independent re-implementation of llama2.c run.c encode()/decode(), standard library only.

The expected token ids hard-coded in tests/core/tokenizer/tst_llama2c_tokenizer.cpp were printed by this script:
    python3 tests/data/tokenizers/llama2c_encode_reference.py resources/demo/tok512.bin "Once upon a time" ...
It follows run.c line by line (the O(n^2) rescan after every merge, strict '>' so the leftmost pair wins ties,
byte fallback to byte + 3), not the C++ code under test.
"""
import struct
import sys


def load(path):
    data = open(path, "rb").read()
    (max_len,) = struct.unpack_from("<i", data, 0)
    off, pieces, scores = 4, [], []
    while off < len(data):
        score, length = struct.unpack_from("<fi", data, off)
        off += 8
        pieces.append(data[off:off + length])
        scores.append(score)
        off += length
    return pieces, scores


def encode(pieces, scores, text, bos):
    lookup = {}
    for i, p in enumerate(pieces):
        lookup.setdefault(p, i)
    raw = text.encode("utf-8")
    tokens = [1] if bos else []
    if raw:
        tokens.append(lookup[b" "])
    buf = b""
    for i, c in enumerate(raw):
        if (c & 0xC0) != 0x80:
            buf = b""
        buf += bytes([c])
        nxt = raw[i + 1] if i + 1 < len(raw) else 0
        if (nxt & 0xC0) == 0x80 and len(buf) < 4:
            continue
        if buf in lookup:
            tokens.append(lookup[buf])
        else:
            tokens.extend(b + 3 for b in buf)
        buf = b""
    while True:
        best_score, best_id, best_idx = -1e10, -1, -1
        for i in range(len(tokens) - 1):
            merged = pieces[tokens[i]] + pieces[tokens[i + 1]]
            if merged in lookup and scores[lookup[merged]] > best_score:
                best_score, best_id, best_idx = scores[lookup[merged]], lookup[merged], i
        if best_idx == -1:
            break
        tokens[best_idx:best_idx + 2] = [best_id]
    return tokens


def decode(pieces, prev, token):
    piece = pieces[token]
    if prev == 1 and piece[:1] == b" ":
        piece = piece[1:]
    if len(piece) == 6 and piece.startswith(b"<0x") and piece.endswith(b">"):
        return bytes([int(piece[3:5], 16)])
    return piece


if __name__ == "__main__":
    pieces, scores = load(sys.argv[1])
    for text in sys.argv[2:]:
        ids = encode(pieces, scores, text, True)
        out = b"".join(decode(pieces, p, t) for p, t in zip(ids, ids[1:]))
        assert out == text.encode("utf-8"), (out, text)
        print(repr(text), "->", "{" + ", ".join(map(str, ids)) + "}")
