#!/usr/bin/python3
"""numpy baseline for bench_decompositions: times numpy.linalg.svd and Gram + numpy.linalg.eigh on DIR/matrix.npy
(written by `bench_decompositions --out DIR`) and writes DIR/numpy_s.npy (all singular values, descending),
DIR/numpy_vt.npy (the top right singular vectors) and DIR/numpy_times.json.

Run it with Debian's /usr/bin/python3 (python3-numpy): a pyenv `python3` on PATH may have no numpy.
"""
import argparse
import json
import os
import platform
import sys
import time

import numpy as np


def blas_library():
    for name in ("libblas.so.3", "liblapack.so.3"):
        path = os.path.join("/usr/lib/x86_64-linux-gnu", name)
        if os.path.exists(path):
            yield os.path.realpath(path)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dir", help="directory with matrix.npy and ours_times.json")
    parser.add_argument("--dtype", choices=["float64", "float32"], default="float64",
                        help="precision of the full SVD (default float64: the accuracy reference)")
    args = parser.parse_args()

    m32 = np.load(os.path.join(args.dir, "matrix.npy"))
    ranks = [min(m32.shape) // 2]
    ours_path = os.path.join(args.dir, "ours_times.json")
    if os.path.exists(ours_path):
        with open(ours_path) as f:
            ranks = [int(k) for k in json.load(f).get("residual", {}).keys()] or ranks
    kmax = min(max(ranks), min(m32.shape))
    def load_average():
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])

    def clock():
        return time.perf_counter(), time.process_time()

    def since(start):
        wall, cpu = clock()
        return {"wall": wall - start[0], "cpu": cpu - start[1]}

    times = {"numpy_version": np.__version__, "blas": " + ".join(blas_library()) or "unknown",
             "python": platform.python_version(), "svd_dtype": args.dtype, "rows": m32.shape[0], "cols": m32.shape[1],
             "load_average_start": load_average()}

    print(f"numpy {np.__version__}: svd of {m32.shape[0]} x {m32.shape[1]} ({args.dtype}) ...", flush=True)
    m = m32.astype(args.dtype)
    start = clock()
    _, s, vt = np.linalg.svd(m, full_matrices=False)
    times["svd"] = since(start)
    print(f"  {times['svd']['wall']:.1f} s", flush=True)
    np.save(os.path.join(args.dir, "numpy_s.npy"), s.astype(np.float64))
    np.save(os.path.join(args.dir, "numpy_vt.npy"), np.ascontiguousarray(vt[:kmax].astype(np.float64)))
    del vt

    print("numpy: Gram (float64) + eigh ...", flush=True)
    md = m32.astype(np.float64)
    start = clock()
    g = md.T @ md if md.shape[0] >= md.shape[1] else md @ md.T
    w, _ = np.linalg.eigh(g)
    times["gram_eigh"] = since(start)
    print(f"  {times['gram_eigh']['wall']:.1f} s", flush=True)
    s_eigh = np.sqrt(np.maximum(w[::-1], 0.0))
    times["eigh_vs_svd_max_abs_over_s1"] = float(np.max(np.abs(s_eigh - s)) / s[0])

    times["load_average_end"] = load_average()
    with open(os.path.join(args.dir, "numpy_times.json"), "w") as f:
        json.dump(times, f, indent=2)
    print(f"wrote {os.path.join(args.dir, 'numpy_times.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
