"""One structured event per guard decision: to the ``mlguard`` logger, and as JSON lines appended to the
file named by ``MLGUARD_EVENT_LOG`` (read when ``protect()`` is called)."""
from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time

from ..findings import ScanResult

logger = logging.getLogger("mlguard")
_write_lock = threading.Lock()
_LIBRARIES = frozenset({"mlguard", "wrapt", "pickle", "_pickle", "copyreg", "torch", "numpy", "joblib", "pandas",
                        "dill", "cloudpickle", "onnx", "onnxruntime", "safetensors", "importlib", "contextlib",
                        "functools"})
"""Frames of these packages are skipped when looking for the caller of a load."""
_TOP = 5


def caller_frame() -> tuple[str, int]:
    """File and line of the first frame outside ML Guard and the loader libraries."""
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_globals.get("__name__", "").partition(".")[0] not in _LIBRARIES:
            return frame.f_code.co_filename, frame.f_lineno
        frame = frame.f_back
    return "<unknown>", 0


def caller() -> str:
    """``file:line`` of the code that asked for the load."""
    return "%s:%d" % caller_frame()


def emit(log_file: str | None, entry: str, source: str, verdict: str, result: ScanResult | None = None, *,
         reason: str | None = None, **details) -> dict:
    """Record one decision, also as a JSON line appended to ``log_file`` when given. ``verdict`` is
    ``allowed``, ``refused``, ``warned`` or ``audited``."""
    event = {
        "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + f".{int(time.time() * 1000) % 1000:03d}Z",
        "pid": os.getpid(), "entry": entry, "source": source, "verdict": verdict,
        "findings": summary(result), "reason": reason, "caller": caller(), **details,
    }
    level = logging.INFO if verdict == "allowed" else logging.WARNING
    if logger.isEnabledFor(level):
        logger.log(level, "%s %s %s%s", verdict, entry, source, f": {reason}" if reason else "",
                   extra={"mlguard_event": event})
    if log_file:
        line = json.dumps(event, sort_keys=True, default=str) + "\n"
        try:
            with _write_lock, open(log_file, "a", encoding="utf-8") as f:
                f.write(line)
        except OSError as exc:
            logger.error("cannot write MLGUARD_EVENT_LOG %s: %s", log_file, exc)
    return event


def summary(result: ScanResult | None) -> dict:
    """Counts by severity and the most severe findings (rule, severity, message, where)."""
    if result is None:
        return {"counts": {}, "top": []}
    worst = sorted(result.findings, key=lambda f: -f.severity.rank)[:_TOP]
    return {"counts": {k: v for k, v in result.summary.items() if v},
            "top": [{"rule": f.rule_id, "severity": f.severity.value, "message": f.message,
                     "member": f.location.member} for f in worst]}
