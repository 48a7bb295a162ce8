"""The secrets scanner: every rule of rules/secrets.yaml against generated positives and its counterexamples,
ML look-alikes, notebooks, inline allow, baselines, and redaction in every output format.

Positives are generated here with real structure: GitHub/npm tokens with their CRC32, PyPI macaroons with a
location, JWTs from JSON, PEM keys from `openssl`, OpenSSH keys from `ssh-keygen`.
"""
from __future__ import annotations

import base64
import json
import random
import re
import shutil
import string
import struct
import subprocess
import sys
import zlib
from functools import lru_cache
from pathlib import Path

import pytest

from mlguard import scan_bytes, scan_tree
from mlguard.config import Config
from mlguard.engine import SecretRule, SecretRuleSet, secret_matches
from mlguard.findings import Severity
from mlguard.report import REPORTERS
from mlguard.report.interface import RenderOptions
from mlguard.rules import catalog
from mlguard.secrets import is_placeholder, redact, rules
from tests.conftest import run_cli

RULES = {r.id: r for r in rules()}
CLASSES = {
    "alnum": string.ascii_letters + string.digits, "alpha": string.ascii_letters, "lower": string.ascii_lowercase,
    "upper": string.ascii_uppercase, "upalnum": string.ascii_uppercase + string.digits, "digits": string.digits,
    "hex": "0123456789abcdef", "HEX": "0123456789ABCDEF", "base32": string.ascii_uppercase + "234567",
    "base64": string.ascii_letters + string.digits + "+/", "b64url": string.ascii_letters + string.digits + "-_",
    "bech32": "QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L",
}
BASE62 = string.digits + string.ascii_uppercase + string.ascii_lowercase


# --- generators --------------------------------------------------------------------------------------------

def fill(template: str, rng: random.Random) -> str:
    """Replace each ``{CLASS:N}`` with N random characters of CLASS."""
    return re.sub(r"\{(\w+):(\d+)\}", lambda m: "".join(rng.choice(CLASSES[m[1]]) for _ in range(int(m[2]))),
                  template)


def github_style(prefix: str, rng: random.Random) -> str:
    """prefix + 30 random base62 + base62(CRC32 of those 30), 6 digits (GitHub classic and npm tokens)."""
    body = fill("{alnum:30}", rng)
    crc, digits = zlib.crc32(body.encode()), ""
    for _ in range(6):
        crc, r = divmod(crc, 62)
        digits = BASE62[r] + digits
    return prefix + body + digits


def pypi_token(location: str, rng: random.Random) -> str:
    """A version-2 macaroon (location, identifier, EOS, one caveat, EOS, signature) as PyPI prints it."""
    def field(kind: int, value: bytes) -> bytes:
        return bytes([kind, len(value)]) + value
    identifier = json.dumps({"version": 1, "permissions": "user"}).encode()
    raw = (b"\x02" + field(1, location.encode()) + field(2, identifier) + b"\x00"
           + field(2, b'{"version": 1, "permissions": {"projects": ["mlguard-demo"]}}') + b"\x00\x00"
           + field(6, bytes(rng.randrange(256) for _ in range(32))))
    return "pypi-" + base64.urlsafe_b64encode(raw).decode().rstrip("=")


def b64url_json(obj) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")


def make_jwt(rng: random.Random, alg: str = "HS256") -> str:
    header = b64url_json({"alg": alg, "typ": "JWT"})
    payload = b64url_json({"sub": "user-42", "iss": "https://auth.corp.net", "exp": 1893456000})
    return f"{header}.{payload}." + ("" if alg == "none" else fill("{b64url:43}", rng))


@lru_cache(maxsize=None)
def openssl_key(kind: str) -> str:
    """A fresh private key in PEM: rsa (PKCS#1), pkcs8, ec, encrypted (PKCS#8) or legacy-encrypted."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed (the `cryptography` package is not either): PEM keys not generated")
    commands = {
        "rsa": "openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 | openssl rsa -traditional",
        "pkcs8": "openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048",
        "ec": "openssl ecparam -name prime256v1 -genkey -noout",
        "encrypted": "openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -aes256 -pass pass:hunter22",
        "legacy-encrypted": "openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048"
                            " | openssl rsa -traditional -aes128 -passout pass:hunter22",
    }
    out = subprocess.run(commands[kind], shell=True, check=True, capture_output=True, text=True).stdout
    return out.strip()


@lru_cache(maxsize=None)
def openssh_key(passphrase: str = "") -> str:
    if shutil.which("ssh-keygen") is None:
        pytest.skip("ssh-keygen is not installed: OpenSSH keys not generated")
    import tempfile
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "id"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", passphrase, "-C", "ci", "-f", str(path)],
                       check=True, capture_output=True)
        return path.read_text().strip()


def pgp_key(rng: random.Random) -> str:
    """An armored block whose first packet is a secret-key packet (new format, tag 5), as gpg exports."""
    packet = bytes([4]) + struct.pack(">I", 1700000000) + bytes([22]) + bytes(rng.randrange(256) for _ in range(90))
    body = base64.b64encode(bytes([0xC5, len(packet)]) + packet).decode()
    lines = "\n".join(body[i:i + 64] for i in range(0, len(body), 64))
    return (f"-----BEGIN PGP PRIVATE KEY BLOCK-----\n\n{lines}\n={fill('{base64:4}', rng)}\n"
            "-----END PGP PRIVATE KEY BLOCK-----")


def make_secret(spec: str, rng: random.Random) -> str:
    """A secret from a rule's ``example.secret``: a template, or ``@generator[:argument]``."""
    if not spec.startswith("@"):
        return fill(spec, rng)
    name, _, arg = spec[1:].partition(":")
    if name == "github":
        return github_style(arg, rng)
    if name == "npm":
        return github_style("npm_", rng)
    if name == "pypi":
        return pypi_token(arg, rng)
    if name == "jwt":
        return make_jwt(rng, arg or "HS256")
    if name == "pem":
        kind, _, form = arg.partition("-")
        key = openssl_key(kind)
        return key.replace("\n", "\\n") if form == "json" else key
    if name == "pem-base64":
        return base64.b64encode(openssl_key(arg).encode() + b"\n").decode()
    if name == "openssh":
        return openssh_key(arg)
    if name == "pgp":
        return pgp_key(rng)
    if name == "docker-auth":
        return base64.b64encode(f"mlbot:{fill('{alnum:20}', rng)}".encode()).decode()
    raise AssertionError(f"unknown generator {spec!r}")


def example(rule_id: str, seed: int = 0) -> tuple[str, str]:
    """(text, secret) of a rule's example."""
    rng = random.Random(f"{rule_id}/{seed}")
    rule = RULES[rule_id]
    secret = make_secret(rule.example["secret"], rng)
    return fill(rule.example["text"], rng).replace("{secret}", secret), secret


def findings(text: str | bytes, name: str = "settings.txt", policy=None):
    data = text.encode() if isinstance(text, str) else text
    return [f for f in scan_bytes(data, name, policy).findings if f.scanner == "secrets"]


def dumped(finding) -> str:
    return json.dumps(finding.to_dict(), ensure_ascii=False)


# --- the rules ------------------------------------------------------------------------------------------

def test_every_rule_is_in_the_catalog_and_has_an_example():
    cat = catalog()
    assert len(RULES) >= 60
    ids = {r.id for r in cat if r.scanner == "secrets"}
    assert set(RULES) == ids - {"secrets-file-too-large"}
    for rule in cat:
        if rule.scanner == "secrets":
            assert {"secrets", "credentials"} <= set(rule.tags), rule.id
    for rule in RULES.values():
        assert set(rule.example) == {"text", "secret"} and "{secret}" in rule.example["text"], rule.id


def test_prior_art_secret_rule_ids_are_kept(shared_dir):
    readme = (shared_dir / "prior-art" / "README.md").read_text()
    ids = [i for i in readme.split("overrides keep working):", 1)[1].split() if i.startswith("secret")]
    assert len(ids) == 16
    assert [i for i in ids if i not in catalog()] == []


@pytest.mark.parametrize("rule_id", sorted(RULES))
def test_every_pattern_compiles_in_both_engines(rule_id):
    rule = RULES[rule_id]
    assert "secret" in re.compile(rule.pattern.encode()).groupindex
    ruleset = SecretRuleSet([SecretRule(rule.id, rule.keywords, rule.pattern, rule.window, rule.min_entropy)])
    try:
        secret_matches(b"", ruleset, engine="native")   # loads the extension
    except ImportError as exc:
        pytest.skip(f"native engine unavailable, only Python re was checked: {exc}")
    if not hasattr(sys.modules["mlguard_rs"], "SecretRules"):
        pytest.skip("native engine built without secret rules: only Python re was checked")
    text = example(rule_id)[0].encode()   # has the rule's keyword: each engine compiles the regex for it
    assert secret_matches(text, ruleset, engine="native") == secret_matches(text, ruleset, engine="python") != []


@pytest.mark.parametrize("rule_id", sorted(RULES))
def test_every_rule_finds_its_generated_example(rule_id):
    for seed in range(3):
        text, secret = example(rule_id, seed)
        found = [f for f in findings(text) if f.rule_id == rule_id]
        assert len(found) == 1, (rule_id, seed, [f.rule_id for f in findings(text)])
        finding = found[0]
        assert finding.snippet == redact(secret, RULES[rule_id].prefix)
        assert finding.severity == catalog()[rule_id].severity, finding.message
        assert finding.evidence["length"] == len(secret)
        assert secret not in dumped(finding)


@pytest.mark.parametrize("rule_id", sorted(r.id for r in RULES.values() if r.counterexamples))
def test_counterexamples_are_not_reported(rule_id):
    for text in RULES[rule_id].counterexamples:
        assert [f.rule_id for f in findings(text) if f.rule_id == rule_id] == [], text


@pytest.mark.parametrize("body", ["EXAMPLEKEY1234567", "xxxxxxxxxxxxxxxx", "<your-api-key>", "${OPENAI_API_KEY}",
                                  "$HF_TOKEN", "os.environ", "0000000000000000", "abababababababab",
                                  "abcdefghijklmnop", "0123456789abcdef", "YOUR_API_KEY_HERE", "********"])
def test_placeholders(body):
    assert is_placeholder(body)


@pytest.mark.parametrize("body", ["R3m0v3dF4k3T0k3nF0rD3m0", "x7Kq2mPz9LwN4vB8", "da39a3ee5e6b4b0d3255"])
def test_random_bodies_are_not_placeholders(body):
    assert not is_placeholder(body)


# --- validators through the scanner ---------------------------------------------------------------------

@pytest.mark.parametrize("prefix, rule_id", [("ghp_", "secret-github-pat"), ("gho_", "secret-github-oauth-token"),
                                             ("npm_", "secret-npm-token")])
def test_checksum_failing_tokens_are_low(prefix, rule_id):
    token = github_style(prefix, random.Random(1))
    broken = token[:-1] + ("A" if token[-1] != "A" else "B")
    [finding] = findings(f"TOKEN={broken}\n")
    assert (finding.rule_id, finding.severity) == (rule_id, Severity.LOW)
    assert finding.evidence["checksum"] == "invalid" and "checksum" in finding.message
    [valid] = findings(f"TOKEN={token}\n")
    assert valid.severity == catalog()[rule_id].severity and valid.evidence["checksum"] == "valid"


def test_demo_token_is_reported_as_a_likely_fake(tmp_path):
    from mlguard.demo import write_demo
    write_demo(tmp_path)
    [finding] = [f for f in scan_tree(tmp_path).findings if f.scanner == "secrets"]
    assert (finding.path, finding.rule_id, finding.severity) == (".env", "secret-github-pat", Severity.LOW)


def test_pypi_token_locations():
    rng = random.Random(2)
    [test_pypi] = findings(pypi_token("test.pypi.org", rng))
    assert test_pypi.severity == Severity.MEDIUM and test_pypi.evidence["location"] == "test.pypi.org"
    [other] = findings(pypi_token("pypi.evil.example", rng))
    assert other.severity == Severity.LOW
    [garbage] = findings("pypi-Ag" + fill("{b64url:80}", rng) + "\n")
    assert garbage.severity == Severity.LOW and garbage.evidence["macaroon"] == "invalid"


def test_unsigned_jwt_is_noted():
    [finding] = findings(f"token: {make_jwt(random.Random(3), 'none')}\n")
    assert finding.rule_id == "secret-jwt" and "alg: none" in finding.message
    assert finding.evidence["unsigned"] is True and finding.evidence["alg"] == "none"


@pytest.mark.parametrize("kind", ["encrypted", "legacy-encrypted"])
def test_encrypted_pem_keys_are_medium(kind):
    [finding] = findings(openssl_key(kind) + "\n")
    assert (finding.rule_id, finding.severity) == ("secret-private-key", Severity.MEDIUM)
    assert finding.evidence["encrypted"] is True


def test_ec_pem_key_and_encrypted_openssh_key():
    [ec] = findings(openssl_key("ec"))
    assert (ec.rule_id, ec.severity, ec.evidence["key_type"]) == ("secret-private-key", Severity.CRITICAL, "EC")
    [ssh] = findings(openssh_key("correct horse battery"))
    assert (ssh.rule_id, ssh.severity) == ("secret-openssh-private-key", Severity.MEDIUM)
    assert ssh.evidence["cipher"] != "none" and ssh.evidence["key_type"] == "ssh-ed25519"


@pytest.mark.parametrize("kind", ["RSA PRIVATE KEY", "PRIVATE KEY", "OPENSSH PRIVATE KEY", "PGP PRIVATE KEY BLOCK"])
def test_key_blocks_whose_body_is_not_a_key_are_not_reported(kind):
    junk = base64.b64encode(random.Random(11).randbytes(900)).decode()
    body = "\n".join(junk[i:i + 64] for i in range(0, len(junk), 64))
    assert findings(f"-----BEGIN {kind}-----\n{body}\n-----END {kind}-----\n") == []


def test_url_password_on_a_local_host_is_low():
    [finding] = findings("REDIS_URL=redis://:Zq8vR2mXp4LkT9wB@localhost:6379/0\n")
    assert (finding.rule_id, finding.severity) == ("secret-connection-string-password", Severity.LOW)
    assert finding.evidence["host"] == "localhost"


# --- ML-aware file handling -----------------------------------------------------------------------------

TOKEN = github_style("ghp_", random.Random(99))
PNG_B64 = base64.b64encode(b"\x89PNG\r\n\x1a\n" + bytes(random.Random(4).randrange(256) for _ in range(3000))).decode()


def notebook(cells: list[dict]) -> str:
    """An .ipynb as nbformat writes it (one string per source line, indent 1)."""
    return json.dumps({"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}, indent=1) + "\n"


def code_cell(source: str, outputs=()) -> dict:
    return {"cell_type": "code", "execution_count": 1, "metadata": {}, "outputs": list(outputs),
            "source": source.splitlines(keepends=True)}


def line_of(raw: str, needle: str) -> int:
    return raw[:raw.index(needle)].count("\n") + 1


def test_notebook_findings_carry_the_ipynb_line_and_skip_images():
    aws = "AKIA" + fill("{base32:16}", random.Random(5))
    key = openssl_key("ec")
    raw = notebook([
        {"cell_type": "markdown", "metadata": {}, "source": ["# Training\n", "Uses the hub.\n"]},
        code_cell(f"import os\nfrom huggingface_hub import login\nlogin(token='{TOKEN}')\n", [
            {"output_type": "stream", "name": "stdout", "text": ["logged in\n", f"aws key {aws}\n"]},
            {"output_type": "display_data", "metadata": {},
             "data": {"image/png": PNG_B64 + "\n" + github_style("ghp_", random.Random(6)),
                      "text/plain": ["<Figure size 640x480 with 1 Axes>"]}},
        ]),
        code_cell(f"KEY = '''{key}'''\n"),
    ])
    found = {f.rule_id: f for f in findings(raw, "train.ipynb")}
    assert set(found) == {"secret-github-pat", "secret-aws-access-key", "secret-private-key"}
    assert found["secret-github-pat"].location.line == line_of(raw, TOKEN)
    assert found["secret-github-pat"].evidence["cell"] == 2
    assert found["secret-aws-access-key"].location.line == line_of(raw, aws)
    assert found["secret-private-key"].location.line == line_of(raw, "-----BEGIN EC")
    assert found["secret-private-key"].evidence["cell"] == 3


def test_notebook_error_tracebacks_are_searched():
    secret = fill("{alnum:24}", random.Random(7))
    url = f"https://ml:{secret}@registry.corp.net/v2"
    raw = notebook([code_cell("fetch()\n", [{"output_type": "error", "ename": "HTTPError", "evalue": "401",
                                            "traceback": ["Traceback (most recent call last)\n", f"GET {url}\n"]}])])
    [finding] = findings(raw, "debug.ipynb")
    assert finding.rule_id == "secret-url-password" and finding.location.line == line_of(raw, url)


def test_notebook_with_duplicate_keys_is_searched_as_text():
    raw = notebook([code_cell(f"t = '{TOKEN}'\n")]).replace('"cells": [', '"cells": [], "cells": [', 1)
    [finding] = findings(raw, "odd.ipynb")
    assert finding.location.line == line_of(raw, TOKEN) and "cell" not in finding.evidence


def test_tokenizer_vocabularies_are_skipped():
    vocab = {"hf_": 1, "sk-": 2, "AKIA": 3, TOKEN: 4, "ghp_": 5, "token": 6, "password": 7}
    for name in ("tokenizer.json", "vocab.json"):
        assert findings(json.dumps({"model": {"vocab": vocab}}), name) == []
    assert findings("\n".join(vocab) + "\n", "vocab.txt") == []


def test_lock_files_get_shape_rules_only():
    lock = ('[[package]]\nname = "wandb"\nversion = "0.17.0"\nsource = { registry = "https://pypi.org/simple" }\n'
            'sdist = { url = "https://files.pythonhosted.org/wandb-0.17.0.tar.gz", '
            'hash = "sha256:' + "ab12" * 16 + '" }\n'
            f'api_key = "{fill("{alnum:32}", random.Random(8))}"\n')
    assert findings(lock, "uv.lock") == []
    [finding] = findings(lock + f'source = "git+https://{TOKEN}@github.com/org/private.git"\n', "uv.lock")
    assert finding.rule_id == "secret-github-pat"
    assert [f.rule_id for f in findings(lock, "settings.toml")] == ["secret-high-entropy"]


def test_ml_look_alikes_are_not_secrets(tmp_path):
    rng = random.Random(9)
    sha1, sha256 = fill("{hex:40}", rng), fill("{hex:64}", rng)
    files = {
        "requirements.txt": f"torch==2.3.0 --hash=sha256:{sha256}\n"
                            f"git+https://github.com/huggingface/transformers@{sha1}\n",
        "config.yaml": f"model: bert-base-uncased\nrevision: {sha1}\nrun_id: 550e8400-e29b-41d4-a716-446655440000\n"
                       f"checksum: sha256:{sha256}\ntokenizer: {{pad_token: '<pad>', eos_token: '</s>'}}\n"
                       "max_new_tokens: 512\n",
        "package-lock.json": json.dumps({"packages": {"node_modules/x": {
            "integrity": "sha512-" + fill("{base64:86}", rng) + "==", "resolved": "https://registry.npmjs.org/x"}}}),
        ".env.example": "OPENAI_API_KEY=sk-...\nHF_TOKEN=<your-token>\nWANDB_API_KEY=${WANDB_API_KEY}\n"
                        "DB_PASSWORD=changeme\nAWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE\n"
                        "AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\n",
        "train.py": "import os\napi_key = os.environ['OPENAI_API_KEY']\ntoken = os.getenv('HF_TOKEN')\n"
                    "password = getpass.getpass()\nsecret = '{{ secrets.API_KEY }}'\n"
                    "tokens = tokenizer.encode(text)\n",
        "plot.ipynb": notebook([code_cell("plot()\n", [{"output_type": "display_data", "metadata": {},
                                                       "data": {"image/png": PNG_B64}}])]),
    }
    for name, content in files.items():
        (tmp_path / name).write_text(content)
    assert [(f.path, f.rule_id) for f in scan_tree(tmp_path).findings if f.scanner == "secrets"] == []


def test_inline_allow_and_one_finding_per_secret():
    text = f"A = '{TOKEN}'  # ml-guard: allow\nB = 1\nC = '{TOKEN}'\nD = '{TOKEN}'\n"
    [finding] = findings(text)
    assert finding.location.line == 3 and finding.evidence["lines"] == [3, 4]
    assert "2 occurrences" in finding.message
    assert findings(f"A = '{TOKEN}'  # ML-Guard: allow\n") == []


def test_file_size_limit():
    policy = Config.from_mapping({"secrets": {"max_file_size": 10}}).policy
    [finding] = findings(f"TOKEN={TOKEN}\n", policy=policy)
    assert finding.rule_id == "secrets-file-too-large"


def test_fingerprint_keys_on_the_secret_not_the_line():
    first = findings(f"TOKEN={TOKEN}\n")[0].fingerprint
    assert findings(f"# moved\n\n\nexport TOKEN={TOKEN}\n")[0].fingerprint == first
    assert findings(f"TOKEN={github_style('ghp_', random.Random(10))}\n")[0].fingerprint != first


# --- baseline and redaction through the CLI -------------------------------------------------------------

@pytest.fixture
def planted(tmp_path) -> tuple[Path, list[str]]:
    """A project with one secret of every rule (one file per rule) and a list of the secrets."""
    secrets = []
    for rule_id in sorted(RULES):
        text, secret = example(rule_id)
        (tmp_path / f"{rule_id}.txt").write_text(text + "\n")
        secrets.append(secret)
    return tmp_path, secrets


def invoke(*args):
    return run_cli(*args)


def assert_redacted(output: str, secrets: list[str]) -> None:
    for secret in secrets:
        for part in {secret, secret[6:-4]} | set(secret.replace("\\n", "\n").splitlines()[1:-1]):
            assert len(part) < 8 or part not in output, f"secret text in the output: {part[:4]}…"


@pytest.mark.parametrize("fmt", sorted(REPORTERS))
def test_no_output_format_contains_a_secret(planted, fmt):
    root, secrets = planted
    result = invoke("scan", root, "--format", fmt, "--scanners", "secrets")
    assert result.exit_code == 1
    assert_redacted(result.output, secrets)
    rendered = REPORTERS[fmt].render(scan_tree(root), RenderOptions())
    assert_redacted(rendered, secrets)
    assert len({f.rule_id for f in scan_tree(root).findings}) == len(RULES)


def test_baseline_create_suppress_and_stability(planted):
    root, secrets = planted
    baseline = root.parent / "baseline.json"
    created = invoke("baseline", "create", root, "-o", baseline)
    assert created.exit_code == 0
    assert_redacted(baseline.read_text(), secrets)
    entries = json.loads(baseline.read_text())["findings"]
    assert {e["rule_id"] for e in entries} == set(RULES)
    assert all(e["snippet"] and "…" in e["snippet"] for e in entries)

    result = invoke("scan", root, "--baseline", baseline, "--format", "json")
    assert result.exit_code == 0 and json.loads(result.stdout)["findings"] == []
    assert f"{len(entries)} findings suppressed by baseline" in result.stderr

    moved = root / "secret-github-pat.txt"
    moved.write_text("# a header\n\n\n" + moved.read_text())          # the secret moves down: still baselined
    fresh = root / "secret-stripe-live.txt"
    fresh.write_text(example("secret-stripe-live", seed=1)[0])        # a new secret: reported
    result = invoke("scan", root, "--baseline", baseline, "--format", "json")
    assert [(f["path"], f["rule_id"]) for f in json.loads(result.stdout)["findings"]] == \
        [("secret-stripe-live.txt", "secret-stripe-live")]


def test_bad_baseline_is_a_usage_error(tmp_path):
    (tmp_path / "b.json").write_text('{"format": "something-else"}')
    result = run_cli("scan", str(tmp_path), "--baseline", str(tmp_path / "b.json"))
    assert result.exit_code == 2 and "not an ml-guard baseline" in result.output
