"""The runtime guard's start-up hooks: the .pth installer, its CLI, autoprotect and the sitecustomize example."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import mlguard
from mlguard.runtime.install import PTH_LINE, PTH_NAME, RuntimeInstallError, install, installed, site_dir, uninstall
from tests.conftest import run_cli

REPO = Path(__file__).resolve().parents[1]
RUNTIME_ENV = ("MLGUARD_MODE", "MLGUARD_CONFIG", "MLGUARD_DISABLE", "MLGUARD_EVENT_LOG")

# Skip only while the lead's guard module has not landed; once it exists, a broken import must fail the tests.
needs_guard = pytest.mark.skipif(not (Path(mlguard.__file__).parent / "runtime" / "__init__.py").is_file(),
                                 reason="mlguard.runtime (protect/status) is not there yet")


def clean_env(**extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in RUNTIME_ENV and k != "PYTHONPATH"}
    return {**env, **extra}


def python(code: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=clean_env(**env),
                          cwd=REPO, timeout=120)


def guard_status_after_pth(directory: Path, **env: str) -> subprocess.CompletedProcess:
    """A fresh interpreter that processes ``directory``'s .pth files exactly as start-up does."""
    return python(f"import json, site; site.addsitedir({str(directory)!r}); "
                  "import mlguard.runtime as r; print(json.dumps(r.status()))", **env)


# --- install / uninstall ---------------------------------------------------------------------------------------

def test_pth_sorts_after_editable_installs():
    assert sorted(["__editable__.ml_guard-0.1.0.pth", "ml_guard.pth", PTH_NAME])[-1] == PTH_NAME


def test_install_writes_one_import_line(tmp_path):
    path = install(tmp_path)
    assert path == tmp_path / PTH_NAME
    assert path.read_text(encoding="ascii") == PTH_LINE == "import mlguard.runtime.autoprotect\n"
    assert path.stat().st_mode & 0o777 == 0o644
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left behind
    assert installed(tmp_path) == path


def test_install_is_idempotent_and_repairs(tmp_path):
    path = install(tmp_path)
    assert install(tmp_path) == path and path.read_text() == PTH_LINE
    path.write_text("garbage\n")
    install(tmp_path)
    assert path.read_text() == PTH_LINE
    assert list(tmp_path.iterdir()) == [path]


def test_uninstall(tmp_path):
    assert installed(tmp_path) is None
    assert uninstall(tmp_path) is False
    install(tmp_path)
    assert uninstall(tmp_path) is True
    assert installed(tmp_path) is None and list(tmp_path.iterdir()) == []


def test_default_site_dir_is_this_environment():
    assert site_dir() in [Path(p) for p in sys.path]


def test_missing_site_dir_is_a_clear_error(tmp_path):
    with pytest.raises(RuntimeInstallError, match=r"cannot write .*nowhere.*mlguard_autoprotect\.pth.*--site-dir"):
        install(tmp_path / "nowhere")


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="needs a POSIX user without root rights")
def test_read_only_site_dir_suggests_a_fix(tmp_path):
    tmp_path.chmod(0o555)
    try:
        with pytest.raises(RuntimeInstallError, match=r"Permission denied.*virtual environment.*--site-dir"):
            install(tmp_path)
    finally:
        tmp_path.chmod(0o755)


# --- CLI ---------------------------------------------------------------------------------------------------------

@pytest.fixture
def run(monkeypatch):
    for name in RUNTIME_ENV:
        monkeypatch.delenv(name, raising=False)
    return lambda *args: run_cli(*args)


def test_cli_install_status_uninstall(run, tmp_path):
    result = run("runtime", "status", "--site-dir", tmp_path)
    assert result.exit_code == 0 and "not installed" in result.output and "MLGUARD_MODE=(unset)" in result.output

    result = run("runtime", "install", "--site-dir", tmp_path)
    assert result.exit_code == 0 and str(tmp_path / PTH_NAME) in result.output
    assert run("runtime", "install", "--site-dir", tmp_path).exit_code == 0

    result = run("runtime", "status", "--site-dir", tmp_path, "--format", "json")
    assert result.exit_code == 0
    assert json.loads(result.output) == {
        "site_dir": str(tmp_path), "installed": True, "pth": str(tmp_path / PTH_NAME), "disabled": False,
        "active": True, "environment": dict.fromkeys(RUNTIME_ENV)}

    result = run("runtime", "uninstall", "--site-dir", tmp_path)
    assert result.exit_code == 0 and "Removed" in result.output and not (tmp_path / PTH_NAME).exists()
    result = run("runtime", "uninstall", "--site-dir", tmp_path)
    assert result.exit_code == 0 and "nothing to do" in result.output


def test_cli_status_reports_environment(run, tmp_path, monkeypatch):
    install(tmp_path)
    monkeypatch.setenv("MLGUARD_MODE", "warn")
    monkeypatch.setenv("MLGUARD_DISABLE", "1")
    result = run("runtime", "status", "--site-dir", tmp_path)
    assert result.exit_code == 0
    assert "installed" in result.output and "off because MLGUARD_DISABLE is set" in result.output
    assert "MLGUARD_MODE=warn" in result.output
    report = json.loads(run("runtime", "status", "--site-dir", tmp_path, "--format", "json").output)
    assert report["disabled"] is True and report["active"] is False
    assert report["environment"]["MLGUARD_MODE"] == "warn"


def test_cli_install_error_exits_2(run, tmp_path):
    result = run("runtime", "install", "--site-dir", tmp_path / "nowhere")
    assert result.exit_code == 2
    assert result.output.startswith("error: cannot write") and "Traceback" not in result.output


def test_cli_as_subprocess(tmp_path):
    def ml_guard(*args):
        return subprocess.run([sys.executable, "-m", "mlguard", "runtime", *args, "--site-dir", str(tmp_path)],
                              capture_output=True, text=True, env=clean_env(), timeout=120)

    assert ml_guard("install").returncode == 0
    status = ml_guard("status", "--format", "json")
    assert status.returncode == 0 and json.loads(status.stdout)["installed"] is True
    assert ml_guard("uninstall").returncode == 0
    assert json.loads(ml_guard("status", "--format", "json").stdout)["installed"] is False
    missing = subprocess.run([sys.executable, "-m", "mlguard", "runtime", "install", "--site-dir",
                              str(tmp_path / "nowhere")], capture_output=True, text=True, env=clean_env())
    assert missing.returncode == 2 and "error: cannot write" in missing.stderr


# --- the guard in a fresh interpreter --------------------------------------------------------------------------

@needs_guard
def test_pth_protects_a_fresh_interpreter(tmp_path):
    install(tmp_path)
    proc = guard_status_after_pth(tmp_path)
    assert proc.returncode == 0, proc.stderr
    status = json.loads(proc.stdout)
    assert status["protected"] is True and status["disabled"] is False
    assert "pickle.load" in status["entry_points"]
    assert "ml-guard:" not in proc.stderr


@needs_guard
def test_pth_passes_the_environment_on(tmp_path):
    install(tmp_path)
    proc = guard_status_after_pth(tmp_path, MLGUARD_MODE="warn")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["mode"] == "warn"


@needs_guard
@pytest.mark.parametrize("value", ["1", "yes"])
def test_mlguard_disable_skips_the_guard(tmp_path, value):
    install(tmp_path)
    proc = guard_status_after_pth(tmp_path, MLGUARD_DISABLE=value)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["protected"] is False
    assert proc.stderr == ""


@needs_guard
def test_broken_config_warns_in_one_line_and_python_still_runs(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    install(site)
    config = tmp_path / ".ml-guard.yml"
    config.write_text("runtime:\n  mode: enforce\n  no_such_key: 1\n")
    proc = guard_status_after_pth(site, MLGUARD_CONFIG=str(config))
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["protected"] is False
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("ml-guard: runtime guard not active: ")
    assert "no_such_key" in lines[0] and "MLGUARD_DISABLE=1" in lines[0]


@needs_guard
def test_sitecustomize_example_protects():
    code = "import json, mlguard.runtime as r; print(json.dumps(r.status()))"
    example = str(REPO / "sitecustomize_example")
    proc = python(code, PYTHONPATH=example)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["protected"] is True and proc.stderr == ""
    proc = python(code, PYTHONPATH=example, MLGUARD_DISABLE="1")
    assert proc.returncode == 0 and json.loads(proc.stdout)["protected"] is False
