"""Jupyter notebooks as the strings they hold, each with the line of the ``.ipynb`` file its literal is on
(json.loads keeps no positions: the string literals of the raw text are matched, in order, to the parsed
strings). Shared by the secrets scanner and the notebook scanner."""
from __future__ import annotations

import json
import re
from typing import Iterator

_JSON_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)


def parsed(artifact) -> tuple[dict, list[tuple[tuple, str, int]]] | None:
    """:func:`strings` of an artifact's content (None when it is not UTF-8), parsed once for all its scanners."""
    if "notebook" not in artifact.derived:
        try:
            artifact.derived["notebook"] = strings(bytes(artifact.buffer()).decode("utf-8"))
        except UnicodeDecodeError:
            artifact.derived["notebook"] = None
    return artifact.derived["notebook"]


def strings(raw: str) -> tuple[dict, list[tuple[tuple, str, int]]] | None:
    """The parsed notebook and every string value in document order as (path, value, line); None when the text
    is not a notebook, or holds duplicate keys (literal positions then cannot be trusted)."""
    try:
        nb = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    if not isinstance(nb, dict) or not isinstance(nb.get("cells"), list):
        return None
    literals = _JSON_STRING.finditer(raw)
    out: list[tuple[tuple, str, int]] = []
    line, pos = 1, 0
    for path, value in _walk(nb, ()):
        literal = next(literals, None)
        if literal is None or json.loads(literal.group()) != value:
            return None
        line += raw.count("\n", pos, literal.start())
        pos = literal.start()
        if path is not None:
            out.append((path, value, line))
    return nb, out


def _walk(node, path: tuple) -> Iterator[tuple[tuple | None, str]]:
    """Every string of parsed JSON in document order, keys included (with path None), as the literals appear
    in the file."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield None, key
            yield from _walk(value, path + (key,))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _walk(value, path + (i,))
    elif isinstance(node, str):
        yield path, node
