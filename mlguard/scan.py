"""Orchestration: open each file once, sniff it, hand it to every scanner that takes its format."""
from __future__ import annotations

import os
import time
from typing import Callable

from . import engine
from .config import Config
from .findings import Finding, ScanError, ScanResult
from .policy import Policy
from .rules import catalog
from .scanners import Artifact, ScanContext, registry
from .sniff import Format, extension_mismatch, sniff_bytes, sniff_stream
from .walker import Entry, Skipped, walk

Progress = Callable[[int, int], None]
"""Called as ``progress(done, total)`` after each file."""


def scan_file(path: str | os.PathLike, policy: Policy | None = None) -> ScanResult:
    """Scan one file; finding paths are its file name."""
    return scan_tree(path, Config(policy=policy or Policy()))


def scan_bytes(data: bytes, name: str = "<bytes>", policy: Policy | None = None) -> ScanResult:
    """Scan bytes held in memory, as if they were a file called ``name``."""
    return scan_buffer(data, name, policy or Policy())[0]


def scan_buffer(data, name: str, policy: Policy) -> tuple[ScanResult, frozenset[str]]:
    """Scan any bytes-like object (bytes, memoryview, mmap; never copied whole); also return every pickle
    global the scan met (see ``ScanContext.imports``)."""
    start = time.perf_counter()
    ctx = _context(policy)
    artifact = Artifact(name, sniff_bytes(data, name), len(data), data=data)
    findings = scan_artifact(artifact, ctx)
    return _result(name, findings, 1, ctx.errors, start), frozenset(ctx.imports)


def scan_tree(path: str | os.PathLike, config: Config | None = None, *, jobs: int | None = None,
              progress: Progress | None = None) -> ScanResult:
    """Scan a file or a folder; ``config`` defaults to the ``.ml-guard.yml`` found at ``path``."""
    start = time.perf_counter()
    root = os.fspath(path)
    config = config if config is not None else Config.discover(root)
    items = list(walk(root, include=config.include, exclude=config.exclude, max_file_size=config.max_file_size))
    entries = [item for item in items if isinstance(item, Entry)]
    ctx = _context(config.policy)
    findings = [f for item in items if isinstance(item, Skipped)
                for f in [ctx.finding(item.rel, item.rule_id, item.message)] if f]
    errors: list[ScanError] = []
    done = 0

    def one(entry: Entry) -> tuple[list[Finding], list[ScanError]]:
        file_ctx = _context(config.policy)
        return _scan_entry(entry, file_ctx), file_ctx.errors

    workers = min(jobs or min(8, os.cpu_count() or 1), len(entries)) if len(entries) > 1 else 1
    if workers <= 1:  # one file (or one worker): no thread pool to start
        results = map(one, entries)
    else:
        from concurrent.futures import ThreadPoolExecutor  # noqa: PLC0415 - not needed for one file
        pool = ThreadPoolExecutor(max_workers=workers)
        results = pool.map(one, entries)
    try:
        for file_findings, file_errors in results:
            findings.extend(file_findings)
            errors.extend(file_errors)
            done += 1
            if progress:
                progress(done, len(entries))
    finally:
        if workers > 1:
            pool.shutdown()
    return _result(root, findings, len(entries), errors, start)


def _context(policy: Policy) -> ScanContext:
    return ScanContext(policy, catalog(), scan_artifact)


def _result(root: str, findings: list[Finding], files: int, errors: list[ScanError], start: float) -> ScanResult:
    return ScanResult(root=root, findings=tuple(sorted(findings, key=Finding.sort_key)), files_scanned=files,
                      duration_seconds=round(time.perf_counter() - start, 3), errors=tuple(errors),
                      engine=engine.engine_name())


def _scan_entry(entry: Entry, ctx: ScanContext) -> list[Finding]:
    """Scan one file on disk, opened once; never raises."""
    try:
        f = open(entry.fs_path, "rb")
    except OSError as exc:
        return [x for x in [ctx.finding(entry.rel, "file-unreadable", f"cannot open: {exc.strerror or exc}")] if x]
    artifact = None
    try:
        with f:
            if ctx.policy.trusted_sha256 and _sha256(f) in ctx.policy.trusted_sha256:
                return []
            sniffed = sniff_stream(f, entry.size, entry.rel)
            artifact = Artifact(entry.rel, sniffed, entry.size, file=f, fs_path=entry.fs_path)
            return scan_artifact(artifact, ctx)
    except OSError as exc:
        return [x for x in [ctx.finding(entry.rel, "file-unreadable", f"read failed: {exc.strerror or exc}")] if x]
    except Exception as exc:  # fail closed: a crash is a finding, never a traceback
        return [x for x in [_scanner_error(ctx, artifact or entry.rel, "scan", exc)] if x]
    finally:
        if artifact is not None:
            artifact.close()


def scan_artifact(artifact: Artifact, ctx: ScanContext) -> list[Finding]:
    """Core checks, then every enabled scanner that takes the artifact's format."""
    findings: list[Finding | None] = []
    mismatch = extension_mismatch(artifact.name, artifact.sniffed)
    if mismatch:
        findings.append(ctx.finding(artifact, "format-extension-mismatch", mismatch,
                                    evidence={"format": artifact.sniffed.format.value}))
    if artifact.depth == 0 and artifact.sniffed.format is Format.BINARY:
        findings.append(ctx.finding(artifact, "format-unrecognized", "binary file of unrecognised format; not examined"))
    for scanner in registry().values():
        if artifact.sniffed.format not in scanner.formats or not ctx.policy.runs(scanner.name):
            continue
        try:
            findings.extend(scanner.scan(artifact, ctx))
        except Exception as exc:  # a scanner bug must not hide the file: fail closed
            findings.append(_scanner_error(ctx, artifact, scanner.name, exc))
    return [f for f in findings if f is not None]


def _scanner_error(ctx: ScanContext, where: Artifact | str, scanner: str, exc: Exception) -> Finding | None:
    path = where if isinstance(where, str) else where.path
    message = f"{scanner} scanner failed: {type(exc).__name__}: {exc}"
    ctx.errors.append(ScanError(path, message))
    return ctx.finding(where, "scanner-error", message, evidence={"scanner": scanner, "error": type(exc).__name__})


def _sha256(f) -> str:
    import hashlib  # noqa: PLC0415 - only with trusted_sha256 (importing it loads OpenSSL: start-up)

    digest = hashlib.sha256()
    for block in iter(lambda: f.read(1 << 20), b""):
        digest.update(block)
    f.seek(0)
    return digest.hexdigest()
