"""Hugging Face repository files: code that `trust_remote_code=True` would import, and chat templates.

- ``config.json`` ``auto_map``: ``module.Class`` runs a ``module.py`` shipped beside the weights;
  ``other/repo--module.Class`` imports code from another repository, which can change after review.
- ``*.py`` beside a ``config.json`` that maps to it: the code itself, checked for process, network and
  dynamic-code calls.
- ``tokenizer_config.json`` / ``chat_template.json`` ``chat_template`` and ``*.jinja`` templates: the same
  analysis as GGUF templates.
"""
from __future__ import annotations

import json
import os
import re
from typing import Iterator

from ..findings import Finding
from ..sniff import Format
from ._json_lines import key_line
from ._chat_template import template_findings
from .interface import Artifact, Option, ScanContext

MAX_JSON = 16 << 20
_RISKY_CODE = re.compile(
    r"\b(os\.system|os\.popen|subprocess\.\w+|pty\.spawn|socket\.socket|exec\s*\(|eval\s*\(|__import__\s*\(|"
    r"marshal\.loads|base64\.b64decode\s*\([^)]*\)\s*\)|urllib\.request\.urlopen|requests\.(get|post)|"
    r"ctypes\.\w+|pickle\.loads?)")


class HuggingFaceScanner:
    name = "huggingface"
    formats = frozenset({Format.JSON, Format.TEXT})
    options: dict[str, Option] = {}

    def scan(self, artifact: Artifact, ctx: ScanContext) -> Iterator[Finding | None]:
        name = artifact.name
        if artifact.sniffed.format is Format.TEXT:
            if name.endswith(".py"):
                yield from _python(artifact, ctx)
            elif name.endswith(".jinja"):
                yield from template_findings(ctx, artifact, name, _text(artifact))
            return
        if name not in ("config.json", "tokenizer_config.json", "chat_template.json") or artifact.size > MAX_JSON:
            return
        text = _text(artifact)
        try:
            data = json.loads(text)
        except (ValueError, RecursionError):
            return  # the sniffer said JSON; a broken one is not ours to report
        if not isinstance(data, dict):
            return
        if name == "config.json":
            yield from _auto_map(artifact, ctx, data, text)
        else:
            yield from _templates(artifact, ctx, data.get("chat_template"), text)


def _text(artifact: Artifact) -> str:
    return bytes(artifact.buffer()[:MAX_JSON]).decode("utf-8", "replace")


def _auto_map(artifact: Artifact, ctx: ScanContext, config: dict, text: str) -> Iterator:
    auto_map = config.get("auto_map")
    if not isinstance(auto_map, dict):
        return
    refs = [r for v in auto_map.values() for r in (v if isinstance(v, list) else [v]) if isinstance(r, str)]
    line = key_line(text, "auto_map")
    for ref in dict.fromkeys(refs):
        repo, sep, target = ref.rpartition("--")
        module = target.rsplit(".", 1)[0]
        if sep:
            yield ctx.finding(artifact, "hf-remote-code-reference",
                              f"auto_map imports {target} from another repository, {repo!r}: code that can change "
                              "after review runs with trust_remote_code=True", line=line, snippet=ref,
                              evidence={"repository": repo, "target": target}, key=ref)
        else:
            yield ctx.finding(artifact, "hf-custom-code",
                              f"auto_map runs {module}.py shipped with the model (needs trust_remote_code=True)",
                              line=line, snippet=ref, evidence={"module": module}, key=ref)


def _templates(artifact: Artifact, ctx: ScanContext, value, text: str) -> Iterator:
    """``chat_template`` is one template, or a list of ``{"name", "template"}``."""
    templates = [("chat_template", value)] if isinstance(value, str) else [
        (f"chat_template.{t.get('name')}", t.get("template")) for t in value if isinstance(t, dict)
    ] if isinstance(value, list) else []
    line = key_line(text, "chat_template")
    for key, template in templates:
        yield from template_findings(ctx, artifact, key, template, line=line)


def _python(artifact: Artifact, ctx: ScanContext) -> Iterator:
    """A ``.py`` file that a ``config.json`` beside it maps to: report it, and its risky calls."""
    if artifact.fs_path is None or artifact.depth > 0:
        return
    config = os.path.join(os.path.dirname(artifact.fs_path), "config.json")
    module = artifact.name[:-3]
    try:
        with open(config, "rb") as f:
            auto_map = json.loads(f.read(MAX_JSON)).get("auto_map") or {}
    except (OSError, ValueError, AttributeError, RecursionError):
        return
    refs = [r for v in auto_map.values() for r in (v if isinstance(v, list) else [v]) if isinstance(r, str)]
    if not any(r.rsplit(".", 1)[0] == module for r in refs):
        return
    for number, line in enumerate(_text(artifact).splitlines(), 1):
        match = _RISKY_CODE.search(line)
        if match:
            yield ctx.finding(artifact, "hf-custom-code-risky-call",
                              f"model code {artifact.name} calls {match.group(0).rstrip('(').strip()}; it runs at "
                              "from_pretrained(trust_remote_code=True)", line=number, snippet=line.strip()[:160],
                              key=f"{number}:{match.group(0)}")


SCANNER = HuggingFaceScanner()
