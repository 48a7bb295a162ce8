"""ONNX: the model the loader builds, read by a streaming protobuf walk (no full load, tensor bytes skipped):
operators and domains at every depth, local functions, external data, and the free text models carry."""
from __future__ import annotations

import functools
import os
from typing import Iterator

from .. import engine
from ..engine.pure.onnx_schema import SCHEMA
from ..findings import Finding
from ..rules import load_data
from ..sniff import Format
from . import _text_checks as text_checks
from .interface import Artifact, Option, ScanContext

STANDARD_ALIASES = {"": "ai.onnx"}
EXTERNAL_KEYS = {"location", "offset", "length", "checksum"}
NATIVE_SUFFIXES = (".so", ".dll", ".dylib")
MAX_NODES = 1_000_000
PROTOBUF_LIMIT = (2 << 30) - 1
"""protobuf's hard limit on a serialized message: ONNX files larger than this cannot be loaded whole."""


@functools.lru_cache(maxsize=None)
def _ops() -> dict:
    return load_data("onnx_ops.yaml")


class OnnxScanner:
    name = "onnx"
    formats = frozenset({Format.ONNX, Format.BINARY})
    """BINARY: a ``.onnx`` file too broken for the sniffer to recognise."""
    options: dict[str, Option] = {}

    def scan(self, artifact: Artifact, ctx: ScanContext) -> Iterator[Finding | None]:
        if artifact.sniffed.format is Format.BINARY and not artifact.name.endswith(".onnx"):
            return
        model = engine.protobuf_walk(artifact.buffer(), SCHEMA, "Model")
        if model["_error"]:
            e = model["_error"]
            yield ctx.finding(artifact, "onnx-malformed", f"invalid protobuf: {e['kind']} at offset {e['offset']}; "
                              "the rest of the model was not read", offset=e["offset"], evidence=e)
        graphs = list(_graphs(model))
        nodes = [(path, n) for path, g in graphs for n in g.get("node", [])]
        functions = model.get("functions", [])
        nodes += [(f"function {f.get('domain', '')}.{f.get('name', '')}", n) for f in functions
                  for n in f.get("node", [])]
        if not model.get("graph", {}).get("node"):
            yield ctx.finding(artifact, "onnx-empty", "the main graph has no nodes")
        if len(nodes) > MAX_NODES:
            yield ctx.finding(artifact, "onnx-too-many-nodes", f"{len(nodes):,} nodes; only {MAX_NODES:,} checked")
            nodes = nodes[:MAX_NODES]
        if artifact.size > PROTOBUF_LIMIT:
            yield ctx.finding(artifact, "onnx-too-large", f"{artifact.size:,} bytes, over protobuf's 2 GiB message "
                              "limit: onnx.load and ONNX Runtime refuse the file (it was scanned all the same)",
                              evidence={"size": artifact.size})
        yield from _versions(artifact, ctx, model)
        yield from _operators(artifact, ctx, model, nodes, functions)
        yield from _external(artifact, ctx, graphs)
        yield from _text(artifact, ctx, model, graphs, nodes)
        yield from _native_libraries(artifact, ctx)


def _graphs(model: dict) -> Iterator[tuple[str, dict]]:
    """Every graph: the main one, subgraphs in attributes at any depth, training graphs, function bodies' subgraphs."""
    stack = [("graph", model["graph"])] if "graph" in model else []
    stack += [(f"training_info[{i}].{k}", t[k]) for i, t in enumerate(model.get("training_info", []))
              for k in ("initialization", "algorithm") if k in t]
    nodes_outside = [n for f in model.get("functions", []) for n in f.get("node", [])]
    for node in nodes_outside:
        stack += _subgraphs("function", node)
    while stack:
        path, graph = stack.pop()
        yield path, graph
        for node in graph.get("node", []):
            stack += _subgraphs(path, node)


def _subgraphs(path: str, node: dict) -> list[tuple[str, dict]]:
    out = []
    for a in node.get("attribute", []):
        where = f"{path}/{node.get('name') or node.get('op_type', '?')}.{a.get('name', '?')}"
        if "g" in a:
            out.append((where, a["g"]))
        out += [(f"{where}[{i}]", g) for i, g in enumerate(a.get("graphs", []))]
    return out


def _versions(artifact: Artifact, ctx: ScanContext, model: dict) -> Iterator:
    ir = model.get("ir_version")
    if ir is not None and ir < 3:
        yield ctx.finding(artifact, "onnx-old-ir-version", f"IR version {ir}: current runtimes refuse it")
    for opset in model.get("opset_import", []):
        domain = STANDARD_ALIASES.get(opset.get("domain", ""), opset.get("domain", ""))
        version = opset.get("version", 0)
        if domain == "ai.onnx" and version < 7:
            yield ctx.finding(artifact, "onnx-old-opset", f"opset {version} of the default domain", key=domain)


def _operators(artifact, ctx, model, nodes, functions) -> Iterator:
    ops = _ops()
    standard = {d: set(names) for d, names in ops["standard"].items()}
    vendor = set(ops["vendor"])
    local = {(f.get("domain", ""), f.get("name", "")) for f in functions}
    local_domains = {d for d, _ in local}
    imported = {STANDARD_ALIASES.get(o.get("domain", ""), o.get("domain", "")) for o in model.get("opset_import", [])}
    for domain in sorted(imported - set(standard) - vendor - local_domains):
        yield ctx.finding(artifact, "onnx-non-standard-opset-domain", f"opset import of domain {domain!r}",
                          evidence={"domain": domain}, key=domain)
    reported = set()
    for path, node in nodes:
        raw = node.get("domain", "")
        domain, op = STANDARD_ALIASES.get(raw, raw), node.get("op_type", "")
        if (raw, op) in local:
            continue
        key = (domain, op)
        if key in reported:
            continue
        reported.add(key)
        where = {"evidence": {"domain": domain, "op_type": op, "graph": path}, "key": f"{domain}.{op}"}
        if domain in standard:
            if op not in standard[domain]:
                yield ctx.finding(artifact, "onnx-unknown-op", f"{domain} has no operator {op!r} (in {path})", **where)
        elif domain in vendor:
            yield ctx.finding(artifact, "onnx-vendor-domain-op", f"{domain}.{op} (in {path}) is an ONNX Runtime "
                              "contrib operator, not standard ONNX", **where)
        else:
            yield ctx.finding(artifact, "onnx-custom-domain-op", f"{domain}.{op} (in {path}) needs a custom "
                              "operator library: native code loaded with the model", **where)
        if domain not in imported and raw not in local_domains:
            yield ctx.finding(artifact, "onnx-domain-without-opset", f"{domain}.{op} is used but the model imports "
                              f"no opset for {domain!r}", evidence={"domain": domain}, key=f"noopset:{domain}")
    yield from _function_cycles(artifact, ctx, functions)


def _function_cycles(artifact, ctx, functions) -> Iterator:
    calls = {(f.get("domain", ""), f.get("name", "")): {(n.get("domain", ""), n.get("op_type", ""))
                                                         for n in f.get("node", [])} for f in functions}
    state: dict = {}

    def visit(fn, trail) -> tuple | None:
        state[fn] = "open"
        for callee in calls.get(fn, ()):
            if callee not in calls:
                continue
            if state.get(callee) == "open":
                return trail + (callee,)
            if callee not in state:
                cycle = visit(callee, trail + (callee,))
                if cycle:
                    return cycle
        state[fn] = "done"
        return None

    for fn in sorted(calls):
        if fn not in state:
            cycle = visit(fn, (fn,))
            if cycle:
                names = " -> ".join(f"{d}.{n}" for d, n in cycle)
                yield ctx.finding(artifact, "onnx-function-cycle", f"model-local functions call each other in a "
                                  f"cycle ({names}): expanding them never ends", key=names)
                return


def _tensors(graphs) -> Iterator[dict]:
    for _, graph in graphs:
        yield from graph.get("initializer", [])
        for sparse in graph.get("sparse_initializer", []):
            yield from (sparse[k] for k in ("values", "indices") if k in sparse)
        for node in graph.get("node", []):
            for a in node.get("attribute", []):
                yield from ([a["t"]] if "t" in a else []) + a.get("tensors", [])


def _external(artifact: Artifact, ctx: ScanContext, graphs) -> Iterator:
    folder = os.path.dirname(artifact.fs_path) if artifact.fs_path and artifact.depth == 0 else None
    for tensor in _tensors(graphs):
        entries = {e.get("key", ""): e.get("value", "") for e in tensor.get("external_data", [])}
        if not entries and tensor.get("data_location") != 1:
            continue
        name = tensor.get("name", "?")
        where = {"evidence": {"tensor": name, **entries}, "key": name}
        for key in sorted(set(entries) - EXTERNAL_KEYS):
            yield ctx.finding(artifact, "onnx-external-unknown-key", f"tensor {name!r}: external_data key {key!r}",
                              **{**where, "key": f"{name}:{key}"})
        location = entries.get("location", "")
        if text_checks.SCHEME.search(location) and not text_checks.ABSOLUTE.search(location):
            yield ctx.finding(artifact, "onnx-external-url", f"tensor {name!r} reads its data from {location!r}", **where)
        elif text_checks.ABSOLUTE.search(location) or location.startswith("\\\\"):
            yield ctx.finding(artifact, "onnx-external-absolute-path",
                              f"tensor {name!r} reads its data from the absolute path {location!r}", **where)
        elif text_checks.TRAVERSAL.search(location):
            yield ctx.finding(artifact, "onnx-external-path-traversal",
                              f"tensor {name!r} reads its data from {location!r}, outside the model folder", **where)
        elif folder is not None:
            yield from _external_file(artifact, ctx, folder, name, location, entries, where)


def _external_file(artifact, ctx, folder, name, location, entries, where) -> Iterator:
    path = os.path.join(folder, location)
    try:
        st = os.lstat(path)
    except OSError:
        yield ctx.finding(artifact, "onnx-external-missing", f"tensor {name!r}: external file {location!r} is "
                          "not beside the model", **where)
        return
    if os.path.islink(path):
        yield ctx.finding(artifact, "onnx-external-link", f"tensor {name!r}: {location!r} is a symbolic link to "
                          f"{os.readlink(path)!r}", **where)
        return
    if st.st_nlink > 1:
        yield ctx.finding(artifact, "onnx-external-link", f"tensor {name!r}: {location!r} has {st.st_nlink} hard "
                          "links: it may be a file from elsewhere on the machine", **where)
    try:
        offset, length = int(entries.get("offset") or 0), entries.get("length")
        end = offset + (int(length) if length not in (None, "") else 0)
    except ValueError:
        yield ctx.finding(artifact, "onnx-external-out-of-bounds", f"tensor {name!r}: offset/length are not "
                          "integers", **where)
        return
    if offset < 0 or end > st.st_size or offset > st.st_size:
        yield ctx.finding(artifact, "onnx-external-out-of-bounds", f"tensor {name!r}: bytes {offset:,}..{end:,} "
                          f"of {location!r}, which holds {st.st_size:,}", **where)


def _text(artifact, ctx, model, graphs, nodes) -> Iterator:
    texts = [("doc_string", model.get("doc_string", ""))]
    texts += [(f"metadata {e.get('key', '')!r}", e.get("value", "")) for e in model.get("metadata_props", [])]
    texts += [(f"{path} doc_string", g.get("doc_string", "")) for path, g in graphs]
    for path, node in nodes:
        label = f"{path}/{node.get('name') or node.get('op_type', '?')}"
        texts.append((f"{label} doc_string", node.get("doc_string", "")))
        for a in node.get("attribute", []):
            values = [a["s"]] if "s" in a else []
            texts += [(f"{label}.{a.get('name', '?')}", v) for v in values + a.get("strings", [])]
    for label, text in texts:
        if not text:
            continue
        shown = text[:120] + ("…" if len(text) > 120 else "")
        for rule, pattern in (("onnx-attr-shell-command", text_checks.CODE),
                              ("onnx-attr-url", text_checks.ACTIVE_URL), ("onnx-metadata-url", text_checks.URL),
                              ("onnx-attr-path-traversal", text_checks.TRAVERSAL),
                              ("onnx-attr-absolute-path", text_checks.PATH)):
            match = pattern.search(text)
            if match:
                yield ctx.finding(artifact, rule, f"{label}: {match.group(0).strip()!r} in {shown!r}", snippet=shown,
                                  evidence={"where": label}, key=f"{rule}:{label}")
                break


def _native_libraries(artifact: Artifact, ctx: ScanContext) -> Iterator:
    if artifact.fs_path is None or artifact.depth > 0:
        return
    folder = os.path.dirname(artifact.fs_path)
    try:
        names = sorted(n for n in os.listdir(folder) if n.lower().endswith(NATIVE_SUFFIXES))
    except OSError:
        return
    for name in names:
        yield ctx.finding(artifact, "onnx-native-library", f"native library {name!r} ships beside the model "
                          "(custom operators run as native code)", evidence={"library": name}, key=name)


SCANNER = OnnxScanner()
