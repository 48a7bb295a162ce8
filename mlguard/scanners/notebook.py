"""Jupyter notebooks: shell and magic commands in code cells that fetch and run code from elsewhere."""
from __future__ import annotations

import re
from typing import Iterator

from ..findings import Finding
from ..sniff import Format
from ._notebook import parsed as parsed_notebook
from .interface import Artifact, Option, ScanContext

_SHELL = r"^\s*(?:!|%%?(?:sh|bash|system)\b|%?%?pip\b|%?%?conda\b)"
_CHECKS = [
    ("notebook-pipe-to-shell", re.compile(r"\b(curl|wget)\b[^\n|]*\|\s*(sudo\s+)?(ba|z|k)?sh\b|"
                                          r"\b(bash|sh)\s+<\s*\(\s*(curl|wget)\b", re.I)),
    ("notebook-remote-code", re.compile(r"^\s*%(run|load)\s+(-\S+\s+)*(https?|ftp)://", re.I)),
    ("notebook-pip-index", re.compile(r"\bpip3?\s+install\b.*(--extra-index-url|--trusted-host|"
                                      r"(--index-url|-i)\s+http://)", re.I)),
    ("notebook-pip-url", re.compile(r"\bpip3?\s+install\b.*\s(git\+|hg\+|svn\+|https?://|ftp://)", re.I)),
]
"""Checked in order; a line gets the first rule that matches."""


class NotebookScanner:
    name = "notebook"
    formats = frozenset({Format.NOTEBOOK})
    options: dict[str, Option] = {}

    def scan(self, artifact: Artifact, ctx: ScanContext) -> Iterator[Finding | None]:
        parsed = parsed_notebook(artifact)
        if parsed is None:
            return
        nb, values = parsed
        cells = nb["cells"]
        for path, text, line in values:
            if len(path) < 3 or path[0] != "cells" or path[2] != "source" or not isinstance(path[1], int):
                continue
            cell = cells[path[1]]
            if not isinstance(cell, dict) or cell.get("cell_type") != "code":
                continue
            for offset, command in enumerate(text.splitlines()):
                if not re.match(_SHELL, command) and not re.match(r"^\s*%(run|load)\b", command):
                    continue
                for rule, pattern in _CHECKS:
                    if pattern.search(command):
                        yield ctx.finding(artifact, rule, f"cell {path[1] + 1}: {command.strip()[:200]}",
                                          line=line + offset, snippet=command.strip()[:200],
                                          evidence={"cell": path[1] + 1}, key=f"{path[1]}:{command.strip()}")
                        break


SCANNER = NotebookScanner()
