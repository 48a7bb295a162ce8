"""Report writers: one module per output format, each defining ``REPORTER`` (see ``interface.py``)."""
from __future__ import annotations

import importlib
from typing import Iterator, Mapping

from .interface import Reporter


class _Reporters(Mapping[str, Reporter]):
    """Output formats by ``--format`` name; a writer's module is imported when it is first used (start-up)."""

    _NAMES = ("json", "sarif", "text")

    def __getitem__(self, name: str) -> Reporter:
        if name not in self._NAMES:
            raise KeyError(name)
        return importlib.import_module(f"{__name__}.{name}").REPORTER

    def __iter__(self) -> Iterator[str]:
        return iter(self._NAMES)

    def __len__(self) -> int:
        return len(self._NAMES)


REPORTERS: Mapping[str, Reporter] = _Reporters()
"""Output formats by ``--format`` name."""

__all__ = ["REPORTERS", "Reporter"]
