"""``--format text``: grouped by file, worst first, colour only when asked (the CLI asks on a TTY)."""
from __future__ import annotations

from itertools import groupby

from ..findings import SEVERITIES_DESCENDING, ScanResult, Severity
from .interface import RenderOptions

_COLORS = {Severity.CRITICAL: "1;31", Severity.HIGH: "31", Severity.MEDIUM: "33", Severity.LOW: "36",
           Severity.INFO: "2"}
_MARKS = {Severity.CRITICAL: "✗", Severity.HIGH: "✗", Severity.MEDIUM: "!", Severity.LOW: "·", Severity.INFO: "·"}


class TextReporter:
    name = "text"

    def render(self, result: ScanResult, options: RenderOptions) -> str:
        def paint(text: str, code: str) -> str:
            return f"\x1b[{code}m{text}\x1b[0m" if options.color else text

        lines = []
        if not options.quiet:
            lines += ["ML Guard — scan report", "=" * 40]
        counts = result.summary
        summary = ", ".join(f"{counts[s.value]} {s.value}" for s in SEVERITIES_DESCENDING if counts[s.value])
        lines.append(f"Files scanned: {result.files_scanned}   Time: {result.duration_seconds:.2f}s   "
                     f"Engine: {result.engine}")
        lines.append(f"Summary: {summary or 'no findings'}")
        for path, group in groupby(result.findings, key=lambda f: f.path):
            lines += ["", paint(path, "1")]
            for f in sorted(group, key=lambda f: (-f.severity.rank, f.sort_key())):
                where = f.location.describe()
                label = paint(f"{_MARKS[f.severity]} {f.severity.value.upper():<8}", _COLORS[f.severity])
                lines.append(f"  {label} {f.rule_id}" + (f"  [{where}]" if where else ""))
                lines.append(f"      {f.message}")
                if f.snippet:
                    lines.append(paint(f"      snippet: {f.snippet}", "2"))
        for error in result.errors:
            lines.append(paint(f"error: {error.path}: {error.message}", "31"))
        return "\n".join(lines) + "\n"


REPORTER = TextReporter()
