"""Kernels: fast, hostile-input-safe parsers that return neutral FACTS (never verdicts).

Every kernel exists twice, with identical results: in Rust (the extension ``mlguard_rs``, the
default; it releases the GIL while parsing) and in pure Python (:mod:`mlguard.engine.pure`, the
reference). ``MLGUARD_ENGINE=python|native`` forces one. Without the variable the native engine
is used when it can be imported; otherwise ML Guard falls back to the reference engine and logs
one warning on the ``mlguard`` logger.

Pickle facts
============
:func:`pickle_facts` analyses a byte stream the way CPython's unpickler would run it (protocols
0-5, every opcode, text forms of protocol 0 included), without importing or calling anything.
It keeps a symbolic stack and memo: strings keep their text and whether they came from the memo,
imported globals keep their index in ``globals``, call results remember the global they called.
It returns a dict of plain Python values::

    {
     "pickles": [{"index": 0,              # position in the data, 0-based
                  "start": 0,              # offset of the pickle's first opcode
                  "end": 57 | None,        # offset just past STOP; None unless status == "stop"
                  "frame_end": None | int, # a FRAME reached past STOP: where it ends (see below)
                  "protocol": 2 | None,    # argument of the pickle's first PROTO opcode
                  "opcodes": 31,           # opcodes executed (STOP and a failing opcode included)
                  "status": "stop" | "truncated" | "error" | "limit",
                  "error": None | "<error code>",   # set iff status is "error" or "truncated"
                  "error_offset": None | int}],     # where it stopped; set iff status != "stop"
     "globals": [{"pickle": 0, "offset": 2,
                  "opcode": "GLOBAL" | "STACK_GLOBAL" | "INST",
                  "module": "os" | None, "name": "system" | None,  # None when unresolvable
                  "resolution": "literal" | "memo" | "computed",
                  "protocol": 2,           # unpickler protocol when imported (last PROTO, else 0)
                  "truncated": False}],    # module or name cut at limits.max_string characters
     "calls":   [{"pickle": 0, "offset": 40,
                  "opcode": "REDUCE" | "INST" | "OBJ" | "NEWOBJ" | "NEWOBJ_EX" | "BUILD"
                            | "APPEND" | "APPENDS" | "SETITEM" | "SETITEMS" | "ADDITEMS",
                  "target": 0 | None}],    # index into "globals", see below
     "ext":     [{"pickle": 0, "offset": 9, "opcode": "EXT1" | "EXT2" | "EXT4", "code": 123}],
     "persistent_ids": [{"pickle": 0, "offset": 77, "opcode": "PERSID" | "BINPERSID"}],
     "opcode_counts": {"GLOBAL": 1, "REDUCE": 1, ...},  # pickletools names, all pickles summed
     "limit": None | "opcodes" | "memo" | "stack" | "pickles" | "facts",
     "trailing": None | {"offset": int, "length": int},
    }

Offsets are byte offsets of the opcode in ``data``.

Globals. ``module``/``name`` are exactly the text the unpickler would pass to ``find_class``,
before CPython's Python 2 renames (``__builtin__`` -> ``builtins``, applied when ``protocol`` < 3)
and before dotted-name lookup (``protocol`` >= 4): policy does that. GLOBAL lines are UTF-8 and
INST lines ASCII, as in CPython. STACK_GLOBAL takes its two operands from the stack: both
pushed by string opcodes -> "literal"; at least one fetched from the memo (GET/BINGET/
LONG_BINGET) -> "memo"; anything else (a call result, bytes, a number, ...) -> "computed" with
module and name None. STRING/BINSTRING/SHORT_BINSTRING operands (Python 2 ``str``) are decoded
as UTF-8 when valid, else Latin-1 (loaders pick the encoding: ASCII by default, torch uses
UTF-8, numpy Latin-1). A string operand keeps at most ``limits.max_string`` characters; a
global whose module or name was longer is reported with the kept prefix and
``truncated: True``.

Calls. REDUCE: target is the callable's global index when the callable is a global (directly
or fetched from the memo), else None. OBJ: the class is the first item after the mark. NEWOBJ/
NEWOBJ_EX: the class below the arguments. BUILD: the object below the state; target is its
global index if it is a global, or the target of the call that produced it. INST records a
global (opcode "INST") and a call (opcode "INST") whose target is that global. APPEND, APPENDS,
SETITEM, SETITEMS and ADDITEMS call the container's ``append``/``extend``/``__setitem__``/``add``:
they are recorded as calls only when that container is itself a global (``os.environ[k] = v``
is ``GLOBAL os environ`` + SETITEM), never for the lists, dicts and sets a pickle builds.

Several pickles. After STOP, if bytes remain and the next byte is an opcode, it starts another
pickle (even if that one fails later); if it is not an opcode, the rest is ``trailing`` and the
analysis ends. The analysis also ends with the first pickle that does not reach STOP. Each
pickle starts with an empty stack and memo, like ``pickle.load``. Empty data is one pickle
with status "truncated" at offset 0. FRAMEs are transparent (as in the C unpickler) but must
fit in the data. Picklers end the last frame at STOP; if a FRAME announced bytes past STOP,
``frame_end`` is where it ends: ``pickle.load`` on a buffered file continues after STOP (the
next pickle analysed here), but the pure-Python unpickler and the C one reading a BytesIO
continue at ``frame_end`` -- a parser differential worth flagging.

Errors (``pickles[i]["error"]``), a fixed set:

- ``"invalid-opcode"``: a byte that is not an opcode where an opcode was expected.
- ``"truncated"``: the data ends inside an opcode or its argument (a text line without ``\\n``,
  a length prefix longer than the bytes left, a FRAME longer than the rest), or before STOP.
- ``"stack-underflow"``: an opcode needs more stack items (above the innermost MARK) than exist.
- ``"mark-missing"``: an opcode needs a MARK and there is none.
- ``"memo-missing"``: GET/BINGET/LONG_BINGET of a key not stored in this pickle.
- ``"bad-argument"``: a malformed operand: INT/LONG/FLOAT/GET/PUT text, STRING quoting or
  escapes, UNICODE escapes, text that does not decode (GLOBAL UTF-8, INST/PERSID ASCII,
  BINUNICODE UTF-8), an odd DICT/SETITEMS item count, an EXT code <= 0, a memo key beyond
  2**63-1 or a negative PUT.
- ``"negative-length"``: a negative signed length (BINSTRING, LONG4).
- ``"unsupported-protocol"``: PROTO above 5.

Facts gathered before an error are kept: CPython has already run those opcodes. The analysis
is lenient where CPython's behaviour depends on the loader or on objects it cannot know
(types of operands, registered EXT codes, persistent_load, out-of-band buffers, the numeric
value of INT/LONG/FLOAT text): it goes on where CPython might stop, and stops only where
CPython's C unpickler stops too (the pure-Python ``pickle._Unpickler`` would also accept memo
keys beyond 2**63-1).

Limits. Hitting one sets the pickle's status to "limit" (``error`` None, ``error_offset`` the
opcode where it stopped), sets the top-level ``limit`` and ends the analysis. ``max_opcodes``
counts opcodes over all pickles and is checked before each opcode; ``max_stack`` (stack items
plus open marks) and ``max_memo`` (distinct memo keys) are checked after each opcode;
``max_pickles`` before starting each pickle; ``max_facts`` (globals + calls + ext +
persistent_ids, which bounds the size of the result) after each opcode.
"""
from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from typing import Optional

__all__ = [
    "DEFAULT_PICKLE_LIMITS",
    "PickleLimits",
    "engine_name",
    "engine_status",
    "pickle_facts",
]

_ENV = "MLGUARD_ENGINE"
_ENGINES = ("native", "python")
_log = logging.getLogger("mlguard")
_lock = threading.Lock()
_native_module = None        # the imported mlguard_rs, once loaded
_native_error: Optional[str] = None   # why it could not be imported
_native_tried = False
_warned = False


@dataclass(frozen=True)
class PickleLimits:
    """Bounds on the work :func:`pickle_facts` does for one input."""

    max_opcodes: int = 20_000_000
    """Opcodes executed, summed over all pickles of the input."""
    max_memo: int = 1_000_000
    """Distinct memo keys alive in one pickle."""
    max_stack: int = 1_000_000
    """Stack items plus open MARKs in one pickle."""
    max_pickles: int = 64
    """Pickles analysed back to back."""
    max_string: int = 1024
    """Characters kept of a string operand; longer module/name are cut and marked ``truncated``
    (this does not stop the analysis)."""
    max_facts: int = 1_000_000
    """Facts recorded (globals + calls + ext + persistent ids): bounds the result's memory."""

    def __post_init__(self) -> None:
        for field in ("max_opcodes", "max_memo", "max_stack", "max_pickles", "max_string", "max_facts"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**63:
                raise ValueError(f"PickleLimits.{field} must be an int in [0, 2**63), not {value!r}")
        if self.max_string > 0xFFFF_FFFF:
            raise ValueError("PickleLimits.max_string must be < 2**32")


DEFAULT_PICKLE_LIMITS = PickleLimits()


def _load_native():
    """Import mlguard_rs once; remember the reason if it fails."""
    global _native_module, _native_error, _native_tried
    with _lock:
        if not _native_tried:
            try:
                import mlguard_rs  # noqa: PLC0415 - optional extension
                if not hasattr(mlguard_rs, "pickle_facts"):
                    raise ImportError(f"mlguard_rs {getattr(mlguard_rs, '__version__', '?')} "
                                      "has no pickle_facts (stale build?)")
                _native_module = mlguard_rs
            except Exception as exc:  # ImportError, or a broken build raising something else
                _native_error = f"{type(exc).__name__}: {exc}"
            _native_tried = True
    return _native_module


def _forced() -> Optional[str]:
    value = os.environ.get(_ENV, "").strip().lower()
    if not value:
        return None
    if value not in _ENGINES:
        raise ValueError(f"{_ENV}={os.environ[_ENV]!r}: expected 'native' or 'python'")
    return value


def _choose(engine: Optional[str]) -> str:
    """The engine for one call: the explicit argument, else MLGUARD_ENGINE, else native."""
    global _warned
    if engine is not None:
        if engine not in _ENGINES:
            raise ValueError(f"engine={engine!r}: expected 'native', 'python' or None")
        wanted, why = engine, "engine='native' was requested"
    else:
        wanted, why = _forced(), f"{_ENV}=native is set"
    if wanted == "python":
        return "python"
    if _load_native() is not None:
        return "native"
    if wanted == "native":
        raise ImportError(f"{why} but the native extension mlguard_rs cannot be imported "
                          f"({_native_error}); build it with `pip install -e .` or `maturin develop`, "
                          f"or unset {_ENV} to fall back to the pure-Python engine")
    if not _warned:
        _warned = True
        _log.warning("native extension mlguard_rs unavailable (%s); using the pure-Python reference "
                     "engine: results are identical but slower", _native_error)
    return "python"


def engine_name() -> str:
    """``"native"`` or ``"python"``: the engine :func:`pickle_facts` uses by default.

    Raises ImportError if ``MLGUARD_ENGINE=native`` but the extension cannot be imported, and
    ValueError if ``MLGUARD_ENGINE`` has another value.
    """
    return _choose(None)


def engine_status() -> str:
    """One human-readable line: which engine runs and why. Never raises."""
    try:
        name = _choose(None)
    except (ImportError, ValueError) as exc:
        return f"unavailable ({exc})"
    if name == "native":
        return f"native (mlguard_rs {getattr(_native_module, '__version__', '?')})"
    forced = os.environ.get(_ENV, "").strip().lower() == "python"
    if forced:
        return f"python (reference; forced by {_ENV}=python)"
    return f"python (reference; native extension unavailable: {_native_error})"


def pickle_facts(data, *, limits: PickleLimits = DEFAULT_PICKLE_LIMITS,
                 engine: Optional[str] = None) -> dict:
    """Facts about the pickle stream(s) in ``data``; see the module docstring for the schema.

    ``data`` is any bytes-like object (bytes, bytearray, memoryview, mmap.mmap, ...); the native
    engine reads it in place and releases the GIL while parsing. ``engine`` forces ``"native"``
    or ``"python"`` for this call. Never raises because of the content of ``data``.
    """
    if not isinstance(limits, PickleLimits):
        raise TypeError(f"limits must be a PickleLimits, not {type(limits).__name__}")
    with memoryview(data) as view:  # TypeError for non-buffers, same for both engines
        contiguous = view.c_contiguous
    if not contiguous:
        data = memoryview(data).tobytes()
    kwargs = dict(max_opcodes=limits.max_opcodes, max_memo=limits.max_memo,
                  max_stack=limits.max_stack, max_pickles=limits.max_pickles,
                  max_string=limits.max_string, max_facts=limits.max_facts)
    if _choose(engine) == "native":
        return _native_module.pickle_facts(data, **kwargs)
    from .pure import pickle as pure_pickle  # noqa: PLC0415 - only when needed
    return pure_pickle.analyze(data, **kwargs)
