"""CycloneDX SBOM: valid per cyclonedx-python-lib's strict 1.6 validator; artifacts, models, libraries and
findings linked as the issue asks."""
from __future__ import annotations

import hashlib
import io
import json

import pytest

from mlguard.advisories.database import update
from mlguard.config import Config
from mlguard.demo import write_demo
from mlguard.report.cyclonedx import build
from tests.conftest import run_cli
from osv_records import STANDARD, write_zip
from runtime_fixtures import Canary

validation = pytest.importorskip("cyclonedx.validation.json")
from cyclonedx.schema import SchemaVersion  # noqa: E402


def valid(text: str) -> dict:
    assert validation.JsonStrictValidator(SchemaVersion.V1_6).validate_str(text) is None
    return json.loads(text)


@pytest.fixture
def project(tmp_path):
    torch = pytest.importorskip("torch")
    root = tmp_path / "project"
    write_demo(root)
    torch.save({"w": torch.zeros(3)}, root / "models" / "clean.pt")
    buf = io.BytesIO()
    torch.save({"hook": Canary(tmp_path / "canary")}, buf)
    (root / "models" / "hostile.pt").write_bytes(buf.getvalue())
    (root / "requirements.txt").write_text("flask-thing==1.5.0\nevil-typo==1.0\nnumpy>=1.24\n")
    return root


def test_sbom_components_hashes_and_links(project, tmp_path):
    db = tmp_path / "osv.sqlite"
    update(db, write_zip(tmp_path / "all.zip", STANDARD))
    config = Config().with_overrides(options={"dependencies": {"db": str(db)}})
    bom = valid(build(str(project), config))
    assert bom["specVersion"] == "1.6" and bom["metadata"]["component"]["name"] == "project"
    components = {c["bom-ref"]: c for c in bom["components"]}
    clean = components["file:models/clean.pt"]
    assert clean["type"] == "machine-learning-model"
    props = {p["name"]: p["value"] for p in clean["properties"]}
    assert props["mlguard:format"] == "zip" and props["mlguard:framework"] == "pytorch"
    assert clean["hashes"] == [{"alg": "SHA-256",
                                "content": hashlib.sha256((project / "models/clean.pt").read_bytes()).hexdigest()}]
    assert components["file:README.md"]["type"] == "file"
    assert components["pkg:pypi/flask-thing@1.5.0"]["purl"] == "pkg:pypi/flask-thing@1.5.0"
    assert "pkg:pypi/numpy" in components                        # unpinned: no version in the purl
    deps = {d["ref"]: set(d.get("dependsOn", [])) for d in bom["dependencies"]}
    assert "pkg:pypi/evil-typo@1.0" in deps["file:requirements.txt"]
    assert "file:models/hostile.pt" in deps["project"]
    vulns = {v["id"]: v for v in bom["vulnerabilities"]}
    assert vulns["pickle-dangerous-global"]["affects"][0]["ref"] in components
    assert vulns["MAL-2024-0005"]["affects"] == [{"ref": "pkg:pypi/evil-typo@1.0"}]
    flask = vulns["GHSA-aaaa-0001"]
    assert flask["affects"] == [{"ref": "pkg:pypi/flask-thing@1.5.0"}]
    assert flask["ratings"][0] == {"method": "CVSSv31", "score": 9.8, "severity": "critical",
                                   "vector": "AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"}  # CycloneDX drops the prefix
    assert flask["cwes"] == [1395]
    refs = {v["affects"][0]["ref"] for v in bom["vulnerabilities"]}
    assert refs <= set(components)


def test_sbom_cli_writes_atomically_and_scans_single_files(project, tmp_path):
    out = tmp_path / "bom.json"
    result = run_cli("sbom", str(project), "-o", str(out))
    assert result.exit_code == 0, result.output
    valid(out.read_text())
    single = run_cli("sbom", str(project / "models" / "hostile.pt"))
    bom = valid(single.output)
    assert [c["name"] for c in bom["components"]] == ["hostile.pt"]
    assert bom["vulnerabilities"][0]["id"] == "pickle-dangerous-global"
