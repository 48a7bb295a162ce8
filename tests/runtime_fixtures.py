"""Artifacts for the runtime-guard tests. Every hostile payload creates a canary file when it runs: tests
assert the canary is absent after the refused load. Nothing here is loaded outside the guard."""
from __future__ import annotations

import io
import os
import pickle
from pathlib import Path

from pickle_asm import Asm, call


class Canary:
    """Pickles as ``os.system('touch <path>')``."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return os.system, (f"touch '{self.path}'",)


class Harmless:
    """A class no allowlist knows: constructing it is policy-breaking (high) but does nothing."""

    def __init__(self, value=0):
        self.value = value

    def __reduce__(self):
        return Harmless, (self.value,)

    def __eq__(self, other):
        return isinstance(other, Harmless) and other.value == self.value


def hostile_pickles(canary: Path) -> dict[str, bytes]:
    """Raw pickles, one per technique, each creating ``canary`` when unpickled."""
    cmd = f"touch '{canary}'"
    out = {f"os.system-protocol{p}": pickle.dumps(Canary(canary), protocol=p) for p in (0, 2, 4, 5)}
    out["subprocess.getoutput"] = call("subprocess", "getoutput", cmd)
    out["exec"] = call("builtins", "exec", f"import os; os.system({cmd!r})")
    out["dotted-traversal"] = call("logging", "os.system", cmd)
    memo = Asm(4).str("posix").put(0).str("system").put(1).op(pickle.POP).op(pickle.POP)
    out["memo-stack-global"] = memo.get(0).get(1).op(pickle.STACK_GLOBAL).call1(lambda a: a.str(cmd)).stop()
    inner = pickle.dumps(Canary(canary), protocol=2)
    out["embedded-pickle"] = Asm(4).stack_global("pickle", "loads").call1(lambda a: a.bytes_(inner)).stop()
    out["after-benign-prefix"] = _tuple_with(pickle.dumps(Canary(canary), protocol=4))
    return out


def _tuple_with(payload: bytes) -> bytes:
    """``(list(range(50_000)), <payload>)``: the call comes after 50k benign opcodes."""
    body = pickle.dumps(list(range(50_000)), protocol=4)[2:-1]  # drop PROTO and STOP
    inner = payload[2:-1]
    if inner.startswith(pickle.FRAME):
        inner = inner[9:]
    if body.startswith(pickle.FRAME):
        body = body[9:]
    return pickle.PROTO + b"\x04" + body + inner + pickle.TUPLE2 + pickle.STOP


def torch_checkpoints(directory: Path, canary: Path) -> dict[str, Path]:
    """Hostile torch files: the payload inside a state dict, zip and legacy formats."""
    import torch
    out = {}
    for name, zip_format in (("zip", True), ("legacy", False)):
        path = directory / f"hostile-{name}.pt"
        torch.save({"weight": torch.zeros(2), "hook": Canary(canary)}, path,
                   _use_new_zipfile_serialization=zip_format)
        out[name] = path
    return out


def benign_training_checkpoint():
    """What a real training loop saves: model, optimiser, scheduler state, argparse args, paths, RNG state."""
    import argparse
    import pathlib
    import torch
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.randn(3, 4)).sum().backward()
    opt.step()
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=10)
    return {
        "epoch": 3, "model": model, "state_dict": model.state_dict(), "optimizer": opt.state_dict(),
        "scheduler": sched.state_dict(), "args": argparse.Namespace(lr=1e-3, data=pathlib.Path("/data/train")),
        "out_dir": pathlib.PurePosixPath("runs/exp1"), "rng": torch.get_rng_state(), "best": 0.91,
    }


def same(a, b) -> bool:
    """Deep equality that understands tensors, arrays and modules."""
    import numpy as np
    try:
        import torch
    except ImportError:  # pragma: no cover
        torch = None
    if torch is not None and isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if torch is not None and isinstance(a, torch.nn.Module):
        return type(a) is type(b) and same(a.state_dict(), b.state_dict())
    if isinstance(a, np.ndarray):
        return isinstance(b, np.ndarray) and a.dtype == b.dtype and np.array_equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b


class NonSeekable(io.RawIOBase):
    """A pipe-like stream: readable, not seekable."""

    def __init__(self, data: bytes):
        self._data = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        chunk = self._data.read(len(b))
        b[:len(chunk)] = chunk
        return len(chunk)
