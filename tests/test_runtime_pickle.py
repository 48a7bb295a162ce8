"""Runtime guard, pickle level: every hostile pickle is refused through every pickle entry point, before
its payload runs; benign pickles load unchanged; references taken before protect() are still covered."""
from __future__ import annotations

import io
import pickle
import subprocess
import sys
import textwrap

import pytest

import mlguard
from runtime_fixtures import Harmless, NonSeekable, hostile_pickles

HERE = __file__.rsplit("/", 1)[0]


def _payloads(tmp_path):
    return hostile_pickles(tmp_path / "canary")


def test_the_hostile_fixtures_are_live(tmp_path):
    """Unguarded, in a child process, every payload really creates its canary (so the refusals below mean
    something)."""
    payloads = _payloads(tmp_path)
    for name, data in payloads.items():
        (tmp_path / "canary").unlink(missing_ok=True)
        subprocess.run([sys.executable, "-c", "import pickle, sys; pickle.loads(sys.stdin.buffer.read())"],
                       input=data, capture_output=True, cwd=HERE)
        assert (tmp_path / "canary").exists(), name
    (tmp_path / "canary").unlink()


ENTRY_POINTS = {
    "pickle.loads": lambda data: pickle.loads(data),
    "pickle.load": lambda data: pickle.load(io.BytesIO(data)),
    "pickle.Unpickler": lambda data: pickle.Unpickler(io.BytesIO(data)).load(),
    "pickle._loads": lambda data: pickle._loads(data),
    "pickle._Unpickler": lambda data: pickle._Unpickler(io.BytesIO(data)).load(),
    "non-seekable stream": lambda data: pickle.load(io.BufferedReader(NonSeekable(data))),
    "bytearray": lambda data: pickle.loads(bytearray(data)),
}


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_every_hostile_pickle_is_refused_through_every_entry(entry, tmp_path, canary, guard):
    for name, data in _payloads(tmp_path).items():
        with pytest.raises(mlguard.UnsafeModelError) as info:
            ENTRY_POINTS[entry](data)
        assert isinstance(info.value, pickle.UnpicklingError), name
        assert info.value.result is None or info.value.result.fails(mlguard.Severity.HIGH)


def test_refusal_from_a_file_on_disk_names_it(tmp_path, canary, guard):
    path = tmp_path / "model.pkl"
    path.write_bytes(_payloads(tmp_path)["os.system-protocol4"])
    with open(path, "rb") as f, pytest.raises(mlguard.UnsafeModelError) as info:
        pickle.load(f)
    assert info.value.source == str(path)
    assert "pickle-dangerous-global" in str(info.value) and "os.system" in str(info.value)
    assert [f.rule_id for f in info.value.result.findings] == ["pickle-dangerous-global"]


BENIGN = [{"a": [1, 2.5, "x", b"y", None, True]}, (1, 2, frozenset({3})), list(range(1000)),
          {"nested": {"set": {1, 2}, "complex": 1j, "bytes": bytearray(b"ab")}}]


@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_benign_pickles_load_unchanged(entry, protocol, guard):
    for obj in BENIGN:
        assert ENTRY_POINTS[entry](pickle.dumps(obj, protocol=protocol)) == obj


def test_successive_pickles_in_one_file_keep_their_positions(tmp_path, guard):
    """pickle.load in a loop reads one pickle per call: positions are exactly the unguarded ones."""
    path = tmp_path / "many.pkl"
    with open(path, "wb") as f:
        for obj in BENIGN:
            pickle.dump(obj, f, protocol=4)
    with open(path, "rb") as f:
        expected_positions = []
        for _ in BENIGN:
            pickle.load(f)
            expected_positions.append(f.tell())
    mlguard.protect()
    for opener in (lambda: open(path, "rb"), lambda: io.BytesIO(path.read_bytes())):
        with opener() as f:
            for obj, pos in zip(BENIGN, expected_positions):
                assert pickle.load(f) == obj and f.tell() == pos


def test_a_hostile_second_pickle_is_refused_when_it_is_read(tmp_path, canary, guard):
    data = pickle.dumps({"ok": 1}) + _payloads(tmp_path)["os.system-protocol2"]
    f = io.BytesIO(data)
    assert pickle.load(f) == {"ok": 1}
    with pytest.raises(mlguard.UnsafeModelError):
        pickle.load(f)


def test_one_unpickler_reading_what_one_pickler_wrote_to_a_pipe(guard):
    """A Pickler/Unpickler pair streaming objects (their memo spans the pickles)."""
    buf = io.BytesIO()
    pickler = pickle.Pickler(buf)
    for obj in BENIGN:
        pickler.dump(obj)
    u = pickle.Unpickler(io.BufferedReader(NonSeekable(buf.getvalue())))
    assert [u.load() for _ in BENIGN] == BENIGN


def test_references_taken_before_protect_are_covered(tmp_path, canary):
    """``from pickle import loads`` and classes bound before protect() (dill binds the C Unpickler, joblib
    pickle._Unpickler) get no static scan, but find_class refuses denylisted globals anywhere."""
    captured_loads = pickle.loads
    captured_unpickler = pickle.Unpickler

    class OldSubclass(pickle.Unpickler):
        pass

    data = _payloads(tmp_path)["os.system-protocol2"]
    with mlguard.protected():
        for load in (captured_loads, lambda d: captured_unpickler(io.BytesIO(d)).load(),
                     lambda d: OldSubclass(io.BytesIO(d)).load()):
            with pytest.raises(mlguard.UnsafeModelError, match="denylisted"):
                load(data)
        # an unknown (not denylisted) global outside guarded loads passes unless strict
        assert captured_loads(pickle.dumps(Harmless(3))) == Harmless(3)
    with mlguard.protected(strict=True):
        with pytest.raises(mlguard.UnsafeModelError, match="strict"):
            captured_loads(pickle.dumps(Harmless(3)))


def test_find_class_inside_a_guarded_load_only_imports_what_the_scan_met(guard, tmp_path, canary):
    """A subclass that swaps the global at load time: the scan saw a harmless name, the loader asks for
    another one; find_class refuses what the scan did not see."""

    class Swapping(pickle.Unpickler):
        def find_class(self, module, name):
            if (module, name) == ("collections", "OrderedDict"):
                module, name = "os", "system"
            return super().find_class(module, name)

    import collections
    data = pickle.dumps(collections.OrderedDict(a=1))
    with pytest.raises(mlguard.UnsafeModelError, match="not among the globals the scan"):
        Swapping(io.BytesIO(data)).load()


def test_builtin_wrappers_are_not_refused_outside_guarded_loads():
    """Bound methods and partials pickle through builtins.getattr and functools.partial (multiprocessing
    sends them all the time): only the static scan can judge what they wrap."""
    import functools
    import zoneinfo
    data = pickle.dumps([functools.partial(int, base=2), zoneinfo.ZoneInfo._unpickle])
    captured = pickle.loads
    with mlguard.protected():
        assert captured(data)[0]("101") == 5
        assert pickle.loads(data)[0]("11") == 3  # guarded: the scan judges what they wrap


def test_unprotect_restores_every_patched_object():
    import _pickle
    before = {name: getattr(mod, attr) for name, (mod, attr) in {
        "pickle.load": (pickle, "load"), "pickle.loads": (pickle, "loads"), "pickle.Unpickler": (pickle, "Unpickler"),
        "_pickle.loads": (_pickle, "loads"), "_Unpickler.load": (pickle._Unpickler, "load"),
        "_Unpickler.find_class": (pickle._Unpickler, "find_class")}.items()}
    state = mlguard.protect()
    assert state["protected"] and "pickle.loads" in state["entry_points"]
    assert pickle.loads is not before["pickle.loads"]
    mlguard.unprotect()
    after = {"pickle.load": pickle.load, "pickle.loads": pickle.loads, "pickle.Unpickler": pickle.Unpickler,
             "_pickle.loads": _pickle.loads, "_Unpickler.load": pickle._Unpickler.load,
             "_Unpickler.find_class": pickle._Unpickler.find_class}
    assert after == before
    assert mlguard.status() | {"audit_hook": None} == {
        "protected": False, "mode": None, "strict": False, "disabled": False, "config": None,
        "entry_points": [], "audit_hook": None}


def test_protect_is_idempotent_and_thread_safe():
    import threading
    errors = []

    def worker():
        try:
            for _ in range(20):
                mlguard.protect()
                assert pickle.loads(pickle.dumps([1, 2])) == [1, 2]
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors
        assert mlguard.status()["entry_points"].count("pickle.loads") == 1
    finally:
        mlguard.unprotect()


def test_protect_imports_nothing_heavy_and_patches_libraries_imported_later(tmp_path):
    script = textwrap.dedent(f"""
        import sys, io, mlguard
        mlguard.protect()
        heavy = [m for m in ("torch", "numpy", "pandas", "onnx", "joblib", "yaml") if m in sys.modules]
        assert not heavy, heavy
        import torch
        buf = io.BytesIO()
        torch.save({{"w": torch.zeros(1)}}, buf)
        buf.seek(0)
        torch.load(buf)
        from runtime_fixtures import Canary
        buf = io.BytesIO()
        torch.save({{"w": Canary({str(tmp_path / 'canary')!r})}}, buf)
        buf.seek(0)
        try:
            torch.load(buf, weights_only=False)
        except mlguard.UnsafeModelError:
            print("refused")
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=HERE, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "refused"
    assert not (tmp_path / "canary").exists()
