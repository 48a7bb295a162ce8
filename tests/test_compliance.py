"""Compliance evidence: the mapping data, the evidence, and the PDF/HTML/JSON renderings (PDF text extracted
with pypdf)."""
from __future__ import annotations

import hashlib
import io
import json

import pytest

from mlguard import Policy, scan_tree
from mlguard.cli import COMPLIANCE_STANDARDS
from mlguard.demo import write_demo
from mlguard.report.compliance import canonical, digest, evidence, render, standards
from mlguard.rules import catalog, load_data
from tests.conftest import run_cli

pypdf = pytest.importorskip("pypdf")

CONTROLS = {
    "eu-ai-act": ["Art. 9", "Art. 10", "Art. 11", "Art. 12", "Art. 13", "Art. 15"],
    "nist-ai-rmf": ["MEASURE 2.7", "MEASURE 2.10", "MANAGE 4.1"],
    "iso-27001": ["A.5.23", "A.5.34", "A.8.4", "A.8.7", "A.8.8", "A.8.25", "A.8.28"],
    "soc2": ["CC6.1", "CC6.6", "CC6.7", "CC6.8", "CC7.1", "CC7.2"],
}


def test_the_mapping_covers_the_controls_and_uses_catalog_tags():
    data = load_data("compliance.yaml")
    assert {k: [c["id"] for c in s["controls"]] for k, s in data["standards"].items()} == CONTROLS
    assert tuple(standards()) == COMPLIANCE_STANDARDS
    tags = {t for r in catalog() for t in r.tags}
    for s in data["standards"].values():
        for c in s["controls"]:
            assert set(c["tags"]) <= tags, c["id"]
            assert c["claim"] and c["limits"]


@pytest.fixture(scope="module")
def demo_result(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo")
    write_demo(root)
    return scan_tree(root)


def pdf_text(data: bytes) -> str:
    reader = pypdf.PdfReader(io.BytesIO(data))
    return " ".join(" ".join(page.extract_text().split()) for page in reader.pages)


@pytest.mark.parametrize("standard", CONTROLS)
def test_pdf_holds_verdict_controls_evidence_appendix_and_digest(standard, demo_result):
    data = evidence(demo_result, standard, Policy())
    text = pdf_text(render(data, "pdf"))
    assert "Verdict: FAIL" in text and standards()[standard] in text
    for control in CONTROLS[standard]:
        assert control in text
    assert "not a conformity assessment" in text                  # the caveat
    assert "models/classifier.pkl" in text and "pickle-dangerous-global" in text
    assert "Appendix: all findings" in text
    assert digest(data) in text.replace(" ", "")
    assert digest(data) == hashlib.sha256(canonical(data)).hexdigest()


def test_control_statuses(demo_result):
    data = evidence(demo_result, "iso-27001", Policy())
    status = {c["id"]: c["status"] for c in data["controls"]}
    assert status["A.8.7"] == "findings"                           # malware: the os.system pickles
    assert status["A.5.23"] == "observations"                      # secrets: the demo's fake token (low)
    cited = [f for c in data["controls"] if c["id"] == "A.8.7" for f in c["findings"]]
    assert {"path": "models/classifier.pkl", "where": "offset 0x36"}.items() <= \
        next(f for f in cited if f["path"] == "models/classifier.pkl").items()


def test_a_clean_tree_passes(tmp_path):
    (tmp_path / "notes.txt").write_text("hello\n")
    data = evidence(scan_tree(tmp_path), "soc2", Policy())
    assert data["verdict"] == "pass" and {c["status"] for c in data["controls"]} <= {"no findings", "not assessed"}
    assert "Verdict: PASS" in pdf_text(render(data, "pdf"))


def test_html_embeds_the_evidence_and_escapes(tmp_path, demo_result):
    data = evidence(demo_result, "eu-ai-act", Policy())
    html = render(data, "html").decode()
    embedded = html.split('<script type="application/json" id="evidence">')[1].split("</script>")[0]
    assert json.loads(embedded) == data
    assert "<script>" not in html.split('id="evidence"')[0]
    assert "Art. 15" in html and digest(data) in html


def test_reproducible_with_source_date_epoch(monkeypatch, demo_result):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1767225600")
    first = evidence(demo_result, "soc2", Policy())
    assert first["generated"] == "2026-01-01T00:00:00Z"
    assert canonical(first) == canonical(evidence(demo_result, "soc2", Policy()))


def test_cli(tmp_path):
    root = tmp_path / "demo"
    write_demo(root)
    out = run_cli("compliance", str(root), "--standard", "iso-27001", "-o", str(tmp_path / "r.pdf"),
                  "--evidence", str(tmp_path / "e.json"))
    assert out.exit_code == 1, out.output
    evidence_bytes = (tmp_path / "e.json").read_bytes()
    assert hashlib.sha256(evidence_bytes).hexdigest() in pdf_text((tmp_path / "r.pdf").read_bytes()).replace(" ", "")
    out = run_cli("compliance", str(root), "--standard", "soc2", "--format", "json")
    assert json.loads(out.output)["standard"] == "soc2"
    out = run_cli("compliance", str(root), "--standard", "soc2")
    assert out.exit_code == 2 and "-o report.pdf" in out.output
    out = run_cli("compliance", str(root), "--standard", "gdpr", "-o", str(tmp_path / "x.pdf"))
    assert out.exit_code == 2
    clean = tmp_path / "clean"
    clean.mkdir()
    out = run_cli("compliance", str(clean), "--standard", "nist-ai-rmf", "-o", str(tmp_path / "c.html"))
    assert out.exit_code == 0 and (tmp_path / "c.html").read_text().startswith("<!doctype html>")
