"""Secret rules: `mlguard.engine.secret_matches`, native (Rust: aho-corasick prefilter + regex) vs the
pure-Python reference, and detect-secrets (PyPI) on the same generated ML project tree.

Run: python benches/bench_secrets.py [--size-mb 50] [--peers-venv /work/peers-secrets] [--real-tree DIR] [--quick]
(results go into docs/performance.md by hand)

The tree (~50 MB, seeded, written to a temporary folder) mixes Python source, YAML and JSON configs, a
tokenizer vocabulary, Markdown, notebooks (.ipynb) with base64 PNG outputs, lock files full of hashes, and
a sprinkle of planted secrets. The rules are `mlguard/rules/secrets.yaml` (fields id, keywords, pattern,
window, min_entropy; `{{NAME}}` macros expanded) when it exists, else the 60 stand-in rules below. Files are read into memory first:
the ML Guard figures are kernel time over the bytes (one call per file), best of --runs. detect-secrets
runs as a whole process (`detect-secrets -c N scan --all-files`) on the written tree, best of --peer-runs;
its start-up (the same command on an empty folder) is reported apart. `--real-tree DIR` adds the native
figure on real files (the text files under DIR, e.g. a venv's site-packages: far fewer keyword hits than the
generated tree, which is deliberately keyword-dense).
"""
from __future__ import annotations

import argparse
import base64
import datetime
import json
import os
import platform
import random
import re
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from mlguard import engine
from mlguard.engine import SecretRule, SecretRuleSet, secret_matches
from timing import best_of

ROOT = Path(__file__).resolve().parents[1]
MB = 1_000_000

# (id, keywords, pattern, window, min_entropy): a realistic stand-in for mlguard/rules/secrets.yaml
_ASSIGN = r"[\w.\-]{0,24}[\"']?\s*[:=]\s*[\"']?"      # `name_suffix = "`, `name: `, ...
_QUOTED = r"[\w.\-]{0,24}[\"']?\s*[:=]\s*[\"']"       # the same, the value quoted
STAND_IN_RULES = [
    ("aws-access-key-id", ("AKIA", "ASIA", "ABIA", "ACCA"), r"\b(?P<secret>(?:AKIA|ASIA|ABIA|ACCA)[A-Z2-7]{16})\b", 24, 3.0),
    ("aws-secret-access-key", ("aws_secret", "secret_access_key"), r"(?i)aws.{0,20}secret.{0,20}[\"']?\s*[:=]\s*[\"']?(?P<secret>[A-Za-z0-9/+]{40})\b", 96, 4.0),
    ("github-pat", ("ghp_",), r"\b(?P<secret>ghp_[A-Za-z0-9]{36})\b", 48, 3.0),
    ("github-oauth", ("gho_",), r"\b(?P<secret>gho_[A-Za-z0-9]{36})\b", 48, 3.0),
    ("github-user-token", ("ghu_",), r"\b(?P<secret>ghu_[A-Za-z0-9]{36})\b", 48, 3.0),
    ("github-server-token", ("ghs_",), r"\b(?P<secret>ghs_[A-Za-z0-9]{36})\b", 48, 3.0),
    ("github-refresh-token", ("ghr_",), r"\b(?P<secret>ghr_[A-Za-z0-9]{36})\b", 48, 3.0),
    ("github-fine-grained-pat", ("github_pat_",), r"\b(?P<secret>github_pat_[A-Za-z0-9_]{82})\b", 96, 3.0),
    ("gitlab-pat", ("glpat-",), r"\b(?P<secret>glpat-[A-Za-z0-9_\-]{20})", 32, 3.0),
    ("gitlab-runner-token", ("glrt-",), r"\b(?P<secret>glrt-[A-Za-z0-9_\-]{20})", 32, 3.0),
    ("openai-api-key", ("T3BlbkFJ",), r"\b(?P<secret>sk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_\-]{20,74}T3BlbkFJ[A-Za-z0-9_\-]{20,74})", 160, 3.5),
    ("anthropic-api-key", ("sk-ant-",), r"\b(?P<secret>sk-ant-(?:api|admin)[0-9]{2}-[A-Za-z0-9_\-]{80,100})", 128, 3.5),
    ("huggingface-token", ("hf_",), r"\b(?P<secret>hf_[A-Za-z]{34})\b", 40, 3.0),
    ("huggingface-org-token", ("api_org_",), r"\b(?P<secret>api_org_[A-Za-z]{34})\b", 48, 3.0),
    ("replicate-token", ("r8_",), r"\b(?P<secret>r8_[A-Za-z0-9]{37})\b", 48, 3.0),
    ("wandb-api-key", ("wandb",), r"(?i)wandb" + _ASSIGN + r"(?P<secret>[a-f0-9]{40})\b", 96, 3.0),
    ("pinecone-api-key", ("pinecone",), r"(?i)pinecone" + _ASSIGN + r"(?P<secret>[a-f0-9]{8}-[a-f0-9]{4}-[a-f0-9]{4}-[a-f0-9]{4}-[a-f0-9]{12})\b", 96, 3.0),
    ("pinecone-api-key-v2", ("pcsk_",), r"\b(?P<secret>pcsk_[A-Za-z0-9_]{50,80})\b", 96, 3.0),
    ("groq-api-key", ("gsk_",), r"\b(?P<secret>gsk_[A-Za-z0-9]{52})\b", 64, 3.0),
    ("stripe-live-key", ("sk_live_", "rk_live_"), r"\b(?P<secret>[sr]k_live_[A-Za-z0-9]{24,99})\b", 112, 3.0),
    ("stripe-test-key", ("sk_test_", "rk_test_"), r"\b(?P<secret>[sr]k_test_[A-Za-z0-9]{24,99})\b", 112, 3.0),
    ("slack-bot-token", ("xoxb-",), r"\b(?P<secret>xoxb-[0-9]{10,13}-[0-9]{10,13}-[A-Za-z0-9]{24})\b", 64, 3.0),
    ("slack-user-token", ("xoxp-",), r"\b(?P<secret>xoxp-[0-9]{10,13}-[0-9]{10,13}-[0-9]{10,13}-[a-f0-9]{32})\b", 96, 3.0),
    ("slack-webhook", ("hooks.slack.com",), r"https://hooks\.slack\.com/services/(?P<secret>T[A-Z0-9]{8,10}/B[A-Z0-9]{8,10}/[A-Za-z0-9]{24})", 96, 3.0),
    ("npm-token", ("npm_",), r"\b(?P<secret>npm_[A-Za-z0-9]{36})\b", 48, 3.0),
    ("pypi-token", ("pypi-AgEIcHlwaS5vcmc",), r"\b(?P<secret>pypi-AgEIcHlwaS5vcmc[A-Za-z0-9_\-]{50,200})", 224, 3.0),
    ("private-key", ("PRIVATE KEY-----",), r"-----BEGIN (?:RSA |EC |DSA |OPENSSH |ENCRYPTED )?PRIVATE KEY-----(?P<secret>[A-Za-z0-9+/=\s]{64,4000}?)-----END", 4096, 4.0),
    ("jwt", ("eyJ",), r"\b(?P<secret>eyJ[A-Za-z0-9_\-]{8,512}\.eyJ[A-Za-z0-9_\-]{8,1024}\.[A-Za-z0-9_\-]{16,512})", 2048, 3.0),
    ("gcp-service-account-key", ("private_key_id",), r"\"private_key_id\"\s*:\s*\"(?P<secret>[a-f0-9]{40})\"", 64, 3.0),
    ("google-api-key", ("AIza",), r"\b(?P<secret>AIza[0-9A-Za-z_\-]{35})", 48, 3.0),
    ("google-oauth-client-secret", ("GOCSPX-",), r"\b(?P<secret>GOCSPX-[A-Za-z0-9_\-]{28})", 40, 3.0),
    ("connection-string-password", ("postgres://", "postgresql://", "mysql://", "mongodb://", "mongodb+srv://", "redis://", "rediss://", "amqp://", "amqps://"),
     r"(?i)\b(?:postgres(?:ql)?|mysql|mongodb(?:\+srv)?|rediss?|amqps?)://[^:@/\s\"']{1,64}:(?P<secret>[^@/\s\"']{3,128})@", 224, 2.5),
    ("generic-password", ("password", "passwd", "pwd"), r"(?i)(?:password|passwd|pwd)" + _QUOTED + r"(?P<secret>[^\"'\s]{8,128})[\"']", 160, 3.0),
    ("generic-secret", ("secret",), r"(?i)secret" + _QUOTED + r"(?P<secret>[A-Za-z0-9_\-+/=]{16,128})[\"']", 160, 3.5),
    ("generic-token", ("token",), r"(?i)token" + _QUOTED + r"(?P<secret>[A-Za-z0-9_\-+/=.]{16,256})[\"']", 288, 3.5),
    ("generic-api-key", ("api_key", "apikey", "api-key"), r"(?i)api[_\-]?key" + _QUOTED + r"(?P<secret>[A-Za-z0-9_\-+/=]{16,128})[\"']", 160, 3.5),
    ("azure-storage-key", ("AccountKey=",), r"AccountKey=(?P<secret>[A-Za-z0-9+/]{86}==)", 96, 4.0),
    ("azure-ad-client-secret", ("Q~",), r"(?P<secret>[A-Za-z0-9_~.]{3}[0-9]Q~[A-Za-z0-9_~.\-]{31,34})", 48, 3.0),
    ("sendgrid-api-key", ("SG.",), r"\b(?P<secret>SG\.[A-Za-z0-9_\-]{22}\.[A-Za-z0-9_\-]{43})", 72, 3.0),
    ("twilio-api-key", ("twilio",), r"(?i)twilio" + _ASSIGN + r"(?P<secret>SK[a-f0-9]{32})\b", 96, 3.0),
    ("datadog-api-key", ("datadog", "dd_api_key"), r"(?i)(?:datadog|dd)_?api_?key[\"']?\s*[:=]\s*[\"']?(?P<secret>[a-f0-9]{32})\b", 96, 3.0),
    ("digitalocean-token", ("dop_v1_",), r"\b(?P<secret>dop_v1_[a-f0-9]{64})\b", 80, 3.0),
    ("doppler-token", ("dp.pt.",), r"\b(?P<secret>dp\.pt\.[A-Za-z0-9]{43})", 56, 3.0),
    ("shopify-token", ("shpat_", "shpca_", "shppa_", "shpss_"), r"\b(?P<secret>shp(?:at|ca|pa|ss)_[a-fA-F0-9]{32})\b", 48, 3.0),
    ("linear-api-key", ("lin_api_",), r"\b(?P<secret>lin_api_[A-Za-z0-9]{40})\b", 56, 3.0),
    ("notion-token", ("ntn_",), r"\b(?P<secret>ntn_[0-9]{11}[A-Za-z0-9]{35})\b", 56, 3.0),
    ("discord-bot-token", ("discord",), r"(?i)discord" + _ASSIGN + r"(?P<secret>[A-Za-z0-9_\-]{24}\.[A-Za-z0-9_\-]{6}\.[A-Za-z0-9_\-]{27,38})", 128, 3.0),
    ("telegram-bot-token", ("telegram", "bot_token"), r"\b(?P<secret>[0-9]{8,10}:AA[A-Za-z0-9_\-]{33})", 96, 3.0),
    ("cohere-api-key", ("cohere", "co_api_key"), r"(?i)(?:cohere|co)[\w.\-]{0,16}key[\"']?\s*[:=]\s*[\"']?(?P<secret>[A-Za-z0-9]{40})\b", 96, 3.0),
    ("mistral-api-key", ("mistral",), r"(?i)mistral[\w.\-]{0,24}key[\"']?\s*[:=]\s*[\"']?(?P<secret>[A-Za-z0-9]{32})\b", 96, 3.0),
    ("perplexity-api-key", ("pplx-",), r"\b(?P<secret>pplx-[A-Za-z0-9]{48})\b", 64, 3.0),
    ("langsmith-api-key", ("lsv2_pt_", "lsv2_sk_"), r"\b(?P<secret>lsv2_(?:pt|sk)_[a-f0-9]{32}_[a-f0-9]{10})\b", 64, 3.0),
    ("databricks-token", ("dapi",), r"\b(?P<secret>dapi[a-f0-9]{32}(?:-[0-9])?)\b", 48, 3.0),
    ("atlassian-api-token", ("ATATT3",), r"\b(?P<secret>ATATT3[A-Za-z0-9_\-=]{186})", 200, 3.0),
    ("sentry-token", ("sntrys_",), r"\b(?P<secret>sntrys_eyJ[A-Za-z0-9+/=_\-]{60,400})", 416, 3.0),
    ("newrelic-user-key", ("NRAK-",), r"\b(?P<secret>NRAK-[A-Z0-9]{27})\b", 40, 3.0),
    ("vault-token", ("hvs.",), r"\b(?P<secret>hvs\.[A-Za-z0-9_\-]{90,120})", 128, 3.0),
    ("docker-hub-pat", ("dckr_pat_",), r"\b(?P<secret>dckr_pat_[A-Za-z0-9_\-]{27})", 40, 3.0),
    ("grafana-token", ("glsa_", "glc_"), r"\b(?P<secret>glsa_[A-Za-z0-9]{32}_[a-f0-9]{8}|glc_[A-Za-z0-9+/]{32,400}={0,2})", 416, 3.0),
    ("age-secret-key", ("AGE-SECRET-KEY-1",), r"(?P<secret>AGE-SECRET-KEY-1[QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L]{58})", 80, 3.0),
]


def load_rules() -> tuple[SecretRuleSet, str]:
    path = ROOT / "mlguard" / "rules" / "secrets.yaml"
    if path.exists():
        import yaml
        doc = yaml.safe_load(path.read_text())
        macros = doc.get("macros") or {}       # `{{NAME}}` in a pattern inserts macros[NAME]
        rules = [SecretRule(e["id"], tuple(e["keywords"]),
                            re.sub(r"\{\{(\w+)\}\}", lambda m: macros[m.group(1)], e["pattern"]),
                            e.get("window", 256), e.get("min_entropy", 0.0)) for e in doc["rules"]]
        return SecretRuleSet(rules), f"`mlguard/rules/secrets.yaml` ({len(rules)} rules)"
    return (SecretRuleSet([SecretRule(*r) for r in STAND_IN_RULES]),
            f"the {len(STAND_IN_RULES)} stand-in rules of `benches/bench_secrets.py`")


# ------------------------------------------------------------------------------- the tree ----

WORDS = ("model data train loss batch epoch optimizer config tokenizer value layer weight bias hidden "
         "attention head dropout learning rate scheduler checkpoint dataset feature label metric eval score "
         "path file cache device cuda client request response session user name id revision hash embedding "
         "vector index query").split()
ALNUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"


def rand_str(rng: random.Random, n: int, alphabet: str = ALNUM) -> str:
    return "".join(rng.choices(alphabet, k=n))


def planted(rng: random.Random) -> str:
    """One line holding a realistic secret (the rules should report it)."""
    b32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
    return rng.choice([
        f'AWS_ACCESS_KEY_ID = "AKIA{rand_str(rng, 16, b32)}"',
        f'aws_secret_access_key = "{rand_str(rng, 40, ALNUM + "/+")}"',
        f'GITHUB_TOKEN = "ghp_{rand_str(rng, 36)}"',
        f'HF_TOKEN = "hf_{rand_str(rng, 34, ALNUM[:52])}"',
        f'client = OpenAI(api_key="sk-proj-{rand_str(rng, 40)}T3BlbkFJ{rand_str(rng, 40)}")',
        f'ANTHROPIC_API_KEY=sk-ant-api03-{rand_str(rng, 93)}AA',
        f'stripe.api_key = "sk_live_{rand_str(rng, 40)}"',
        f'DATABASE_URL = "postgresql://admin:{rand_str(rng, 16)}@db.internal:5432/prod"',
        f'wandb_api_key: {rand_str(rng, 40, "0123456789abcdef")}',
        f'password = "{rand_str(rng, 14, ALNUM + "!#%&*")}"',
        f'token: "{rand_str(rng, 32)}"',
        "-----BEGIN RSA PRIVATE KEY-----\n" + "\n".join(rand_str(rng, 64, ALNUM + "+/") for _ in range(12))
        + "\n-----END RSA PRIVATE KEY-----",
    ])


def python_file(rng: random.Random, size: int) -> str:
    out = ['"""Training utilities."""', "import os", "import torch", "from transformers import AutoModel", ""]
    while sum(map(len, out)) < size:
        a, b, c = rng.sample(WORDS, 3)
        out += rng.choices([
            [f"def {a}_{b}({c}, {a}=None):", f'    """Return the {b} {c} for {a}."""',
             f"    {a}_{c} = {c}.get('{b}', {rng.randint(0, 999)})",
             f"    return {a}_{c} * {rng.random():.4f}", ""],
            [f"class {a.title()}{b.title()}:", f"    def __init__(self, {c}):", f"        self.{c} = {c}",
             f"        self.{a}_{b} = os.environ.get('{a.upper()}_{b.upper()}')", ""],
            [f'{a}_token = os.environ["{a.upper()}_TOKEN"]  # never hard-code the {b} token',
             f'{b}_api_key = get_secret("{c}-api-key")', f'password = getpass.getpass("{a} password: ")', ""],
            [f'model = AutoModel.from_pretrained("org/{a}-{b}", revision="{rand_str(rng, 40, "0123456789abcdef")}")',
             f"# {' '.join(rng.choices(WORDS, k=12))}", ""],
            [f"    for {a} in range({rng.randint(1, 100)}):",
             f"        {b} = {c}[{a}] + torch.tensor([{', '.join(str(rng.randint(0, 9)) for _ in range(8))}])", ""],
        ], weights=[10, 10, 1, 4, 10])[0]
        if rng.random() < 0.004:
            out.append(planted(rng))
    return "\n".join(out)


def yaml_file(rng: random.Random, size: int) -> str:
    out = []
    while sum(map(len, out)) < size:
        a, b, c = rng.sample(WORDS, 3)
        out += [f"{a}:", f"  {b}_{c}: {rng.random():.5f}", f"  {c}: {rng.randint(0, 10**6)}",
                f"  sha256: {rand_str(rng, 64, '0123456789abcdef')}"]
        if rng.random() < 0.1:
            out += [f"  {b}_token: ${{{a.upper()}_TOKEN}}", f"  secret_name: {a}-{b}-credentials"]
        if rng.random() < 0.01:
            out.append("  " + planted(rng))
    return "\n".join(out)


def json_config(rng: random.Random, size: int) -> str:
    cfg, i = {}, 0
    while len(json.dumps(cfg)) < size:
        a, b = rng.sample(WORDS, 2)
        cfg[f"{a}_{b}_{i}"] = rng.choice([rng.randint(0, 65536), rng.random(), f"{a}-{b}", [rng.random()] * 4])
        i += 1
    return json.dumps(cfg, indent=2)


def tokenizer_json(rng: random.Random, size: int) -> str:
    vocab, i = {}, 0
    while i * 12 < size:
        vocab[rng.choice(["", "Ġ", "##"]) + rng.choice(WORDS)[: rng.randint(2, 8)] + rand_str(rng, rng.randint(0, 3), "abcdefghijklmnopqrstuvwxyz")] = i
        i += 1
    return json.dumps({"model": {"type": "BPE", "vocab": vocab}}, ensure_ascii=False)


def markdown_file(rng: random.Random, size: int) -> str:
    out = ["# Project", ""]
    while sum(map(len, out)) < size:
        out += [f"## {rng.choice(WORDS).title()}", " ".join(rng.choices(WORDS, k=60)), "",
                "```bash", f"python train.py --{rng.choice(WORDS)} {rng.randint(1, 64)} --batch-size 8", "```", "",
                f"See https://huggingface.co/org/{rng.choice(WORDS)} and https://github.com/org/repo.", ""]
        if rng.random() < 0.2:
            out += ["```bash", "export HF_TOKEN=hf_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx  # your token here",
                    "python serve.py --api-key $API_KEY", "```", ""]
    return "\n".join(out)


def notebook(rng: random.Random, size: int) -> str:
    cells, total = [], 0
    while total < size:
        src = python_file(rng, rng.randint(300, 1500)).splitlines(keepends=True)
        png = base64.b64encode(rng.randbytes(rng.randint(8_000, 60_000))).decode()
        cells.append({"cell_type": "code", "execution_count": len(cells) + 1, "metadata": {}, "source": src,
                      "outputs": [{"output_type": "stream", "name": "stdout",
                                   "text": [f"epoch {i} loss {rng.random():.4f}\n" for i in range(20)]},
                                  {"output_type": "display_data", "metadata": {},
                                   "data": {"image/png": png, "text/plain": ["<Figure size 640x480>"]}}]})
        total += len(png) + sum(map(len, src)) + 600
    return json.dumps({"cells": cells, "metadata": {"kernelspec": {"name": "python3"}}, "nbformat": 4,
                       "nbformat_minor": 5}, indent=1)


def lock_file(rng: random.Random, size: int) -> str:
    out = []
    while sum(map(len, out)) < size:
        name = "-".join(rng.sample(WORDS, 2))
        out += ["[[package]]", f'name = "{name}"', f'version = "{rng.randint(0, 9)}.{rng.randint(0, 30)}.0"',
                "files = [", *(f'    {{file = "{name}-{rng.randint(0, 9)}-py3-none-any.whl", '
                               f'hash = "sha256:{rand_str(rng, 64, "0123456789abcdef")}"}},' for _ in range(4)),
                "]", f'integrity = "sha512-{base64.b64encode(rng.randbytes(64)).decode()}"', ""]
    return "\n".join(out)


KINDS = [  # (folder, suffix, generator, share of the bytes, file size range)
    ("src", ".py", python_file, 0.30, (2_000, 40_000)),
    ("notebooks", ".ipynb", notebook, 0.30, (100_000, 1_500_000)),
    ("configs", ".yaml", yaml_file, 0.06, (500, 20_000)),
    ("configs", ".json", json_config, 0.04, (500, 50_000)),
    ("models", "-tokenizer.json", tokenizer_json, 0.05, (500_000, 2_000_000)),
    ("docs", ".md", markdown_file, 0.10, (1_000, 30_000)),
    ("locks", ".lock", lock_file, 0.15, (20_000, 400_000)),
]


TEXT_SUFFIXES = {".py", ".md", ".rst", ".txt", ".json", ".yaml", ".yml", ".toml", ".cfg", ".ipynb"}


def write_tree(root: Path, total: int, seed: int) -> list[Path]:
    rng = random.Random(seed)
    paths = []
    for folder, suffix, make, share, (lo, hi) in KINDS:
        (root / folder).mkdir(exist_ok=True)
        written = 0
        while written < share * total:
            path = root / folder / f"{folder}_{len(paths):04}{suffix}"
            text = make(rng, min(rng.randint(lo, hi), int(share * total - written) + lo))
            path.write_text(text, encoding="utf-8")
            written += path.stat().st_size
            paths.append(path)
    return paths


# ------------------------------------------------------------------------------ measuring ----

def scan_all(blobs, ruleset, eng: str, jobs: int = 1) -> list:
    """The matches of each blob; with jobs > 1, thread k scans blobs k, k + jobs, ... (in any order)."""
    def part(k: int) -> list:
        return [secret_matches(b, ruleset, engine=eng) for b in blobs[k::jobs]]
    if jobs == 1:
        return part(0)
    with ThreadPoolExecutor(jobs) as pool:
        return [m for matches in pool.map(part, range(jobs)) for m in matches]


def detect_secrets(venv: Path, folder: Path, cores: int, runs: int) -> tuple[float, int]:
    """Best whole-process time of `detect-secrets -c cores scan --all-files` in folder, and the findings."""
    exe = venv / "bin" / "detect-secrets"
    best, found = float("inf"), 0
    for _ in range(runs):
        start = time.perf_counter()
        out = subprocess.run([str(exe), "-c", str(cores), "scan", "--all-files"], cwd=folder,
                             capture_output=True, text=True, check=True).stdout
        best = min(best, time.perf_counter() - start)
        found = sum(len(v) for v in json.loads(out)["results"].values())
    return best, found


def machine() -> list[str]:
    cpu = "?"
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return [f"- date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC",
            f"- machine: {os.cpu_count()} cores ({cpu}), {platform.system()} {platform.release()}, "
            f"Python {platform.python_version()}",
            f"- engine: {engine.engine_status()}",
            f"- load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}"]


def row(what: str, eng: str, jobs: int, seconds: float, size: int, found: str = "") -> str:
    return (f"| {what} | {eng} | {jobs} | {seconds * 1e3:,.0f} ms | {size / seconds / MB:,.1f} MB/s | {found} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mb", type=float, default=50, help="size of the generated tree (50)")
    parser.add_argument("--runs", type=int, default=5, help="best of N for the native engine (5)")
    parser.add_argument("--peers-venv", default=os.environ.get("MLGUARD_SECRETS_PEERS_VENV"),
                        help="venv with detect-secrets installed (skipped if absent)")
    parser.add_argument("--peer-runs", type=int, default=1, help="best of N for detect-secrets (1)")
    parser.add_argument("--real-tree", help="also scan the text files of this folder (e.g. a venv's site-packages)")
    parser.add_argument("--quick", action="store_true", help="10 MB tree, 3 runs")
    parser.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args()
    if args.quick:
        args.size_mb, args.runs = 10, 3
    ruleset, rules_label = load_rules()
    lines = ["Secret rules benchmark (`benches/bench_secrets.py" + (" --quick" if args.quick else "") + "`)", ""]
    lines += machine()
    with tempfile.TemporaryDirectory(prefix="mlguard-bench-secrets-") as tmp:
        root = Path(tmp) / "tree"
        root.mkdir()
        paths = write_tree(root, int(args.size_mb * MB), args.seed)
        blobs = [p.read_bytes() for p in paths]
        size = sum(map(len, blobs))
        lines += [f"- tree: {len(paths)} files, {size / MB:.1f} MB ("
                  + ", ".join(f"{s} {sum(len(b) for p, b in zip(paths, blobs) if p.name.endswith(s)) / MB:.1f} MB"
                              for s in dict.fromkeys(k[1] for k in KINDS)) + f"); rules: {rules_label}", ""]
        lines += ["| what | engine | threads | best time | throughput | matches |",
                  "| --- | --- | --- | --- | --- | --- |"]

        native = scan_all(blobs, ruleset, "native")
        matches = sum(map(len, native))
        lines.append(row("secret_matches, whole tree", "native", 1,
                         best_of(lambda: scan_all(blobs, ruleset, "native"), args.runs), size, f"{matches:,}"))
        lines.append(row("secret_matches, whole tree", "native", 2,
                         best_of(lambda: scan_all(blobs, ruleset, "native", 2), args.runs), size, f"{matches:,}"))
        quiet = SecretRuleSet([SecretRule(f"q{i}", (f"zq{i:02}xj",), r"(?P<secret>zq)") for i in range(60)])
        lines.append(row("keyword prefilter only (60 keywords that never occur)", "native", 1,
                         best_of(lambda: scan_all(blobs, quiet, "native"), args.runs), size, "0"))
        lines.append(row("memory read ceiling (`bytes.find(b'\\x00')`, memchr)", "—", 1,
                         best_of(lambda: [b.find(b"\x00") for b in blobs], args.runs), size))
        if args.real_tree:
            real = [p.read_bytes() for p in sorted(Path(args.real_tree).rglob("*"))
                    if p.suffix in TEXT_SUFFIXES and p.is_file()]
            found = sum(map(len, scan_all(real, ruleset, "native")))
            lines.append(row(f"secret_matches, the {len(real):,} text files of `{args.real_tree}`", "native", 1,
                             best_of(lambda: scan_all(real, ruleset, "native"), args.runs),
                             sum(map(len, real)), f"{found:,}"))
            del real
        start = time.perf_counter()
        pure = scan_all(blobs, ruleset, "python")
        seconds = time.perf_counter() - start
        assert pure == native, "the engines disagree on the tree"
        lines.append(row("secret_matches, whole tree", "python", 1, seconds, size, f"{matches:,}"))

        if args.peers_venv and (Path(args.peers_venv) / "bin" / "detect-secrets").exists():
            venv = Path(args.peers_venv)
            version = subprocess.run([str(venv / "bin" / "detect-secrets"), "--version"], capture_output=True,
                                     text=True).stdout.strip()
            empty = Path(tmp) / "empty"
            empty.mkdir()
            startup, _ = detect_secrets(venv, empty, 1, 3)
            for cores in (1, 2):
                seconds, found = detect_secrets(venv, root, cores, args.peer_runs)
                lines.append(row(f"detect-secrets {version} `-c {cores} scan --all-files` (whole process)",
                                 "—", cores, seconds, size, f"{found:,} (its findings)"))
            lines += ["", f"- detect-secrets start-up (same command, empty folder): {startup * 1e3:.0f} ms"]
        else:
            lines += ["", "- detect-secrets: skipped (no --peers-venv with detect-secrets)"]
    lines.append(f"- load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print("\n".join(lines))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
