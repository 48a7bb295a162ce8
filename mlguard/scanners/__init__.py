"""Format scanners: one module per format family, each defining ``SCANNER`` (see ``interface.py``)."""
from __future__ import annotations

import functools
import importlib
import os

from .interface import Artifact, Option, ScanContext, Scanner


@functools.lru_cache(maxsize=None)
def registry() -> dict[str, Scanner]:
    """Every scanner module of this package, by scanner name (discovered once per process)."""
    found: dict[str, Scanner] = {}
    names = {entry.name[:-3] for folder in __path__ for entry in os.scandir(folder)
             if entry.name.endswith(".py") and not entry.name.startswith("_")}  # not pkgutil: it imports inspect
    for name in sorted(names - {"interface"}):
        scanner = getattr(importlib.import_module(f"{__name__}.{name}"), "SCANNER", None)
        if scanner is not None:
            found[scanner.name] = scanner
    return dict(sorted(found.items()))


__all__ = ["Artifact", "Option", "ScanContext", "Scanner", "registry"]
