"""Line numbers of keys in a JSON text, for findings about parsed JSON (json.loads keeps no positions)."""
from __future__ import annotations

import json
import re


def key_line(text: str, key: str, start: int = 0) -> int | None:
    """1-based line of the first ``"key":`` at or after character ``start``, None when absent."""
    match = re.compile(re.escape(json.dumps(key)) + r"\s*:").search(text, start)
    return text.count("\n", 0, match.start()) + 1 if match else None
