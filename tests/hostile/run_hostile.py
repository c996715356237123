#!/usr/bin/env python3
"""Runs every hostile-input case (make_cases.py) against the CLI under a time and memory limit and checks that it
held: an allowed exit code (0, or 1 with a clear "error:" message naming the problem), never a signal, never a hang,
every input file byte-identical afterwards and nothing leaked into an output. Prints the count tried and held.

    tests/hostile/run_hostile.py PATH/TO/mla-workbench-cli [--work DIR] [--seconds 60] [--memory-mib 2048] [--only a,b]

Under AddressSanitizer (whose shadow memory cannot live under an address-space limit) the memory limit is left off.
"""
import argparse
import stat
import hashlib
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def sanitized(cli):
    with open(cli, "rb") as f:
        return b"__asan_init" in f.read()


def digest_tree(root, skip):
    """sha256 of every regular file under root (symbolic links recorded as their target, FIFOs and devices by kind)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, root)
            if rel in skip or rel == "case.json":
                continue
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode):
                out[rel] = "link:" + os.readlink(path)
            elif stat.S_ISREG(st.st_mode):
                h = hashlib.sha256()
                with open(path, "rb") as f:
                    for block in iter(lambda: f.read(1 << 20), b""):
                        h.update(block)
                out[rel] = h.hexdigest()
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = "dir"
            else:
                out[rel] = "special:%o" % stat.S_IFMT(st.st_mode)
    return out


def setup(case_dir, spec):
    s = spec.get("setup", {})
    for rel in s.get("fifo", []):
        os.mkfifo(os.path.join(case_dir, rel))
    for rel in s.get("mknod_null", []):
        path = os.path.join(case_dir, rel)
        try:
            os.mknod(path, 0o666 | 0o020000, os.makedev(1, 3))
        except PermissionError:
            os.mkfifo(path)  # not root: a FIFO is the same kind of "never replace" target
    for rel, target in s.get("symlink", {}).items():
        os.symlink(target.replace("{case}", case_dir), os.path.join(case_dir, rel))


def run_case(cli, case_dir, spec, seconds, memory):
    args = [a.replace("{case}", case_dir) for a in spec["args"]]
    skip = set(spec.get("mutable", []))
    before = digest_tree(case_dir, skip)

    def limits():
        if memory:
            resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

    limit = min(seconds, spec.get("max_seconds", seconds))
    env = dict(os.environ, OMP_NUM_THREADS="1")
    if not memory:
        # AddressSanitizer: let our SIGBUS handler (a mapped input that shrank) take the signal, as in a plain build.
        env["ASAN_OPTIONS"] = (env.get("ASAN_OPTIONS", "") + ":handle_sigbus=0:allow_user_segv_handler=1").lstrip(":")
    start = time.monotonic()
    proc = subprocess.Popen([cli] + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                            preexec_fn=limits, env=env)
    during = spec.get("during")
    timer = None
    if during:
        def shrink():
            with open(os.path.join(case_dir, during["truncate"]), "r+b") as f:
                f.truncate(during["to"])
        timer = threading.Timer(during["after"], shrink)
        timer.start()
    try:
        out, err = proc.communicate(timeout=limit)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        return ["hung: still running after %d s" % limit]
    finally:
        if timer:
            timer.cancel()
    elapsed = time.monotonic() - start
    err = err.decode(errors="replace")
    problems = []
    rc = proc.returncode
    if rc < 0:
        problems.append("killed by signal %s" % signal.Signals(-rc).name)
    elif rc not in spec["exit"]:
        problems.append("exit code %d, expected one of %s" % (rc, spec["exit"]))
    if rc == 1 and "error:" not in err:
        problems.append("exit 1 without an error message")
    wanted = spec.get("stderr") or (spec.get("stderr_if_failed") if rc != 0 else None)
    if wanted and rc != 0:
        alternatives = wanted if isinstance(wanted, list) else [wanted]
        if not any(w in err for w in alternatives):
            problems.append("the message does not mention %s" % " or ".join(repr(w) for w in alternatives))
    after = digest_tree(case_dir, skip)
    for rel, h in before.items():
        if after.get(rel) != h:
            problems.append("input %s changed (%s -> %s)" % (rel, h[:24], str(after.get(rel))[:24]))
    for rel in spec.get("absent", []):
        if os.path.lexists(os.path.join(case_dir, rel)):
            problems.append("%s exists (leaked into the output)" % rel)
    if problems:
        problems.append("stderr: " + err.strip()[-600:])
    return problems, rc, elapsed


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("cli")
    parser.add_argument("--work", help="folder for the generated cases (default: a temporary folder)")
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--memory-mib", type=int, default=2048)
    parser.add_argument("--only")
    args = parser.parse_args()
    cli = os.path.abspath(args.cli)
    work = args.work or tempfile.mkdtemp(prefix="mla-hostile-")
    shutil.rmtree(work, ignore_errors=True)
    make = [sys.executable, os.path.join(HERE, "make_cases.py"), work, "--cli", cli]
    if args.only:
        make += ["--only", args.only]
    subprocess.run(make, check=True)
    asan = sanitized(cli)
    memory = 0 if asan else args.memory_mib << 20
    print("run_hostile: %s, limits %d s%s" % (cli, args.seconds,
                                            ", no memory limit (AddressSanitizer)" if asan else ", %d MiB" % args.memory_mib))
    tried = held = skipped = 0
    for name in sorted(os.listdir(work)):
        case_dir = os.path.join(work, name)
        spec_path = os.path.join(case_dir, "case.json")
        if not os.path.isfile(spec_path):
            continue
        with open(spec_path) as f:
            spec = json.load(f)
        if asan and spec.get("skip_under_asan"):
            skipped += 1
            print("skip %-40s %s" % (name, spec["skip_under_asan"]))
            continue
        setup(case_dir, spec)
        tried += 1
        result = run_case(cli, case_dir, spec, args.seconds, memory)
        if isinstance(result, list):
            problems, rc, elapsed = result, None, float(args.seconds)
        else:
            problems, rc, elapsed = result
        if problems:
            print("FAIL %-40s %s: %s" % (name, spec["class"], spec["why"]))
            for p in problems:
                print("     " + p)
        else:
            held += 1
            print("ok   %-40s exit %s in %.1f s (%s)" % (name, rc, elapsed, spec["class"]))
    print("hostile inputs: %d tried, %d held" % (tried, held) + (", %d skipped" % skipped if skipped else ""))
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if tried > 0 and held == tried else 1


if __name__ == "__main__":
    sys.exit(main())
