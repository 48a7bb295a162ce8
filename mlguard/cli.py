"""The ``ml-guard`` command line. Scanning machinery is imported inside commands to keep start-up fast."""
from __future__ import annotations

import os
import sys
import time

import click

from . import __version__
from .findings import ScanResult, Severity
from .record import replace
from .report import REPORTERS
from .report.interface import RenderOptions

EXIT_OK, EXIT_FINDINGS, EXIT_USAGE = 0, 1, 2
SEVERITY_NAMES = [s.value for s in Severity]


def _print_version(ctx: click.Context, _param, value: bool) -> None:
    if value and not ctx.resilient_parsing:
        from . import engine

        click.echo(f"ml-guard {__version__} (engine: {engine.engine_status()})")
        ctx.exit(EXIT_OK)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--version", is_flag=True, expose_value=False, is_eager=True, callback=_print_version,
              help="Show the version and which scanning engine runs, then exit.")
def main() -> None:
    """ML Guard: find malicious or broken ML artifacts before anyone loads them.

    \b
    Exit codes: 0 nothing at or above --fail-on, 1 at least one finding at or
    above it, 2 usage or configuration error.
    """


def _fail(message: str) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(EXIT_USAGE)


def _write_atomically(path: str, content: str | bytes) -> None:
    """Write ``content`` to ``path`` so readers never see a half-written report."""
    import tempfile
    from pathlib import Path

    target = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent if str(target.parent) else ".")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(content.encode("utf-8") if isinstance(content, str) else content)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes it 0600; a report is an ordinary file
        os.replace(tmp, target)
    except BaseException:
        os.unlink(tmp)
        raise


def _config(path: str, config_path: str | None, *, fail_on: str | None = None, db_path: str | None = None,
            **overrides):
    """The configuration for scanning ``path``: ``--config`` or the discovered ``.ml-guard.yml``, with flags
    on top; a configuration error ends the command with exit code 2."""
    from .config import Config, ConfigError

    try:
        config = Config.load(config_path) if config_path else Config.discover(path)
        return config.with_overrides(fail_on=fail_on, options={"dependencies": {"db": db_path}} if db_path else None,
                                     **overrides)
    except ConfigError as exc:
        _fail(str(exc))


class _Progress:
    """A progress bar on stderr, shown only once the work has run for half a second."""

    def __init__(self, label: str = "Scanning") -> None:
        self._bar = None
        self._label = label
        self._start = time.monotonic()

    def __call__(self, done: int, total: int) -> None:
        if self._bar is None:
            if time.monotonic() - self._start < 0.5:
                return
            self._bar = click.progressbar(length=total, label=self._label, file=sys.stderr, show_pos=True)
            self._bar.__enter__()
        self._bar.update(done - self._bar.pos)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.__exit__(None, None, None)


def _merge(results: list[ScanResult], roots: tuple[str, ...]) -> ScanResult:
    """One result for several roots; paths are prefixed with their root so they stay distinct."""
    if len(results) == 1:
        return results[0]
    findings = []
    for root, result in zip(roots, results):
        prefix = root if os.path.isdir(root) else os.path.dirname(root)
        findings += [replace(f, path=os.path.join(prefix, f.path).replace(os.sep, "/")) for f in result.findings]
    return ScanResult(root=" ".join(roots), findings=tuple(findings),
                      files_scanned=sum(r.files_scanned for r in results),
                      duration_seconds=round(sum(r.duration_seconds for r in results), 3),
                      errors=tuple(e for r in results for e in r.errors), engine=results[0].engine)


@main.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--format", "fmt", type=click.Choice(sorted(REPORTERS)), default="text", show_default=True,
              help="Output format.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, writable=True), help="Write the report to FILE.")
@click.option("--fail-on", type=click.Choice(SEVERITY_NAMES, case_sensitive=False),
              help="Exit 1 when a finding is at or above this severity [config fail_on, default high].")
@click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False),
              help="Configuration file [default: .ml-guard.yml at the scanned path].")
@click.option("--scanners", help="Comma-separated scanners to run (see `ml-guard rules`).")
@click.option("--exclude", multiple=True, metavar="GLOB", help="Skip paths matching GLOB (repeatable).")
@click.option("--include", multiple=True, metavar="GLOB", help="Scan only paths matching GLOB (repeatable).")
@click.option("--jobs", "-j", type=click.IntRange(1, 64), help="Files scanned in parallel [default: CPU count].")
@click.option("--db", "db_path", type=click.Path(dir_okay=False),
              help="Advisory database for dependency manifests [default: MLGUARD_DB, else the user data folder].")
@click.option("--baseline", "baseline_path", type=click.Path(exists=True, dir_okay=False),
              help="Drop the findings listed in this baseline (`ml-guard baseline create`).")
@click.option("--no-color", is_flag=True, help="Never colour the output (also: NO_COLOR=1).")
@click.option("-q", "--quiet", is_flag=True, help="No banner and no progress bar.")
def scan(paths, fmt, output, fail_on, config_path, scanners, exclude, include, jobs, db_path, baseline_path,
         no_color, quiet) -> None:
    """Scan files or folders for malicious or broken ML artifacts."""
    from .scan import scan_tree
    from . import baseline

    try:
        accepted = baseline.load(baseline_path) if baseline_path else frozenset()
    except baseline.BaselineError as exc:
        _fail(str(exc))
    results = []
    show_progress = sys.stderr.isatty() and not quiet
    for path in paths:
        config = _config(path, config_path, fail_on=fail_on, db_path=db_path, exclude=exclude, include=include,
                         scanners=scanners.split(",") if scanners else None)
        progress = _Progress() if show_progress else None
        try:
            results.append(scan_tree(path, config, jobs=jobs, progress=progress))
        finally:
            if progress:
                progress.close()
    result = _merge(results, paths)
    if baseline_path:
        result, suppressed = baseline.apply(result, accepted)
        click.echo(f"{suppressed} finding{'s' * (suppressed != 1)} suppressed by baseline {baseline_path}", err=True)
    color = (output is None and not no_color and "NO_COLOR" not in os.environ and sys.stdout.isatty())
    text = REPORTERS[fmt].render(result, RenderOptions(color=color, quiet=quiet))
    if output:
        _write_atomically(output, text)
        if not quiet:
            click.echo(f"Report written to {output}", err=True)
    else:
        click.echo(text, nl=False)
    sys.exit(EXIT_FINDINGS if result.fails(config.policy.fail_on) else EXIT_OK)


@main.group("baseline")
def baseline_group() -> None:
    """Accept the findings a project has today; `scan --baseline` then reports only new ones.

    \b
    ml-guard baseline create . -o .ml-guard-baseline.json
    ml-guard scan . --baseline .ml-guard-baseline.json

    A baseline holds fingerprints, rule ids, paths and redacted snippets, never
    a secret. Fingerprints do not depend on line numbers: create and scan from
    the same root.
    """


@baseline_group.command("create")
@click.argument("path", type=click.Path(exists=True))
@click.option("-o", "--output", default=".ml-guard-baseline.json", show_default=True,
              type=click.Path(dir_okay=False, writable=True), help="Write the baseline to FILE.")
@click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False),
              help="Configuration file [default: .ml-guard.yml at the scanned path].")
@click.option("--db", "db_path", type=click.Path(dir_okay=False), help="Advisory database for dependency manifests.")
@click.option("--jobs", "-j", type=click.IntRange(1, 64), help="Files scanned in parallel [default: CPU count].")
def baseline_create(path, output, config_path, db_path, jobs) -> None:
    """Scan PATH and write the fingerprint of every finding to a baseline file."""
    from .scan import scan_tree
    from . import baseline

    result = scan_tree(path, _config(path, config_path, db_path=db_path), jobs=jobs)
    _write_atomically(output, baseline.create(result))
    click.echo(f"Baseline of {len(result.findings)} findings written to {output}", err=True)


@main.command("rules")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
def rules_command(fmt: str) -> None:
    """List every rule with its default severity."""
    from .rules import catalog

    cat = catalog()
    if fmt == "json":
        import json

        click.echo(json.dumps([{"id": r.id, "scanner": r.scanner, "severity": r.severity.value, "title": r.title,
                                "cwe": r.cwe, "tags": list(r.tags), "aliases": list(r.aliases)} for r in cat],
                              indent=2))
        return
    width = max(len(r.id) for r in cat)
    for r in cat:
        click.echo(f"{r.id:<{width}}  {r.severity.value:<8}  {r.scanner:<8}  {r.title}")


@main.command()
@click.argument("rule_id")
def explain(rule_id: str) -> None:
    """Explain one rule: what it detects, why it matters, what to do."""
    from .rules import catalog

    cat = catalog()
    if rule_id not in cat:
        _fail(f"unknown rule {rule_id!r}; list them with `ml-guard rules`")
    r = cat[rule_id]
    click.echo(f"{r.id} — {r.title}")
    click.echo(f"scanner: {r.scanner}   default severity: {r.severity.value}" + (f"   {r.cwe}" if r.cwe else ""))
    if r.aliases:
        click.echo(f"also accepted as: {', '.join(r.aliases)}")
    click.echo(f"\n{r.description}\n\nRemediation: {r.remediation}")
    click.echo(f"\nOverride in .ml-guard.yml:\n  rules:\n    {r.id}: {{severity: low}}   # or {{disabled: true}}")


@main.command()
@click.argument("directory", type=click.Path(file_okay=False))
def demo(directory: str) -> None:
    """Write a small demo project with planted problems into DIRECTORY."""
    from .demo import write_demo

    files = write_demo(directory)
    click.echo(f"Wrote {len(files)} files to {directory}. Now run:  ml-guard scan {directory}")


@main.command()
@click.argument("path", type=click.Path(exists=True))
@click.option("-o", "--output", type=click.Path(dir_okay=False, writable=True),
              help="Write the SBOM to FILE [default: standard output].")
@click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False),
              help="Configuration file [default: .ml-guard.yml at the scanned path].")
@click.option("--db", "db_path", type=click.Path(dir_okay=False), help="Advisory database for dependency manifests.")
@click.option("--jobs", "-j", type=click.IntRange(1, 64), help="Files hashed and scanned in parallel.")
def sbom(path, output, config_path, db_path, jobs) -> None:
    """Write a CycloneDX 1.6 SBOM of PATH: artifacts with SHA-256, models, libraries, findings.

    \b
    Model files are machine-learning-model components (format, framework),
    manifest entries library components with purls, and every finding a
    vulnerability linked to the component it affects. Exit code 0 (2 on a
    usage or configuration error): the SBOM records findings, it does not judge.
    """
    from .report.cyclonedx import build

    text = build(path, _config(path, config_path, db_path=db_path), jobs=jobs)
    if output:
        _write_atomically(output, text)
        click.echo(f"SBOM written to {output}", err=True)
    else:
        click.echo(text)


_COMPLIANCE_STANDARDS = ("eu-ai-act", "nist-ai-rmf", "iso-27001", "soc2")


@main.command()
@click.argument("path", type=click.Path(exists=True))
@click.option("--standard", required=True, type=click.Choice(_COMPLIANCE_STANDARDS),
              help="Which standard's controls to map the results onto.")
@click.option("--format", "fmt", type=click.Choice(["pdf", "json", "html"]),
              help="Output format [default: from the -o extension, else pdf].")
@click.option("-o", "--output", type=click.Path(dir_okay=False, writable=True),
              help="Write the report to FILE (required for pdf).")
@click.option("--evidence", type=click.Path(dir_okay=False, writable=True),
              help="Also write the canonical JSON evidence the report names by SHA-256.")
@click.option("--fail-on", type=click.Choice(SEVERITY_NAMES, case_sensitive=False),
              help="Severity that makes the verdict FAIL [config fail_on, default high].")
@click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False),
              help="Configuration file [default: .ml-guard.yml at the scanned path].")
@click.option("--db", "db_path", type=click.Path(dir_okay=False), help="Advisory database for dependency manifests.")
def compliance(path, standard, fmt, output, evidence, fail_on, config_path, db_path) -> None:
    """Scan PATH and write compliance evidence for a standard (PDF, HTML or JSON).

    \b
    Each control of the standard (EU AI Act Art. 9-15, NIST AI RMF MEASURE/MANAGE,
    ISO/IEC 27001:2022 Annex A, SOC 2 CC6/CC7) lists the findings that bear on
    it, what a clean result supports and what it cannot show. This is technical
    evidence, not a conformity declaration. Exit codes: 0 verdict PASS, 1 FAIL,
    2 usage or configuration error.
    """
    from .report.compliance import canonical, evidence as build, render
    from .scan import scan_tree

    fmt = fmt or (os.path.splitext(output)[1].lstrip(".").lower() if output else "pdf")
    if fmt not in ("pdf", "json", "html"):
        _fail(f"cannot tell the format from {output!r}: use --format pdf|json|html")
    if fmt == "pdf" and not output:
        _fail("a PDF needs a file: add -o report.pdf (or use --format json|html for standard output)")
    config = _config(path, config_path, fail_on=fail_on, db_path=db_path)
    data = build(scan_tree(path, config), standard, config.policy)
    content = render(data, fmt)
    if evidence:
        _write_atomically(evidence, canonical(data))
    if output:
        _write_atomically(output, content)
        click.echo(f"Verdict {data['verdict'].upper()}: {output} written", err=True)
    else:
        click.echo(content.decode("utf-8"))
    sys.exit(EXIT_FINDINGS if data["verdict"] == "fail" else EXIT_OK)


_db_option = click.option("--db", "db_path", type=click.Path(dir_okay=False),
                          help="Database file [default: MLGUARD_DB, else osv.sqlite in the user data folder].")


@main.group("db")
def db_group() -> None:
    """The local OSV advisory database that dependency manifests are checked against.

    \b
    ml-guard db update                   download OSV's PyPI export and build it
    ml-guard db update --from all.zip    build it offline from a downloaded export
    ml-guard db info                     what it holds and when it was updated
    """


@db_group.command("update")
@click.option("--from", "source", metavar="ZIP|DIR|URL",
              help="OSV records: PyPI all.zip, a folder of *.json records, or a URL [default: OSV's live PyPI export].")
@_db_option
def db_update(source: str | None, db_path: str | None) -> None:
    """Build or refresh the database (atomically: a failed update changes nothing)."""
    from .advisories.database import DatabaseError, default_path, update

    progress = _Progress("Importing advisories") if sys.stderr.isatty() else None
    start = time.monotonic()
    try:
        info = update(db_path or default_path(), source, progress)
    except DatabaseError as exc:
        _fail(str(exc))
    finally:
        if progress:
            progress.close()
    click.echo(f"Imported {info['records']:,} advisories ({info['malicious']:,} malicious packages, "
               f"{info['withdrawn']:,} withdrawn, {info['skipped']:,} unreadable skipped) for "
               f"{info['packages']:,} packages in {time.monotonic() - start:.1f} s into {info['path']}")


@db_group.command("info")
@_db_option
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
def db_info(db_path: str | None, fmt: str) -> None:
    """Show what the database holds and when it was built."""
    from .advisories.database import DatabaseError, default_path, info

    try:
        data = info(db_path or default_path())
    except DatabaseError as exc:
        _fail(str(exc))
    if fmt == "json":
        import json

        click.echo(json.dumps(data, indent=2))
        return
    for key, value in data.items():
        click.echo(f"{key + ':':<12} {value:,}" if isinstance(value, int) else f"{key + ':':<12} {value}")


@main.command("cve-update", hidden=True)
@click.argument("source")
@_db_option
@click.pass_context
def cve_update(ctx: click.Context, source: str, db_path: str | None) -> None:
    """Earlier spelling of `ml-guard db update --from SOURCE`."""
    ctx.invoke(db_update, source=source, db_path=db_path)


@main.command("cve-info", hidden=True)
@_db_option
@click.pass_context
def cve_info(ctx: click.Context, db_path: str | None) -> None:
    """Earlier spelling of `ml-guard db info`."""
    ctx.invoke(db_info, db_path=db_path, fmt="text")


_RUNTIME_ENV = ("MLGUARD_MODE", "MLGUARD_CONFIG", "MLGUARD_DISABLE", "MLGUARD_EVENT_LOG")
_site_dir_option = click.option(
    "--site-dir", type=click.Path(file_okay=False),
    help="The site-packages folder to manage [default: that of the Python running ml-guard].")


@main.group("runtime")
def runtime_group() -> None:
    """Turn the runtime guard on for every Python of an environment.

    \b
    `install` writes mlguard_autoprotect.pth into site-packages: each new
    interpreter then calls mlguard.runtime.protect() at start-up, configured by
    MLGUARD_MODE (enforce|warn|audit), MLGUARD_CONFIG (a .ml-guard.yml whose
    runtime: section is used) and MLGUARD_DISABLE=1 (skip the guard).
    Exit codes: 0 done, 2 usage or installation error.
    """


@runtime_group.command("install")
@_site_dir_option
def runtime_install(site_dir: str | None) -> None:
    """Start new interpreters with the guard on.

    Writes mlguard_autoprotect.pth into the site-packages folder; running it
    again changes nothing.
    """
    from .runtime.install import RuntimeInstallError, install

    try:
        path = install(site_dir)
    except RuntimeInstallError as exc:
        _fail(str(exc))
    click.echo(f"Installed {path}\nPythons using {path.parent} now start with the runtime guard on. "
               "Check with:  ml-guard runtime status")


@runtime_group.command("uninstall")
@_site_dir_option
def runtime_uninstall(site_dir: str | None) -> None:
    """Remove the start-up hook (undo install).

    Running processes stay guarded; new interpreters start without the guard.
    """
    from .runtime.install import PTH_NAME, RuntimeInstallError, uninstall
    from .runtime.install import site_dir as default_site_dir

    try:
        removed = uninstall(site_dir)
    except RuntimeInstallError as exc:
        _fail(str(exc))
    folder = site_dir or default_site_dir()
    click.echo(f"Removed {os.path.join(folder, PTH_NAME)}" if removed else f"Not installed in {folder}; nothing to do.")


@runtime_group.command("status")
@_site_dir_option
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="Output format.")
def runtime_status(site_dir: str | None, fmt: str) -> None:
    """Show whether new interpreters are guarded.

    Reports whether mlguard_autoprotect.pth is installed and the MLGUARD_*
    environment variables a new interpreter started from here would use.
    """
    from .runtime import disabled_by_environment
    from .runtime.install import installed
    from .runtime.install import site_dir as default_site_dir

    folder = str(site_dir or default_site_dir())
    pth = installed(folder)
    env = {name: os.environ.get(name) for name in _RUNTIME_ENV}
    disabled = disabled_by_environment()
    if fmt == "json":
        import json

        click.echo(json.dumps({"site_dir": folder, "installed": pth is not None, "pth": str(pth) if pth else None,
                               "disabled": disabled, "active": pth is not None and not disabled,
                               "environment": env}, indent=2))
        return
    if pth is None:
        click.echo(f"Runtime guard: not installed in {folder} (install it with `ml-guard runtime install`)")
    else:
        click.echo(f"Runtime guard: installed ({pth})" + ("; off because MLGUARD_DISABLE is set" if disabled else ""))
    for name, value in env.items():
        click.echo(f"  {name}={value if value is not None else '(unset)'}")
