"""Containers the pickle hides in (THREATS.md section 1), made by the real libraries, plus
hand-crafted zip anomalies. Malicious payloads are built with ``conftest.Exploit`` and are NEVER
loaded.
"""
from __future__ import annotations

import io
import os
import pickle
import pickletools
import struct
import sys
import tarfile
import zipfile
import zlib

import pytest

from mlguard import Policy, Severity, scan_bytes, scan_file
from mlguard.scan import _context
from mlguard.scanners import Artifact
from mlguard.scanners.archive import SCANNER as ARCHIVE
from mlguard.sniff import Format, sniff_file
from tests.conftest import Exploit, malicious_pickle

pytestmark = pytest.mark.filterwarnings("ignore:Duplicate name:UserWarning")


def found(result, rule_id=None, at_least=Severity.INFO):
    return [f for f in result.findings if (rule_id is None or f.rule_id == rule_id) and f.severity >= at_least]


def rules(result, at_least=Severity.INFO):
    return sorted({f.rule_id for f in result.findings if f.severity >= at_least})


def kinds(result):
    return sorted({f.evidence["kind"] for f in found(result, "archive-inconsistent")})


def one_critical(result, member):
    """The single os.system finding, in ``member``; returns it."""
    crit = [f for f in found(result, "pickle-dangerous-global")
            if (f.evidence["module"], f.evidence["name"]) == ("os", "system")]
    assert len(crit) == 1, [(f.rule_id, f.location.member) for f in result.findings]
    f = crit[0]
    assert f.severity is Severity.CRITICAL and f.location.member == member
    assert (f.evidence["module"], f.evidence["name"]) == ("os", "system")
    return f


def make_zip(members, compression=zipfile.ZIP_STORED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as z:
        for name, data in members:
            z.writestr(name, data)
    return buf.getvalue()


def global_offset(pickled: bytes) -> int:
    """Offset of the opcode importing os.system (GLOBAL, or STACK_GLOBAL) in an Exploit pickle."""
    stream = io.BytesIO(pickled)
    while stream.tell() < len(pickled):  # legacy torch files hold several pickles
        strings: list = []
        for op, arg, pos in pickletools.genops(stream):
            if op.name == "GLOBAL" and arg in ("posix system", "os system"):
                return pos
            if op.name == "STACK_GLOBAL" and strings[-2:] in (["posix", "system"], ["os", "system"]):
                return pos
            if isinstance(arg, str) and "UNICODE" in op.name:
                strings.append(arg)
        if pickled[stream.tell():stream.tell() + 1] not in (b"\x80", b"c", b"("):
            break
    raise AssertionError("no os.system import")


# --------------------------------------------------------------------------- PyTorch

torch = pytest.importorskip("torch")
np = pytest.importorskip("numpy")


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    d = tmp_path_factory.mktemp("torch")
    torch.manual_seed(0)
    state = {f"layer{i}.weight": torch.randn(1000) for i in range(300)}
    torch.save(state, d / "clean.pt")
    torch.save({**state, "hook": Exploit()}, d / "evil.pt")
    torch.save({"w": torch.randn(4), "hook": Exploit()}, d / "legacy_evil.pt", _use_new_zipfile_serialization=False)
    torch.save({"w": torch.randn(4)}, d / "legacy.pt", _use_new_zipfile_serialization=False)
    return d


def test_clean_checkpoint_with_many_tensors_raises_nothing(checkpoints):
    path = checkpoints / "clean.pt"
    assert sniff_file(path).flavour == "pytorch"
    assert found(scan_file(path), at_least=Severity.LOW) == []
    # tensor storages (300 x 4000 bytes) are never read: a budget smaller than them is not hit
    pkl = len(zipfile.ZipFile(path).read("clean/data.pkl"))
    policy = Policy(scanner_options={"archive": {"max_decompressed": pkl + 1024}})
    assert scan_file(path, policy).findings == ()
    # without skimming each storage's head is checked (still nothing read)
    policy = Policy(scanner_options={"archive": {"max_decompressed": pkl + 1024, "skim_tensors": False}})
    assert scan_file(path, policy).findings == ()


def test_payload_in_checkpoint_with_many_tensors(checkpoints):
    path = checkpoints / "evil.pt"
    f = one_critical(scan_file(path), "evil/data.pkl")
    data = zipfile.ZipFile(path).read("evil/data.pkl")
    assert f.location.offset == global_offset(data)
    assert f.location.describe() == f"evil/data.pkl@0x{f.location.offset:x}"


def test_legacy_checkpoints(checkpoints):
    assert sniff_file(checkpoints / "legacy.pt").flavour == "torch-legacy"
    assert found(scan_file(checkpoints / "legacy.pt"), at_least=Severity.LOW) == []
    result = scan_file(checkpoints / "legacy_evil.pt")
    f = one_critical(result, None)
    assert f.location.offset == global_offset((checkpoints / "legacy_evil.pt").read_bytes())


def test_legacy_tar_checkpoint():
    buf = io.BytesIO()
    parts = {"sys_info": pickle.dumps({"little_endian": True}, protocol=2), "pickle": malicious_pickle(2),
             "storages": pickle.dumps(0, protocol=2), "tensors": pickle.dumps(0, protocol=2)}
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        for name, data in parts.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    result = scan_bytes(buf.getvalue(), name="old.pt")
    assert rules(result) == ["pickle-dangerous-global"]
    f = one_critical(result, "pickle")
    assert f.location.offset == global_offset(parts["pickle"])


class _Scripted(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(3, 2)

    def forward(self, x):
        return torch.relu(self.lin(x))


def _rewrite(src: bytes, replace: dict) -> bytes:
    """Copy a zip member by member (same compression), replacing some members' content."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(src)) as zin, zipfile.ZipFile(out, "w") as zout:
        for info in zin.infolist():
            data = replace.get(info.filename.split("/", 1)[1], zin.read(info))
            zout.writestr(info, data, compress_type=info.compress_type)
    return out.getvalue()


def test_torchscript_archives(tmp_path):
    path = tmp_path / "scripted.pt"
    torch.jit.save(torch.jit.script(_Scripted()), str(path))
    assert sniff_file(path).flavour == "torchscript"
    clean = scan_file(path)
    assert [f for f in clean.findings if f.scanner == "archive"] == []
    # (the pickles are scanned; what the pickle policy makes of TorchScript's globals is its business)
    assert all(f.location.member.endswith((".pkl", ".debug_pkl")) for f in clean.findings)
    src = path.read_bytes()
    evil = malicious_pickle(2)
    infos = {i.filename.split("/", 1)[1]: i for i in zipfile.ZipFile(path).infolist()}
    debug = next(n for n in infos if n.endswith(".debug_pkl"))
    assert (infos["constants.pkl"].compress_type, infos[debug].compress_type) == (0, 8)
    for member in ("constants.pkl", debug):  # stored, then deflated
        result = scan_bytes(_rewrite(src, {member: evil}), name="scripted.pt")
        f = one_critical(result, f"scripted/{member}")
        assert f.location.offset == global_offset(evil)
        assert [f for f in result.findings if f.scanner == "archive"] == []


# --------------------------------------------------------------------------- NumPy

def test_npy_object_array(tmp_path):
    path = tmp_path / "objects.npy"
    np.save(path, np.array([Exploit(), 1], dtype=object), allow_pickle=True)
    result = scan_file(path)
    assert rules(result) == ["npy-object-array", "pickle-dangerous-global"]
    (obj,) = found(result, "npy-object-array")
    assert obj.severity is Severity.LOW and obj.location.member is None and obj.location.offset == 128
    f = one_critical(result, "objects.npy@pickle")
    assert f.location.offset == global_offset(path.read_bytes()[128:])


def test_npz_with_one_malicious_member(tmp_path):
    a = np.arange(6.0).reshape(2, 3)
    for save in (np.savez, np.savez_compressed):
        path = tmp_path / f"{save.__name__}.npz"
        save(path, weights=a, evil=np.array([Exploit()], dtype=object))
        result = scan_file(path)
        assert rules(result) == ["npy-object-array", "pickle-dangerous-global"]
        assert [f.location.member for f in found(result, "npy-object-array")] == ["evil.npy"]
        one_critical(result, "evil.npy@pickle")


def test_clean_npy_and_npz(tmp_path):
    np.save(tmp_path / "a.npy", np.arange(12, dtype=np.float32).reshape(3, 4))
    np.savez(tmp_path / "a.npz", x=np.ones(5), y=np.zeros((2, 2), dtype=np.int8))
    np.savez_compressed(tmp_path / "c.npz", s=np.array([(1, 2.0)], dtype=[("a", "<i4"), ("b", "<f8")]),
                        u=np.array(["text"]), t=np.array(np.datetime64("2024-01-01", "ns")))
    for name in ("a.npy", "a.npz", "c.npz"):
        assert found(scan_file(tmp_path / name), at_least=Severity.LOW) == [], name


def test_malformed_npy(tmp_path):
    np.save(tmp_path / "a.npy", np.arange(10.0))
    data = (tmp_path / "a.npy").read_bytes()
    (f,) = scan_bytes(data[:-8], name="short.npy").findings
    assert (f.rule_id, f.severity, f.evidence["reason"]) == ("npy-malformed", Severity.MEDIUM, "data-short")
    result = scan_bytes(data + malicious_pickle(), name="tail.npy")
    (f,) = found(result, "npy-malformed")
    assert f.evidence["reason"] == "trailing-bytes" and f.location.offset == len(data)
    one_critical(result, "tail.npy@trailing")
    # the header is parsed, never evaluated
    header = b"{'descr': __import__('os').system('echo pwned'), 'fortran_order': False, 'shape': (1,), }"
    hostile = b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header) + 1) + header + b"\n" + b"\0" * 8
    (f,) = scan_bytes(hostile, name="h.npy").findings
    assert f.rule_id == "npy-malformed" and "unexpected" in f.message
    extra_key = data.replace(b"'shape'", b"'shapE'")
    assert [f.rule_id for f in scan_bytes(extra_key, name="k.npy").findings] == ["npy-malformed"]
    # headers that end early (found by fuzzing: an empty header, an open tuple, a key without a value)
    for header in (b"", b"{'shape': (", b"{'descr'", b"{'descr': "):
        cut = b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header
        assert [(f.rule_id, f.severity) for f in scan_bytes(cut, name="c.npy").findings] == \
            [("npy-malformed", Severity.MEDIUM)], header


# --------------------------------------------------------------------------- joblib

@pytest.mark.parametrize("compress", [0, ("zlib", 3), ("gzip", 3), ("bz2", 3), ("lzma", 3), ("xz", 3)])
def test_joblib_every_compression(tmp_path, compress):
    joblib = pytest.importorskip("joblib")
    clean, evil = tmp_path / "clean.joblib", tmp_path / "evil.joblib"
    joblib.dump({"coef": np.arange(50.0), "name": "clf"}, clean, compress=compress)
    joblib.dump({"coef": np.arange(50.0), "hook": Exploit()}, evil, compress=compress)
    assert found(scan_file(clean), at_least=Severity.LOW) == []
    f = one_critical(scan_file(evil), "evil.joblib" if compress else None)
    assert f.location.offset > 0


def test_joblib_old_zfile_is_read_from_its_offset(tmp_path):
    pytest.importorskip("joblib")
    from joblib.numpy_pickle_compat import write_zfile
    path = tmp_path / "old.pkl"
    evil = malicious_pickle(2)
    with open(path, "wb") as fh:
        write_zfile(fh, evil)
    assert sniff_file(path).offset in (21, 22)
    f = one_critical(scan_file(path), "old.pkl")
    assert f.location.offset == global_offset(evil)


# --------------------------------------------------------------------------- hand-crafted zips

EVIL0 = b"cos\nsystem\n(S'echo pwned'\ntR."  # protocol 0: no magic a tensor check would notice


def test_local_name_mismatch_carrying_the_payload():
    base = make_zip([("model/data.pkl", pickle.dumps({"w": 1}, protocol=2)), ("model/version", "3\n"),
                     ("model/data/0", EVIL0)])
    pos = base.index(b"model/data/0")  # the local header's copy of the name comes first
    patched = bytearray(base)
    patched[pos:pos + 12] = b"model/x.pkl_"
    result = scan_bytes(bytes(patched), name="model.pt")
    (inc,) = found(result, "archive-inconsistent")
    assert (inc.severity, inc.evidence["kind"], inc.location.member) == (Severity.HIGH, "name-mismatch", "model/data/0")
    assert inc.evidence["local"] == "model/x.pkl_"
    f = one_critical(result, "model/data/0")
    assert f.location.offset == 0
    # without the mismatch, a protocol-0 "tensor" is not read: torch never unpickles storages
    assert found(scan_bytes(base, name="model.pt"), at_least=Severity.LOW) == []


def test_duplicate_names_every_copy_is_scanned():
    data = make_zip([("archive/data.pkl", pickle.dumps([1], protocol=2)), ("archive/data.pkl", EVIL0),
                     ("archive/version", "3\n")])
    result = scan_bytes(data, name="dup.pt")
    assert kinds(result) == ["duplicate-name"]
    assert {f.location.member for f in found(result, "archive-inconsistent")} == {"archive/data.pkl",
                                                                                  "archive/data.pkl[2]"}
    one_critical(result, "archive/data.pkl[2]")
    case = scan_bytes(make_zip([("a/data.pkl", b"N."), ("a/DATA.pkl", b"N.")]), name="case.zip")
    assert {f.evidence["case"] for f in found(case, "archive-inconsistent")} == {True}


def test_bad_crc_is_reported_and_still_scanned():
    data = bytearray(make_zip([("x/data.pkl", malicious_pickle(2))]))
    data[data.index(b"echo")] = ord("E")
    result = scan_bytes(bytes(data), name="crc.pt")
    (inc,) = found(result, "archive-inconsistent")
    assert inc.evidence["kind"] == "crc-mismatch" and inc.evidence["actual"] != inc.evidence["declared"]
    one_critical(result, "x/data.pkl")


def test_torch_records_are_checked_by_content(checkpoints):
    """PyTorch's own records (version, byteorder, ...) in the form torch writes are not scanned
    further, but their CRC still is, and any other content in them is scanned like every member."""
    src = (checkpoints / "clean.pt").read_bytes()
    key = "AKIA" + "QX7MZ4P2LRT6VW3N"  # an AWS access key id (split so this file holds none)
    for record, content in (("version", key.encode()), ("byteorder", b"little\n" + key.encode()),
                            (".data/serialization_id", key.encode())):
        result = scan_bytes(_rewrite(src, {record: content}), name="ckpt.pt")
        assert [f.location.member for f in found(result, "secret-aws-access-key")] == [f"clean/{record}"], record
    data = bytearray(src)
    at = data.index(b"little")
    data[at:at + 6] = b"123456"  # still a record's form, but no longer the bytes its CRC was taken of
    result = scan_bytes(bytes(data), name="ckpt.pt")
    assert kinds(result) == ["crc-mismatch"]
    assert found(result, "archive-inconsistent")[0].location.member == "clean/byteorder"


def test_odd_flag_bits():
    data = bytearray(make_zip([("payload.pkl", EVIL0)]))
    cd = data.index(b"PK\x01\x02")
    for flags_at in (6, cd + 8):
        data[flags_at + 1] |= 0x20  # bit 13: "masked local header"
    result = scan_bytes(bytes(data), name="flags.zip")
    (inc,) = found(result, "archive-inconsistent")
    assert inc.evidence["kind"] == "flags" and inc.evidence["flags"] == 0x2000
    one_critical(result, "payload.pkl")


def test_prepended_bytes():
    data = os.urandom(100) + make_zip([("payload.pkl", EVIL0)])
    result = scan_bytes(data, name="pre.zip")
    (inc,) = found(result, "archive-inconsistent")
    assert (inc.evidence["kind"], inc.evidence["length"], inc.location.offset) == ("prepended-bytes", 100, 0)
    one_critical(result, "payload.pkl")


def test_trailing_bytes_and_entry_count():
    data = bytearray(make_zip([("a.txt", b"hello")]) + b"junk after the end")
    eocd = data.rindex(b"PK\x05\x06")
    struct.pack_into("<HH", data, eocd + 8, 3, 3)
    assert kinds(scan_bytes(bytes(data), name="t.zip")) == ["entry-count", "trailing-bytes"]


def test_hidden_local_entry_seen_by_streaming_readers():
    hidden = make_zip([("hidden.pkl", EVIL0)])
    data = hidden[:hidden.index(b"PK\x01\x02")] + make_zip([("readme.txt", b"hi")])
    result = scan_bytes(data, name="h.zip")
    assert kinds(result) == ["local-only-entry", "prepended-bytes"]
    one_critical(result, "hidden.pkl")


def test_every_reading_of_a_member_is_scanned():
    # the directory says "stored", the local header says "deflate": zipfile and torch read raw
    # bytes (noise), a streaming reader inflates the payload
    deflated = zlib.compress(EVIL0, 9)[2:-4]
    data = bytearray(make_zip([("m.pkl", deflated)]))
    data[8] = 8
    result = scan_bytes(bytes(data), name="v.zip")
    assert kinds(result) == ["crc-mismatch", "method-mismatch", "size-mismatch"]
    # the declared CRC and size are those of the raw bytes: the inflated reading contradicts them
    assert {f.location.member for f in found(result, "archive-inconsistent")
            if f.evidence["kind"] != "method-mismatch"} == {"m.pkl[local-header]"}
    one_critical(result, "m.pkl[local-header]")


def test_encrypted_and_unsupported_members():
    data = bytearray(make_zip([("a.pkl", EVIL0)]))
    data[6] |= 1
    data[data.index(b"PK\x01\x02") + 8] |= 1
    (f,) = scan_bytes(bytes(data), name="enc.zip").findings
    assert (f.rule_id, f.severity, f.evidence["reason"]) == ("archive-unscannable", Severity.MEDIUM, "encrypted")
    (f,) = scan_bytes(make_zip([("a.pkl", EVIL0)], zipfile.ZIP_BZIP2), name="bz.zip").findings
    assert (f.rule_id, f.evidence["method"], f.location.member) == ("archive-unscannable", 12, "a.pkl")


def test_corrupt_deflate_stream():
    data = bytearray(make_zip([("a.pkl", malicious_pickle() * 20)], zipfile.ZIP_DEFLATED))
    data[40:44] = b"\xff\xff\xff\xff"
    result = scan_bytes(bytes(data), name="bad.zip")
    assert "archive-malformed" in rules(result)
    assert result.errors == ()


# --------------------------------------------------------------------------- bounds

def test_zip_bomb_is_bounded():
    # a pickle head (so the member is worth reading) followed by 64 MiB of zeros
    payload = b"\x80\x04\x8e" + struct.pack("<Q", 64 << 20) + b"\0" * (64 << 20) + b"."
    data = make_zip([("bomb.pkl", payload)], zipfile.ZIP_DEFLATED)
    assert len(data) < 1 << 20
    policy = Policy(scanner_options={"archive": {"max_decompressed": 1 << 20}})
    result = scan_bytes(data, name="bomb.zip", policy=policy)
    (f,) = found(result, "archive-limit-exceeded")
    assert f.location.member == "bomb.pkl" and f.severity is Severity.HIGH


def test_deep_nesting_is_bounded():
    data = EVIL0
    for i in range(8):
        data = make_zip([(f"level{i}.zip" if i else "evil.pkl", data)])
    result = scan_bytes(data, name="deep.zip")
    (f,) = found(result)
    assert f.rule_id == "archive-limit-exceeded" and f.evidence["limit"] == "max_depth"
    assert f.location.member == "level7.zip!level6.zip!level5.zip!level4.zip!level3.zip"
    shallow = EVIL0
    for i in range(3):
        shallow = make_zip([(f"level{i}.zip" if i else "evil.pkl", shallow)])
    one_critical(scan_bytes(shallow, name="ok.zip"), "level2.zip!level1.zip!evil.pkl")


def test_member_count_is_bounded():
    data = make_zip([(f"f{i}.txt", b"x") for i in range(30)])
    policy = Policy(scanner_options={"archive": {"max_members": 10}})
    (f,) = scan_bytes(data, name="many.zip", policy=policy).findings
    assert f.rule_id == "archive-limit-exceeded" and f.evidence["limit"] == "max_members"


# --------------------------------------------------------------------------- polyglots and 7z

def test_safetensors_with_a_zip_appended(tmp_path):
    safetensors = pytest.importorskip("safetensors.numpy")
    path = tmp_path / "model.safetensors"
    safetensors.save_file({"w": np.ones((4, 4), dtype=np.float32)}, str(path))
    host = path.read_bytes()
    path.write_bytes(host + make_zip([("evil.pkl", malicious_pickle(4))]))
    sniffed = sniff_file(path)
    assert sniffed.format is Format.SAFETENSORS and [e.format for e in sniffed.embedded] == [Format.ZIP]
    result = scan_file(path)
    (inc,) = found(result, "archive-inconsistent")
    assert (inc.evidence["kind"], inc.location.offset, inc.evidence["format"]) == ("polyglot", len(host), "safetensors")
    f = one_critical(result, "evil.pkl")
    assert f.location.offset == global_offset(malicious_pickle(4))


def test_sevenzip_archive(tmp_path, monkeypatch):
    py7zr = pytest.importorskip("py7zr")
    path = tmp_path / "bundle.7z"
    with py7zr.SevenZipFile(path, "w") as z:
        z.writestr(b"readme", "README.txt")
        z.writestr(malicious_pickle(4), "weights/model.pkl")
    f = one_critical(scan_file(path), "weights/model.pkl")
    assert f.location.offset == global_offset(malicious_pickle(4))
    monkeypatch.setitem(sys.modules, "py7zr", None)  # the optional dependency is missing
    (f,) = scan_file(path).findings
    assert (f.rule_id, f.severity, f.evidence["reason"]) == ("archive-unscannable", Severity.MEDIUM, "py7zr missing")


def test_non_containers_are_passed_over_quickly():
    ctx = _context(Policy())
    data = pickle.dumps([1, 2, 3])
    from mlguard.sniff import sniff_bytes
    artifact = Artifact("x.pkl", sniff_bytes(data), len(data), data=data)
    assert list(ARCHIVE.scan(artifact, ctx)) == []


def test_mutated_containers_never_fail_the_scanner(tmp_path):
    """Corrupt zips (torch, npz, anomalies), polyglots and 7z give findings, never a scanner error."""
    import random
    buf = io.BytesIO()
    torch.save({"w": torch.ones(3), "b": torch.zeros(2)}, buf)
    npz = io.BytesIO()
    np.savez_compressed(npz, a=np.arange(4), o=np.array([{"k": 1}], dtype=object))
    hidden = make_zip([("hidden.pkl", EVIL0)])
    seeds = [buf.getvalue(), npz.getvalue(),
             hidden[:hidden.index(b"PK\x01\x02")] + make_zip([("a/data.pkl", EVIL0), ("a/data.pkl", b"N.")]),
             pickle.dumps([1, 2], protocol=4) + make_zip([("x.npy", npz.getvalue())], zipfile.ZIP_DEFLATED)]
    rng = random.Random(11)
    for i in range(400):
        data = bytearray(seeds[i % len(seeds)])
        for _ in range(rng.randint(1, 6)):
            position = rng.randrange(len(data))
            r = rng.random()
            if r < 0.6:
                data[position] = rng.randrange(256)
            elif r < 0.8:
                data[position:position + 4] = struct.pack("<I", rng.choice([0, 0xFFFFFFFF, rng.randrange(1 << 32)]))
            else:
                del data[position:position + rng.randint(1, 64)]
        result = scan_bytes(bytes(data), name="m.bin")
        assert result.errors == (), result.errors


class _Unseekable(io.RawIOBase):
    """zipfile writes data descriptors (flag bit 3, zero sizes in local headers) to such a stream."""

    def __init__(self):
        self.out = bytearray()

    def writable(self):
        return True

    def write(self, b):
        self.out += b
        return len(b)


def test_hidden_streamed_entry_with_unknown_size():
    sink = _Unseekable()
    with zipfile.ZipFile(sink, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("streamed.pkl", EVIL0)
    streamed = bytes(sink.out)
    local = streamed[:streamed.index(b"PK\x01\x02")]
    assert local[6] & 0x08 and local[18:26] == b"\0" * 8
    result = scan_bytes(local + make_zip([("readme.txt", b"hi")]), name="s.zip")
    assert "local-only-entry" in kinds(result)
    one_critical(result, "streamed.pkl")
    # as the only content (no directory at all): read the way a streaming reader would
    result = scan_bytes(local, name="s.zip")
    assert [f.evidence["error"] for f in found(result, "archive-malformed")] == ["no-end-record"]
    one_critical(result, "streamed.pkl")


def test_many_inconsistencies_are_summed_up():
    data = make_zip([("same", b"x")] * 25)
    dup = found(scan_bytes(data, name="d.zip"), "archive-inconsistent")
    assert len(dup) == 21
    assert [f.evidence for f in dup if "more" in f.evidence] == [{"kind": "duplicate-name", "more": 5}]


@pytest.mark.parametrize("tensors", [3, 80])  # below and above the tensor-directory skim threshold
def test_tensor_bytes_that_look_like_a_pickle_raise_nothing(tensors):
    """Raw tensor storage is never unpickled by torch.load: random bytes after a pickle magic are not findings."""
    import random
    torch = pytest.importorskip("torch")
    rng = random.Random(3)
    payloads = [b"\x80\x05" + bytes(rng.randrange(256) for _ in range(4000)), b"\x80\x02\x8a\x0a" + bytes(200),
                b"(dp0\nS'a'\n" + bytes(100)]
    state = {f"t{i}": torch.frombuffer(bytearray(payloads[i % 3]), dtype=torch.uint8).clone()
             for i in range(tensors)}
    buf = io.BytesIO()
    torch.save(state, buf)
    result = scan_bytes(buf.getvalue(), name="m.pt")
    assert [f for f in result.findings if f.severity >= Severity.MEDIUM] == []
