"""The pickle kernel: native (Rust) and reference (Python) engines, differentially.

Pickles here are built by code. The malicious ones are NEVER loaded; benign ones are loaded
only to record which globals CPython's unpickler asks for (an oracle for the facts).
"""
from __future__ import annotations

import collections
import copyreg
import datetime
import decimal
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
    assert f["calls"] == [{"pickle": 0, "offset": data.index(b"R"), "opcode": "REDUCE", "target": 0}]
    # one operand literal, one from the memo is still "memo"
    data = b"\x80\x04" + su("os") + b"\x94" + su("system") + b"\x93." 
    assert facts(data)["globals"][0]["resolution"] == "literal"
    data = b"\x80\x04" + su("os") + b"\x94" + b"0h\x00" + su("system") + b"\x93."
    assert facts(data)["globals"][0]["resolution"] == "memo"
    # protocol 0 text memo: PUT/GET with decimal lines
    data = b"Vbuiltins\np1\nVgetattr\np2\n00g1\ng2\n\x93."
    g = facts(data)["globals"][0]
    assert (g["module"], g["name"], g["resolution"]) == ("builtins", "getattr", "memo")


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
    assert f["calls"] == [{"pickle": 0, "offset": data.index(b"s."), "opcode": "SETITEM", "target": 0}]
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
    (b"\x95" + struct.pack("<Q", 100) + b"N.", "truncated"),
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
    f = facts(pickle.dumps([str(i) for i in range(50)], protocol=4), max_memo=20)
    assert f["limit"] == "memo" and only(f)["status"] == "limit"
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
                 b"B\xff\xff\xff\xff", b"\x95" + b"\xff" * 8):
        start = time.perf_counter()
        p = only(facts(data * 100))
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
    f2 = facts(data, max_stack=8, max_memo=2, max_opcodes=30, max_string=3, max_facts=3)
    assert f2["pickles"]


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
