"""``--format json``: the public JSON contract of DESIGN.md."""
from __future__ import annotations

import json

from .. import __version__
from ..findings import ScanResult
from .interface import RenderOptions


def as_dict(result: ScanResult) -> dict:
    """The report as plain data (also the input of other reporters that need JSON)."""
    return {
        "tool": "ml-guard",
        "version": __version__,
        "files_scanned": result.files_scanned,
        "duration_seconds": result.duration_seconds,
        "summary": result.summary,
        "findings": [f.to_dict() for f in result.findings],
        "errors": [e.to_dict() for e in result.errors],
    }


class JsonReporter:
    name = "json"

    def render(self, result: ScanResult, options: RenderOptions) -> str:
        return json.dumps(as_dict(result), indent=2, ensure_ascii=False) + "\n"


REPORTER = JsonReporter()
