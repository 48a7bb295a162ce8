#!/usr/bin/env python
"""Generate the ``safe:`` section of ``mlguard/rules/pickle_globals.yaml`` from the installed libraries.

    python scripts/gen_pickle_allowlist.py              # rewrite the safe section in place
    python scripts/gen_pickle_allowlist.py --output F   # write the whole file to F instead
    python scripts/gen_pickle_allowlist.py --check      # exit 1 when the file is not what would be written

Two sources, merged:

* an empirical corpus: benign artifacts made here, in memory, by the real libraries (``torch.save`` of
  state dicts, checkpoints and whole modules, numpy/pandas/scipy objects, every scikit-learn estimator
  fitted on tiny data, joblib dumps, xgboost/lightgbm models). Their globals are collected with
  :mod:`pickletools` -- the artifacts are never loaded -- and every one must be allowlisted;
* introspected families, so that artifacts outside the corpus also pass: torch ``_utils._rebuild_*``,
  storages, dtypes and other by-name constants, every concrete ``torch.nn.modules`` class, optimizers and
  LR schedulers; numpy (2.x ``numpy._core`` and 1.x ``numpy.core`` paths) reconstructors, dtype and
  scalar classes, ufuncs, random generators; scipy.sparse classes; every ``sklearn.utils.all_estimators()``
  class and the helper classes fitted estimators hold; pandas containers, internals and unpickle helpers.

Every entry is the name pickle writes (``module.qualname``, found by pickling the object by reference),
plus older import paths that still resolve to the same object (numpy 1.x, scipy and pandas module moves).
An entry is written only if it imports to a class, a callable or a by-name constant (torch dtypes,
layouts, ...) -- never a module object -- and if every (module, name) split CPython could import gives that
same object. Names covered by ``dangerous`` or ``dangerous_modules`` of the same file (also through a
dotted walk, or by resolving to something defined in a dangerous module), or listed in ``EXCLUDED`` below,
are refused with a warning on stderr.

Output is deterministic: one block per family, in ``FAMILIES`` order, each headed by the versions it was
generated from; an entry goes to the first family that produced it, entries are sorted within a block.
The rest of the YAML file is preserved byte for byte. A block of an optional library that is not
installed (xgboost, lightgbm) is carried over unchanged from the existing file.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib
import inspect
import io
import os
import pickle
import pickletools
import platform
import re
import sys
import types
import warnings
import zipfile
from pathlib import Path
from typing import Callable, Iterable, Iterator

import yaml

ROOT = Path(__file__).resolve().parents[1]
YAML_PATH = ROOT / "mlguard" / "rules" / "pickle_globals.yaml"

CORE = ("torch", "numpy", "scipy", "sklearn", "pandas", "joblib")
OPTIONAL = ("xgboost", "lightgbm")
FAMILIES = ("stdlib",) + CORE + OPTIONAL
DIST_NAMES = {"sklearn": "scikit-learn"}

# Names that real artifacts may contain but that must stay off the allowlist: they turn their
# arguments into code, files or imports. Refused with a warning whenever a family produces them.
EXCLUDED = {
    "builtins.getattr": "attribute lookup trampoline (pickled for bound methods, e.g. zoneinfo.ZoneInfo._unpickle)",
    "numpy.core._ufunc_reconstruct": "imports an arbitrary module and returns any attribute (numpy 1.x ufunc pickles)",
    "numpy._core._ufunc_reconstruct": "imports an arbitrary module and returns any attribute",
    "joblib.numpy_pickle_compat.NDArrayWrapper":
        "old joblib format: np.load(allow_pickle=True) of a path named in the stream",
    "joblib.numpy_pickle_compat.ZNDArrayWrapper": "old joblib format: reads a file path named in the stream",
    "torch.storage._load_from_bytes": "nested torch.load (pickle.dumps of a tensor)",
}

# Stdlib data types: a fixed list (reviewed by hand), each resolved and checked like every other entry.
STDLIB = {
    "builtins.set": "set literal",
    "builtins.frozenset": "frozenset literal",
    "builtins.complex": "complex numbers",
    "builtins.bytearray": "bytearray values (protocol < 5)",
    "builtins.slice": "slice objects in indexing metadata",
    "builtins.list": "list subclass reconstruction",
    "builtins.dict": "dict subclass reconstruction",
    "builtins.tuple": "tuple subclass reconstruction",
    "builtins.object": "copyreg._reconstructor base",
    "builtins.int": "int subclass reconstruction",
    "builtins.float": "float subclass reconstruction",
    "builtins.str": "str subclass reconstruction",
    "builtins.bool": "bool values in old protocols",
    "builtins.range": "range objects",
    "collections.OrderedDict": "state_dict containers",
    "collections.defaultdict": "defaultdict containers",
    "collections.Counter": "Counter containers",
    "collections.deque": "deque containers",
    "copyreg._reconstructor": "protocol 0/1 reconstruction of plain objects",
    "copyreg.__newobj__": "protocol 2 object creation helper",
    "_codecs.encode": "bytes encoded in protocol 0-2 streams",
    "datetime.datetime": "timestamps",
    "datetime.date": "dates",
    "datetime.time": "times",
    "datetime.timedelta": "durations",
    "datetime.timezone": "time zones",
    "zoneinfo.ZoneInfo": "IANA time zones (tz-aware pandas data)",
    "decimal.Decimal": "decimal numbers",
    "fractions.Fraction": "fractions",
    "argparse.Namespace": "training arguments saved in checkpoints",
    "pathlib.PurePosixPath": "paths in configs",
    "pathlib.PosixPath": "paths in configs",
    "pathlib.PureWindowsPath": "paths in configs",
    "pathlib.WindowsPath": "paths in configs",
    "uuid.UUID": "identifiers",
    "builtins.bytes": "empty bytes in protocol < 3 streams",
}

_STRING_OPS = {"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE",
               "SHORT_BINSTRING", "BINSTRING", "STRING"}


def warn(msg: str) -> None:
    print(f"gen_pickle_allowlist: warning: {msg}", file=sys.stderr)


# --------------------------------------------------------------------------------------------------
# Reading pickles without loading them
# --------------------------------------------------------------------------------------------------

def pickle_globals(data: bytes, pickles: int = 1) -> list[tuple[str, str]]:
    """Every (module, name) imported by the first ``pickles`` pickles in ``data``, read with pickletools
    (never executed). Legacy ``torch.save`` writes five pickles, then raw storage bytes.

    Operands of STACK_GLOBAL are the two strings pushed just before it, directly or through the memo,
    as CPython's pickler writes them.
    """
    found: list[tuple[str, str]] = []
    stream = io.BytesIO(data)
    for _ in range(pickles):
        memo: dict = {}
        pushed: list = []
        for op, arg, _pos in pickletools.genops(stream):
            name = op.name
            if name in ("GLOBAL", "INST"):
                module, _, attr = arg.partition(" ")
                found.append((module, attr))
                pushed.append(None)
            elif name == "STACK_GLOBAL":
                module, attr = pushed[-2], pushed[-1]
                if not isinstance(module, str) or not isinstance(attr, str):
                    raise ValueError("STACK_GLOBAL operands are not literal strings")
                found.append((module, attr))
                pushed.append(None)
            elif name in _STRING_OPS:
                pushed.append(arg if isinstance(arg, str) else arg.decode("latin-1"))
            elif name == "MEMOIZE":
                memo[len(memo)] = pushed[-1] if pushed else None
            elif name in ("PUT", "BINPUT", "LONG_BINPUT"):
                memo[arg] = pushed[-1] if pushed else None
            elif name in ("GET", "BINGET", "LONG_BINGET"):
                pushed.append(memo.get(arg))
            elif name in ("EXT1", "EXT2", "EXT4"):
                raise ValueError("extension-registry opcode in a benign artifact")
            else:
                pushed.append(None)
    return found


def torch_save_globals(obj, **kwargs) -> list[tuple[str, str]]:
    import torch

    buf = io.BytesIO()
    torch.save(obj, buf, **kwargs)
    data = buf.getvalue()
    if data[:2] != b"PK":
        return pickle_globals(data, pickles=5)  # magic number, protocol, sys info, object, storage keys
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return [g for member in sorted(zf.namelist()) if member.endswith(".pkl")
                for g in pickle_globals(zf.read(member))]


def dumps_globals(obj, protocols: Iterable[int] = (2, 5)) -> list[tuple[str, str]]:
    return [g for p in protocols for g in pickle_globals(pickle.dumps(obj, protocol=p))]


# --------------------------------------------------------------------------------------------------
# Names, resolution and checks
# --------------------------------------------------------------------------------------------------

class Rules:
    """The deny lists and module aliases of the YAML file (the part this script never writes)."""

    def __init__(self, data: dict):
        self.aliases = dict(data.get("module_aliases") or {})
        self.dangerous = frozenset(data.get("dangerous") or ())
        self.dangerous_modules = frozenset(data.get("dangerous_modules") or ())

    def normalise(self, module: str) -> str:
        head, dot, rest = module.partition(".")
        return self.aliases.get(head, head) + dot + rest

    def _under(self, dotted: str) -> bool:
        parts = dotted.split(".")
        return any(".".join(parts[:i]) in self.dangerous_modules for i in range(1, len(parts) + 1))

    def under_dangerous(self, module: str) -> bool:
        """Whether ``module`` (after the aliases: posix is os) is or is inside a dangerous_modules entry."""
        return self._under(self.normalise(module))

    def denied(self, full: str) -> str | None:
        """Why ``full`` may not be allowlisted, or None."""
        if full in EXCLUDED:
            return f"excluded: {EXCLUDED[full]}"
        if full in self.dangerous:
            return "listed in dangerous"
        if self._under(full):
            return "inside a dangerous_modules entry"
        parts = full.split(".")
        for i in range(1, len(parts) - 1):  # dotted-name walks: ('a', 'b.os.system') is os.system
            chain = ".".join(parts[i:])
            if chain in self.dangerous:
                return f"reaches {chain} (dangerous) by a dotted name"
        return None


def resolve_all(full: str, with_path: bool = False) -> list:
    """Every (module, object) that an import of ``full`` can give, one per importable module prefix
    (with ``with_path``: (module, object, [every object walked through, the module first])).

    CPython's find_class imports the module, then walks the dotted name (protocol >= 4).
    """
    parts = full.split(".")
    out = []
    for i in range(len(parts) - 1, 0, -1):
        module = ".".join(parts[:i])
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                obj = importlib.import_module(module)
                path = [obj]
                for attr in parts[i:]:
                    obj = getattr(obj, attr)
                    path.append(obj)
        except Exception:
            continue
        out.append((module, obj, path) if with_path else (module, obj))
    return out


def _constant_types() -> tuple:
    try:
        import torch
    except ImportError:
        return ()
    return (torch.dtype, torch.layout, torch.memory_format, torch.qscheme)


def kind_of(obj) -> str | None:
    """``class``, ``callable`` or ``constant`` (pickled by name), or None when it may not be listed."""
    if isinstance(obj, types.ModuleType):
        return None
    if isinstance(obj, type):
        return "class"
    if isinstance(obj, _constant_types()):
        return "constant"
    try:
        if isinstance(obj.__reduce_ex__(4), str):
            return "constant"
    except Exception:
        pass
    if callable(obj):
        return "callable"
    return None


def check(full: str, rules: Rules) -> str | None:
    """Why ``full`` cannot be an entry, or None when it can."""
    why = rules.denied(full)
    if why:
        return why
    resolved = resolve_all(full, with_path=True)
    if not resolved:
        return "does not import"
    for _module, obj, path in resolved:  # ('torch.serialization', 'os.system') walks through os
        for step in path:
            if isinstance(step, types.ModuleType) and rules.under_dangerous(step.__name__):
                return f"walks through the module {step.__name__} (dangerous_modules)"
        owner = getattr(obj, "__module__", None)
        if isinstance(owner, str) and rules.under_dangerous(owner):
            return f"is defined in {owner} (dangerous_modules)"
    resolved = [(m, o) for m, o, _ in resolved]
    objs = {id(obj) for _, obj in resolved}
    if len(objs) > 1:
        return "different (module, name) splits import different objects: " + ", ".join(m for m, _ in resolved)
    obj = resolved[0][1]
    if isinstance(obj, types.ModuleType):
        return "is a module object"
    if kind_of(obj) is None:
        return f"is a {type(obj).__name__} instance, not a class, callable or by-name constant"
    return None


def pickled_name(obj) -> str | None:
    """The global pickle writes for ``obj`` saved by reference (None when it is not pickled by name)."""
    try:
        found = pickle_globals(pickle.dumps(obj, protocol=4))
    except Exception:
        return None
    if len(found) != 1:
        return None
    module, name = found[0]
    return f"{module}.{name}"


_FILES: dict[str, str] = {}
_FILES_SEEN = [0]


def _file_module(filename: str) -> str | None:
    if filename not in _FILES and len(sys.modules) != _FILES_SEEN[0]:
        _FILES_SEEN[0] = len(sys.modules)
        for name, mod in sorted(sys.modules.items()):
            file = getattr(mod, "__file__", None)
            if isinstance(file, str):
                _FILES.setdefault(file, name)
    return _FILES.get(filename)


def code_module(cls: type) -> str | None:
    """The module that defines ``cls``, also when ``__module__`` was rewritten (pandas ``set_module``).

    The module most of the methods written in the class body come from (Python functions: by their
    code's file; Cython functions: by their ``__module__``); for a class without methods of its own,
    that of its first base that has some; else ``__module__``.
    """
    votes: dict[str, int] = {}
    for name, value in vars(cls).items():
        value = getattr(value, "__func__", value)  # staticmethod / classmethod
        if not inspect.isroutine(value) or getattr(value, "__qualname__", None) != f"{cls.__qualname__}.{name}":
            continue  # inherited, generated or copied in from elsewhere
        code = getattr(value, "__code__", None)
        module = _file_module(code.co_filename) if code is not None else None
        module = module or getattr(value, "__module__", None)
        if isinstance(module, str):
            votes[module] = votes.get(module, 0) + 1
    if votes:
        return max(sorted(votes), key=lambda m: votes[m])
    for base in cls.__mro__[1:]:
        if base is not object and (vars(base).get("__module__") or "").split(".")[0] == cls.__module__.split(".")[0]:
            return code_module(base)
    return cls.__module__


def defining_module(obj) -> str | None:
    """The module whose source defines a class or function (see :func:`code_module`)."""
    if isinstance(obj, type):
        return code_module(obj)
    code = getattr(obj, "__code__", None)
    return (_file_module(code.co_filename) if code is not None else None) or getattr(obj, "__module__", None)


def import_tree(package: str, include: Callable[[str], bool]) -> list[types.ModuleType]:
    """Import ``package`` and those of its submodules (recursively) for which ``include(name)`` is true.

    A subpackage that is not included is not entered. Modules that fail to import are skipped.
    """
    import pkgutil

    mods = []
    todo = [package]
    while todo:
        name = todo.pop()
        try:
            mod = importlib.import_module(name)
        except Exception:
            continue
        mods.append(mod)
        for info in pkgutil.iter_modules(getattr(mod, "__path__", None) or [], name + "."):
            if include(info.name):
                todo.append(info.name)
    return sorted(mods, key=lambda m: m.__name__)


# --------------------------------------------------------------------------------------------------
# Families. Each yields (name, reason); names may come with their module part un-normalised.
# --------------------------------------------------------------------------------------------------

Produced = Iterator[tuple[str, str]]


def _by_reference(objs: Iterable, reason: str, quiet: bool = False) -> Produced:
    """The name pickle writes for each object, and its defining-module path when ``__module__`` was
    rewritten (``numpy.ma.MaskedArray`` is ``numpy.ma.core.MaskedArray`` in older pickles)."""
    for obj in objs:
        name = pickled_name(obj)
        if name is None:
            if not quiet:
                warn(f"{obj!r} is not pickled by reference; skipped")
            continue
        yield name, reason
        home = defining_module(obj)
        qualname = getattr(obj, "__qualname__", None)
        if home and qualname and not name.startswith(home + ".") and _same_object(f"{home}.{qualname}", name):
            yield f"{home}.{qualname}", f"defining-module path of {name}"


def _corpus(label: str, found: Iterable[tuple[str, str]]) -> Produced:
    for module, name in found:
        yield f"{module}.{name}", f"seen in benign {label}"


def family_stdlib() -> Produced:
    yield from STDLIB.items()
    yield from _corpus("checkpoint (argparse.Namespace, pathlib.Path)",
                      dumps_globals({"args": argparse.Namespace(lr=0.1), "path": Path("/data")}))


def family_torch() -> Produced:
    import torch
    import torch._utils
    import torch.nn as nn
    from torch import _weights_only_unpickler

    torch.manual_seed(0)
    # torch's own weights_only allowlist: rebuilders, storages, tensor types, dtypes, Size, device, Parameter
    for name in sorted(getattr(_weights_only_unpickler, "_get_allowed_globals", dict)()):
        yield name, "allowed by torch.load(weights_only=True)"
    for name in sorted(dir(torch._utils)):
        if name.startswith("_rebuild_") and callable(getattr(torch._utils, name)):
            yield f"torch._utils.{name}", "tensor rebuild function written by torch.save"
    yield "torch._tensor._rebuild_from_type_v2", "tensor subclass rebuild"
    yield "torch.serialization._get_layout", "sparse layouts"
    constants = (torch.dtype, torch.layout, torch.memory_format, torch.qscheme)
    for name in sorted(dir(torch)):
        value = getattr(torch, name, None)
        if isinstance(value, constants):
            canonical = str(value)
            if canonical == f"torch.{name}":
                yield canonical, f"{type(value).__name__} constant"
        elif isinstance(value, type) and name.endswith("Storage"):
            yield from _by_reference([value], "storage type in persistent ids")
            yield f"torch.{name}", "storage type in persistent ids"
    import torch.cuda
    for name in sorted(dir(torch.cuda)):
        value = getattr(torch.cuda, name, None)
        if isinstance(value, type) and name.endswith("Storage"):
            yield f"torch.cuda.{name}", "CUDA storage type in older checkpoints"
    yield from [("torch.Size", "tensor shapes"), ("torch.device", "devices"), ("torch.dtype", "dtypes"),
                ("torch.Tensor", "plain tensor class")]
    import torch.nn.parameter as parameter
    yield from _by_reference([parameter.Parameter, parameter.Buffer, parameter.UninitializedParameter,
                              parameter.UninitializedBuffer], "parameters and buffers")
    # whole-model pickles: every concrete nn.Module class of torch.nn.modules
    for mod in import_tree("torch.nn.modules", lambda n: True):
        for name, value in sorted(vars(mod).items()):
            if (isinstance(value, type) and issubclass(value, nn.Module) and value.__module__ == mod.__name__
                    and (not name.startswith("_")) and not getattr(value, "__abstractmethods__", None)):
                yield from _by_reference([value], "torch.nn module class (whole-model pickles)")
    yield from _by_reference([nn.Module], "torch.nn module class (whole-model pickles)")
    # activation functions stored as module attributes (TransformerEncoderLayer(activation=F.gelu), ...):
    # the functional twin of every torch.nn.modules.activation class
    import torch.nn.functional as F
    import torch.nn.modules.activation as activation
    twins = {n.lower() for n, v in vars(activation).items() if isinstance(v, type) and issubclass(v, nn.Module)}
    for name in sorted(dir(F)):
        if not name.startswith("_") and name.replace("_", "") in twins and callable(getattr(F, name)):
            yield from _by_reference([getattr(F, name)], "activation function stored as a module attribute",
                                     quiet=True)
    # optimizers and LR schedulers (whole-object checkpoints)
    import torch.optim
    import torch.optim.lr_scheduler as lr_scheduler
    import torch.optim.swa_utils as swa_utils
    for mod in import_tree("torch.optim", lambda n: not n.rsplit(".", 1)[-1].startswith("_")):
        for name, value in sorted(vars(mod).items()):
            if not isinstance(value, type) or name.startswith("_") or value.__module__ != mod.__name__:
                continue
            if issubclass(value, torch.optim.Optimizer):
                yield from _by_reference([value], "optimizer class (whole-optimizer checkpoints)")
            elif issubclass(value, (lr_scheduler.LRScheduler, lr_scheduler.ReduceLROnPlateau)):
                yield from _by_reference([value], "LR scheduler class (whole-scheduler checkpoints)")
    yield from _by_reference([swa_utils.AveragedModel], "SWA averaged model")

    # ---- corpus ----
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.ReLU(), nn.MaxPool2d(1), nn.Flatten(),
                          nn.Linear(8, 4), nn.Dropout(0.1), nn.LayerNorm(4), nn.GELU(), nn.Softmax(dim=-1))
    rnns = nn.ModuleList([nn.LSTM(4, 4, batch_first=True), nn.GRU(4, 4), nn.RNN(4, 4), nn.Embedding(5, 4),
                          nn.EmbeddingBag(5, 4), nn.Identity(), nn.ModuleDict({"a": nn.Tanh()})])
    transformer = nn.Transformer(d_model=8, nhead=2, num_encoder_layers=1, num_decoder_layers=1,
                                 dim_feedforward=8)
    gelu_layer = nn.TransformerEncoderLayer(8, 2, dim_feedforward=8, activation="gelu")
    yield from _corpus("state_dict", torch_save_globals(model.state_dict()))
    yield from _corpus("whole-module pickle", torch_save_globals(model))
    yield from _corpus("whole-module pickle (recurrent, embeddings)", torch_save_globals(rnns))
    yield from _corpus("whole-module pickle (transformer)", torch_save_globals([transformer, gelu_layer]))
    yield from _corpus("legacy torch.save", torch_save_globals(model.state_dict(),
                                                              _use_new_zipfile_serialization=False))
    optimizers = [torch.optim.Adam(model.parameters()), torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9),
                  torch.optim.AdamW(model.parameters()), torch.optim.RMSprop(model.parameters())]
    model(torch.randn(2, 1, 4, 4)).sum().backward()
    for opt in optimizers:
        opt.step()
    schedulers = [lr_scheduler.StepLR(optimizers[0], 1), lr_scheduler.CosineAnnealingLR(optimizers[1], 10),
                  lr_scheduler.OneCycleLR(optimizers[2], max_lr=0.1, total_steps=10),
                  lr_scheduler.ReduceLROnPlateau(optimizers[3])]
    checkpoint = {"model": model.state_dict(), "optimizers": [o.state_dict() for o in optimizers],
                  "schedulers": [s.state_dict() for s in schedulers], "epoch": 3, "metrics": {"acc": 0.5}}
    yield from _corpus("training checkpoint", torch_save_globals(checkpoint))
    yield from _corpus("whole optimizer/scheduler pickle", torch_save_globals([optimizers[0], schedulers[0]]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quantized = [torch.quantize_per_tensor(torch.randn(4), 0.1, 0, torch.quint8),
                     torch.quantize_per_channel(torch.randn(2, 4), torch.tensor([0.1, 0.2]),
                                                torch.tensor([0, 0]), 0, torch.qint8)]
        dense = torch.randn(4, 4)
        sparse = [dense.to_sparse(), dense.to_sparse_csr(), dense.to_sparse_csc(), dense.to_sparse_bsr((2, 2))]
    yield from _corpus("quantized tensors", torch_save_globals(quantized))
    yield from _corpus("sparse tensors", torch_save_globals(sparse))
    found = []
    for name in sorted(dir(torch)):
        value = getattr(torch, name)
        if isinstance(value, torch.dtype) and str(value) == f"torch.{name}":
            with contextlib.suppress(Exception):  # some dtypes cannot be created or saved
                found += torch_save_globals(torch.zeros(2, dtype=value))
    found += torch_save_globals([torch.zeros(1, 2, 3, 3).to(memory_format=torch.channels_last),
                                 torch.empty(2, device="meta")])
    yield from _corpus("tensors of every dtype", found)
    yield from _corpus("checkpoint metadata", torch_save_globals(
        {"size": torch.Size([1, 2]), "device": torch.device("cpu"), "dtype": torch.float16,
         "qscheme": torch.per_tensor_affine, "param": nn.Parameter(torch.zeros(2), requires_grad=False)}))


def _cython_unpicklers(mod: types.ModuleType) -> Produced:
    """The ``__pyx_unpickle_<Class>`` functions Cython generates for the extension types of ``mod``, and the
    ``newObj`` helper that scikit-learn's extension types reduce to."""
    for name, value in sorted(vars(mod).items()):
        if (name.startswith("__pyx_unpickle_") or name == "newObj") and callable(value) \
                and getattr(value, "__module__", None) == mod.__name__:
            yield f"{mod.__name__}.{name}", "Cython unpickle helper of an extension type"


def _numpy_random_objects() -> list:
    import numpy as np

    return [np.random.default_rng(0), np.random.RandomState(0), np.random.SeedSequence(0),
            np.random.Generator(np.random.Philox(0)), np.random.MT19937(0), np.random.PCG64(0),
            np.random.PCG64DXSM(0), np.random.SFC64(0)]


def family_numpy() -> Produced:
    import numpy as np

    core = "numpy._core"
    yield from [("numpy.ndarray", "arrays"), ("numpy.dtype", "dtypes"),
                (f"{core}.multiarray._reconstruct", "array reconstruction"),
                (f"{core}.multiarray.scalar", "numpy scalars"),
                (f"{core}.numeric._frombuffer", "contiguous arrays (protocol 5)")]
    for name in sorted(dir(np.dtypes)):
        value = getattr(np.dtypes, name)
        if isinstance(value, type) and issubclass(value, np.dtype):
            yield from _by_reference([value], "dtype class")
    scalar_types = sorted({t for t in np.sctypeDict.values()}, key=lambda t: t.__name__)
    yield from _by_reference(scalar_types, "scalar type (e.g. an estimator's dtype parameter)")
    ufuncs = [getattr(np, n) for n in sorted(dir(np)) if isinstance(getattr(np, n, None), np.ufunc)]
    yield from _by_reference(ufuncs, "ufunc referenced by estimators (e.g. FunctionTransformer(func=np.log1p))")
    import numpy.random._pickle as rp
    for name in sorted(vars(rp)):
        if name.startswith("__") and name.endswith("_ctor"):
            yield f"numpy.random._pickle.{name}", "random generator reconstruction"
    rng_types = [np.random.Generator, np.random.RandomState, np.random.SeedSequence, np.random.BitGenerator,
                 np.random.MT19937, np.random.PCG64, np.random.PCG64DXSM, np.random.Philox, np.random.SFC64]
    yield from _by_reference(rng_types, "random generator state")
    for mod in import_tree("numpy.random", lambda n: not n.endswith(("tests", "_examples"))):
        yield from _cython_unpicklers(mod)
    yield from _by_reference([np.ma.MaskedArray, np.ma.core._mareconstruct, np.ma.core.MaskedConstant],
                             "masked arrays (e.g. scikit-learn cv_results_)")
    yield from _by_reference([np.matrix, np.recarray, np.record], "array subclasses")
    yield from _by_reference([type(np._NoValue)], "numpy's _NoValue sentinel")
    # ---- corpus ----
    arrays = [np.ones((2, 3), dtype=t) for t in ("i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8",
                                                            "f2", "f4", "f8", "c8", "c16", "?")]
    arrays += [np.array(["a", "bc"]), np.array([b"a"]), np.array([1, "x", None], dtype=object),
               np.array(["2020-01-01"], dtype="datetime64[ns]"), np.array([1], dtype="timedelta64[s]"),
               np.zeros(2, dtype=[("x", "f4"), ("y", "i8", (2,))]), np.asfortranarray(np.ones((2, 2))),
               np.ma.masked_array([1, 2], mask=[0, 1]), np.matrix([[1, 2]]), np.rec.array([(1, 2.0)])]
    scalars = [t(1) for t in (np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint64, np.float16,
                              np.float32, np.float64, np.longdouble, np.complex64, np.complex128, np.bool_)]
    scalars += [np.str_("s"), np.bytes_(b"b"), np.datetime64("2020-01-01"), np.timedelta64(1, "D"),
                np.dtype("f8"), np.dtype([("a", "i4")]), np.dtypes.Float64DType]
    yield from _corpus("numpy arrays", dumps_globals(arrays, protocols=(2, 3, 4, 5)))
    yield from _corpus("numpy scalars", dumps_globals(scalars, protocols=(2, 3, 4, 5)))
    yield from _corpus("numpy random generators", dumps_globals(_numpy_random_objects()))


def numpy_v1_aliases(names: Iterable[str], rules: Rules) -> Produced:
    """numpy 1.x wrote ``numpy.core.*``; numpy 2.x still imports those paths (shim modules)."""
    for name in names:
        if name.startswith("numpy._core."):
            alias = "numpy.core." + name[len("numpy._core."):]
            if check(alias, rules) is None and _same_object(alias, name):
                yield alias, "numpy 1.x path of " + name


def _same_object(a: str, b: str) -> bool:
    ra, rb = resolve_all(a), resolve_all(b)
    return bool(ra and rb) and ra[0][1] is rb[0][1]


def family_scipy() -> Produced:
    import scipy.sparse as sp

    classes = [getattr(sp, n) for n in sorted(dir(sp))
               if isinstance(getattr(sp, n), type) and issubclass(getattr(sp, n), sp._base._spbase)
               and not n.startswith("_") and n.endswith(("_matrix", "_array")) and n != "spmatrix"]
    yield from _by_reference(classes, "scipy.sparse container")
    for cls in classes:  # scipy < 1.8 defined them in scipy.sparse.<fmt> (now deprecated shims)
        legacy = f"scipy.sparse.{cls.__name__.split('_')[0]}.{cls.__name__}"
        if cls.__name__.endswith("_matrix") and _same_object(legacy, pickled_name(cls) or ""):
            yield legacy, "scipy < 1.8 path of a scipy.sparse container"
    dense = [[0, 1.5], [2, 0]]
    yield from _corpus("scipy.sparse containers", dumps_globals([cls(dense) for cls in classes]))


def _sklearn_fit(est, data) -> bool:
    for args in data:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                est.fit(*args)
            return True
        except Exception:
            continue
    return False


def family_sklearn() -> Produced:
    import numpy as np
    import pandas as pd
    from sklearn.utils import all_estimators

    try:
        from sklearn.utils._test_common.instance_generator import _construct_instances
    except ImportError:  # private helper; plain default instances otherwise
        def _construct_instances(cls):
            yield cls()

    from sklearn.base import BaseEstimator

    estimators = [cls for _, cls in all_estimators()]
    yield from _by_reference(estimators, "scikit-learn estimator")
    # private estimators that fitted public ones hold (multiclass._ConstantPredictor, ...), found after
    # all_estimators() imported every sklearn module
    private, todo = set(), [BaseEstimator]
    while todo:
        for sub in todo.pop().__subclasses__():
            if sub not in private:
                private.add(sub)
                todo.append(sub)
    private = sorted((c for c in private if c.__module__.startswith("sklearn.") and ".tests" not in c.__module__
                      and "<locals>" not in c.__qualname__ and not getattr(c, "__abstractmethods__", None)),
                     key=lambda c: (c.__module__, c.__qualname__))
    yield from _by_reference(private, "scikit-learn estimator class (private, held by fitted estimators)")
    helpers = ["sklearn._loss.loss", "sklearn._loss._loss", "sklearn._loss.link", "sklearn.tree._tree",
               "sklearn.utils._bunch", "sklearn.neighbors._kd_tree", "sklearn.neighbors._ball_tree",
               "sklearn.metrics._dist_metrics", "sklearn.metrics._scorer",
               "sklearn.ensemble._hist_gradient_boosting.predictor",
               "sklearn.ensemble._hist_gradient_boosting.binning",
               "sklearn.neural_network._stochastic_optimizers", "sklearn.gaussian_process.kernels",
               "sklearn.linear_model._sgd_fast", "sklearn.model_selection._split"]
    for modname in helpers:
        with contextlib.suppress(ImportError):
            mod = importlib.import_module(modname)
            classes = [v for _, v in sorted(vars(mod).items())
                       if isinstance(v, type) and v.__module__ == modname
                       and not getattr(v, "__abstractmethods__", None)]
            yield from _by_reference(classes, "helper class held by fitted estimators")
            yield from _cython_unpicklers(mod)
    from sklearn import feature_selection, metrics
    score_funcs = [getattr(feature_selection, n) for n in sorted(feature_selection.__all__)
                   if isinstance(getattr(feature_selection, n), types.FunctionType)]
    yield from _by_reference(score_funcs, "univariate score function (SelectKBest(score_func=...))")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        metric_funcs = {getattr(metrics.get_scorer(n), "_score_func", None) for n in metrics.get_scorer_names()}
    yield from _by_reference(sorted((f for f in metric_funcs if f is not None), key=lambda f: f.__qualname__),
                             "metric referenced by a scorer (search CV objects)")
    # ---- corpus: every estimator fitted on tiny data ----
    rng = np.random.RandomState(0)
    X = rng.rand(30, 4)
    y_class = np.array([0, 1, 2] * 10)
    y_reg = rng.rand(30) + 0.1
    Y2 = np.column_stack([y_class % 2, (y_class + 1) % 2])
    data = [(X, y_class), (X, y_reg), (X,), (X, Y2), (X @ X.T, y_class), (X @ X.T,),
            (["the cat", "a dog", "the dog"] * 10, y_class), ([{"a": 1, "b": "x"}, {"a": 2}] * 15, y_class[:30]),
            (y_class,), (X[:, 0], y_reg)]
    found = []
    for cls in estimators:
        try:
            instances = list(_construct_instances(cls))
        except Exception:
            continue
        for est in instances:
            with contextlib.suppress(Exception):  # deterministic fits, hence a reproducible corpus
                est.set_params(**{k: 0 for k in est.get_params() if k.endswith("random_state")})
            if _sklearn_fit(est, data):
                with contextlib.suppress(Exception):
                    found += dumps_globals(est, protocols=(5,))
    yield from _corpus("fitted scikit-learn estimator", found)
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import (GradientBoostingClassifier, HistGradientBoostingClassifier,
                                  RandomForestClassifier)
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV, RandomizedSearchCV
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler
    frame = pd.DataFrame({"num": rng.rand(30), "cat": ["a", "b", "c"] * 10})
    column = Pipeline([("prep", ColumnTransformer([("oh", OneHotEncoder(handle_unknown="ignore"), ["cat"]),
                                                   ("sc", StandardScaler(), ["num"])])),
                       ("clf", LogisticRegression())])
    search = GridSearchCV(Pipeline([("sc", StandardScaler()), ("lr", LogisticRegression())]),
                          {"lr__C": [0.1, 1.0]}, cv=2, scoring="accuracy")
    models = [column, search, RandomForestClassifier(n_estimators=3, random_state=0),
              GradientBoostingClassifier(n_estimators=3, random_state=0),
              HistGradientBoostingClassifier(max_iter=3, categorical_features=[0])]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        column.fit(frame, y_class)
        for m in models[1:]:
            m.fit(np.column_stack([y_class, X]), y_class)
    yield from _corpus("scikit-learn pipelines and ensembles", dumps_globals(models))


def family_pandas() -> Produced:
    import numpy as np
    import pandas as pd

    from pandas._libs import internals as libinternals, interval, missing, sparse as libsparse
    from pandas._libs.arrays import NDArrayBacked
    from pandas._libs.lib import _NoDefault
    from pandas._libs.tslibs import nattype, offsets, period, timedeltas, timestamps
    from pandas.api.extensions import ExtensionArray, ExtensionDtype
    from pandas.core.generic import NDFrame
    from pandas.core.indexes.frozen import FrozenList
    from pandas.core.internals import blocks, managers

    # what pandas objects are made of; a class is listed only if it derives from one of these
    data_bases = (NDFrame, pd.Index, ExtensionArray, ExtensionDtype, NDArrayBacked, offsets.BaseOffset,
                  timestamps._Timestamp, timedeltas._Timedelta, period.PeriodMixin, interval.IntervalMixin,
                  nattype._NaT, missing.C_NAType, libsparse.SparseIndex, libinternals.BlockPlacement,
                  libinternals.BlockValuesRefs, libinternals.Block, libinternals.BlockManager, blocks.Block,
                  managers.BaseBlockManager, FrozenList, _NoDefault, pd.Flags)
    places = ("pandas.core.frame", "pandas.core.series", "pandas.core.generic", "pandas.core.flags",
              "pandas.core.indexes", "pandas.core.arrays", "pandas.core.dtypes.dtypes", "pandas.core.dtypes.base",
              "pandas.core.internals",
              "pandas.core.sparse", "pandas.tseries.offsets", "pandas._libs.arrays", "pandas._libs.internals",
              "pandas._libs.missing", "pandas._libs.sparse", "pandas._libs.interval", "pandas._libs.lib",
              "pandas._libs.tslibs")

    def include(name: str) -> bool:
        return name.startswith(places) and ".tests" not in name

    parents = ("pandas.core", "pandas._libs", "pandas.tseries", "pandas.core.dtypes")
    for mod in import_tree("pandas", lambda n: include(n) or n in parents):
        if not include(mod.__name__):
            continue
        for name, value in sorted(vars(mod).items()):
            if isinstance(value, type) and issubclass(value, data_bases):
                real = pickled_name(value)
                if real is None or not real.startswith("pandas") or mod.__name__ not in (code_module(value),
                                                                                         value.__module__):
                    continue
                yield real, "pandas data class (frame, index, array, dtype, scalar, offset or internals)"
                if real != f"{mod.__name__}.{value.__qualname__}":
                    yield f"{mod.__name__}.{value.__qualname__}", f"older pandas path of {real}"
            elif callable(value) and getattr(value, "__module__", None) == mod.__name__ and (
                    "unpickle" in name or (name.startswith("_new_") and name.endswith("Index"))):
                yield f"{mod.__name__}.{name}", "pandas unpickle helper"
    import pandas.arrays
    for name in sorted(pandas.arrays.__all__):
        yield from _by_reference([getattr(pandas.arrays, name)], "pandas extension array")
    yield from _by_reference([pd.NA], "pandas missing-value singleton")
    # ---- corpus ----
    idx = pd.MultiIndex.from_product([["a", "b"], [1, 2, 3]], names=["k", "n"])
    frame = pd.DataFrame({
        "int": np.arange(6), "float": np.linspace(0, 1, 6), "str": list("abcdef"),
        "cat": pd.Categorical(list("xyxyxy")), "utc": pd.date_range("2020-01-01", periods=6, tz="UTC"),
        "tz": pd.date_range("2020-01-01", periods=6, tz="Europe/Paris"), "naive": pd.date_range("2020", periods=6),
        "td": pd.to_timedelta(np.arange(6), unit="s"), "Int64": pd.array([1, None, 3, 4, 5, 6], dtype="Int64"),
        "bool": pd.array([True, None] * 3, dtype="boolean"), "Float64": pd.array([1.5] * 6, dtype="Float64"),
        "period": pd.period_range("2020-01", periods=6, freq="M"),
        "interval": pd.IntervalIndex.from_breaks(range(7)), "sparse": pd.arrays.SparseArray([0, 1] * 3),
        "object": [1, "a", None, 2.0, b"x", (1,)]}, index=idx)
    indexes = [pd.RangeIndex(3), pd.Index([1.5]), pd.DatetimeIndex(["2020-01-01"], freq="D"),
               pd.date_range("2020", periods=3, freq="h", tz="UTC"), pd.timedelta_range(0, periods=2),
               pd.period_range("2020", periods=2, freq="Q"), pd.CategoricalIndex(["a"]),
               pd.IntervalIndex.from_breaks([0, 1]), pd.Index(["a"], dtype="string")]
    scalars = [pd.Timestamp("2020-01-01", tz="UTC"), pd.Timestamp("2020-01-01"), pd.Timedelta(1, "s"),
               pd.Period("2020-01", "M"), pd.Interval(0, 1), pd.NaT, pd.NA, pd.offsets.MonthEnd(2),
               pd.offsets.Day(), pd.offsets.BusinessDay(), pd.DateOffset(months=1)]
    yield from _corpus("pandas DataFrame", dumps_globals([frame, frame["int"], frame.T]))
    yield from _corpus("pandas indexes and scalars", dumps_globals([indexes, scalars]))
    buf = io.BytesIO()
    frame.to_pickle(buf, compression=None)
    yield from _corpus("DataFrame.to_pickle", pickle_globals(buf.getvalue()))


def family_joblib() -> Produced:
    import joblib.numpy_pickle as jnp
    import numpy as np
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    yield from _by_reference([jnp.NumpyArrayWrapper], "array stored beside a joblib pickle")
    rng = np.random.RandomState(0)
    X, y = rng.rand(20, 3), np.array([0, 1] * 10)
    obj = [Pipeline([("sc", StandardScaler()), ("lr", LogisticRegression())]).fit(X, y),
           RandomForestClassifier(n_estimators=2, random_state=0).fit(X, y), {"arr": np.arange(3), "obj": [1, "a"]}]
    # joblib writes raw array bytes between the pickle opcodes; suppress them to read the pickle alone
    original = jnp.NumpyArrayWrapper.write_array
    jnp.NumpyArrayWrapper.write_array = lambda self, array, pickler: None
    try:
        buf = io.BytesIO()
        jnp.NumpyPickler(buf, protocol=None).dump(obj)
    finally:
        jnp.NumpyArrayWrapper.write_array = original
    yield from _corpus("joblib.dump of a scikit-learn pipeline", pickle_globals(buf.getvalue()))


def family_xgboost() -> Produced:
    import numpy as np
    import xgboost
    import xgboost.sklearn as xs

    classes = [v for _, v in sorted(vars(xs).items())
               if isinstance(v, type) and issubclass(v, xs.XGBModel) and v.__module__ == xs.__name__]
    yield from _by_reference(classes + [xgboost.Booster], "xgboost model")
    rng = np.random.RandomState(0)
    X, y = rng.rand(20, 3), np.array([0, 1] * 10)
    models = [xgboost.XGBClassifier(n_estimators=2, max_depth=2).fit(X, y),
              xgboost.XGBRegressor(n_estimators=2, max_depth=2).fit(X, y.astype(float))]
    models.append(models[0].get_booster())
    yield from _corpus("xgboost model", dumps_globals(models))


def family_lightgbm() -> Produced:
    import lightgbm
    import lightgbm.sklearn as ls
    import numpy as np

    classes = [v for _, v in sorted(vars(ls).items())
               if isinstance(v, type) and issubclass(v, ls.LGBMModel) and v.__module__ == ls.__name__]
    yield from _by_reference(classes + [lightgbm.Booster], "lightgbm model")
    rng = np.random.RandomState(0)
    X, y = rng.rand(40, 3), np.array([0, 1] * 20)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        models = [lightgbm.LGBMClassifier(n_estimators=2, verbose=-1).fit(X, y),
                  lightgbm.LGBMRegressor(n_estimators=2, verbose=-1).fit(X, y.astype(float))]
    models.append(models[0].booster_)
    yield from _corpus("lightgbm model", dumps_globals(models))


# --------------------------------------------------------------------------------------------------
# Assembly
# --------------------------------------------------------------------------------------------------

def versions(family: str) -> str:
    if family == "stdlib":
        return f"python {platform.python_version_tuple()[0]}.{platform.python_version_tuple()[1]}"
    return f"{DIST_NAMES.get(family, family)} {importlib.import_module(family).__version__}"


def header(family: str, version: str) -> str:
    return f"  # --- {family} ({version}) ---"


def installed(family: str) -> bool:
    if family == "stdlib":
        return True
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            importlib.import_module(family)
        return True
    except Exception:
        return False


def yaml_value(reason: str) -> str:
    reason = " ".join(reason.split())
    try:
        if yaml.safe_load(f"k: {reason}") == {"k": reason}:
            return reason
    except yaml.YAMLError:
        pass
    return '"' + reason.replace("\\", "\\\\").replace('"', '\\"') + '"'


def split_file(text: str) -> tuple[str, str, str]:
    """(text before the safe section, the safe section's body lines, text from the next top-level line on)."""
    lines = text.splitlines(keepends=True)
    start = next(i for i, line in enumerate(lines) if line.rstrip("\n") == "safe:")
    end = next((i for i in range(start + 1, len(lines)) if lines[i].strip() and not lines[i][0].isspace()),
               len(lines))
    body = "".join(lines[start + 1:end]).rstrip("\n") + "\n"
    return "".join(lines[:start + 1]), body, "".join(lines[end:])


def existing_blocks(body: str) -> dict[str, str]:
    """Family blocks of an existing safe section, by family name (header line included)."""
    blocks: dict[str, list[str]] = {}
    current = None
    for line in body.splitlines(keepends=True):
        m = re.match(r"  # --- (\w+) \(.*\) ---$", line.rstrip("\n"))
        if m:
            current = m.group(1)
            blocks[current] = []
        if current:
            blocks[current].append(line)
    return {k: "".join(v) for k, v in blocks.items()}


PRODUCERS = {"stdlib": family_stdlib, "torch": family_torch, "numpy": family_numpy, "scipy": family_scipy,
             "sklearn": family_sklearn, "pandas": family_pandas, "joblib": family_joblib,
             "xgboost": family_xgboost, "lightgbm": family_lightgbm}


def generate(text: str) -> tuple[str, dict[str, int]]:
    data = yaml.safe_load(text)
    rules = Rules(data)
    before, body, after = split_file(text)
    old_blocks = existing_blocks(body)
    missing = [f for f in CORE if not installed(f)]
    if missing:
        raise SystemExit(f"gen_pickle_allowlist: missing required libraries: {', '.join(missing)}")
    taken: set[str] = set()
    refused: set[str] = set()
    out_blocks = []
    counts: dict[str, int] = {}
    for family in FAMILIES:
        if not installed(family):
            if family in old_blocks:
                warn(f"{family} is not installed: its block is carried over unchanged")
                kept = []
                for line in old_blocks[family].rstrip("\n").split("\n"):
                    m = re.match(r"  ([^\s#:][^:\s]*):", line)
                    if m and m.group(1) in taken:
                        continue  # now produced by an earlier family
                    taken.update([m.group(1)] if m else [])
                    kept.append(line)
                out_blocks.append("\n".join(kept) + "\n")
            else:
                warn(f"{family} is not installed: no entries for it")
            continue
        entries: dict[str, str] = {}
        produced = list(PRODUCERS[family]())
        if family == "numpy":
            produced += list(numpy_v1_aliases([n for n, _ in produced], rules))
        for raw, reason in produced:
            name = rules.normalise(raw)
            if name in taken or name in entries:
                continue
            why = check(name, rules)
            if why:
                if name not in refused:
                    warn(f"not allowlisted: {name} ({reason}): {why}")
                    refused.add(name)
                continue
            entries[name] = reason
        taken.update(entries)
        counts[family] = len(entries)
        lines = [header(family, versions(family))]
        lines += [f"  {name}: {yaml_value(entries[name])}" for name in sorted(entries)]
        out_blocks.append("\n".join(lines) + "\n")
    new_text = before + "".join(out_blocks) + "\n" + after
    parsed = yaml.safe_load(new_text)
    if set(parsed["safe"]) != taken or any(parsed[k] != data[k] for k in data if k != "safe"):
        raise SystemExit("gen_pickle_allowlist: the written YAML does not parse back to what was generated")
    return new_text, counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--input", type=Path, default=YAML_PATH, help="YAML file to read (default: the package's)")
    parser.add_argument("--output", type=Path, help="write here instead of rewriting --input")
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if --input is not up to date")
    args = parser.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    text = args.input.read_text(encoding="utf-8")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        new_text, counts = generate(text)
    summary = ", ".join(f"{k} {v}" for k, v in counts.items())
    print(f"gen_pickle_allowlist: {sum(counts.values())} generated entries ({summary})", file=sys.stderr)
    if args.check:
        if new_text != text:
            print(f"gen_pickle_allowlist: {args.input} is out of date", file=sys.stderr)
            return 1
        return 0
    target = args.output or args.input
    target.write_text(new_text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
