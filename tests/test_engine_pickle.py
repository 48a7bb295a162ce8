"""The pickle kernel: native (Rust) and reference (Python) engines, differentially.

Pickles here are built by code. The malicious ones are NEVER loaded; benign ones are loaded
only to record which globals CPython's unpickler asks for (an oracle for the facts).
"""
from __future__ import annotations

import collections
import copyreg
import datetime
import decimal
import functools
import io
import logging
import mmap
import os
import pickle
import pickletools
import struct
import threading
import time
import zipfile

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import mlguard.engine as engine
from mlguard import record
from mlguard.engine import DEFAULT_PICKLE_LIMITS, PickleLimits, pickle_facts
from mlguard.engine.pure import pickle as pure

from conftest import Exploit
from differential import assert_engines_agree, first_difference

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def facts(data, **limits):
    """Facts from both engines, required identical."""
    kw = {"limits": PickleLimits(**limits)} if limits else {}
    return assert_engines_agree("pickle_facts", data, **kw)


def only(f):
    assert len(f["pickles"]) == 1, f["pickles"]
    return f["pickles"][0]


def names(f):
    return [(g["module"], g["name"]) for g in f["globals"]]


def opcode_oracle(data: bytes) -> collections.Counter:
    """Opcode counts by pickletools (reads only, never executes)."""
    return collections.Counter(op.name for op, _, _ in pickletools.genops(data))


class RecordingUnpickler(pickle.Unpickler):
    """Loads benign pickles while recording every find_class(module, name)."""

    def __init__(self, data: bytes, **kw):
        super().__init__(io.BytesIO(data), **kw)
        self.seen: list[tuple[str, str]] = []

    def find_class(self, module, name):
        self.seen.append((module, name))
        return super().find_class(module, name)

    def persistent_load(self, pid):
        return pid


def find_class_oracle(data: bytes, **kw) -> list[tuple[str, str]]:
    u = RecordingUnpickler(data, **kw)
    u.load()
    return u.seen


# ---------------------------------------------------------------------------------------------
# Real pickles
# ---------------------------------------------------------------------------------------------

class Plain:
    def __init__(self):
        self.a, self.b = 1, [2, 3]


class WithState:
    def __init__(self):
        self.x = "x"

    def __getstate__(self):
        return {"x": self.x, "extra": (1, 2)}

    def __setstate__(self, state):
        self.__dict__.update(state)


class Slotted:
    __slots__ = ("p", "q")

    def __init__(self):
        self.p, self.q = 1, "q"


class NewArgsEx:
    def __new__(cls, *args, **kwargs):
        return super().__new__(cls)

    def __getnewargs_ex__(self):
        return (1,), {"k": 2}


def ordinary_objects():
    rec = [1]
    rec.append(rec)
    shared = ["shared"]
    return [
        None, True, False, 0, 1, -1, 255, 256, 65535, 65536, -2**31, 2**31, 2**64, -(2**200), 1.5, -0.0,
        float("inf"), "", "ascii", "h\xe9llo \u20ac \U0001F600", "line\nbreak \\ back", "\ud800 lone",
        b"", b"\x00\xff bytes", bytearray(b"ba"), (), (1,), (1, 2), (1, 2, 3), (1, 2, 3, 4), [], [1, "a"],
        {}, {"k": "v", 1: (2,)}, set(), {1, 2}, frozenset({3}), rec, [shared, shared],
        collections.OrderedDict(a=1), collections.defaultdict(list, a=[1]), collections.Counter("aab"),
        datetime.datetime(2024, 1, 2, 3, 4, 5), datetime.date(2020, 2, 2), decimal.Decimal("1.25"),
        complex(1, 2), slice(1, 5, 2), range(3), Plain(), WithState(), Slotted(), NewArgsEx(), Plain,
        len, "x" * 300, "y" * 70000, b"z" * 300,
    ]


def picklable(objs, protocol):
    """(obj, pickle) for the objects this protocol can pickle (slots need protocol 2)."""
    out = []
    for obj in objs:
        try:
            out.append((obj, pickle.dumps(obj, protocol=protocol)))
        except TypeError:
            assert isinstance(obj, Slotted) and protocol < 2
    return out


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_ordinary_pickles_match_cpython(protocol):
    for obj, data in picklable(ordinary_objects(), protocol):
        f = facts(data)
        p = only(f)
        assert p["status"] == "stop", (obj, p)
        assert p["error"] is None and p["error_offset"] is None
        assert p["end"] == len(data) and p["start"] == 0
        assert p["protocol"] == (protocol if protocol >= 2 else None)
        assert f["trailing"] is None and f["limit"] is None
        assert collections.Counter(f["opcode_counts"]) == opcode_oracle(data), obj
        assert p["opcodes"] == sum(opcode_oracle(data).values())
        assert names(f) == find_class_oracle(data), obj
        assert all(g["resolution"] == "literal" and not g["truncated"] for g in f["globals"])


def test_everything_in_one_pickle_and_offsets():
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        data = pickle.dumps([obj for obj, _ in picklable(ordinary_objects(), protocol)], protocol=protocol)
        f = facts(data)
        assert only(f)["status"] == "stop"
        want = [(pos, op.name) for op, _, pos in pickletools.genops(data)
                if op.name in ("GLOBAL", "STACK_GLOBAL", "INST")]
        assert [(g["offset"], g["opcode"]) for g in f["globals"]] == want
        calls = [(pos, op.name) for op, _, pos in pickletools.genops(data)
                 if op.name in ("REDUCE", "BUILD", "NEWOBJ", "NEWOBJ_EX", "OBJ", "INST")]
        assert [(c["offset"], c["opcode"]) for c in f["calls"]] == calls
        assert names(f) == find_class_oracle(data)


def test_protocol5_out_of_band_buffers():
    buffers = []
    data = pickle.dumps([pickle.PickleBuffer(b"abc"), pickle.PickleBuffer(bytearray(b"de"))],
                        protocol=5, buffer_callback=buffers.append)
    f = facts(data)
    assert only(f)["status"] == "stop"
    assert f["opcode_counts"]["NEXT_BUFFER"] == 2
    assert f["opcode_counts"]["READONLY_BUFFER"] == 1
    inband = pickle.dumps(pickle.PickleBuffer(bytearray(b"xy")), protocol=5)
    assert facts(inband)["opcode_counts"]["BYTEARRAY8"] == 1


def test_os_system_reduce_every_protocol():
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        data = pickle.dumps(Exploit("echo hi"), protocol=protocol)  # never loaded
        f = facts(data)
        assert only(f)["status"] == "stop"
        (g,) = f["globals"]
        assert (g["module"], g["name"]) == (os.system.__module__, "system")
        assert g["opcode"] == ("STACK_GLOBAL" if protocol >= 4 else "GLOBAL")
        assert g["resolution"] == "literal"
        assert g["protocol"] == (protocol if protocol >= 2 else 0)
        (c,) = f["calls"]
        assert c["opcode"] == "REDUCE" and c["target"] == 0
        assert c["offset"] > g["offset"]
        assert data[c["offset"]:c["offset"] + 1] == b"R"


def test_torch_zip_checkpoint_data_pkl():
    torch = pytest.importorskip("torch")
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 1))
    buf = io.BytesIO()
    torch.save({"model": model.state_dict(), "epoch": 3}, buf)
    with zipfile.ZipFile(io.BytesIO(buf.getvalue())) as z:
        member = next(n for n in z.namelist() if n.endswith("/data.pkl"))
        data = z.read(member)
    f = facts(data)
    assert only(f)["status"] == "stop"
    assert ("torch._utils", "_rebuild_tensor_v2") in names(f)
    rebuild = names(f).index(("torch._utils", "_rebuild_tensor_v2"))
    assert sum(c["target"] == rebuild and c["opcode"] == "REDUCE" for c in f["calls"]) == 4
    assert len(f["persistent_ids"]) == 4
    assert {p["opcode"] for p in f["persistent_ids"]} == {"BINPERSID"}
    assert collections.Counter(f["opcode_counts"]) == opcode_oracle(data)


def test_torch_legacy_file_is_several_pickles_then_raw_bytes():
    torch = pytest.importorskip("torch")
    buf = io.BytesIO()
    torch.save({"w": torch.arange(3, dtype=torch.float32)}, buf, _use_new_zipfile_serialization=False)
    data = buf.getvalue()
    f = facts(data)
    assert len(f["pickles"]) == 5
    assert [p["status"] for p in f["pickles"]] == ["stop"] * 5
    ends = [p["end"] for p in f["pickles"]]
    assert [p["start"] for p in f["pickles"]] == [0] + ends[:-1]
    assert f["trailing"] == {"offset": ends[-1], "length": len(data) - ends[-1]}
    assert all(g["pickle"] == 3 for g in f["globals"])  # only the main object imports
    assert f["persistent_ids"] and all(p["pickle"] == 3 for p in f["persistent_ids"])


def test_numpy_arrays():
    np = pytest.importorskip("numpy")
    arrays = [np.arange(10), np.zeros((2, 3), dtype=np.float16), np.array(["a", "bc"]),
              np.array([{"k": 1}, None], dtype=object), np.float64(2.5), np.dtype("int32")]
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        for arr in arrays:
            data = pickle.dumps(arr, protocol=protocol)
            f = facts(data)
            assert only(f)["status"] == "stop"
            assert names(f) == find_class_oracle(data)
            assert any(m.startswith("numpy") for m, _ in names(f))


def test_python2_style_encodings_of_binstring():
    # A Python 2 str with non-ASCII bytes: the loader's encoding decides; we use UTF-8 else Latin-1.
    data = b"\x80\x02U\x04caf\xe9U\x01x\x93."
    f = facts(data)
    assert names(f) == [("caf\xe9", "x")]
    assert find_class_oracle_safe(data, encoding="latin1") == [("caf\xe9", "x")]
    data = b"\x80\x02U\x05caf\xc3\xa9U\x01x\x93."
    assert names(facts(data)) == [("caf\xe9", "x")]


def find_class_oracle_safe(data: bytes, **kw):
    """find_class arguments of a stream whose imports fail (nothing is imported)."""
    u = RecordingUnpickler(data, **kw)
    with pytest.raises((ImportError, AttributeError, ValueError)):
        u.load()
    return u.seen


# ---------------------------------------------------------------------------------------------
# Hand-built streams
# ---------------------------------------------------------------------------------------------

def su(s: str) -> bytes:
    b = s.encode()
    return b"\x8c" + bytes([len(b)]) + b


def test_stack_global_through_the_memo():
    data = (b"\x80\x04" + su("os") + b"q\x00" + su("system") + b"q\x01" + b"0"  # pop "system"
            + b"h\x00h\x01\x93" + su("id") + b"\x85R.")
    f = facts(data)
    assert only(f)["status"] == "stop"
    (g,) = f["globals"]
    assert (g["module"], g["name"], g["resolution"]) == ("os", "system", "memo")
    assert g["offset"] == data.index(b"\x93")
    assert f["calls"] == [{"pickle": 0, "offset": data.index(b"R"), "opcode": "REDUCE", "target": 0,
                           "args": [{"index": 0, "kind": "str", "offset": data.index(b"id"), "length": 2}],
                           "count": 1}]
    # one operand literal, one from the memo is still "memo"
    data = b"\x80\x04" + su("os") + b"\x94" + su("system") + b"\x93." 
    assert facts(data)["globals"][0]["resolution"] == "literal"
    data = b"\x80\x04" + su("os") + b"\x94" + b"0h\x00" + su("system") + b"\x93."
    assert facts(data)["globals"][0]["resolution"] == "memo"
    # protocol 0 text memo: PUT/GET with decimal lines
    data = b"Vbuiltins\np1\nVgetattr\np2\n00g1\ng2\n\x93."
    g = facts(data)["globals"][0]
    assert (g["module"], g["name"], g["resolution"]) == ("builtins", "getattr", "memo")


def test_values_survive_the_memo():
    """Every kind of value comes back from the memo as it went in: a string too long for a packed
    native memo slot (> 128 KiB) as a call argument and a STACK_GLOBAL operand, memoized under
    several keys; call results; ints at the edges of the tracked range and beyond it (untracked)."""
    big = b"x" * (200 << 10)
    data = (b"\x80\x04" + su("builtins") + su("print") + b"\x93\x94"       # memo 0: print
            + b"\x8d" + struct.pack("<Q", len(big)) + big + b"\x94"        # memo 1: the long str
            + b"0h\x01\x94" + b"0h\x00h\x02\x85R\x94"                       # memo 2: the str again; print(it)
            + b"0h\x03" + b"h\x02" + su("n") + b"\x93.")                    # result; STACK_GLOBAL(long, "n")
    f = facts(data)
    assert only(f)["status"] == "stop"
    arg = f["calls"][0]["args"][0]
    assert (arg["kind"], arg["offset"], arg["length"]) == ("str", data.index(big), len(big))
    g = f["globals"][1]
    assert (g["resolution"], g["truncated"], len(g["module"])) == ("memo", True, 1024)
    for value in (0, 2**59 - 1, -2**59, 2**59, -2**59 - 1, 2**63 - 1):
        for push in (b"\x8a\x08" + struct.pack("<q", value), b"L%dL\n" % value):
            # C() then BUILD with the int, fetched from the memo, as its state
            f = facts(b"\x80\x04" + su("m") + su("C") + b"\x93)\x81" + push + b"\x940h\x00b.")
            assert only(f)["status"] == "stop"
            assert [c["opcode"] for c in f["calls"]] == ["NEWOBJ", "BUILD"], (value, push)


def test_memo_budget():
    """Past max_memo a new memo key keeps only a global; any other value is dropped, its key still
    counted (MEMOIZE keys stay CPython's) and a GET of it pushes an unknown value: an operand built from
    it is "computed", a call through a kept global stays linked, a key never PUT is still an error."""
    data = (b"\x80\x04" + su("os") + b"\x94" + su("system") + b"\x94"      # keys 0, 1 (within the budget)
            + su("posix") + b"\x94" + su("system") + b"\x94" + b"00"         # keys 2, 3: dropped
            + b"h\x00h\x01\x93\x94"                                         # os.system: key 4, kept
            + b"h\x02h\x03\x93"                                             # operands from dropped keys
            + b"h\x04" + su("id") + b"\x85R.")                                # os.system("id")
    f = facts(data, max_memo=2)
    p = only(f)
    assert (p["status"], f["limit"], p["memo_dropped"]) == ("stop", None, 2)
    assert [(g["module"], g["name"], g["resolution"]) for g in f["globals"]] == [
        ("os", "system", "memo"), (None, None, "computed")]
    assert [c["target"] for c in f["calls"]] == [0]
    assert facts(data)["globals"][1]["module"] == "posix"           # with room, all is kept
    bad = data[:-1] + b"0h\x09."                                     # GET of a key never PUT
    assert only(facts(bad, max_memo=2))["error"] == "memo-missing"
    # MEMOIZE after dropped keys uses CPython's key: GET 5 is the second global, kept
    again = data[:-1] + b"0" + su("os") + su("getcwd") + b"\x93\x94" + b"0h\x05)R."
    f = facts(again, max_memo=2)
    assert only(f)["status"] == "stop" and [c["target"] for c in f["calls"]] == [0, 2]
    # a global kept past the budget under a key inside the range BINPUT 5 gave the memo (found by fuzzing)
    f = facts(b"Nq\x05r\x01\x00\x00\x000cos\nsystem\n\x94h\x02.", max_memo=2)
    assert only(f)["status"] == "stop" and only(f)["memo_dropped"] == 0


def test_computed_stack_global_operands():
    # module = str.__add__("o", "s") computed at load time, fed to STACK_GLOBAL
    data = (b"\x80\x04" + su("builtins") + su("str") + b"\x93\x94"
            + su("o") + b"\x85R" + su("system") + b"\x93" + su("ls") + b"\x85R.")
    f = facts(data)
    assert only(f)["status"] == "stop"
    assert [g["resolution"] for g in f["globals"]] == ["literal", "computed"]
    assert f["globals"][1]["module"] is None and f["globals"][1]["name"] is None
    assert [c["target"] for c in f["calls"]] == [0, 1]
    # bytes, numbers and globals are not str operands either
    for operand in (b"C\x02os", b"K\x01", b"N", b"cos\nsep\n"):
        f = facts(b"\x80\x04" + operand + su("system") + b"\x93.")
        assert f["globals"][-1]["resolution"] == "computed", operand


def test_inst_obj_newobj_build_targets():
    data = (b"(S'echo'\nios\nsystem\n"          # INST os.system('echo')
            b"(cbuiltins\nexec\nS'1'\no"        # OBJ builtins.exec('1')
            b"ccollections\nOrderedDict\n)\x81}b"  # NEWOBJ then BUILD on its result
            b"ctypes\nSimpleNamespace\n)}\x92"   # NEWOBJ_EX
            b"cmath\npi\n}b"                     # BUILD on a global
            b".")
    f = facts(data)
    assert only(f)["status"] == "stop", f["pickles"]
    assert names(f) == [("os", "system"), ("builtins", "exec"), ("collections", "OrderedDict"),
                        ("types", "SimpleNamespace"), ("math", "pi")]
    assert f["globals"][0]["opcode"] == "INST"
    assert [(c["opcode"], c["target"]) for c in f["calls"]] == [
        ("INST", 0), ("OBJ", 1), ("NEWOBJ", 2), ("BUILD", 2), ("NEWOBJ_EX", 3), ("BUILD", 4)]
    assert f["calls"][0]["offset"] == f["globals"][0]["offset"] == data.index(b"ios")
    # OBJ and REDUCE on something that is not a global: target None; BUILD follows call results
    f = facts(b"(N)o}bN)R.")
    assert [(c["opcode"], c["target"]) for c in f["calls"]] == [("OBJ", None), ("BUILD", None), ("REDUCE", None)]


def test_filling_a_global_container_is_a_call():
    data = b"cos\nenviron\nVLD_PRELOAD\nV/tmp/x.so\ns."   # os.environ["LD_PRELOAD"] = ...; never loaded
    f = facts(data)
    assert names(f) == [("os", "environ")]
    assert f["calls"] == [{"pickle": 0, "offset": data.index(b"s."), "opcode": "SETITEM", "target": 0,
                           "args": [{"index": 0, "kind": "str-raw-unicode-escape", "offset": 13, "length": 10},
                                    {"index": 1, "kind": "str-raw-unicode-escape", "offset": 25, "length": 9}],
                           "count": 1}]
    f = facts(b"cbuiltins\nset\n(K\x01\x90cbuiltins\nlist\n(Ne]Na}NNs(NNu.")
    assert [(c["opcode"], c["target"]) for c in f["calls"]] == [("ADDITEMS", 0), ("APPENDS", 1)]
    # ordinary containers are not calls
    assert facts(pickle.dumps([{"a": [1, 2]}, {3}], protocol=4))["calls"] == []


def test_ext_codes():
    class_key = (__name__, "Plain")
    code = 0xF0
    copyreg.add_extension(*class_key, code)
    try:
        data = pickle.dumps(Plain, protocol=2)
    finally:
        copyreg.remove_extension(*class_key, code)
    f = facts(data)
    assert f["ext"] == [{"pickle": 0, "offset": 2, "opcode": "EXT1", "code": 0xF0}]
    f = facts(b"\x80\x02\x83\x34\x12\x84\x78\x56\x34\x12)R.")
    assert [(e["opcode"], e["code"]) for e in f["ext"]] == [("EXT2", 0x1234), ("EXT4", 0x12345678)]
    assert f["calls"][0]["target"] is None
    for bad in (b"\x82\x00", b"\x83\x00\x00", b"\x84\xff\xff\xff\xff"):
        f = facts(bad + b".")
        assert only(f)["error"] == "bad-argument" and not f["ext"]


def test_persistent_ids_and_text_forms():
    f = facts(b"Pstorage_0\n0N\x94Q.")
    assert [p["opcode"] for p in f["persistent_ids"]] == ["PERSID", "BINPERSID"]
    assert only(f)["status"] == "stop"
    text = b"I42\nI01\nL123L\nF1.5e-3\nS'it''s'\nS\"a\\x41\\n\"\nVcaf\\u00e9\n(lp0\nI1\na(dp1\nS'k'\np2\nI2\ns(Ntp3\n."
    assert pickle.loads(text) == (None,)  # no globals: safe to load
    f = facts(text)
    assert only(f)["status"] == "stop", f["pickles"]
    assert collections.Counter(f["opcode_counts"]) == opcode_oracle(text)


def test_unicode_text_decoding_matches_cpython():
    for body in (b"caf\\u00e9", b"\\\\u0041", b"\\U0001F600x", b"\xe9\xff", b"a\\", b"\\ud800", b"\\q"):
        data = b"V" + body + b"\nVx\n\x93."
        g = facts(data)["globals"][0]
        assert g["module"] == pickle.loads(b"V" + body + b"\n."), body


def test_names_are_not_normalised_and_dotted_names_kept():
    data = b"c__builtin__\neval\n."
    assert names(facts(data)) == [("__builtin__", "eval")]
    data = b"\x80\x04" + su("torch.serialization") + su("os.system") + b"\x93."
    assert names(facts(data)) == [("torch.serialization", "os.system")]


def test_long_names_are_cut_and_flagged():
    long_name = "a" * 5000
    data = b"\x80\x04" + su("os") + b"X" + struct.pack("<I", 5000) + long_name.encode() + b"\x93."
    g = facts(data)["globals"][0]
    assert g["name"] == "a" * DEFAULT_PICKLE_LIMITS.max_string and g["truncated"] is True
    g = facts(data, max_string=10)["globals"][0]
    assert (g["module"], g["name"], g["truncated"]) == ("os", "a" * 10, True)
    g = facts(b"c" + b"m" * 3000 + b"\nname\n.", max_string=2999)["globals"][0]
    assert g["module"] == "m" * 2999 and g["truncated"] and g["name"] == "name"


def test_surrogates_survive_both_engines():
    data = b"\x80\x04X\x03\x00\x00\x00\xed\xa0\x80" + su("x") + b"\x93."
    assert facts(data)["globals"][0]["module"] == "\ud800"
    assert pickle.loads(b"\x80\x04X\x03\x00\x00\x00\xed\xa0\x80.") == "\ud800"


@pytest.mark.parametrize("data, error", [
    (b"\xff", "invalid-opcode"),
    (b"R", "stack-underflow"),
    (b".", "stack-underflow"),
    (b"N(.", "stack-underflow"),
    (b"t", "mark-missing"),
    (b"]Ne", "mark-missing"),
    (b"h\x05", "memo-missing"),
    (b"g7\n", "memo-missing"),
    (b"g-1\n", "memo-missing"),
    (b"gx\n", "bad-argument"),
    (b"Np-1\n", "bad-argument"),
    (b"Np99999999999999999999\n", "bad-argument"),
    (b"I\n", "bad-argument"),
    (b"S'abc\n", "bad-argument"),
    (b"S'\\x4'\n", "bad-argument"),
    (b"V\\u12\n", "bad-argument"),
    (b"X\x01\x00\x00\x00\xff", "bad-argument"),
    (b"c\xff\nx\n", "bad-argument"),
    (b"(i\xc3\xa9\nx\n", "bad-argument"),
    (b"(NNNd", "bad-argument"),
    (b"}(Nu", "bad-argument"),
    (b"T\xff\xff\xff\xff", "negative-length"),
    (b"\x8b\xff\xff\xff\xff", "negative-length"),
    (b"\x80\x06", "unsupported-protocol"),
    (b"\x80\x02N", "truncated"),
    (b"\x80", "truncated"),
    (b"cos\nsystem", "truncated"),
    (b"\x8e" + b"\xff" * 7 + b"\x7f", "truncated"),
    (b"\x95" + struct.pack("<Q", 2**63) + b"N.", "bad-argument"),
    (b"", "truncated"),
])
def test_error_codes(data, error):
    p = only(facts(data))
    assert p["error"] == error
    assert p["status"] == ("truncated" if error == "truncated" else "error")
    assert p["end"] is None and isinstance(p["error_offset"], int)


def test_facts_before_an_error_are_kept():
    data = pickle.dumps(Exploit(), protocol=2)[:-1] + b"\xffjunk"
    f = facts(data)
    p = only(f)
    assert (p["status"], p["error"], p["error_offset"]) == ("error", "invalid-opcode", len(data) - 5)
    assert names(f) == [(os.system.__module__, "system")] and f["calls"][0]["target"] == 0


def test_every_prefix_is_truncated():
    data = pickle.dumps([Exploit(), {"a": (1, 2.0)}, "t" * 20], protocol=4)
    full = facts(data)
    for cut in range(len(data)):
        f = facts(data[:cut])
        p = only(f)
        assert (p["status"], p["error"]) == ("truncated", "truncated"), cut
        assert f["globals"] == full["globals"][:len(f["globals"])]
        assert f["calls"] == full["calls"][:len(f["calls"])]


def test_trailing_garbage_and_second_pickles():
    data = pickle.dumps({"a": 1}, protocol=2)
    f = facts(data + b"\x00\x01garbage")
    assert f["trailing"] == {"offset": len(data), "length": 9}
    assert len(f["pickles"]) == 1
    # a byte that is an opcode starts another pickle, even if it then fails
    f = facts(data + b"N\xff")
    assert [p["status"] for p in f["pickles"]] == ["stop", "error"]
    assert f["pickles"][1]["start"] == len(data) and f["trailing"] is None
    payload = pickle.dumps(Exploit(), protocol=4)
    f = facts(data + payload)
    assert [p["status"] for p in f["pickles"]] == ["stop", "stop"]
    assert f["globals"][0]["pickle"] == 1 and f["calls"][0]["pickle"] == 1
    assert f["globals"][0]["offset"] == len(data) + payload.index(b"\x93")


def test_frame_reaching_past_stop():
    data = b"\x80\x04\x95" + struct.pack("<Q", 4) + b"N.\xff\xff" + pickle.dumps(Exploit(), protocol=4)
    f = facts(data)
    p = f["pickles"][0]
    assert (p["end"], p["frame_end"]) == (13, 15)
    # where CPython's loaders continue: the C unpickler on a buffered file after STOP,
    # on a BytesIO (and the pure-Python unpickler) after the frame
    reader = io.BufferedReader(io.BytesIO(data))
    assert pickle.Unpickler(reader).load() is None and reader.tell() == p["end"]
    bio = io.BytesIO(data)
    assert pickle.Unpickler(bio).load() is None and bio.tell() == p["frame_end"]
    assert f["trailing"] == {"offset": 13, "length": len(data) - 13}
    normal = pickle.dumps(list(range(50)), protocol=4)
    assert b"\x95" in normal and facts(normal)["pickles"][0]["frame_end"] is None


@pytest.mark.parametrize("memoizes, overwritten", [(4999, False), (5001, True)])
def test_memoize_counts_entries_like_cpython(memoizes, overwritten):
    # "a" stored at key 5000, then MEMOIZEs at keys len(memo): the 5000th one overwrites key 5000.
    head = b"Va\nr" + struct.pack("<I", 5000) + b"0" + b"N\x940" * memoizes + b"j" + struct.pack("<I", 5000)
    assert pickle.loads(head + b".") == (None if overwritten else "a")  # no globals: safe
    g = facts(head + su("x") + b"\x93.")["globals"][0]
    assert g["resolution"] == ("computed" if overwritten else "memo")
    assert g["module"] == (None if overwritten else "a")


def test_each_pickle_has_its_own_memo():
    first = b"\x80\x04" + su("os") + b"\x94."
    second = b"\x80\x04h\x00" + su("system") + b"\x93."
    p = facts(first + second)["pickles"]
    assert p[1]["error"] == "memo-missing"


def test_limits():
    data = pickle.dumps(list(range(100)), protocol=2)
    f = facts(data, max_opcodes=10)
    p = only(f)
    assert (p["status"], p["opcodes"], p["error"], f["limit"]) == ("limit", 10, None, "opcodes")
    assert p["error_offset"] == [pos for _, _, pos in pickletools.genops(data)][10]
    # past max_memo the memo drops what cannot name code and the analysis goes on (test_memo_budget)
    f = facts(pickle.dumps([str(i) for i in range(50)], protocol=4), max_memo=20)
    assert (f["limit"], only(f)["status"], only(f)["memo_dropped"]) == (None, "stop", 31)  # 51 PUTs
    far = b"N" + b"".join(b"r" + struct.pack("<I", 2**31 + i) for i in range(pure.MAX_FAR_DROPPED + 1)) + b"."
    f = facts(far, max_memo=0)
    assert f["limit"] == "memo" and only(f)["error_offset"] == 1 + 5 * pure.MAX_FAR_DROPPED
    deep = b"(" * 1000 + b"N"
    f = facts(deep, max_stack=500)
    assert f["limit"] == "stack" and only(f)["opcodes"] == 501
    calls = b"N" + b")R" * 5000 + b"."           # 2 bytes per call: the result must stay bounded
    f = facts(calls, max_facts=1000)
    assert f["limit"] == "facts" and len(f["calls"]) == 1001 and only(f)["status"] == "limit"
    assert len(facts(calls)["calls"]) == 5000
    many = pickle.dumps(1, protocol=2) * 10
    f = facts(many, max_pickles=3)
    assert f["limit"] == "pickles" and len(f["pickles"]) == 3
    assert all(p["status"] == "stop" for p in f["pickles"])
    # the opcode budget is shared by all pickles
    f = facts(many, max_opcodes=7)
    assert [p["status"] for p in f["pickles"]] == ["stop", "stop", "limit"]
    assert sum(p["opcodes"] for p in f["pickles"]) == 7


def test_hostile_lengths_do_not_allocate():
    for data in (b"\x8d" + b"\xff" * 8, b"\x8e" + b"\xff" * 7 + b"\x7f", b"\x96" + struct.pack("<Q", 2**62),
                 b"B\xff\xff\xff\xff", b"\x95" + b"\xff" * 8, b"\x95" + b"\xff" * 7 + b"\x7f"):
        start = time.perf_counter()
        p = facts(data * 100)["pickles"][0]
        if data[0] == 0x95:   # FRAME: above 2**63-1 an error; else the analysis goes on
            assert p["status"] in ("error", "truncated") and p["frame_violations"][0]["offset"] == 0 \
                if data[-1] == 0x7F else (p["status"], p["error"]) == ("error", "bad-argument")
        else:
            assert p["status"] == "truncated" and p["error_offset"] == 0
        assert time.perf_counter() - start < 1.0


def test_big_stream_within_default_limits():
    data = b"\x80\x02" + b"N0" * 1_000_000 + b"N."
    f = facts(data)
    assert only(f)["opcodes"] == 2_000_003
    assert f["opcode_counts"] == {"STOP": 1, "POP": 1_000_000, "NONE": 1_000_001, "PROTO": 1}


# ---------------------------------------------------------------------------------------------
# Inputs, engines, threads
# ---------------------------------------------------------------------------------------------

def test_bytes_like_inputs(tmp_path):
    data = pickle.dumps([Exploit(), "x"], protocol=4) + b"\x00tail"
    expected = facts(data)
    assert facts(bytearray(data)) == expected
    assert facts(memoryview(data)) == expected
    path = tmp_path / "p.pkl"
    path.write_bytes(data)
    with open(path, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        assert facts(mm) == expected
    strided = memoryview(data + data)[::2]
    assert facts(strided) == facts(bytes(strided))
    with pytest.raises(TypeError):
        pickle_facts("not bytes")
    with pytest.raises(TypeError):
        assert_engines_agree("pickle_facts", 42)


def test_engine_selection(monkeypatch, caplog):
    monkeypatch.delenv("MLGUARD_ENGINE", raising=False)
    assert engine.engine_name() == "native"
    assert engine.engine_status().startswith("native (mlguard_rs ")
    monkeypatch.setenv("MLGUARD_ENGINE", "python")
    assert engine.engine_name() == "python"
    assert engine.engine_status().startswith("python (reference")
    assert pickle_facts(b"N.")["pickles"][0]["status"] == "stop"
    monkeypatch.setenv("MLGUARD_ENGINE", "rust")
    with pytest.raises(ValueError, match="MLGUARD_ENGINE"):
        engine.engine_name()
    with pytest.raises(ValueError):
        pickle_facts(b"N.", engine="fast")

    # The extension cannot be imported: fall back once with a warning, or refuse when forced.
    monkeypatch.setattr(engine, "_native_tried", True)
    monkeypatch.setattr(engine, "_native_module", None)
    monkeypatch.setattr(engine, "_native_error", "ImportError: no module named mlguard_rs")
    monkeypatch.setattr(engine, "_warned", False)
    monkeypatch.delenv("MLGUARD_ENGINE")
    with caplog.at_level(logging.WARNING, logger="mlguard"):
        assert engine.engine_name() == "python"
        assert pickle_facts(b"N.")["pickles"][0]["status"] == "stop"
    warnings = [r for r in caplog.records if r.name == "mlguard"]
    assert len(warnings) == 1 and "identical" in warnings[0].getMessage()
    assert "no module named mlguard_rs" in engine.engine_status()
    monkeypatch.setenv("MLGUARD_ENGINE", "native")
    with pytest.raises(ImportError, match="mlguard_rs"):
        engine.engine_name()
    with pytest.raises(ImportError):
        pickle_facts(b"N.", engine="native")
    assert engine.engine_status().startswith("unavailable")


def test_limits_validation():
    with pytest.raises(ValueError):
        PickleLimits(max_opcodes=-1)
    with pytest.raises(ValueError):
        PickleLimits(max_stack=2**64)
    with pytest.raises(TypeError):
        pickle_facts(b"N.", limits={"max_opcodes": 3})


def test_native_releases_the_gil():
    data = b"\x80\x02" + b"N0" * 9_000_000 + b"N."   # ~18M opcodes: some 100 ms natively

    def spin(seconds):
        n, end = 0, time.perf_counter() + seconds
        while time.perf_counter() < end:
            n += 1
        return n

    rate = spin(0.05) / 0.05
    done = threading.Event()
    result = {}

    def work():
        result["facts"] = pickle_facts(data, engine="native")
        done.set()

    worker = threading.Thread(target=work)
    start = time.perf_counter()
    worker.start()
    n = 0
    while not done.is_set():
        n += 1
        time.perf_counter()
    elapsed = time.perf_counter() - start
    worker.join()
    assert result["facts"]["pickles"][0]["status"] == "stop"
    if elapsed < 0.05:
        pytest.skip(f"parse too fast ({elapsed:.3f}s) to observe")
    # Holding the GIL would leave this thread a few switch intervals (5 ms each) at most.
    assert n > 0.2 * rate * elapsed, (n, rate, elapsed)


def test_concurrent_calls_agree():
    data = pickle.dumps([Exploit(), ordinary_objects()[:20]], protocol=4)
    expected = facts(data)
    results = []

    def work():
        for _ in range(20):
            results.append(pickle_facts(data, engine="native"))

    threads = [threading.Thread(target=work) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 120 and all(r == expected for r in results)


def test_differential_helper_detects_differences():
    assert first_difference({"a": [1, {"b": True}]}, {"a": [1, {"b": 1}]}) == ("facts['a'][1]['b']", True, 1)
    assert first_difference({"a": 1}, {"a": 1, "b": None})[0] == "facts['b']"
    assert first_difference([1, 2], [1]) == ("len(facts)", 2, 1)
    assert first_difference({"x": [None]}, {"x": [None]}) is None


# ---------------------------------------------------------------------------------------------
# Reference decoders against CPython's codecs
# ---------------------------------------------------------------------------------------------

@FAST
@given(st.binary(max_size=40).map(lambda b: b.replace(b"\\", b"\\\\", 1) if len(b) % 3 else b)
       | st.lists(st.sampled_from([b"\\", b"x", b"4", b"f", b"0", b"7", b"8", b"\n", b"'", b"n", b"q", b"\xff"]),
                  max_size=12).map(b"".join))
def test_escape_decode_matches_codecs(s):
    import codecs
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            expected = codecs.escape_decode(s)[0]
        except ValueError:
            expected = None
    assert pure.escape_decode(s) == expected


@FAST
@given(st.lists(st.sampled_from([b"1", b"0", b"9", b"_", b"-", b"+", b" ", b"\t", b"\x0b", b"\x1c", b"a"]),
                min_size=0, max_size=7).map(b"".join))
def test_memo_keys_match_the_c_unpickler(key):
    data = b"Vx\np" + key + b"\n0g" + key + b"\n."
    try:
        expected = pickle.loads(data) == "x"   # C unpickler; keys stay small (< 10**7)
    except (pickle.UnpicklingError, ValueError, OverflowError, IndexError, KeyError):
        expected = False
    p = only(facts(data))
    assert (p["status"] == "stop") == expected, (key, p)


@FAST
@given(st.binary(max_size=30).filter(lambda b: b"\n" not in b))
def test_unicode_opcode_matches_cpython(body):
    data = b"V" + body + b"\nVx\n\x93."
    try:
        expected = pickle.loads(b"V" + body + b"\n.")
    except (UnicodeDecodeError, pickle.UnpicklingError):
        expected = None
    f = facts(data)
    if expected is None:
        assert only(f)["error"] == "bad-argument"
    else:
        assert f["globals"][0]["module"] == expected


@FAST
@given(st.binary(max_size=30))
def test_binunicode_matches_cpython(body):
    head = b"X" + struct.pack("<I", len(body)) + body
    try:
        expected = pickle.loads(head + b".")
    except UnicodeDecodeError:
        expected = None
    f = facts(head + su("x") + b"\x93.")
    if expected is None:
        assert only(f)["error"] == "bad-argument"
    else:
        assert f["globals"][0]["module"] == expected


# ---------------------------------------------------------------------------------------------
# Property-based: both engines agree and never raise
# ---------------------------------------------------------------------------------------------

SEEDS = [pickle.dumps(obj, protocol=p) for p in range(6)
         for obj in (Exploit(), ordinary_objects()[:40], {"k": [WithState(), Plain()]})]
SEEDS += [b"(S'echo'\nios\nsystem\n.", b"\x80\x02\x83\x34\x12)R.", b"Pid\nQ0N."]

SNIPPETS = [
    b"(", b".", b"0", b"1", b"2", b"N", b")", b"]", b"}", b"\x8f", b"t", b"l", b"d", b"\x91", b"\x85",
    b"\x86", b"\x87", b"a", b"e", b"s", b"u", b"\x90", b"R", b"b", b"o", b"\x81", b"\x92", b"\x93",
    b"\x94", b"Q", b"\x97", b"\x98", b"\x88", b"K\x01", b"h\x00", b"h\x01", b"q\x00", b"q\x01",
    b"j\x01\x00\x00\x00", b"r\x01\x00\x00\x00", b"g0\n", b"p0\n", b"g1\n", b"p1\n",
    b"\x8c\x02os", b"\x8c\x06system", b"X\x01\x00\x00\x00x", b"U\x02ab", b"T\x01\x00\x00\x00\xe9",
    b"Vcaf\\u00e9\n", b"S'a\\x41'\n", b"C\x01b", b"cos\nsystem\n", b"ibuiltins\nlist\n",
    b"\x82\x07", b"\x83\x01\x02", b"\x84\x01\x00\x00\x00", b"Pp\n", b"I1\n", b"L2L\n", b"F1.0\n",
    b"\x80\x02", b"\x80\x04", b"\x95\x02\x00\x00\x00\x00\x00\x00\x00", b"\x8a\x01\x01", b"\xff",
    b"r\x00\x04\x00\x00", b"j\x00\x04\x00\x00", b"r\xff\xff\xff\xff", b"j\xff\xff\xff\xff", b"p4096\n",
    b"g4096\n", b"\x94\x94\x94",
]


@FAST
@given(st.binary(max_size=200))
def test_random_bytes(data):
    facts(data)
    facts(b"\x80\x04" + data)


@FAST
@given(st.lists(st.sampled_from(SNIPPETS), max_size=60).map(b"".join))
def test_random_opcode_programs(data):
    f = facts(data + b".")
    assert f["pickles"]
    check_arg_shapes(f)
    f2 = facts(data, max_stack=8, max_memo=2, max_opcodes=30, max_string=3, max_facts=3)
    assert f2["pickles"]
    facts(data + b".", max_memo=0)   # every value past the memo's budget


@FAST
@given(st.sampled_from(SEEDS), st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255),
                                                    st.sampled_from(["set", "insert", "delete"])), max_size=6))
def test_mutated_real_pickles(seed, edits):
    data = bytearray(seed)
    for where, value, kind in edits:
        i = where % (len(data) + 1)
        if kind == "insert":
            data[i:i] = bytes([value])
        elif i < len(data):
            if kind == "set":
                data[i] = value
            else:
                del data[i]
    facts(bytes(data))
    facts(bytes(data), max_string=4, max_pickles=2, max_facts=5)


# ---------------------------------------------------------------------------------------------
# Framing, against CPython's loaders (benign payloads only: no globals are loaded)
# ---------------------------------------------------------------------------------------------

def frame(body: bytes) -> bytes:
    return b"\x95" + struct.pack("<Q", len(body)) + body


PAD = b"N0" * 10_000   # makes a frame larger than a buffered file's 8 KiB buffer


def loaders(data: bytes, tmp_path) -> dict:
    """What each CPython loader makes of ``data``: a value's repr or the exception type."""
    path = tmp_path / "frames.pkl"
    path.write_bytes(data)

    def outcome(fn):
        try:
            return repr(fn())
        except Exception as exc:  # what we compare is which loaders fail
            return type(exc).__name__

    return {
        "C-bytes": outcome(lambda: pickle.loads(data)),
        "py-bytes": outcome(lambda: pickle._loads(data)),
        "C-file": outcome(lambda: pickle.load(open(path, "rb"))),
        "py-file": outcome(lambda: pickle._load(open(path, "rb"))),
    }


def violations(f, index=0):
    return [(v["offset"], v["kind"]) for v in f["pickles"][index]["frame_violations"]]


@pytest.mark.parametrize("pad", [b"", PAD], ids=["small-frame", "large-frame"])
def test_crossing_a_frame_end(tmp_path, pad):
    data = b"\x80\x04" + frame(pad + b"\x8c\x05ab") + b"cde."
    f = facts(data)
    at = 11 + len(pad)
    assert only(f)["status"] == "stop" and violations(f) == [(at, "crosses-frame-end")]
    seen = loaders(data, tmp_path)
    assert seen["C-bytes"] == "'abcde'"
    assert seen["py-bytes"] == seen["py-file"] == "UnpicklingError"
    # the C unpickler on a file reads a large frame with read() and then drops its tail
    assert seen["C-file"] == ("UnpicklingError" if pad else "'abcde'")


def test_a_text_line_crossing_a_frame_end_reads_differently_from_a_file(tmp_path):
    data = b"\x80\x04" + frame(PAD + b"Vab") + b"cd\n."
    f = facts(data)
    assert violations(f) == [(11 + len(PAD), "crosses-frame-end")]
    seen = loaders(data, tmp_path)
    assert (seen["C-bytes"], seen["C-file"], seen["py-bytes"]) == ("'abcd'", "'cd'", "UnpicklingError")


def test_reads_that_start_at_the_frame_end_are_fine(tmp_path):
    for data in (b"\x80\x04" + frame(PAD + b"\x8c") + b"\x05abcde.",          # length in, payload out
                 b"\x80\x04" + frame(PAD + b"\x8c\x05abcde") + b".",          # STOP after the frame
                 b"\x80\x04" + frame(PAD + b"\x95" + struct.pack("<Q", 4)) + b"\x8c\x01x.",  # FRAME last
                 b"\x80\x04" + frame(b"") + b"N."):                            # empty frame
        f = facts(data)
        assert only(f)["status"] == "stop" and violations(f) == []
        seen = loaders(data, tmp_path)
        assert len(set(seen.values())) == 1 and "Error" not in seen["C-bytes"], seen


def test_frame_in_frame(tmp_path):
    data = b"\x80\x04" + frame(b"N0" + frame(b"N."))
    f = facts(data)
    assert only(f)["status"] == "stop" and violations(f) == [(13, "frame-in-frame")]
    seen = loaders(data, tmp_path)
    assert seen["C-bytes"] == seen["C-file"] == "None"
    assert seen["py-bytes"] == seen["py-file"] == "UnpicklingError"


def test_frame_beyond_the_data(tmp_path):
    data = b"\x80\x04\x95" + struct.pack("<Q", 100) + b"\x8c\x01xN."
    f = facts(data)
    p = only(f)
    assert (p["status"], p["end"], p["frame_end"]) == ("stop", len(data), None)
    assert violations(f) == [(2, "frame-beyond-data")]
    seen = loaders(data, tmp_path)
    assert seen["C-bytes"] == seen["C-file"] == "UnpicklingError"
    assert seen["py-bytes"] == seen["py-file"] == "None"
    # the pure-Python unpickler runs what the short frame holds: so does the analysis
    hidden = b"\x80\x04\x95" + struct.pack("<Q", 2**40) + b"cos\nsystem\n."  # never loaded
    f = facts(hidden)
    assert names(f) == [("os", "system")] and violations(f) == [(2, "frame-beyond-data")]
    for length in (2**63, 2**64 - 1):
        p = only(facts(b"\x80\x04\x95" + struct.pack("<Q", length) + b"N."))
        assert (p["error"], p["error_offset"]) == ("bad-argument", 2)
    assert loaders(b"\x80\x04\x95" + struct.pack("<Q", 2**63) + b"N.", tmp_path)["py-bytes"] == "ValueError"


def test_frame_past_stop_is_a_violation():
    data = b"\x80\x04\x95" + struct.pack("<Q", 4) + b"N.\xff\xff"
    f = facts(data)
    assert (f["pickles"][0]["frame_end"], violations(f)) == (15, [(2, "frame-past-stop")])


def test_real_pickles_have_no_frame_violations():
    for protocol in (4, 5):
        data = pickle.dumps([obj for obj, _ in picklable(ordinary_objects(), protocol)] * 30, protocol=protocol)
        f = facts(data)
        assert f["opcode_counts"]["FRAME"] > 1 and violations(f) == []


# ---------------------------------------------------------------------------------------------
# Literal arguments of calls, against what the pure-Python unpickler passes
# ---------------------------------------------------------------------------------------------

def arg_value(data: bytes, arg: dict, encoding: str = "ASCII"):
    """The Python value an ``args`` entry stands for, decoded as its kind says; a global is
    ``("global", index into globals)``."""
    import codecs
    kind = arg["kind"]
    if kind == "global":
        assert set(arg) == {"index", "kind", "global"}, arg
        return ("global", arg["global"])
    assert set(arg) == {"index", "kind", "offset", "length"}, arg
    raw = data[arg["offset"]:arg["offset"] + arg["length"]]
    if kind == "str":
        return raw.decode("utf-8", "surrogatepass")
    if kind == "str-legacy":
        return raw.decode(encoding)
    if kind == "str-escaped":
        return codecs.escape_decode(raw)[0].decode(encoding)
    if kind == "str-raw-unicode-escape":
        return raw.decode("raw-unicode-escape")
    if kind == "bytes":
        return raw
    assert kind == "bytearray"
    return bytearray(raw)


def recorded_calls(data: bytes, encoding: str = "ASCII") -> list:
    """The arguments of every call, loading with a pure-Python unpickler whose globals are
    recording classes (a new one per find_class, knowing its index in ``globals``): nothing is
    imported and nothing runs."""
    calls = []

    class Rec:
        gidx = None

        def __new__(cls, *args, **kwargs):
            calls.append(args)
            return object.__new__(cls)

        def __init__(self, *args, **kwargs):
            pass

        def __setstate__(self, state):
            calls.append((state,))

    imported = []

    class Recorder(pickle._Unpickler):
        def find_class(self, module, name):
            imported.append(type(f"Rec{len(imported)}", (Rec,), {"gidx": len(imported)}))
            return imported[-1]

    Recorder(io.BytesIO(data), encoding=encoding).load()
    return calls


def expected_args(args) -> list:
    """(index, value) of the arguments the facts must report: literals and imported globals."""
    out = []
    for i, v in enumerate(args):
        if isinstance(v, (str, bytes, bytearray)):
            out.append((i, v))
        elif isinstance(v, type) and getattr(v, "gidx", None) is not None:
            out.append((i, ("global", v.gidx)))
    return out[:8]


def assert_args_match(data: bytes, encoding: str = "ASCII"):
    f = facts(data)
    calls = [c for c in f["calls"] if c["opcode"] in ("REDUCE", "NEWOBJ", "NEWOBJ_EX", "OBJ", "INST", "BUILD")]
    want = recorded_calls(data, encoding)
    assert len(calls) == len(want)
    for c, args in zip(calls, want):
        got = [(a["index"], arg_value(data, a, encoding)) for a in c["args"]]
        assert got == expected_args(args), (c, args)
    return f


def check_arg_shapes(f: dict) -> None:
    """Every ``args`` entry has the keys of its kind; a global one names a global of its pickle."""
    for c in f["calls"]:
        assert len(c["args"]) <= 8
        assert [a["index"] for a in c["args"]] == sorted({a["index"] for a in c["args"]})
        for a in c["args"]:
            if a["kind"] == "global":
                assert set(a) == {"index", "kind", "global"}, a
                assert f["globals"][a["global"]]["pickle"] == c["pickle"]
            else:
                assert set(a) == {"index", "kind", "offset", "length"}, a


class Payload:
    """Pickles as ``exec(code)`` with a nested pickle and bytes; never unpickled for real."""

    def __init__(self, *args):
        self.args = args

    def __reduce__(self):
        return exec, self.args


def test_args_of_reduce_in_every_protocol():
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        data = pickle.dumps(Exploit("echo hi"), protocol=protocol)
        f = assert_args_match(data)
        (c,) = f["calls"]
        assert arg_value(data, c["args"][0]) == "echo hi"
        assert c["args"][0]["kind"] == ("str-raw-unicode-escape" if protocol == 0 else "str")
        nested = pickle.dumps(Exploit("id"), protocol=2)
        data = pickle.dumps(Payload("import pickle", nested, bytearray(b"ba"), 7, "\u20ac\ud800"),
                            protocol=protocol)
        f = assert_args_match(data, encoding="latin1")
        # bytes are literals from protocol 3 (before: _codecs.encode), bytearray from 5
        want = [0, 1, 2, 4] if protocol >= 5 else [0, 1, 4] if protocol >= 3 else [0, 4]
        assert [a["index"] for a in f["calls"][-1]["args"]] == want
        if protocol >= 3:
            assert arg_value(data, f["calls"][-1]["args"][1]) == nested


def test_args_from_every_string_opcode_and_the_memo():
    s = b"S'a\\x41\\n\\'q'\n"                         # STRING, escaped
    t = b"T\x03\x00\x00\x00caf"                      # BINSTRING
    u = b"U\x02\xe9x"                                # SHORT_BINSTRING, Latin-1
    v = b"Vo\\u0073\n"                               # UNICODE, raw-unicode-escape
    by = b"C\x03\x00\x01\x02" + b"B\x01\x00\x00\x00z" + b"\x8e" + struct.pack("<Q", 1) + b"y"
    ba = b"\x96" + struct.pack("<Q", 2) + b"ba"
    data = (b"\x80\x05cbuiltins\neval\np9\n(" + s + b"p10\n" + t + u + v + by + ba + b"tR"  # 8 literals
            + b"0g9\n(g10\n\x8c\x02hi\x94tR"                                     # from the memo
            + b"0(cbuiltins\nexec\n" + s + b"o"                               # OBJ
            + b"0(" + s + b"ibuiltins\nexec\n"                                # INST
            + b"0cbuiltins\nexec\n" + s + b"\x85\x81"                          # NEWOBJ
            + b"0cbuiltins\nexec\n" + s + b"\x85}\x92"                         # NEWOBJ_EX
            + b"0cbuiltins\nexec\n)\x81" + s + b"b"                            # BUILD with a str state
            + b".")
    f = assert_args_match(data, encoding="latin1")
    kinds = [a["kind"] for a in f["calls"][0]["args"]]
    assert kinds == ["str-escaped", "str-legacy", "str-legacy", "str-raw-unicode-escape",
                     "bytes", "bytes", "bytes", "bytearray"]
    memo_call = f["calls"][1]
    assert [arg_value(data, a, "latin1") for a in memo_call["args"]] == ["aA\n'q", "hi"]
    assert memo_call["args"][0]["offset"] == f["calls"][0]["args"][0]["offset"]   # where the payload is


def test_args_are_capped_and_only_direct_literals():
    data = pickle.dumps(Payload(*[str(i) for i in range(20)]), protocol=4)
    f = assert_args_match(data)
    assert [a["index"] for a in f["calls"][0]["args"]] == list(range(8))
    # a literal inside a nested tuple is not a direct argument
    data = pickle.dumps(Payload(("inner",), "direct"), protocol=4)
    assert [arg_value(data, a) for a in assert_args_match(data)["calls"][0]["args"]] == ["direct"]


def test_args_of_global_container_calls():
    data = b"cos\nenviron\n(VA\nVB\nVC\nVD\nu(X\x01\x00\x00\x00xe."   # never loaded
    f = facts(data)
    assert [[arg_value(data, a) for a in c["args"]] for c in f["calls"]] == [["A", "B", "C", "D"], ["x"]]


def test_args_of_real_pickles_match_the_unpickler():
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        for obj, data in picklable(ordinary_objects(), protocol):
            if data.count(b"R") + data.count(b"\x81") + data.count(b"b") == 0:
                continue
            try:
                recorded_calls(data, "latin1")
            except Exception:   # states the recording class cannot take: not comparable
                continue
            assert_args_match(data, "latin1")


def global_args(f: dict, call: dict) -> list:
    """(index, (module, name)) of a call's global arguments."""
    return [(a["index"], (f["globals"][a["global"]]["module"], f["globals"][a["global"]]["name"]))
            for a in call["args"] if a["kind"] == "global"]


def test_real_pickles_report_global_arguments():
    # protocols 0-1 pickle an instance as copyreg._reconstructor(cls, object, None): the test
    # above compares every real pickle's arguments with the unpickler's; here, the globals
    data = pickle.dumps(Plain(), protocol=1)
    f = assert_args_match(data, "latin1")
    assert global_args(f, f["calls"][0]) == [(0, (__name__, "Plain")), (1, ("__builtin__", "object"))]


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_bound_method_is_getattr_of_a_global(protocol):
    """``ZoneInfo("Europe/Paris")`` pickles as ``getattr(ZoneInfo, "_unpickle")("Europe/Paris",
    1)``: the getattr call shows the class it reads. Never loaded."""
    zoneinfo = pytest.importorskip("zoneinfo")
    try:
        zone = zoneinfo.ZoneInfo("Europe/Paris")
    except zoneinfo.ZoneInfoNotFoundError:
        pytest.skip("no time zone data")
    data = pickle.dumps(zone, protocol=protocol)
    f = facts(data)
    check_arg_shapes(f)
    assert only(f)["status"] == "stop"
    builtins = "__builtin__" if protocol < 3 else "builtins"
    assert names(f) == [(builtins, "getattr"), ("zoneinfo", "ZoneInfo")]
    # what CPython emits: GLOBAL (protocols 0-3) or STACK_GLOBAL (4-5), then a 2-tuple REDUCE
    assert [g["opcode"] for g in f["globals"]] == ["GLOBAL" if protocol < 4 else "STACK_GLOBAL"] * 2
    getattr_call, unpickle_call = f["calls"]
    assert getattr_call["opcode"] == "REDUCE" and getattr_call["target"] == 0
    assert getattr_call["args"][0] == {"index": 0, "kind": "global", "global": 1}
    assert [arg_value(data, a) for a in getattr_call["args"]] == [("global", 1), "_unpickle"]
    assert [a["index"] for a in getattr_call["args"]] == [0, 1]
    # the bound method is a call result, not a global; its int argument is not reported
    assert unpickle_call["target"] is None
    assert [arg_value(data, a) for a in unpickle_call["args"]] == ["Europe/Paris"]
    ops = [op.name for op, _, _ in pickletools.genops(data)
           if op.name not in ("FRAME", "MEMOIZE", "BINPUT", "PUT")]
    if protocol == 2:
        assert ops == ["PROTO", "GLOBAL", "GLOBAL", "BINUNICODE", "TUPLE2", "REDUCE",
                       "BINUNICODE", "BININT1", "TUPLE2", "REDUCE", "STOP"]
    if protocol == 4:
        assert ops == ["PROTO"] + ["SHORT_BINUNICODE", "SHORT_BINUNICODE", "STACK_GLOBAL"] * 2 + [
            "SHORT_BINUNICODE", "TUPLE2", "REDUCE", "SHORT_BINUNICODE", "BININT1", "TUPLE2", "REDUCE", "STOP"]


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_functools_partial_of_a_global(protocol):
    """``functools.partial(len, 1)`` is ``partial(len)`` then BUILD with the state; the callable
    it wraps is a global argument. Checked against the recording unpickler (nothing runs)."""
    data = pickle.dumps(functools.partial(len, 1), protocol=protocol)
    f = assert_args_match(data)
    check_arg_shapes(f)
    builtins = "__builtin__" if protocol < 3 else "builtins"
    reduce_call = f["calls"][0]
    assert reduce_call["opcode"] == "REDUCE"
    assert f["globals"][reduce_call["target"]]["name"] == "partial"
    assert global_args(f, reduce_call) == [(0, (builtins, "len"))]
    # BUILD's argument is the state tuple (len, (1,), {}, None): len is not a direct argument
    build = f["calls"][-1]
    assert build["opcode"] == "BUILD" and build["target"] == reduce_call["target"] and build["args"] == []
    if protocol == pickle.DEFAULT_PROTOCOL:
        assert data == pickle.dumps(functools.partial(len, 1))


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_global_arguments_fetched_from_the_memo(protocol):
    """The second partial(len) gets partial and len from the memo (GET, BINGET, LONG_BINGET:
    300 strings first push the memo past 256 keys); it reports the same global indices."""
    obj = [str(i) for i in range(300)] + [functools.partial(len), functools.partial(len)]
    data = pickle.dumps(obj, protocol=protocol)
    ops = {op.name for op, _, _ in pickletools.genops(data)}
    assert ops & {"GET", "BINGET", "LONG_BINGET"} == ({"GET"} if protocol == 0 else {"LONG_BINGET"})
    f = assert_args_match(data)
    check_arg_shapes(f)
    first, second = [c for c in f["calls"] if c["opcode"] == "REDUCE"]
    assert first["args"] == second["args"] == [{"index": 0, "kind": "global", "global": 1}]
    assert first["target"] == second["target"] == 0
    assert [g["name"] for g in f["globals"]] == ["partial", "len"]
    # short memo keys (BINGET; GET in protocol 0)
    data = pickle.dumps([functools.partial(len), functools.partial(len)], protocol=protocol)
    f = assert_args_match(data)
    first, second = [c for c in f["calls"] if c["opcode"] == "REDUCE"]
    assert first["args"] == second["args"] == [{"index": 0, "kind": "global", "global": 1}]


def test_global_arguments_by_hand():
    su = lambda s: b"\x8c" + bytes([len(s)]) + s.encode()  # noqa: E731
    # partial(len, partial, (len,), partial(len), 1): globals from GLOBAL and STACK_GLOBAL via
    # BINGET, GET and LONG_BINGET; a global in a nested tuple, a call result, an int: not args
    data = (b"\x80\x04cfunctools\npartial\nq\x070" + su("builtins") + su("len") + b"\x93\x940"
            + b"h\x07(g1\nj\x07\x00\x00\x00h\x01\x85h\x07h\x01\x85RK\x01tR.")
    f = facts(data)
    check_arg_shapes(f)
    assert [(c["target"], [(a["index"], arg_value(data, a)) for a in c["args"]]) for c in f["calls"]] == [
        (0, [(0, ("global", 1))]),
        (0, [(0, ("global", 1)), (1, ("global", 0))]),
    ]
    assert [g["resolution"] for g in f["globals"]] == ["literal", "literal"]
    # the cap counts globals and literals together
    data = b"cbuiltins\nprint\n(" + b"".join(su("x") if i % 2 == 0 else b"cos\nsep\n" for i in range(20)) + b"tR."
    (c,) = facts(data)["calls"]
    assert [a["index"] for a in c["args"]] == list(range(8))
    assert [a["kind"] for a in c["args"]] == ["str", "global"] * 4
    # OBJ, INST, NEWOBJ, BUILD and a global container's SETITEM report globals as well
    data = (b"(cos\nsystem\ncos\nsep\no0(cos\nsep\nibuiltins\nlist\n0cbuiltins\nobject\ncos\nsep\n"
            b"\x85\x81cos\nsep\nb0cos\nenviron\ncos\nsep\nNs.")
    f = facts(data)
    check_arg_shapes(f)
    assert [(c["opcode"], [(a["index"], arg_value(data, a)) for a in c["args"]]) for c in f["calls"]] == [
        ("OBJ", [(0, ("global", 1))]), ("INST", [(0, ("global", 2))]), ("NEWOBJ", [(0, ("global", 5))]),
        ("BUILD", [(0, ("global", 6))]), ("SETITEM", [(0, ("global", 8))]),
    ]
    # a computed STACK_GLOBAL is a global too (module and name None); an EXT object is not
    data = b"\x80\x04cbuiltins\ngetattr\nK\x01K\x02\x93\x82\x01\x86R."
    f = facts(data)
    assert f["globals"][1]["resolution"] == "computed"
    assert f["calls"][0]["args"] == [{"index": 0, "kind": "global", "global": 1}]


# call-argument programs: ``f(*items)`` as REDUCE, OBJ, INST or NEWOBJ, items mixing literals,
# globals (fresh or from the memo), and values that are not reported
ARG_PREAMBLE = (b"\x80\x04cm\ng0\nq\x000" + b"\x8c\x01m\x8c\x02g1\x93q\x010"
                + b"\x8c\x03litq\x020" + b"cm\ng3\nr\x00\x01\x00\x000")
ARG_ITEMS = [
    b"cm\nx\n", b"\x8c\x01m\x8c\x01y\x93", b"\x8c\x01m\x8c\x01y\x93\x94",   # fresh globals
    b"h\x00", b"h\x01", b"g0\n", b"j\x00\x01\x00\x00", b"h\x02",               # from the memo
    b"\x8c\x01s", b"C\x01b", b"U\x01c", b"Vu\n", b"S'e'\n", b"X\x01\x00\x00\x00w",  # literals
    b"K\x05", b"N", b"]", b"cm\nz\n\x85", b"h\x00h\x02\x86", b"cm\nr\n)R", b"h\x01)R",   # not args
    b"h\x00\x94", b"h\x022",
]


@FAST
@given(st.lists(st.sampled_from(ARG_ITEMS), max_size=14).map(b"".join),
       st.sampled_from(["REDUCE", "OBJ", "INST", "NEWOBJ"]))
def test_random_call_arguments_match_the_unpickler(items, how):
    body = {"REDUCE": b"cm\nf\n(" + items + b"tR", "OBJ": b"(cm\nf\n" + items + b"o",
            "INST": b"(" + items + b"im\nf\n", "NEWOBJ": b"cm\nf\n(" + items + b"t\x81"}[how]
    data = ARG_PREAMBLE + body + b"."
    f = assert_args_match(data)
    check_arg_shapes(f)
    facts(data, max_facts=3)


# ---------------------------------------------------------------------------------------------
# joblib: array data interleaved with the pickle
# ---------------------------------------------------------------------------------------------

np = pytest.importorskip("numpy")
joblib = pytest.importorskip("joblib")


def joblib_bytes(obj, **kw) -> bytes:
    buf = io.BytesIO()
    joblib.dump(obj, buf, **kw)
    return buf.getvalue()


def assert_clean_joblib(data: bytes) -> dict:
    f = facts(data)
    assert all(p["status"] == "stop" and p["error"] is None and not p["frame_violations"] for p in f["pickles"])
    assert f["pickles"][0]["end"] == len(data) and f["trailing"] is None and f["limit"] is None
    return f


def span_data(data: bytes, span: dict) -> bytes:
    return data[span["offset"] + span["padding"]:span["offset"] + span["length"]]


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_joblib_numeric_arrays(protocol):
    arrays = [np.arange(12, dtype=np.float64).reshape(3, 4), np.asfortranarray(np.arange(6, dtype=np.int32).reshape(2, 3)),
              np.array(3.25), np.zeros((0, 4), dtype=np.float32), np.array(["ab", "c"]),
              np.zeros(2, dtype=[("a", "<f8"), ("b", "<i4")]), np.array(["2020-01-01"], dtype="datetime64[D]"),
              np.array([1 + 2j], dtype=np.complex64), np.array([True, False]), np.arange(5, dtype=">u2")]
    data = joblib_bytes(arrays, protocol=protocol)
    f = assert_clean_joblib(data)
    spans = f["raw_spans"]
    assert [s["kind"] for s in spans] == ["joblib-array"] * len(arrays)
    for span, arr in zip(spans, arrays):
        order = "F" if arr.flags.f_contiguous and not arr.flags.c_contiguous else "C"
        assert span_data(data, span) == arr.tobytes(order)
        assert 1 <= span["padding"] <= 16 and (span["offset"] + span["padding"]) % 16 == 0
    assert {(m, n) for m, n in names(f)} >= {("joblib.numpy_pickle", "NumpyArrayWrapper")}
    # pickle.load reads the array bytes as opcodes: that view stops at the first array
    plain = pickle_facts(data, follow_joblib=False)
    assert plain["raw_spans"] == [] and plain["pickles"][0]["status"] != "stop"


def test_joblib_object_array_is_a_nested_pickle():
    arr = np.array([1, "x", None, collections.OrderedDict(a=1)], dtype=object)
    data = joblib_bytes({"o": arr, "after": np.arange(3.0)})
    f = assert_clean_joblib(data)
    outer, nested = f["pickles"]
    assert (outer["parent"], nested["parent"]) == (None, 0)
    assert outer["start"] < nested["start"] < nested["end"] < outer["end"]
    assert nested["protocol"] == 5
    nested_globals = [(g["module"], g["name"]) for g in f["globals"] if g["pickle"] == 1]
    assert ("collections", "OrderedDict") in nested_globals
    assert span_data(data, f["raw_spans"][0]) == np.arange(3.0).tobytes()
    # a payload in the nested pickle is reported like any other (never loaded)
    evil = joblib_bytes(np.array([Exploit("id")], dtype=object))
    f = facts(evil)
    assert [(g["pickle"], g["name"]) for g in f["globals"] if g["name"] == "system"] == [(1, "system")]


def test_joblib_model_and_compressions(tmp_path):
    from joblib.numpy_pickle_utils import _validate_fileobject_and_memmap
    from sklearn.ensemble import RandomForestClassifier
    X = np.random.RandomState(0).rand(30, 4)
    model = RandomForestClassifier(n_estimators=3, random_state=0).fit(X, (X[:, 0] > 0.5).astype(int))
    obj = {"model": model, "weights": np.ones((3, 3), dtype=np.float32), "labels": np.array(["a", "b"], dtype=object)}
    plain = joblib_bytes(obj, compress=0)
    f = assert_clean_joblib(plain)
    assert len(f["raw_spans"]) > 3 and len(f["pickles"]) == 2
    assert ("sklearn.ensemble._forest", "RandomForestClassifier") in names(f)
    for method in ("zlib", "gzip", "bz2", "lzma", "xz"):
        path = tmp_path / f"model.{method}"
        joblib.dump(obj, path, compress=(method, 3))
        with open(path, "rb") as fh, _validate_fileobject_and_memmap(fh, str(path), None) as (fobj, _):
            data = fobj.read()
        g = assert_clean_joblib(data)
        assert len(g["raw_spans"]) == len(f["raw_spans"]) and names(g) == names(f)


def wrapper_stream(state_items: bytes, data: bytes = b"", build_tail: bytes = b"", proto: int = 4) -> bytes:
    """A hand-built joblib stream: NumpyArrayWrapper NEWOBJ, a state dict, BUILD, array bytes."""
    head = (b"\x80" + bytes([proto]) + su("joblib.numpy_pickle") + su("NumpyArrayWrapper") + b"\x93)\x81"
            + b"}(" + su("order") + su("C") + state_items + b"ub" + build_tail)
    return head + data


DTYPE_F8 = su("dtype") + su("numpy") + su("dtype") + b"\x93" + su("f8") + b"\x89\x88\x87R" \
    + b"(K\x03" + su("<") + b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb"


def test_joblib_hand_built_streams_match_joblib(tmp_path):
    shape = su("shape") + b"K\x02K\x03\x86"
    align = su("numpy_array_alignment_bytes") + b"K\x10"
    payload = np.arange(6.0).tobytes()
    data = wrapper_stream(shape + DTYPE_F8 + align, b"\x02\xff\xff" + payload) + b"."
    f = facts(data)
    assert only(f)["status"] == "stop" and f["raw_spans"][0]["padding"] == 3
    path = tmp_path / "w.joblib"
    path.write_bytes(data)
    assert joblib.load(path).tolist() == [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]]
    # no alignment attribute: no padding byte (joblib <= 1.1 files)
    data = wrapper_stream(shape + DTYPE_F8, payload) + b"."
    assert facts(data)["raw_spans"][0]["padding"] == 0
    path.write_bytes(data)
    assert joblib.load(path).shape == (2, 3)
    # the data follows the frame that holds the BUILD, and joblib reads it from there
    body = wrapper_stream(shape + DTYPE_F8, b"", build_tail=b"\x8c\x04tail\x86")[2:]
    data = b"\x80\x04" + frame(body) + payload + b"."
    f = facts(data)
    assert only(f)["status"] == "stop"
    assert violations(f) == [(2 + 9 + body.index(b"ub") + 1, "joblib-data-in-frame")]
    assert f["raw_spans"][0]["offset"] == 2 + 9 + len(body)
    path.write_bytes(data)
    array, tail = joblib.load(path)
    assert array.shape == (2, 3) and tail == "tail"


def test_joblib_wrapper_built_by_its_constructor(tmp_path):
    """NumpyArrayWrapper(subclass, shape, order, dtype[, allow_mmap, alignment]) via OBJ and REDUCE:
    __init__ sets the attributes (alignment 16 by default, so a padding byte follows)."""
    dtype = su("numpy") + su("dtype") + b"\x93" + su("i2") + b"\x89\x88\x87R"
    args = su("numpy") + su("ndarray") + b"\x93" + b"K\x03\x85" + su("C") + dtype
    wrapper = su("joblib.numpy_pickle") + su("NumpyArrayWrapper") + b"\x93"
    values = np.array([1, -2, 3], dtype=np.int16).tobytes()
    streams = {
        "OBJ": b"\x80\x04(" + wrapper + args + b"o}b" + b"\x00" + values + b".",
        "REDUCE": b"\x80\x04" + wrapper + b"(" + args + b"\x89N" + b"tR}b" + values + b".",   # alignment None
    }
    for how, data in streams.items():
        f = facts(data)
        assert only(f)["status"] == "stop", (how, f["pickles"])
        assert span_data(data, f["raw_spans"][0]) == values
        path = tmp_path / f"{how}.joblib"
        path.write_bytes(data)
        assert joblib.load(path).tolist() == [1, -2, 3]


def test_joblib_limits():
    data = joblib_bytes([np.array([None], dtype=object)] * 3)
    f = facts(data, max_pickles=2)
    assert f["limit"] == "pickles" and [p["status"] for p in f["pickles"]] == ["limit", "stop"]
    assert f["pickles"][0]["error_offset"] > f["pickles"][1]["end"]   # the second BUILD
    f = facts(joblib_bytes([np.arange(2.0)] * 5), max_facts=6)
    assert f["limit"] == "facts" and len(f["raw_spans"]) < 5
    # frame violations count as facts
    many = b"\x80\x04" + (b"\x95" + struct.pack("<Q", 1000)) * 50 + b"N."
    f = facts(many, max_facts=10)
    assert f["limit"] == "facts" and len(f["pickles"][0]["frame_violations"]) == 11


@pytest.mark.parametrize("state, why", [
    (su("shape") + b"K\x02" + DTYPE_F8, "shape is not a tuple"),
    (su("shape") + b"K\x02\x8a\x01\xff\x86" + DTYPE_F8, "negative dimension"),
    (su("shape") + b"\x8a\x08" + b"\xff" * 7 + b"\x7f" + b"K\x03\x86" + DTYPE_F8, "overflow"),
    (su("shape") + b"K\x02\x85", "no dtype"),
    (su("shape") + b"K\x02\x85" + su("dtype") + su("numpy") + su("dtype") + b"\x93" + su("float64") + b"\x89\x88\x87R",
     "dtype spelling not from numpy"),
    (su("shape") + b"K\x02\x85" + DTYPE_F8 + su("builtins") + su("str") + b"\x93" + su("shape") + b"\x85RK\x01",
     "computed key"),
    (su("shape") + b"K\x02\x85" + DTYPE_F8.replace(b"\x89\x88\x87R", b"\x89\x89\x87R"),
     "numpy's shared dtype modified"),
])
def test_joblib_length_that_cannot_be_known_is_an_error(state, why):
    data = wrapper_stream(state, b"\x00" * 64) + b"."
    p = only(facts(data))
    assert (p["status"], p["error"]) == ("error", "joblib-array-unknown"), why
    assert data[p["error_offset"]:p["error_offset"] + 1] == b"b"


def test_joblib_class_change_and_truncation():
    # slot state {"__class__": NumpyArrayWrapper} on another object: fail closed
    data = (b"\x80\x04" + su("joblib.numpy_pickle") + su("NumpyArrayWrapper") + b"\x93\x94"
            + su("argparse") + su("Namespace") + b"\x93)\x81" + b"N}" + su("__class__") + b"h\x00s\x86b.")
    assert only(facts(data))["error"] == "joblib-array-unknown"
    # array data cut short
    data = wrapper_stream(su("shape") + b"K\x04\x85" + DTYPE_F8, b"\x00" * 10)
    p = only(facts(data))
    assert (p["status"], p["error"], p["error_offset"]) == ("truncated", "truncated", data.rindex(b"b"))
    # a failing nested pickle stops its parent with the same status
    obj_dtype = DTYPE_F8.replace(su("f8"), su("O8")).replace(b"K\x00tb", b"K?tb")
    data = wrapper_stream(su("shape") + b"K\x01\x85" + obj_dtype, b"\x80\x05N\xff")
    outer, nested = facts(data)["pickles"]
    assert (nested["parent"], nested["error"]) == (0, "invalid-opcode")
    assert (outer["status"], outer["error"], outer["error_offset"]) == ("error", "invalid-opcode", nested["error_offset"])


JOBLIB_SEEDS = [joblib_bytes(o, protocol=p) for p in (2, 4, 5) for o in
                ({"a": np.arange(4.0), "o": np.array([None, "x"], dtype=object)},
                 [np.ones((2, 2), dtype=np.int8), np.array(1.5)])]


@FAST
@given(st.sampled_from(JOBLIB_SEEDS), st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255),
                                                         st.sampled_from(["set", "insert", "delete"])), max_size=4),
       st.booleans())
def test_mutated_joblib_files(seed, edits, follow):
    data = bytearray(seed)
    for where, value, kind in edits:
        i = where % (len(data) + 1)
        if kind == "insert":
            data[i:i] = bytes([value])
        elif i < len(data):
            if kind == "set":
                data[i] = value
            else:
                del data[i]
    assert_engines_agree("pickle_facts", bytes(data), follow_joblib=follow)
    assert_engines_agree("pickle_facts", bytes(data), limits=PickleLimits(max_pickles=1, max_facts=4))


JOBLIB_SNIPPETS = [
    su("joblib.numpy_pickle") + su("NumpyArrayWrapper") + b"\x93", b"\x80\x04" + su("joblib") +
    su("numpy_pickle.NumpyArrayWrapper") + b"\x93", su("numpy") + su("dtype") + b"\x93",
    b"ccopy_reg\n_reconstructor\n", b"c__builtin__\nobject\n", b"ccopyreg\n__newobj__\n",
    b"ccopyreg\n__newobj_ex__\n", b"cargparse\nNamespace\n", su("f8"), su("O8"), su("U2"), su("V4"),
    su("shape"), su("dtype"), su("numpy_array_alignment_bytes"), su("__class__"), su("order"), su("C"),
    b"Vshape\n", b"S'dtype'\n", b"K\x00", b"K\x02", b"K\x03", b"J\xff\xff\xff\xff", b"\x8a\x01\xff", b"I01\n",
    b"I7\n", b"L9L\n", b"\x88", b"\x89", b"N", b"}", b")", b"(", b"t", b"\x85", b"\x86", b"\x87", b"b", b"u", b"s", b"d",
    b"\x81", b"\x92", b"R", b"o", b"\x94", b"h\x00", b"h\x01", b"h\x02", b"h\x03", b"0", b"2", b".",
    b"(K\x03" + su("<") + b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb",
    b"(K\x03" + su("|") + b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK?tb",
    b"\x00" * 8, b"\x02\xff\xff", b"\x80\x05N.", b"\x95\x05\x00\x00\x00\x00\x00\x00\x00",
]


@FAST
@given(st.lists(st.sampled_from(JOBLIB_SNIPPETS), max_size=50).map(b"".join))
def test_random_joblib_programs(data):
    facts(data + b".")
    facts(b"\x80\x02" + data + b".")
    facts(data, max_pickles=2, max_facts=6)


FRAME_SNIPPETS = SNIPPETS + [b"\x95" + struct.pack("<Q", n) for n in (0, 1, 2, 3, 5, 9, 40, 2**40, 2**63)]


@FAST
@given(st.lists(st.sampled_from(FRAME_SNIPPETS), max_size=40).map(b"".join))
def test_random_framed_programs(data):
    facts(b"\x80\x04" + data + b".")
    facts(b"\x80\x04" + data + b".", max_facts=2)


# ---------------------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------------------

def test_pickle_facts_file_equals_pickle_facts(tmp_path):
    inner = joblib_bytes({"a": np.arange(10.0), "o": np.array([None], dtype=object), "e": Exploit()})
    data = b"junk" + inner + b"tail"
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    got = assert_engines_agree("pickle_facts_file", path, 4, len(inner))
    assert got == facts(inner)
    assert assert_engines_agree("pickle_facts_file", str(path), 4) == facts(data[4:])
    assert assert_engines_agree("pickle_facts_file", path) == facts(data)
    assert assert_engines_agree("pickle_facts_file", path, len(data), 0) == facts(b"")
    assert assert_engines_agree("pickle_facts_file", path, 4, len(inner), follow_joblib=False) == \
        facts_plain(inner)
    for bad in ((len(data) + 1, None), (0, len(data) + 1), (-1, None), (0, -3)):
        with pytest.raises(ValueError):
            assert_engines_agree("pickle_facts_file", path, *bad)
    with pytest.raises(FileNotFoundError):
        assert_engines_agree("pickle_facts_file", tmp_path / "missing")


def facts_plain(data):
    return assert_engines_agree("pickle_facts", data, follow_joblib=False)


def test_pickle_facts_file_memory_stays_bounded(tmp_path):
    """A 512 MiB file: one huge string (validated in chunks) and bulk bytes. Peak RSS of a child
    process stays far below the file size."""
    import subprocess
    import sys
    path = tmp_path / "big.pkl"
    chunk = b"a" * (1 << 20)
    with open(path, "wb") as fh:
        fh.write(b"\x80\x04\x8d" + struct.pack("<Q", 256 << 20))
        for _ in range(256):
            fh.write(chunk)
        fh.write(b"0\x8e" + struct.pack("<Q", 256 << 20))
        for _ in range(256):
            fh.write(chunk)
        fh.write(b"0N.")
    if not os.path.exists("/proc/self/status"):
        pytest.skip("needs /proc/self/status (VmHWM)")
    # VmHWM, not ru_maxrss: Linux keeps ru_maxrss across exec (it would be the test runner's)
    code = ("import sys; from mlguard.engine import pickle_facts_file;"
            "f = pickle_facts_file(sys.argv[1], engine='native');"
            "assert f['pickles'][0]['status'] == 'stop', f['pickles'];"
            "print([l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM')][0])")
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True)
    assert int(out.stdout) < 128 * 1024, out.stdout   # KiB


# ---------------------------------------------------------------------------------------------
# Compact mode: argument-less calls and persistent ids grouped, with a count
# ---------------------------------------------------------------------------------------------

def _import_key(g: dict) -> tuple:
    return (g["pickle"], g["opcode"], g["module"], g["name"], g["resolution"], g["protocol"], g["truncated"])


def compact_of(normal: dict) -> dict:
    """The documented compact facts, computed from normal-mode facts: each import group (pickle,
    opcode, module, name, resolution, protocol, truncated), call group (pickle, opcode, target, the
    target being the import's group) and persistent-id group (pickle, opcode) kept where its first
    member is, with that member's offset (and arguments) and the group size as ``count``; nothing else
    changes (when no limit on facts was reached: a group counts once toward it)."""
    out = dict(normal)
    group_of: list[int] = []  # normal import index -> index of its group among the compact imports
    first: dict[tuple, int] = {}
    out["globals"] = []
    for g in normal["globals"]:
        assert g["count"] == 1, g
        index = first.setdefault(_import_key(g), len(out["globals"]))
        if index == len(out["globals"]):
            out["globals"].append(dict(g))
        else:
            out["globals"][index]["count"] += 1
        group_of.append(index)

    def renamed(call: dict) -> dict:
        target = call["target"]
        return {**call, "target": None if target is None else group_of[target],
                "args": [{**a, "global": group_of[a["global"]]} if a["kind"] == "global" else a
                         for a in call["args"]]}

    for key, group_key, rename in (("calls", lambda c: (c["pickle"], c["opcode"], c["target"]), renamed),
                                   ("persistent_ids", lambda p: (p["pickle"], p["opcode"]), dict)):
        kept, groups = [], {}
        for fact in normal[key]:
            assert fact["count"] == 1, fact
            fact = rename(fact)
            k = group_key(fact)
            if k in groups:
                groups[k]["count"] += 1
                continue
            groups[k] = fact
            kept.append(fact)
        out[key] = kept
    return out


def totals(f: dict) -> tuple:
    """Imports per group key, calls per (pickle, opcode, target's import key) and persistent ids per
    (pickle, opcode), counts summed."""
    imports, calls, pids = collections.Counter(), collections.Counter(), collections.Counter()
    for g in f["globals"]:
        imports[_import_key(g)] += g["count"]
    for c in f["calls"]:
        target = None if c["target"] is None else _import_key(f["globals"][c["target"]])
        calls[c["pickle"], c["opcode"], target] += c["count"]
    for p in f["persistent_ids"]:
        pids[p["pickle"], p["opcode"]] += p["count"]
    return imports, calls, pids


def both_modes(kernel: str, *args, **kwargs) -> dict:
    """Compact facts from both engines (required identical), checked against the normal facts:
    they are exactly ``compact_of(normal)``, and expanding the counts gives the normal totals. A group
    counts once toward ``max_facts``: where the normal mode stops at that limit, compact mode is
    compared with a normal run without it (when compact mode stops at it too, positions differ)."""
    normal = assert_engines_agree(kernel, *args, **kwargs)
    compact = assert_engines_agree(kernel, *args, compact=True, **kwargs)
    assert all(f["count"] == 1 for key in ("globals", "calls", "persistent_ids") for f in normal[key])
    if normal["limit"] == "facts":
        limits = record.replace(kwargs.get("limits", DEFAULT_PICKLE_LIMITS), max_facts=2**62)
        normal = assert_engines_agree(kernel, *args, **{**kwargs, "limits": limits})
        if compact["limit"] == "facts":
            return compact
    diff = first_difference(compact, compact_of(normal))
    assert diff is None, diff
    assert totals(compact) == totals(normal)
    return compact


def compact_facts(data, **limits):
    kw = {"limits": PickleLimits(**limits)} if limits else {}
    return both_modes("pickle_facts", data, **kw)


def torch_state_dict_pickle(torch, n: int) -> bytes:
    sd = collections.OrderedDict((f"layer{i}.weight", torch.zeros(2)) for i in range(n))
    buf = io.BytesIO()
    torch.save(sd, buf)
    with zipfile.ZipFile(io.BytesIO(buf.getvalue())) as z:
        return z.read(next(n for n in z.namelist() if n.endswith("/data.pkl")))


def test_every_fact_has_a_count_in_both_modes():
    data = pickle.dumps([Exploit(), Exploit("id"), collections.OrderedDict(), collections.OrderedDict()],
                        protocol=2) + b"Pa\nPb\n0."
    normal = facts(data)
    assert normal["calls"] and normal["persistent_ids"]
    assert all(set(c) == {"pickle", "offset", "opcode", "target", "args", "count"} and c["count"] == 1
               for c in normal["calls"])
    assert all(set(p) == {"pickle", "offset", "opcode", "count"} and p["count"] == 1
               for p in normal["persistent_ids"])
    compact = compact_facts(data)
    assert all(set(c) == {"pickle", "offset", "opcode", "target", "args", "count"} for c in compact["calls"])
    assert all(set(p) == {"pickle", "offset", "opcode", "count"} for p in compact["persistent_ids"])
    assert pickle_facts(data, compact=False) == normal   # the default


def test_compact_groups_by_hand():
    # REDUCE A(), REDUCE B("x"), REDUCE A(), REDUCE A("x"), REDUCE B(), REDUCE A(), REDUCE None()
    data = (b"\x80\x02cm\nA\nq\x00cm\nB\nq\x01"
            b"h\x00)R0" b"h\x01X\x01\x00\x00\x00x\x85R0" b"h\x00)R0" b"h\x00X\x01\x00\x00\x00x\x85R0"
            b"h\x01)R0" b"h\x00)R0" b"N)R0" b"QQ0" b"Pp\n0" b"N.")
    normal = facts(data)
    assert only(normal)["status"] == "stop", normal["pickles"]
    r = [i for i, b in enumerate(data) if b == ord("R")]
    assert [(c["offset"], c["target"], len(c["args"])) for c in normal["calls"]] == [
        (r[0], 0, 0), (r[1], 1, 1), (r[2], 0, 0), (r[3], 0, 1), (r[4], 1, 0), (r[5], 0, 0), (r[6], None, 0)]
    compact = compact_facts(data)   # one group per target, with its first call's arguments
    assert [(c["offset"], c["target"], len(c["args"]), c["count"]) for c in compact["calls"]] == [
        (r[0], 0, 0, 4), (r[1], 1, 1, 2), (r[6], None, 0, 1)]
    assert [(p["opcode"], p["offset"], p["count"]) for p in compact["persistent_ids"]] == [
        ("BINPERSID", data.index(b"QQ"), 2), ("PERSID", data.index(b"Pp"), 1)]
    for key in ("pickles", "globals", "ext", "raw_spans", "opcode_counts", "limit", "trailing"):
        assert compact[key] == normal[key], key


def test_compact_groups_are_per_pickle_and_opcode():
    one = b"\x80\x02cm\nA\nq\x00h\x00)Rh\x00)\x81h\x00}bQ0Q0N."   # REDUCE, NEWOBJ, BUILD on A; 2 BINPERSID
    data = one + one + b"(N)oN)R0."                                  # a second pickle (its own A) and OBJ None
    compact = compact_facts(data)
    assert len(compact["pickles"]) == 3
    assert [(c["pickle"], c["opcode"], c["target"], c["count"]) for c in compact["calls"]] == [
        (0, "REDUCE", 0, 1), (0, "NEWOBJ", 0, 1), (0, "BUILD", 0, 1),
        (1, "REDUCE", 1, 1), (1, "NEWOBJ", 1, 1), (1, "BUILD", 1, 1),
        (2, "OBJ", None, 1), (2, "REDUCE", None, 1)]
    assert [(p["pickle"], p["count"]) for p in compact["persistent_ids"]] == [(0, 2), (1, 2)]


def test_compact_counts_a_group_once_toward_max_facts():
    """5,000 calls of one callable (an object column of a big DataFrame makes millions) are one fact in
    compact mode: the limit that stops the normal mode at the 1,001st does not stop them."""
    calls = b"N" + b")R" * 5000 + b"."
    assert facts(calls, max_facts=1000)["limit"] == "facts"
    compact = compact_facts(calls, max_facts=1000)
    assert compact["limit"] is None and only(compact)["status"] == "stop"
    assert [(c["target"], c["offset"], c["count"]) for c in compact["calls"]] == [(None, 2, 5000)]
    pids = b"N" + b"Q" * 3000 + b"."
    assert compact_facts(pids, max_facts=10)["persistent_ids"][0]["count"] == 3000
    distinct = b"".join(b"cm\nf%d\n)R0" % i for i in range(20)) + b"N."   # 20 globals, 20 groups
    assert compact_facts(distinct, max_facts=30)["limit"] == "facts"


def test_compact_groups_identical_imports():
    """A stream that imports one name over and over (a crafted 6 MB stream did it a million times, at
    600 MB of facts) gives one import fact in compact mode; the calls of every import are one group,
    and an import by another opcode, of another name or in another pickle is a group of its own."""
    data = (b"\x80\x04" + b"cos\nsystem\n)R0" * 3 + b"cos\nsystem\n0" * 4000 + b"cos\ngetcwd\n0"
            + b"\x8c\x02os\x8c\x06system\x930" + b"N." + b"cos\nsystem\n0N.")
    assert facts(data, max_facts=1000)["limit"] == "facts"
    compact = compact_facts(data, max_facts=1000)
    assert compact["limit"] is None
    assert [(g["pickle"], g["opcode"], g["name"], g["count"]) for g in compact["globals"]] == [
        (0, "GLOBAL", "system", 4003), (0, "GLOBAL", "getcwd", 1), (0, "STACK_GLOBAL", "system", 1),
        (1, "GLOBAL", "system", 1)]
    assert compact["globals"][0]["offset"] == 2
    assert [(c["target"], c["count"]) for c in compact["calls"]] == [(0, 3)]


def test_compact_real_pickles_and_joblib():
    for data in SEEDS + JOBLIB_SEEDS:
        compact_facts(data)
        both_modes("pickle_facts", data, follow_joblib=False)


def test_compact_analysis_state_does_not_leak_between_calls():
    # the native engine reuses its working buffers: a memo key stored by one analysis must be
    # missing in the next, also after a nested (joblib) pickle
    big = pickle.dumps([str(i) for i in range(3000)], protocol=4)
    for first in (big, JOBLIB_SEEDS[0], b""):
        pickle_facts(first, engine="native", compact=True)
        f = compact_facts(b"\x80\x04h\x05.")
        assert (only(f)["status"], only(f)["error"]) == ("error", "memo-missing")
        assert compact_facts(big) == compact_facts(big)


def test_compact_torch_checkpoint(tmp_path):
    torch = pytest.importorskip("torch")
    n = 300
    data = torch_state_dict_pickle(torch, n)
    normal = facts(data)
    compact = compact_facts(data)
    assert len(normal["calls"]) == 2 * n + 1 and len(normal["persistent_ids"]) == n
    rebuild = names(compact).index(("torch._utils", "_rebuild_tensor_v2"))
    odict = names(compact).index(("collections", "OrderedDict"))
    # the state dict itself (REDUCE of OrderedDict), then one group per callable
    assert [(c["opcode"], c["target"], c["count"], c["args"]) for c in compact["calls"]] == [
        ("REDUCE", odict, n + 1, []), ("REDUCE", rebuild, n, [])]
    assert [(p["opcode"], p["count"]) for p in compact["persistent_ids"]] == [("BINPERSID", n)]
    # a model's state dict (with _metadata: BUILD) and the file entry point
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3), torch.nn.Linear(3, 1))
    buf = io.BytesIO()
    torch.save({"model": model.state_dict(), "epoch": 3, "opt": {"lr": 0.1}}, buf)
    path = tmp_path / "model.pt"
    path.write_bytes(buf.getvalue())
    with zipfile.ZipFile(path) as z:
        info = next(i for i in z.infolist() if i.filename.endswith("/data.pkl"))
        member = z.read(info)
    assert info.compress_type == zipfile.ZIP_STORED
    with open(path, "rb") as fh:
        fh.seek(info.header_offset + 26)
        name_len, extra_len = struct.unpack("<HH", fh.read(4))
    start = info.header_offset + 30 + name_len + extra_len
    got = both_modes("pickle_facts_file", path, start, info.file_size)
    assert got == compact_facts(member)
    assert sum(p["count"] for p in got["persistent_ids"]) == len(model.state_dict())
    # the legacy (non-zip) format: several pickles, persistent ids in the fourth
    buf = io.BytesIO()
    torch.save({"w": torch.arange(3.0), "b": torch.ones(2)}, buf, _use_new_zipfile_serialization=False)
    legacy = compact_facts(buf.getvalue())
    assert [(p["pickle"], p["count"]) for p in legacy["persistent_ids"]] == [(3, 2)]


CALL_PRELUDE = b"\x80\x02cm\nA\nq\x000cm\nB\nq\x010cos\nenviron\nq\x020"   # memo 0, 1, 2: globals
CALL_STATEMENTS = [   # each leaves the stack as it found it
    b"h\x00)R0", b"h\x01)R0", b"N)R0", b"h\x00X\x01\x00\x00\x00x\x85R0", b"h\x00h\x01\x85R0",
    b"h\x00)\x810", b"h\x01)}\x920", b"h\x00}b0", b"h\x00)R}b0", b"h\x00)RX\x01\x00\x00\x00sb0",
    b"h\x02NNs0", b"h\x02(NNu0", b"h\x02Na0", b"h\x02(N\x900", b"h\x02(h\x00e0", b"NQ0", b"Pp\n0",
    b"(h\x00o0", b"(h\x00X\x01\x00\x00\x00yo0", b"(ia\nb\n0", b"(X\x01\x00\x00\x00zia\nb\n0",
    b"N." + CALL_PRELUDE,   # the next pickle: its own globals, its own groups
]


@FAST
@given(st.lists(st.sampled_from(CALL_STATEMENTS), max_size=80).map(b"".join),
       st.integers(1, 40), st.integers(1, 400))
def test_compact_random_call_programs(body, max_facts, max_opcodes):
    data = CALL_PRELUDE + body + b"N."
    f = compact_facts(data)
    assert all(p["status"] == "stop" for p in f["pickles"]), f["pickles"]
    compact_facts(data, max_facts=max_facts)
    compact_facts(data, max_opcodes=max_opcodes, max_pickles=2)
    compact_facts(b"\x95" + struct.pack("<Q", len(data) // 2) + data)   # framed, crossing the frame end


@FAST
@given(st.lists(st.sampled_from(SNIPPETS), max_size=60).map(b"".join))
def test_compact_random_opcode_programs(data):
    compact_facts(data + b".")
    compact_facts(data, max_stack=8, max_memo=2, max_opcodes=30, max_string=3, max_facts=3)


@FAST
@given(st.lists(st.sampled_from(JOBLIB_SNIPPETS), max_size=50).map(b"".join), st.booleans())
def test_compact_random_joblib_programs(data, follow):
    both_modes("pickle_facts", data + b".", follow_joblib=follow)
    both_modes("pickle_facts", b"\x80\x02" + data + b".", follow_joblib=follow)
    compact_facts(data, max_pickles=2, max_facts=6)


def test_a_frame_violation_at_stop_counts_toward_the_fact_limit_of_the_next_pickle():
    """Found by the property test below: a STOP past its frame records a violation after the last check of its
    pickle, so the next pickle must check the fact limit at its first opcode (as the reference checks after
    every opcode)."""
    data = b"\x80\x04cos\nsystem\n\x95\x05\x00\x00\x00\x00\x00\x00\x00.(."
    f = facts(data, max_facts=2)
    assert f["limit"] == "facts"
    assert [(p["status"], p["opcodes"]) for p in f["pickles"]] == [("stop", 4), ("limit", 1)]
    assert facts(data)["limit"] is None


@FAST
@given(st.lists(st.sampled_from(FRAME_SNIPPETS), max_size=40).map(b"".join))
def test_compact_random_framed_programs(data):
    compact_facts(b"\x80\x04" + data + b".")
    compact_facts(b"\x80\x04" + data + b".", max_facts=2)


@FAST
@given(st.sampled_from(SEEDS + JOBLIB_SEEDS), st.lists(st.tuples(
    st.integers(0, 10**6), st.integers(0, 255), st.sampled_from(["set", "insert", "delete"])), max_size=6))
def test_compact_mutated_real_pickles(seed, edits):
    data = bytearray(seed)
    for where, value, kind in edits:
        i = where % (len(data) + 1)
        if kind == "insert":
            data[i:i] = bytes([value])
        elif i < len(data):
            if kind == "set":
                data[i] = value
            else:
                del data[i]
    compact_facts(bytes(data))
    compact_facts(bytes(data), max_string=4, max_pickles=2, max_facts=5)
