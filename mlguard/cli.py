"""The ``ml-guard`` command line, on argparse (importing click alone took ~15 ms of the 100 ms start-up target).

Scanning machinery is imported inside commands to keep start-up fast. Each command is a function taking
the parsed arguments and returning the exit code.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Callable

from . import __version__
from .findings import ScanResult, Severity
from .record import replace
from .report import REPORTERS

EXIT_OK, EXIT_FINDINGS, EXIT_USAGE = 0, 1, 2
SEVERITY_NAMES = [s.value for s in Severity]


def _echo(text: str = "", *, err: bool = False, nl: bool = True) -> None:
    stream = sys.stderr if err else sys.stdout
    stream.write(text + ("\n" if nl else ""))
    stream.flush()


def _fail(message: str) -> None:
    _echo(f"error: {message}", err=True)
    sys.exit(EXIT_USAGE)


def _write_atomically(path: str, content: str | bytes) -> None:
    """Write ``content`` to ``path`` so readers never see a half-written report."""
    import tempfile
    from pathlib import Path

    target = Path(path)
    try:
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
    except OSError as exc:
        _fail(f"cannot write {path}: {exc.strerror or exc}")


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
    """A progress bar on stderr (a terminal), shown only once the work has run for half a second, and
    redrawn at most ten times a second (and at the end)."""

    WIDTH = 30

    def __init__(self, label: str = "Scanning") -> None:
        self._label = label
        self._start = time.monotonic()
        self._drawn: float | None = None

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if self._drawn is None and now - self._start < 0.5:
            return
        if self._drawn is not None and now - self._drawn < 0.1 and done < total:
            return
        self._drawn = now
        filled = self.WIDTH * done // max(total, 1)
        _echo(f"\r{self._label}  [{'#' * filled}{'-' * (self.WIDTH - filled)}]  {done}/{total}", err=True, nl=False)

    def close(self) -> None:
        if self._drawn is not None:
            _echo(err=True)


def _merge(results: list[ScanResult], roots: list[str]) -> ScanResult:
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


# ------------------------------------------------------------------------------------ commands ----

def scan(args: argparse.Namespace) -> int:
    from . import baseline
    from .report.interface import RenderOptions
    from .scan import scan_tree

    try:
        accepted = baseline.load(args.baseline) if args.baseline else frozenset()
    except baseline.BaselineError as exc:
        _fail(str(exc))
    results = []
    show_progress = sys.stderr.isatty() and not args.quiet
    for path in args.paths:
        config = _config(path, args.config, fail_on=args.fail_on, db_path=args.db, exclude=args.exclude,
                         include=args.include, scanners=args.scanners.split(",") if args.scanners else None)
        progress = _Progress() if show_progress else None
        try:
            results.append(scan_tree(path, config, jobs=args.jobs, progress=progress))
        finally:
            if progress:
                progress.close()
    result = _merge(results, args.paths)
    if args.baseline:
        result, suppressed = baseline.apply(result, accepted)
        _echo(f"{suppressed} finding{'s' * (suppressed != 1)} suppressed by baseline {args.baseline}", err=True)
    color = args.output is None and not args.no_color and "NO_COLOR" not in os.environ and sys.stdout.isatty()
    text = REPORTERS[args.format].render(result, RenderOptions(color=color, quiet=args.quiet))
    if args.output:
        _write_atomically(args.output, text)
        if not args.quiet:
            _echo(f"Report written to {args.output}", err=True)
    else:
        _echo(text, nl=False)
    return EXIT_FINDINGS if result.fails(config.policy.fail_on) else EXIT_OK


def baseline_create(args: argparse.Namespace) -> int:
    from . import baseline
    from .scan import scan_tree

    result = scan_tree(args.path, _config(args.path, args.config, db_path=args.db), jobs=args.jobs)
    _write_atomically(args.output, baseline.create(result))
    _echo(f"Baseline of {len(result.findings)} findings written to {args.output}", err=True)
    return EXIT_OK


def rules(args: argparse.Namespace) -> int:
    from .rules import catalog

    cat = catalog()
    if args.format == "json":
        import json

        _echo(json.dumps([{"id": r.id, "scanner": r.scanner, "severity": r.severity.value, "title": r.title,
                           "cwe": r.cwe, "tags": list(r.tags), "aliases": list(r.aliases)} for r in cat], indent=2))
        return EXIT_OK
    width = max(len(r.id) for r in cat)
    for r in cat:
        _echo(f"{r.id:<{width}}  {r.severity.value:<8}  {r.scanner:<8}  {r.title}")
    return EXIT_OK


def explain(args: argparse.Namespace) -> int:
    from .rules import catalog

    cat = catalog()
    if args.rule_id not in cat:
        _fail(f"unknown rule {args.rule_id!r}; list them with `ml-guard rules`")
    r = cat[args.rule_id]
    _echo(f"{r.id} — {r.title}")
    _echo(f"scanner: {r.scanner}   default severity: {r.severity.value}" + (f"   {r.cwe}" if r.cwe else ""))
    if r.aliases:
        _echo(f"also accepted as: {', '.join(r.aliases)}")
    _echo(f"\n{r.description}\n\nRemediation: {r.remediation}")
    _echo(f"\nOverride in .ml-guard.yml:\n  rules:\n    {r.id}: {{severity: low}}   # or {{disabled: true}}")
    return EXIT_OK


def demo(args: argparse.Namespace) -> int:
    from .demo import write_demo

    files = write_demo(args.directory)
    _echo(f"Wrote {len(files)} files to {args.directory}. Now run:  ml-guard scan {args.directory}")
    return EXIT_OK


def sbom(args: argparse.Namespace) -> int:
    from .report.cyclonedx import build

    text = build(args.path, _config(args.path, args.config, db_path=args.db), jobs=args.jobs)
    if args.output:
        _write_atomically(args.output, text)
        _echo(f"SBOM written to {args.output}", err=True)
    else:
        _echo(text)
    return EXIT_OK


COMPLIANCE_STANDARDS = ("eu-ai-act", "nist-ai-rmf", "iso-27001", "soc2")


def compliance(args: argparse.Namespace) -> int:
    from .report.compliance import canonical, evidence as build, render
    from .scan import scan_tree

    output = args.output
    fmt = args.format or (os.path.splitext(output)[1].lstrip(".").lower() if output else "pdf")
    if fmt not in ("pdf", "json", "html"):
        _fail(f"cannot tell the format from {output!r}: use --format pdf|json|html")
    if fmt == "pdf" and not output:
        _fail("a PDF needs a file: add -o report.pdf (or use --format json|html for standard output)")
    config = _config(args.path, args.config, fail_on=args.fail_on, db_path=args.db)
    data = build(scan_tree(args.path, config), args.standard, config.policy)
    content = render(data, fmt)
    if args.evidence:
        _write_atomically(args.evidence, canonical(data))
    if output:
        _write_atomically(output, content)
        _echo(f"Verdict {data['verdict'].upper()}: {output} written", err=True)
    else:
        _echo(content.decode("utf-8"))
    return EXIT_FINDINGS if data["verdict"] == "fail" else EXIT_OK


def db_update(args: argparse.Namespace) -> int:
    from .advisories.database import DatabaseError, default_path, update

    progress = _Progress("Importing advisories") if sys.stderr.isatty() else None
    start = time.monotonic()
    try:
        info = update(args.db or default_path(), args.source, progress)
    except DatabaseError as exc:
        _fail(str(exc))
    finally:
        if progress:
            progress.close()
    _echo(f"Imported {info['records']:,} advisories ({info['malicious']:,} malicious packages, "
          f"{info['withdrawn']:,} withdrawn, {info['skipped']:,} unreadable skipped) for "
          f"{info['packages']:,} packages in {time.monotonic() - start:.1f} s into {info['path']}")
    return EXIT_OK


def db_info(args: argparse.Namespace) -> int:
    from .advisories.database import DatabaseError, default_path, info

    try:
        data = info(args.db or default_path())
    except DatabaseError as exc:
        _fail(str(exc))
    if args.format == "json":
        import json

        _echo(json.dumps(data, indent=2))
        return EXIT_OK
    for key, value in data.items():
        _echo(f"{key + ':':<12} {value:,}" if isinstance(value, int) else f"{key + ':':<12} {value}")
    return EXIT_OK


RUNTIME_ENV = ("MLGUARD_MODE", "MLGUARD_CONFIG", "MLGUARD_DISABLE", "MLGUARD_EVENT_LOG")


def runtime_install(args: argparse.Namespace) -> int:
    from .runtime.install import RuntimeInstallError, install

    try:
        path = install(args.site_dir)
    except RuntimeInstallError as exc:
        _fail(str(exc))
    _echo(f"Installed {path}\nPythons using {path.parent} now start with the runtime guard on. "
          "Check with:  ml-guard runtime status")
    return EXIT_OK


def runtime_uninstall(args: argparse.Namespace) -> int:
    from .runtime.install import PTH_NAME, RuntimeInstallError, uninstall
    from .runtime.install import site_dir as default_site_dir

    try:
        removed = uninstall(args.site_dir)
    except RuntimeInstallError as exc:
        _fail(str(exc))
    folder = args.site_dir or default_site_dir()
    _echo(f"Removed {os.path.join(folder, PTH_NAME)}" if removed else f"Not installed in {folder}; nothing to do.")
    return EXIT_OK


def runtime_status(args: argparse.Namespace) -> int:
    from .runtime import disabled_by_environment
    from .runtime.install import installed
    from .runtime.install import site_dir as default_site_dir

    folder = str(args.site_dir or default_site_dir())
    pth = installed(folder)
    env = {name: os.environ.get(name) for name in RUNTIME_ENV}
    disabled = disabled_by_environment()
    if args.format == "json":
        import json

        _echo(json.dumps({"site_dir": folder, "installed": pth is not None, "pth": str(pth) if pth else None,
                          "disabled": disabled, "active": pth is not None and not disabled,
                          "environment": env}, indent=2))
        return EXIT_OK
    if pth is None:
        _echo(f"Runtime guard: not installed in {folder} (install it with `ml-guard runtime install`)")
    else:
        _echo(f"Runtime guard: installed ({pth})" + ("; off because MLGUARD_DISABLE is set" if disabled else ""))
    for name, value in env.items():
        _echo(f"  {name}={value if value is not None else '(unset)'}")
    return EXIT_OK


# -------------------------------------------------------------------------------------- parser ----

def _path(kind: str):
    """An argument type checking a path: ``exists`` (file or folder), ``file`` (an existing file),
    ``output`` (a file to write: not a folder), ``folder`` (a folder to use or create)."""
    def check(value: str) -> str:
        if kind in ("exists", "file") and not os.path.exists(value):
            raise argparse.ArgumentTypeError(f"{value!r} does not exist")
        if kind in ("file", "output") and os.path.isdir(value):
            raise argparse.ArgumentTypeError(f"{value!r} is a folder, not a file")
        if kind == "folder" and os.path.exists(value) and not os.path.isdir(value):
            raise argparse.ArgumentTypeError(f"{value!r} is a file, not a folder")
        return value
    return check


def _jobs(value: str) -> int:
    if not value.isdigit() or not 1 <= int(value) <= 64:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number from 1 to 64")
    return int(value)


class _Commands:
    """The sub-commands of one parser. Only the command that ``argv`` names gets its options (and only its
    parser is made): building every parser took a tenth of the start-up. With no known command named, each
    gets a bare parser, for the help and the error. Hidden commands (the earlier tool's spellings) are left
    out of the help."""

    def __init__(self, parser: argparse.ArgumentParser, argv: list[str]) -> None:
        self._parser = parser
        self._argv = argv
        self._specs: list[tuple] = []

    def add(self, name: str, run: Callable[[argparse.Namespace], int], summary: str, details: str = "",
            options: Callable[[argparse.ArgumentParser], None] | None = None, *, hidden: bool = False) -> None:
        self._specs.append((name, run, summary, details, options, hidden))

    def group(self, name: str, summary: str, details: str, commands: Callable[[_Commands], None]) -> None:
        """A command whose sub-commands ``commands`` adds."""
        self._specs.append((name, None, summary, details, commands, False))

    def build(self) -> None:
        listed = [(name, summary) for name, _, summary, _, _, hidden in self._specs if not hidden]
        width = max(len(name) for name, _ in listed)
        self._parser.usage = "%(prog)s [options] COMMAND ..."
        self._parser.epilog = "commands:\n" + "\n".join(f"  {n:<{width}}  {s}" for n, s in listed)
        sub = self._parser.add_subparsers(metavar="COMMAND", help=argparse.SUPPRESS)
        words = [a for a in self._argv if not a.startswith("-")]
        named = words[0] if words and any(spec[0] == words[0] for spec in self._specs) else None
        for name, run, summary, details, options, _ in self._specs:
            if named not in (None, name):
                continue
            parser = sub.add_parser(name, prog=f"{self._parser.prog} {name}", add_help=False,
                                    description=summary + ("\n\n" + details if details else ""),
                                    formatter_class=argparse.RawDescriptionHelpFormatter)
            parser.add_argument("-h", "--help", action="help", help="Show this help and exit.")
            parser.set_defaults(run=run, parser=parser)
            if name != named or options is None:
                continue
            if run is None:  # a group: its sub-commands, from the words after its name
                commands = _Commands(parser, self._argv[self._argv.index(name) + 1:])
                options(commands)
                commands.build()
            else:
                options(parser)


def _config_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=_path("file"), metavar="FILE",
                   help="Configuration file [default: .ml-guard.yml at the scanned path].")


def _db_option(p: argparse.ArgumentParser, help: str = "Advisory database for dependency manifests.") -> None:
    p.add_argument("--db", type=_path("output"), metavar="FILE", help=help)


def _jobs_option(p: argparse.ArgumentParser, help: str = "Files scanned in parallel [default: CPU count].") -> None:
    p.add_argument("-j", "--jobs", type=_jobs, metavar="N", help=help)


def _format_option(p: argparse.ArgumentParser, choices: list[str], help: str = "Output format [default: %(default)s].",
                   default: str | None = "text") -> None:
    p.add_argument("--format", choices=choices, default=default, help=help)


def _fail_on_option(p: argparse.ArgumentParser, help: str) -> None:
    p.add_argument("--fail-on", type=str.lower, choices=SEVERITY_NAMES, metavar="SEVERITY",
                   help=f"{help} One of: {', '.join(SEVERITY_NAMES)}.")


def _scan_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("paths", nargs="+", type=_path("exists"), metavar="PATH", help="Files or folders to scan.")
    _format_option(p, sorted(REPORTERS))
    p.add_argument("-o", "--output", type=_path("output"), metavar="FILE", help="Write the report to FILE.")
    _fail_on_option(p, "Exit 1 when a finding is at or above this severity [config fail_on, default high].")
    _config_option(p)
    p.add_argument("--scanners", metavar="LIST", help="Comma-separated scanners to run (see `ml-guard rules`).")
    p.add_argument("--exclude", action="append", default=[], metavar="GLOB",
                   help="Skip paths matching GLOB (repeatable).")
    p.add_argument("--include", action="append", default=[], metavar="GLOB",
                   help="Scan only paths matching GLOB (repeatable).")
    _jobs_option(p)
    _db_option(p, "Advisory database for dependency manifests [default: MLGUARD_DB, else the user data folder].")
    p.add_argument("--baseline", type=_path("file"), metavar="FILE",
                   help="Drop the findings listed in this baseline (`ml-guard baseline create`).")
    p.add_argument("--no-color", action="store_true", help="Never colour the output (also: NO_COLOR=1).")
    p.add_argument("-q", "--quiet", action="store_true", help="No banner and no progress bar.")


def _baseline_create_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("path", type=_path("exists"), metavar="PATH", help="File or folder to scan.")
    p.add_argument("-o", "--output", type=_path("output"), default=".ml-guard-baseline.json", metavar="FILE",
                   help="Write the baseline to FILE [default: %(default)s].")
    _config_option(p)
    _db_option(p)
    _jobs_option(p)


def _sbom_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("path", type=_path("exists"), metavar="PATH", help="File or folder to scan.")
    p.add_argument("-o", "--output", type=_path("output"), metavar="FILE",
                   help="Write the SBOM to FILE [default: standard output].")
    _config_option(p)
    _db_option(p)
    _jobs_option(p, "Files hashed and scanned in parallel [default: CPU count].")


def _compliance_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("path", type=_path("exists"), metavar="PATH", help="File or folder to scan.")
    p.add_argument("--standard", required=True, choices=COMPLIANCE_STANDARDS,
                   help="Which standard's controls to map the results onto.")
    _format_option(p, ["pdf", "json", "html"], "Output format [default: from the -o extension, else pdf].",
                   default=None)
    p.add_argument("-o", "--output", type=_path("output"), metavar="FILE",
                   help="Write the report to FILE (required for pdf).")
    p.add_argument("--evidence", type=_path("output"), metavar="FILE",
                   help="Also write the canonical JSON evidence the report names by SHA-256.")
    _fail_on_option(p, "Severity that makes the verdict FAIL [config fail_on, default high].")
    _config_option(p)
    _db_option(p)


_DB_HELP = "Database file [default: MLGUARD_DB, else osv.sqlite in the user data folder]."


def _db_update_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--from", dest="source", metavar="ZIP|DIR|URL",
                   help="OSV records: PyPI all.zip, a folder of *.json records, or a URL "
                        "[default: OSV's live PyPI export].")
    _db_option(p, _DB_HELP)


def _db_info_options(p: argparse.ArgumentParser) -> None:
    _db_option(p, _DB_HELP)
    _format_option(p, ["text", "json"])


def _cve_update_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("source", metavar="SOURCE", help="OSV records: PyPI all.zip, a folder or a URL.")
    _db_option(p, _DB_HELP)


def _cve_info_options(p: argparse.ArgumentParser) -> None:
    _db_option(p, _DB_HELP)
    p.set_defaults(format="text")


def _site_dir_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--site-dir", type=_path("folder"), metavar="DIR",
                   help="The site-packages folder to manage [default: that of the Python running ml-guard].")


def _runtime_status_options(p: argparse.ArgumentParser) -> None:
    _site_dir_option(p)
    _format_option(p, ["text", "json"])


def _baseline_commands(c: _Commands) -> None:
    c.add("create", baseline_create, "Scan PATH and write the fingerprint of every finding to a baseline file.",
          options=_baseline_create_options)


def _db_commands(c: _Commands) -> None:
    c.add("update", db_update, "Build or refresh the database (atomically: a failed update changes nothing).",
          options=_db_update_options)
    c.add("info", db_info, "Show what the database holds and when it was built.", options=_db_info_options)


def _runtime_commands(c: _Commands) -> None:
    c.add("install", runtime_install, "Start new interpreters with the guard on.",
          "Writes mlguard_autoprotect.pth into the site-packages folder; running it\nagain changes nothing.",
          _site_dir_option)
    c.add("uninstall", runtime_uninstall, "Remove the start-up hook (undo install).",
          "Running processes stay guarded; new interpreters start without the guard.", _site_dir_option)
    c.add("status", runtime_status, "Show whether new interpreters are guarded.",
          "Reports whether mlguard_autoprotect.pth is installed and the MLGUARD_*\n"
          "environment variables a new interpreter started from here would use.", _runtime_status_options)


def parser(argv: list[str]) -> argparse.ArgumentParser:
    """The ``ml-guard`` command line, built for parsing ``argv`` (see :class:`_Commands`)."""
    main_parser = argparse.ArgumentParser(
        prog="ml-guard", add_help=False, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="ML Guard: find malicious or broken ML artifacts before anyone loads them.\n\n"
                    "Exit codes: 0 nothing at or above --fail-on, 1 at least one finding at or\n"
                    "above it, 2 usage or configuration error.")
    main_parser.add_argument("-h", "--help", action="help", help="Show this help and exit.")
    main_parser.add_argument("--version", action="store_true",
                             help="Show the version and which scanning engine runs, then exit.")
    c = _Commands(main_parser, argv)
    c.add("scan", scan, "Scan files or folders for malicious or broken ML artifacts.", options=_scan_options)
    c.group("baseline", "Accept the findings a project has today; `scan --baseline` then reports only new ones.",
            "  ml-guard baseline create . -o .ml-guard-baseline.json\n"
            "  ml-guard scan . --baseline .ml-guard-baseline.json\n\n"
            "A baseline holds fingerprints, rule ids, paths and redacted snippets, never\n"
            "a secret. Fingerprints do not depend on line numbers: create and scan from\n"
            "the same root.", _baseline_commands)
    c.add("rules", rules, "List every rule with its default severity.",
          options=lambda p: _format_option(p, ["text", "json"]))
    c.add("explain", explain, "Explain one rule: what it detects, why it matters, what to do.",
          options=lambda p: p.add_argument("rule_id", metavar="RULE_ID",
                                            help="A rule id or an earlier alias (see `ml-guard rules`)."))
    c.add("demo", demo, "Write a small demo project with planted problems into DIRECTORY.",
          options=lambda p: p.add_argument("directory", type=_path("folder"), metavar="DIRECTORY",
                                           help="Created when missing."))
    c.add("sbom", sbom, "Write a CycloneDX 1.6 SBOM of PATH: artifacts with SHA-256, models, libraries, findings.",
          "Model files are machine-learning-model components (format, framework),\n"
          "manifest entries library components with purls, and every finding a\n"
          "vulnerability linked to the component it affects. Exit code 0 (2 on a\n"
          "usage or configuration error): the SBOM records findings, it does not judge.", _sbom_options)
    c.add("compliance", compliance, "Scan PATH and write compliance evidence for a standard (PDF, HTML or JSON).",
          "Each control of the standard (EU AI Act Art. 9-15, NIST AI RMF MEASURE/MANAGE,\n"
          "ISO/IEC 27001:2022 Annex A, SOC 2 CC6/CC7) lists the findings that bear on\n"
          "it, what a clean result supports and what it cannot show. This is technical\n"
          "evidence, not a conformity declaration. Exit codes: 0 verdict PASS, 1 FAIL,\n"
          "2 usage or configuration error.", _compliance_options)
    c.group("db", "The local OSV advisory database that dependency manifests are checked against.",
            "  ml-guard db update                   download OSV's PyPI export and build it\n"
            "  ml-guard db update --from all.zip    build it offline from a downloaded export\n"
            "  ml-guard db info                     what it holds and when it was updated", _db_commands)
    c.add("cve-update", db_update, "Earlier spelling of `ml-guard db update --from SOURCE`.",
          options=_cve_update_options, hidden=True)
    c.add("cve-info", db_info, "Earlier spelling of `ml-guard db info`.", options=_cve_info_options, hidden=True)
    c.group("runtime", "Turn the runtime guard on for every Python of an environment.",
            "`install` writes mlguard_autoprotect.pth into site-packages: each new\n"
            "interpreter then calls mlguard.runtime.protect() at start-up, configured by\n"
            "MLGUARD_MODE (enforce|warn|audit), MLGUARD_CONFIG (a .ml-guard.yml whose\n"
            "runtime: section is used) and MLGUARD_DISABLE=1 (skip the guard).\n"
            "Exit codes: 0 done, 2 usage or installation error.", _runtime_commands)
    c.build()
    return main_parser


def main(argv: list[str] | None = None) -> int:
    """Run ``ml-guard`` with ``argv`` (default: the process's arguments); returns the exit code."""
    argv = sys.argv[1:] if argv is None else argv
    top = parser(argv)
    args = top.parse_args(argv)
    if args.version:
        from . import engine

        _echo(f"ml-guard {__version__} (engine: {engine.engine_status()})")
        return EXIT_OK
    if getattr(args, "run", None) is None:  # no command, or a group without its sub-command
        getattr(args, "parser", top).print_help(sys.stderr)
        return EXIT_USAGE
    return args.run(args)
