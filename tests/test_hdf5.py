"""Legacy Keras HDF5 files: the root attribute reader (``mlguard/scanners/_hdf5.py``) against h5py on files h5py
writes in the layouts it has, hostile variants of them (decoys, truncations, mutations, loops), and what the
Keras scanner reports. Keras itself saving a ``.h5`` model is in test_keras.py."""
from __future__ import annotations

import json
import struct
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlguard import scan_bytes, scan_file
from mlguard.findings import Severity
from mlguard.scanners import _hdf5
from mlguard.scanners._hdf5 import root_attributes

h5py = pytest.importorskip("h5py")
np = pytest.importorskip("numpy")

BENIGN = {"class_name": "Sequential", "config": {"name": "s", "layers": [
    {"class_name": "Dense", "config": {"name": "d", "units": 1}}]}}
LAMBDA = {"class_name": "Sequential", "config": {"name": "s", "layers": [
    {"class_name": "Lambda", "config": {"name": "evil", "function": ["4wEAAAAAAAAAAAAAAAEAAAAC", None, None]}}]}}
FIXED, VLEN_BYTES, VLEN_TEXT = "fixed", "vlen-bytes", "vlen-text"


def value(text: str, kind: str):
    """``text`` as h5py stores it: numpy.bytes_ is fixed-length; bytes (what legacy Keras writes) and str are
    variable-length, ASCII and UTF-8, in the global heap."""
    return {FIXED: np.bytes_(text.encode()), VLEN_BYTES: text.encode(), VLEN_TEXT: text}[kind]


def h5py_strings(path) -> dict:
    """Scalar (or one-element) string attributes of the root group as h5py reads them, as text."""
    out = {}
    with h5py.File(path, "r") as f:
        for name in f.attrs:
            v = f.attrs[name]
            if isinstance(v, np.ndarray) and v.size == 1 and v.dtype.kind in "OS":
                v = v.reshape(-1)[0]
            if isinstance(v, bytes):
                v = v.decode("utf-8", "replace")
            if isinstance(v, str):
                out[name] = v.split("\0")[0]
    return out


def assert_agrees(path) -> None:
    result = root_attributes(path.read_bytes())
    assert result.error is None, result
    assert dict(result.values) == h5py_strings(path)
    assert len(result.values) == len(dict(result.values))


def rules(path) -> dict:
    return {f.rule_id: f.severity for f in scan_file(path).findings if f.severity >= Severity.LOW}


@pytest.mark.parametrize("kind", [FIXED, VLEN_BYTES, VLEN_TEXT])
@pytest.mark.parametrize("options, superblock", [
    ({}, 0), ({"libver": "latest"}, 3), ({"libver": ("v108", "v108")}, 2), ({"userblock_size": 512}, 0),
    ({"userblock_size": 4096, "libver": "latest"}, 3), ({"track_order": True}, 0),
    ({"track_order": True, "libver": "latest"}, 3)])
def test_model_config_in_every_layout(tmp_path, kind, options, superblock):
    path = tmp_path / "m.h5"
    with h5py.File(path, "w", **options) as f:
        f.attrs["keras_version"] = value("2.15.0", kind)
        f.attrs["model_config"] = value(json.dumps(LAMBDA), kind)
        f.create_dataset("model_weights/w", data=np.arange(8.0))
    data = path.read_bytes()
    assert data[options.get("userblock_size", 0) + 8] == superblock
    assert dict(root_attributes(data).values) == {"keras_version": "2.15.0", "model_config": json.dumps(LAMBDA)}
    assert rules(path) == {"keras-lambda-layer": Severity.HIGH}


def test_non_ascii_and_nul_terminated_values(tmp_path):
    path = tmp_path / "m.h5"
    with h5py.File(path, "w") as f:
        f.attrs["text"] = "caf\u00e9 \u65e5\u672c"
        f.attrs.create("utf8", "na\u00efve".encode(), dtype=h5py.string_dtype("utf-8", 12))
        f.attrs["padded"] = np.bytes_(b"abc\0\0\0")
        f.attrs["empty"] = ""
        f.attrs["one"] = np.array([b"only"])
        f.attrs["three"] = ["a", "b", "c"]
        f.attrs["number"] = 3
    assert_agrees(path)
    assert "three" not in dict(root_attributes(path.read_bytes()).values)


def test_many_attributes_use_continuation_chunks(tmp_path, monkeypatch):
    path = tmp_path / "m.h5"
    with h5py.File(path, "w") as f:
        f.attrs["model_config"] = json.dumps(LAMBDA).encode()
        for i in range(400):
            f.attrs[f"a{i}"] = value(f"value {i} " * (i % 7 + 1), [FIXED, VLEN_BYTES, VLEN_TEXT][i % 3])
    assert_agrees(path)
    assert len(root_attributes(path.read_bytes()).values) == 401
    monkeypatch.setattr(_hdf5, "MAX_CHUNKS", 1)
    assert "continuation" in root_attributes(path.read_bytes()).error


def test_keras_default_writes_a_large_config_to_the_global_heap(tmp_path):
    """Keras writes ``json.dumps(config).encode()`` with h5py's defaults: a > 64 KiB config stays one
    variable-length string in the global heap (a fixed-length one that large cannot be written at all)."""
    layers = [{"class_name": "Dense", "config": {"name": f"d{i}", "units": 4}} for i in range(3000)]
    big = {"class_name": "Sequential", "config": {"layers": layers + LAMBDA["config"]["layers"]}}
    path = tmp_path / "m.h5"
    with h5py.File(path, "w") as f:
        f.attrs["model_config"] = json.dumps(big).encode()
        with pytest.raises(Exception):
            f.attrs["fixed"] = np.bytes_(json.dumps(big).encode())
    data = path.read_bytes()
    assert len(json.dumps(big)) > 64 << 10 and b"FRHP" not in data and b"GCOL" in data
    assert_agrees(path)
    assert rules(path) == {"keras-lambda-layer": Severity.HIGH}


@pytest.mark.parametrize("count, size", [(20, 10), (1500, 2000), (40, 70_000)])
@pytest.mark.parametrize("rewrite", [False, True])
def test_dense_attribute_storage(tmp_path, count, size, rewrite):
    """libver='latest' keeps more than 8 attributes, or any over 64 KiB, in a fractal heap indexed by a v2
    B-tree: small ones as managed objects (many: in nested indirect blocks), large ones as huge objects."""
    path = tmp_path / "m.h5"
    with h5py.File(path, "w", libver="latest") as f:
        for i in range(count):
            f.attrs[f"a{i}"] = np.bytes_(b"x" * (size + i))
        f.attrs["model_config"] = np.bytes_(json.dumps(LAMBDA).encode() + b" " * size)
        if rewrite:  # deleted and rewritten attributes leave holes
            for i in range(0, count, 3):
                del f.attrs[f"a{i}"]
                f.attrs[f"a{i + 1}"] = "rewritten"
    data = path.read_bytes()
    assert b"FRHP" in data and b"BTHD" in data
    if count > 1000:
        assert data.count(b"FHIB") > 1
    assert_agrees(path)
    assert rules(path) == {"keras-lambda-layer": Severity.HIGH}


@pytest.mark.parametrize("libver", ["earliest", "latest"])
def test_four_byte_addresses_and_lengths(tmp_path, libver):
    fcpl = h5py.h5p.create(h5py.h5p.FILE_CREATE)
    fcpl.set_sizes(4, 4)
    fapl = h5py.h5p.create(h5py.h5p.FILE_ACCESS)
    latest = h5py.h5f.LIBVER_LATEST
    fapl.set_libver_bounds(h5py.h5f.LIBVER_EARLIEST if libver == "earliest" else latest, latest)
    path = tmp_path / "m.h5"
    with h5py.File(h5py.h5f.create(str(path).encode(), h5py.h5f.ACC_TRUNC, fcpl=fcpl, fapl=fapl)) as f:
        f.attrs["model_config"] = json.dumps(LAMBDA)
        for i in range(30):
            f.attrs[f"a{i}"] = np.bytes_(b"q" * 5000 * (i % 3) + b"q")
    assert path.read_bytes()[13 if libver == "earliest" else 9] == 4
    assert_agrees(path)


def test_superblock_version_1(tmp_path):
    """Version 1 (written only for a non-default chunk B-tree K) has 4 more bytes before its addresses. Made
    from a version 0 one behind a user block; its 4 extra bytes end in the unused scratch pad of the root
    entry, where the root object header starts: they keep the header's first bytes."""
    path = tmp_path / "m.h5"
    with h5py.File(path, "w", userblock_size=512) as f:
        f.attrs["model_config"] = np.bytes_(json.dumps(LAMBDA).encode())
    data = bytearray(path.read_bytes())
    assert struct.unpack_from("<Q", data, 512 + 64)[0] == 96  # the root object header follows the superblock
    entry = struct.pack("<QQII12x", 0, 96, 0, 0) + data[608:612]
    data[512:612] = data[512:536] + b"\x20\0\0\0" + data[536:568] + entry
    data[520] = 1
    assert root_attributes(bytes(data)).values == [("model_config", json.dumps(LAMBDA))]


def test_a_decoy_before_model_config_does_not_hide_it(tmp_path):
    """Benign Keras-looking JSON in a dataset and in another attribute, both before the real config: a byte
    search finds the decoy; reading the attribute finds the Lambda layer."""
    path = tmp_path / "m.h5"
    with h5py.File(path, "w") as f:
        f.attrs["description"] = np.bytes_(json.dumps(BENIGN).encode())
        f.create_dataset("notes", data=np.frombuffer(json.dumps(BENIGN).encode(), dtype="u1"))
        f.attrs["model_config"] = json.dumps(LAMBDA).encode()
    data = path.read_bytes()
    first = data.find(b'{"class_name"')
    assert first < data.find(json.dumps(LAMBDA).encode())
    assert json.JSONDecoder().raw_decode(data[first:].decode("utf-8", "replace"))[0] == BENIGN
    assert rules(path) == {"keras-lambda-layer": Severity.HIGH}


def test_training_config_is_walked(tmp_path):
    training = {"loss": {"module": "mypkg.losses", "class_name": "Sneaky", "config": {}},
                "optimizer_config": {"class_name": "Adam", "config": {"learning_rate": 0.001}}}
    path = tmp_path / "m.h5"
    with h5py.File(path, "w") as f:
        f.attrs["model_config"] = json.dumps(BENIGN).encode()
        f.attrs["training_config"] = json.dumps(training).encode()
    [finding] = [f for f in scan_file(path).findings if f.severity >= Severity.LOW]
    assert finding.rule_id == "keras-unsafe-module" and finding.evidence["path"] == "training_config.loss"


def test_plain_hdf5_files_raise_nothing(tmp_path):
    for i, libver in enumerate(["earliest", "latest"]):
        path = tmp_path / f"data{i}.h5"
        with h5py.File(path, "w", libver=libver) as f:
            f.create_dataset("x", data=np.arange(100))
            f.create_group("g").attrs["model_config"] = json.dumps(LAMBDA)  # not the root group's
            for j in range(30):
                f.attrs[f"a{j}"] = j if j % 2 else f"text {j}"
            f.attrs["model_config"] = "not json"
        assert rules(path) == {}


def test_unreadable_files_are_reported(tmp_path, monkeypatch):
    path = tmp_path / "m.h5"
    with h5py.File(path, "w") as f:
        f.attrs["model_config"] = json.dumps(LAMBDA).encode()
    data = path.read_bytes()
    heap = data.find(b"GCOL")
    (tmp_path / "cut.h5").write_bytes(data[:heap + 20])
    [finding] = scan_file(tmp_path / "cut.h5").findings
    assert (finding.rule_id, finding.severity) == ("keras-hdf5-unparsed", Severity.MEDIUM)
    assert "truncated" in finding.message or "global heap" in finding.message
    monkeypatch.setattr(_hdf5, "MAX_VALUE", 100)
    assert rules(path) == {"keras-hdf5-unparsed": Severity.MEDIUM}


def test_a_continuation_loop_ends(tmp_path):
    path = tmp_path / "m.h5"
    with h5py.File(path, "w") as f:
        for i in range(100):
            f.attrs[f"a{i}"] = np.bytes_(b"v" * 50)
    data = bytearray(path.read_bytes())
    root = struct.unpack_from("<Q", data, 64)[0]
    message = data.find(b"\x10\x00\x10\x00\x00\x00\x00\x00")  # v1 continuation: type, size, flags, reserved
    struct.pack_into("<Q", data, message + 8, root + 16)  # back to the first chunk
    assert "looping" in root_attributes(bytes(data)).error


SEEDS = {}


def seed(name: str) -> bytes:
    """Small real files to cut and mutate: compact (v1 header, global heap), dense managed, dense huge."""
    if name not in SEEDS:
        import io
        buf = io.BytesIO()
        libver = "earliest" if name == "compact" else "latest"
        with h5py.File(buf, "w", libver=libver) as f:
            f.attrs["model_config"] = json.dumps(LAMBDA).encode()
            f.attrs["fixed"] = np.bytes_(b"abc")
            for i in range({"compact": 3, "managed": 12, "huge": 2}[name]):
                f.attrs[f"a{i}"] = np.bytes_(b"x" * (70_000 if name == "huge" else 20))
        SEEDS[name] = buf.getvalue()
    return SEEDS[name]


@pytest.mark.parametrize("name", ["compact", "managed", "huge"])
def test_truncations_end_cleanly(name):
    data = seed(name)
    whole = set(root_attributes(data).values)
    start = time.perf_counter()
    for end in range(0, len(data), max(1, len(data) // 3000)):
        assert set(root_attributes(memoryview(data)[:end]).values) <= whole
    assert time.perf_counter() - start < 30


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(["compact", "managed", "huge"]), st.data())
def test_mutations_end_cleanly_and_fast(name, data):
    buf = bytearray(seed(name))
    limit = min(len(buf), 8192)  # the superblock, headers and B-tree nodes are near the start
    for _ in range(data.draw(st.integers(1, 8))):
        at = data.draw(st.integers(0, limit - 1))
        buf[at] = data.draw(st.sampled_from([0, 1, 0x7F, 0x80, 0xFF, buf[at] ^ 1, buf[at] ^ 0x80]))
    start = time.perf_counter()
    result = root_attributes(bytes(buf))
    assert isinstance(result.values, list) and (result.error is None or isinstance(result.offset, int))
    assert not scan_bytes(bytes(buf), "m.h5").errors
    assert time.perf_counter() - start < 5
