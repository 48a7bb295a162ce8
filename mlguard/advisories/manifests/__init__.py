"""Dependency manifest parsers: one module per format, each defining ``PARSER`` (see ``interface.py``)."""
from __future__ import annotations

import os

from .conda import PARSER as CONDA
from .interface import Dependency, Manifest, ManifestParser, Problem, Reader
from .pipfile_lock import PARSER as PIPFILE_LOCK
from .poetry_lock import PARSER as POETRY_LOCK
from .pylock import PARSER as PYLOCK
from .pyproject import PARSER as PYPROJECT
from .requirements import PARSER as REQUIREMENTS
from .uv_lock import PARSER as UV_LOCK

PARSERS: tuple[ManifestParser, ...] = (REQUIREMENTS, PYPROJECT, POETRY_LOCK, UV_LOCK, PIPFILE_LOCK, PYLOCK, CONDA)
"""Every manifest parser (their ``matches`` never overlap)."""


def parser_for(filename: str) -> ManifestParser | None:
    """The parser for a file of this base name, None when it is not a known manifest."""
    return next((p for p in PARSERS if p.matches(filename)), None)


MAX_INCLUDE = 4 << 20
"""Bytes of a file pulled in by ``-r``/``-c``."""


def tree_reader(root: str) -> Reader:
    """A reader for includes (``-r``, ``-c``) that reads only regular files inside ``root``, bounded in size;
    sources are paths relative to ``root``."""
    root = os.path.realpath(root)

    def read(including: str, relative: str):
        target = os.path.realpath(os.path.join(root, os.path.dirname(including), relative))
        if os.path.commonpath([root, target]) != root or not os.path.isfile(target):
            return None
        if os.path.getsize(target) > MAX_INCLUDE:
            return None
        with open(target, "rb") as f:
            text = f.read(MAX_INCLUDE).decode("utf-8", "replace")
        return os.path.relpath(target, root).replace(os.sep, "/"), text
    return read


__all__ = ["tree_reader", "PARSERS", "Dependency", "Manifest", "ManifestParser", "Problem", "Reader", "parser_for"]
