"""Reference pickle kernel: the pure-Python twin of ``mlguard_rs/src/pickle.rs``.

A symbolic, non-executing model of CPython's unpickler (``Lib/pickle.py`` ``_Unpickler`` and
``Modules/_pickle.c``), of its framing rules, and of ``joblib.load``'s array reads. Nothing
from the data is imported, called or unpickled: the stack and memo hold *symbols* (a span of
the data holding a string, "global #3", "result of calling global #3", a small literal, ...),
and the facts they reveal are recorded. Both engines must return identical facts for every
input; ``tests/test_engine_pickle.py`` checks that on fixtures and fuzzed bytes. When you
change a rule here, change it in the Rust kernel too.

Use :func:`mlguard.engine.pickle_facts`, which documents the facts; this module is its engine.
"""
from __future__ import annotations

import mmap
import re

HIGHEST_PROTOCOL = 5
"""Highest protocol CPython's unpickler accepts; PROTO above it is ``unsupported-protocol``."""

MAX_ARGS = 8
"""Arguments (string/bytes literals and imported globals) reported per call, at most."""
TUPLE_KEEP = 64
"""Items of a tuple kept for evaluation and argument facts."""
MAX_TUPLE_ITEMS = 1 << 20
"""Tuple items tracked per pickle; later tuples are not tracked."""
MAX_DICT_INFOS = 1 << 16
"""Dicts whose joblib-relevant keys are remembered per pickle."""
MAX_OBJS = 1 << 20
"""joblib wrappers and numpy dtypes tracked per pickle."""
KEEP_PAST_BUDGET = 1 << 20
"""Globals a memo keeps past its budget (``max_memo``), at most."""
MAX_FAR_DROPPED = 1 << 16
"""Dropped memo keys far beyond the others (``>= 2 * len + 1024``), at most."""

OPCODE_NAMES: dict[int, str] = {
    0x28: "MARK", 0x2E: "STOP", 0x30: "POP", 0x31: "POP_MARK", 0x32: "DUP", 0x46: "FLOAT",
    0x49: "INT", 0x4A: "BININT", 0x4B: "BININT1", 0x4C: "LONG", 0x4D: "BININT2", 0x4E: "NONE",
    0x50: "PERSID", 0x51: "BINPERSID", 0x52: "REDUCE", 0x53: "STRING", 0x54: "BINSTRING",
    0x55: "SHORT_BINSTRING", 0x56: "UNICODE", 0x58: "BINUNICODE", 0x61: "APPEND", 0x62: "BUILD",
    0x63: "GLOBAL", 0x64: "DICT", 0x7D: "EMPTY_DICT", 0x65: "APPENDS", 0x67: "GET", 0x68: "BINGET",
    0x69: "INST", 0x6A: "LONG_BINGET", 0x6C: "LIST", 0x5D: "EMPTY_LIST", 0x6F: "OBJ", 0x70: "PUT",
    0x71: "BINPUT", 0x72: "LONG_BINPUT", 0x73: "SETITEM", 0x74: "TUPLE", 0x29: "EMPTY_TUPLE",
    0x75: "SETITEMS", 0x47: "BINFLOAT", 0x80: "PROTO", 0x81: "NEWOBJ", 0x82: "EXT1", 0x83: "EXT2",
    0x84: "EXT4", 0x85: "TUPLE1", 0x86: "TUPLE2", 0x87: "TUPLE3", 0x88: "NEWTRUE", 0x89: "NEWFALSE",
    0x8A: "LONG1", 0x8B: "LONG4", 0x42: "BINBYTES", 0x43: "SHORT_BINBYTES", 0x8C: "SHORT_BINUNICODE",
    0x8D: "BINUNICODE8", 0x8E: "BINBYTES8", 0x8F: "EMPTY_SET", 0x90: "ADDITEMS", 0x91: "FROZENSET",
    0x92: "NEWOBJ_EX", 0x93: "STACK_GLOBAL", 0x94: "MEMOIZE", 0x95: "FRAME", 0x96: "BYTEARRAY8",
    0x97: "NEXT_BUFFER", 0x98: "READONLY_BUFFER",
}
"""Opcode byte -> ``pickletools`` name, for all 68 opcodes of protocols 0-5."""

# -- symbolic values: tuples whose first item is the kind ------------------------------------
_OTHER = (0,)      # certainly not a str, untracked
_UNKNOWN = (1,)    # anything
_NONE = (2,)
_BOOL = 3          # (3, bool)
_INT = 4           # (4, int)  within TRACKED_INT
_STR = 5           # (5, skind, from_memo, offset, length)  str or bytes literal
_GLOBAL = 6        # (6, index into globals)
_RESULT = 7        # (7, target global index or None, obj)
_DICT = 8          # (8, id)            joblib mode only
_EMPTY_TUPLE = (9,)
_TUPLE = 10        # (10, length, first TUPLE_KEEP items as a tuple)

# string kinds (as in pickle.rs SKind)
_K_UTF8, _K_LEGACY_UTF8, _K_LEGACY_LATIN1, _K_ESC_UTF8, _K_ESC_LATIN1, _K_RUE, _K_BYTES, \
    _K_BYTEARRAY = range(8)
_ARG_KIND = ("str", "str-legacy", "str-legacy", "str-escaped", "str-escaped",
             "str-raw-unicode-escape", "bytes", "bytearray")

_NO_OBJ = None       # a result that is neither tracked nor possibly a wrapper
_MAYBE_OBJ = -1      # a result that might be a joblib wrapper

# global kinds (pickle.rs GKind)
_G_OTHER, _G_WRAPPER, _G_DTYPE, _G_RECONSTRUCTOR, _G_NEWOBJ, _G_NEWOBJ_EX, _G_OBJECT, _G_SETSTATE = range(8)
_KNOWN_GLOBALS = (
    ("joblib.numpy_pickle.NumpyArrayWrapper", _G_WRAPPER),
    ("sklearn.externals.joblib.numpy_pickle.NumpyArrayWrapper", _G_WRAPPER),
    ("numpy.dtype", _G_DTYPE),
    ("numpy.core.multiarray.dtype", _G_DTYPE),
    ("numpy._core.multiarray.dtype", _G_DTYPE),
    ("copyreg._reconstructor", _G_RECONSTRUCTOR),
    ("copyreg.__newobj__", _G_NEWOBJ),
    ("copyreg.__newobj_ex__", _G_NEWOBJ_EX),
    ("builtins.object", _G_OBJECT),
    # numpy's random-generator constructors (and, in classify_global, Cython's __pyx_unpickle_* of numpy, pandas,
    # scikit-learn and SciPy): their objects define __setstate__, so a BUILD on one never sets attributes (nor
    # __class__)
    ("numpy.random._pickle.__bit_generator_ctor", _G_SETSTATE),
    ("numpy.random._pickle.__generator_ctor", _G_SETSTATE),
    ("numpy.random._pickle.__randomstate_ctor", _G_SETSTATE),
)

_SPACE = b" \t\n\r\x0b\x0c"          # what int(bytes) strips
_INT_RE = re.compile(rb"[+-]?[0-9A-Za-z_]+")
_FLOAT_RE = re.compile(rb"[0-9A-Za-z_.+-]+")
_DIGITS_RE = re.compile(rb"[0-9]+(?:_[0-9]+)*")
_PLAIN_INT_RE = re.compile(rb"[+-]?(?:0|[1-9][0-9]{0,18})")
_TYPESTR_RE = re.compile(rb"([biufcmMOSUV])([1-9][0-9]{0,10})")
_I64_MAX = (1 << 63) - 1
TRACKED_INT = 1 << 59
"""Ints ``v`` with ``-TRACKED_INT <= v < TRACKED_INT`` are tracked (the native memo packs them in
8 bytes); larger ones are untracked. Only small ints matter (falsiness, joblib shapes)."""
_HEX = frozenset(b"0123456789abcdefABCDEF")
_SIMPLE_ESCAPES = {0x5C: 0x5C, 0x27: 0x27, 0x22: 0x22, 0x62: 0x08, 0x66: 0x0C, 0x74: 0x09,
                   0x6E: 0x0A, 0x72: 0x0D, 0x76: 0x0B, 0x61: 0x07}
_KEY_NAMES = {"shape": "shape", "dtype": "dtype", "numpy_array_alignment_bytes": "align",
              "__class__": "class"}


class _Halt(Exception):
    """Stops the current pickle: ``code`` is "truncated", "limit:<kind>" or an error code;
    ``nested`` carries (status, error, offset) of a nested pickle that failed."""

    def __init__(self, code: str, nested=None):
        super().__init__(code)
        self.code = code
        self.nested = nested


def _fail(code: str):
    raise _Halt(code)


# -- operand decoding (kept in sync with pickle.rs) --------------------------------------------

def _cut(text: str, max_string: int) -> tuple[str, bool]:
    return text[:max_string], len(text) > max_string


def decode_utf8(raw, surrogatepass: bool, max_string: int):
    """UTF-8 (strict, or ``surrogatepass`` as BINUNICODE) -> (text, cut) or None."""
    try:
        text = str(raw, "utf-8", "surrogatepass" if surrogatepass else "strict")
    except UnicodeDecodeError:
        return None
    return _cut(text, max_string)


def escape_decode(s: bytes):
    """CPython's ``codecs.escape_decode`` (strict) without its DeprecationWarnings; None on error."""
    if b"\\" not in s:
        return s
    out = bytearray()
    i, n = 0, len(s)
    while i < n:
        j = s.find(b"\\", i)
        if j < 0:
            out += s[i:]
            break
        out += s[i:j]
        i = j + 1
        if i >= n:
            return None  # trailing backslash
        c = s[i]
        i += 1
        if c == 0x0A:
            continue
        simple = _SIMPLE_ESCAPES.get(c)
        if simple is not None:
            out.append(simple)
        elif 0x30 <= c <= 0x37:
            v = c - 0x30
            for _ in range(2):
                if i < n and 0x30 <= s[i] <= 0x37:
                    v = (v << 3) + s[i] - 0x30
                    i += 1
                else:
                    break
            out.append(v & 0xFF)
        elif c == 0x78:  # \x
            if i + 1 < n and s[i] in _HEX and s[i + 1] in _HEX:
                out.append(int(s[i:i + 2], 16))
                i += 2
            else:
                return None
        else:  # unknown escape: keep the backslash, reread the character
            out.append(0x5C)
            i -= 1
    return bytes(out)


def parse_memo_key(line: bytes):
    """GET/PUT argument as ``int(text)`` reads it -> int >= 0, "negative", or None (invalid).

    Keys beyond the C unpickler's index range (|key| > 2**63-1) are invalid.
    """
    s = line.strip(_SPACE)
    neg = False
    if s[:1] in (b"-", b"+"):
        neg = s[:1] == b"-"
        s = s[1:]
    if not _DIGITS_RE.fullmatch(s):
        return None
    digits = s.replace(b"_", b"").lstrip(b"0")
    if len(digits) > 19:
        return None
    value = int(digits) if digits else 0
    if value > _I64_MAX:
        return None
    if neg and value:
        return "negative"
    return value


def lenient_number(line: bytes, is_float: bool) -> bool:
    """INT/LONG/FLOAT text check that accepts a superset of what CPython accepts."""
    s = line.strip(_SPACE)
    return (_FLOAT_RE if is_float else _INT_RE).fullmatch(s) is not None


# -- the machine ------------------------------------------------------------------------------


def parse_plain_int(line: bytes):
    """INT/LONG text that is a plain decimal within TRACKED_INT -> int, else None (untracked)."""
    s = line.strip(_SPACE)
    if not _PLAIN_INT_RE.fullmatch(s):
        return None
    return _tracked(int(s))


def decode_long_le(b) -> "int | None":
    """LONG1/LONG4 payload when within TRACKED_INT."""
    if len(b) > 8:
        return None
    return _tracked(int.from_bytes(b, "little", signed=True))


def _tracked(v: int) -> "int | None":
    return v if -TRACKED_INT <= v < TRACKED_INT else None


def parse_typestr(s: bytes):
    """numpy's canonical dtype type string ('f8', 'U5', 'O8', ...) -> (kind, itemsize) or None."""
    m = _TYPESTR_RE.fullmatch(s)
    if m is None:
        return None
    kind, n = m.group(1), int(m.group(2))
    if kind == b"b" and n == 1:
        size = 1
    elif kind in (b"i", b"u") and n in (1, 2, 4, 8):
        size = n
    elif kind == b"f" and n in (2, 4, 8, 16):
        size = n
    elif kind == b"c" and n in (8, 16, 32):
        size = n
    elif kind in (b"m", b"M", b"O") and n == 8:
        size = 8
    elif kind in (b"S", b"V"):
        size = n
    elif kind == b"U":
        size = n * 4
    else:
        return None
    return kind[0], size


def classify_global(module: str, name: str, protocol: int, truncated: bool) -> int:
    """What ``find_class(module, name)`` returns, for the globals the joblib model needs."""
    if truncated:
        return _G_OTHER
    if protocol < 3:
        module = {"copy_reg": "copyreg", "__builtin__": "builtins"}.get(module, module)
    for full, kind in _KNOWN_GLOBALS:
        if protocol >= 4:
            if full == module + "." + name:
                return kind
        else:
            head, _, tail = full.rpartition(".")
            if head == module and tail == name:
                return kind
    if (name.startswith("__pyx_unpickle_") and "." not in name
            and module.split(".")[0] in ("numpy", "pandas", "sklearn", "scipy")):
        return _G_SETSTATE  # Cython's pickle support: an object of a Cython class, with __setstate__
    return _G_OTHER


class _Analysis:
    """One call of :func:`analyze`: the data, limits, facts so far and the opcode budget."""

    def __init__(self, data, limits, compact=False):
        self.data = data
        self.compact = compact
        # compact mode: (pickle, opcode, target) / (pickle, opcode) / (pickle, opcode, module, name,
        # resolution, protocol, truncated) -> index of the group's fact
        self.call_groups: dict = {}
        self.pid_groups: dict = {}
        self.global_groups: dict = {}
        self.n = len(data)
        (self.max_opcodes, self.max_memo, self.max_stack,
         self.max_pickles, self.max_string, self.max_facts) = limits
        self.total = 0
        self.recorded = 0
        self.pickles: list = []
        self.globals: list = []
        self.gkind: list = []
        self.calls: list = []
        self.ext: list = []
        self.persistent_ids: list = []
        self.raw_spans: list = []
        self.counts = [0] * 256
        self.limit = None
        self.trailing = None
        self.dtype_poisoned = False

    def short_text(self, v):
        """Text of a str literal whose raw payload is at most 512 bytes, else None."""
        if v[0] != _STR or v[1] >= _K_BYTES or v[4] > 512:
            return None
        return _text(self.data, v[1], v[3], v[4])


def _text(data, kind, off, length) -> str:
    raw = bytes(data[off:off + length])
    if kind == _K_UTF8:
        return str(raw, "utf-8", "surrogatepass")
    if kind == _K_LEGACY_UTF8:
        return str(raw, "utf-8")
    if kind == _K_LEGACY_LATIN1:
        return raw.decode("latin-1")
    if kind == _K_ESC_UTF8:
        return escape_decode(raw).decode("utf-8")
    if kind == _K_ESC_LATIN1:
        return escape_decode(raw).decode("latin-1")
    return str(raw, "raw-unicode-escape")


def _interesting(v) -> bool:
    k = v[0]
    if k == 0 or k == 1:
        return False
    if k == _RESULT:
        return v[2] is not None and v[2] >= 0
    return True


def _known_falsy(v) -> bool:
    """Python truthiness when it is known to be false (None, (), False, 0, "" or b"")."""
    k = v[0]
    return (k == 2 or k == 9 or (k == _BOOL and not v[1]) or (k == _INT and v[1] == 0)
            or (k == _STR and v[4] == 0))


def _args_of(v):
    """The complete argument list a value stands for, or None."""
    if v[0] == 9:
        return ()
    if v[0] == _TUPLE and len(v[2]) == v[1]:
        return v[2]
    return None


def _arg_facts(items, first=0) -> list:
    """String/bytes literals and imported globals among ``items`` (at most MAX_ARGS)."""
    out = []
    for i, v in enumerate(items):
        k = v[0]
        if k == _STR:
            if len(out) == MAX_ARGS:
                break
            out.append({"index": first + i, "kind": _ARG_KIND[v[1]], "offset": v[3], "length": v[4]})
        elif k == _GLOBAL:
            if len(out) == MAX_ARGS:
                break
            out.append({"index": first + i, "kind": "global", "global": v[1]})
    return out


def _tuple_args(v) -> list:
    return _arg_facts(v[2]) if v[0] == _TUPLE else []


def _new_wrapper(unknown=False):
    # [unknown, is_wrapper, shape, dtype, align]; None = attribute absent
    return ["W", unknown, True, None, None, None]


def _unknown_dtype():
    # [known, fresh, kind, base, itemsize, hasobject]
    return ["D", False, False, 0, 0, 0, False]


class _Machine:
    """One pickle: a symbolic stack, marks and memo, driven opcode by opcode."""

    def __init__(self, a: _Analysis, start: int, index: int, parent, joblib: bool):
        self.a = a
        self.data = a.data
        self.n = a.n
        self.pos = start
        self.avail = a.n
        self.in_frame = False
        self.frame_at = 0
        self.frame_end = 0
        self.ffp = 0
        self.cur = start
        self.index = index
        self.parent = parent
        self.joblib = joblib
        self.saw_wrapper = False
        self.wrapper_class_tainted = False
        self.stack: list = []
        self.marks: list = []
        self.memo: dict = {}        # the values kept
        self.memo_len = 0           # distinct keys PUT, kept or dropped: CPython's len(memo)
        self.dropped_keys: set = set()
        self.far_dropped = 0
        self.memo_dropped = 0       # PUTs whose value was dropped
        self.proto = 0
        self.first_proto = None
        self.violations: list = []
        self.tuple_items = 0
        self.next_dict = 0
        self.dicts: dict = {}
        self.dict_overflow = False
        self.objs: list = []

    # framing and reading
    def file_pos(self) -> int:
        return self.ffp if self.in_frame else self.pos

    def set_file_pos(self, fp: int) -> None:
        if self.in_frame:
            self.ffp = fp
        else:
            self.pos = fp

    def leave_frame(self) -> None:
        self.in_frame = False
        self.pos = self.ffp
        self.avail = self.n

    def violation(self, offset: int, kind: str) -> None:
        self.violations.append({"offset": offset, "kind": kind})

    def cross_frame_end(self) -> None:
        self.violation(self.cur, "crosses-frame-end")
        self.in_frame = False
        self.avail = self.n

    def take(self, n: int) -> int:
        """Consume n bytes, return where they start."""
        p = self.pos
        if n <= self.avail - p:
            self.pos = p + n
            return p
        if self.in_frame:
            if p >= self.frame_end:
                self.leave_frame()
            elif p + n > self.frame_end:
                self.cross_frame_end()
        p = self.pos
        if n > self.avail - p:
            raise _Halt("truncated")
        self.pos = p + n
        return p

    def u(self, n: int) -> int:
        p = self.take(n)
        return int.from_bytes(self.data[p:p + n], "little")

    def i32(self) -> int:
        p = self.take(4)
        return int.from_bytes(self.data[p:p + 4], "little", signed=True)

    def line(self):
        """(start, end) of a text line without its newline."""
        if self.in_frame and self.pos >= self.frame_end:
            self.leave_frame()
        p = self.pos
        i = self.data.find(b"\n", p)
        if i < 0:
            raise _Halt("truncated")
        if i + 1 > self.avail:
            self.cross_frame_end()
        self.pos = i + 1
        return p, i

    def line_bytes(self) -> bytes:
        p, i = self.line()
        return bytes(self.data[p:i])

    # stack
    def base(self) -> int:
        return self.marks[-1] if self.marks else 0

    def need(self, n: int) -> None:
        if len(self.stack) - self.base() < n:
            raise _Halt("stack-underflow")

    def pop(self):
        self.need(1)
        return self.stack.pop()

    def top(self):
        self.need(1)
        return self.stack[-1]

    def pop_mark(self) -> int:
        if not self.marks:
            raise _Halt("mark-missing")
        return self.marks.pop()

    def memo_put(self, key: int) -> None:
        """``memo[key] = top``. Up to ``max_memo`` values are kept; past that a new key keeps only a
        global (at most KEEP_PAST_BUDGET more); any other value is dropped (its key remembered: a GET
        of it reads as unknown)."""
        v = self.top()
        budget = self.a.max_memo
        if key in self.memo or len(self.memo) < budget:
            if key not in self.memo:
                self.memo_len += 1
            self.memo[key] = v
            return
        dropped = key in self.dropped_keys
        if v[0] == _GLOBAL:
            if len(self.memo) >= budget + KEEP_PAST_BUDGET:
                raise _Halt("limit:memo")
            self.memo[key] = v
        else:
            if not dropped:
                if key >= 2 * self.memo_len + 1024:
                    if self.far_dropped >= MAX_FAR_DROPPED:
                        raise _Halt("limit:memo")
                    self.far_dropped += 1
                self.dropped_keys.add(key)
            self.memo_dropped += 1
        if not dropped:
            self.memo_len += 1

    def memo_get(self, key: int) -> None:
        v = self.memo.get(key)
        if v is None:
            if key not in self.dropped_keys:
                raise _Halt("memo-missing")
            v = _UNKNOWN
        if v[0] == _STR:
            v = (_STR, v[1], True, v[3], v[4])
        self.stack.append(v)

    def new_dict(self):
        if self.joblib:
            self.next_dict += 1
            return (_DICT, self.next_dict)
        return _OTHER

    def make_tuple(self, items):
        if not items:
            return _EMPTY_TUPLE
        kept = tuple(items[:TUPLE_KEEP])
        if not any(_interesting(v) for v in kept):
            return _OTHER if all(v[0] == 0 for v in kept) else _UNKNOWN
        if self.tuple_items + len(kept) > MAX_TUPLE_ITEMS:
            return _UNKNOWN
        self.tuple_items += len(kept)
        return (_TUPLE, len(items), kept)

    # facts
    def add_global(self, at, opcode, resolution, module, name, truncated) -> int:
        a = self.a
        kind = _G_OTHER
        if module is not None and name is not None:
            kind = classify_global(module, name, self.proto, truncated)
        if kind == _G_WRAPPER:
            self.saw_wrapper = True
        if a.compact:
            key = (self.index, opcode, module, name, resolution, self.proto, truncated)
            group = a.global_groups.get(key)
            if group is not None:
                a.globals[group]["count"] += 1
                return group
            a.global_groups[key] = len(a.globals)
        a.globals.append({"pickle": self.index, "offset": at, "opcode": opcode, "module": module,
                          "name": name, "resolution": resolution, "protocol": self.proto,
                          "truncated": truncated, "count": 1})
        a.gkind.append(kind)
        a.recorded += 1
        return len(a.globals) - 1

    def add_call(self, at, opcode, target, args) -> None:
        a = self.a
        if a.compact:
            key = (self.index, opcode, target)
            group = a.call_groups.get(key)
            if group is not None:
                a.calls[group]["count"] += 1
                return
            a.call_groups[key] = len(a.calls)
        a.recorded += 1  # a fact recorded counts toward max_facts (in compact mode a group counts once)
        a.calls.append({"pickle": self.index, "offset": at, "opcode": opcode, "target": target,
                        "args": args, "count": 1})

    def add_persistent_id(self, at, opcode) -> None:
        a = self.a
        if a.compact:
            key = (self.index, opcode)
            group = a.pid_groups.get(key)
            if group is not None:
                a.persistent_ids[group]["count"] += 1
                return
            a.pid_groups[key] = len(a.persistent_ids)
        a.recorded += 1
        a.persistent_ids.append({"pickle": self.index, "offset": at, "opcode": opcode, "count": 1})

    def text_of(self, v):
        return _cut(_text(self.data, v[1], v[3], v[4]), self.a.max_string)

    # joblib
    def track_pairs(self, dict_id, items) -> None:
        a = self.a
        for i in range(0, len(items) - 1, 2):
            k = items[i]
            kk = k[0]
            if kk == _STR:
                text = a.short_text(k)
                slot = _KEY_NAMES.get(text) if text is not None else None
                if slot is None:
                    continue
            elif kk in (_GLOBAL, _RESULT, 1):
                slot = "taint"
            else:
                continue
            info = self.dicts.get(dict_id)
            if info is None:
                if len(self.dicts) >= MAX_DICT_INFOS:
                    self.dict_overflow = True
                    return
                info = self.dicts[dict_id] = {}
            if slot == "taint":
                info["taint"] = True
            else:
                info[slot] = items[i + 1]

    def new_obj(self, o):
        if len(self.objs) >= MAX_OBJS:
            if o[0] == "D":
                return _NO_OBJ
            raise _Halt("joblib-array-unknown")
        self.objs.append(o)
        return len(self.objs) - 1

    def dtype_from_args(self, args):
        if args is None or len(args) != 3:
            return _unknown_dtype()
        text = self.a.short_text(args[0])
        parsed = parse_typestr(text.encode("utf-8", "surrogatepass")) if text is not None else None
        if parsed is None:
            return _unknown_dtype()
        if args[1][0] not in (_INT, _BOOL) or args[2][0] not in (_INT, _BOOL):
            return _unknown_dtype()
        kind, base = parsed
        return ["D", True, bool(args[2][1]), kind, base, base, kind == ord("O")]

    def instantiate(self, how: str, callee, args):
        """Tracked object a call creates; how: "call", "new" or "newex"."""
        if not self.joblib:
            return _NO_OBJ
        if callee[0] != _GLOBAL:
            return _MAYBE_OBJ if callee[0] in (_RESULT, 1) else _NO_OBJ
        gkind = self.a.gkind
        kind = gkind[callee[1]]
        if kind == _G_WRAPPER:
            if how in ("new", "newex"):
                info = _new_wrapper()
            elif args is not None and 4 <= len(args) <= 6:
                info = _new_wrapper()
                info[3], info[4] = args[1], args[3]
                info[5] = args[5] if len(args) == 6 else (_INT, 16)
            else:
                info = _new_wrapper(unknown=True)
            return self.new_obj(info)
        if kind == _G_DTYPE:
            info = _unknown_dtype() if how == "newex" else self.dtype_from_args(args)
            return self.new_obj(info)
        if kind == _G_RECONSTRUCTOR and how == "call":
            if args is None or len(args) != 3:
                return _MAYBE_OBJ
            cls, base = args[0], args[1]
            if cls[0] == _GLOBAL:
                if gkind[cls[1]] == _G_WRAPPER:
                    plain = base[0] == _GLOBAL and gkind[base[1]] == _G_OBJECT
                    return self.new_obj(_new_wrapper(unknown=not plain))
                return _NO_OBJ
            return _MAYBE_OBJ if cls[0] in (_RESULT, 1) else _NO_OBJ
        if kind == _G_NEWOBJ and how == "call":
            if args is None or len(args) < 1:
                return _MAYBE_OBJ
            return self.instantiate("new", args[0], args[1:])
        if kind == _G_NEWOBJ_EX and how == "call":
            if args is None or len(args) != 3:
                return _MAYBE_OBJ
            return self.instantiate("newex", args[0], None)
        return _NO_OBJ

    def slot_may_set_class(self, state) -> bool:
        k = state[0]
        if k == _TUPLE and state[1] == 2 and len(state[2]) == 2:
            slot = state[2][1]
        elif k in (1, _RESULT, _GLOBAL):
            return True
        else:
            return False
        if _known_falsy(slot):
            return False
        if slot[0] == _DICT:
            info = self.dicts.get(slot[1])
            if info is None:
                return self.dict_overflow
            if info.get("taint"):
                return True
            c = info.get("class")
            if c is None:
                return False
            if c[0] == _GLOBAL:
                return self.a.gkind[c[1]] == _G_WRAPPER
            return True
        return slot[0] in (1, _RESULT, _GLOBAL)

    def wrapper_setstate(self, w, state) -> None:
        if state[0] == _TUPLE and state[1] == 2 and len(state[2]) == 2:
            d, slot = state[2]
        else:
            d, slot = state, None
        for v, setattr_ in ((d, False), (slot, True)):
            if v is None or _known_falsy(v):
                continue
            if v[0] != _DICT:
                w[1] = True
                continue
            info = self.dicts.get(v[1])
            if info is None:
                if self.dict_overflow:
                    w[1] = True
                continue
            if info.get("taint"):
                w[1] = True
            for slot_name, i in (("shape", 3), ("dtype", 4), ("align", 5)):
                if slot_name in info:
                    w[i] = info[slot_name]
            if setattr_ and "class" in info:
                c = info["class"]
                if c[0] == _GLOBAL and self.a.gkind[c[1]] == _G_WRAPPER:
                    pass
                elif c[0] == _GLOBAL:
                    w[2] = False
                    w[1] = True
                else:
                    w[1] = True

    def joblib_build(self, at, state) -> None:
        top = self.stack[-1]
        if top[0] == _RESULT and top[1] is not None and self.a.gkind[top[1]] == _G_SETSTATE:
            return  # its __setstate__ takes the state: it stays what it is
        if top[0] == _RESULT:
            obj = top[2]
        elif top[0] == 1:
            obj = _MAYBE_OBJ
        else:
            if top[0] == _GLOBAL and not _known_falsy(state):
                self.wrapper_class_tainted = True
            obj = _NO_OBJ
        if obj == _MAYBE_OBJ:
            if self.saw_wrapper:
                raise _Halt("joblib-array-unknown")
            return
        if obj is _NO_OBJ:
            if self.saw_wrapper and self.slot_may_set_class(state):
                raise _Halt("joblib-array-unknown")
            return
        o = self.objs[obj]
        if o[0] == "D":
            if not o[2]:
                self.a.dtype_poisoned = True
                o[1] = False
            else:
                r = _dtype_setstate(o, state)
                if r is None:
                    o[1] = False
                else:
                    o[5], o[6] = r
            return
        self.wrapper_setstate(o, state)
        if o[2]:
            self.joblib_read(at, o)
            self.stack[-1] = _OTHER

    def joblib_read(self, at, w) -> None:
        a = self.a
        if w[1] or self.wrapper_class_tainted or a.dtype_poisoned:
            raise _Halt("joblib-array-unknown")
        dt = w[4]
        if dt is None or dt[0] != _RESULT or dt[2] is None or dt[2] < 0:
            raise _Halt("joblib-array-unknown")
        d = self.objs[dt[2]]
        if d[0] != "D" or not d[1]:
            raise _Halt("joblib-array-unknown")
        hasobject, itemsize = d[6], d[5]
        count = 0
        if not hasobject:
            shape = w[3]
            if shape is _EMPTY_TUPLE or (shape is not None and shape[0] == 9):
                count = 1
            elif shape is not None and shape[0] == _TUPLE and len(shape[2]) == shape[1]:
                count = 1
                for v in shape[2]:
                    if v[0] != _INT or v[1] < 0:
                        raise _Halt("joblib-array-unknown")
                    count *= v[1]
                    if count > _I64_MAX:
                        raise _Halt("joblib-array-unknown")
            else:
                raise _Halt("joblib-array-unknown")
            if itemsize <= 0:
                raise _Halt("joblib-array-unknown")
        if self.in_frame and self.pos < self.frame_end:
            self.violation(at, "joblib-data-in-frame")
        start = self.file_pos()
        if hasobject:
            if len(a.pickles) >= a.max_pickles:
                raise _Halt("limit:pickles")
            end, fp = _run_pickle(a, start, self.index, False)
            if end is None:
                child = a.pickles[-1]
                raise _Halt("nested", (child["status"], child["error"], child["error_offset"]))
            self.set_file_pos(fp)
            return
        nbytes = count * itemsize
        if nbytes > _I64_MAX:
            raise _Halt("joblib-array-unknown")
        padding = 0
        if w[5] is not None and w[5][0] != 2:
            if start >= self.n:
                raise _Halt("truncated")
            padding = 1 + self.data[start]
        left = self.n - start
        if padding > left or nbytes > left - padding:
            raise _Halt("truncated")
        length = padding + nbytes
        a.raw_spans.append({"pickle": self.index, "offset": start, "length": length,
                            "padding": padding, "kind": "joblib-array"})
        a.recorded += 1
        self.set_file_pos(start + length)

    # the loop
    def run(self) -> dict:
        a = self.a
        start = self.pos
        opcodes = 0
        status, error, error_offset, end = "stop", None, None, None
        dispatch = _DISPATCH
        counts = a.counts
        data = self.data
        while True:
            if self.pos >= self.avail:
                if self.in_frame and self.pos >= self.frame_end:
                    self.leave_frame()
                if self.pos >= self.avail:
                    status, error, error_offset = "truncated", "truncated", self.pos
                    break
            at = self.pos
            code = data[at]
            handler = dispatch.get(code)
            if handler is None:
                status, error, error_offset = "error", "invalid-opcode", at
                break
            if a.total >= a.max_opcodes:
                a.limit = "opcodes"
                status, error_offset = "limit", at
                break
            a.total += 1
            opcodes += 1
            counts[code] += 1
            self.pos = at + 1
            self.cur = at
            try:
                if handler(self, code, at):
                    end = self.pos
                    break
            except _Halt as h:
                if h.nested is not None:
                    status, error, error_offset = h.nested
                elif h.code == "truncated":
                    status, error, error_offset = "truncated", "truncated", at
                elif h.code.startswith("limit:"):
                    a.limit = h.code[6:]
                    status, error_offset = "limit", at
                else:
                    status, error, error_offset = "error", h.code, at
                break
            if len(self.stack) + len(self.marks) > a.max_stack:
                a.limit = "stack"
                status, error_offset = "limit", at
                break
            if a.recorded + len(self.violations) > a.max_facts:
                a.limit = "facts"
                status, error_offset = "limit", at
                break
        frame_end = None
        if end is not None:
            fp = self.file_pos()
            frame_end = fp if fp > end else None
        a.recorded += len(self.violations)
        return {"index": self.index, "parent": self.parent, "start": start, "end": end,
                "frame_end": frame_end, "protocol": self.first_proto, "opcodes": opcodes,
                "status": status, "error": error, "error_offset": error_offset,
                "frame_violations": self.violations, "memo_dropped": self.memo_dropped}


def _dtype_setstate(d, state):
    """numpy's dtype.__setstate__ (8/9-item states) -> (itemsize, hasobject) or None."""
    if state[0] != _TUPLE or len(state[2]) != state[1] or state[1] not in (8, 9):
        return None
    items = state[2]

    def int32(v):
        if v[0] in (_INT, _BOOL):
            i = int(v[1])
            if -(1 << 31) <= i < (1 << 31):
                return i
        return None

    version, elsize, align, flags = int32(items[0]), int32(items[5]), int32(items[6]), int32(items[7])
    if version is None or not 0 <= version <= 4 or elsize is None or flags is None or align is None:
        return None
    if -128 <= flags < 0:
        flags += 128
    if flags < 0:
        return None
    if version >= 3:
        hasobject = bool(flags & 1)
    else:
        if items[4] is not _NONE and items[4][0] != 2:
            return None
        hasobject = flags != 0 or d[3] == ord("O")
    itemsize = elsize if d[3] in b"SUV" else d[4]
    return itemsize, hasobject


def _run_pickle(a: _Analysis, start: int, parent, joblib: bool):
    """Run one pickle from start: (its end if it reached STOP, where the pure-Python
    unpickler left the file)."""
    index = len(a.pickles)
    a.pickles.append(None)
    info = _Machine(a, start, index, parent, joblib).run()
    a.pickles[index] = info
    end = info["end"]
    fp = info["frame_end"] if info["frame_end"] is not None else (end if end is not None else start)
    return end, fp


# -- opcode handlers: (machine, code, offset) -> True on STOP ------------------------------------

def _proto(m, code, at):
    p = m.u(1)
    if p > HIGHEST_PROTOCOL:
        _fail("unsupported-protocol")
    m.proto = p
    if m.first_proto is None:
        m.first_proto = p


def _frame(m, code, at):
    n = m.u(8)
    if n > _I64_MAX:
        _fail("bad-argument")
    p = m.pos
    if m.in_frame and p < m.frame_end:
        m.violation(at, "frame-in-frame")
    end = p + n
    if end > m.n:
        m.violation(at, "frame-beyond-data")
    fp = max(m.file_pos(), min(end, m.n))
    m.in_frame = True
    m.frame_at = at
    m.frame_end = end
    m.ffp = fp
    m.avail = min(end, m.n)


def _stop(m, code, at):
    m.pop()
    if m.file_pos() > m.pos:
        m.violation(m.frame_at, "frame-past-stop")
    return True


def _mark(m, code, at):
    m.marks.append(len(m.stack))


def _pop(m, code, at):
    if len(m.stack) > m.base():
        m.stack.pop()
    elif m.marks:
        m.marks.pop()
    else:
        _fail("stack-underflow")


def _pop_mark(m, code, at):
    del m.stack[m.pop_mark():]


def _dup(m, code, at):
    m.stack.append(m.top())


def _push(value):
    def handler(m, code, at):
        m.stack.append(value)
    return handler


def _empty_dict(m, code, at):
    m.stack.append(m.new_dict())


def _int_or_long(m, code, at):
    line = m.line_bytes()
    long = code == 0x4C
    if long and line.endswith(b"L"):
        line = line[:-1]
    if not lenient_number(line, False):
        _fail("bad-argument")
    if not long and line == b"00":
        v = (_BOOL, False)
    elif not long and line == b"01":
        v = (_BOOL, True)
    else:
        i = parse_plain_int(line)
        v = _OTHER if i is None else (_INT, i)
    m.stack.append(v)


def _float(m, code, at):
    if not lenient_number(m.line_bytes(), True):
        _fail("bad-argument")
    m.stack.append(_OTHER)


def _binint(m, code, at):
    m.stack.append((_INT, m.i32()))


def _binint_unsigned(size):
    def handler(m, code, at):
        m.stack.append((_INT, m.u(size)))
    return handler


def _binfloat(m, code, at):
    m.take(8)
    m.stack.append(_OTHER)


def _long_bin(m, code, at):
    if code == 0x8A:
        n = m.u(1)
    else:
        n = m.i32()
        if n < 0:
            _fail("negative-length")
    p = m.take(n)
    v = decode_long_le(m.data[p:p + n])
    m.stack.append(_OTHER if v is None else (_INT, v))


def _bytes(size, kind):
    def handler(m, code, at):
        n = m.u(size)
        p = m.take(n)
        m.stack.append((_STR, kind, False, p, n))
    return handler


def _readonly_buffer(m, code, at):
    m.need(1)  # the top becomes a read-only view of itself, or stays: keep its symbol


def _string(m, code, at):
    p, i = m.line()
    line = m.data[p:i]
    n = len(line)
    if n < 2 or line[0] != line[-1] or line[0] not in (0x22, 0x27):
        _fail("bad-argument")
    raw = escape_decode(bytes(line[1:-1]))
    if raw is None:
        _fail("bad-argument")
    try:
        raw.decode("utf-8")
        kind = _K_ESC_UTF8
    except UnicodeDecodeError:
        kind = _K_ESC_LATIN1
    m.stack.append((_STR, kind, False, p + 1, n - 2))


def _binstring(m, code, at):
    if code == 0x54:
        n = m.i32()
        if n < 0:
            _fail("negative-length")
    else:
        n = m.u(1)
    p = m.take(n)
    try:
        bytes(m.data[p:p + n]).decode("utf-8")
        kind = _K_LEGACY_UTF8
    except UnicodeDecodeError:
        kind = _K_LEGACY_LATIN1
    m.stack.append((_STR, kind, False, p, n))


def _unicode(m, code, at):
    p, i = m.line()
    try:
        str(bytes(m.data[p:i]), "raw-unicode-escape")
    except UnicodeDecodeError:
        _fail("bad-argument")
    m.stack.append((_STR, _K_RUE, False, p, i - p))


def _binunicode(size):
    def handler(m, code, at):
        n = m.u(size)
        p = m.take(n)
        try:
            str(bytes(m.data[p:p + n]), "utf-8", "surrogatepass")
        except UnicodeDecodeError:
            _fail("bad-argument")
        m.stack.append((_STR, _K_UTF8, False, p, n))
    return handler


def _tuple1(m, code, at):
    m.need(1)
    m.stack[-1] = m.make_tuple(m.stack[-1:])


def _tuple23(m, code, at):
    n = 2 if code == 0x86 else 3
    m.need(n)
    t = m.make_tuple(m.stack[-n:])
    del m.stack[-n:]
    m.stack.append(t)


def _tuple(m, code, at):
    mk = m.pop_mark()
    t = m.make_tuple(m.stack[mk:])
    del m.stack[mk:]
    m.stack.append(t)


def _list_frozenset(m, code, at):
    del m.stack[m.pop_mark():]
    m.stack.append(_OTHER)


def _dict(m, code, at):
    mk = m.pop_mark()
    if (len(m.stack) - mk) % 2:
        _fail("bad-argument")
    d = m.new_dict()
    if d[0] == _DICT:
        m.track_pairs(d[1], m.stack[mk:])
    del m.stack[mk:]
    m.stack.append(d)


def _append(m, code, at):
    m.need(2)
    v = m.stack.pop()
    top = m.stack[-1]
    if top[0] == _GLOBAL:
        m.add_call(at, "APPEND", top[1], _arg_facts((v,)))


def _appends(m, code, at):
    mk = m.pop_mark()
    if mk <= m.base():
        _fail("stack-underflow")
    container = m.stack[mk - 1]
    if container[0] == _GLOBAL:
        m.add_call(at, OPCODE_NAMES[code], container[1], _arg_facts(m.stack[mk:]))
    del m.stack[mk:]


def _setitem(m, code, at):
    m.need(3)
    container = m.stack[-3]
    if container[0] == _GLOBAL:
        m.add_call(at, "SETITEM", container[1], _arg_facts(m.stack[-2:]))
    elif container[0] == _DICT:
        m.track_pairs(container[1], m.stack[-2:])
    del m.stack[-2:]


def _setitems(m, code, at):
    mk = m.pop_mark()
    if mk <= m.base():
        _fail("stack-underflow")
    if (len(m.stack) - mk) % 2:
        _fail("bad-argument")
    container = m.stack[mk - 1]
    if container[0] == _GLOBAL:
        m.add_call(at, "SETITEMS", container[1], _arg_facts(m.stack[mk:]))
    elif container[0] == _DICT:
        m.track_pairs(container[1], m.stack[mk:])
    del m.stack[mk:]


def _put(m, code, at):
    line = m.line_bytes()
    m.need(1)
    key = parse_memo_key(line)
    if key is None or key == "negative":
        _fail("bad-argument")
    m.memo_put(key)


def _binput(m, code, at):
    m.memo_put(m.u(1))


def _long_binput(m, code, at):
    m.memo_put(m.u(4))


def _memoize(m, code, at):
    m.memo_put(m.memo_len)


def _get(m, code, at):
    key = parse_memo_key(m.line_bytes())
    if key is None:
        _fail("bad-argument")
    if key == "negative":
        _fail("memo-missing")
    m.memo_get(key)


def _binget(m, code, at):
    m.memo_get(m.u(1))


def _long_binget(m, code, at):
    m.memo_get(m.u(4))


def _line_name(line: bytes, ascii_only: bool, max_string: int):
    if ascii_only and not line.isascii():
        return None
    return decode_utf8(line, False, max_string)


def _global_or_inst(m, code, at):
    inst = code == 0x69
    max_string = m.a.max_string
    module = _line_name(m.line_bytes(), inst, max_string)
    if module is None:
        _fail("bad-argument")
    name = _line_name(m.line_bytes(), inst, max_string)
    if name is None:
        _fail("bad-argument")
    opname = "INST" if inst else "GLOBAL"
    g = m.add_global(at, opname, "literal", module[0], name[0], module[1] or name[1])
    if inst:
        mk = m.pop_mark()
        items = tuple(m.stack[mk:])
        m.add_call(at, "INST", g, _arg_facts(items))
        obj = m.instantiate("call" if items else "new", (_GLOBAL, g), items)
        del m.stack[mk:]
        m.stack.append((_RESULT, g, obj))
    else:
        m.stack.append((_GLOBAL, g))


def _stack_global(m, code, at):
    m.need(2)
    name = m.stack.pop()
    module = m.stack.pop()
    if module[0] == _STR and name[0] == _STR and module[1] < _K_BYTES and name[1] < _K_BYTES:
        res = "memo" if (module[2] or name[2]) else "literal"
        mt, mc = m.text_of(module)
        nt, nc = m.text_of(name)
        g = m.add_global(at, "STACK_GLOBAL", res, mt, nt, mc or nc)
    else:
        g = m.add_global(at, "STACK_GLOBAL", "computed", None, None, False)
    m.stack.append((_GLOBAL, g))


def _ext(m, code, at):
    if code == 0x82:
        ext_code = m.u(1)
    elif code == 0x83:
        ext_code = m.u(2)
    else:
        ext_code = m.i32()
    if ext_code <= 0:
        _fail("bad-argument")
    m.a.ext.append({"pickle": m.index, "offset": at, "opcode": OPCODE_NAMES[code], "code": ext_code})
    m.a.recorded += 1
    m.stack.append(_UNKNOWN)


def _global_of(v):
    return v[1] if v[0] == _GLOBAL else None


def _reduce(m, code, at):
    m.need(2)
    args = m.stack.pop()
    callable_ = m.stack[-1]
    target = _global_of(callable_)
    m.add_call(at, "REDUCE", target, _tuple_args(args))
    obj = m.instantiate("call", callable_, _args_of(args))
    m.stack[-1] = (_RESULT, target, obj)


def _build(m, code, at):
    m.need(2)
    state = m.stack.pop()
    inst = m.stack[-1]
    target = inst[1] if inst[0] in (_GLOBAL, _RESULT) else None
    m.add_call(at, "BUILD", target, _arg_facts((state,)))
    if m.joblib:
        m.joblib_build(at, state)


def _newobj(m, code, at):
    n = 2 if code == 0x81 else 3
    m.need(n)
    if code == 0x92:
        m.stack.pop()
    args = m.stack.pop()
    cls = m.stack[-1]
    target = _global_of(cls)
    m.add_call(at, OPCODE_NAMES[code], target, _tuple_args(args))
    obj = m.instantiate("new" if code == 0x81 else "newex", cls, _args_of(args))
    m.stack[-1] = (_RESULT, target, obj)


def _obj(m, code, at):
    mk = m.pop_mark()
    if len(m.stack) == mk:
        _fail("stack-underflow")
    cls = m.stack[mk]
    target = _global_of(cls)
    items = tuple(m.stack[mk + 1:])
    m.add_call(at, "OBJ", target, _arg_facts(items))
    obj = m.instantiate("call" if items else "new", cls, items)
    del m.stack[mk:]
    m.stack.append((_RESULT, target, obj))


def _persid(m, code, at):
    if not m.line_bytes().isascii():
        _fail("bad-argument")
    m.add_persistent_id(at, "PERSID")
    m.stack.append(_UNKNOWN)


def _binpersid(m, code, at):
    m.pop()
    m.add_persistent_id(at, "BINPERSID")
    m.stack.append(_UNKNOWN)


_DISPATCH = {
    0x80: _proto, 0x95: _frame, 0x2E: _stop, 0x28: _mark, 0x30: _pop, 0x31: _pop_mark, 0x32: _dup,
    # simple values
    0x4E: _push(_NONE), 0x88: _push((_BOOL, True)), 0x89: _push((_BOOL, False)),
    0x29: _push(_EMPTY_TUPLE), 0x5D: _push(_OTHER), 0x8F: _push(_OTHER), 0x97: _push(_OTHER),
    0x7D: _empty_dict,
    0x49: _int_or_long, 0x4C: _int_or_long, 0x46: _float,
    0x4A: _binint, 0x4B: _binint_unsigned(1), 0x4D: _binint_unsigned(2), 0x47: _binfloat,
    0x8A: _long_bin, 0x8B: _long_bin,
    0x43: _bytes(1, _K_BYTES), 0x42: _bytes(4, _K_BYTES), 0x8E: _bytes(8, _K_BYTES),
    0x96: _bytes(8, _K_BYTEARRAY),
    0x98: _readonly_buffer,
    # strings
    0x53: _string, 0x54: _binstring, 0x55: _binstring, 0x56: _unicode,
    0x8C: _binunicode(1), 0x58: _binunicode(4), 0x8D: _binunicode(8),
    # containers
    0x85: _tuple1, 0x86: _tuple23, 0x87: _tuple23, 0x74: _tuple, 0x6C: _list_frozenset,
    0x91: _list_frozenset, 0x64: _dict, 0x61: _append, 0x65: _appends, 0x90: _appends,
    0x73: _setitem, 0x75: _setitems,
    # memo
    0x70: _put, 0x71: _binput, 0x72: _long_binput, 0x94: _memoize,
    0x67: _get, 0x68: _binget, 0x6A: _long_binget,
    # imports and calls
    0x63: _global_or_inst, 0x69: _global_or_inst, 0x93: _stack_global,
    0x82: _ext, 0x83: _ext, 0x84: _ext,
    0x52: _reduce, 0x62: _build, 0x81: _newobj, 0x92: _newobj, 0x6F: _obj,
    0x50: _persid, 0x51: _binpersid,
}
assert set(_DISPATCH) == set(OPCODE_NAMES)


def analyze(data, *, max_opcodes: int, max_memo: int, max_stack: int, max_pickles: int,
            max_string: int, max_facts: int, follow_joblib: bool = True,
            compact: bool = False) -> dict:
    """Facts about the pickle(s) in ``data`` (see :func:`mlguard.engine.pickle_facts`)."""
    if not isinstance(data, (bytes, bytearray, mmap.mmap)):
        data = memoryview(data).tobytes()  # the reference engine may copy other buffers
    a = _Analysis(data, (max_opcodes, max_memo, max_stack, max_pickles, max_string, max_facts),
                  bool(compact))
    pos = 0
    while True:
        if a.pickles:
            if pos >= a.n:
                break
            if data[pos] not in OPCODE_NAMES:
                a.trailing = {"offset": pos, "length": a.n - pos}
                break
        if len(a.pickles) >= max_pickles:
            a.limit = "pickles"
            break
        end, _ = _run_pickle(a, pos, None, follow_joblib)
        if end is None:
            break
        pos = end
    counts = {OPCODE_NAMES[b]: c for b, c in enumerate(a.counts) if c}
    return {
        "pickles": a.pickles,
        "globals": a.globals,
        "calls": a.calls,
        "ext": a.ext,
        "persistent_ids": a.persistent_ids,
        "raw_spans": a.raw_spans,
        "opcode_counts": counts,
        "limit": a.limit,
        "trailing": a.trailing,
    }


def analyze_file(path, offset: int, length, **kwargs) -> dict:
    """:func:`analyze` of ``length`` bytes (None: the rest) of a file from ``offset``."""
    with open(path, "rb") as fh:
        fh.seek(offset)
        data = fh.read() if length is None else fh.read(length)
    if length is not None and len(data) != length:
        raise ValueError("range is beyond the end of the file")
    return analyze(data, **kwargs)
