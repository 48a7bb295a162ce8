"""A streaming protobuf walk driven by a schema (reference kernel), with the semantics of a real parser:
occurrences of a singular message field merge, the last occurrence of a scalar wins, repeated fields append.
Only the fields the schema names are decoded; everything else — tensor bytes above all — is skipped by its
length. Malformed input (truncation, over-long varints, group wire types, field 0) stops the walk of that
message with an error; what was read before it is kept.
"""
from __future__ import annotations

MAX_DEPTH = 64
MAX_FIELDS = 50_000_000
MAX_TEXT = 65536
"""Bytes of a string or bytes field kept (the length is always recorded)."""

VARINT, I64, LEN, SGROUP, EGROUP, I32 = 0, 1, 2, 3, 4, 5


class ProtobufError(ValueError):
    def __init__(self, kind: str, offset: int):
        super().__init__(f"{kind} at offset {offset}")
        self.kind, self.offset = kind, offset


def walk(data, schema: dict, root: str) -> dict:
    """Decode ``data`` as message type ``root`` of ``schema``.

    ``schema[type][field_number] = (name, kind, subtype)`` with kind ``int``, ``str``, ``strs`` (repeated),
    ``msg`` (singular message of ``subtype``), ``msgs`` (repeated) or ``skip`` (record the payload length
    as ``<name>_length``). Returns the decoded dict plus ``"_error": {"kind", "offset"} | None`` at the top.
    """
    state = {"fields": 0, "error": None}
    out = _message(data, [(0, len(data))], schema, root, state, 0)
    out["_error"] = state["error"]
    return out


def _message(data, spans, schema, kind, state, depth) -> dict:
    fields = schema[kind]
    out: dict = {}
    singular: dict[int, list] = {}
    if depth > MAX_DEPTH:
        state["error"] = state["error"] or {"kind": "too-deep", "offset": spans[0][0]}
        return out
    try:
        for start, end in spans:
            for number, wire, value, at in _fields(data, start, end, state):
                spec = fields.get(number)
                if spec is None:
                    continue
                name, how, _ = spec
                if how in ("msg", "msgs") and wire == LEN:
                    span = (value[0], value[0] + value[1])
                    if how == "msg":
                        singular.setdefault(number, []).append(span)
                    else:
                        out.setdefault(name, []).append(_message(data, [span], schema, spec[2], state, depth + 1))
                elif how in ("str", "strs") and wire == LEN:
                    text = bytes(data[value[0]:value[0] + min(value[1], MAX_TEXT)]).decode("utf-8", "replace")
                    if how == "str":
                        out[name] = text
                    else:
                        out.setdefault(name, []).append(text)
                elif how == "skip" and wire == LEN:
                    out[f"{name}_length"] = value[1]
                elif how == "int" and wire == VARINT:
                    out[name] = value
    except ProtobufError as exc:
        state["error"] = state["error"] or {"kind": exc.kind, "offset": exc.offset}
    for number, parts in singular.items():
        name, _, sub = fields[number]
        out[name] = _message(data, parts, schema, sub, state, depth + 1)
    return out


def _fields(data, pos: int, end: int, state):
    """(field number, wire type, value, offset): value is an int, or (start, length) for LEN fields."""
    while pos < end:
        at = pos
        key, pos = _varint(data, pos, end)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise ProtobufError("field-zero", at)
        state["fields"] += 1
        if state["fields"] > MAX_FIELDS:
            raise ProtobufError("too-many-fields", at)
        if wire == VARINT:
            value, pos = _varint(data, pos, end)
        elif wire == I64 or wire == I32:
            width = 8 if wire == I64 else 4
            if pos + width > end:
                raise ProtobufError("truncated", at)
            value = int.from_bytes(bytes(data[pos:pos + width]), "little")
            pos += width
        elif wire == LEN:
            length, pos = _varint(data, pos, end)
            if length > end - pos:
                raise ProtobufError("truncated", at)
            value = (pos, length)
            pos += length
        else:
            raise ProtobufError("group-wire-type" if wire in (SGROUP, EGROUP) else "bad-wire-type", at)
        yield number, wire, value, at


def _varint(data, pos: int, end: int) -> tuple[int, int]:
    value = shift = 0
    for i in range(10):
        if pos + i >= end:
            raise ProtobufError("truncated", pos)
        byte = data[pos + i]
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            if i == 9 and byte > 1:
                raise ProtobufError("varint-overflow", pos)
            return value, pos + i + 1
        shift += 7
    raise ProtobufError("varint-too-long", pos)
