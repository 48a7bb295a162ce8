"""Format sniffing: real files made by the real libraries, text that must stay text, hostile bytes."""
from __future__ import annotations

import io
import os
import pickle
import random
import struct
import sys
import types
import zipfile
from collections import OrderedDict

import pytest

from mlguard.sniff import (
    _ZIP_EOCD,
    HEAD_SIZE,
    Embedded,
    Format,
    Sniffed,
    extension_mismatch,
    sniff_bytes,
    sniff_file,
    sniff_stream,
    _rfind_eocd,
)

sys.path.insert(0, os.path.dirname(__file__))
from fixtures_formats import make_samples  # noqa: E402


# Every sample make_samples() may produce; a missing one is skipped (its library is not installed).
NEEDS_ENGINE = {  # protocol 0/1 pickles have no magic: only the pickle kernel tells them from text
    "pickle_p0", "pickle_p1", "pickle_p0_strings", "pickle_p0_big", "pickle_p1_list", "pickle_p0_none",
    "pickle_p0_reduce", "pickle_p0_reduce_nostop",
}
SAMPLE_KEYS = sorted(NEEDS_ENGINE | {
    "pickle_p2", "pickle_p3", "pickle_p4", "pickle_p5",
    "gzip_pickle", "bz2_pickle", "xz_pickle", "lzma_alone_pickle", "zlib_pickle", "zlib_pickle_l1",
    "zlib_pickle_l9",
    "tar_gnu", "tar_pax", "tar_gz_nemo", "tar_v7",
    "zip_plain", "zip_prepended", "zip_named_txt", "zip_empty", "zip_torchlike_comment",
    "json_obj", "json_arr", "json_big", "yaml_marker", "yaml_plain", "yaml_directive", "yaml_env",
    "text_english", "text_csv", "text_python", "text_requirements", "text_ini", "text_shell", "text_toml",
    "text_dotted", "text_parens", "text_letters", "text_cat", "text_big", "text_utf8_cut",
    "binary_random", "binary_latin1", "empty", "elf",
    "npy", "npy_object", "npz", "npz_compressed",
    "joblib", "joblib_zlib", "joblib_gzip", "joblib_bz2", "joblib_lzma", "joblib_xz", "joblib_zfile",
    "torch_zip", "torch_legacy", "torch_bin", "torchscript", "torch_many", "npz_object",
    "safetensors", "safetensors_0x280", "safetensors_zip", "onnx", "onnx_tiny", "onnx_big", "gguf",
    "hdf5", "hdf5_userblock", "keras", "keras_h5", "sevenzip", "notebook", "notebook_large",
})
MISNAMED = {"zip_named_txt", "binary_latin1"}  # their names lie on purpose


def _engine_available() -> bool:
    """The pickle kernel (mlguard.engine) is what tells a protocol 0/1 pickle from text."""
    try:
        from mlguard.engine import PickleLimits, pickle_facts  # noqa: F401
    except Exception:
        return False
    return True


@pytest.fixture(scope="module")
def samples(tmp_path_factory):
    return make_samples(tmp_path_factory.mktemp("formats"))


def _sample(samples, key):
    if key not in samples:
        pytest.skip(f"sample {key} not generated (library missing)")
    if key in NEEDS_ENGINE and not _engine_available():
        pytest.skip("mlguard.engine (pickle kernel) not importable: protocol 0/1 detection untestable")
    return samples[key]


# --------------------------------------------------------------------------- real files

@pytest.mark.parametrize("key", SAMPLE_KEYS)
def test_real_file_sniffed_by_content(samples, key):
    s = _sample(samples, key)
    got = sniff_file(s.path)
    assert isinstance(got, Sniffed)
    assert got.format.value == s.format, (key, got)
    if s.check_flavour and s.format in ("zip", "pickle", "executable", "hdf5", "tar", "zlib"):
        assert got.flavour == s.flavour, (key, got)
    assert got.detail
    # same answer in memory, and from a stream left at any position
    data = s.path.read_bytes()
    assert sniff_bytes(data, s.path.name) == got
    f = io.BytesIO(data)
    f.seek(len(data))
    assert sniff_stream(f, len(data), s.path.name) == got


@pytest.mark.parametrize("key", SAMPLE_KEYS)
def test_real_file_name_agrees(samples, key):
    s = _sample(samples, key)
    got = sniff_file(s.path)
    mismatch = extension_mismatch(s.path.name, got)
    if key in MISNAMED:
        assert mismatch and mismatch.startswith("named ."), mismatch
    else:
        assert mismatch is None, (key, got, mismatch)


def test_details(samples):
    def sniffed(key):
        return sniff_file(_sample(samples, key).path)

    assert sniffed("pickle_p4").detail == "PROTO 4"
    if "torch_zip" in samples:
        assert "data.pkl" in sniffed("torch_zip").detail
    assert "100 bytes before the zip" in sniffed("zip_prepended").detail
    if "npy_object" in samples:
        assert "object" in sniffed("npy_object").detail
    if "hdf5_userblock" in samples:
        assert "1024" in sniffed("hdf5_userblock").detail


def test_torch_zip_with_prepended_bytes_keeps_flavour(samples):
    s = _sample(samples, "torch_zip")
    got = sniff_bytes(b"#!junk\n" * 20 + s.path.read_bytes())
    assert (got.format, got.flavour) == (Format.ZIP, "pytorch")
    assert "140 bytes before the zip" in got.detail


def test_zip_member_names_any_top_folder():
    for folder in ("archive", "x", "weird name", "a/b"):
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as z:
            z.writestr(f"{folder}/data.pkl", pickle.dumps({}, protocol=2))
            z.writestr(f"{folder}/byteorder", "little")
        assert sniff_bytes(buf.getvalue()).flavour == "pytorch", folder
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("m/data.pkl", b"\x80\x02}.")
        z.writestr("m/code/__torch__/m.py", "x")
    assert sniff_bytes(buf.getvalue()).flavour == "torchscript"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("data.pkl", b"\x80\x02}.")  # a lone data.pkl is not a torch archive
    assert sniff_bytes(buf.getvalue()).flavour == "plain"


def test_torch_legacy_tar_flavour():
    import tarfile
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        for name in ("sys_info", "pickle", "storages", "tensors"):
            data = pickle.dumps({}, protocol=2)
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    got = sniff_bytes(buf.getvalue(), "old.pt")
    assert (got.format, got.flavour) == (Format.TAR, "torch-legacy")
    assert extension_mismatch("old.pt", got) is None
    assert extension_mismatch("old.pt", Sniffed(Format.TAR)) == "named .pt but content is tar"


# --------------------------------------------------------------------------- protocol 0/1 pickles

TEXTS = [
    b"Hello world. This is a README.\n",
    b"N. Smith wrote this model. It is good.\n",
    b"I think therefore I am.\n",
    b"(c) 2024 ACME Corporation. All rights reserved.\n",
    b"(see the documentation)\n",
    b"cat file\nfoo\nbar\n",
    b"cat\ndog\nbird\nfish\n",
    b"0.5\n0.25\n0.125\n",
    b"1.0\n",
    b"2.5",
    b"MIT License\n\nCopyright (c) 2024 Someone\n",
    b"FROM python:3.11\nRUN pip install torch\n",
    b"Lorem ipsum dolor sit amet, consectetur adipiscing elit.\n",
    b"Very good model\nNice\nlist\nof\nwords\n",
    b"S'pose we try this.\n",
    b"The quick brown fox jumps over the lazy dog.\n" * 50,
    b"dear sir, please find the model attached.\n",
    b"import os\nimport sys\n\nprint(os.getcwd())\n",
    b"class Foo:\n    pass\n",
    b"def main():\n    return 0\n",
    b"col1,col2,col3\n1,2,3\n4,5,6\n",
    b"torch==2.3.0\nnumpy>=1.26\nrequests\n",
    b"[metadata]\nname = pkg\n",
    b"{\"a\": 1, \"b\": [1, 2]}\n",
    b"[1, 2, 3]\n",
    b"key: value\nlist:\n  - a\n  - b\n",
    b"---\nkey: value\n",
    b"# Title\n\nSome *markdown* text.\n",
    b"Usage: run.sh [options]\n",
    b"Kernel size 3x3, stride 1.\n",
    b"Xylophones are loud.\n",
    b"Parameters\n----------\nx : int\n",
    b"GGUF is the llama.cpp file format.\n",
    b"MZ is also a text line here\n",
    b"BZh9 is the start of bzip2 data\n",
    b"x^2 + y^2 = z^2\n",
    b"PK is a text line\n",
    b"ustar\n" * 100,
    b"}\n",
    b"]\n",
    b"))\n",
    b"NaN\n",
    b"Version 1.0.0 (2024-01-01)\n",
    b"I\n",
    "Übersicht — 日本語のテキスト。\n".encode(),
    b"Jupyter notebooks are JSON.\n",
    b"",
]


@pytest.mark.parametrize("text", TEXTS, ids=range(len(TEXTS)))
def test_ordinary_text_is_never_a_pickle(text, engine):
    got = sniff_bytes(text)
    assert got.format is not Format.PICKLE, (text, got)
    assert got.format in (Format.TEXT, Format.JSON, Format.YAML, Format.EMPTY), (text, got)


def _p0_payloads():
    return {
        "dict_of_strings": pickle.dumps({f"k{i}": f"some value {i}" for i in range(10)}, protocol=0),
        "ordered_dict": pickle.dumps(OrderedDict(a=1, b=[1, 2]), protocol=0),
        "list_p1": pickle.dumps([1, "two", 3.0, None, True], protocol=1),
        "set_p1": pickle.dumps({1, 2, 3}, protocol=1),
        "none": pickle.dumps(None, protocol=0),
        "int": pickle.dumps(12345, protocol=0),
        "string": pickle.dumps("just a string", protocol=0),
        "reduce": b"cos\nsystem\n(S'echo hi'\ntR.",
        "reduce_no_stop": b"cos\nsystem\n(S'echo hi'\ntR",
        "reduce_then_garbage": b"cos\nsystem\n(S'echo hi'\ntR\xff\xfe\xfd",
        "inst": b"(S'echo hi'\nios\nsystem\n.",
        "two_pickles": pickle.dumps(None, protocol=0) + pickle.dumps([1], protocol=0),
        "big": pickle.dumps({f"key{i}": f"value {i}" for i in range(20000)}, protocol=0),
        "big_p1": pickle.dumps(list(range(30000)), protocol=1),
        "proto4_without_proto": b"\x8c\x02os\x8c\x06system\x93\x8c\x02ls\x85R.",
        "proto_byte_1": b"\x80\x01N.",
        "trailing_text": pickle.dumps({"a": "b"}, protocol=0) + b"\nsome notes after it\n",
    }


@pytest.mark.parametrize("key", sorted(_p0_payloads()))
def test_pickle_without_magic_is_a_pickle(key, engine):
    data = _p0_payloads()[key]
    got = sniff_bytes(data, "x.txt")
    assert got.format is Format.PICKLE, (key, got)
    assert extension_mismatch("x.txt", got) == "named .txt but content is pickle"


@pytest.fixture
def engine():
    if not _engine_available():
        pytest.skip("mlguard.engine (pickle kernel) not importable: protocol 0/1 detection untestable")
    return "real"


def test_pickle_payload_after_a_long_first_string(engine):
    pad = "x" * (HEAD_SIZE + 5000)
    for first in (f"V{pad}\n".encode(), f"S'{pad}'\n".encode()):
        data = first + b"p0\n0cos\nsystem\n(S'echo hi'\ntR."
        got = sniff_bytes(data)
        assert got.format is Format.PICKLE, got
    binunicode = b"X" + struct.pack("<I", len(pad)) + pad.encode() + b"\x94."
    assert sniff_bytes(binunicode).format is Format.PICKLE
    # a long text line is not enough: it must start like a string operand
    assert sniff_bytes(b"Some " + pad.encode()).format is Format.TEXT
    assert sniff_bytes(b"The quick brown fox " * 5000).format is Format.TEXT


def test_pickle_probe_without_engine_degrades(monkeypatch):
    broken = types.ModuleType("mlguard.engine")  # no pickle_facts: import fails inside sniff
    monkeypatch.setitem(sys.modules, "mlguard.engine", broken)
    import mlguard
    monkeypatch.setattr(mlguard, "engine", broken, raising=False)
    assert sniff_bytes(b"Hello there.\n").format is Format.TEXT
    assert sniff_bytes(pickle.dumps(1, protocol=4)).format is Format.PICKLE


def test_legacy_torch_magic_flavour():
    from mlguard.sniff import _TORCH_LEGACY_MAGIC
    got = sniff_bytes(_TORCH_LEGACY_MAGIC + b".\x80\x02}q\x00.")
    assert (got.format, got.flavour) == (Format.PICKLE, "torch-legacy")
    assert sniff_bytes(pickle.dumps(0x1950A86A20F9469CFC6D, protocol=2)).flavour is None


# --------------------------------------------------------------------------- other formats, built by hand

def _pe_bytes():
    dos = bytearray(b"MZ" + b"\x00" * 0x3E)
    dos[0x3C:0x40] = struct.pack("<I", 0x80)
    return bytes(dos) + b"\x00" * (0x80 - len(dos)) + b"PE\x00\x00" + b"\x4c\x01" + b"\x00" * 200


def test_executables():
    assert sniff_bytes(_pe_bytes()) == Sniffed(Format.EXECUTABLE, "pe", "PE executable")
    for magic in (b"\xcf\xfa\xed\xfe", b"\xfe\xed\xfa\xce"):
        assert sniff_bytes(magic + b"\x07\x00\x00\x01" * 20).flavour == "macho"
    assert sniff_bytes(b"\xca\xfe\xba\xbe\x00\x00\x00\x02" + b"\x00" * 40).flavour == "macho"
    java = b"\xca\xfe\xba\xbe\x00\x00\x00\x41" + b"\x00" * 40  # a Java class file, not Mach-O
    assert sniff_bytes(java).format is Format.BINARY
    assert extension_mismatch("model.pt", sniff_bytes(_pe_bytes())) == "named .pt but content is executable (pe)"


def test_polyglots_note_trailing_zip(samples):
    zbytes = _sample(samples, "zip_plain").path.read_bytes()
    got = sniff_bytes(pickle.dumps({"a": 1}, protocol=4) + zbytes)
    assert got.format is Format.PICKLE and "zip" in got.detail
    if "safetensors" in samples:
        got = sniff_bytes(samples["safetensors"].path.read_bytes() + zbytes)
        assert got.format is Format.SAFETENSORS and "zip" in got.detail
    got = sniff_bytes(os.urandom(5000) + zbytes)
    assert got.format is Format.ZIP and "5000 bytes before the zip" in got.detail


def test_safetensors_header_rules():
    def st(n, body):
        return struct.pack("<Q", n) + body

    assert sniff_bytes(st(2, b"{}")).format is Format.SAFETENSORS
    assert sniff_bytes(st(4, b"  {}")).format is Format.SAFETENSORS
    assert sniff_bytes(st(1, b"{}")).format is not Format.SAFETENSORS       # too short
    assert sniff_bytes(st(10, b"{}")).format is not Format.SAFETENSORS      # longer than the file
    assert sniff_bytes(st(2, b"[]")).format is not Format.SAFETENSORS       # not an object
    huge = st(200 * 1000 * 1000, b'{"a":1}' + b" " * 100)
    assert sniff_bytes(huge).format is not Format.SAFETENSORS               # over the 100 MB cap


def test_sniff_file_and_names(samples, tmp_path):
    p = tmp_path / "weights.safetensors"
    p.write_bytes(pickle.dumps({"x": 1}, protocol=2))
    got = sniff_file(p)
    assert got.format is Format.PICKLE
    assert extension_mismatch(p.name, got) == "named .safetensors but content is pickle"
    assert extension_mismatch("DIR/MODEL.SAFETENSORS", got) == "named .safetensors but content is pickle"
    assert extension_mismatch("model", got) is None
    assert extension_mismatch("model.unknownext", got) is None
    assert extension_mismatch("", got) is None
    assert extension_mismatch(".safetensors", got) is None  # a dot-file has no extension
    with pytest.raises(OSError):
        sniff_file(tmp_path / "missing.bin")


def test_extension_table():
    pk = Sniffed(Format.PICKLE)
    zp = lambda fl: Sniffed(Format.ZIP, fl)  # noqa: E731
    for name in ("m.pt", "m.pth", "m.bin", "m.ckpt", "m.pkl", "m.pickle", "m.joblib", "m.dill"):
        assert extension_mismatch(name, pk) is None
        assert extension_mismatch(name, zp("pytorch")) is None
    for fmt in (Format.GZIP, Format.BZIP2, Format.XZ, Format.ZLIB, Format.LZMA):
        assert extension_mismatch("m.joblib", Sniffed(fmt)) is None
        assert extension_mismatch("m.pt", Sniffed(fmt)) is not None
    assert extension_mismatch("m.keras", zp("keras")) is None
    assert extension_mismatch("m.keras", Sniffed(Format.HDF5)) is None
    assert extension_mismatch("m.keras", zp("pytorch")) == "named .keras but content is zip (pytorch)"
    assert extension_mismatch("m.npz", zp("npz")) is None
    assert extension_mismatch("m.npz", zp("pytorch")) is not None
    assert extension_mismatch("m.h5", Sniffed(Format.HDF5, "keras-h5")) is None
    assert extension_mismatch("m.onnx", Sniffed(Format.ONNX)) is None
    assert extension_mismatch("m.onnx", Sniffed(Format.TEXT)) == "named .onnx but content is text"
    assert extension_mismatch("m.gguf", Sniffed(Format.GGUF)) is None
    assert extension_mismatch("m.npy", Sniffed(Format.NPY)) is None
    assert extension_mismatch("m.nemo", Sniffed(Format.TAR)) is None
    assert extension_mismatch("m.nemo", Sniffed(Format.GZIP)) is None
    assert extension_mismatch("m.tar.gz", Sniffed(Format.GZIP)) is None
    assert extension_mismatch("m.tar.gz", Sniffed(Format.TAR)) is not None
    assert extension_mismatch("m.tgz", Sniffed(Format.GZIP)) is None
    assert extension_mismatch("m.7z", Sniffed(Format.SEVENZIP)) is None
    assert extension_mismatch("m.zip", zp("plain")) is None
    for name in ("a.json", "a.ipynb", "a.yaml", "a.yml", "a.txt", "a.md", "a.py", "a.cfg", "a.toml", "a.ini"):
        for fmt in (Format.TEXT, Format.JSON, Format.YAML, Format.NOTEBOOK, Format.EMPTY):
            assert extension_mismatch(name, Sniffed(fmt)) is None, (name, fmt)
        assert extension_mismatch(name, pk) == f"named {name[1:]} but content is pickle"
    for fmt in Format:
        assert extension_mismatch("x.safetensors", Sniffed(Format.EMPTY)) is None
        assert extension_mismatch("x.strange", Sniffed(fmt)) is None


def test_format_enum_and_is_text():
    assert Format("pickle") is Format.PICKLE
    assert Format.SEVENZIP.value == "7z" and str(Format.SEVENZIP) == "7z"
    assert Format.PICKLE == "pickle"
    assert {f.value for f in Format} >= {"pickle", "zip", "tar", "gzip", "bzip2", "xz", "zlib", "lzma", "7z",
                                         "npy", "safetensors", "onnx", "gguf", "hdf5", "executable",
                                         "notebook", "json", "yaml", "text", "binary", "empty"}
    assert [f for f in Format if Sniffed(f).is_text] == [Format.NOTEBOOK, Format.JSON, Format.YAML,
                                                          Format.TEXT]
    with pytest.raises(Exception):
        Sniffed(Format.TEXT).format = Format.ZIP  # frozen


def test_empty_and_short():
    assert sniff_bytes(b"") == Sniffed(Format.EMPTY, None, "empty file")
    assert sniff_stream(io.BytesIO(b""), 0).format is Format.EMPTY
    assert sniff_bytes(b"\x00").format is Format.BINARY
    assert sniff_bytes(b"a").format is Format.TEXT
    assert sniff_bytes(b"\x80").format is Format.BINARY


def test_json_yaml_notebook_names():
    assert sniff_bytes(b"a: 1\nb: [1, 2]\n", "conf.yaml").format is Format.YAML
    assert sniff_bytes(b"a: 1\nb: [1, 2]\n", "conf.txt").format is Format.TEXT
    assert sniff_bytes(b"a: [unclosed\n", "bad.yaml").format is Format.TEXT
    assert sniff_bytes(b'{"cells": [], "nbformat": 4, "metadata": {}}').format is Format.NOTEBOOK
    assert sniff_bytes(b'{"cells": [], "metadata": {}}').format is Format.JSON
    assert sniff_bytes(b'{"a": ').format is Format.TEXT  # broken JSON is text
    assert sniff_bytes(b"[" * 100000).format is Format.TEXT  # deep nesting: no RecursionError


# --------------------------------------------------------------------------- hostile input

MAGICS = {
    b"PK\x03\x04": Format.ZIP, b"PK\x05\x06": Format.ZIP, b"\x1f\x8b\x08": Format.GZIP,
    b"BZh91AY&SY": Format.BZIP2, b"\xfd7zXZ\x00": Format.XZ, b"7z\xbc\xaf\x27\x1c": Format.SEVENZIP,
    b"\x93NUMPY": Format.NPY, b"GGUF\x03\x00\x00\x00": Format.GGUF, b"\x89HDF\r\n\x1a\n": Format.HDF5,
    b"\x7fELF": Format.EXECUTABLE, b"\x80\x04": Format.PICKLE, b"\x80\x02": Format.PICKLE,
    b"MZ": None, b"x\x9c": None, b"\x5d\x00\x00\x80\x00": None, b"\x08\x07\x12": None,
    b"\xca\xfe\xba\xbe": None, b"\xcf\xfa\xed\xfe": Format.EXECUTABLE,
}


@pytest.mark.parametrize("magic", list(MAGICS), ids=lambda m: m[:4].hex())
def test_right_magic_random_rest_never_raises(magic):
    rnd = random.Random(magic)
    for n in (0, 1, 5, 22, 100, 600, 5000):
        for _ in range(6):
            data = magic + rnd.randbytes(n)
            got = sniff_bytes(data)
            assert isinstance(got, Sniffed)
            if MAGICS[magic] is not None:
                assert got.format is MAGICS[magic], (data[:16], got)


def test_truncations_of_real_files_never_raise(samples):
    for key, s in samples.items():
        data = s.path.read_bytes()
        for n in (1, 2, 3, 4, 5, 7, 8, 9, 12, 13, 14, 21, 22, 30, 46, 64, 100, 257, 300, 511, 513, 1500,
                  len(data) - 22, len(data) - 1):
            if 0 < n < len(data):
                assert isinstance(sniff_bytes(data[:n]), Sniffed)
                assert isinstance(sniff_bytes(data[-n:]), Sniffed)


def test_mutated_real_files_never_raise(samples):
    rnd = random.Random(7)
    keys = sorted(samples)
    for i in range(1500):
        data = bytearray(samples[keys[i % len(keys)]].path.read_bytes()[:70000])
        if not data:
            continue
        for _ in range(rnd.randint(1, 8)):
            data[rnd.randrange(len(data))] = rnd.randrange(256)
        assert isinstance(sniff_bytes(bytes(data)), Sniffed)


def test_random_bytes_never_raise():
    hypothesis = pytest.importorskip("hypothesis")
    from hypothesis import strategies as st

    prefixes = st.sampled_from([b"", b"PK\x03\x04", b"\x80\x02", b"(", b"c", b"x\x9c", b"]\x00\x00\x80\x00",
                                b"\x08\x07", b"GGUF", b"\x93NUMPY", b"ZF0x10" + b" " * 15, b"{", b"MZ"])

    @hypothesis.settings(max_examples=150, deadline=None, derandomize=True)
    @hypothesis.given(prefixes, st.binary(max_size=2000), st.text(max_size=20))
    def check(prefix, data, name):
        got = sniff_bytes(prefix + data, name)
        assert isinstance(got, Sniffed) and isinstance(got.format, Format)
        mismatch = extension_mismatch(name, got)
        assert mismatch is None or isinstance(mismatch, str)

    check()


def test_huge_declared_lengths():
    # safetensors: header length near 2**64
    assert sniff_bytes(b"\xff" * 7 + b"\x7f{}").format is Format.BINARY
    # npy: header length larger than the file
    got = sniff_bytes(b"\x93NUMPY\x01\x00\xff\xff{'descr': '<f4'")
    assert got.format is Format.NPY and "longer than the file" in got.detail
    got = sniff_bytes(b"\x93NUMPY\x02\x00\xff\xff\xff\xff{")
    assert got.format is Format.NPY
    # zip: end record declaring a giant directory and 65535 entries
    eocd = b"PK\x05\x06" + struct.pack("<HHHHIIH", 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFE, 0xFFFFFFF0, 0)
    got = sniff_bytes(b"PK\x03\x04" + b"\x00" * 40 + eocd)
    assert got.format is Format.ZIP
    # zip64 locator pointing at 2**63
    loc = b"PK\x06\x07" + struct.pack("<IQI", 0, 2 ** 63, 1)
    eocd64 = b"PK\x05\x06" + struct.pack("<HHHHIIH", 0xFFFF, 0xFFFF, 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0)
    assert sniff_bytes(b"PK\x03\x04" + b"\x00" * 40 + loc + eocd64).format is Format.ZIP
    # zip end record whose comment runs past the end
    eocdc = b"PK\x05\x06" + struct.pack("<HHHHIIH", 0, 0, 0, 0, 0, 0, 0xFFFF)
    assert sniff_bytes(eocdc).format is Format.ZIP
    # onnx-looking protobuf with a length far past the file
    assert sniff_bytes(b"\x08\x07\x3a\xff\xff\xff\xff\xff\xff\xff\xff\x7f" + b"\x00" * 50).format is Format.BINARY
    # onnx-looking protobuf with an endless varint
    assert sniff_bytes(b"\x08" + b"\xff" * 5000).format is Format.BINARY
    # tar with a garbage checksum field
    block = bytearray(512)
    block[:5] = b"a.pkl"
    block[148:156] = b"9999999\x00"
    assert sniff_bytes(bytes(block) * 2).format is Format.BINARY
    # gguf with absurd counts
    assert sniff_bytes(b"GGUF\x03\x00\x00\x00" + b"\xff" * 16).format is Format.GGUF


def test_zip_directory_bounded():
    # a central directory with more entries than the sniffer reads
    from mlguard import sniff as mod
    n = mod.MAX_ZIP_ENTRIES + 5000
    entry = b"PK\x01\x02" + b"\x00" * 24 + struct.pack("<HHH", 5, 0, 0) + b"\x00" * 12
    cd = b"".join(entry + b"%05d" % (i % 100000) for i in range(n))
    eocd = b"PK\x05\x06" + struct.pack("<HHHHIIH", 0, 0, 0xFFFF, 0xFFFF, len(cd), 4, 0)
    got = sniff_bytes(b"PK\x03\x04" + cd + eocd)
    assert got.format is Format.ZIP and f"stopped after {mod.MAX_ZIP_ENTRIES} entries" in got.detail


class _HugeStream(io.RawIOBase):
    """A pretend 10 GB file: ``head`` then zeros (or ``fill``), counting every byte read."""

    def __init__(self, head: bytes, size: int = 10 * 2 ** 30, fill: bytes = b"\x00", tail: bytes = b""):
        self.head, self.size, self.fill, self.tail = head, size, fill, tail
        self.pos = 0
        self.bytes_read = 0

    def readable(self):
        return True

    def seekable(self):
        return True

    def seek(self, off, whence=0):
        self.pos = off if whence == 0 else (self.pos + off if whence == 1 else self.size + off)
        return self.pos

    def tell(self):
        return self.pos

    def _byte(self, i):
        if i < len(self.head):
            return self.head[i]
        if i >= self.size - len(self.tail):
            return self.tail[i - (self.size - len(self.tail))]
        return self.fill[i % len(self.fill)]

    def read(self, n=-1):
        if n is None or n < 0:
            raise AssertionError("unbounded read")
        n = max(0, min(n, self.size - self.pos))
        out = bytes(self._byte(i) for i in range(self.pos, self.pos + n)) if n < 10 ** 6 else None
        assert out is not None, "read of a megabyte or more"
        self.pos += n
        self.bytes_read += n
        return out


@pytest.mark.parametrize("head,fill,expected", [
    (b"", b"\x00", Format.BINARY),
    (b"", b"All work and no play. ", Format.TEXT),
    (b"\x80\x04\x95", b"\x00", Format.PICKLE),
    (b"{\"vocab\": {", b"\"a\": 1, ", Format.JSON),
    (b"PK\x03\x04", b"\x00", Format.ZIP),
    (b"(dp0\nVa\np1\n", b"I1\n", None),
])
def test_reads_are_bounded_on_huge_files(head, fill, expected):
    f = _HugeStream(head, fill=fill)
    got = sniff_stream(f, f.size, "big")
    if expected is not None:
        assert got.format is expected, got
    assert f.bytes_read <= HEAD_SIZE + 0xFFFF + 22 + 2048, f.bytes_read


def test_short_stream_and_wrong_size():
    data = pickle.dumps([1, 2], protocol=3)
    assert sniff_stream(io.BytesIO(data), len(data) + 1000).format is Format.PICKLE
    assert sniff_stream(io.BytesIO(data), 0).format is Format.PICKLE
    zbuf = io.BytesIO()
    with zipfile.ZipFile(zbuf, "w") as z:
        z.writestr("a.npy", b"\x93NUMPY")
    zdata = zbuf.getvalue()
    assert sniff_stream(io.BytesIO(zdata), len(zdata) * 3).flavour == "npz"


# --------------------------------------------------------------------------- zip listing, embedded containers

class _PlainStream(io.RawIOBase):
    """A seekable stream with no file descriptor and no buffer: the sniffer must read it."""

    def __init__(self, data: bytes):
        self._f = io.BytesIO(data)

    def readable(self):
        return True

    def seekable(self):
        return True

    def seek(self, off, whence=0):
        return self._f.seek(off, whence)

    def tell(self):
        return self._f.tell()

    def read(self, n=-1):
        return self._f.read(n)


ZIP_KEYS = [k for k in SAMPLE_KEYS if k.startswith(("zip_", "npz", "torch_zip", "torch_bin", "torch_many",
                                                    "torchscript")) or k == "keras"]


@pytest.mark.parametrize("key", ZIP_KEYS)
def test_zip_kernel_listing_agrees_with_the_reader(samples, key):
    """The zip kernel (in-place view) and the sniffer's own directory reader decide the same."""
    s = _sample(samples, key)
    data = s.path.read_bytes()
    via_kernel = sniff_bytes(data, s.path.name)
    via_reader = sniff_stream(_PlainStream(data), len(data), s.path.name)
    assert via_kernel == via_reader
    assert via_kernel.facts is not None and via_reader.facts is None


def test_zip_facts_are_kept_for_the_scanner(samples):
    s = _sample(samples, "torch_many")
    got = sniff_file(s.path)
    assert got.flavour == "pytorch" and "206 members" in got.detail
    (skim,) = got.facts["skimmed"]
    assert skim == {"dir": "many/data/", "members": 200, "compressed_size": 200 * 8 * 4}
    assert all(not m["name"].startswith("many/data/") for m in got.facts["members"])
    assert repr(got).count("facts") == 0


def test_big_checkpoint_directory_is_sniffed_without_listing_every_tensor():
    entries, local, offset = [], [], 0
    names = ["ck/data.pkl", "ck/version"] + [f"ck/data/{i}" for i in range(6000)]
    for name in names:
        raw = name.encode()
        local.append(b"PK\x03\x04" + b"\0" * 22 + struct.pack("<HH", len(raw), 0) + raw)
        entry = bytearray(b"PK\x01\x02" + b"\0" * 42)
        struct.pack_into("<H", entry, 28, len(raw))
        struct.pack_into("<I", entry, 42, offset)
        entries.append(bytes(entry) + raw)
        offset += len(local[-1])
    cd = b"".join(entries)
    data = b"".join(local) + cd + b"PK\x05\x06" + struct.pack("<HHHHIIH", 0, 0, len(names), len(names), len(cd),
                                                               offset, 0)
    got = sniff_bytes(data, "ck.pt")
    assert (got.format, got.flavour) == (Format.ZIP, "pytorch")
    assert got.detail == "zip (pytorch), 6002 members, with ck/data.pkl"
    assert [m["name"] for m in got.facts["members"]] == ["ck/data.pkl", "ck/version"]
    assert sniff_stream(_PlainStream(data), len(data), "ck.pt") == got


def test_zip_sniff_without_the_engine(monkeypatch, samples):
    s = _sample(samples, "torch_zip")
    expected = sniff_file(s.path)
    broken = types.ModuleType("mlguard.engine")  # no zip_facts: the sniffer reads the directory itself
    monkeypatch.setitem(sys.modules, "mlguard.engine", broken)
    import mlguard
    monkeypatch.setattr(mlguard, "engine", broken, raising=False)
    got = sniff_file(s.path)
    assert got == expected and got.facts is None


def test_embedded_zip_in_other_formats(samples):
    s = _sample(samples, "safetensors_zip")
    got = sniff_file(s.path)
    assert got.format is Format.SAFETENSORS and "zip end record in the tail" in got.detail
    (emb,) = got.embedded
    assert isinstance(emb, Embedded) and emb.format is Format.ZIP
    assert s.path.read_bytes()[emb.offset:emb.offset + 4] == b"PK\x05\x06"
    zbytes = _sample(samples, "zip_plain").path.read_bytes()
    for host in (pickle.dumps({"a": 1}, protocol=4), b"\x93NUMPY\x01\x00" + b"v\x00" + b"{}" + b" " * 116,
                 b"GGUF\x03\x00\x00\x00" + bytes(range(256)) * 300):
        got = sniff_bytes(host + zbytes)
        assert [e.format for e in got.embedded] == [Format.ZIP], got
    # (unknown binary with a zip at its end is sniffed as a zip: prepended bytes)
    assert sniff_bytes(bytes(range(256)) * 300 + zbytes).format is Format.ZIP
    # containers themselves, and files whose tail only looks like an end record, embed nothing
    assert sniff_bytes(zbytes).embedded == ()
    assert sniff_bytes(b"x" * 100 + b"PK\x05\x06" + b"\0" * 18).embedded == ()
    assert sniff_file(_sample(samples, "safetensors").path).embedded == ()


def test_joblib_zfile_offset(samples):
    s = _sample(samples, "joblib_zfile")
    got = sniff_file(s.path)
    assert got.offset in (21, 22)
    assert s.path.read_bytes()[got.offset] == 0x78  # the zlib stream's first byte
    assert sniff_file(_sample(samples, "zlib_pickle").path).offset == 0


def test_deeply_nested_yaml_does_not_crash_the_process():
    """PyYAML's C composer recurses without a limit: 60,000 nested lists overflow the C stack when composed.
    Sniffing only runs the event parser. In a child process, so a regression fails instead of killing pytest."""
    import subprocess
    import sys
    code = ("from mlguard.sniff import sniff_bytes; "
            "print(sniff_bytes(b'- ' * 60000 + b'x\\n', 'deep.yml').format.value)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-500:]
    assert out.stdout.strip() in ("yaml", "text")


def test_the_end_record_search_finds_what_bytes_rfind_finds():
    """The end-record search (memrchr of the signature's rare third byte, then a plain search past 32 false
    candidates) answers exactly as ``bytes.rfind``: short and long runs of false candidates, every end."""
    rng = random.Random(7)
    pieces = [b"P", b"K", b"\x05", b"\x06", b"x", _ZIP_EOCD, b"\x05\x05"]
    for _ in range(20_000):
        data = b"".join(rng.choice(pieces) for _ in range(rng.randrange(40)))
        end = rng.randrange(len(data) + 3)
        assert _rfind_eocd(data, end) == data.rfind(_ZIP_EOCD, 0, end), (data, end)
    data = b"\x05" * 1000 + _ZIP_EOCD + b"\x05" * 100
    for end in range(len(data) + 1):
        assert _rfind_eocd(data, end) == data.rfind(_ZIP_EOCD, 0, end)
