import io
import json
import os
import subprocess
import sys
import time

import pytest

from mlguard import __version__
from mlguard.cli import _Progress
from tests.conftest import malicious_pickle, run_cli


@pytest.fixture
def run():

    def invoke(*args):
        return run_cli(*args)
    return invoke


@pytest.fixture
def demo_dir(tmp_path, run):
    result = run("demo", tmp_path / "demo")
    assert result.exit_code == 0
    return tmp_path / "demo"


def test_demo_scan_text(run, demo_dir):
    result = run("scan", demo_dir)
    assert result.exit_code == 1
    out = result.output
    assert "ML Guard — scan report" in out
    assert "models/classifier.pkl" in out and "models/backdoored.pt" in out
    assert "CRITICAL" in out and "pickle-dangerous-global" in out
    assert "backdoored/data.pkl@0x" in out
    assert "format-extension-mismatch" in out
    assert "\x1b[" not in out  # not a terminal: no colour


def test_demo_scan_json_contract(run, demo_dir):
    result = run("scan", demo_dir, "--format", "json")
    assert result.exit_code == 1
    report = json.loads(result.output)
    assert set(report) == {"tool", "version", "files_scanned", "duration_seconds", "summary", "findings", "errors"}
    assert report["tool"] == "ml-guard" and report["version"] == __version__
    assert report["files_scanned"] == 8
    assert list(report["summary"]) == ["critical", "high", "medium", "low", "info"]
    assert report["summary"]["critical"] == 2
    finding = next(f for f in report["findings"] if f["path"] == "models/backdoored.pt")
    assert set(finding) == {"rule_id", "severity", "scanner", "message", "path", "location", "snippet", "evidence",
                            "fingerprint"}
    assert set(finding["location"]) == {"line", "column", "offset", "member"}
    assert finding["location"]["member"] == "backdoored/data.pkl"
    assert finding["evidence"]["module"] == "os" and finding["evidence"]["name"] == "system"
    assert report["errors"] == []


def test_fail_on_controls_exit_code(run, demo_dir):
    assert run("scan", demo_dir / "models" / "clean_state.pkl").exit_code == 0
    assert run("scan", demo_dir / "models" / "weights.safetensors").exit_code == 0  # medium < high
    assert run("scan", demo_dir / "models" / "weights.safetensors", "--fail-on", "medium").exit_code == 1


def test_single_file_paths_are_file_names(run, demo_dir):
    report = json.loads(run("scan", demo_dir / "models" / "classifier.pkl", "--format", "json").output)
    assert {f["path"] for f in report["findings"]} == {"classifier.pkl"}


def test_output_file_and_quiet(run, demo_dir, tmp_path):
    out = tmp_path / "report.json"
    result = run("scan", demo_dir, "--format", "json", "-o", out, "-q")
    assert result.exit_code == 1
    assert json.loads(out.read_text())["summary"]["critical"] == 2
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".report.json")]


def test_config_in_root_is_used_and_flags_override(run, demo_dir):
    (demo_dir / ".ml-guard.yml").write_text("fail_on: critical\nexclude: ['models/classifier.pkl', 'models/backdoored.pt']\n")
    assert run("scan", demo_dir).exit_code == 0
    assert run("scan", demo_dir, "--fail-on", "medium").exit_code == 1


def test_bad_config_exit_2_with_clear_message(run, tmp_path):
    (tmp_path / ".ml-guard.yml").write_text("fail_on: sometimes\n")
    result = run_cli("scan", str(tmp_path))
    assert result.exit_code == 2
    assert ".ml-guard.yml: fail_on" in result.output and "sometimes" in result.output
    assert "Traceback" not in result.output


def test_usage_errors_exit_2(run, tmp_path):
    assert run_cli("scan", str(tmp_path / "missing")).exit_code == 2
    assert run_cli("scan", str(tmp_path), "--fail-on", "loud").exit_code == 2
    result = run_cli("scan", str(tmp_path), "--scanners", "nope")
    assert result.exit_code == 2 and "unknown scanner 'nope'" in result.output


def test_multiple_paths_keep_findings_apart(run, tmp_path):
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "m.pkl").write_bytes(malicious_pickle())
    report = json.loads(run("scan", tmp_path / "a", tmp_path / "b", "--format", "json").output)
    paths = sorted({f["path"] for f in report["findings"]})
    assert paths == [f"{tmp_path}/a/m.pkl", f"{tmp_path}/b/m.pkl"]
    assert report["files_scanned"] == 2


def test_rules_and_explain(run):
    listing = run("rules").output
    assert "pickle-dangerous-global" in listing and "critical" in listing
    rules = json.loads(run("rules", "--format", "json").output)
    assert any(r["id"] == "pickle-unknown-global" and "pickle-unusual-module" in r["aliases"] for r in rules)
    explained = run("explain", "pickle-unusual-module")
    assert explained.exit_code == 0 and "pickle-unknown-global" in explained.output and "Remediation" in explained.output
    assert run_cli("explain", "nope").exit_code == 2


def test_version_names_the_engine(run):
    out = run("--version").output
    assert out.startswith(f"ml-guard {__version__} (engine: ")
    assert "native" in out or "python" in out


def test_console_script_end_to_end(tmp_path):
    """The installed `ml-guard` entry point, as a user runs it."""
    exe = os.path.join(os.path.dirname(sys.executable), "ml-guard")
    if not os.path.exists(exe):
        pytest.skip("console script not installed (run `pip install -e .`)")
    subprocess.run([exe, "demo", str(tmp_path / "d")], check=True, capture_output=True)
    proc = subprocess.run([exe, "scan", str(tmp_path / "d"), "--format", "json"], capture_output=True, text=True)
    assert proc.returncode == 1, proc.stderr
    assert json.loads(proc.stdout)["summary"]["critical"] == 2


def test_help_lists_every_command_but_the_earlier_spellings(run):
    result = run("--help")
    assert result.exit_code == 0
    for command in ("scan", "baseline", "rules", "explain", "demo", "sbom", "compliance", "db", "runtime"):
        assert f"\n  {command} " in result.stdout
    assert "cve-update" not in result.stdout and "SUPPRESS" not in result.stdout
    assert "usage: ml-guard db [options] COMMAND" in run("db", "--help").stdout
    assert "--fail-on SEVERITY" in run("scan", "--help").stdout


def test_a_missing_command_is_a_usage_error_with_help(run):
    for args in ((), ("db",), ("runtime",)):
        result = run(*args)
        assert result.exit_code == 2 and "commands:" in result.stderr and result.stdout == ""
    result = run("frobnicate")
    assert result.exit_code == 2 and "invalid choice: 'frobnicate'" in result.stderr


def test_bad_arguments_name_the_argument(run, tmp_path):
    for args, message in ((("scan", tmp_path, "--jobs", "0"), "not a number from 1 to 64"),
                          (("scan", tmp_path, "-o", tmp_path), "is a folder, not a file"),
                          (("scan", tmp_path, "--config", tmp_path / "none.yml"), "does not exist"),
                          (("demo", tmp_path / "f.txt"), "is a file, not a folder")):
        (tmp_path / "f.txt").write_text("x")
        result = run(*args)
        assert result.exit_code == 2 and message in result.stderr and "Traceback" not in result.stderr


def test_an_unwritable_report_is_a_usage_error(run, tmp_path):
    result = run("scan", tmp_path, "-o", tmp_path / "no" / "such" / "report.json")
    assert result.exit_code == 2 and result.stderr.startswith("error: cannot write")


def test_fail_on_ignores_case(run, demo_dir):
    assert run("scan", demo_dir / "models" / "weights.safetensors", "--fail-on", "MEDIUM").exit_code == 1


def test_progress_bar_after_half_a_second(monkeypatch):
    err = io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    progress = _Progress("Scanning")
    progress(1, 4)
    assert err.getvalue() == ""  # quick scans show no bar
    monkeypatch.setattr(time, "monotonic", lambda: progress._start + 1)
    progress(2, 4)
    progress(4, 4)
    progress.close()
    assert err.getvalue().split("\r")[1:] == ["Scanning  [" + "#" * 15 + "-" * 15 + "]  2/4",
                                              "Scanning  [" + "#" * 30 + "]  4/4\n"]
