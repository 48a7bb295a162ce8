"""GGUF scanner: files written by the gguf library raise nothing; crafted headers and templates each hit their rule."""
from __future__ import annotations

import struct

import pytest

from mlguard import scan_file
from mlguard.findings import Severity

gguf = pytest.importorskip("gguf")
np = pytest.importorskip("numpy")

SAFE_TEMPLATE = ("{% for message in messages %}{{ '<|' + message['role'] + '|>' + message['content'] }}"
                 "{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}")
SSTI = "{{ cycler.__init__.__globals__.os.popen('id').read() }}"


def write(path, template=SAFE_TEMPLATE, extra=None):
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_chat_template(template)
    w.add_string("tokenizer.chat_template.tool_use", SAFE_TEMPLATE)
    w.add_array("tokenizer.ggml.tokens", ["<s>", "</s>", "hello"])
    for key, value in (extra or {}).items():
        w.add_string(key, value)
    w.add_tensor("tok_embd.weight", np.zeros((4, 8), dtype=np.float32))
    w.add_tensor("out.weight", np.ones(16, dtype=np.float16))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def rules(path) -> dict:
    return {f.rule_id: f.severity for f in scan_file(path).findings}


def test_a_real_file_raises_nothing(tmp_path):
    assert rules(write(tmp_path / "m.gguf")) == {}


def test_quantised_and_oddly_aligned_files_raise_nothing(tmp_path):
    w = gguf.GGUFWriter(str(tmp_path / "q.gguf"), "llama")
    w.add_custom_alignment(64)
    w.add_tensor("q8", np.zeros((2, 34), dtype=np.uint8), raw_dtype=gguf.GGMLQuantizationType.Q8_0)
    w.add_tensor("q4k", np.zeros((1, 144), dtype=np.uint8), raw_dtype=gguf.GGMLQuantizationType.Q4_K)
    w.add_tensor("odd", np.ones(3, dtype=np.float32))
    w.add_tensor("bf16", np.zeros((5, 7), dtype=np.uint16), raw_dtype=gguf.GGMLQuantizationType.BF16)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    assert rules(tmp_path / "q.gguf") == {}
    reader = gguf.GGUFReader(str(tmp_path / "q.gguf"))   # the library reads back what the layout check accepted
    assert [t.name for t in reader.tensors] == ["q8", "q4k", "odd", "bf16"]


def test_ggml_block_table_matches_the_gguf_library():
    from gguf.constants import GGML_QUANT_SIZES
    from mlguard.scanners.gguf import GGML_BLOCKS
    assert GGML_BLOCKS == {int(t): size for t, size in GGML_QUANT_SIZES.items()}


def test_a_template_reaching_python_internals_is_critical(tmp_path):
    found = scan_file(write(tmp_path / "m.gguf", SSTI)).findings
    [f] = found
    assert (f.rule_id, f.severity) == ("chat-template-injection", Severity.CRITICAL)
    assert "__globals__" in f.evidence["reached"] and "popen" in f.evidence["reached"]
    named = write(tmp_path / "n.gguf", extra={"tokenizer.chat_template.rag": "{{ x|attr('__class__') }}"})
    assert rules(named) == {"chat-template-injection": Severity.CRITICAL}


def test_an_unparsable_template(tmp_path):
    assert rules(write(tmp_path / "m.gguf", "{% if x %}unclosed")) == {"chat-template-unparsable": Severity.MEDIUM}


def _string(s: str) -> bytes:
    raw = s.encode()
    return struct.pack("<Q", len(raw)) + raw


def _kv_string(key: str, value: str) -> bytes:
    return _string(key) + struct.pack("<I", 8) + _string(value)


def craft(kvs: list[bytes], tensors: list[bytes] = (), version: int = 3, n_kv=None, n_tensors=None) -> bytes:
    head = b"GGUF" + struct.pack("<IQQ", version, len(tensors) if n_tensors is None else n_tensors,
                                 len(kvs) if n_kv is None else n_kv)
    return head + b"".join(kvs) + b"".join(tensors) + b"\0" * 64


def crafted(tensors: list[bytes], data: bytes, kvs: list[bytes] = ()) -> bytes:
    """A whole file: header, padding to the 32-byte alignment, then ``data``."""
    head = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(kvs)) + b"".join(kvs) + b"".join(tensors)
    return head + b"\0" * (-len(head) % 32) + data


def tensor(name: str, dims=(4,), ggml_type=0, offset=0) -> bytes:
    return _string(name) + struct.pack("<I", len(dims)) + b"".join(struct.pack("<Q", d) for d in dims) + \
        struct.pack("<IQ", ggml_type, offset)


@pytest.mark.parametrize("content, rule, severity", [
    (craft([], n_kv=2**40), "gguf-malformed", "high"),
    (b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + struct.pack("<Q", 2**62), "gguf-malformed", "high"),
    (craft([_string("k") + struct.pack("<I", 99)]), "gguf-malformed", "high"),
    (craft([_string("a") + struct.pack("<IIQ", 9, 4, 2**50)]), "gguf-malformed", "high"),
    (craft([], [tensor("t", dims=(1, 2, 3, 4, 5))]), "gguf-malformed", "high"),
    (craft([], [tensor("t", ggml_type=200)]), "gguf-malformed", "high"),
    (craft([], [tensor("t", offset=3)]), "gguf-malformed", "high"),
    (crafted([tensor("t", dims=(31,), ggml_type=2)], b"\0" * 18), "gguf-malformed", "high"),   # Q4_0 block 32
    (crafted([tensor("t", dims=(2**32, 2**32))], b"\0" * 64), "gguf-malformed", "high"),
    (crafted([tensor("a"), tensor("b", offset=64)], b"\0" * 96), "gguf-malformed", "high"),    # gap of 32
    (crafted([tensor("a"), tensor("b", offset=0)], b"\0" * 32), "gguf-malformed", "high"),     # overlap
    (crafted([tensor("t", dims=(64,))], b"\0" * 100), "gguf-malformed", "high"),               # 256 needed
    (crafted([tensor("t")], b"\0" * 32 + b"hidden"), "gguf-hidden-data", "high"),
    (crafted([tensor("t")], b"\0" * 32 + b"MZ\x90\0" + b"\0" * 60), "gguf-executable-trailing", "critical"),
    (crafted([tensor("t")], b"\0" * 32 + b"\x80\x04\x95" + b"\0" * 8 + b"cos\nsystem\n."),
     "gguf-executable-trailing", "critical"),
    (craft([_kv_string("general.name", "a"), _kv_string("general.name", "b")]), "gguf-duplicate-key", "high"),
    (craft([], [tensor("t"), tensor("t", offset=32)]), "gguf-duplicate-tensor", "high"),
    (b"GGUF" + struct.pack("<III", 1, 0, 0) + b"\0" * 8, "gguf-old-version", "low"),
    (craft([_kv_string("tokenizer.chat_template", "{{ ''.__class__.__mro__[1].__subclasses__() }}")]),
     "chat-template-injection", "critical"),
])
def test_one_crafted_case_per_rule(tmp_path, content, rule, severity):
    path = tmp_path / "x.gguf"
    path.write_bytes(content)
    assert rules(path).get(rule) == Severity(severity), rules(path)
