"""Runtime guard through the real libraries: hostile files are refused before their payload runs, through
every way each library takes a file; legitimate files load and compare equal to what was saved."""
from __future__ import annotations

import gzip
import io
import logging
import os
import pickle

import pytest

import mlguard
from mlguard.runtime.source import Source, SourceChanged
from runtime_fixtures import Canary, benign_training_checkpoint, same, torch_checkpoints

torch = pytest.importorskip("torch")
np = pytest.importorskip("numpy")


def refused(load, *args, **kwargs) -> mlguard.UnsafeModelError:
    with pytest.raises(mlguard.UnsafeModelError) as info:
        load(*args, **kwargs)
    return info.value


# --------------------------------------------------------------------------- torch

def _torch_ways(path):
    """Every way torch.load takes a file: path, str, open file, BytesIO; weights_only both ways."""
    for weights_only in (False, True):
        yield f"path-wo{weights_only}", lambda: torch.load(path, weights_only=weights_only)
        yield f"str-wo{weights_only}", lambda: torch.load(str(path), weights_only=weights_only)
        yield f"file-wo{weights_only}", lambda: _with_open(path, lambda f: torch.load(f, weights_only=weights_only))
        yield f"bytesio-wo{weights_only}", lambda: torch.load(io.BytesIO(path.read_bytes()),
                                                               weights_only=weights_only)


def _with_open(path, fn):
    with open(path, "rb") as f:
        return fn(f)


def test_hostile_torch_checkpoints_are_refused_every_way(tmp_path, canary, guard):
    for fmt, path in torch_checkpoints(tmp_path, canary).items():
        for way, load in _torch_ways(path):
            err = refused(load)
            assert err.entry == "torch.load", (fmt, way)
        if fmt == "zip":
            refused(torch.load, path, mmap=True, weights_only=False)


def test_a_refusal_is_sticky_across_weights_only_retries(tmp_path, canary, guard, monkeypatch):
    log = tmp_path / "events.jsonl"
    monkeypatch.setenv("MLGUARD_EVENT_LOG", str(log))
    mlguard.protect()  # reads MLGUARD_EVENT_LOG
    path = torch_checkpoints(tmp_path, canary)["zip"]
    refused(torch.load, path, weights_only=True)
    refused(torch.load, path, weights_only=False)  # the usual "fallback" after a weights_only failure
    import json
    events = [json.loads(line) for line in log.read_text().splitlines()]
    assert [(e["verdict"], e["cached"]) for e in events] == [("refused", False), ("refused", True)]
    assert events[1]["caller"].startswith(__file__)


@pytest.mark.parametrize("zip_format", [True, False])
def test_benign_training_checkpoints_load_every_way(tmp_path, guard, zip_format):
    """Includes what weights_only=True rejects: argparse.Namespace, pathlib paths, a whole nn.Module."""
    checkpoint = benign_training_checkpoint()
    path = tmp_path / "ckpt.pt"
    torch.save(checkpoint, path, _use_new_zipfile_serialization=zip_format)
    for way, load in _torch_ways(path):
        if "woTrue" in way:
            continue
        assert same(load(), checkpoint), way
    if zip_format:
        assert same(torch.load(path, mmap=True, weights_only=False), checkpoint)


def test_state_dicts_load_with_weights_only_and_mmap(tmp_path, guard):
    state = torch.nn.Linear(16, 4).state_dict()
    path = tmp_path / "w.pt"
    torch.save(state, path)
    for _, load in _torch_ways(path):
        assert same(load(), state)
    assert same(torch.load(path, mmap=True, weights_only=True), state)


def test_torchscript_loads_and_hostile_pickle_as_torchscript_is_refused(tmp_path, canary, guard):
    scripted = torch.jit.script(torch.nn.Linear(3, 2))
    path = tmp_path / "m.torchscript"
    torch.jit.save(scripted, path)
    loaded = torch.jit.load(path)
    x = torch.ones(1, 3)
    assert torch.equal(loaded(x), scripted(x))
    bad = tmp_path / "bad.torchscript"
    bad.write_bytes(pickle.dumps(Canary(canary)))
    refused(torch.jit.load, bad)


def test_mmap_load_refuses_a_file_swapped_after_the_scan(tmp_path, canary, guard):
    """torch.load(mmap=True) reopens the path: when the file there is replaced between scan and load
    (here, at the moment the guard records its decision), the load is refused."""
    path = tmp_path / "w.pt"
    torch.save(torch.nn.Linear(2, 2).state_dict(), path)
    hostile = torch_checkpoints(tmp_path, canary)["zip"]

    class Swap(logging.Handler):
        def emit(self, record):
            if getattr(record, "mlguard_event", {}).get("verdict") == "allowed":
                os.replace(hostile, path)

    logger = logging.getLogger("mlguard")
    handler, level = Swap(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        err = refused(torch.load, path, mmap=True, weights_only=False)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    assert "changed between the scan and the load" in str(err)


def test_source_identity_check(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(b"one")
    with Source.of(path) as src:
        src.verify_path(path)
        other = tmp_path / "g.bin"
        other.write_bytes(b"two")
        os.replace(other, path)
        with pytest.raises(SourceChanged):
            src.verify_path(path)


# --------------------------------------------------------------------------- numpy

def _object_array(canary):
    arr = np.empty(2, dtype=object)
    arr[0], arr[1] = {"a": 1}, Canary(canary)
    return arr


def test_numpy_npy_and_npz_with_hostile_object_arrays_are_refused(tmp_path, canary, guard):
    npy, npz = tmp_path / "a.npy", tmp_path / "a.npz"
    np.save(npy, _object_array(canary), allow_pickle=True)
    np.savez(npz, ok=np.arange(3), bad=_object_array(canary))
    for path in (npy, npz):
        refused(np.load, path, allow_pickle=True)
        refused(lambda p: _with_open(p, lambda f: np.load(f, allow_pickle=True)), path)
        refused(np.load, io.BytesIO(path.read_bytes()), allow_pickle=True)


def test_numpy_benign_files_load(tmp_path, guard):
    arrays = {"x": np.arange(12, dtype=np.float32).reshape(3, 4), "y": np.array([1 + 2j, 3j])}
    objects = np.array([{"a": 1}, [1, 2], "s"], dtype=object)
    np.save(tmp_path / "x.npy", arrays["x"])
    np.save(tmp_path / "o.npy", objects, allow_pickle=True)
    np.savez_compressed(tmp_path / "z.npz", **arrays, o=objects)
    assert same(np.load(tmp_path / "x.npy"), arrays["x"])
    assert same(np.load(tmp_path / "x.npy", mmap_mode="r")[:], arrays["x"])
    assert list(np.load(tmp_path / "o.npy", allow_pickle=True)) == list(objects)
    with np.load(tmp_path / "z.npz", allow_pickle=True) as z:  # members are read lazily, after np.load
        assert same(z["x"], arrays["x"]) and same(z["y"], arrays["y"]) and list(z["o"]) == list(objects)


# --------------------------------------------------------------------------- joblib, scikit-learn, pandas

def test_joblib_and_scikit_learn(tmp_path, canary, guard):
    joblib = pytest.importorskip("joblib")
    pd = pytest.importorskip("pandas")
    from sklearn.compose import make_column_transformer
    from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(60, 4)), rng.integers(0, 2, 60)
    frame = pd.DataFrame({"num": X[:, 0], "color": ["red", "green", "blue"] * 20})
    # the column transformer's OneHotEncoder keeps object arrays (nested pickles in joblib's file), and the
    # HistGradientBoosting model a numpy Generator: both were once refused
    models = [make_pipeline(StandardScaler(), LogisticRegression()).fit(X, y),
              RandomForestClassifier(n_estimators=5, random_state=0).fit(X, y),
              HistGradientBoostingClassifier(max_iter=5).fit(X, y)]
    encoded = make_pipeline(make_column_transformer((OneHotEncoder(), ["color"]), (StandardScaler(), ["num"])),
                            LogisticRegression()).fit(frame, y)
    for compress in (0, 3):
        for i, model in enumerate(models):
            path = tmp_path / f"m{i}-{compress}.joblib"
            joblib.dump(model, path, compress=compress)
            assert (joblib.load(path).predict_proba(X) == model.predict_proba(X)).all()
            with open(path, "rb") as f:
                assert (joblib.load(f).predict(X) == model.predict(X)).all()
        path = tmp_path / f"encoded-{compress}.joblib"
        joblib.dump(encoded, path, compress=compress)
        assert (joblib.load(path).predict(frame) == encoded.predict(frame)).all()
        bad = tmp_path / f"bad-{compress}.joblib"
        joblib.dump({"weights": np.zeros(4), "hook": Canary(canary)}, bad, compress=compress)
        refused(joblib.load, bad)
        refused(lambda: _with_open(bad, joblib.load))
    path = tmp_path / "mm.joblib"
    joblib.dump({"w": np.arange(100.0)}, path)
    assert same(joblib.load(path, mmap_mode="r")["w"][:], np.arange(100.0))


def test_pandas_read_pickle(tmp_path, canary, guard):
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame({"a": [1, 2], "b": ["x", "y"], "t": pd.to_datetime(["2024-01-01", "2024-02-01"])})
    for name in ("df.pkl", "df.pkl.gz", "df.pkl.xz", "df.pkl.bz2"):
        df.to_pickle(tmp_path / name)
        assert pd.read_pickle(tmp_path / name).equals(df)
    with open(tmp_path / "df.pkl", "rb") as f:
        assert pd.read_pickle(f).equals(df)
    bad = tmp_path / "bad.pkl.gz"
    bad.write_bytes(gzip.compress(pickle.dumps(Canary(canary))))
    refused(pd.read_pickle, bad)
    err = refused(pd.read_pickle, "https://example.invalid/df.pkl")
    assert "remote sources are not scanned" in str(err)


# --------------------------------------------------------------------------- dill, cloudpickle

def test_dill_and_cloudpickle(tmp_path, canary, guard):
    dill = pytest.importorskip("dill")
    cloudpickle = pytest.importorskip("cloudpickle")
    data = pickle.dumps(Canary(canary))
    for lib in (dill, cloudpickle):
        refused(lib.loads, data)
        refused(lib.load, io.BytesIO(data))
        assert lib.loads(lib.dumps({"a": [1, 2]})) == {"a": [1, 2]}
    refused(dill.Unpickler(io.BytesIO(data)).load)  # dill's class binds the C Unpickler at import


# --------------------------------------------------------------------------- onnx, onnxruntime, safetensors

def _onnx_model():
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper
    node = helper.make_node("Relu", ["x"], ["y"])
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])])
    return onnx, helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_onnx_and_onnxruntime(tmp_path, canary, guard):
    onnx, model = _onnx_model()
    path = tmp_path / "m.onnx"
    onnx.save(model, path)
    assert onnx.load(path) == model
    assert onnx.load_model_from_string(model.SerializeToString()) == model
    ort = pytest.importorskip("onnxruntime")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    out = session.run(None, {"x": np.array([-1.0, 2.0], dtype=np.float32)})[0]
    assert out.tolist() == [0.0, 2.0]
    # loaders without a format scanner yet still go through the scan: a pickle named .onnx is caught
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(pickle.dumps(Canary(canary)))
    refused(onnx.load, bad)
    refused(ort.InferenceSession, str(bad))
    refused(ort.InferenceSession, bad.read_bytes())


def test_safetensors(tmp_path, canary, guard):
    pytest.importorskip("safetensors")
    from safetensors import safe_open
    from safetensors.numpy import load as np_load, load_file as np_load_file, save_file as np_save_file
    from safetensors.torch import load as pt_load, load_file as pt_load_file, save_file as pt_save_file
    tensors = {"w": torch.arange(6.0).reshape(2, 3)}
    pt_save_file(tensors, tmp_path / "w.safetensors")
    assert same(pt_load_file(tmp_path / "w.safetensors"), tensors)
    assert same(pt_load((tmp_path / "w.safetensors").read_bytes()), tensors)
    with safe_open(tmp_path / "w.safetensors", framework="pt") as f:
        assert torch.equal(f.get_tensor("w"), tensors["w"])
    arrays = {"a": np.arange(4, dtype=np.int64)}
    np_save_file(arrays, tmp_path / "a.safetensors")
    assert same(np_load_file(tmp_path / "a.safetensors"), arrays)
    assert same(np_load((tmp_path / "a.safetensors").read_bytes()), arrays)
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(pickle.dumps(Canary(canary)))
    for load in (pt_load_file, np_load_file, lambda p: safe_open(p, framework="pt")):
        refused(load, bad)


# --------------------------------------------------------------------------- every technique, every loader

def _file_loaders():
    """Loaders that accept a plain pickle file, as each library takes it."""
    import joblib
    import pandas as pd
    loaders = {
        "torch.load": lambda p: torch.load(p, weights_only=False),
        "numpy.load": lambda p: np.load(p, allow_pickle=True),  # falls back to pickle for non-.npy files
        "joblib.load": joblib.load,
        "pandas.read_pickle": pd.read_pickle,
    }
    for name in ("dill", "cloudpickle"):
        lib = pytest.importorskip(name)
        loaders[f"{name}.load"] = lambda p, lib=lib: _with_open(p, lib.load)
    return loaders


def test_every_hostile_pickle_through_every_loader(tmp_path, canary, guard):
    from runtime_fixtures import hostile_pickles
    for technique, data in hostile_pickles(canary).items():
        path = tmp_path / f"{technique}.pkl"
        path.write_bytes(data)
        for name, load in _file_loaders().items():
            err = refused(load, path)
            assert err.source == str(path), (technique, name)


def test_unprotect_restores_the_libraries():
    import joblib
    import onnx
    import pandas as pd
    from safetensors import torch as st_torch
    originals = [torch.load, torch.serialization.load, torch.jit.load, np.load, joblib.load, pd.read_pickle,
                 onnx.load, st_torch.load_file]
    mlguard.protect()
    assert torch.load is not originals[0] and np.load is not originals[3]
    assert {"torch.load", "numpy.load", "joblib.load", "pandas.read_pickle", "onnx.load",
            "safetensors.torch.load_file"} <= set(mlguard.status()["entry_points"])
    mlguard.unprotect()
    assert [torch.load, torch.serialization.load, torch.jit.load, np.load, joblib.load, pd.read_pickle,
            onnx.load, st_torch.load_file] == originals
