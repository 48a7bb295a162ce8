"""Runtime guard: modes, configuration sources, events, the verdict cache, failing closed."""
from __future__ import annotations

import io
import json
import os
import pickle
import time
import warnings

import pytest

import mlguard
from runtime_fixtures import Harmless

BREAKING = pickle.dumps(Harmless(7))
"""Calls a class no allowlist knows (high): refused in enforce mode, yet harmless to load."""


@pytest.fixture(autouse=True)
def _clean(monkeypatch):
    for name in ("MLGUARD_MODE", "MLGUARD_CONFIG", "MLGUARD_DISABLE", "MLGUARD_STRICT", "MLGUARD_EVENT_LOG"):
        monkeypatch.delenv(name, raising=False)
    yield
    mlguard.unprotect()


@pytest.fixture
def event_log(tmp_path, monkeypatch):
    path = tmp_path / "events.jsonl"
    monkeypatch.setenv("MLGUARD_EVENT_LOG", str(path))
    return lambda: [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_enforce_refuses_with_the_scan_attached(event_log):
    mlguard.protect()
    with pytest.raises(mlguard.UnsafeModelError) as info:
        pickle.loads(BREAKING)
    assert [f.rule_id for f in info.value.result.findings] == ["pickle-unknown-call"]
    assert "runtime_fixtures.Harmless" in str(info.value) and "pickle.allow_globals" in str(info.value)
    [event] = event_log()
    assert event["verdict"] == "refused" and event["entry"] == "pickle.loads"
    assert event["source"].startswith("sha256:") and event["pid"] == os.getpid()
    assert event["findings"]["counts"] == {"high": 1}
    assert event["findings"]["top"][0]["rule"] == "pickle-unknown-call"
    assert event["caller"].startswith(__file__ + ":")
    assert time.time() - time.mktime(time.strptime(event["time"][:19], "%Y-%m-%dT%H:%M:%S")) < 86400


def test_warn_mode_loads_warns_and_records(event_log):
    mlguard.protect(mode="warn")
    with pytest.warns(mlguard.UnsafeModelWarning, match="pickle-unknown-call") as caught:
        assert pickle.loads(BREAKING) == Harmless(7)
    assert caught[0].filename == __file__
    assert [e["verdict"] for e in event_log()] == ["warned"]


def test_audit_mode_only_records(event_log):
    mlguard.protect(mode="audit")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert pickle.loads(BREAKING) == Harmless(7)
    assert [e["verdict"] for e in event_log()] == ["audited"]


def test_allowed_loads_are_recorded_too(event_log):
    mlguard.protect()
    pickle.loads(pickle.dumps([1, 2]))
    [event] = event_log()
    assert event["verdict"] == "allowed" and event["findings"] == {"counts": {}, "top": []}


def test_configuration_file_environment_and_arguments(tmp_path, monkeypatch):
    config = tmp_path / ".ml-guard.yml"
    config.write_text("pickle:\n  allow_globals: [runtime_fixtures.Harmless]\nruntime:\n  mode: audit\n")
    monkeypatch.setenv("MLGUARD_CONFIG", str(config))
    state = mlguard.protect()
    assert state["mode"] == "audit" and state["config"] == str(config)
    monkeypatch.setenv("MLGUARD_MODE", "enforce")
    assert mlguard.protect()["mode"] == "enforce"           # the environment beats the file
    assert pickle.loads(BREAKING) == Harmless(7)             # allowed by the file's allow_globals
    assert mlguard.protect(mode="warn")["mode"] == "warn"    # an argument beats the environment
    assert mlguard.protect(policy=mlguard.Policy())["config"] is None


def test_strict_from_the_configuration_file(tmp_path):
    config = tmp_path / "strict.yml"
    config.write_text("runtime:\n  strict: true\n")
    captured = pickle.loads  # taken before protect(): no static scan, only find_class
    assert mlguard.protect(str(config))["strict"] is True
    with pytest.raises(mlguard.UnsafeModelError, match="strict"):
        captured(BREAKING)


def test_bad_settings_are_clear_errors(tmp_path, monkeypatch):
    monkeypatch.setenv("MLGUARD_MODE", "block")
    with pytest.raises(ValueError, match="MLGUARD_MODE"):
        mlguard.protect()
    monkeypatch.delenv("MLGUARD_MODE")
    config = tmp_path / "bad.yml"
    config.write_text("runtime:\n  moed: warn\n")
    with pytest.raises(mlguard.ConfigError, match="runtime.moed"):
        mlguard.protect(str(config))
    assert not mlguard.status()["protected"]


def test_disable_from_the_environment(monkeypatch):
    monkeypatch.setenv("MLGUARD_DISABLE", "1")
    state = mlguard.protect()
    assert state["disabled"] and not state["protected"] and state["entry_points"] == []
    assert pickle.loads(BREAKING) == Harmless(7)


def test_verdicts_are_cached_per_file_identity(tmp_path, event_log):
    path = tmp_path / "d.pkl"
    path.write_bytes(pickle.dumps({"a": 1}))
    mlguard.protect()
    for _ in range(2):
        with open(path, "rb") as f:
            pickle.load(f)
    path.write_bytes(pickle.dumps({"a": 2}))
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 10_000_000))
    with open(path, "rb") as f:
        assert pickle.load(f) == {"a": 2}
    assert [e["cached"] for e in event_log()] == [False, True, False]


def test_fail_closed_when_the_source_cannot_be_read():
    torch = pytest.importorskip("torch")

    class Broken(io.RawIOBase):
        def readable(self):
            return True

        def readinto(self, b):
            raise RuntimeError("device went away")

    mlguard.protect()
    with pytest.raises(mlguard.UnsafeModelError, match="cannot read it to scan: device went away"):
        torch.load(Broken())
    mlguard.protect(mode="audit")
    with pytest.raises(Exception) as info:  # audit: the loader runs, and fails on its own
        torch.load(Broken())
    assert not isinstance(info.value, mlguard.UnsafeModelError)


def test_protected_context_restores_the_previous_state():
    with mlguard.protected(mode="warn"):
        assert mlguard.status()["mode"] == "warn"
        with mlguard.protected(mode="audit"):
            assert mlguard.status()["mode"] == "audit"
        assert mlguard.status()["mode"] == "warn"
    assert not mlguard.status()["protected"]
