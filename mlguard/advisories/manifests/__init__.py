"""Dependency manifest parsers: one module per format, each defining ``PARSER`` (see ``interface.py``)."""
from __future__ import annotations

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


__all__ = ["PARSERS", "Dependency", "Manifest", "ManifestParser", "Problem", "Reader", "parser_for"]
