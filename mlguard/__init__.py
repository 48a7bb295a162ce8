"""ML Guard: static scanning of ML artifacts, from the CLI or in-process before a load.

Public API::

    import mlguard
    result = mlguard.scan_file("model.pt")          # -> ScanResult
    result = mlguard.scan_tree("models/")            # honours models/.ml-guard.yml
    result = mlguard.scan_bytes(data, name="x.pkl")
    mlguard.protect()                                # guard every model load of this process

Names are imported on first use, so ``import mlguard`` stays cheap (the runtime guard and the CLI
start-up depend on it).
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "Config": "config", "ConfigError": "config", "Policy": "policy",
    "Finding": "findings", "Location": "findings", "ScanResult": "findings", "Severity": "findings",
    "scan_bytes": "scan", "scan_file": "scan", "scan_tree": "scan",
    "protect": "runtime", "unprotect": "runtime", "protected": "runtime", "status": "runtime",
    "UnsafeModelError": "runtime", "UnsafeModelWarning": "runtime",
}

__all__ = [*_EXPORTS, "__version__"]


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'mlguard' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
