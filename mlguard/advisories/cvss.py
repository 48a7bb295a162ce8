"""CVSS base scores from vector strings, as found in OSV ``severity`` entries.

Implements the FIRST specifications:

* CVSS v3.0 and v3.1 base score (each version's own Roundup),
* CVSS v2 base score (``AV:N/AC:L/Au:N/C:P/I:P/A:P``, optionally wrapped in ``(...)``).

CVSS v4.0 is **not** scored: its score comes from a MacroVector lookup table plus an
interpolation whose exact details are defined by the reference implementation rather
than the specification text. :func:`base_score` raises :class:`CVSSError` for a v4.0
vector and :func:`score` returns ``None``.

Temporal and environmental metrics may appear in a vector; their values are validated
but they do not change the base score.
"""
from __future__ import annotations

import math

__all__ = ["CVSSError", "base_score", "severity", "score"]

MAX_VECTOR_LENGTH = 256


class CVSSError(ValueError):
    """A vector string that cannot be scored; the message names the vector and the problem."""

    def __init__(self, vector: object, problem: str):
        shown = vector if not isinstance(vector, str) or len(vector) <= 80 else vector[:77] + "..."
        super().__init__(f"invalid CVSS vector {shown!r}: {problem}")
        self.vector = vector
        self.problem = problem


# --- CVSS v3.x (specification section 7.4, "Metric Values") ---------------------------

_V3_BASE = {
    "AV": {"N": 0.85, "A": 0.62, "L": 0.55, "P": 0.2},
    "AC": {"L": 0.77, "H": 0.44},
    "PR": {"N": 0.85, "L": 0.62, "H": 0.27},  # scope unchanged; see _V3_PR_CHANGED
    "UI": {"N": 0.85, "R": 0.62},
    "S": {"U": None, "C": None},
    "C": {"H": 0.56, "L": 0.22, "N": 0.0},
    "I": {"H": 0.56, "L": 0.22, "N": 0.0},
    "A": {"H": 0.56, "L": 0.22, "N": 0.0},
}
_V3_PR_CHANGED = {"N": 0.85, "L": 0.68, "H": 0.5}
_V3_OPTIONAL = {  # temporal and environmental metrics: validated, not scored
    name: tuple(values) for name, values in {
        "E": "XUPFH", "RL": "XOTWU", "RC": "XURC",
        "CR": "XLMH", "IR": "XLMH", "AR": "XLMH",
        "MAV": "XNALP", "MAC": "XLH", "MPR": "XNLH", "MUI": "XNR", "MS": "XUC",
        "MC": "XNLH", "MI": "XNLH", "MA": "XNLH",
    }.items()
}

# --- CVSS v2 (guide section 3.2.1, "Base Equation") -----------------------------------

_V2_BASE = {
    "AV": {"L": 0.395, "A": 0.646, "N": 1.0},
    "AC": {"H": 0.35, "M": 0.61, "L": 0.71},
    "Au": {"M": 0.45, "S": 0.56, "N": 0.704},
    "C": {"N": 0.0, "P": 0.275, "C": 0.660},
    "I": {"N": 0.0, "P": 0.275, "C": 0.660},
    "A": {"N": 0.0, "P": 0.275, "C": 0.660},
}
_V2_OPTIONAL = {  # temporal and environmental metrics: validated, not scored
    "E": ("U", "POC", "F", "H", "ND"), "RL": ("OF", "TF", "W", "U", "ND"),
    "RC": ("UC", "UR", "C", "ND"), "CDP": ("N", "L", "LM", "MH", "H", "ND"),
    "TD": ("N", "L", "M", "H", "ND"), "CR": ("L", "M", "H", "ND"),
    "IR": ("L", "M", "H", "ND"), "AR": ("L", "M", "H", "ND"),
}


def _parse(vector: str, body: str, base: dict, optional: dict) -> dict:
    """Split ``M:V/M:V/...`` into a dict, checking names, values, duplicates and completeness."""
    metrics: dict = {}
    for part in body.split("/"):
        name, sep, value = part.partition(":")
        if not sep or not name or not value:
            raise CVSSError(vector, f"malformed component {part!r} (expected METRIC:VALUE)")
        if name in metrics:
            raise CVSSError(vector, f"duplicate metric {name!r}")
        allowed = base.get(name, optional.get(name))
        if allowed is None:
            raise CVSSError(vector, f"unknown metric {name!r}")
        if value not in allowed:
            raise CVSSError(vector, f"unknown value {value!r} for metric {name!r}")
        metrics[name] = value
    missing = [name for name in base if name not in metrics]
    if missing:
        raise CVSSError(vector, f"missing mandatory metric(s) {', '.join(missing)}")
    return metrics


def _roundup_30(x: float) -> float:
    """v3.0 Roundup: smallest one-decimal number >= x (computed as ceil(x * 10) / 10)."""
    return math.ceil(x * 10) / 10


def _roundup_31(x: float) -> float:
    """v3.1 Roundup (Appendix A): the same, done in integer space to avoid float artefacts."""
    scaled = int(math.floor(x * 100_000 + 0.5))
    if scaled % 10_000 == 0:
        return scaled / 100_000
    return (scaled // 10_000 + 1) / 10


def _v3_score(vector: str, minor: str, body: str) -> float:
    m = _parse(vector, body, _V3_BASE, _V3_OPTIONAL)
    changed = m["S"] == "C"
    iss = 1 - ((1 - _V3_BASE["C"][m["C"]]) * (1 - _V3_BASE["I"][m["I"]]) * (1 - _V3_BASE["A"][m["A"]]))
    if changed:
        impact = 7.52 * (iss - 0.029) - 3.25 * (iss - 0.02) ** 15
    else:
        impact = 6.42 * iss
    if impact <= 0:
        return 0.0
    pr = (_V3_PR_CHANGED if changed else _V3_BASE["PR"])[m["PR"]]
    exploitability = 8.22 * _V3_BASE["AV"][m["AV"]] * _V3_BASE["AC"][m["AC"]] * pr * _V3_BASE["UI"][m["UI"]]
    total = 1.08 * (impact + exploitability) if changed else impact + exploitability
    roundup = _roundup_31 if minor == "1" else _roundup_30
    return roundup(min(total, 10))


def _v2_score(vector: str, body: str) -> float:
    m = _parse(vector, body, _V2_BASE, _V2_OPTIONAL)
    w = {name: _V2_BASE[name][m[name]] for name in _V2_BASE}
    impact = 10.41 * (1 - (1 - w["C"]) * (1 - w["I"]) * (1 - w["A"]))
    exploitability = 20 * w["AV"] * w["AC"] * w["Au"]
    f_impact = 0 if impact == 0 else 1.176
    raw = ((0.6 * impact) + (0.4 * exploitability) - 1.5) * f_impact
    return math.floor(raw * 10 + 0.5) / 10  # round_to_1_decimal (half up)


def base_score(vector: str) -> float:
    """Base score (0.0-10.0) of a CVSS v2, v3.0 or v3.1 vector.

    Raises :class:`CVSSError` for a malformed vector (over 256 characters, bad component,
    unknown metric or value, duplicate or missing mandatory metric) or an unknown or
    unsupported version (including CVSS v4.0, which is not scored).
    """
    if not isinstance(vector, str):
        raise CVSSError(vector, f"expected a string, got {type(vector).__name__}")
    if len(vector) > MAX_VECTOR_LENGTH:
        raise CVSSError(vector, f"longer than {MAX_VECTOR_LENGTH} characters")
    if not vector:
        raise CVSSError(vector, "empty vector")
    if vector.startswith("CVSS:"):
        prefix, _, body = vector.partition("/")
        version = prefix[len("CVSS:"):]
        if version in ("3.0", "3.1"):
            return _v3_score(vector, version[-1], body)
        if version == "4.0":
            raise CVSSError(vector, "CVSS v4.0 scoring is not supported")
        raise CVSSError(vector, f"unknown CVSS version {version!r}")
    body = vector
    if body.startswith("(") or body.endswith(")"):
        if not (body.startswith("(") and body.endswith(")")):
            raise CVSSError(vector, "unbalanced parentheses")
        body = body[1:-1]
    return _v2_score(vector, body)


def severity(score: float) -> str:
    """Qualitative rating of a score on the CVSS v3 scale: none, low, medium, high, critical.

    Raises :class:`ValueError` for a score outside 0.0-10.0.
    """
    if not 0 <= score <= 10:  # also rejects NaN
        raise ValueError(f"CVSS score out of range 0.0-10.0: {score!r}")
    if score == 0:
        return "none"
    if score < 4.0:
        return "low"
    if score < 7.0:
        return "medium"
    if score < 9.0:
        return "high"
    return "critical"


_OSV_PREFIXES = {"CVSS_V2": None, "CVSS_V3": ("CVSS:3.0/", "CVSS:3.1/")}


def score(osv_type: str, vector: str) -> float | None:
    """Base score of an OSV ``severity`` entry (``type``, ``score``); never raises.

    ``osv_type`` is ``"CVSS_V2"`` or ``"CVSS_V3"``. Returns ``None`` for an unsupported
    type (including ``"CVSS_V4"``), a malformed vector, or a vector of another version
    than the type says.
    """
    if not isinstance(osv_type, str) or osv_type not in _OSV_PREFIXES or not isinstance(vector, str):
        return None
    prefixes = _OSV_PREFIXES[osv_type]
    if prefixes is None and vector.startswith("CVSS:"):
        return None
    if prefixes is not None and not vector.startswith(prefixes):
        return None
    try:
        return base_score(vector)
    except CVSSError:
        return None
