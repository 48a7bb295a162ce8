"""A tiny pickle assembler for hand-built hostile streams. Streams are built, never loaded."""
from __future__ import annotations

import pickle
import struct


class Asm:
    """Appends opcodes; ``bytes(asm)`` is the stream."""

    def __init__(self, protocol: int | None = 4):
        self.out = bytearray()
        if protocol is not None and protocol >= 2:
            self.out += pickle.PROTO + bytes([protocol])

    def __bytes__(self) -> bytes:
        return bytes(self.out)

    def op(self, code: bytes, arg: bytes = b"") -> "Asm":
        self.out += code + arg
        return self

    def str(self, text: str) -> "Asm":
        raw = text.encode()
        return self.op(pickle.SHORT_BINUNICODE, bytes([len(raw)]) + raw) if len(raw) < 256 else \
            self.op(pickle.BINUNICODE, struct.pack("<I", len(raw)) + raw)

    def bytes_(self, raw: bytes) -> "Asm":
        return self.op(pickle.BINBYTES, struct.pack("<I", len(raw)) + raw)

    def text_string(self, text: str) -> "Asm":
        """Protocol 0 STRING: a quoted repr on one line."""
        return self.op(pickle.STRING, repr(text).encode() + b"\n")

    def global_(self, module: str, name: str) -> "Asm":
        return self.op(pickle.GLOBAL, f"{module}\n{name}\n".encode())

    def stack_global(self, module: str, name: str) -> "Asm":
        return self.str(module).str(name).op(pickle.STACK_GLOBAL)

    def put(self, key: int) -> "Asm":
        return self.op(pickle.BINPUT, bytes([key]))

    def get(self, key: int) -> "Asm":
        return self.op(pickle.BINGET, bytes([key]))

    def call1(self, *push) -> "Asm":
        """Build a 1-tuple from what ``push`` pushes and REDUCE."""
        for fn in push:
            fn(self)
        return self.op(pickle.TUPLE1).op(pickle.REDUCE)

    def stop(self) -> bytes:
        self.op(pickle.STOP)
        return bytes(self)


def call(module: str, name: str, *args: str, protocol: int = 4, stack: bool = True) -> bytes:
    """``module.name(*args)`` as a pickle (STACK_GLOBAL for protocol >= 4, else GLOBAL)."""
    a = Asm(protocol)
    if stack and protocol >= 4:
        a.stack_global(module, name)
    else:
        a.global_(module, name)
    a.op(pickle.MARK)
    for arg in args:
        a.str(arg) if protocol >= 1 else a.text_string(arg)
    return a.op(pickle.TUPLE).op(pickle.REDUCE).stop()
