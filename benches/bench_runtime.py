"""Runtime-guard overhead: guarded vs plain loads of real checkpoints, and of small pickles.

Run: python benches/bench_runtime.py [--quick]   (results go into docs/performance.md by hand)
Inputs are generated in a temporary folder: a ~1 GB state dict (256 tensors), a 5,000-tensor state dict,
small pickles. Each guarded run starts with an empty verdict cache (the first load of a file in a process);
"cached" rows load the same file again. Plain and guarded runs alternate, median of the runs.
"""
from __future__ import annotations

import argparse
import os
import pickle
import statistics
import tempfile
import time

import mlguard
from mlguard import engine
from mlguard.runtime import guard


def median_seconds(fn, runs: int, before=None) -> float:
    times = []
    for _ in range(runs):
        if before:
            before()
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def compare(label: str, load, path: str, runs: int) -> list[str]:
    """End to end (plain vs guarded load, alternating), and the guard's own time: the scan and decision
    for that file with the loader replaced by a no-op, which a noisy machine cannot blur."""
    def empty_cache():
        guard.activate(guard.current())

    plain, guarded, own = [], [], []
    load()  # warm the page cache and torch
    for _ in range(runs):
        mlguard.unprotect()
        plain.append(median_seconds(load, 1))
        mlguard.protect()
        guarded.append(median_seconds(load, 1, before=empty_cache))
        own.append(median_seconds(lambda: guard.guarded("bench", path, lambda f: None), 1, before=empty_cache))
    mlguard.protect()
    cached = median_seconds(lambda: guard.guarded("bench", path, lambda f: None), runs)
    mlguard.unprotect()
    p, g, o = statistics.median(plain), statistics.median(guarded), statistics.median(own)
    return [f"| {label} | {p * 1e3:.1f} ms | {g * 1e3:.1f} ms ({(g - p) / p * 100:+.1f}%) | "
            f"{o * 1e3:.2f} ms ({o / p * 100:.2f}%) | {cached * 1e3:.3f} ms |"]


def state_dict(tensors: int, numel: int):
    import torch
    return {f"layer{i}.weight": torch.randn(numel) for i in range(tensors)}


def torch_rows(quick: bool, folder: str) -> list[str]:
    import torch
    big = os.path.join(folder, "big.pt")
    torch.save(state_dict(32 if quick else 256, (1 << 20)), big)  # 4 MiB float32 each: 1 GiB for 256
    many = os.path.join(folder, "many.pt")
    torch.save(state_dict(5_000, 16), many)
    gb = os.path.getsize(big) / 2**30
    runs = 5 if quick else 9
    rows = []
    n = 32 if quick else 256
    rows += compare(f"torch.load, {gb:.2f} GiB, {n} tensors", lambda: torch.load(big), big, runs)
    rows += compare(f"torch.load(mmap=True), {gb:.2f} GiB", lambda: torch.load(big, mmap=True), big, runs * 3)
    rows += compare("torch.load, 5,000 tensors", lambda: torch.load(many), many, runs)
    rows += compare("torch.load(weights_only=False), 5,000 tensors", lambda: torch.load(many, weights_only=False),
                    many, runs)
    return rows


def small_pickle_rows(quick: bool) -> list[str]:
    objects = {"dict of 10 ints": {str(i): i for i in range(10)},
               "list of 100 floats": [i * 0.5 for i in range(100)],
               "nested record": {"id": 1, "tags": ("a", "b"), "scores": [1.0, 2.0], "meta": {"ok": True}}}
    n = 20_000 if quick else 100_000
    rows = []
    for label, obj in objects.items():
        data = pickle.dumps(obj)
        loads = pickle.loads
        mlguard.unprotect()
        plain = median_seconds(lambda: [loads(data) for _ in range(n)], 3) / n
        mlguard.protect()
        guarded_loads = pickle.loads
        guarded = median_seconds(lambda: [guarded_loads(data) for _ in range(n)], 3) / n
        mlguard.unprotect()
        rows.append(f"| pickle.loads, {label} ({len(data)} B) | {plain * 1e6:.2f} µs | {guarded * 1e6:.2f} µs | "
                    f"{(guarded - plain) * 1e6:+.2f} µs |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller inputs, fewer runs")
    args = parser.parse_args()
    print(f"engine: {engine.engine_name()}, cpus: {os.cpu_count()}\n")
    with tempfile.TemporaryDirectory() as folder:
        print("| load | plain | guarded (end to end) | guard's own time | with a cached verdict |\n"
              "| --- | --- | --- | --- | --- |")
        print("\n".join(torch_rows(args.quick, folder)))
    print("\n| call | plain | guarded | overhead |\n| --- | --- | --- | --- |")
    print("\n".join(small_pickle_rows(args.quick)))


if __name__ == "__main__":
    main()
