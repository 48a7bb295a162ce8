"""The runtime guard: ``protect()`` makes every model load in this process go through a static scan first.

    import mlguard
    mlguard.protect()                      # enforce mode: unsafe loads raise UnsafeModelError
    torch.load("model.pt")                 # scanned before a byte is unpickled

See docs/runtime-guard.md for what it covers and what it cannot.
"""
from __future__ import annotations

import contextlib
import os
import sys
import threading

from . import guard, patches
from .errors import UnsafeModelError, UnsafeModelWarning

__all__ = ["protect", "unprotect", "protected", "status", "UnsafeModelError", "UnsafeModelWarning"]

_lock = threading.RLock()
_hook_installed = False


def disabled_by_environment() -> bool:
    """``MLGUARD_DISABLE`` set to anything but empty or ``0``."""
    return os.environ.get("MLGUARD_DISABLE", "") not in ("", "0")


def protect(policy=None, mode: str | None = None, *, strict: bool | None = None) -> dict:
    """Guard every model load of this process; idempotent (a second call applies the new settings).

    ``policy``: a :class:`mlguard.Policy`, a :class:`mlguard.Config`, or the path of a ``.ml-guard.yml``
    (default: ``MLGUARD_CONFIG``, else the built-in policy). ``mode``: ``enforce`` (default), ``warn``
    or ``audit`` (default: ``MLGUARD_MODE``, else the file's ``runtime.mode``). ``strict``: also refuse
    non-allowlisted pickle globals in unpicklings nobody guarded (default: ``MLGUARD_STRICT``, else
    ``runtime.strict``). Does nothing when ``MLGUARD_DISABLE`` is set. Returns :func:`status`.
    """
    global _hook_installed
    if disabled_by_environment():
        return status()
    settings = guard.Settings.resolve(policy, mode, strict)
    from .loaders import LIBRARIES, audit_hook
    with _lock:
        guard.activate(settings)
        if not _hook_installed:
            sys.addaudithook(audit_hook)  # cannot be removed: it does nothing while unprotected
            _hook_installed = True
        for module, apply in LIBRARIES.items():
            patches.when_imported(module, apply, lambda: guard.current() is not None)
    return status()


def unprotect() -> None:
    """Put every patched loader back as it was. The audit hook stays installed (CPython cannot remove one)
    but does nothing."""
    with _lock:
        guard.activate(None)
        patches.restore()


@contextlib.contextmanager
def protected(policy=None, mode: str | None = None, *, strict: bool | None = None):
    """``with protected(): ...`` — protect for the block, then restore the previous state."""
    with _lock:
        previous = guard.current()
        protect(policy, mode, strict=strict)
    try:
        yield status()
    finally:
        with _lock:
            if previous is None:
                unprotect()
            else:
                guard.activate(previous)


def status() -> dict:
    """Whether the guard is on, its mode, and what it patched."""
    settings = guard.current()
    return {
        "protected": settings is not None,
        "mode": settings.mode if settings else None,
        "strict": settings.strict if settings else False,
        "disabled": disabled_by_environment(),
        "config": settings.config if settings else None,
        "entry_points": patches.labels(),
        "audit_hook": _hook_installed,
    }
