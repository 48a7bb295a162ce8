"""Kernel and end-to-end throughput: native (Rust) vs pure-Python reference engine.

Run: python benches/bench_kernels.py [--quick]   (results go into docs/performance.md by hand)
Inputs are generated here: a large generic pickle, the data.pkl of a real torch checkpoint, and a tree of
real torch checkpoints for an end-to-end `scan_tree`.
"""
from __future__ import annotations

import argparse
import os
import pickle
import tempfile
import zipfile

from mlguard import engine, scan_tree
from mlguard.config import Config
from timing import best_of


def generic_pickle(n: int) -> bytes:
    rows = [{"id": i, "name": f"token-{i}", "score": i * 0.5, "tags": ("a", "b"), "blob": b"\x00" * 8}
            for i in range(n)]
    return pickle.dumps(rows, protocol=4)


def torch_data_pkl(layers: int) -> bytes:
    import io

    import torch
    state = {f"layer{i}.{kind}": torch.zeros(2) for i in range(layers) for kind in ("weight", "bias")}
    buf = io.BytesIO()
    torch.save(state, buf)
    with zipfile.ZipFile(io.BytesIO(buf.getvalue())) as zf:
        name = next(n for n in zf.namelist() if n.endswith("data.pkl"))
        return zf.read(name)


def kernel_rows(quick: bool) -> list[str]:
    inputs = {"generic pickle": generic_pickle(20_000 if quick else 200_000),
              "torch data.pkl": torch_data_pkl(500 if quick else 5_000)}
    rows = []
    for label, data in inputs.items():
        mb = len(data) / 1e6
        for eng, compact in (("native", False), ("native", True), ("python", False)):
            seconds = best_of(lambda: engine.pickle_facts(data, engine=eng, compact=compact), 1 if eng == "python" else 5)
            ops = sum(engine.pickle_facts(data, engine=eng)["opcode_counts"].values())
            mode = f"{eng}, compact" if compact else eng
            rows.append(f"| pickle_facts | {label} ({mb:.1f} MB, {ops:,} opcodes) | {mode} | "
                        f"{seconds * 1e3:.1f} ms | {mb / seconds:.1f} MB/s |")
    return rows


def tree_rows(quick: bool) -> list[str]:
    import torch
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        count = 20 if quick else 100
        model = torch.nn.Sequential(*[torch.nn.Linear(256, 256) for _ in range(8)])
        for i in range(count):
            torch.save(model.state_dict(), os.path.join(tmp, f"ckpt{i:03}.pt"))
        total = sum(os.path.getsize(os.path.join(tmp, f)) for f in os.listdir(tmp)) / 1e6
        for eng in ("native", "python"):
            os.environ["MLGUARD_ENGINE"] = eng
            seconds = best_of(lambda: scan_tree(tmp, Config()), 3)
            rows.append(f"| scan_tree | {count} torch checkpoints ({total:.0f} MB on disk) | {eng} | "
                        f"{seconds * 1e3:.0f} ms | {count / seconds:.0f} files/s |")
        os.environ.pop("MLGUARD_ENGINE")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller inputs")
    args = parser.parse_args()
    print(f"engine: {engine.engine_status()}; cpus: {os.cpu_count()}")
    print("| what | input | engine | best time | throughput |")
    print("| --- | --- | --- | --- | --- |")
    for row in kernel_rows(args.quick) + tree_rows(args.quick):
        print(row)


if __name__ == "__main__":
    main()
