"""Secrets written into text files: provider tokens, private keys, passwords in URLs and configuration.

What is searched (rules in ``rules/secrets.yaml``, detection in :mod:`mlguard.secrets`):

* text, JSON and YAML files; binary files and model formats never reach this scanner;
* notebooks: the cell sources and the text outputs (streams, ``text/*`` data, error tracebacks), each
  finding at the line of the ``.ipynb`` file that holds the text; images and other binary outputs are
  skipped;
* not tokenizer vocabularies (``tokenizer.json``, ``vocab.json``, ``vocab.txt``, ``merges.txt``,
  ``*.vocab``): generated model data full of token-shaped strings, where nobody writes credentials;
* lock files (``poetry.lock``, ``uv.lock``, ``package-lock.json``, ``*.lock``, ``*.sum``, ...) with the
  rules that recognise a secret by its own shape only (``ghp_…``, ``https://user:pass@``), not the
  keyword-gated ones: lock files are full of hashes.

A line holding ``ml-guard: allow`` (any line the secret spans) suppresses the finding. One finding per
distinct secret and rule per file, at its first occurrence (``evidence.lines`` lists them all). Its
snippet is redacted and its fingerprint keys on a keyed hash of the secret, not on its line.
"""
from __future__ import annotations

import re
from bisect import bisect_right
from typing import Iterator

from ..secrets import Hit, detector
from ..sniff import Format
from ._notebook import parsed as parsed_notebook
from .interface import Artifact, Option, ScanContext

TOKENIZER_FILES = frozenset({"tokenizer.json", "vocab.json", "vocab.txt", "merges.txt"})
LOCK_FILES = frozenset({"package-lock.json", "npm-shrinkwrap.json", "pnpm-lock.yaml", "conda-lock.yml"})
"""Lock files not named ``*.lock`` or ``*.sum``."""
_ALLOW = re.compile(rb"ml-guard:\s*allow", re.IGNORECASE)
_MAX_LINES = 20


class SecretScanner:
    name = "secrets"
    formats = frozenset({Format.TEXT, Format.JSON, Format.YAML, Format.NOTEBOOK})
    options = {
        "max_file_size": Option("int", 32 << 20, "Files larger than this (bytes) are reported "
                                                  "(`secrets-file-too-large`), not searched."),
    }

    def scan(self, artifact: Artifact, ctx: ScanContext) -> Iterator:
        name = artifact.name.lower()
        if name in TOKENIZER_FILES or name.endswith(".vocab"):
            return
        limit = ctx.options(self)["max_file_size"]
        if artifact.size > limit:
            yield ctx.finding(artifact, "secrets-file-too-large",
                              f"{artifact.size:,} bytes, over secrets.max_file_size ({limit:,}); not searched "
                              "for secrets", evidence={"size": artifact.size})
            return
        data = artifact.buffer()
        text = (_notebook_text(artifact) if artifact.sniffed.format is Format.NOTEBOOK else None) or _Text(data)
        lock = name in LOCK_FILES or name.endswith((".lock", ".sum"))
        occurrences: dict[tuple[str, str], list[tuple[Hit, int]]] = {}
        for hit in detector(shape_only=lock).find(text.data):   # in offset order
            if not text.allowed(min(hit.start, hit.secret_start), hit.secret_end):
                occurrences.setdefault((hit.rule.id, hit.key), []).append((hit, text.line(hit.secret_start)))
        for hits in occurrences.values():
            yield _finding(ctx, artifact, text, hits)


def _finding(ctx: ScanContext, artifact: Artifact, text: _Text, hits: list[tuple[Hit, int]]):
    """One finding for every occurrence of one secret of one rule: (hit, line) in offset order."""
    first, verdict = hits[0][0], hits[0][0].verdict
    lines = [line for _, line in hits]
    message = ctx.catalog[first.rule.id].title + (f": {verdict.note}" if verdict.note else "")
    evidence = {"length": len(first.secret), "entropy": first.entropy, **verdict.evidence}
    if len(hits) > 1:
        message += f" ({len(hits)} occurrences)"
        evidence["lines"] = lines[:_MAX_LINES]
    cell = text.cell(first.secret_start)
    if cell is not None:
        evidence["cell"] = cell
    return ctx.finding(artifact, first.rule.id, message, line=lines[0], column=text.column(first.secret_start),
                       snippet=first.snippet, evidence=evidence, key=first.key, severity=verdict.severity)


class _Text:
    """Bytes searched for secrets, and where an offset in them is in the file."""

    def __init__(self, data, segments: list[tuple[int, int, int]] | None = None):
        self.data = data if isinstance(data, bytes) or hasattr(data, "rfind") else bytes(data)
        self._segments = segments
        """Notebooks: (offset in ``data``, line in the file, cell number) of each searched string, in order."""
        self._starts = [s[0] for s in segments or ()]
        self._counted = (0, 1)   # (offset, its line): lines are mostly asked for in increasing offsets

    def line(self, offset: int) -> int:
        """1-based line of the file."""
        if self._segments is not None:
            return self._segments[bisect_right(self._starts, offset) - 1][1]
        pos, line = self._counted if offset >= self._counted[0] else (0, 1)
        line += bytes(self.data[pos:offset]).count(b"\n")
        self._counted = (offset, line)
        return line

    def column(self, offset: int) -> int | None:
        return None if self._segments is not None else offset - self.data.rfind(b"\n", 0, offset)

    def cell(self, offset: int) -> int | None:
        return None if self._segments is None else self._segments[bisect_right(self._starts, offset) - 1][2]

    def allowed(self, start: int, end: int) -> bool:
        """Whether a line from the one holding ``start`` to the one holding ``end`` says ``ml-guard: allow``."""
        first = self.data.rfind(b"\n", 0, start) + 1
        last = self.data.find(b"\n", end)
        return _ALLOW.search(bytes(self.data[first:last if last >= 0 else len(self.data)])) is not None


def _notebook_text(artifact: Artifact) -> _Text | None:
    """The searched strings of a notebook, joined, with the .ipynb line of each; None when the file is not
    a notebook this reader understands (it is then searched as plain text)."""
    parsed = parsed_notebook(artifact)
    if parsed is None:
        return None
    parts: list[bytes] = []
    segments: list[tuple[int, int, int]] = []
    size, previous = 0, None
    for path, value, line in parsed[1]:
        where = _searched(path)
        if where is None:
            continue
        if where != previous and parts:
            parts.append(b"\n")
            size += 1
        previous = where
        segments.append((size, line, path[1] + 1))
        encoded = value.encode("utf-8", "surrogatepass")
        parts.append(encoded)
        size += len(encoded)
    return _Text(b"".join(parts), segments)


def _searched(path: tuple | None) -> tuple | None:
    """The field a notebook string belongs to, if it is searched: a cell's ``source``, or an output's
    ``text``, ``traceback``, ``evalue`` or ``text/*`` data (a field may be a list of lines)."""
    if path is None or len(path) < 3 or path[0] != "cells" or not isinstance(path[1], int):
        return None
    if path[2] == "source" and len(path) <= 4:
        return path[:3]
    if path[2] != "outputs" or len(path) < 5:
        return None
    if path[4] in ("text", "traceback", "evalue") and len(path) <= 6:
        return path[:5]
    if path[4] == "data" and len(path) in (6, 7) and str(path[5]).startswith("text/"):
        return path[:6]
    return None


SCANNER = SecretScanner()
