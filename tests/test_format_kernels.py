"""The safetensors and GGUF header kernels (``engine.safetensors_header``, ``engine.gguf_header``): native (Rust) and
reference (Python) engines, differentially, on files written by the real libraries, hand-crafted corner cases, every
truncation of small files and random mutations. Without the native kernels the reference engine is still checked."""
from __future__ import annotations

import io
import json
import math
import mmap
import struct
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlguard import engine
from mlguard.engine.pure import safetensors as pure_safetensors

from differential import first_difference

try:
    import mlguard_rs
except ImportError:
    mlguard_rs = None

NATIVE = all(hasattr(mlguard_rs, kernel) for kernel in ("safetensors_header", "gguf_header"))
FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
MAX_SECONDS = 2.0
"""No header of these tests takes longer on either engine."""


def _nan_marked(value):
    """``value`` with NaN floats replaced by a marker (NaN != NaN, and GGUF floats can be NaN)."""
    if isinstance(value, float) and math.isnan(value):
        return "<NaN>"
    if isinstance(value, dict):
        return {k: _nan_marked(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_nan_marked(v) for v in value)
    return value


def facts(kernel: str, *args) -> dict:
    """``engine.<kernel>(*args)`` by the reference engine and, when it is built, the native one: the facts must be
    identical (strictly: True is not 1) and each call must finish within MAX_SECONDS."""
    results = []
    for name in ("python", "native") if NATIVE else ("python",):
        start = time.perf_counter()
        results.append(getattr(engine, kernel)(*args, engine=name))
        assert time.perf_counter() - start < MAX_SECONDS, f"{kernel} took too long on the {name} engine"
    if NATIVE:
        diff = first_difference(_nan_marked(results[1]), _nan_marked(results[0]))
        assert diff is None, f"{kernel}: engines disagree at {diff[0]}: native={diff[1]!r} python={diff[2]!r}"
    return results[0]


def test_the_native_kernels_are_built():
    if not NATIVE:
        pytest.skip("mlguard_rs lacks safetensors_header/gguf_header: only the reference engine is tested")
    assert engine.safetensors_header(b"", engine="native")["error"] == "short"
    assert engine.gguf_header(b"", engine="native")["error"] == "needs 4 bytes at offset 0, 0 left"


# ------------------------------------------------------------------------------------------ safetensors ----

def st_file(header, data: bytes = b"") -> bytes:
    """A safetensors file: ``header`` (bytes, or an object to dump as JSON) after its length."""
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + data


def st_facts(data, file_size=None) -> dict:
    return facts("safetensors_header", data, file_size)


def st_detail(header: bytes) -> tuple:
    f = st_facts(st_file(header))
    return f["error"], f["detail"]


F32x2 = {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}
META = {"format": "pt", "note": "caf\u00e9 \u2603 \U0001f600", "config": json.dumps({"a": [1, 2]}),
        "quoted": 'say "hi"\\n\t\u0001'}


def test_files_written_by_safetensors(tmp_path):
    np = pytest.importorskip("numpy")
    st_numpy = pytest.importorskip("safetensors.numpy")
    from safetensors import safe_open
    arrays = {"w": np.ones((2, 3), np.float32), "empty": np.zeros(0, np.float16), "i": np.arange(10, dtype=np.int64),
              "u": np.array([1, 2], np.uint8), "flag": np.array([True]), "scalar": np.array(3.0)}
    arrays.update({f"layer.{i}.bias": np.full(4, i, np.float32) for i in range(300)})
    path = tmp_path / "a.safetensors"
    st_numpy.save_file(arrays, str(path), metadata=META)
    f = st_facts(path.read_bytes())
    assert (f["error"], f["duplicates"], f["metadata"]) == (None, [], META)
    with safe_open(str(path), "np") as handle:
        expected = {name: handle.get_slice(name).get_shape() for name in handle.keys()}
    assert {t["name"]: t["shape"] for t in f["tensors"]} == expected
    assert all(t["problem"] is None for t in f["tensors"])


def test_files_written_by_safetensors_torch(tmp_path):
    torch = pytest.importorskip("torch")
    from safetensors.torch import save_file
    path = tmp_path / "t.safetensors"
    save_file({"w": torch.randn(4, 4), "b": torch.zeros(4, dtype=torch.bfloat16), "m": torch.ones(3, dtype=torch.bool),
               "f8": torch.zeros(2, dtype=torch.float8_e4m3fn)}, str(path), metadata=META)
    with open(path, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        f = st_facts(mm)
    assert (f["error"], f["metadata"]) == (None, META)
    assert {t["name"]: t["dtype"] for t in f["tensors"]} == {"w": "F32", "b": "BF16", "m": "BOOL", "f8": "F8_E4M3"}


@pytest.mark.parametrize("data, kind", [
    (b"\x01\x02", "short"),
    (struct.pack("<Q", 10**9) + b"{}", "too-large"),
    (struct.pack("<Q", 500) + b"{}", "beyond-file"),
    (st_file(b'{"a\xff": 1}'), "not-utf8"),
    (st_file(b'{"a": NaN}'), "not-json"),
    (st_file(b'[{"a": 1}]'), "not-object"),
    (st_file(b'{"a": ' + b"[" * 64 + b"]" * 64 + b"}"), "too-deep"),
])
def test_every_error_kind(data, kind):
    f = st_facts(data)
    assert f["error"] == kind and isinstance(f["detail"], str)
    assert (f["duplicates"], f["metadata"], f["tensors"]) == ([], None, [])


def test_the_bounds_of_the_reference_engine(monkeypatch):
    """The native bounds are the same constants (``cargo test`` checks them): real-size headers are tens of MB."""
    monkeypatch.setattr(pure_safetensors, "MAX_TENSORS", 2)
    assert engine.safetensors_header(st_file(b'{"a": 1, "a": 2, "__metadata__": {}}'), engine="python")["error"] is None
    f = engine.safetensors_header(st_file(b'{"a": 1, "__metadata__": {}, "b": 2}'), engine="python")
    assert (f["error"], f["detail"]) == ("too-many", "more than 2 entries")
    monkeypatch.setattr(pure_safetensors, "MAX_VALUES", 4)
    f = engine.safetensors_header(st_file(b'{"a": [1, 2, 3]}'), engine="python")
    assert (f["error"], f["detail"]) == ("too-many", "more than 4 JSON values")


@pytest.mark.parametrize("header, at, reason", [
    (b"", 8, "unexpected end"),
    (b"   ", 11, "unexpected end"),
    (b'{"a": NaN}', 14, "expected a value"),
    (b'{"a": Infinity}', 14, "expected a value"),
    (b'{"a": -Infinity}', 15, "invalid number"),
    (b'{"a": 1,}', 16, "expected a string key"),
    (b'{a: 1}', 9, "expected a string key"),
    (b'{"a" 1}', 13, "expected ':'"),
    (b'[1 2]', 11, "expected ',' or ']'"),
    (b'[1,]', 11, "expected a value"),
    (b'{"a": 01}', 15, "expected ',' or '}'"),
    (b'{"a": 1.}', 16, "invalid number"),
    (b'{"a": .5}', 14, "expected a value"),
    (b'{"a": 1e+}', 17, "invalid number"),
    (b'{"a": 1e400}', 14, "number out of range"),
    (b'{"a": -1e400}', 14, "number out of range"),
    (b'{"a": ' + b"9" * 5000 + b"}", 14, "number out of range"),
    (b'{"a": tru}', 14, "invalid literal"),
    (b'{"a": True}', 14, "expected a value"),
    (b'{"a": "\t"}', 15, "control character in string"),
    (b'{"a": "\\x"}', 15, "invalid escape"),
    (b'{"a": "\\u12g4"}', 15, "invalid escape"),
    (b'{"a": "\\', 15, "invalid escape"),
    (b'{"a": "\\ud800"}', 15, "lone surrogate"),
    (b'{"a": "\\udfff"}', 15, "lone surrogate"),
    (b'{"a": "\\ud800\\ud800"}', 15, "lone surrogate"),
    (b'{"a": "x\\udc00\\ud800"}', 16, "lone surrogate"),
    ('{"\u00e9\u2603": "\\ud800\\u0041"}'.encode(), 19, "lone surrogate"),
    (b"\xef\xbb\xbf{}", 8, "expected a value"),
    (b"{} x", 11, "trailing characters"),
    (b"{}\x00", 10, "trailing characters"),
    (b'{"a": "x', 16, "unexpected end"),
    (b'{"a": [', 15, "unexpected end"),
])
def test_strict_json_errors_name_the_byte_and_the_reason(header, at, reason):
    assert st_detail(header) == ("not-json", f"header is not strict JSON at byte {at}: {reason}")


def test_what_the_official_loader_refuses_is_refused():
    """Every not-json case above is refused by the safetensors library too (serde_json)."""
    st_numpy = pytest.importorskip("safetensors.numpy")
    for header in (b'{"a": NaN}', b'{"__metadata__": {"a": "\\ud800"}}', b'{"__metadata__": {"a": "\\udc00x"}}',
                   b'{"a": 1e400}', b'{"a": 1,}', b"{} x", b'{"a": "\t"}'):
        with pytest.raises(Exception):
            st_numpy.load(st_file(header))
        assert st_facts(st_file(header))["error"] == "not-json"
    accepted = {"__metadata__": {"k": "\U0001f600 \u00e9"}}  # dumped as a surrogate pair
    assert st_numpy.load(st_file(accepted)) == {}
    assert st_facts(st_file(accepted))["metadata"] == accepted["__metadata__"]


def test_not_an_object():
    for header, kind in ((b"[]", "array"), (b' "x" ', "string"), (b"-1.5", "number"), (b"7", "number"),
                         (b"false", "boolean"), (b"null", "null")):
        assert st_detail(header) == ("not-object", f"header is a JSON {kind}, not an object")


def test_framing_details():
    assert st_facts(b"1234567")["detail"] == "7 bytes, fewer than the 8 of the length field"
    assert st_facts(struct.pack("<Q", 2 * 10**8))["detail"] == \
        "header length 200,000,000 over the loader's cap of 100,000,000"
    assert st_facts(struct.pack("<Q", 5000) + b"{}")["detail"] == "header length 5,000 but only 2 bytes follow"
    assert st_facts(st_file(b'{"\xe2\x82": 1}'))["detail"] == "header is not UTF-8 at byte 10"


def test_file_size():
    data = st_file(b"{}")
    assert st_facts(data, 10**6)["error"] is None
    assert st_facts(data, 9)["error"] == "beyond-file"
    assert st_facts(data, 4)["detail"] == "4 bytes, fewer than the 8 of the length field"
    assert st_facts(st_file(b'{"a": 1}')[:12], 16)["detail"] == "header is not strict JSON at byte 12: unexpected end"
    for bad in (-1, True, 1.5, 2**64):
        with pytest.raises(ValueError):
            engine.safetensors_header(data, bad)


def test_repeated_keys_at_every_depth():
    header = (b'{"__metadata__": {"k": "1", "k": "2", "n": {"x": [1, {"y": 1, "y": 2}], "x": 0}}, '
              b'"t": {"dtype": "F32", "dtype": "F16", "shape": [1], "data_offsets": [0, 2]}, "u": 1, '
              b'"t": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8], "shape": [2]}, "__metadata__": {"k": "3"}}')
    f = st_facts(st_file(header, b"\0" * 8))
    assert f["duplicates"] == ["k", "y", "x", "dtype", "shape", "t", "__metadata__"]
    assert f["metadata"] == {"k": "3"}
    assert [(t["name"], t["dtype"], t["problem"]) for t in f["tensors"]] == \
        [("t", "F32", None), ("u", None, "entry is not an object")]
    many = {f"k{i}": str(i) for i in range(40)}
    text = json.dumps({"__metadata__": many})[:-2] + ', "k7": "again", "k39": "last"}}'
    f = st_facts(st_file(text.encode()))
    assert f["duplicates"] == ["k7", "k39"]
    assert list(f["metadata"]) == list(many) and f["metadata"]["k7"] == "again" and f["metadata"]["k39"] == "last"


def test_numbers_follow_serde_json():
    """Integers in [-2**63, 2**64) are ints, other numbers floats; a shape or offset beyond is malformed."""
    meta = {"min": -2**63, "max": 2**64 - 1, "above": 2**64, "below": -2**63 - 1, "zero": 0, "f": 1.5, "e": 1e-320}
    text = json.dumps({"__metadata__": meta, "a": {"dtype": "F32", "shape": [2**64], "data_offsets": [0, 4]},
                       "b": {"dtype": "F32", "shape": [2**64 - 1], "data_offsets": [0, -1]},
                       "c": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 2**64]},
                       "d": {"dtype": "F32", "shape": [1.0], "data_offsets": [0, 4]}})
    f = st_facts(st_file(text.encode() + b' ' + b'\n\t\r'))
    assert f["metadata"] == {**meta, "above": float(2**64), "below": float(-2**63 - 1)}
    assert type(f["metadata"]["above"]) is float and type(f["metadata"]["max"]) is int
    assert [t["problem"] for t in f["tensors"]] == ["missing or malformed shape", "negative offset",
                                                     "missing or malformed data_offsets", "missing or malformed shape"]
    f = st_facts(st_file(b'{"__metadata__": {"z": -0, "big": ' + b"1" * 300 + b', "f": -0.0, "e": 1E2}}'))
    assert f["metadata"] == {"z": 0, "big": float("1" * 300), "f": -0.0, "e": 100.0}
    assert math.copysign(1, f["metadata"]["f"]) == -1 and type(f["metadata"]["z"]) is int


def test_nesting_is_bounded():
    nested: list = []
    for _ in range(62):
        nested = [nested]
    ok = b'{"__metadata__": ' + b"[" * 63 + b"]" * 63 + b"}"
    assert st_facts(st_file(ok))["metadata"] == {"": nested}
    assert st_detail(b'{"__metadata__": ' + b"[" * 64 + b"]" * 64 + b"}") == \
        ("too-deep", "header nested deeper than 64 at byte 88")
    assert st_detail(b"[" * 1_000_000)[0] == "too-deep"
    assert st_detail(b'{"a": ' + b'{"a": ' * 100_000)[0] == "too-deep"


@pytest.mark.parametrize("kind", ["numpy", "torch"])
def test_every_truncation_of_a_small_safetensors_file(tmp_path, kind):
    np = pytest.importorskip("numpy")
    path = tmp_path / "s.safetensors"
    if kind == "numpy":
        from safetensors.numpy import save_file
        save_file({"w": np.ones((2, 2), np.float32), "b": np.zeros(3, np.uint8)}, str(path), metadata=META)
    else:
        torch = pytest.importorskip("torch")
        from safetensors.torch import save_file
        save_file({"w": torch.ones(2, 2)}, str(path), metadata={"format": "pt", "\u00e9": "\\u00e9\u2603"})
    data = path.read_bytes()
    for cut in range(len(data) + 1):
        st_facts(data[:cut])
        st_facts(data[:cut], len(data))
    (n,) = struct.unpack("<Q", data[:8])
    header = data[8:8 + n]
    kinds = {st_facts(st_file(header[:cut]))["error"] for cut in range(n + 1)}
    assert kinds <= {"not-json", "not-utf8", None} and "not-json" in kinds


def _mutations():
    base = st_file({"__metadata__": {"format": "pt", "k\u00e9": "v\\u2603"}, "w": F32x2,
                    "b": {"dtype": "U8", "shape": [2, 4], "data_offsets": [8, 16]}}, b"\0" * 16)
    edit = st.tuples(st.sampled_from(["set", "insert", "delete"]), st.integers(0, len(base)),
                     st.sampled_from(list(b'{}[]",:\\0123456789-+.eEtfnu \x00\x7f\xc3\xa9\xed\xa0\x80\xff')))
    return base, st.lists(edit, min_size=1, max_size=6)


_BASE, _EDITS = _mutations()


@FAST
@given(_EDITS)
def test_random_mutations(edits):
    data = bytearray(_BASE)
    for op, pos, byte in edits:
        pos = min(pos, len(data))
        if op == "insert":
            data[pos:pos] = bytes([byte])
        elif pos < len(data):
            if op == "set":
                data[pos] = byte
            else:
                del data[pos]
    n = len(data) - 8 - 16
    if n > 0:
        data[:8] = struct.pack("<Q", n)  # keep the length in step, so the JSON is what varies
    st_facts(bytes(data))


_TEXT = st.text(st.characters(exclude_categories=["Cs"]))
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=False, allow_infinity=False) | _TEXT,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(_TEXT, children, max_size=4),
    max_leaves=20)


@FAST
@given(_JSON, st.booleans(), st.sampled_from([None, 2, "\t"]))
def test_generated_json_reads_like_python_json(value, ascii_only, indent):
    """On valid JSON the facts' metadata is what json.loads gives (integers outside [-2**63, 2**64) as floats)."""
    text = json.dumps({"__metadata__": {"v": value}}, ensure_ascii=ascii_only, indent=indent)

    def as_serde(v):
        if isinstance(v, bool) or not isinstance(v, (int, list, dict)):
            return v
        if isinstance(v, int):
            return v if -2**63 <= v < 2**64 else float(v)
        return [as_serde(x) for x in v] if isinstance(v, list) else {k: as_serde(x) for k, x in v.items()}

    f = st_facts(st_file(text.encode()))
    assert f["error"] is None and f["metadata"] == as_serde(json.loads(text)["__metadata__"])


def test_buffers_are_read_in_place_or_copied_alike():
    data = st_file({"w": F32x2, "__metadata__": {"a": "b"}}, b"\0" * 8)
    expected = st_facts(data)
    doubled = bytearray(b"".join(bytes([b, 0]) for b in data))
    two_d = memoryview(data).cast("B", (1, len(data)))
    for buffer in (bytearray(data), memoryview(data), memoryview(doubled)[::2], two_d):
        assert st_facts(buffer) == expected
    with pytest.raises(TypeError):
        engine.safetensors_header("not bytes")


# ------------------------------------------------------------------------------------------------- GGUF ----

def g_facts(data) -> dict:
    return facts("gguf_header", data)


def _string(raw: bytes, wide: bool = True) -> bytes:
    return struct.pack("<Q" if wide else "<I", len(raw)) + raw


def g_head(n_tensors: int, n_kv: int, version: int = 3) -> bytes:
    return b"GGUF" + struct.pack("<IQQ" if version > 1 else "<III", version, n_tensors, n_kv)


def g_write(path, **extra):
    gguf = pytest.importorskip("gguf")
    np = pytest.importorskip("numpy")
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_uint8("u8", 255)
    w.add_int8("i8", -128)
    w.add_uint16("u16", 65535)
    w.add_int16("i16", -32768)
    w.add_uint32("u32", 2**32 - 1)
    w.add_int32("i32", -2**31)
    w.add_uint64("u64", 2**64 - 1)
    w.add_int64("i64", -2**63)
    w.add_float32("f32", 0.1)
    w.add_float64("f64", 1 / 3)
    w.add_bool("yes", True)
    w.add_bool("no", False)
    w.add_string("s", "caf\u00e9 \U0001f600")
    w.add_string("tokenizer.chat_template", "{% for m in messages %}{{ m['content'] }}{% endfor %}")
    w.add_array("ints", list(range(40)))
    w.add_array("floats", [0.5 * i for i in range(20)])
    w.add_array("tokens", [f"tok{i}\u00e9" for i in range(30)])
    w.add_array("flags", [True, False, True])
    w.add_array("empty", [])
    for key, value in extra.items():
        w.add_string(key, value)
    w.add_tensor("tok_embd.weight", np.zeros((4, 8), np.float32))
    w.add_tensor("out.weight", np.ones(16, np.float16))
    w.add_tensor("cube", np.ones((2, 3, 4), np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def test_files_written_by_gguf(tmp_path):
    gguf = pytest.importorskip("gguf")
    path = g_write(tmp_path / "m.gguf")
    f = g_facts(path.read_bytes())
    assert (f["version"], f["error"], f["error_offset"]) == (3, None, None)
    reader = gguf.GGUFReader(str(path))
    fields = [field for name, field in reader.fields.items() if not name.startswith("GGUF.")]
    assert [(k, kind, at) for k, kind, _, at in f["metadata"]] == [(x.name, x.types[0].value, x.offset) for x in fields]
    for (key, _, value, _), field in zip(f["metadata"], fields):
        expected = field.contents()
        assert value == (expected[:16] if isinstance(expected, list) else expected), key
        assert type(value) is type(expected), key
    alignment = 32
    start = f["data_start"] + -f["data_start"] % alignment
    assert [(t["name"], t["dims"], t["type"], t["at"], start + t["offset"]) for t in f["tensors"]] == [
        (t.name, [int(d) for d in t.shape], t.tensor_type.value, t.field.offset, t.data_offset) for t in reader.tensors]
    assert next(v for k, _, v, _ in f["metadata"] if k == "yes") is True


def _kv(key: bytes, kind: int, payload: bytes) -> bytes:
    return _string(key) + struct.pack("<I", kind) + payload


@pytest.mark.parametrize("data, message, offset", [
    (b"", "needs 4 bytes at offset 0, 0 left", 0),
    (b"GGML\x03\0\0\0", "not a GGUF file (magic)", 0),
    (b"GGUF\x04\0\0\0" + b"\0" * 16, "unknown GGUF version 4", 4),
    (b"GGUF\x03\0\0", "needs 4 bytes at offset 4, 3 left", 4),
    (g_head(0, 1)[:-3], "needs 8 bytes at offset 16, 5 left", 16),
    (g_head(2**40, 0), "1,099,511,627,776 tensors declared, more than the file can hold", 24),
    (g_head(0, 9), "9 metadata keys declared, more than the file can hold", 24),
    (g_head(0, 1) + struct.pack("<Q", 2**24 + 1), "string of 16,777,217 bytes", 24),
    (g_head(0, 1, 1) + struct.pack("<I", 2**24 + 1), "string of 16,777,217 bytes", 16),
    (g_head(0, 1) + _kv(b"k", 99, b"\0" * 8), "unknown metadata value type 99", 33),
    (g_head(0, 1) + _kv(b"k", 9, struct.pack("<IQ", 9, 0)), "array of arrays", 37),
    (g_head(0, 1) + _kv(b"k", 9, struct.pack("<IQ", 13, 0)), "unknown metadata value type 13", 37),
    (g_head(0, 1) + _kv(b"k", 9, struct.pack("<IQ", 0, 2**50)),
     "array of 1,125,899,906,842,624 elements, more than the file can hold", 49),
    (g_head(0, 1) + _kv(b"k", 9, struct.pack("<IQ", 12, 3) + b"\0" * 20), "needs 24 bytes at offset 49, 20 left", 49),
    (g_head(0, 1) + _kv(b"k", 9, struct.pack("<IQ", 8, 3) + _string(b"a") + _string(b"b")),
     "needs 8 bytes at offset 67, 0 left", 67),
    (g_head(0, 1) + _kv(b"k", 6, b"\0\0"), "needs 4 bytes at offset 37, 2 left", 37),
    (g_head(1, 0) + _string(b"t") + struct.pack("<I", 5) + b"\0" * 60, "tensor #1 has 5 dimensions (at most 4)", 24),
    (g_head(2, 0) + _string(b"t") + struct.pack("<IQIQ", 1, 4, 0, 0) + _string(b"u") + struct.pack("<I", 9)
     + b"\0" * 40, "tensor #2 has 9 dimensions (at most 4)", 57),
])
def test_every_error_keeps_the_facts_before_it(data, message, offset):
    f = g_facts(data)
    assert (f["error"], f["error_offset"], f["data_start"]) == (message, offset, None)


def test_facts_before_an_error_are_kept():
    data = g_head(1, 3) + _kv(b"a", 7, b"\x02") + _kv(b"b", 8, _string(b"x\xffy")) \
        + _kv(b"c", 9, struct.pack("<IQ", 9, 0))
    f = g_facts(data)
    assert f["metadata"] == [("a", 7, True, 24), ("b", 8, "x\ufffdy", 38)]
    assert (f["version"], f["tensors"], f["error"]) == (3, [], "array of arrays")


def test_version_1_has_32_bit_counts_and_lengths():
    data = g_head(1, 1, 1) + _string(b"k", False) + struct.pack("<I", 8) + _string(b"v", False) \
        + _string(b"t", False) + struct.pack("<IIIIQ", 2, 3, 4, 0, 64)
    f = g_facts(data)
    assert f["metadata"] == [("k", 8, "v", 16)]
    assert f["tensors"] == [{"name": "t", "dims": [3, 4], "type": 0, "offset": 64, "at": 30}]
    assert (f["version"], f["error"], f["data_start"]) == (1, None, len(data))


_INVALID_UTF8 = [b"\xff", b"\xc0\xaf", b"\xe0\x80\xaf", b"\xed\xa0\x80", b"\xed\xbf\xbf", b"\xf0\x80\x80\x80",
                 b"\xf4\x90\x80\x80", b"\xf5\x80", b"\xe2\x82", b"\xf0\x9f\x98", b"\xe2\x82A", b"\xf0\x9fA",
                 b"\xc3", b"\x80\x80", b"\xf8\x88\x80\x80\x80", b"a\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80b"]


@pytest.mark.parametrize("raw", _INVALID_UTF8)
def test_strings_are_decoded_with_replacement(raw):
    f = g_facts(g_head(0, 1) + _kv(raw, 8, _string(raw + b"|" + raw)))
    assert f["metadata"][0][:3] == (raw.decode("utf-8", "replace"), 8, (raw + b"|" + raw).decode("utf-8", "replace"))


@FAST
@given(st.binary(max_size=24), st.lists(st.binary(max_size=8), max_size=20))
def test_random_bytes_decode_alike(key, items):
    data = g_head(1, 2) + _kv(key, 8, _string(key[::-1])) \
        + _kv(b"arr", 9, struct.pack("<IQ", 8, len(items)) + b"".join(_string(i) for i in items)) \
        + _string(key) + struct.pack("<IQIQ", 1, 7, 0, 0)
    f = g_facts(data)
    assert f["metadata"][1][2] == [i.decode("utf-8", "replace") for i in items[:16]]
    assert f["tensors"][0]["name"] == key.decode("utf-8", "replace")


def test_floats_round_trip_and_bools_are_bools():
    specials = [0.0, -0.0, 1e-45, -3.4028234663852886e38, math.inf, -math.inf, math.nan, 0.1, 2.5e-310]
    kvs = [_kv(b"f32", 6, struct.pack("<f", x)) for x in specials[:-1]] + [_kv(b"f64", 12, struct.pack("<d", x))
                                                                           for x in specials]
    kvs += [_kv(b"snan32", 6, b"\x01\x00\x80\x7f"), _kv(b"snan64", 12, b"\x01" + b"\0" * 5 + b"\xf0\x7f")]
    kvs += [_kv(b"b", 7, bytes([v])) for v in (0, 1, 2, 255)]
    kvs += [_kv(b"bools", 9, struct.pack("<IQ", 7, 3) + b"\x00\x01\x09")]
    f = g_facts(g_head(0, len(kvs)) + b"".join(kvs))
    values = [v for _, _, v, _ in f["metadata"]]
    floats = values[:len(specials) * 2 - 1]
    expected = [struct.unpack("<f", struct.pack("<f", x))[0] for x in specials[:-1]] + specials
    assert [struct.pack("<d", v) for v in floats if not math.isnan(v)] == \
        [struct.pack("<d", v) for v in expected if not math.isnan(v)]
    assert all(math.isnan(v) for v in values[len(specials) * 2 - 1:len(specials) * 2 + 1])
    assert values[-5:] == [False, True, True, True, [False, True, True]]
    assert all(type(v) is bool for v in values[-5:-1] + values[-1])


def test_every_truncation_of_a_small_gguf_file(tmp_path):
    data = g_write(tmp_path / "m.gguf").read_bytes()
    head = g_facts(data)["data_start"]
    for cut in range(head + 2):
        f = g_facts(data[:cut])
        assert (f["error"] is None) == (cut >= head)


@FAST
@given(st.lists(st.tuples(st.integers(0, 1 << 20), st.integers(0, 255)), min_size=1, max_size=6))
def test_random_mutations_of_a_written_file(tmp_path_factory, edits):
    data = bytearray(_small_gguf(tmp_path_factory))
    for pos, byte in edits:
        data[pos % len(data)] = byte
    g_facts(bytes(data))


_GGUF_CACHE: dict = {}


def _small_gguf(tmp_path_factory) -> bytes:
    if "small" not in _GGUF_CACHE:
        path = g_write(tmp_path_factory.mktemp("gguf") / "m.gguf")
        data = path.read_bytes()
        _GGUF_CACHE["small"] = data[:g_facts(data)["data_start"] + 64]
    return _GGUF_CACHE["small"]


def test_declared_sizes_are_not_allocated():
    """Huge declared counts and lengths fail fast, before anything that size is read or allocated."""
    for data in (g_head(0, 2**24) + b"\0" * 10, g_head(0, 1) + _kv(b"k", 9, struct.pack("<IQ", 12, 2**24)),
                 g_head(0, 1) + _kv(b"k", 9, struct.pack("<IQ", 8, 2**24)) + b"\0" * 64):
        assert g_facts(data)["error"]
    data = g_head(0, 1) + _kv(b"k", 9, struct.pack("<IQ", 0, 1 << 20) + b"\x01" * (1 << 20))
    assert g_facts(data)["metadata"][0][2] == [1] * 16


def test_gguf_buffers_are_read_alike(tmp_path):
    data = g_write(tmp_path / "m.gguf").read_bytes()
    expected = g_facts(data)
    with open(tmp_path / "m.gguf", "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        assert g_facts(mm) == expected
    assert g_facts(memoryview(bytearray(data))) == expected
    assert g_facts(io.BytesIO(data).getbuffer()) == expected
