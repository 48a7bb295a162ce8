"""Reference pickle kernel: the pure-Python twin of ``mlguard_rs/src/pickle.rs``.

A symbolic, non-executing model of CPython's unpickler (``Lib/pickle.py`` ``_Unpickler`` and
``Modules/_pickle.c``). Nothing from the data is imported, called or unpickled: the stack and
memo hold *symbols* (a string's text, "global #3", "result of calling global #3", "something
else"), and the facts they reveal are recorded. Both engines must return identical facts for
every input; ``tests/test_engine_pickle.py`` checks that on fixtures and fuzzed bytes. When you
change a rule here, change it in the Rust kernel too.

Use :func:`mlguard.engine.pickle_facts`, which documents the facts; this module is its engine.
"""
from __future__ import annotations

import mmap
import re

HIGHEST_PROTOCOL = 5
"""Highest protocol CPython's unpickler accepts; PROTO above it is ``unsupported-protocol``."""

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

# Symbolic values: (kind, payload...). Strings keep (text, was_cut).
_OTHER = (0,)
_STR = 1      # (1, text, truncated)   pushed by a string opcode
_MSTR = 2     # (2, text, truncated)   fetched from the memo
_GLOBAL = 3   # (3, index into globals)
_RESULT = 4   # (4, global index of the callable, or None)

_SPACE = b" \t\n\r\x0b\x0c"          # what int(bytes) strips
_INT_RE = re.compile(rb"[+-]?[0-9A-Za-z_]+")
_FLOAT_RE = re.compile(rb"[0-9A-Za-z_.+-]+")
_DIGITS_RE = re.compile(rb"[0-9]+(?:_[0-9]+)*")
_I64_MAX = (1 << 63) - 1
_HEX = frozenset(b"0123456789abcdefABCDEF")
_SIMPLE_ESCAPES = {0x5C: 0x5C, 0x27: 0x27, 0x22: 0x22, 0x62: 0x08, 0x66: 0x0C, 0x74: 0x09,
                   0x6E: 0x0A, 0x72: 0x0D, 0x76: 0x0B, 0x61: 0x07}


class _Halt(Exception):
    """Stops the current pickle: ``code`` is "truncated" or an error code."""

    def __init__(self, code: str):
        super().__init__(code)
        self.code = code




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


def decode_legacy_str(raw, max_string: int) -> tuple[str, bool]:
    """A Python 2 ``str`` (STRING, BINSTRING, SHORT_BINSTRING): UTF-8 if valid, else Latin-1."""
    t = decode_utf8(raw, False, max_string)
    if t is not None:
        return t
    return bytes(raw[:max_string]).decode("latin-1"), len(raw) > max_string


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


def raw_unicode_escape_decode(s: bytes, max_string: int):
    """The UNICODE opcode's decoding (``raw-unicode-escape``) -> (text, cut) or None."""
    try:
        text = str(s, "raw-unicode-escape")
    except UnicodeDecodeError:
        return None
    return _cut(text, max_string)


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

class _Analysis:
    """One call of :func:`analyze`: the data, limits, facts so far and the opcode budget."""

    def __init__(self, data, mv, limits):
        self.data = data
        self.mv = mv
        self.n = len(mv)
        (self.max_opcodes, self.max_memo, self.max_stack,
         self.max_pickles, self.max_string, self.max_facts) = limits
        self.total = 0
        self.pickles: list = []
        self.globals: list = []
        self.calls: list = []
        self.ext: list = []
        self.persistent_ids: list = []
        self.counts = [0] * 256
        self.limit = None
        self.trailing = None


class _Machine:
    """One pickle: a symbolic stack, marks and memo, driven opcode by opcode."""

    def __init__(self, a: _Analysis, start: int, index: int):
        self.a = a
        self.data = a.data
        self.pos = start
        self.index = index
        self.stack: list = []
        self.marks: list = []
        self.memo: dict = {}
        self.proto = 0
        self.first_proto = None
        self.frame_end = 0    # furthest offset announced by a FRAME

    # reading
    def take(self, n: int) -> int:
        """Consume n bytes, return where they start."""
        p = self.pos
        if n > self.a.n - p:
            raise _Halt("truncated")
        self.pos = p + n
        return p

    def u(self, n: int) -> int:
        p = self.take(n)
        return int.from_bytes(self.data[p:p + n], "little")

    def i32(self) -> int:
        p = self.take(4)
        return int.from_bytes(self.data[p:p + 4], "little", signed=True)

    def line(self) -> bytes:
        p = self.pos
        i = self.data.find(b"\n", p)
        if i < 0:
            raise _Halt("truncated")
        self.pos = i + 1
        return bytes(self.data[p:i])

    def raw(self, n: int):
        p = self.take(n)
        return self.a.mv[p:p + n]

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

    def pop_mark(self):
        if not self.marks:
            raise _Halt("mark-missing")
        m = self.marks.pop()
        count = len(self.stack) - m
        first = self.stack[m] if count else None
        del self.stack[m:]
        return count, first

    def memo_put(self, key: int) -> None:
        self.memo[key] = self.top()

    def memo_get(self, key: int) -> None:
        v = self.memo.get(key)
        if v is None:
            raise _Halt("memo-missing")
        if v[0] == _STR:
            v = (_MSTR, v[1], v[2])
        self.stack.append(v)

    def push_str(self, t) -> None:
        self.stack.append((_STR, t[0], t[1]))

    # facts
    def add_global(self, at, opcode, resolution, module, name, truncated) -> int:
        g = self.a.globals
        g.append({"pickle": self.index, "offset": at, "opcode": opcode, "module": module,
                  "name": name, "resolution": resolution, "protocol": self.proto,
                  "truncated": truncated})
        return len(g) - 1

    def add_call(self, at, opcode, target) -> None:
        self.a.calls.append({"pickle": self.index, "offset": at, "opcode": opcode, "target": target})

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
            at = self.pos
            if at >= a.n:
                status, error, error_offset = "truncated", "truncated", at
                break
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
            try:
                if handler(self, code, at):
                    end = self.pos
                    break
            except _Halt as h:
                if h.code == "truncated":
                    status, error = "truncated", "truncated"
                else:
                    status, error = "error", h.code
                error_offset = at
                break
            if len(self.stack) + len(self.marks) > a.max_stack:
                a.limit = "stack"
                status, error_offset = "limit", at
                break
            if len(self.memo) > a.max_memo:
                a.limit = "memo"
                status, error_offset = "limit", at
                break
            if len(a.globals) + len(a.calls) + len(a.ext) + len(a.persistent_ids) > a.max_facts:
                a.limit = "facts"
                status, error_offset = "limit", at
                break
        frame_end = self.frame_end if end is not None and self.frame_end > end else None
        return {"index": self.index, "start": start, "end": end, "frame_end": frame_end,
                "protocol": self.first_proto,
                "opcodes": opcodes, "status": status, "error": error, "error_offset": error_offset}


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
    if n > m.a.n - m.pos:
        raise _Halt("truncated")
    m.frame_end = max(m.frame_end, m.pos + n)


def _stop(m, code, at):
    m.pop()
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
    m.pop_mark()


def _dup(m, code, at):
    m.stack.append(m.top())


def _push_other(m, code, at):
    m.stack.append(_OTHER)


def _int_or_long(m, code, at):
    line = m.line()
    if code == 0x4C and line.endswith(b"L"):
        line = line[:-1]
    if not lenient_number(line, False):
        _fail("bad-argument")
    m.stack.append(_OTHER)


def _float(m, code, at):
    if not lenient_number(m.line(), True):
        _fail("bad-argument")
    m.stack.append(_OTHER)


def _fixed(size):
    def handler(m, code, at):
        m.take(size)
        m.stack.append(_OTHER)
    return handler


def _counted(size):
    """Unsigned length prefix of ``size`` bytes, then that many bytes of untracked value."""
    def handler(m, code, at):
        m.take(m.u(size))
        m.stack.append(_OTHER)
    return handler


def _long4(m, code, at):
    n = m.i32()
    if n < 0:
        _fail("negative-length")
    m.take(n)
    m.stack.append(_OTHER)


def _readonly_buffer(m, code, at):
    m.need(1)  # the top becomes a read-only view of itself, or stays: keep its symbol


def _string(m, code, at):
    line = m.line()
    n = len(line)
    if n < 2 or line[0] != line[-1] or line[0] not in (0x22, 0x27):
        _fail("bad-argument")
    raw = escape_decode(line[1:-1])
    if raw is None:
        _fail("bad-argument")
    m.push_str(decode_legacy_str(raw, m.a.max_string))


def _binstring(m, code, at):
    n = m.i32()
    if n < 0:
        _fail("negative-length")
    m.push_str(decode_legacy_str(m.raw(n), m.a.max_string))


def _short_binstring(m, code, at):
    m.push_str(decode_legacy_str(m.raw(m.u(1)), m.a.max_string))


def _unicode(m, code, at):
    t = raw_unicode_escape_decode(m.line(), m.a.max_string)
    if t is None:
        _fail("bad-argument")
    m.push_str(t)


def _binunicode(size):
    def handler(m, code, at):
        t = decode_utf8(m.raw(m.u(size)), True, m.a.max_string)
        if t is None:
            _fail("bad-argument")
        m.push_str(t)
    return handler


def _tuple1(m, code, at):
    m.need(1)
    m.stack[-1] = _OTHER


def _tuple23(m, code, at):
    n = 2 if code == 0x86 else 3
    m.need(n)
    del m.stack[-n:]
    m.stack.append(_OTHER)


def _from_mark(m, code, at):
    m.pop_mark()
    m.stack.append(_OTHER)


def _dict(m, code, at):
    count, _ = m.pop_mark()
    if count % 2:
        _fail("bad-argument")
    m.stack.append(_OTHER)


def _container_call(m, code, at):
    """Filling a container calls its append/extend/__setitem__/add: a call if it is a global."""
    top = m.top()
    if top[0] == _GLOBAL:
        m.add_call(at, OPCODE_NAMES[code], top[1])


def _append(m, code, at):
    m.need(2)
    m.stack.pop()
    _container_call(m, code, at)


def _appends(m, code, at):
    m.pop_mark()
    m.need(1)
    _container_call(m, code, at)


def _setitem(m, code, at):
    m.need(3)
    del m.stack[-2:]
    _container_call(m, code, at)


def _setitems(m, code, at):
    count, _ = m.pop_mark()
    m.need(1)
    if count % 2:
        _fail("bad-argument")
    _container_call(m, code, at)


def _put(m, code, at):
    line = m.line()
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
    m.memo_put(len(m.memo))


def _get(m, code, at):
    key = parse_memo_key(m.line())
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
    module = _line_name(m.line(), inst, max_string)
    if module is None:
        _fail("bad-argument")
    name = _line_name(m.line(), inst, max_string)
    if name is None:
        _fail("bad-argument")
    opname = "INST" if inst else "GLOBAL"
    g = m.add_global(at, opname, "literal", module[0], name[0], module[1] or name[1])
    if inst:
        m.pop_mark()
        m.add_call(at, "INST", g)
        m.stack.append((_RESULT, g))
    else:
        m.stack.append((_GLOBAL, g))


def _stack_global(m, code, at):
    m.need(2)
    name = m.stack.pop()
    module = m.stack.pop()
    if module[0] in (_STR, _MSTR) and name[0] in (_STR, _MSTR):
        res = "memo" if _MSTR in (module[0], name[0]) else "literal"
        g = m.add_global(at, "STACK_GLOBAL", res, module[1], name[1], module[2] or name[2])
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
    m.stack.append(_OTHER)


def _global_of(v):
    return v[1] if v[0] == _GLOBAL else None


def _reduce(m, code, at):
    m.need(2)
    m.stack.pop()
    target = _global_of(m.stack[-1])
    m.add_call(at, "REDUCE", target)
    m.stack[-1] = (_RESULT, target)


def _build(m, code, at):
    m.need(2)
    m.stack.pop()
    inst = m.stack[-1]
    target = inst[1] if inst[0] in (_GLOBAL, _RESULT) else None
    m.add_call(at, "BUILD", target)


def _newobj(m, code, at):
    n = 2 if code == 0x81 else 3
    m.need(n)
    del m.stack[len(m.stack) - (n - 1):]
    target = _global_of(m.stack[-1])
    m.add_call(at, OPCODE_NAMES[code], target)
    m.stack[-1] = (_RESULT, target)


def _obj(m, code, at):
    count, first = m.pop_mark()
    if not count:
        _fail("stack-underflow")
    target = _global_of(first)
    m.add_call(at, "OBJ", target)
    m.stack.append((_RESULT, target))


def _persid(m, code, at):
    if not m.line().isascii():
        _fail("bad-argument")
    m.a.persistent_ids.append({"pickle": m.index, "offset": at, "opcode": "PERSID"})
    m.stack.append(_OTHER)


def _binpersid(m, code, at):
    m.pop()
    m.a.persistent_ids.append({"pickle": m.index, "offset": at, "opcode": "BINPERSID"})
    m.stack.append(_OTHER)


_DISPATCH = {
    0x80: _proto, 0x95: _frame, 0x2E: _stop, 0x28: _mark, 0x30: _pop, 0x31: _pop_mark, 0x32: _dup,
    # untracked values
    0x4E: _push_other, 0x88: _push_other, 0x89: _push_other, 0x29: _push_other, 0x5D: _push_other,
    0x7D: _push_other, 0x8F: _push_other, 0x97: _push_other,
    0x49: _int_or_long, 0x4C: _int_or_long, 0x46: _float,
    0x4A: _fixed(4), 0x4B: _fixed(1), 0x4D: _fixed(2), 0x47: _fixed(8),
    0x8A: _counted(1), 0x8B: _long4,
    0x43: _counted(1), 0x42: _counted(4), 0x8E: _counted(8), 0x96: _counted(8),
    0x98: _readonly_buffer,
    # strings
    0x53: _string, 0x54: _binstring, 0x55: _short_binstring, 0x56: _unicode,
    0x8C: _binunicode(1), 0x58: _binunicode(4), 0x8D: _binunicode(8),
    # containers
    0x85: _tuple1, 0x86: _tuple23, 0x87: _tuple23, 0x74: _from_mark, 0x6C: _from_mark,
    0x91: _from_mark, 0x64: _dict, 0x61: _append, 0x65: _appends, 0x90: _appends,
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
            max_string: int, max_facts: int) -> dict:
    """Facts about the pickle(s) in ``data`` (see :func:`mlguard.engine.pickle_facts`)."""
    if not isinstance(data, (bytes, bytearray, mmap.mmap)):
        data = memoryview(data).tobytes()  # the reference engine may copy other buffers
    with memoryview(data) as mv:
        a = _Analysis(data, mv, (max_opcodes, max_memo, max_stack, max_pickles, max_string, max_facts))
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
            info = _Machine(a, pos, len(a.pickles)).run()
            a.pickles.append(info)
            if info["end"] is None:
                break
            pos = info["end"]
    counts = {OPCODE_NAMES[b]: c for b, c in enumerate(a.counts) if c}
    return {
        "pickles": a.pickles,
        "globals": a.globals,
        "calls": a.calls,
        "ext": a.ext,
        "persistent_ids": a.persistent_ids,
        "opcode_counts": counts,
        "limit": a.limit,
        "trailing": a.trailing,
    }
