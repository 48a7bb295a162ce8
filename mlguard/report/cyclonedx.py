"""CycloneDX 1.6 SBOM of a project tree, built with ``cyclonedx-python-lib``: every artifact a component with
its SHA-256 (model files as ``machine-learning-model`` with format and framework), every manifest entry a
library with its purl, every finding a vulnerability linked to what it affects."""
from __future__ import annotations

import os
from decimal import Decimal

from cyclonedx.model import HashAlgorithm, HashType, Property
from cyclonedx.model.bom import Bom
from cyclonedx.model.component import Component, ComponentType
from cyclonedx.model.vulnerability import (BomTarget, Vulnerability, VulnerabilityRating, VulnerabilityScoreSource,
                                           VulnerabilitySeverity, VulnerabilitySource)
from cyclonedx.output.json import JsonV1Dot6
from packageurl import PackageURL

from .. import __version__, engine
from ..advisories.manifests import parser_for, tree_reader
from ..config import Config
from ..findings import Finding
from ..rules import catalog
from ..scan import scan_tree
from ..sniff import Format, sniff_file
from ..walker import Entry, walk

_MODEL_FORMATS = {Format.PICKLE, Format.SAFETENSORS, Format.ONNX, Format.GGUF, Format.HDF5}
_MODEL_ZIPS = {"pytorch", "torchscript", "keras"}
_DATA = {Format.NPY, Format.JSON, Format.YAML}
_FRAMEWORK = {"pytorch": "pytorch", "torchscript": "pytorch", "torch-legacy": "pytorch", "keras": "keras",
              Format.SAFETENSORS: "safetensors", Format.ONNX: "onnx", Format.GGUF: "gguf", Format.HDF5: "keras",
              Format.NPY: "numpy", "npz": "numpy", Format.PICKLE: "pickle"}


def build(root: str, config: Config, jobs: int | None = None) -> str:
    """Scan ``root`` and return its SBOM as CycloneDX 1.6 JSON."""
    single_file = os.path.isfile(root)
    entries = [e for e in walk(root, include=config.include, exclude=config.exclude,
                               max_file_size=config.max_file_size) if isinstance(e, Entry)]
    digests = engine.sha256_files([e.fs_path for e in entries], jobs=jobs)
    bom = Bom()
    project = Component(name=os.path.basename(os.path.abspath(root)), type=ComponentType.APPLICATION,
                        bom_ref="project")
    bom.metadata.component = project
    bom.metadata.tools.components.add(Component(name="ml-guard", version=__version__,
                                                 type=ComponentType.APPLICATION))
    files: dict[str, Component] = {}
    libraries: dict[str, Component] = {}
    for entry, digest in zip(entries, digests):
        component = _artifact(entry, digest)
        files[entry.rel] = component
        bom.components.add(component)
        parser = parser_for(os.path.basename(entry.rel))
        if parser is None:
            continue
        text = _read_text(entry)
        base = os.path.dirname(entry.fs_path) if single_file else root
        manifest = parser.parse(text, entry.rel if not single_file else os.path.basename(entry.rel),
                                tree_reader(base))
        uses = []
        for dep in manifest.dependencies:
            if dep.constraint or not dep.normalized:
                continue
            library = libraries.get(_purl(dep).to_string())
            if library is None:
                library = _library(dep)
                libraries[library.bom_ref.value] = library
                bom.components.add(library)
            uses.append(library)
        bom.register_dependency(component, uses)
    bom.register_dependency(project, files.values())
    result = scan_tree(root, config, jobs=jobs)
    for finding in result.findings:
        target = _target(finding, files, libraries)
        bom.vulnerabilities.add(_vulnerability(finding, target))
    return JsonV1Dot6(bom).output_as_string(indent=2)


def _artifact(entry: Entry, digest) -> Component:
    try:
        sniffed = sniff_file(entry.fs_path)
        fmt, flavour = sniffed.format, sniffed.flavour
    except OSError:
        fmt, flavour = Format.BINARY, None
    if fmt in _MODEL_FORMATS or (fmt is Format.ZIP and flavour in _MODEL_ZIPS):
        kind = ComponentType.MACHINE_LEARNING_MODEL
    elif fmt in _DATA or flavour == "npz":
        kind = ComponentType.DATA
    else:
        kind = ComponentType.FILE
    properties = [Property(name="mlguard:format", value=fmt.value), Property(name="mlguard:size", value=str(entry.size))]
    if flavour:
        properties.append(Property(name="mlguard:flavour", value=flavour))
    framework = _FRAMEWORK.get(flavour) or _FRAMEWORK.get(fmt)
    if framework and kind is not ComponentType.FILE:
        properties.append(Property(name="mlguard:framework", value=framework))
    hashes = [HashType(alg=HashAlgorithm.SHA_256, content=digest)] if isinstance(digest, str) else []
    if not isinstance(digest, str):
        properties.append(Property(name="mlguard:unreadable", value=str(digest)))
    return Component(name=entry.rel, type=kind, bom_ref=f"file:{entry.rel}", hashes=hashes, properties=properties)


def _read_text(entry: Entry) -> str:
    with open(entry.fs_path, "rb") as f:
        return f.read(16 << 20).decode("utf-8", "replace")


def _purl(dep) -> PackageURL:
    return PackageURL(type="pypi", name=dep.normalized, version=dep.version)


def _library(dep) -> Component:
    properties = [Property(name="mlguard:manifest", value=dep.source)]
    if dep.specifier and dep.version is None:
        properties.append(Property(name="mlguard:specifier", value=dep.specifier))
    if dep.url:
        properties.append(Property(name="mlguard:url", value=dep.url))
    purl = _purl(dep)
    return Component(name=dep.normalized, version=dep.version, purl=purl, bom_ref=purl.to_string(),
                     properties=properties)


def _target(finding: Finding, files: dict, libraries: dict):
    """The library an advisory is about, else the file the finding is in."""
    package = finding.evidence.get("package") if finding.scanner == "dependencies" else None
    version = finding.evidence.get("version")
    if package:
        library = libraries.get(PackageURL(type="pypi", name=package, version=version).to_string())
        if library is not None:
            return library
    return files.get(finding.path)


def _vulnerability(finding: Finding, target: Component | None) -> Vulnerability:
    rule = catalog()[finding.rule_id]
    advisory = finding.evidence.get("advisory")
    rating = {"severity": VulnerabilitySeverity(finding.severity.value),
              "method": VulnerabilityScoreSource.OTHER}
    vector = finding.evidence.get("vector")
    if vector and finding.evidence.get("score") is not None:
        method = (VulnerabilityScoreSource.CVSS_V3_1 if vector.startswith("CVSS:3.1") else
                  VulnerabilityScoreSource.CVSS_V3 if vector.startswith("CVSS:3") else VulnerabilityScoreSource.CVSS_V2)
        rating.update(method=method, score=Decimal(str(finding.evidence["score"])), vector=vector)
    source = VulnerabilitySource(name="OSV", url=None) if advisory else VulnerabilitySource(name="ml-guard")
    where = finding.location.describe()
    properties = [Property(name="mlguard:rule", value=finding.rule_id), Property(name="mlguard:path", value=finding.path)]
    if where:
        properties.append(Property(name="mlguard:location", value=where))
    return Vulnerability(
        bom_ref=f"finding:{finding.fingerprint}", id=advisory or finding.rule_id, source=source,
        ratings=[VulnerabilityRating(**rating)], cwes=[int(rule.cwe.split("-")[1])] if rule.cwe else None,
        description=finding.message, recommendation=rule.remediation,
        affects=[BomTarget(ref=target.bom_ref.value)] if target is not None else None, properties=properties)
