import pytest

from mlguard.config import DEFAULT_EXCLUDE, Config, ConfigError
from mlguard.findings import Severity


def write(tmp_path, text):
    path = tmp_path / ".ml-guard.yml"
    path.write_text(text)
    return path


def test_defaults_when_no_file(tmp_path):
    config = Config.discover(tmp_path)
    assert config.source is None
    assert config.policy.fail_on is Severity.HIGH
    assert config.exclude == DEFAULT_EXCLUDE


def test_full_design_example_loads(tmp_path):
    write(tmp_path, """
fail_on: high
include: ['models/**']
exclude: ['tests/fixtures/**']
scanners: [pickle]
rules:
  pickle-unknown-global: {severity: low}
  format-unrecognized: {disabled: true}
pickle:
  allow_globals: ['mypkg.models.MyNet']
runtime:
  mode: warn
max_file_size: 2GB
trusted_sha256: ['""" + "a" * 64 + """']
""")
    config = Config.discover(tmp_path)
    p = config.policy
    assert config.source.endswith(".ml-guard.yml")
    assert p.fail_on is Severity.HIGH and p.mode == "warn"
    assert config.include == ("models/**",)
    assert config.exclude[-1] == "tests/fixtures/**"
    assert p.scanners == frozenset({"pickle"})
    assert p.severity_overrides == {"pickle-unknown-global": Severity.LOW}
    assert p.disabled_rules == frozenset({"format-unrecognized"})
    assert p.scanner_options["pickle"]["allow_globals"] == ("mypkg.models.MyNet",)
    assert config.max_file_size == 2 << 30
    assert p.trusted_sha256 == frozenset({"a" * 64})


def test_prior_art_alias_rule_ids_override_the_current_rule(tmp_path):
    write(tmp_path, "rules:\n  pickle-unusual-module: {severity: low}\n  pickle-bad-zip: {disabled: true}\n")
    p = Config.discover(tmp_path).policy
    assert p.severity_overrides == {"pickle-unknown-global": Severity.LOW}
    assert "archive-malformed" in p.disabled_rules


@pytest.mark.parametrize("text, fragments", [
    ("fail_on: severe\n", ["fail_on", "severe", "critical"]),
    ("colour: yes\n", ["colour", "unknown key"]),
    ("rules:\n  no-such-rule: {severity: low}\n", ["rules.no-such-rule", "unknown rule id"]),
    ("rules:\n  pickle-parse-error: {severity: loud}\n", ["rules.pickle-parse-error.severity", "loud"]),
    ("rules:\n  pickle-parse-error: {disabled: maybe}\n", ["disabled", "maybe"]),
    ("rules:\n  pickle-parse-error: {level: low}\n", ["pickle-parse-error.level", "unknown key"]),
    ("scanners: [pickle, nope]\n", ["scanners", "nope", "available"]),
    ("include: 3\n", ["include", "list of strings"]),
    ("pickle:\n  allow: [x]\n", ["pickle.allow", "allow_globals"]),
    ("pickle:\n  max_opcodes: lots\n", ["pickle.max_opcodes", "int"]),
    ("pickle:\n  max_memo: -1\n", ["pickle.max_memo", "count", "-1"]),
    ("runtime:\n  mode: block\n", ["runtime.mode", "enforce"]),
    ("max_file_size: huge\n", ["max_file_size", "huge"]),
    ("trusted_sha256: [abc]\n", ["trusted_sha256", "abc"]),
    ("- just\n- a list\n", ["top level", "mapping"]),
    ("fail_on: [unclosed\n", ["invalid YAML", "line"]),
])
def test_bad_config_errors_name_file_key_and_value(tmp_path, text, fragments):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        Config.load(path)
    message = str(info.value)
    assert str(path) in message
    for fragment in fragments:
        assert fragment in message


def test_cli_overrides_win(tmp_path):
    write(tmp_path, "fail_on: critical\nscanners: [pickle]\nexclude: ['a/**']\n")
    config = Config.discover(tmp_path).with_overrides(fail_on="low", scanners=["archive", "pickle"],
                                                       exclude=["b/**"])
    assert config.policy.fail_on is Severity.LOW
    assert config.policy.scanners == frozenset({"archive", "pickle"})
    assert config.exclude[-2:] == ("a/**", "b/**")


def test_cli_override_errors_are_config_errors():
    with pytest.raises(ConfigError, match="--scanners"):
        Config().with_overrides(scanners=["bogus"])
