from pathlib import Path

from mlguard.findings import Severity
from mlguard.rules import catalog, load_data
from mlguard.rules.docs import DOC_PATH, render
from mlguard.scanners import registry


def test_docs_rules_md_matches_catalog():
    assert DOC_PATH.read_text(encoding="utf-8") == render(catalog()), (
        "docs/rules.md is out of date: run `python -m mlguard.rules.docs --write`")


def test_every_rule_is_documented_by_id():
    text = DOC_PATH.read_text(encoding="utf-8")
    for rule in catalog():
        assert f"### {rule.id}\n" in text


def test_catalog_entries_are_complete_and_unique():
    cat = catalog()
    ids = [r.id for r in cat]
    assert len(ids) == len(set(ids))
    aliases = [a for r in cat for a in r.aliases]
    assert len(aliases) == len(set(aliases))
    assert not set(aliases) & set(ids)
    for rule in cat:
        assert rule.id == rule.id.lower() and " " not in rule.id
        assert isinstance(rule.severity, Severity)
        assert rule.cwe is None or rule.cwe.startswith("CWE-")


def test_rule_scanners_exist():
    known = set(registry()) | {"core"}
    for rule in catalog():
        assert rule.scanner in known, rule.id


def test_aliases_resolve_to_their_rule():
    cat = catalog()
    assert cat.canonical("pickle-unusual-module") == "pickle-unknown-global"
    assert cat["pickle-bad-zip"].id == "archive-malformed"
    assert cat.canonical("no-such-rule") is None


def test_pickle_globals_safe_entries_are_exact_names_with_reasons():
    data = load_data("pickle_globals.yaml")
    for name, reason in data["safe"].items():
        assert "." in name and reason, name
        module = name.rsplit(".", 1)[0]
        assert module not in data["dangerous_modules"], name


def test_prior_art_rule_ids_we_implement_are_accepted(shared_dir):
    readme = (shared_dir / "prior-art" / "README.md").read_text()
    ids = readme.split("overrides keep working):", 1)[1].split()
    implemented = [i for i in ids if i.startswith(("pickle-",))]
    assert implemented
    missing = [i for i in implemented if i not in catalog()]
    # Not every prior-art pickle rule has a counterpart yet (see docs/rules.md); the core ones must.
    for rule_id in ("pickle-dangerous-global", "pickle-suspicious-module", "pickle-unusual-module",
                    "pickle-stack-global-opaque", "pickle-parse-error", "pickle-too-many-opcodes", "pickle-bad-zip"):
        assert rule_id in catalog(), rule_id
    assert set(missing) <= {"pickle-deprecated-opcode"}


def test_data_cache_follows_the_yaml(tmp_path, monkeypatch):
    import json
    import yaml
    from mlguard import rules as rules_pkg
    monkeypatch.setattr(rules_pkg, "_CACHE", str(tmp_path / "cache"))
    expected = yaml.safe_load((Path(rules_pkg.__file__).parent / "onnx_ops.yaml").read_text(encoding="utf-8"))
    assert rules_pkg.load_data("onnx_ops.yaml") == expected          # miss: parsed, then cached
    cached = tmp_path / "cache" / "onnx_ops.yaml.json"
    entry = json.loads(cached.read_text(encoding="utf-8"))
    assert entry["data"] == expected
    entry["data"] = {"marker": True}                                  # a hit returns the cache
    cached.write_text(json.dumps(entry), encoding="utf-8")
    assert rules_pkg.load_data("onnx_ops.yaml") == {"marker": True}
    entry["sha256"] = "0" * 64                                        # stale: ignored and rewritten
    cached.write_text(json.dumps(entry), encoding="utf-8")
    assert rules_pkg.load_data("onnx_ops.yaml") == expected
    cached.write_text("{not json", encoding="utf-8")                  # corrupt: ignored
    assert rules_pkg.load_data("onnx_ops.yaml") == expected
    assert json.loads(cached.read_text(encoding="utf-8"))["data"] == expected


def test_data_cache_is_optional(tmp_path, monkeypatch):
    import yaml
    from mlguard import rules as rules_pkg
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.setattr(rules_pkg, "_CACHE", str(blocker / "cache"))   # cannot be created
    expected = yaml.safe_load((Path(rules_pkg.__file__).parent / "onnx_ops.yaml").read_text(encoding="utf-8"))
    assert rules_pkg.load_data("onnx_ops.yaml") == expected
    assert list(tmp_path.iterdir()) == [blocker]
