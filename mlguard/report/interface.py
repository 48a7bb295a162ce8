"""What every report writer is: it renders a ScanResult, it never re-scans."""
from __future__ import annotations

from typing import ClassVar, Protocol

from ..findings import ScanResult
from ..record import Record


class RenderOptions(Record):
    """How the user asked for output."""

    color: bool = False
    """ANSI colours (only ever on a terminal)."""
    quiet: bool = False
    """Summary and findings only, no banner."""


class Reporter(Protocol):
    name: ClassVar[str]

    def render(self, result: ScanResult, options: RenderOptions) -> str:
        """The whole report as text."""
        ...
