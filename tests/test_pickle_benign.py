"""Benign artifacts made by the real libraries raise nothing at medium or above (THREATS.md section 1,
"What benign files use"). Every fixture is built here, in memory or under tmp_path; none is loaded."""
from __future__ import annotations

import argparse
import datetime
import io
import pathlib
import pickle
import warnings

import pytest

import mlguard
from mlguard import Policy, Severity

torch = pytest.importorskip("torch")
np = pytest.importorskip("numpy")
nn = torch.nn


def serious(result) -> list:
    """Findings at medium or above, as (rule, message) pairs for readable assertion failures."""
    return [(f.rule_id, f.message) for f in result.findings if f.severity >= Severity.MEDIUM]


def assert_clean(result) -> None:
    assert serious(result) == []
    assert result.errors == ()


def torch_bytes(obj, **kwargs) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf, **kwargs)
    return buf.getvalue()


def small_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.ReLU(), nn.Flatten(), nn.Linear(8, 4),
                         nn.Dropout(0.1), nn.LayerNorm(4))


class TinyNet(nn.Module):
    """A user-defined module: not on the allowlist, so a whole-model pickle of it must be reported."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(2, 2)

    def forward(self, x):
        return self.fc(x)


# ---------------------------------------------------------------------------------------------- torch

def test_state_dict():
    assert_clean(mlguard.scan_bytes(torch_bytes(small_model().state_dict()), name="model.pt"))


def test_training_checkpoint(tmp_path):
    model = small_model()
    adam = torch.optim.Adam(model.parameters(), lr=1e-3)
    sgd = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.StepLR(adam, step_size=1, gamma=0.5)
    model(torch.randn(2, 1, 4, 4)).sum().backward()
    adam.step()
    sgd.step()  # momentum buffers and Adam moments now exist in the optimizer states
    scheduler.step()
    checkpoint = {
        "model": model.state_dict(), "adam": adam.state_dict(), "sgd": sgd.state_dict(),
        "scheduler": scheduler.state_dict(), "args": argparse.Namespace(lr=0.1, epochs=3, name="run"),
        "output_dir": pathlib.Path("/tmp/run"), "best": np.float32(0.93), "step": np.int64(1200),
        "history": np.linspace(0, 1, 5), "epoch": 3, "metrics": {"acc": 0.91, "loss": [0.5, 0.3]},
    }
    path = tmp_path / "checkpoint.pt"
    torch.save(checkpoint, path)
    assert_clean(mlguard.scan_file(path))


def test_whole_module(tmp_path):
    model = nn.Sequential(small_model(), nn.Linear(4, 4))
    extras = nn.ModuleList([nn.LSTM(4, 4, batch_first=True), nn.Embedding(10, 4)])
    path = tmp_path / "model.pt"
    torch.save({"model": model, "extras": extras}, path)
    assert_clean(mlguard.scan_file(path))


def test_custom_module_is_reported_until_allowed():
    data = torch_bytes(TinyNet())
    name = f"{TinyNet.__module__}.{TinyNet.__qualname__}"
    found = serious(mlguard.scan_bytes(data, name="custom.pt"))
    assert found, "a class outside the allowlist must be reported"
    assert {rule for rule, _ in found} <= {"pickle-unknown-call", "pickle-unknown-global"}
    assert all(name in message for _, message in found)
    policy = Policy(scanner_options={"pickle": {"allow_globals": (name,)}})
    assert_clean(mlguard.scan_bytes(data, name="custom.pt", policy=policy))


def test_quantized_tensors():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # quantized tensor creation is deprecated in recent torch
        tensors = {
            "per_tensor": torch.quantize_per_tensor(torch.randn(4), 0.1, 0, torch.quint8),
            "per_channel": torch.quantize_per_channel(torch.randn(2, 4), torch.tensor([0.1, 0.2]),
                                                      torch.tensor([0, 0]), 0, torch.qint8),
        }
    assert_clean(mlguard.scan_bytes(torch_bytes(tensors), name="quantized.pt"))


def test_sparse_tensors():
    dense = torch.tensor([[0.0, 1.0, 0.0], [2.0, 0.0, 3.0]])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "sparse CSR support is in beta"
        tensors = {"coo": dense.to_sparse(), "csr": dense.to_sparse_csr()}
    assert_clean(mlguard.scan_bytes(torch_bytes(tensors), name="sparse.pt"))


def test_legacy_format(tmp_path):
    path = tmp_path / "legacy.pt"
    torch.save(small_model().state_dict(), path, _use_new_zipfile_serialization=False)
    assert_clean(mlguard.scan_file(path))


# ---------------------------------------------------------------------------------------------- numpy

@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_numpy_arrays_and_scalars(protocol):
    values = [np.arange(12, dtype=np.int32).reshape(3, 4), np.linspace(0, 1, 7), np.zeros(3, dtype=np.float16),
              np.array([1 + 2j]), np.array([True, False]), np.array(["a", "bc"]), np.asfortranarray(np.eye(2)),
              np.zeros(2, dtype=[("x", "f4"), ("y", "i8")]), np.array(["2020-01-01"], dtype="datetime64[ns]"),
              np.float64(1.5), np.int64(7), np.bool_(True), np.float32(2.5), np.dtype("f8"),
              np.random.default_rng(0), np.random.RandomState(0)]
    assert_clean(mlguard.scan_bytes(pickle.dumps(values, protocol=protocol), name="arrays.pkl"))


# ---------------------------------------------------------------------------------------------- pandas

def mixed_frame(tz):
    pd = pytest.importorskip("pandas")
    index = pd.MultiIndex.from_product([["a", "b"], [1, 2]], names=["group", "n"])
    return pd.DataFrame({
        "int": np.arange(4), "float": np.linspace(0.0, 1.0, 4), "str": ["w", "x", "y", "z"],
        "cat": pd.Categorical(["lo", "hi", "lo", "hi"]),
        "when": pd.date_range("2024-01-01", periods=4, freq="D", tz=tz),
    }, index=index)


def test_pandas_dataframe_pickle_dumps():
    frame = mixed_frame(datetime.timezone.utc)
    for protocol in (2, 5):
        assert_clean(mlguard.scan_bytes(pickle.dumps(frame, protocol=protocol), name="frame.pkl"))


def test_pandas_to_pickle(tmp_path):
    path = tmp_path / "frame.pkl"
    mixed_frame("UTC").to_pickle(path)
    assert_clean(mlguard.scan_file(path))


def test_pandas_frame_larger_than_the_memo_budget():
    """A frame memoizing far more objects than `pickle.max_memo` (here 3,000 strings against 50, as a 4.5 M-row
    frame does against the default 4 M) is scanned to its end and raises nothing: past the budget the memo drops
    values instead of stopping the analysis."""
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame({"text": [f"row {i}" for i in range(3000)], "n": np.arange(3000)})
    policy = Policy(scanner_options={"pickle": {"max_memo": 50}})
    for protocol in (2, 4, 5):
        result = mlguard.scan_bytes(pickle.dumps(frame, protocol=protocol), name="frame.pkl", policy=policy)
        assert result.findings == ()


def test_pandas_object_column_with_more_calls_than_max_facts():
    """An object column pickles one call per value (here 1.1 M `datetime.date(b'...')`, far past the kernel's fact
    limit): compact facts group them, so the frame is scanned to its end and raises nothing."""
    pd = pytest.importorskip("pandas")
    start = datetime.date(2000, 1, 1)
    frame = pd.DataFrame({"day": [start + datetime.timedelta(days=i % 9000) for i in range(1_100_000)]})
    result = mlguard.scan_bytes(pickle.dumps(frame, protocol=4), name="days.pkl")
    assert result.findings == ()


def test_pandas_iana_timezone():
    frame = mixed_frame("Europe/Paris")
    # ZoneInfo pickles as getattr(ZoneInfo, '_unpickle'): the `wrappers` policy judges it as ZoneInfo._unpickle
    assert_clean(mlguard.scan_bytes(pickle.dumps(frame), name="frame.pkl"))


# ---------------------------------------------------------------------------------------------- scikit-learn

@pytest.fixture(scope="module")
def fitted():
    pytest.importorskip("sklearn")
    pd = pytest.importorskip("pandas")
    from sklearn.cluster import KMeans
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import GradientBoostingClassifier, HistGradientBoostingClassifier, RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    rng = np.random.RandomState(0)
    X, y = rng.rand(40, 3), np.array([0, 1] * 20)
    frame = pd.DataFrame({"num": rng.rand(40), "color": ["red", "green", "blue", "red"] * 10})
    models = {
        "pipeline": Pipeline([("scale", StandardScaler()), ("clf", LogisticRegression())]).fit(X, y),
        "forest": RandomForestClassifier(n_estimators=5, random_state=0).fit(X, y),
        "gboost": GradientBoostingClassifier(n_estimators=5, random_state=0).fit(X, y),
        "hist_gboost": HistGradientBoostingClassifier(max_iter=5, random_state=0).fit(X, y),
        "kmeans": KMeans(n_clusters=2, n_init=1, random_state=0).fit(X),
        "column_transformer": Pipeline([
            ("prep", ColumnTransformer([("onehot", OneHotEncoder(handle_unknown="ignore"), ["color"]),
                                        ("scale", StandardScaler(), ["num"])])),
            ("clf", LogisticRegression())]).fit(frame, y),
    }
    return models


@pytest.mark.parametrize("name", ["pipeline", "forest", "gboost", "hist_gboost", "kmeans", "column_transformer"])
def test_sklearn_pickle(fitted, name):
    assert_clean(mlguard.scan_bytes(pickle.dumps(fitted[name]), name=f"{name}.pkl"))


def test_sklearn_hist_gboost_categorical():
    pytest.importorskip("sklearn")
    from sklearn.ensemble import HistGradientBoostingClassifier

    X = np.column_stack([np.arange(40) % 3, np.linspace(0, 1, 40)])
    model = HistGradientBoostingClassifier(max_iter=3, categorical_features=[0]).fit(X, np.arange(40) % 2)
    # holds functools.partial(check_array, ...): the `wrappers` policy judges it as check_array
    assert_clean(mlguard.scan_bytes(pickle.dumps(model), name="hgb.pkl"))


# ---------------------------------------------------------------------------------------------- joblib

@pytest.mark.parametrize("compress", [0, 3])
def test_joblib_dump_of_pandas(tmp_path, compress):
    """pandas objects saved with joblib: string and categorical columns are rebuilt by Cython's
    ``__pyx_unpickle_*`` functions, then BUILD goes through ``__setstate__`` (once read as "may turn into an
    array wrapper" and reported as a parse error)."""
    joblib = pytest.importorskip("joblib")
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame({"n": [1, 2], "s": ["x", "y"], "c": pd.Categorical(["u", "v"]),
                          "t": pd.to_datetime(["2024-01-01", "2024-02-01"])})
    path = tmp_path / f"frame-{compress}.joblib"
    joblib.dump({"frame": frame, "labels": pd.Series(["a", "b", "a"], dtype="category")}, path, compress=compress)
    assert_clean(mlguard.scan_file(path))


@pytest.mark.parametrize("compress", [0, 3])
@pytest.mark.parametrize("name", ["pipeline", "forest", "gboost", "hist_gboost", "kmeans", "column_transformer"])
def test_joblib_dump(fitted, tmp_path, name, compress):
    """joblib writes raw array bytes between the pickle opcodes (zlib-compressed with compress=3). Two shapes were
    once reported: a HistGradientBoosting model holds a numpy Generator, whose BUILD goes through ``__setstate__``
    (read as "may turn into an array wrapper"); a column transformer's encoder keeps object arrays, whose nested
    pickles the pickle.load reading runs as opcodes, meeting a name computed from misread data (now low)."""
    joblib = pytest.importorskip("joblib")
    path = tmp_path / f"{name}-{compress}.joblib"
    joblib.dump(fitted[name], path, compress=compress)
    assert_clean(mlguard.scan_file(path))
