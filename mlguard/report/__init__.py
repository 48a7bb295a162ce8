"""Report writers: one module per output format, each defining ``REPORTER`` (see ``interface.py``)."""
from __future__ import annotations

from .interface import Reporter
from .json import REPORTER as JSON
from .sarif import REPORTER as SARIF
from .text import REPORTER as TEXT

REPORTERS: dict[str, Reporter] = {r.name: r for r in (TEXT, JSON, SARIF)}
"""Output formats by ``--format`` name."""

__all__ = ["REPORTERS", "Reporter"]
