"""Differential testing: run a kernel on both engines and require identical facts.

``assert_engines_agree("pickle_facts", data, limits=...)`` calls
``mlguard.engine.pickle_facts(data, limits=..., engine="native")`` and the same with
``engine="python"``, and fails with the path of the first difference unless both return equal
facts -- compared strictly, so ``True`` does not equal ``1`` and key sets must match -- or both
raise the same exception type. The kernel may be named with or without its ``_facts`` suffix.
The native extension must be importable: a missing build is a failure, not a skip.
"""
from __future__ import annotations

from typing import Any

import mlguard.engine as engine

_MISSING = object()


def _kernel(name: str):
    for candidate in (name, f"{name}_facts"):
        fn = getattr(engine, candidate, None)
        if callable(fn):
            return fn
    raise AssertionError(f"mlguard.engine has no kernel named {name!r}")


def first_difference(a: Any, b: Any, path: str = "facts"):
    """The path and values of the first difference between two facts values, or None."""
    if type(a) is not type(b):
        return path, a, b
    if isinstance(a, dict):
        for key in a.keys() | b.keys():
            diff = first_difference(a.get(key, _MISSING), b.get(key, _MISSING), f"{path}[{key!r}]")
            if diff is not None:
                return diff
        return None
    if isinstance(a, (list, tuple)):
        for i, (x, y) in enumerate(zip(a, b)):
            diff = first_difference(x, y, f"{path}[{i}]")
            if diff is not None:
                return diff
        if len(a) != len(b):
            return f"len({path})", len(a), len(b)
        return None
    if a != b:
        return path, a, b
    return None


def _outcome(fn, args, kwargs, name):
    try:
        return fn(*args, engine=name, **kwargs), None
    except Exception as exc:  # compared below
        return None, exc


def assert_engines_agree(kernel: str, *args, **kwargs):
    """Run ``kernel`` on the native and the python engine; return the (identical) facts."""
    fn = _kernel(kernel)
    native, native_exc = _outcome(fn, args, kwargs, "native")
    if isinstance(native_exc, ImportError):
        raise AssertionError(f"the native engine is unavailable: {native_exc}") from native_exc
    python, python_exc = _outcome(fn, args, kwargs, "python")
    if native_exc is not None or python_exc is not None:
        if type(native_exc) is type(python_exc):
            raise native_exc
        raise AssertionError(f"{kernel}: native raised {native_exc!r}, python raised {python_exc!r}")
    diff = first_difference(native, python)
    if diff is not None:
        where, n, p = diff
        raise AssertionError(f"{kernel}: engines disagree at {where}: native={n!r} python={p!r}")
    return native
