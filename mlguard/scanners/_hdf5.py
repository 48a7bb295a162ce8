"""The root group's string attributes of an HDF5 file, read without h5py: where legacy Keras keeps a model's
``model_config`` and ``training_config``, found the way the HDF5 library finds them.

Supported: superblocks 0-3 (also behind a user block), object headers 1 and 2 with continuation chunks,
attribute messages 1-3 in the header or in dense storage (fractal heap without I/O filters, v2 B-tree name
index, managed and huge objects), scalar fixed-length and variable-length (global heap) strings. Checksums are
not verified. Everything is bounded; malformed or unsupported input stops the read with a reason and an
offset, keeping what was read before it.
"""
from __future__ import annotations

from typing import Collection, Iterator

SIGNATURE = b"\x89HDF\r\n\x1a\n"
MAX_VALUE = 16 << 20
"""Largest string value read, in bytes."""
MAX_TOTAL = 4 * MAX_VALUE
"""All string values read, together."""
MAX_STEPS = 250_000
"""Header messages, B-tree nodes and records, and global heap objects visited, together."""
MAX_CHUNKS = 256
"""Object header continuation chunks followed."""
MAX_DEPTH = 16
"""Deepest v2 B-tree, and fractal heap indirect block nesting."""
_ATTRIBUTE, _CONTINUATION, _ATTRIBUTE_INFO = 0x0C, 0x10, 0x15
_SHARED = 0x02
"""Message flag (and dense name index record flag): the message itself is stored elsewhere."""


class Attributes:
    """Scalar string attributes of the root group in the order read; a hostile file may repeat a name."""

    def __init__(self) -> None:
        self.values: list[tuple[str, str]] = []
        self.error: str | None = None
        """Why the read stopped early (malformed or unsupported structure); None when it completed."""
        self.offset = 0
        """File offset of the error."""


class _Bad(Exception):
    """Malformed or unsupported structure: (reason, offset)."""


def root_attributes(buf, names: Collection[str] | None = None) -> Attributes:
    """Scalar string attributes of the root group of the HDF5 file in ``buf`` (bytes, mmap or memoryview).

    With ``names``, only those attributes' values are read. Values are decoded as UTF-8 (invalid bytes
    replaced) and end at the first NUL, as h5py returns them.
    """
    out = Attributes()
    try:
        f = _File(buf)
        for kind, flags, start, end in _messages(f, f.root):
            if kind == _ATTRIBUTE:
                if flags & _SHARED:
                    raise _Bad("shared attribute message", start)
                _attribute(f, start, end, names, out)
            elif kind == _ATTRIBUTE_INFO:
                _dense(f, start, end, names, out)
    except _Bad as e:
        out.error, out.offset = e.args
    return out


class _File:
    """The buffer, its superblock's sizes, and the read's budgets."""

    def __init__(self, buf):
        self.buf, self.size = buf, len(buf)
        self.steps = self.value_bytes = 0
        self.base = self._superblock()
        version = self.byte(self.base + 8)
        if version not in (0, 1, 2, 3):
            raise _Bad(f"superblock version {version}", self.base + 8)
        sizes = self.base + (13 if version < 2 else 9)
        self.o, self.l = self.byte(sizes), self.byte(sizes + 1)
        if self.o not in (2, 4, 8) or self.l not in (2, 4, 8):
            raise _Bad(f"unsupported address/length sizes {self.o}/{self.l}", sizes)
        # v0/v1: the root group's symbol table entry (link name offset, then object header address)
        # follows the fixed fields and four addresses; v2/v3: the fourth address is the root's.
        root = self.base + 24 + 4 * version + 5 * self.o if version < 2 else self.base + 12 + 3 * self.o
        self.root = self.addr(root)
        if self.root is None:
            raise _Bad("no root group", root)

    def _superblock(self) -> int:
        at = 0
        while at + 8 <= self.size:
            if self.buf[at:at + 8] == SIGNATURE:
                return at
            at = max(512, 2 * at)
        raise _Bad("no HDF5 signature", 0)

    def take(self, at: int, n: int):
        if at < 0 or n < 0 or at + n > self.size:
            raise _Bad("truncated", at)
        return self.buf[at:at + n]

    def uint(self, at: int, n: int) -> int:
        return int.from_bytes(self.take(at, n), "little")

    def byte(self, at: int) -> int:
        return self.uint(at, 1)

    def addr(self, at: int) -> int | None:
        """The address stored at ``at`` as a file offset (None when undefined). Like the library, addresses
        are taken relative to the superblock, whatever its base address field says."""
        raw = self.uint(at, self.o)
        if raw == (1 << 8 * self.o) - 1:
            return None
        if self.base + raw >= self.size:
            raise _Bad("address past the end of the file", at)
        return self.base + raw

    def expect(self, at: int, signature: bytes) -> None:
        if self.take(at, 4) != signature:
            raise _Bad(f"{signature.decode()} signature expected", at)

    def step(self, at: int) -> None:
        self.steps += 1
        if self.steps > MAX_STEPS:
            raise _Bad(f"more than {MAX_STEPS} structures", at)


class _Cursor:
    """Sequential little-endian fields of one structure, which ends at ``end``."""

    def __init__(self, f: _File, pos: int, end: int):
        self.f, self.pos, self.end = f, pos, end

    def skip(self, n: int) -> int:
        """Position of the ``n`` bytes skipped."""
        if self.pos + n > self.end:
            raise _Bad("field overruns its structure", self.pos)
        self.pos += n
        return self.pos - n

    def uint(self, n: int) -> int:
        return self.f.uint(self.skip(n), n)

    def addr(self) -> int | None:
        return self.f.addr(self.skip(self.f.o))


def _messages(f: _File, at: int) -> Iterator[tuple[int, int, int, int]]:
    """(type, flags, start, end) of each message of the object header at ``at``, continuations followed."""
    if f.take(at, 4) == b"OHDR":
        if f.byte(at + 4) != 2:
            raise _Bad(f"object header version {f.byte(at + 4)}", at + 4)
        flags = f.byte(at + 5)
        size_at = at + 6 + (16 if flags & 0x20 else 0) + (4 if flags & 0x10 else 0)  # times, phase change
        width = 1 << (flags & 3)
        chunks = [(size_at + width, size_at + width + f.uint(size_at, width))]
        prefix, v2 = 6 if flags & 0x04 else 4, True  # type, size, flags [, creation order]
    elif f.byte(at) == 1:
        chunks = [(at + 16, at + 16 + f.uint(at + 8, 4))]
        prefix, v2 = 8, False  # type, size, flags, reserved
    else:
        raise _Bad(f"object header version {f.byte(at)}", at)
    seen = {at}
    for start, end in chunks:  # grows as continuation messages are met
        if end > f.size:
            raise _Bad("object header chunk past the end of the file", start)
        pos = start
        while pos + prefix <= end:  # fewer bytes left: a gap
            f.step(pos)
            if v2:
                kind, size, flags = f.byte(pos), f.uint(pos + 1, 2), f.byte(pos + 3)
            else:
                kind, size, flags = f.uint(pos, 2), f.uint(pos + 2, 2), f.byte(pos + 4)
            data, pos = pos + prefix, pos + prefix + size
            if pos > end:
                raise _Bad("message overruns its object header chunk", data)
            if kind != _CONTINUATION:
                yield kind, flags, data, pos
                continue
            c = _Cursor(f, data, pos)
            target, length = c.addr(), c.uint(f.l)
            if target is None or target in seen or len(chunks) >= MAX_CHUNKS:
                raise _Bad("continuation chunk missing, looping or one too many", data)
            seen.add(target)
            if v2:
                f.expect(target, b"OCHK")
                chunks.append((target + 4, target + length - 4))  # signature, messages, checksum
            else:
                chunks.append((target, target + length))


def _align(n: int, to: int) -> int:
    return -(-n // to) * to


def _attribute(f: _File, start: int, end: int, names: Collection[str] | None, out: Attributes) -> None:
    """Record an attribute message's value if it is a wanted scalar string."""
    c = _Cursor(f, start, end)
    version, flags = c.uint(1), c.uint(1)
    if version not in (1, 2, 3):
        raise _Bad(f"attribute message version {version}", start)
    name_size, type_size, space_size = c.uint(2), c.uint(2), c.uint(2)
    if version == 3:
        c.skip(1)  # the name's character set
    align = 8 if version == 1 else 1  # version 1 pads name, datatype and dataspace to 8 bytes
    name = bytes(f.take(c.skip(_align(name_size, align)), name_size)).split(b"\0", 1)[0]
    name = name.decode("utf-8", "replace")
    if names is not None and name not in names:
        return
    if version > 1 and flags & 3:
        raise _Bad(f"attribute {name!r} has a shared datatype or dataspace", start)
    if type_size < 8:
        raise _Bad("datatype too short", c.pos)
    dtype, space = c.skip(_align(type_size, align)), c.skip(_align(space_size, align))
    if _elements(f, space, space_size) != 1:
        return
    kind, bits, size = f.byte(dtype) & 0x0F, f.byte(dtype + 1), f.uint(dtype + 4, 4)
    if kind == 3:  # fixed-length string
        if size > MAX_VALUE:
            raise _Bad(f"attribute {name!r} is larger than {MAX_VALUE} bytes", dtype)
        raw = bytes(f.take(c.skip(size), size))
    elif kind == 9 and bits & 0x0F == 1:  # variable-length string: length, global heap collection, index
        length, heap, index = c.uint(4), c.addr(), c.uint(4)
        raw = _global_heap(f, heap, index, length, c.pos)
    else:
        return
    f.value_bytes += len(raw)
    if f.value_bytes > MAX_TOTAL:
        raise _Bad(f"attribute values larger than {MAX_TOTAL} bytes together", start)
    out.values.append((name, raw.split(b"\0", 1)[0].decode("utf-8", "replace")))


def _elements(f: _File, at: int, size: int) -> int:
    """Number of elements of the dataspace message at ``at``."""
    c = _Cursor(f, at, at + size)
    version, rank = c.uint(1), c.uint(1)
    c.skip(1)  # flags
    if version == 1:
        c.skip(5)  # reserved
        kind = 1 if rank else 0
    elif version == 2:
        kind = c.uint(1)
    else:
        raise _Bad(f"dataspace version {version}", at)
    if kind == 2:  # null
        return 0
    if kind > 2 or rank > 32:
        raise _Bad("unknown dataspace", at)
    count = 1
    for _ in range(rank if kind else 0):
        count *= c.uint(f.l)
    return count


def _global_heap(f: _File, at: int | None, index: int, length: int, where: int) -> bytes:
    """``length`` bytes of object ``index`` of the global heap collection at ``at``."""
    if length == 0:
        return b""
    if at is None or index == 0 or length > MAX_VALUE:
        raise _Bad("variable-length string without heap object, or too long", where)
    f.expect(at, b"GCOL")
    header = _align(8 + f.l, 8)  # the collection's and each object's: signature or index, ..., size
    end, pos = at + f.uint(at + 8, f.l), at + header
    if end > f.size:
        raise _Bad("global heap collection past the end of the file", at)
    found = None
    while pos + header <= end:  # every object: a repeated index is refused (the library keeps the last)
        f.step(pos)
        number, size = f.uint(pos, 2), f.uint(pos + 8, f.l)
        if number == index:
            if found is not None:
                raise _Bad(f"global heap object {index} repeated", pos)
            found = pos + header, size
        step = size if number == 0 else header + _align(size, 8)  # object 0: free space, header included
        if step < header:
            break
        pos += step
    if found is None or length > found[1] or found[0] + found[1] > end:
        raise _Bad(f"global heap object {index} missing or shorter than its string", at)
    return bytes(f.take(found[0], length))


def _dense(f: _File, start: int, end: int, names: Collection[str] | None, out: Attributes) -> None:
    """Attributes in dense storage, per the attribute info message: every record of the name index."""
    c = _Cursor(f, start, end)
    if c.uint(1) != 0:
        raise _Bad("attribute info message version", start)
    if c.uint(1) & 1:
        c.skip(2)  # maximum creation index
    heap_at, index_at = c.addr(), c.addr()
    if heap_at is None:
        return  # attributes are in the object header
    if index_at is None:
        raise _Bad("dense attribute storage without a name index", start)
    heap = _Heap(f, heap_at)
    for record in _btree(f, index_at, 8, 17):  # heap ID (8), message flags, creation order, name hash
        if f.byte(record + 8) & _SHARED:
            raise _Bad("shared attribute in dense storage", record)
        _attribute(f, *heap.find(record), names, out)


def _btree(f: _File, at: int, kind: int, record_size: int) -> Iterator[int]:
    """Offsets of the records of the v2 B-tree at ``at`` (of type ``kind``), in no particular order."""
    f.expect(at, b"BTHD")
    c = _Cursor(f, at + 4, f.size)
    version, found, node_size, size, depth = c.uint(1), c.uint(1), c.uint(4), c.uint(2), c.uint(2)
    c.skip(2)  # split and merge percentages
    root, root_records = c.addr(), c.uint(2)
    if version or found != kind or size != record_size or depth > MAX_DEPTH:
        raise _Bad(f"unexpected v2 B-tree (type {found}, record size {size}, depth {depth})", at)
    # Records per node at each depth and the width of child pointers, derived as the library does.
    most, pointer = [(node_size - 10) // size], [0]  # signature, version, type, checksum
    count_size = _enc_size(most[0])
    below, below_size = most[0], 0
    for _ in range(depth):
        pointer.append(f.o + count_size + below_size)  # child address, its records [, records below it]
        most.append((node_size - 10 - pointer[-1]) // (size + pointer[-1]))
        below = (most[-1] + 1) * below + most[-1]
        below_size = _enc_size(below)
    if min(most) < 1:
        raise _Bad("v2 B-tree nodes too small", at)
    stack, seen = ([(root, root_records, depth)] if root is not None else []), set()
    while stack:
        node, records, d = stack.pop()
        f.step(at)
        if node is None or node in seen or records > most[d]:
            raise _Bad("v2 B-tree node missing, looping or overfull", at if node is None else node)
        seen.add(node)
        f.expect(node, b"BTIN" if d else b"BTLF")
        if f.byte(node + 4) != 0 or f.byte(node + 5) != kind:
            raise _Bad("unexpected v2 B-tree node", node)
        for i in range(records):
            f.step(node)
            yield node + 6 + i * size
        children = node + 6 + records * size
        for i in range(records + 1 if d else 0):
            child = children + i * pointer[d]
            stack.append((f.addr(child), f.uint(child + f.o, count_size), d - 1))


def _enc_size(n: int) -> int:
    """Bytes the library uses to store counts up to ``n``."""
    return (n.bit_length() - 1) // 8 + 1


class _Heap:
    """A fractal heap without I/O filters: where its objects are in the file."""

    def __init__(self, f: _File, at: int):
        self.f, self.huge = f, None
        f.expect(at, b"FRHP")
        c = _Cursor(f, at + 4, f.size)
        version, self.id_len, filters, _, max_managed = c.uint(1), c.uint(2), c.uint(2), c.uint(1), c.uint(4)
        c.uint(f.l)  # next huge object ID
        self.huge_tree = c.addr()
        c.skip(f.l + f.o + 8 * f.l)  # free space, its manager, statistics
        self.width, self.start, max_direct, bits = c.uint(2), c.uint(f.l), c.uint(f.l), c.uint(2)
        c.skip(2)  # starting rows of the root indirect block
        self.root, self.root_rows = c.addr(), c.uint(2)
        if version or filters:
            raise _Bad("fractal heap version or I/O filters unsupported", at)
        # The doubling table, as the library derives it: row 0 and 1 hold blocks of the starting size,
        # each next row blocks twice as large; rows past the direct ones hold indirect blocks.
        self.first_row_bits = _log2(self.start) + _log2(self.width)
        self.direct_rows = _log2(max_direct) - _log2(self.start) + 2
        self.off_size = (bits + 7) // 8
        self.len_size = min((_log2(max_direct) + 7) // 8, _enc_size(max_managed))
        if (min(self.width, self.start, max_direct, max_managed) < 1 or self.start > max_direct
                or not self.first_row_bits <= bits <= 64 or self.root_rows > bits - self.first_row_bits + 1
                or any(n & (n - 1) for n in (self.width, self.start, max_direct))
                or self.id_len != 8 or 1 + self.off_size + self.len_size > self.id_len):
            raise _Bad("unexpected fractal heap parameters", at)

    def find(self, id_at: int) -> tuple[int, int]:
        """(start, end) in the file of the object whose heap ID is at ``id_at``."""
        f, kind = self.f, self.f.byte(id_at) >> 4  # version (bits 6-7) 0, type (bits 4-5)
        if kind == 0:
            offset = f.uint(id_at + 1, self.off_size)
            return self._managed(offset, f.uint(id_at + 1 + self.off_size, self.len_size), id_at)
        if kind == 1:
            return self._huge(id_at)
        raise _Bad("unsupported fractal heap ID (tiny object or unknown version)", id_at)

    def _managed(self, offset: int, length: int, where: int) -> tuple[int, int]:
        f, block, rows, size = self.f, self.root, self.root_rows, self.start
        for depth in range(MAX_DEPTH):
            if block is None:
                raise _Bad("fractal heap block missing", where)
            f.expect(block, b"FHIB" if rows else b"FHDB")
            # Objects are found by their offset in the block, whose own offset (after signature, version
            # and heap address) is subtracted, except the root indirect block's, as the library does.
            rel = offset - (f.uint(block + 5 + f.o, self.off_size) if depth or not rows else 0)
            if rel < 0:
                raise _Bad("heap object before its block", where)
            if not rows:
                if rel + length > size or length == 0:
                    raise _Bad("heap object outside its block", where)
                return block + rel, block + rel + length
            if rel < self.start * self.width:
                row, col = 0, rel // self.start
            else:
                high = rel.bit_length() - 1
                row = high - self.first_row_bits + 1
                col = (rel - (1 << high)) // (self.start << (row - 1))
            if row >= rows:
                raise _Bad("heap object past its indirect block", where)
            size = self.start << max(row - 1, 0)
            block = f.addr(block + 5 + f.o + self.off_size + (row * self.width + col) * f.o)
            rows = 0 if row < self.direct_rows else _log2(size) - self.first_row_bits + 1
            if row >= self.direct_rows and rows < 1:
                raise _Bad("unexpected fractal heap indirect block", where)
        raise _Bad("fractal heap nested too deep", where)

    def _huge(self, id_at: int) -> tuple[int, int]:
        """A huge object: its ID is a key of the huge object B-tree (records: address, length, ID). With
        8-byte heap IDs the library never stores the address and length in the ID itself."""
        f = self.f
        if self.huge is None:
            if self.huge_tree is None:
                raise _Bad("huge heap object without its B-tree", id_at)
            self.huge = {}
            for record in _btree(f, self.huge_tree, 1, f.o + 2 * f.l):
                key = f.uint(record + f.o + f.l, f.l)
                if key in self.huge:
                    raise _Bad(f"huge heap object {key} repeated", record)
                self.huge[key] = f.addr(record), f.uint(record + f.o, f.l)
        start, length = self.huge.get(f.uint(id_at + 1, self.id_len - 1), (None, 0))
        if start is None or start + length > f.size:
            raise _Bad("huge heap object missing or past the end of the file", id_at)
        return start, start + length


def _log2(n: int) -> int:
    return n.bit_length() - 1
