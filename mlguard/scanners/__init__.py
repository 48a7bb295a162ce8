"""Format scanners: one module per format family, each defining ``SCANNER`` (see ``interface.py``)."""
from __future__ import annotations

import functools
import importlib
import pkgutil

from .interface import Artifact, Option, ScanContext, Scanner


@functools.lru_cache(maxsize=None)
def registry() -> dict[str, Scanner]:
    """Every scanner module of this package, by scanner name (discovered once per process)."""
    found: dict[str, Scanner] = {}
    for mod in pkgutil.iter_modules(__path__):
        if mod.name.startswith("_") or mod.name == "interface":
            continue
        scanner = getattr(importlib.import_module(f"{__name__}.{mod.name}"), "SCANNER", None)
        if scanner is not None:
            found[scanner.name] = scanner
    return dict(sorted(found.items()))


__all__ = ["Artifact", "Option", "ScanContext", "Scanner", "registry"]
