#!/usr/bin/python3
"""Reads an MLA Workbench session with h5py alone (no code of ours) and compares it with `analyze --json` output.

Usage: check_session_h5py.py SESSION.h5 ANALYZE.json
Exit status 0 when every compared value is identical (float64 bit for bit), 1 with one line per difference otherwise,
77 when h5py or numpy is missing. The layout it relies on is docs/session-format.md.
"""
import json
import sys

try:
    import h5py
    import numpy as np
except ImportError as e:  # the C++ test skips on this status
    print(f"h5py/numpy not available: {e}")
    sys.exit(77)


def text(value):
    """Session text is fixed-length UTF-8, which h5py returns as bytes."""
    return value.decode("utf-8") if isinstance(value, bytes) else value


def same(name, stored, expected, problems):
    a = np.asarray(stored)
    b = np.asarray(expected, dtype=a.dtype if a.dtype.kind in "iu" else np.float64)
    if a.shape != b.shape:
        problems.append(f"{name}: shape {a.shape} in the session, {b.shape} in the JSON")
    elif a.dtype.kind == "f" and not np.array_equal(a.view(np.uint64), b.astype(np.float64).view(np.uint64)):
        problems.append(f"{name}: values differ (max |diff| {np.max(np.abs(a - b))})")
    elif a.dtype.kind != "f" and not np.array_equal(a, b):
        problems.append(f"{name}: values differ")


def main():
    session_path, json_path = sys.argv[1], sys.argv[2]
    with open(json_path) as f:
        expected = json.load(f)
    problems = []
    with h5py.File(session_path, "r") as f:
        if text(f.attrs.get("format")) != "mla-workbench-session":
            problems.append(f"format attribute is {f.attrs.get('format')!r}")
        if int(f.attrs.get("schema_version", -1)) != 6:
            problems.append(f"schema_version is {f.attrs.get('schema_version')!r}")
        a = f["analysis"]
        layers = int(a.attrs["layers"])
        for key in ["rope_scores", "rope_scores_q", "rotation_loss", "query_pair_norms", "key_pair_norms"]:
            ds = a[key]
            if ds.dtype != np.float64:
                problems.append(f"{key}: dtype {ds.dtype}, expected float64")
            if "units" not in ds.attrs:
                problems.append(f"{key}: no units attribute")
            same(key, ds[()], expected[key], problems)
        for l in range(layers):
            name = f"layer_{l:03d}"
            same(f"kept_pairs/{name}", a["kept_pairs"][name][()], expected["kept_pairs"][l], problems)
            for kind in ["joint", "key", "value"]:
                same(f"spectra/weight/{kind}/{name}", a["spectra/weight"][kind][name][()], expected["spectra"][kind][l], problems)
                same(f"error_curves/weight/{kind}/{name}", a["error_curves/weight"][kind][name][()],
                     expected["error_curves"][kind][l], problems)
                if "spectra_activation" in expected:
                    same(f"spectra/activation/{kind}/{name}", a["spectra/activation"][kind][name][()],
                         expected["spectra_activation"][kind][l], problems)
        c = f["calibration"]
        ids, offsets = c["ids"][()], c["sequence_offsets"][()]
        if len(ids) != expected["calibration"]["tokens"] or int(c.attrs["token_count"]) != expected["calibration"]["tokens"]:
            problems.append(f"calibration: {len(ids)} ids, the JSON says {expected['calibration']['tokens']} tokens")
        if len(offsets) != expected["calibration"]["sequences"] + 1:
            problems.append("calibration: sequence_offsets does not match the sequence count")
        if text(c.attrs["description"]) != expected["calibration"]["description"]:
            problems.append("calibration: description differs")
        m = f["model"]
        if text(m.attrs["source_path"]) != expected["model"]:
            problems.append(f"model: source_path {m.attrs['source_path']!r}, the JSON says {expected['model']!r}")
        config = json.loads(text(m.attrs["config_json"]))
        if config["num_hidden_layers"] != layers or int(m.attrs["num_hidden_layers"]) != layers:
            problems.append("model: layer count disagrees with the analysis")
        settings = json.loads(text(f["analysis/settings"].attrs["json"]))
        if settings["rope_strategy"] != expected["rope_strategy"]:
            problems.append("analysis/settings: rope_strategy differs from the JSON")
    for p in problems:
        print(p)
    if problems:
        return 1
    print(f"ok: {layers} layers of scores, kept pairs, spectra and error curves identical to analyze --json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
