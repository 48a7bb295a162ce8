"""Keras models: the architecture config (``config.json`` of a ``.keras`` zip, or the ``model_config`` JSON of a
legacy HDF5 file) names Python objects that loading imports and calls.

- ``Lambda`` layers carry marshalled Python bytecode that legacy loaders (and ``safe_mode=False``) run;
- any object serialised with a ``module`` outside Keras/TensorFlow is imported from that module on load, and
  ``{"module": "builtins", "class_name": "function", "config": "exec"}`` hands the loader a builtin to call
  (the safe_mode bypasses of 2024–2025).
"""
from __future__ import annotations

import json
from typing import Iterator

from ..findings import Finding, Severity
from ..sniff import Format
from .interface import Artifact, Option, ScanContext
from .pickle import GlobalPolicy

MAX_CONFIG = 16 << 20
MAX_NODES = 1_000_000
KERAS_MODULES = ("keras", "tf_keras", "tensorflow", "keras_hub", "keras_nlp", "keras_cv", "keras_rs")
"""Modules whose objects the config may name without a finding."""
_START = b'{"class_name"'
_START_V3 = b'{"module": "keras'


class KerasScanner:
    name = "keras"
    formats = frozenset({Format.JSON, Format.HDF5})
    options: dict[str, Option] = {}

    def scan(self, artifact: Artifact, ctx: ScanContext) -> Iterator[Finding | None]:
        buf = artifact.buffer()
        if artifact.sniffed.format is Format.JSON:
            if artifact.name != "config.json" or artifact.size > MAX_CONFIG:
                return
            try:
                config = json.loads(bytes(buf).decode("utf-8"))
            except (ValueError, RecursionError):
                return
            if isinstance(config, dict) and "class_name" in config and isinstance(config.get("config"), dict):
                yield from _walk(artifact, ctx, config)
            return
        config = _hdf5_config(buf)
        if config is not None:
            yield from _walk(artifact, ctx, config)


def _hdf5_config(buf) -> dict | None:
    """The ``model_config`` JSON stored as an attribute string in a legacy HDF5 Keras file, found by its start."""
    data = bytes(buf[:256 << 20])
    for start in (_START, _START_V3):
        at = data.find(start)
        if at >= 0:
            try:
                config, _ = json.JSONDecoder().raw_decode(data[at:at + MAX_CONFIG].decode("utf-8", "replace"))
            except (ValueError, RecursionError):
                continue
            if isinstance(config, dict):
                return config
    return None


def _walk(artifact: Artifact, ctx: ScanContext, config: dict) -> Iterator:
    policy = GlobalPolicy.default()
    stack, seen = [(config, "config")], 0
    while stack and seen < MAX_NODES:
        node, where = stack.pop()
        seen += 1
        if isinstance(node, list):
            stack += [(v, f"{where}[{i}]") for i, v in enumerate(node)]
            continue
        if not isinstance(node, dict):
            continue
        stack += [(v, f"{where}.{k}") for k, v in node.items() if isinstance(v, (dict, list))]
        name = node.get("class_name")
        layer = node.get("config", {}).get("name") if isinstance(node.get("config"), dict) else None
        if name == "Lambda" or name == "__lambda__":
            yield ctx.finding(artifact, "keras-lambda-layer",
                              f"Lambda layer {layer or where!r} carries Python bytecode that loading runs "
                              "(legacy loaders, or safe_mode=False)", evidence={"path": where}, key=where)
        module = node.get("module")
        if isinstance(module, str) and isinstance(name, str) and not module.startswith(KERAS_MODULES):
            target = node.get("config") if name == "function" and isinstance(node.get("config"), str) else name
            full = f"{module}.{target}"
            verdict = policy.verdict(*policy.normalise(module, target))
            if verdict != "safe":
                yield ctx.finding(artifact, "keras-unsafe-module",
                                  f"config names {full}: loading imports it from {module!r}"
                                  + (" — a known code-execution primitive" if verdict == "dangerous" else ""),
                                  evidence={"module": module, "name": target, "path": where, "verdict": verdict},
                                  key=full, severity=Severity.CRITICAL if verdict == "dangerous" else None)


SCANNER = KerasScanner()
