"""Patching mechanics: wrap an attribute with ``wrapt``, remember the original, put it back; apply a
library's patches when it gets imported."""
from __future__ import annotations

import sys
import threading
from typing import Callable

import wrapt

_lock = threading.RLock()
_applied: dict[tuple[int, str], tuple[object, str, object, str]] = {}
_hooked: set[str] = set()


def wrap(owner, attr: str, wrapper, label: str) -> None:
    """Replace ``owner.attr`` by a ``wrapt.FunctionWrapper`` calling ``wrapper(wrapped, instance, args, kwargs)``."""
    original = owner.__dict__[attr] if isinstance(owner, type) else getattr(owner, attr, None)
    if original is not None:
        replace(owner, attr, wrapt.FunctionWrapper(original, wrapper), label)


def replace(owner, attr: str, new, label: str) -> None:
    """Set ``owner.attr`` to ``new`` unless already patched; :func:`restore` puts the original back."""
    with _lock:
        key = (id(owner), attr)
        if key in _applied:
            return
        original = owner.__dict__[attr] if isinstance(owner, type) else getattr(owner, attr)
        _applied[key] = (owner, attr, original, label)
        setattr(owner, attr, new)


def restore() -> None:
    """Undo every patch."""
    with _lock:
        for owner, attr, original, _ in _applied.values():
            setattr(owner, attr, original)
        _applied.clear()


def labels() -> list[str]:
    """Names of the patched entry points."""
    with _lock:
        return sorted({label for *_, label in _applied.values()})


def when_imported(module: str, apply: Callable[[object], None], active: Callable[[], bool]) -> None:
    """Run ``apply(module)`` now if ``module`` is imported, else as soon as it is (while ``active()``)."""
    with _lock:
        if module in sys.modules:
            apply(sys.modules[module])
            return
        if module in _hooked:
            return
        _hooked.add(module)

    def hook(mod) -> None:
        if active():
            apply(mod)

    wrapt.register_post_import_hook(hook, module)
