"""End-to-end scans of real files made by the real libraries."""
import bz2
import gzip
import io
import lzma
import pickle
import tarfile
import zipfile
from collections import OrderedDict

import pytest

import mlguard
from mlguard import Config, Policy, Severity, scan_bytes, scan_file, scan_tree
from tests.conftest import Exploit, malicious_pickle

torch = pytest.importorskip("torch")


def rule_ids(result, at_least=Severity.INFO):
    return sorted({f.rule_id for f in result.findings if f.severity >= at_least})


@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 2))


@pytest.mark.parametrize("legacy", [False, True])
def test_clean_torch_state_dict_raises_nothing(tmp_path, tiny_model, legacy):
    path = tmp_path / "model.pt"
    torch.save(tiny_model.state_dict(), path, _use_new_zipfile_serialization=not legacy)
    result = scan_file(path)
    assert result.files_scanned == 1
    assert rule_ids(result, Severity.LOW) == []


def test_clean_checkpoint_with_optimizer_and_args(tmp_path, tiny_model):
    import argparse
    opt = torch.optim.Adam(tiny_model.parameters())
    tiny_model(torch.zeros(1, 4)).sum().backward()
    opt.step()
    path = tmp_path / "ckpt.pth"
    torch.save({"model": tiny_model.state_dict(), "optim": opt.state_dict(), "epoch": 3,
                "args": argparse.Namespace(lr=0.1)}, path)
    assert rule_ids(scan_file(path), Severity.LOW) == []


def test_malicious_object_inside_real_torch_checkpoint(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"weight": torch.zeros(2), "hook": Exploit()}, path)
    result = scan_file(path)
    critical = [f for f in result.findings if f.rule_id == "pickle-dangerous-global"]
    assert len(critical) == 1
    f = critical[0]
    assert f.severity is Severity.CRITICAL and f.path == "evil.pt"
    assert f.location.member == "evil/data.pkl" and f.location.offset > 0
    assert f.evidence["module"] == "os" and f.evidence["name"] == "system" and f.evidence["called"]
    assert result.fails(Severity.HIGH)


@pytest.mark.parametrize("protocol", [0, 1, 2, 3, 4, 5])
def test_malicious_pickle_every_protocol(protocol):
    result = scan_bytes(malicious_pickle(protocol), name="model.pkl")
    assert "pickle-dangerous-global" in rule_ids(result)
    assert result.max_severity is Severity.CRITICAL


@pytest.mark.parametrize("wrap, name", [
    (gzip.compress, "model.pkl.gz"), (bz2.compress, "model.pkl.bz2"), (lzma.compress, "model.pkl.xz"),
    (lambda b: lzma.compress(b, format=lzma.FORMAT_ALONE), "model.pkl.lzma"),
])
def test_payload_in_compressed_stream(wrap, name):
    result = scan_bytes(wrap(malicious_pickle()), name=name)
    f = [f for f in result.findings if f.rule_id == "pickle-dangerous-global"]
    assert f and f[0].location.member == "model.pkl"


def test_payload_in_zlib_stream_as_joblib_writes(tmp_path):
    joblib = pytest.importorskip("joblib")
    path = tmp_path / "model.joblib"
    joblib.dump({"hook": Exploit()}, path, compress=("zlib", 3))
    assert "pickle-dangerous-global" in rule_ids(scan_file(path))


def test_payload_in_tar_in_zip(tmp_path):
    tar_buf = io.BytesIO()
    with tarfile.open(fileobj=tar_buf, mode="w") as tf:
        data = malicious_pickle()
        info = tarfile.TarInfo("inner/model_weights.bin")
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
    zip_buf = io.BytesIO()
    with zipfile.ZipFile(zip_buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("bundle.nemo", tar_buf.getvalue())
        zf.writestr("README.txt", "hello")
    result = scan_bytes(zip_buf.getvalue(), name="release.zip")
    f = [f for f in result.findings if f.rule_id == "pickle-dangerous-global"]
    assert f and f[0].location.member == "bundle.nemo!inner/model_weights.bin"


def test_nesting_depth_is_bounded():
    data = malicious_pickle()
    for _ in range(8):
        data = gzip.compress(data)
    result = scan_bytes(data, name="deep.gz")
    assert "archive-limit-exceeded" in rule_ids(result)
    assert "pickle-dangerous-global" not in rule_ids(result)


def test_decompression_bomb_is_bounded():
    bomb = gzip.compress(b"\0" * (64 << 20))
    policy = Policy(scanner_options={"archive": {"max_decompressed": 1 << 20}})
    result = scan_bytes(bomb, name="bomb.gz", policy=policy)
    assert result.findings == () or rule_ids(result) == ["archive-limit-exceeded"]


def test_corrupt_zip_is_reported(tmp_path):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("archive/data.pkl", malicious_pickle() * 50)
    data = bytearray(buf.getvalue())
    data[60:80] = b"\xff" * 20
    result = scan_bytes(bytes(data), name="broken.pt")
    assert "archive-malformed" in rule_ids(result)


def test_disguised_pickle_reports_extension_and_payload():
    result = scan_bytes(malicious_pickle(), name="model.safetensors")
    assert {"format-extension-mismatch", "pickle-dangerous-global"} <= set(rule_ids(result))


def test_unknown_global_called_vs_referenced():
    data = pickle.dumps(OrderedDict(a=1), protocol=2).replace(b"collections\nOrderedDict", b"mypkg.models\nMyNet")
    result = scan_bytes(data, name="x.pkl")
    assert rule_ids(result) == ["pickle-unknown-call"]
    allowed = Policy(scanner_options={"pickle": {"allow_globals": ("mypkg.models.MyNet",)}})
    assert scan_bytes(data, name="x.pkl", policy=allowed).findings == ()


def test_policy_overrides_and_disables():
    data = malicious_pickle()
    lowered = Policy(severity_overrides={"pickle-dangerous-global": Severity.LOW})
    assert {f.severity for f in scan_bytes(data, "a.pkl", lowered).findings} == {Severity.LOW}
    disabled = Policy(disabled_rules=frozenset({"pickle-dangerous-global"}))
    assert "pickle-dangerous-global" not in rule_ids(scan_bytes(data, "a.pkl", disabled))
    only_archive = Policy(scanners=frozenset({"archive"}))
    assert rule_ids(scan_bytes(data, "a.pkl", only_archive)) == []


def test_truncated_pickle_keeps_facts_before_the_error():
    data = malicious_pickle(protocol=2)
    result = scan_bytes(data[:-1] + b"\xff", name="cut.pkl")
    assert {"pickle-dangerous-global", "pickle-parse-error"} <= set(rule_ids(result))


def test_tree_scan_is_deterministic_and_parallel(tmp_path, tiny_model):
    for i in range(12):
        (tmp_path / f"m{i:02}.pkl").write_bytes(malicious_pickle() if i % 3 == 0 else pickle.dumps([i]))
    torch.save(tiny_model.state_dict(), tmp_path / "ok.pt")
    serial = scan_tree(tmp_path, jobs=1)
    parallel = scan_tree(tmp_path, jobs=4)
    assert serial.findings == parallel.findings
    assert serial.files_scanned == 13
    assert [f.path for f in serial.findings] == ["m00.pkl", "m03.pkl", "m06.pkl", "m09.pkl"]


def test_trusted_digest_skips_the_file(tmp_path):
    import hashlib
    data = malicious_pickle()
    (tmp_path / "reviewed.pkl").write_bytes(data)
    config = Config(policy=Policy(trusted_sha256=frozenset({hashlib.sha256(data).hexdigest()})))
    assert scan_tree(tmp_path, config).findings == ()


def test_fingerprints_are_stable_and_distinct(tmp_path):
    (tmp_path / "a.pkl").write_bytes(malicious_pickle())
    (tmp_path / "b.pkl").write_bytes(malicious_pickle())
    first, second = scan_tree(tmp_path), scan_tree(tmp_path)
    prints = [f.fingerprint for f in first.findings]
    assert prints == [f.fingerprint for f in second.findings]
    assert len(set(prints)) == len(prints) == 2


def test_unrecognised_binary_is_info(tmp_path):
    (tmp_path / "blob").write_bytes(bytes(range(256)) * 4)
    result = scan_tree(tmp_path)
    assert [(f.rule_id, f.severity) for f in result.findings] == [("format-unrecognized", Severity.INFO)]


def test_public_api_surface():
    for name in ("scan_file", "scan_bytes", "scan_tree", "Policy", "Config", "Finding", "Severity", "ScanResult"):
        assert hasattr(mlguard, name)


def test_unreadable_entries_are_findings_not_silence(tmp_path):
    (tmp_path / "ok.pkl").write_bytes(pickle.dumps([1]))
    (tmp_path / "gone.pkl").symlink_to(tmp_path / "missing.pkl")
    result = scan_tree(tmp_path)
    assert [(f.path, f.rule_id) for f in result.findings] == [("gone.pkl", "file-unreadable")]
    assert "broken symlink" in result.findings[0].message


def test_a_failing_scanner_fails_closed():
    # An option of the wrong type (bypassing config validation) makes the archive scanner raise.
    policy = Policy(scanner_options={"archive": {"max_depth": "five"}})
    result = scan_bytes(gzip.compress(b"x"), name="a.gz", policy=policy)
    assert [(f.rule_id, f.severity) for f in result.findings] == [("scanner-error", Severity.HIGH)]
    assert result.errors and "archive scanner failed: TypeError" in result.errors[0].message


def test_versions_agree():
    import re
    from pathlib import Path
    cargo = (Path(__file__).resolve().parents[1] / "mlguard_rs" / "Cargo.toml").read_text()
    assert re.search(r'^version = "([^"]+)"', cargo, re.M).group(1) == mlguard.__version__


def test_mutated_containers_never_crash_the_scanner(tiny_model):
    """Corrupt zips, tars and compressed streams give findings, never a scanner error."""
    import random
    buf = io.BytesIO()
    torch.save(tiny_model.state_dict(), buf)
    tar_gz = io.BytesIO()
    with tarfile.open(fileobj=tar_gz, mode="w:gz") as tf:
        data = pickle.dumps([1, 2, 3])
        info = tarfile.TarInfo("x.pkl")
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
    seeds = [buf.getvalue(), tar_gz.getvalue(), bz2.compress(pickle.dumps(list(range(500)))),
             lzma.compress(pickle.dumps(list(range(500))))]
    rng = random.Random(7)
    for _ in range(400):
        data = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(1, 6)):
            position = rng.randrange(len(data))
            if rng.random() < 0.7:
                data[position] = rng.randrange(256)
            else:
                del data[position:position + rng.randint(1, 64)]
        result = scan_bytes(bytes(data), name="m.bin")
        assert result.errors == (), result.errors
