"""Kernels: fast, hostile-input-safe parsers that return neutral FACTS (never verdicts).

Every kernel exists twice, with identical results: in Rust (the extension ``mlguard_rs``, the
default; it releases the GIL while parsing) and in pure Python (:mod:`mlguard.engine.pure`, the
reference). ``MLGUARD_ENGINE=python|native`` forces one. Without the variable the native engine
is used when it can be imported; otherwise ML Guard falls back to the reference engine and logs
one warning on the ``mlguard`` logger.

Pickle facts
============
:func:`pickle_facts` analyses a byte stream the way CPython's unpickler would run it (protocols
0-5, every opcode, text forms of protocol 0 included), without importing or calling anything;
:func:`pickle_facts_file` does the same for a range of a file with bounded memory. It keeps a
symbolic stack and memo: strings are spans of the data (decoded when an import needs them) and
remember whether they came from the memo, imported globals keep their index in ``globals``,
call results remember the global they called, and the few literals joblib's array format needs
(ints, tuples, the dicts and numpy dtypes it writes) are tracked. It returns a dict of plain
Python values::

    {
     "pickles": [{"index": 0,              # position in "pickles", 0-based
                  "parent": None | int,    # a nested pickle (joblib object array): the index of
                                           # the pickle that reads it; None for the data's own
                  "start": 0,              # offset of the pickle's first opcode
                  "end": 57 | None,        # offset just past STOP; None unless status == "stop"
                  "frame_end": None | int, # pure-Python unpickler's position after STOP, when
                                           # beyond "end" (a frame reaching past STOP)
                  "protocol": 2 | None,    # argument of the pickle's first PROTO opcode
                  "opcodes": 31,           # opcodes executed (STOP and a failing opcode included)
                  "status": "stop" | "truncated" | "error" | "limit",
                  "error": None | "<error code>",   # set iff status is "error" or "truncated"
                  "error_offset": None | int,       # where it stopped; set iff status != "stop"
                  "frame_violations": [{"offset": 11, "kind": "<violation kind>"}],
                  "memo_dropped": 0}],     # PUTs whose value the memo dropped (max_memo below)
     "globals": [{"pickle": 0, "offset": 2,
                  "opcode": "GLOBAL" | "STACK_GLOBAL" | "INST",
                  "module": "os" | None, "name": "system" | None,  # None when unresolvable
                  "resolution": "literal" | "memo" | "computed",
                  "protocol": 2,           # unpickler protocol when imported (last PROTO, else 0)
                  "truncated": False,      # module or name cut at limits.max_string characters
                  "count": 1}],            # imports this fact stands for (compact mode)
     "calls":   [{"pickle": 0, "offset": 40,
                  "opcode": "REDUCE" | "INST" | "OBJ" | "NEWOBJ" | "NEWOBJ_EX" | "BUILD"
                            | "APPEND" | "APPENDS" | "SETITEM" | "SETITEMS" | "ADDITEMS",
                  "target": 0 | None,      # index into "globals", see below
                  "args": [{"index": 0, "kind": "str" | "str-legacy" | "str-escaped"
                                                | "str-raw-unicode-escape" | "bytes" | "bytearray",
                            "offset": 30, "length": 7},      # a string/bytes literal argument
                           {"index": 1, "kind": "global",
                            "global": 2}],                   # an imported-global argument
                  "count": 1}],            # call sites this fact stands for (compact mode)
     "ext":     [{"pickle": 0, "offset": 9, "opcode": "EXT1" | "EXT2" | "EXT4", "code": 123}],
     "persistent_ids": [{"pickle": 0, "offset": 77, "opcode": "PERSID" | "BINPERSID",
                         "count": 1}],     # persistent ids this fact stands for (compact mode)
     "raw_spans": [{"pickle": 0, "offset": 229, "length": 59, "padding": 11,
                    "kind": "joblib-array"}],      # bytes joblib reads raw (see below)
     "opcode_counts": {"GLOBAL": 1, "REDUCE": 1, ...},  # pickletools names, all pickles summed
     "limit": None | "opcodes" | "memo" | "stack" | "pickles" | "facts",
     "trailing": None | {"offset": int, "length": int},
    }

``calls`` and ``persistent_ids`` are in the order the opcodes ran (a joblib nested pickle's
facts come between those of the BUILD that reads it and the next opcode of its parent), as are
the other lists.

Compact mode (``compact=True``). A big checkpoint calls the same few globals thousands of times
(a PyTorch ``data.pkl`` with N tensors: N ``_rebuild_tensor_v2`` and N ``OrderedDict`` REDUCEs,
N BINPERSIDs); building one dict per call costs far more than the parse. With ``compact=True``:

- the calls are grouped by (``pickle``, ``opcode``, ``target``) (``target`` None is a group of
  its own): each group is ONE fact with the group's first call's ``offset`` and ``args`` and
  ``count`` = the number of calls in the group (an object column of a big DataFrame makes
  millions of calls of one callable, each with its own arguments; the scanner asks again without
  compact mode when it needs every call's arguments);
- ``persistent_ids`` are grouped by (``pickle``, ``opcode``) the same way (all of them: they
  have no arguments);
- ``globals`` are grouped by (``pickle``, ``opcode``, ``module``, ``name``, ``resolution``,
  ``protocol``, ``truncated``) the same way: a stream that imports one name a million times
  (benign pickles import a name once and fetch it from the memo) gives one fact. A call's
  ``target`` and its global arguments name the group, so the calls of all imports of one name
  are one call group;
- order: each list is the normal list in which every group is kept at the position of its
  first member and its other members are dropped (first-occurrence order; as offsets increase
  along a pickle, this is also the order of each fact's first offset, except around a joblib
  nested pickle read while a frame is unfinished).

Summing ``count`` per group key gives the same totals in both modes (for calls, with each
target read as its import's module and name): all that compact mode drops is where the later
members of a group are and their arguments. ``max_facts`` counts the facts recorded, so a group
counts once: where the normal mode stops at that limit, compact mode may go further. Otherwise
limits, statuses, errors, ``ext``, ``raw_spans``, ``opcode_counts`` and ``trailing`` are exactly
those of the normal mode. In the normal mode every ``count`` is 1.

Offsets are byte offsets in ``data`` (for :func:`pickle_facts_file`, from the start of the
range): of the opcode, except for argument payloads and raw spans.

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

Call arguments. ``args`` lists the string and bytes literals and the imported globals that are
direct arguments of the call, in order, at most 8 (literals and globals counted together):
REDUCE and NEWOBJ/NEWOBJ_EX, the items of the argument tuple (built by EMPTY_TUPLE/TUPLE1/
TUPLE2/TUPLE3/TUPLE, possibly fetched from the memo; only its first 64 items are tracked, and a
tuple is not tracked at all beyond 2**20 tuple items per pickle); OBJ, the items after the
class; INST, the items after the mark; BUILD, the state itself; APPEND the item, SETITEM key and
value, APPENDS/SETITEMS/ADDITEMS the items after the mark. ``index`` is the position among
those arguments. Items of a nested tuple (or list, dict, ...) are not direct arguments.

An imported global is the object a GLOBAL or STACK_GLOBAL pushed, directly or fetched from the
memo: ``{"index", "kind": "global", "global": <index into "globals">}``, without ``offset`` and
``length`` keys (check ``kind`` before reading them). This is how ``getattr(zoneinfo.ZoneInfo,
'_unpickle')`` (CPython's pickle of a bound method: REDUCE of ``builtins.getattr`` with the
class and a name) and ``functools.partial(len, ...)`` show what they act on. The result of a
call (including the instance INST creates) is not a global, nor is an EXT or persistent-id
object.

A literal is ``{"index", "kind", "offset", "length"}``. A literal fetched from the memo is
reported where its payload lies. ``offset``/``length`` locate the payload in ``data``; ``kind``
says how it becomes the value: "str" UTF-8 (BINUNICODE, SHORT_BINUNICODE, BINUNICODE8; decode
with ``"surrogatepass"``), "str-legacy" a Python 2 str (BINSTRING, SHORT_BINSTRING; the loader's
encoding decides), "str-escaped" the text between the quotes of STRING (``codecs.escape_decode``
it, then as str-legacy), "str-raw-unicode-escape" the line of UNICODE (decode with
``"raw-unicode-escape"``), "bytes" (BINBYTES, SHORT_BINBYTES, BINBYTES8) and "bytearray"
(BYTEARRAY8) the bytes themselves.

Several pickles. After STOP, if bytes remain and the next byte is an opcode, it starts another
pickle (even if that one fails later); if it is not an opcode, the rest is ``trailing`` and the
analysis ends. The analysis also ends with the first pickle that does not reach STOP. Each
pickle starts with an empty stack and memo, like ``pickle.load``. Empty data is one pickle
with status "truncated" at offset 0. The next pickle starts at ``end``, where ``pickle.load``
on a buffered file continues; the pure-Python unpickler and the C one reading a BytesIO
continue at ``frame_end`` instead.

Framing (CPython 3.11). The analysis reads the bytes contiguously, as the C unpickler does on
``pickle.loads``, and records where loaders disagree as ``frame_violations`` (in the order
found), a fixed set of kinds:

- ``"crosses-frame-end"`` (offset: the opcode): one read of an opcode -- its argument, a length
  prefix, or a text line -- starts inside the current frame and ends after it. The pure-Python
  unpickler raises "pickle exhausted before end of frame"; ``pickle.loads`` is not affected;
  the C unpickler reading a file drops the frame's remaining bytes when the frame was read
  with ``read()`` (frames larger than the file's buffer) and reads the operand from after the
  frame -- another value, or a failure. An argument that starts exactly at the frame's end is
  fine for every loader.
- ``"frame-in-frame"`` (offset: the FRAME): a FRAME while the current frame still has unread
  bytes. The pure-Python unpickler raises; the C unpickler accepts it (from a file it may skip
  bytes).
- ``"frame-beyond-data"`` (offset: the FRAME): a FRAME announces more bytes than remain. The C
  unpickler fails ("pickle data was truncated"); the pure-Python unpickler (joblib's) goes on
  with the shorter frame, so the analysis goes on too. A FRAME length above 2**63-1 fails in
  every unpickler: error "bad-argument".
- ``"frame-past-stop"`` (offset: the FRAME): STOP inside a frame that continues after it;
  ``frame_end`` says where.
- ``"joblib-data-in-frame"`` (offset: the BUILD): joblib array data follows a BUILD inside a
  frame that still has unread bytes: joblib reads it from after the frame (and the analysis
  follows: the rest of the frame first, then the bytes after the array data).

joblib. ``joblib.load`` unpickles with ``pickle._Unpickler`` and, after each BUILD whose
object is a ``joblib.numpy_pickle.NumpyArrayWrapper`` (or the old
``sklearn.externals.joblib.numpy_pickle`` one), reads the array from the file itself: for a
dtype with ``hasobject`` a nested pickle (analysed as its own entry in ``pickles``, with
``parent`` set and its own memo; its globals and calls are reported like any other), otherwise
an alignment-padding byte ``p`` (when the wrapper has a ``numpy_array_alignment_bytes``
attribute that is not None), ``p`` padding bytes, and ``prod(shape) * dtype.itemsize`` raw
bytes, reported as a ``raw_spans`` entry (``padding`` = 1 + p, or 0) and skipped. The wrapper's
attributes are followed through its creation (NEWOBJ/NEWOBJ_EX, ``copyreg.__newobj__``,
``copyreg._reconstructor``, or a constructor call via REDUCE/OBJ/INST), BUILD states (dict
and slot-state dict, memo included), and the dtype through ``numpy.dtype(typestr, align,
copy)`` and its BUILD state (versions 0-4, as numpy's ``__setstate__``). When joblib would
read but the length or kind of the data cannot be determined from the stream (a shape that is
not a tuple of non-negative ints, an unrecognised dtype, a computed key in the state, a
possible change of class, an overflow, ...), the pickle stops with error
"joblib-array-unknown" rather than guess. With ``follow_joblib=False`` the stream is analysed
as ``pickle.load`` reads it (no raw spans): the bytes joblib skips are opcodes to
``pickle.load``, so a file with ``raw_spans`` deserves both analyses.

Errors (``pickles[i]["error"]``), a fixed set:

- ``"invalid-opcode"``: a byte that is not an opcode where an opcode was expected.
- ``"truncated"``: the data ends inside an opcode or its argument (a text line without ``\\n``,
  a length prefix longer than the bytes left), inside joblib array data, or before STOP.
- ``"stack-underflow"``: an opcode needs more stack items (above the innermost MARK) than exist.
- ``"mark-missing"``: an opcode needs a MARK and there is none.
- ``"memo-missing"``: GET/BINGET/LONG_BINGET of a key not stored in this pickle.
- ``"bad-argument"``: a malformed operand: INT/LONG/FLOAT/GET/PUT text, STRING quoting or
  escapes, UNICODE escapes, text that does not decode (GLOBAL UTF-8, INST/PERSID ASCII,
  BINUNICODE UTF-8), an odd DICT/SETITEMS item count, an EXT code <= 0, a memo key beyond
  2**63-1 or a negative PUT, a FRAME length beyond 2**63-1.
- ``"negative-length"``: a negative signed length (BINSTRING, LONG4).
- ``"unsupported-protocol"``: PROTO above 5.
- ``"joblib-array-unknown"``: see joblib above.

A nested pickle that does not reach STOP stops its parent too, with the nested pickle's status,
error and error offset. Facts gathered before an error are kept: CPython has already run those
opcodes. The analysis is lenient where CPython's behaviour depends on the loader or on objects
it cannot know (types of operands, registered EXT codes, persistent_load, out-of-band buffers,
the numeric value of INT/LONG/FLOAT text): it goes on where CPython might stop, and stops only
where CPython's C unpickler stops too (the pure-Python ``pickle._Unpickler`` would also accept
memo keys beyond 2**63-1).

Limits. Hitting one sets the pickle's status to "limit" (``error`` None, ``error_offset`` the
opcode where it stopped), sets the top-level ``limit`` and ends the analysis. ``max_opcodes``
counts opcodes over all pickles and is checked before each opcode; ``max_stack`` (stack items
plus open marks) after each opcode; ``max_pickles`` (nested pickles included) before starting
each pickle; ``max_facts`` (globals + calls + ext + persistent_ids + frame violations + raw spans,
which bounds the size of the result; a ``compact`` group counts once) after each opcode.

``max_memo`` is a budget, not a stop: a pickle's memo keeps up to that many values; past it a new
key keeps only a global (so calls through the memo stay linked) and any other value is dropped
(counted in ``memo_dropped``). A dropped key still counts for MEMOIZE, as in CPython, and a GET of
it pushes an unknown value (a STACK_GLOBAL operand made of one is "computed"). The memo limit stops
a pickle only when more than 2**20 globals were kept past the budget or 2**16 dropped keys lie far
beyond the others (``>= 2 * len(memo) + 1024``), which only a crafted stream does.
"""
from __future__ import annotations

import os
import threading
from typing import Optional, Sequence

from ..record import Record

__all__ = [
    "DEFAULT_PICKLE_LIMITS",
    "PickleLimits",
    "engine_name",
    "engine_status",
    "pickle_facts",
    "pickle_facts_file",
    "DEFAULT_ZIP_LIMITS",
    "ZipLimits",
    "zip_facts",
    "crc32",
    "sha256",
    "protobuf_walk",
    "sha256_file",
    "sha256_files",
    "MAX_SECRET_WINDOW",
    "SecretRule",
    "SecretRuleSet",
    "secret_matches",
    "safetensors_header",
    "gguf_header",
]

_ENV = "MLGUARD_ENGINE"
_ENGINES = ("native", "python")
_lock = threading.Lock()
_native_module = None        # the imported mlguard_rs, once loaded
_native_error: Optional[str] = None   # why it could not be imported
_native_tried = False
_warned = False


def _check_counts(limits: Record) -> None:
    """ValueError unless every field of ``limits`` is an int in [0, 2**63)."""
    for field in limits._fields:
        value = getattr(limits, field)
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**63:
            raise ValueError(f"{type(limits).__name__}.{field} must be an int in [0, 2**63), not {value!r}")


class PickleLimits(Record):
    """Bounds on the work :func:`pickle_facts` does for one input."""

    max_opcodes: int = 100_000_000
    """Opcodes executed, summed over all pickles of the input."""
    max_memo: int = 1_000_000
    """Memo values kept in one pickle before it keeps only globals."""
    max_stack: int = 1_000_000
    """Stack items plus open MARKs in one pickle."""
    max_pickles: int = 64
    """Pickles analysed, back to back or nested (joblib object arrays)."""
    max_string: int = 1024
    """Characters kept of a string operand; longer module/name are cut and marked ``truncated``
    (this does not stop the analysis)."""
    max_facts: int = 100_000
    """Facts recorded (globals + calls + ext + persistent ids + frame violations + raw spans):
    bounds the result's memory (~530 bytes a fact as Python dicts, so ~53 MB). With ``compact=True`` a
    group of calls or persistent ids counts once. Ordinary files stay far below: a joblib file makes one
    fact per array, a pickle one per distinct import."""

    def __post_init__(self) -> None:
        _check_counts(self)
        if self.max_string > 0xFFFF_FFFF:
            raise ValueError("PickleLimits.max_string must be < 2**32")


DEFAULT_PICKLE_LIMITS = PickleLimits()


def _byte_buffer(data):
    """``data`` itself when it is a contiguous 1-D byte buffer, else a copy of its bytes (TypeError for
    non-buffers): both engines then read the same bytes."""
    with memoryview(data) as view:
        if view.c_contiguous and view.ndim == 1 and view.itemsize == 1:
            return data
        return view.tobytes()


def _load_native():
    """Import mlguard_rs once; remember the reason if it fails."""
    global _native_module, _native_error, _native_tried
    if _native_tried:  # set last, under the lock: once seen, the module (or the error) is final
        return _native_module
    with _lock:
        if not _native_tried:
            try:
                import mlguard_rs  # noqa: PLC0415 - optional extension
                for kernel in ("pickle_facts", "pickle_facts_file"):
                    if not hasattr(mlguard_rs, kernel):
                        raise ImportError(f"mlguard_rs {getattr(mlguard_rs, '__version__', '?')} "
                                          f"has no {kernel} (stale build?)")
                _native_module = mlguard_rs
            except Exception as exc:  # ImportError, or a broken build raising something else
                _native_error = f"{type(exc).__name__}: {exc}"
            _native_tried = True
    return _native_module


# os.environ.get raises and catches a KeyError when the variable is unset (the usual case): ~1 us a
# kernel call, a tenth of a small file's scan. Its own bytes-keyed table answers "unset" at once.
_environ_table = getattr(os.environ, "_data", None)
_environ_key = os.environ.encodekey(_ENV) if _environ_table is not None else None


def _forced() -> Optional[str]:
    if _environ_table is not None and _environ_key not in _environ_table:
        return None
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
        import logging  # noqa: PLC0415 - only for this one warning
        logging.getLogger("mlguard").warning("native extension mlguard_rs unavailable (%s); using the pure-Python "
                                             "reference engine: results are identical but slower", _native_error)
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


def _pickle_kwargs(limits: PickleLimits, follow_joblib: bool, compact: bool) -> dict:
    if not isinstance(limits, PickleLimits):
        raise TypeError(f"limits must be a PickleLimits, not {type(limits).__name__}")
    return dict(max_opcodes=limits.max_opcodes, max_memo=limits.max_memo,
                max_stack=limits.max_stack, max_pickles=limits.max_pickles,
                max_string=limits.max_string, max_facts=limits.max_facts,
                follow_joblib=bool(follow_joblib), compact=bool(compact))


def pickle_facts(data, *, limits: PickleLimits = DEFAULT_PICKLE_LIMITS,
                 engine: Optional[str] = None, follow_joblib: bool = True,
                 compact: bool = False) -> dict:
    """Facts about the pickle stream(s) in ``data``; see the module docstring for the schema.

    ``data`` is any bytes-like object (bytes, bytearray, memoryview, mmap.mmap, ...); the native
    engine reads it in place and releases the GIL while parsing. ``engine`` forces ``"native"``
    or ``"python"`` for this call. ``follow_joblib=False`` reads the stream as ``pickle.load``
    does, without skipping joblib array data. ``compact=True`` reports the argument-less calls
    of one (pickle, opcode, target) as one fact with a ``count``, and the persistent ids of one
    (pickle, opcode) likewise (see "Compact mode" in the module docstring): same limits and
    same other facts, far fewer Python objects for big checkpoints; every fact has ``count``
    (1 in the normal mode). Never raises because of the content of ``data``.
    For a file, prefer :func:`pickle_facts_file` (bounded memory).
    """
    kwargs = _pickle_kwargs(limits, follow_joblib, compact)
    with memoryview(data) as view:  # TypeError for non-buffers, same for both engines
        contiguous = view.c_contiguous
    if not contiguous:
        data = memoryview(data).tobytes()
    if _choose(engine) == "native":
        return _native_module.pickle_facts(data, **kwargs)
    from .pure import pickle as pure_pickle  # noqa: PLC0415 - only when needed
    return pure_pickle.analyze(data, **kwargs)


def pickle_facts_file(path, offset: int = 0, length: Optional[int] = None, *,
                      limits: PickleLimits = DEFAULT_PICKLE_LIMITS, engine: Optional[str] = None,
                      follow_joblib: bool = True, compact: bool = False) -> dict:
    """:func:`pickle_facts` of ``length`` bytes (None: the rest) of the file at ``path`` from
    ``offset``: the same facts as ``pickle_facts(file_bytes[offset:offset + length])`` (with the
    same ``follow_joblib`` and ``compact``).

    The native engine maps the file privately and releases the pages behind the parser, so
    memory does not grow with the file (only with the facts and the pickle's own stack and memo,
    which the limits bound). Raises OSError if the file cannot be opened and ValueError if the
    range is not inside the file; never because of the content.
    """
    kwargs = _pickle_kwargs(limits, follow_joblib, compact)
    path = os.fspath(path)
    for name, value in (("offset", offset), ("length", length)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            raise ValueError(f"{name} must be a non-negative int, not {value!r}")
    size = os.stat(path).st_size
    if offset > size or (length is not None and offset + length > size):
        raise ValueError(f"range [{offset}, {offset if length is None else offset + length}) is "
                         f"beyond the end of {path!r} ({size} bytes)")
    if _choose(engine) == "native":
        return _native_module.pickle_facts_file(path, offset, length, **kwargs)
    from .pure import pickle as pure_pickle  # noqa: PLC0415 - only when needed
    return pure_pickle.analyze_file(path, offset, length, **kwargs)


# ------------------------------------------------------------------------------ zip kernel ----

class ZipLimits(Record):
    """Bounds on the work :func:`zip_facts` does for one input."""

    max_members: int = 100_000
    """Central-directory entries (plus local-only entries found in gaps) read, at most."""
    max_name_bytes: int = 32 << 20
    """Bytes of member names read, summed (each name is at most 64 KiB by format)."""

    def __post_init__(self) -> None:
        _check_counts(self)


DEFAULT_ZIP_LIMITS = ZipLimits()


def zip_facts(data, *, limits: ZipLimits = DEFAULT_ZIP_LIMITS, local_headers: bool = True,
              skim_dir: Optional[str] = None, skim_min: int = 64, engine: Optional[str] = None) -> dict:
    """Facts about the zip archive in ``data`` (any bytes-like object; read in place, GIL released).

    Nothing is decompressed. Never raises because of the content of ``data``. Returns::

        {"size": int,                            # len(data)
         "eocd": None | {"offset", "disk", "cd_disk", "entries_disk", "entries", "cd_size",
                         "cd_offset", "comment_length"},   # the end record, as declared
         "zip64": None | {"locator_offset", "declared_offset",
                          "offset": None | int,  # where the zip64 end record was found
                          "entries", "cd_size", "cd_offset"},   # None when it was not found
         "cd_start": None | int,                 # where the central directory really starts
         "shift": int,                           # cd_start - declared offset: added to every
                                                 # declared offset (bytes prepended to the zip)
         "start": None | int,                    # lowest local-header offset: bytes before it
                                                 # are not part of the archive
         "trailing": int,                        # bytes after the end record and its comment
         "entries_declared": None | int, "entries_found": int,
         "members": [{                           # directory order, skimmed ones left out, then
                                                 # local-only entries (found in gaps)
             "index": int,                       # position in the directory (local-only: after)
             "central": bool,                    # False for a local header no entry points to
             "name": str,                        # central name (local-only: local name)
             "header_offset": int,               # local header position (shift applied)
             "method", "flags", "crc32", "compressed_size", "uncompressed_size",
                                                 # as the directory declares (zip64 applied)
             "local": None | {"name", "flags", "method", "crc32", "compressed_size",
                              "uncompressed_size", "extra_length"},   # the local header's claims
             "data_offset": None | int,          # where the data starts, reading the local
                                                 # header as zipfile and torch (miniz) do
             "descriptor": None | {"crc32", "compressed_size", "uncompressed_size",
                                   "signature": bool},   # data descriptor (flag bit 3)
             "mismatch": [str],                  # local vs central: "name", "flags", "method",
                                                 # "crc32", "compressed_size", "uncompressed_size"
                                                 # (zeros in a bit-3 local header are not a
                                                 # mismatch); descriptor vs central:
                                                 # "descriptor_crc32", "descriptor_compressed_size",
                                                 # "descriptor_uncompressed_size"
             "duplicate": None | "exact" | "case",   # another directory entry has the same raw
                                                 # name / the same up to ASCII case (torch's
                                                 # miniz lookup ignores case)
             "encrypted": bool,                  # flag bit 0
             "overlap": bool,                    # starts inside another member's bytes
             "head": None | bytes,               # first <= 16 raw bytes of the data
             "errors": [str]}],                  # see below
         "skimmed": [{"dir", "members", "compressed_size"}],
         "gaps": [{"offset", "length"}],         # bytes before the directory no member covers
         "errors": [{"code", "offset": None | int}],
         "limit": None | "members" | "names"}

    Names are UTF-8 when flag bit 11 is set and they decode, else cp437 (as :mod:`zipfile`).
    The end record is the last signature in the final 64 KiB + 22 bytes with a whole record after
    it; the directory is located where the end record (or zip64 end record) says it ends, else at
    its declared offset. Archive errors: ``no-end-record``, ``comment-truncated``,
    ``zip64-record-missing``, ``multi-disk``, ``directory-not-found``, ``directory-truncated``,
    ``directory-corrupt``. Member errors: ``name-not-utf8``, ``extra-corrupt``,
    ``local-extra-corrupt``, ``zip64-extra-bad``, ``local-header-missing``,
    ``local-header-truncated``, ``data-out-of-range`` (runs into the directory or past the end),
    ``descriptor-missing``, ``size-unknown`` (a local-only entry with bit 3 and no size).

    ``local_headers=False`` reads the directory only (no local facts, descriptors, heads, gaps).
    ``skim_dir``/``skim_min``: the *ordinary* members (ASCII name, stored, only flag bits 3 and
    11, equal sizes, unique name, no error, no overlap) of a directory whose last component is
    ``skim_dir`` and that holds at least ``skim_min`` members are not visited (their local
    headers and data are never touched): they are only counted in ``skimmed``. Bytes after a
    skimmed member that its unread local name, extra field and descriptor may fill are not
    reported as gaps. Without an end record, local headers are walked from offset 0.
    """
    if not isinstance(limits, ZipLimits):
        raise TypeError(f"limits must be a ZipLimits, not {type(limits).__name__}")
    with memoryview(data) as view:  # TypeError for non-buffers, same for both engines
        contiguous = view.c_contiguous
    if not contiguous:
        data = memoryview(data).tobytes()
    if skim_dir is not None and not (isinstance(skim_dir, str) and skim_dir.isascii()):
        raise ValueError(f"skim_dir must be an ASCII str or None, not {skim_dir!r}")
    if isinstance(skim_min, bool) or not isinstance(skim_min, int) or not 0 <= skim_min < 2**63:
        raise ValueError(f"skim_min must be an int in [0, 2**63), not {skim_min!r}")
    kwargs = dict(max_members=limits.max_members, max_name_bytes=limits.max_name_bytes,
                  local_headers=bool(local_headers), skim_dir=skim_dir, skim_min=skim_min)
    if _choose(engine) == "native" and hasattr(_native_module, "zip_facts"):
        return _native_module.zip_facts(data, **kwargs)
    from .pure import zip as pure_zip  # noqa: PLC0415 - only when needed
    return pure_zip.analyze(data, **kwargs)


def crc32(data, *, engine: Optional[str] = None) -> int:
    """The CRC-32 of ``data`` (any bytes-like object) that zip records, as :func:`zlib.crc32` computes
    it. The native engine uses carry-less multiplication when the CPU has it (several times zlib's
    speed) and releases the GIL for large inputs; the pure engine is :func:`zlib.crc32`."""
    data = _byte_buffer(data)
    if _choose(engine) == "native" and hasattr(_native_module, "crc32"):
        return _native_module.crc32(data)
    import zlib  # noqa: PLC0415 - only when needed
    return zlib.crc32(data)


# ------------------------------------------------------------------------------- SHA-256 ----

def sha256(data, *, engine: Optional[str] = None) -> str:
    """SHA-256 of ``data`` (any bytes-like object) as 64 lowercase hexadecimal digits. The native
    engine releases the GIL for large inputs; the pure engine is :mod:`hashlib` (whose import loads
    OpenSSL: a few milliseconds of every CLI start that the native engine saves)."""
    data = _byte_buffer(data)
    if _choose(engine) == "native" and hasattr(_native_module, "sha256"):
        return _native_module.sha256(data)
    import hashlib  # noqa: PLC0415 - only when needed
    return hashlib.sha256(data).hexdigest()


def _hash_path(path) -> str:
    """``path`` as a str for both engines (bytes paths are decoded as the OS would); ValueError for
    an embedded NUL, as ``open()`` raises."""
    path = os.fspath(path)
    path = os.fsdecode(path) if isinstance(path, bytes) else path
    if "\x00" in path:
        raise ValueError(f"embedded null byte in path {path!r}")
    return path


_PROTOBUF_KINDS = {"int": 0, "str": 1, "strs": 2, "msg": 3, "msgs": 4, "skip": 5}
_compiled_schemas: dict = {}


def protobuf_walk(data, schema: dict, root: str, *, engine: Optional[str] = None) -> dict:
    """Decode the protobuf ``data`` as message type ``root`` of ``schema``: only the fields the schema names,
    with protobuf's merge semantics; tensor-sized payloads skipped by length. See
    :mod:`mlguard.engine.pure.protobuf` for the schema and result format (both engines give the same dict).
    The native engine releases the GIL while walking."""
    if _choose(engine) == "native" and hasattr(_native_module, "protobuf_walk"):
        key = id(schema)
        if key not in _compiled_schemas:
            names = list(schema)
            _compiled_schemas[key] = (schema, names, [
                [(number, name, _PROTOBUF_KINDS[kind], names.index(sub) if sub else 0)
                 for number, (name, kind, sub) in schema[message].items()] for message in names])
        _, names, compiled = _compiled_schemas[key]
        return _native_module.protobuf_walk(_byte_buffer(data), compiled, names.index(root))
    from .pure import protobuf as pure_protobuf  # noqa: PLC0415 - only when needed
    return pure_protobuf.walk(data, schema, root)


def sha256_file(path, *, engine: Optional[str] = None) -> str:
    """SHA-256 of the file at ``path``, as 64 lowercase hexadecimal digits.

    The file is streamed through a fixed 1 MiB buffer (memory does not grow with its size); a file
    that grows or shrinks meanwhile gives the hash of the bytes that were read. The native engine
    uses the CPU's SHA extensions when it has them and releases the GIL while it reads and hashes;
    the pure engine uses :mod:`hashlib` (OpenSSL). Raises OSError, carrying ``path`` as its
    ``filename``, if the file cannot be opened or read (a directory included).
    """
    path = _hash_path(path)
    if _choose(engine) == "native" and hasattr(_native_module, "sha256_file"):
        return _native_module.sha256_file(path)
    from .pure import hash as pure_hash  # noqa: PLC0415 - only when needed
    return pure_hash.sha256_file(path)


def sha256_files(paths, *, jobs: Optional[int] = None, engine: Optional[str] = None) -> list:
    """:func:`sha256_file` of each of ``paths``, hashed in parallel by up to ``jobs`` threads
    (default ``os.cpu_count()``).

    Returns a list in the order of ``paths``: the hex digest of each file, or the OSError that
    hashing it raised (an unreadable file does not stop the others). Other errors (a path that is
    not a str, bytes or os.PathLike) are raised. The native engine hashes the whole list on its
    own threads with the GIL released (each thread takes the next file when it finishes one); the
    pure engine uses a thread pool, and hashlib releases the GIL while it hashes.
    """
    paths = [_hash_path(p) for p in paths]
    if jobs is None:
        jobs = os.cpu_count() or 1
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"jobs must be a positive int or None, not {jobs!r}")
    workers = max(1, min(jobs, len(paths)))
    if _choose(engine) == "native" and hasattr(_native_module, "sha256_files"):
        return _native_module.sha256_files(paths, workers)
    from .pure import hash as pure_hash  # noqa: PLC0415 - only when needed

    def one(path: str):
        try:
            return pure_hash.sha256_file(path)
        except OSError as exc:
            return exc

    if workers == 1:
        return [one(p) for p in paths]
    from concurrent.futures import ThreadPoolExecutor  # noqa: PLC0415 - only when needed
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="mlguard-sha256") as pool:
        return list(pool.map(one, paths))


# -------------------------------------------------------------------------- secret rules ----

MAX_SECRET_WINDOW = 4096
"""Largest :attr:`SecretRule.window`: Python ``re`` backtracks, so the window bounds its work."""


class SecretRule(Record):
    """One secret rule: where to look (keywords) and what to report (a regex's ``secret`` group)."""

    id: str
    """The rule's id (named in errors; results refer to rules by their index in the set)."""
    keywords: tuple[str, ...]
    """ASCII literals matched case-insensitively: the rule runs only around their occurrences."""
    pattern: str
    """A regex in the subset both engines read alike (listed in
    :func:`mlguard.engine.pure.secrets.check_pattern`), run on bytes with ASCII semantics, with a
    named group ``(?P<secret>...)``."""
    window: int = 256
    """Bytes searched before and after each keyword occurrence, at most ``MAX_SECRET_WINDOW``."""
    min_entropy: float = 0.0
    """Shannon entropy (bits per byte) the ``secret`` group needs to be reported."""

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not self.id:
            raise ValueError(f"SecretRule.id must be a non-empty str, not {self.id!r}")
        keywords = (self.keywords,) if isinstance(self.keywords, str) else tuple(self.keywords)
        if not keywords or not all(isinstance(k, str) and k and k.isascii() for k in keywords):
            raise ValueError(f"secret rule {self.id!r}: keywords must be non-empty ASCII strs, "
                             f"at least one, not {self.keywords!r}")
        object.__setattr__(self, "keywords", keywords)
        if not isinstance(self.pattern, str):
            raise ValueError(f"secret rule {self.id!r}: pattern must be a str, not {self.pattern!r}")
        window = self.window
        if isinstance(window, bool) or not isinstance(window, int) or not 0 <= window <= MAX_SECRET_WINDOW:
            raise ValueError(f"secret rule {self.id!r}: window must be an int in "
                             f"[0, {MAX_SECRET_WINDOW}], not {window!r}")
        entropy = self.min_entropy
        if isinstance(entropy, bool) or not isinstance(entropy, (int, float)) or not 0 <= entropy <= 8:
            raise ValueError(f"secret rule {self.id!r}: min_entropy must be a number in [0, 8], "
                             f"not {entropy!r}")
        object.__setattr__(self, "min_entropy", float(entropy))


class SecretRuleSet:
    """Secret rules checked once for many :func:`secret_matches` calls (safe to share by threads).

    Each pattern is checked against the portable subset and parsed, by Rust ``regex``'s parser when
    the extension can be imported, else by Python ``re``'s: a ValueError naming the rule's id is
    raised if it leaves the subset, does not parse, has no ``secret`` group or repeats what can
    match the empty string. Each engine compiles a rule's regex when a search first needs it (and
    the pure engine re-checks the patterns with ``re`` when it is first used): a scan pays only
    for the rules whose keywords it meets.
    """

    def __init__(self, rules: Sequence[SecretRule]) -> None:
        from .pure import secrets as pure_secrets  # noqa: PLC0415 - only when needed
        self.rules: tuple[SecretRule, ...] = tuple(rules)
        for rule in self.rules:
            if not isinstance(rule, SecretRule):
                raise TypeError(f"rules must be SecretRule objects, not {type(rule).__name__}")
        self._specs = [(list(r.keywords), r.pattern, r.window, r.min_entropy) for r in self.rules]
        self._pure = None
        self._native = None
        native = _load_native()
        if hasattr(native, "SecretRules"):
            for i, (_, pattern, _, _) in enumerate(self._specs):
                try:
                    pure_secrets.check_pattern(pattern)
                except ValueError as exc:
                    raise self._refused(i, str(exc)) from None
            try:
                self._native = native.SecretRules(self._specs)
            except ValueError as exc:
                raise self._refused(*exc.args, by=" by the native engine (Rust regex)") from None
        if self._native is None or _forced() == "python":
            self.pure()

    def pure(self):
        """The pure engine's compiled form (checked with ``re`` on first use)."""
        if self._pure is None:  # a race only compiles twice
            from .pure import secrets as pure_secrets  # noqa: PLC0415 - only when needed
            try:
                self._pure = pure_secrets.Compiled(self._specs)
            except ValueError as exc:
                raise self._refused(*exc.args) from None
        return self._pure

    def _refused(self, index: int, message: str, by: str = "") -> ValueError:
        rule = self.rules[index]
        return ValueError(f"secret rule {rule.id!r}: pattern {rule.pattern!r} is refused{by}: {message}")


def secret_matches(data, ruleset: SecretRuleSet, *, max_matches: int = 100_000,
                   engine: Optional[str] = None) -> list:
    """The matches of ``ruleset``'s rules in ``data`` (any bytes-like object; read in place).

    Returns, sorted by (start, rule)::

        [{"rule": int,                           # index of the rule in ruleset.rules
          "start": int, "end": int,              # the whole regex match, byte offsets in data
          "secret_start": int, "secret_end": int,   # its `secret` group
          "entropy": float}]                     # of the secret, bits per byte, 4 decimals

    How (identical in both engines; ``mlguard_rs/src/secrets.rs`` has the details): every offset
    where a keyword starts (ASCII case-insensitive) is a hit; at a hit each rule with a keyword
    there takes its longest one and the window ``[max(0, start - window), min(len(data), end +
    window))``. A rule's windows that overlap or touch are merged (so merged windows are at least
    one byte apart: a match is never cut by a boundary inside their union, and is found once).
    In each merged window ``[ws, we)`` the rule's regex finds its non-overlapping leftmost-first
    matches as ``regex.search(data, pos, we)`` from ``pos = ws`` would: ``\\b`` and the like see
    the byte before ``ws``, the data ends at ``we``; empty matches are skipped. A match is
    reported when its ``secret`` group participates and that group's entropy is at least the
    rule's ``min_entropy``.

    At most ``max_matches`` results: the first ones in (start, rule) order (a result of exactly
    ``max_matches`` items may have been cut). Memory does not grow with ``data`` or with the
    number of keyword hits. The native engine releases the GIL for the whole search. Never
    raises because of the content of ``data`` (a rule whose regex does not compile when first needed raises
    ValueError naming the rule).
    """
    if not isinstance(ruleset, SecretRuleSet):
        raise TypeError(f"ruleset must be a SecretRuleSet, not {type(ruleset).__name__}")
    if isinstance(max_matches, bool) or not isinstance(max_matches, int) or not 0 <= max_matches < 2**63:
        raise ValueError(f"max_matches must be an int in [0, 2**63), not {max_matches!r}")
    data = _byte_buffer(data)
    if _choose(engine) == "native" and ruleset._native is not None:
        try:
            return ruleset._native.find(data, max_matches)
        except ValueError as exc:  # a regex past the regex crate's limits, met on first use
            raise ruleset._refused(*exc.args, by=" by the native engine (Rust regex)") from None
    from .pure import secrets as pure_secrets  # noqa: PLC0415 - only when needed
    return pure_secrets.find(data, ruleset.pure(), max_matches)


# ------------------------------------------------------------------ safetensors and GGUF headers ----

def safetensors_header(data, file_size: Optional[int] = None, *, engine: Optional[str] = None) -> dict:
    """Facts about the safetensors header at the start of ``data`` (a buffer of the file, or at least of its first
    8 + header length bytes: the header is cut to what ``data`` holds); ``file_size`` defaults to ``len(data)``.
    Only the header is read, never the tensor data. The native engine releases the GIL while parsing. Returns::

        {"header_length": None | int,   # the u64 in the first 8 bytes
         "error": None | "short" | "too-large" | "beyond-file" | "not-utf8" | "not-json" | "not-object"
                  | "too-deep" | "too-many",
         "detail": None | str,          # what is wrong, with the byte offset in the file where there is one
         "duplicates": [str],           # keys repeated in an object, at any depth, in the order the repeated
                                        # members end (the repeats inside a value before its own key)
         "metadata": None | dict,       # "__metadata__": its object, or {"": value} when it is not an object
         "tensors": [{"name": str, "dtype": None | str, "shape": None | [int], "begin": None | int,
                      "end": None | int,        # None where missing or of the wrong type
                      "problem": None | str}]}  # what is wrong with the entry's structure

    On an error, ``duplicates`` and ``tensors`` are empty and ``metadata`` is None. Errors: fewer than 8 bytes
    (``short``); a header length over the official loader's cap of 100,000,000 (``too-large``) or beyond the file
    (``beyond-file``); a header that is not UTF-8 (``not-utf8``), not strict JSON (``not-json``: the first error
    in reading order, "header is not strict JSON at byte N: <reason>") or not a JSON object (``not-object``);
    nested deeper than 64 (``too-deep``); more than 1,000,000 top-level keys or 2**24 JSON values (``too-many``).

    JSON as the official loader (serde_json) reads it: RFC 8259 with no NaN/Infinity, no control characters in
    strings and no lone UTF-16 surrogate escapes (``"\\ud800"``); an integer in [-2**63, 2**64) is an int, every
    other number a float, and a float that overflows an error ("number out of range"). A repeated key keeps the
    position of its first occurrence and the value of its last (a Python dict; the loader keeps the last).
    Metadata values are what :mod:`json` gives (str, int, float, bool, None, list, dict). A tensor entry's shape
    and offsets must be ints (an integer beyond 2**64 is a float: "missing or malformed"); the ``problem`` of an
    entry is the first of "entry is not an object", "missing or malformed <keys>", "negative dimension",
    "negative offset", "unknown keys <keys>".
    """
    if file_size is not None and (isinstance(file_size, bool) or not isinstance(file_size, int)
                                  or not 0 <= file_size < 2**64):
        raise ValueError(f"file_size must be None or an int in [0, 2**64), not {file_size!r}")
    data = _byte_buffer(data)
    if _choose(engine) == "native" and hasattr(_native_module, "safetensors_header"):
        return _native_module.safetensors_header(data, file_size)
    from .pure import safetensors as pure_safetensors  # noqa: PLC0415 - only when needed
    return pure_safetensors.header_facts(data, file_size)


def gguf_header(data, *, engine: Optional[str] = None) -> dict:
    """Facts about the GGUF header (versions 1-3) at the start of ``data``: metadata key/values and tensor infos,
    every count and length checked against the bytes left before it is read; tensor data is never read. The
    native engine releases the GIL while parsing. Returns::

        {"version": None | int,
         "metadata": [(key, type, value, offset)],     # in file order; offset of the key
         "tensors": [{"name": str, "dims": [int], "type": int,   # ggml type
                      "offset": int,                   # data offset, from the aligned start of the data
                      "at": int}],                     # offset of the tensor info
         "data_start": None | int,                     # just past the tensor infos (before alignment)
         "error": None | str, "error_offset": None | int}

    Facts read before an error are kept. Values: ints for the integer types, float for f32/f64, bool for type 7
    (any non-zero byte is True), str for strings (UTF-8, each maximal invalid subsequence replaced by U+FFFD, as
    ``decode("utf-8", "replace")``), and a list of the first 16 elements for arrays (the others are checked and
    skipped). Bounds: a string is at most 2**24 bytes; keys, tensors and array elements at most 2**24 each and no
    more than the bytes left; at most 4 dimensions. Arrays of arrays and unknown value types are errors.
    """
    data = _byte_buffer(data)
    if _choose(engine) == "native" and hasattr(_native_module, "gguf_header"):
        return _native_module.gguf_header(data)
    from .pure import gguf as pure_gguf  # noqa: PLC0415 - only when needed
    return pure_gguf.header_facts(data)
