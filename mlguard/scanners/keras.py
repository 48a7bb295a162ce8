"""Keras models: the architecture config (``config.json`` of a ``.keras`` zip, or the ``model_config`` JSON of a
legacy HDF5 file, with its ``training_config``) names Python objects that loading imports and calls.

- ``Lambda`` layers carry marshalled Python bytecode that legacy loaders (and ``safe_mode=False``) run;
- any object serialised with a ``module`` outside Keras/TensorFlow is imported from that module on load, and
  ``{"module": "builtins", "class_name": "function", "config": "exec"}`` hands the loader a builtin to call
  (the safe_mode bypasses of 2024–2025);
- a TensorFlow SavedModel (``saved_model.pb``) graph can hold ops that run Python or touch the file system.
"""
from __future__ import annotations

import json
from typing import Iterator

from .. import engine
from ..findings import Finding, Severity
from ..sniff import Format
from ._hdf5 import root_attributes
from .interface import Artifact, Option, ScanContext
from .pickle import GlobalPolicy

MAX_CONFIG = 16 << 20
MAX_NODES = 1_000_000
KERAS_MODULES = ("keras", "tf_keras", "tensorflow", "keras_hub", "keras_nlp", "keras_cv", "keras_rs")
"""Modules whose objects the config may name without a finding."""
DANGEROUS_TF_OPS = {"PyFunc": "runs Python", "PyFuncStateless": "runs Python", "EagerPyFunc": "runs Python",
                    "ReadFile": "reads files", "WriteFile": "writes files", "MatchingFiles": "lists files",
                    "DeleteFile": "deletes files", "ImmutableConst": "maps a file into memory"}
"""TensorFlow ops a model has no business running (checkpoint Save/Restore ops are normal and not listed)."""
HDF5_CONFIGS = ("model_config", "training_config")
"""Root attributes of a legacy HDF5 model that loading decodes as JSON: the architecture, and the compile
arguments (loss, metrics, optimizer), which name objects the same way."""


class KerasScanner:
    name = "keras"
    formats = frozenset({Format.JSON, Format.HDF5, Format.BINARY, Format.TEXT, Format.ONNX})
    """BINARY, TEXT, ONNX: a SavedModel's ``saved_model.pb`` (protobuf has no magic; the sniffer may say any)."""
    options: dict[str, Option] = {}

    def scan(self, artifact: Artifact, ctx: ScanContext) -> Iterator[Finding | None]:
        buf = artifact.buffer()
        if artifact.name == "saved_model.pb":
            yield from _saved_model(artifact, ctx, buf)
            return
        if artifact.sniffed.format not in (Format.JSON, Format.HDF5):
            return
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
        yield from _hdf5(artifact, ctx, buf)


def _saved_model(artifact: Artifact, ctx: ScanContext, buf) -> Iterator:
    from ..engine.pure.savedmodel_schema import SCHEMA
    model = engine.protobuf_walk(buf, SCHEMA, "SavedModel")
    if model["_error"]:
        yield ctx.finding(artifact, "tf-savedmodel-malformed", f"invalid protobuf: {model['_error']['kind']} at "
                          f"offset {model['_error']['offset']}", offset=model["_error"]["offset"])
    for meta in model.get("meta_graphs", []):
        graph = meta.get("graph_def", {})
        places = [("graph", graph.get("node", []))]
        places += [(f"function {f.get('signature', {}).get('name', '?')}", f.get("node_def", []))
                   for f in graph.get("library", {}).get("function", [])]
        for where, nodes in places:
            for node in nodes:
                op = node.get("op", "")
                if op in DANGEROUS_TF_OPS:
                    yield ctx.finding(artifact, "tf-savedmodel-dangerous-op",
                                      f"op {op} ({DANGEROUS_TF_OPS[op]}) in {where}, node {node.get('name', '?')!r}",
                                      evidence={"op": op, "node": node.get("name"), "where": where}, key=f"{where}:{op}",
                                      severity=Severity.CRITICAL if "Python" in DANGEROUS_TF_OPS[op] else None)


def _hdf5(artifact: Artifact, ctx: ScanContext, buf) -> Iterator:
    """The JSON configs a legacy HDF5 model keeps as root group attributes, read as the HDF5 library reads them."""
    attributes = root_attributes(buf, HDF5_CONFIGS)
    for name, value in attributes.values:
        try:
            config = json.loads(value)
        except (ValueError, RecursionError):
            continue  # Keras cannot load it either
        if isinstance(config, dict):
            yield from _walk(artifact, ctx, config, name)
    if attributes.error:
        yield ctx.finding(artifact, "keras-hdf5-unparsed", f"HDF5 root attributes unreadable: {attributes.error} "
                          f"at offset {attributes.offset}", offset=attributes.offset,
                          evidence={"reason": attributes.error})


def _walk(artifact: Artifact, ctx: ScanContext, config: dict, root: str = "config") -> Iterator:
    policy = GlobalPolicy.default()
    stack, seen = [(config, root)], 0
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
