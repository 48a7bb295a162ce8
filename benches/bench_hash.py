"""SHA-256 of artifact files: `mlguard.engine.sha256_file[s]`, native (Rust, sha2 with SHA-NI) vs
hashlib (OpenSSL), on one big file and on many files in parallel.

Run: python benches/bench_hash.py [--quick]   (results go into docs/performance.md by hand)

Inputs are random bytes written to a temporary folder (about 2 GiB with the defaults, removed
afterwards) and read once before timing, so every figure is a page-cache (warm) figure. Prints
Markdown: the machine, then one table.

Rows:
- "read only": the same 1 MiB `readinto` loop with no hashing -- the I/O floor.
- "OpenSSL in memory": `hashlib.sha256().update()` over a 1 MiB buffer already in memory, what
  `openssl speed -evp sha256` measures: the hash's own ceiling on one core, without I/O.
- "sha256_file": one file, streamed (open, read 1 MiB at a time, hash), best of --runs.
- "sha256_files": --files files of --file-mib MiB, with 1 and 2 jobs (threads); GB/s over all bytes.
  Then --tiny files of 4 KiB (files/s): the per-file cost (open, read, close, thread hand-off).
"""
from __future__ import annotations

import argparse
import datetime
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from mlguard import engine
from mlguard.engine.pure.hash import BUF_SIZE
from timing import best_of

MIB = 1 << 20


def write_random(path: str, size: int) -> None:
    chunk = os.urandom(4 * MIB)
    salt = 0
    with open(path, "wb") as f:
        left = size
        while left:
            # a different block each time, so no two blocks of a file are identical
            salt += 1
            block = salt.to_bytes(8, "little") + chunk[8:]
            n = min(left, len(block))
            f.write(block[:n])
            left -= n


def read_only(path: str) -> None:
    buf = bytearray(BUF_SIZE)
    with open(path, "rb", buffering=0) as f:
        while f.readinto(buf):
            pass


def openssl_in_memory(total: int) -> None:
    block = os.urandom(MIB)
    h = hashlib.sha256()
    for _ in range(total // MIB):
        h.update(block)
    h.digest()


def machine() -> list[str]:
    cpu = "?"
    flags = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name") and cpu == "?":
                    cpu = line.split(":", 1)[1].strip()
                if line.startswith("flags") and not flags:
                    flags = line
    except OSError:
        pass
    sha_ni = "yes" if " sha_ni" in flags else ("no" if flags else "?")
    openssl = "?"
    if shutil.which("openssl"):
        openssl = subprocess.run(["openssl", "version"], capture_output=True, text=True).stdout.strip()
    import mlguard_rs
    so = Path(mlguard_rs.__file__)
    if so.name == "__init__.py":   # maturin's package layout: the .so sits beside it
        so = next(iter(so.parent.glob("*.so")), so)
    built = datetime.datetime.fromtimestamp(so.stat().st_mtime, datetime.timezone.utc)
    return [
        f"- date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC",
        f"- machine: {os.cpu_count()} cores ({cpu}), SHA extensions (sha_ni): {sha_ni}, "
        f"{platform.system()} {platform.release()}",
        f"- Python {platform.python_version()}, hashlib on {hashlib.sha256().name} from "
        f"{getattr(__import__('ssl'), 'OPENSSL_VERSION', '?')}; `openssl`: {openssl}",
        f"- engine: {engine.engine_status()}; native module built {built:%Y-%m-%d %H:%M} UTC",
        f"- load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}",
    ]


def row(what: str, input_: str, eng: str, jobs: str, seconds: float, size: int, files: int = 0) -> str:
    speed = f"{files / seconds:,.0f} files/s" if files else f"{size / seconds / 1e9:.2f} GB/s"
    return f"| {what} | {input_} | {eng} | {jobs} | {seconds * 1e3:.0f} ms | {speed} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="256 MiB file, 16 x 16 MiB files, 500 tiny files, 3 runs")
    parser.add_argument("--size-mib", type=int, default=1024, help="the single file's size (default 1024)")
    parser.add_argument("--files", type=int, default=64, help="number of files hashed in parallel (64)")
    parser.add_argument("--file-mib", type=int, default=16, help="size of each of those files (16)")
    parser.add_argument("--tiny", type=int, default=2000,
                        help="number of 4 KiB files, for the per-file cost (2000)")
    parser.add_argument("--runs", type=int, default=5, help="best of N (5)")
    parser.add_argument("--workdir", help="where to write the inputs (default: the temp folder)")
    args = parser.parse_args()
    if args.quick:
        args.size_mib, args.files, args.tiny, args.runs = 256, 16, 500, 3
    big_size = args.size_mib * MIB
    small_size = args.file_mib * MIB

    lines = ["SHA-256 benchmark (`benches/bench_hash.py"
             + (" --quick" if args.quick else "") + "`)", ""] + machine() + [""]
    lines += ["| what | input | engine | jobs | best time | throughput |",
              "| --- | --- | --- | --- | --- | --- |"]
    with tempfile.TemporaryDirectory(prefix="mlguard-bench-hash-", dir=args.workdir) as tmp:
        big = os.path.join(tmp, "big.bin")
        write_random(big, big_size)
        small = [os.path.join(tmp, f"f{i:03}.bin") for i in range(args.files)]
        for p in small:
            write_random(p, small_size)
        os.mkdir(os.path.join(tmp, "tiny"))
        tiny = [os.path.join(tmp, "tiny", f"t{i:05}.bin") for i in range(args.tiny)]
        for p in tiny:
            with open(p, "wb") as f:
                f.write(os.urandom(4096))
        for p in [big, *small]:          # into the page cache, and checked once
            read_only(p)
        expected = engine.sha256_file(big, engine="python")
        assert engine.sha256_file(big, engine="native") == expected
        big_label = f"1 file, {args.size_mib} MiB"
        many_label = f"{args.files} files × {args.file_mib} MiB"
        total_small = args.files * small_size

        lines.append(row("read only (1 MiB `readinto`, no hash)", big_label, "—", "1",
                         best_of(lambda: read_only(big), args.runs), big_size))
        lines.append(row("OpenSSL in memory (`hashlib.update` of 1 MiB blocks)", f"{args.size_mib} MiB",
                         "hashlib", "1", best_of(lambda: openssl_in_memory(big_size), args.runs), big_size))
        for eng, label in (("native", "native (Rust sha2)"), ("python", "python (hashlib = OpenSSL)")):
            seconds = best_of(lambda: engine.sha256_file(big, engine=eng), args.runs)
            lines.append(row("sha256_file", big_label, label, "1", seconds, big_size))
        for eng, label in (("native", "native (Rust sha2)"), ("python", "python (hashlib = OpenSSL)")):
            for jobs in (1, 2):
                seconds = best_of(lambda: engine.sha256_files(small, jobs=jobs, engine=eng), args.runs)
                lines.append(row("sha256_files", many_label, label, str(jobs), seconds, total_small))
        for eng, label in (("native", "native (Rust sha2)"), ("python", "python (hashlib = OpenSSL)")):
            for jobs in (1, 2):
                seconds = best_of(lambda: engine.sha256_files(tiny, jobs=jobs, engine=eng), args.runs)
                lines.append(row("sha256_files", f"{args.tiny:,} files × 4 KiB", label, str(jobs), seconds,
                                 4096 * args.tiny, files=args.tiny))
    lines += ["", f"- load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}"]
    print("\n".join(lines))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
