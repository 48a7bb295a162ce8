"""Keras configs: real models saved by Keras raise nothing at medium or above; Lambda layers and foreign
modules are reported, in .keras zips and legacy HDF5 files."""
from __future__ import annotations

import json
import os
import zipfile

import pytest

from mlguard import scan_file
from mlguard.findings import Severity

os.environ.setdefault("KERAS_BACKEND", "torch")
keras = pytest.importorskip("keras")


def rules(path) -> dict:
    return {f.rule_id: f.severity for f in scan_file(path).findings if f.severity >= Severity.LOW}


def test_a_real_model_raises_nothing(tmp_path):
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4, activation="relu"), keras.layers.Dense(1)])
    model.save(tmp_path / "m.keras")
    assert rules(tmp_path / "m.keras") == {}


def test_lambda_layers_in_keras_and_hdf5(tmp_path):
    model = keras.Sequential([keras.Input((3,)), keras.layers.Lambda(lambda x: x * 2)])
    model.save(tmp_path / "m.keras")
    assert rules(tmp_path / "m.keras") == {"keras-lambda-layer": Severity.HIGH}
    h5py = pytest.importorskip("h5py")
    with h5py.File(tmp_path / "legacy.h5", "w") as f:   # what legacy Keras writes: the config as an attribute
        f.attrs["model_config"] = json.dumps(json.loads(zipfile.ZipFile(tmp_path / "m.keras").read("config.json")))
        f.create_dataset("w", data=[1.0, 2.0])
    assert rules(tmp_path / "legacy.h5") == {"keras-lambda-layer": Severity.HIGH}


def test_keras_saves_legacy_h5(tmp_path):
    """``model.save("m.h5")``: Keras's own legacy HDF5 writer, compiled (so a training_config is written too)."""
    pytest.importorskip("h5py")
    plain = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    plain.compile(loss="mse", optimizer="adam", metrics=["mae"])
    plain.save(tmp_path / "plain.h5")
    assert rules(tmp_path / "plain.h5") == {}
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2), keras.layers.Lambda(lambda x: x * 2)])
    model.compile(loss="mse", optimizer="adam")
    model.save(tmp_path / "m.h5")
    assert rules(tmp_path / "m.h5") == {"keras-lambda-layer": Severity.HIGH}


def _keras_zip(path, config: dict) -> None:
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("metadata.json", json.dumps({"keras_version": "3.8.0"}))
        z.writestr("config.json", json.dumps(config))
        z.writestr("model.weights.h5", b"")


def test_foreign_modules(tmp_path):
    layer = {"module": "keras.layers", "class_name": "Dense", "config": {"name": "d", "units": 1,
             "activation": {"module": "builtins", "class_name": "function", "config": "exec",
                            "registered_name": "function"}}}
    config = {"module": "keras", "class_name": "Sequential", "config": {"name": "s", "layers": [
        layer, {"module": "mypkg.layers", "class_name": "Fancy", "config": {"name": "f"}}]}}
    _keras_zip(tmp_path / "evil.keras", config)
    found = {(f.rule_id, f.evidence["module"], f.severity) for f in scan_file(tmp_path / "evil.keras").findings}
    assert found == {("keras-unsafe-module", "builtins", Severity.CRITICAL),
                     ("keras-unsafe-module", "mypkg.layers", Severity.HIGH)}


def _field(number: int, payload: bytes) -> bytes:
    """A protobuf length-delimited field (numbers and lengths here stay below 128: one-byte varints)."""
    assert number < 16 and len(payload) < 128
    return bytes([number << 3 | 2, len(payload)]) + payload


def _node(name: str, op: str) -> bytes:
    return _field(1, name.encode()) + _field(2, op.encode())


def test_savedmodel_ops(tmp_path):
    """saved_model.pb written field by field (TensorFlow is not a test dependency): graph nodes and a function."""
    function = _field(1, _field(1, b"helper")) + _field(3, _node("r", "ReadFile"))
    graph = _field(1, _node("x", "Placeholder")) + _field(1, _node("p", "EagerPyFunc")) + _field(2, _field(1, function))
    folder = tmp_path / "export"
    folder.mkdir()
    (folder / "saved_model.pb").write_bytes(_field(2, _field(2, graph)))
    found = {(f.evidence["op"], f.severity) for f in scan_file(folder / "saved_model.pb").findings
             if f.rule_id == "tf-savedmodel-dangerous-op"}
    assert found == {("EagerPyFunc", Severity.CRITICAL), ("ReadFile", Severity.HIGH)}
    (folder / "saved_model.pb").write_bytes(_field(2, _field(2, _field(1, _node("x", "MatMul")))))
    assert rules(folder / "saved_model.pb") == {}
    # a group wire type after the graph: the walk stops there, and what it read before is still checked
    (folder / "saved_model.pb").write_bytes(_field(2, _field(2, graph)) + b"\x0b")
    found = {(f.rule_id, f.severity) for f in scan_file(folder / "saved_model.pb").findings}
    assert found == {("tf-savedmodel-malformed", Severity.HIGH), ("tf-savedmodel-dangerous-op", Severity.CRITICAL),
                     ("tf-savedmodel-dangerous-op", Severity.HIGH)}
