"""ML Guard versus other pickle scanners (picklescan, modelscan, fickling, modelaudit), side by side.

Run from ML Guard's own venv (it needs torch to generate the checkpoints and `mlguard` for the in-process
numbers); the peers live in a separate venv so their dependencies never touch ML Guard's:

    python benches/bench_peers.py --peers-venv /work/peers-venv            # full run (~1 GB checkpoint)
    python benches/bench_peers.py --peers-venv /work/peers-venv --small    # ~100 MB checkpoint, quicker
    MLGUARD_PEERS_VENV=/work/peers-venv python benches/bench_peers.py --inputs a --tools ml-guard,picklescan

A peer that is not installed in the peers venv is listed as "not installed"; the run goes on without it.
Inputs are generated into a scratch folder (deleted afterwards unless --keep-inputs) and never committed:

    (a) a ~30 MB opcode-dense pickle: pickle.dumps([{"id": i, "name": f"n{i}", "v": i * 0.5} ...], protocol=4)
    (b) a ~1 GB PyTorch checkpoint: torch.save of a state_dict of four 8192x8192 float32 tensors
        (--small: four 2560x2560 tensors, ~105 MB)
    (c) a PyTorch checkpoint of 5,000 small tensors (32 float32 values each)
    (0) a 1-byte file, to show each tool's start-up cost

For every input and tool: whole-process wall time (best of --runs, default 3) and peak RSS (GNU time's %M:
ru_maxrss of the tool's process, into which Linux folds its largest reaped descendant, so this is the peak of
the largest single process of the tree, not a sum), exit status, and whether the scan completed within
--timeout. A tool whose first run takes longer than --repeat-cap seconds is run only once (the table says
how many runs). Every tool first gets one uncounted start on (0), which fills its byte-code cache: children
run with PYTHONPYCACHEPREFIX in the scratch folder, as an installed package has its .pyc files (ML Guard's
editable install has none, and PYTHONDONTWRITEBYTECODE, if set, is dropped for the children).
For ML Guard also: in-process `mlguard.scan_file` (best of at least --inproc-runs runs and --inproc-seconds
of scans, after one warm-up, in a fresh interpreter), CLI start-up (`ml-guard --version`, `ml-guard scan` of a
1-byte file), and for (a) the CPython baselines (C unpickler `pickle.loads`, `pickletools.genops`). Output:
Markdown on stdout, raw data with --json.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import pickle
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

# Exit codes as each tool documents them (for the "result" column).
RC_MEANING = {
    "ml-guard": {0: "nothing ≥ high", 1: "finding ≥ high", 2: "error"},
    "picklescan": {0: "clean", 1: "findings", 2: "error"},
    "modelscan": {0: "clean", 1: "findings", 2: "error", 3: "nothing scanned", 4: "usage error"},
    "fickling": {0: "clean", 1: "unsafe", 2: "error"},
    "fickling (zip API)": {0: "clean", 1: "unsafe", 2: "error"},
    "modelaudit": {0: "clean", 1: "findings", 2: "error"},
}
COMPLETED_RCS = {0, 1}  # the scan ran to the end (0: nothing found, 1: something reported)

# fickling's CLI (--check-safety) reads its input as a raw pickle stream and rejects PyTorch zip checkpoints
# ("No pickle files detected"); its closest PyTorch-capable check is the library call scan_zip_archive.
FICKLING_ZIP_API = (
    "import sys, fickling\n"
    "res = fickling.scan_zip_archive(sys.argv[1], graceful=True, json_output_path=sys.argv[2])\n"
    "if not res: sys.exit(2)\n"
    "sys.exit(0 if all(r.is_safe and not r.errors for r in res.values()) else 1)\n"
)

LAUNCHER = (  # fallback for GNU time: run argv[2:], write the child's peak RSS (KiB) to argv[1], pass on its status
    "import os, sys\n"
    "pid = os.fork()\n"
    "if pid == 0:\n"
    "    os.execvp(sys.argv[2], sys.argv[2:])\n"
    "_, status, usage = os.wait4(pid, 0)\n"
    "open(sys.argv[1], 'w').write(str(usage.ru_maxrss))\n"
    "sys.exit(os.waitstatus_to_exitcode(status) & 0xFF)\n"
)

MAKE_TORCH = r"""
import json, sys, torch
gen = torch.Generator().manual_seed(0)
for path, count, shape in json.loads(sys.argv[1]):
    state = {f"layer{i}.weight": torch.randn(*shape, generator=gen) for i in range(count)}
    torch.save(state, path)
    del state
"""

CPYTHON = r"""
import json, pickle, pickletools, sys, time
data = open(sys.argv[1], "rb").read()
runs = int(sys.argv[2])
out = {}
for label, fn in (("pickle.loads (C unpickler)", lambda: pickle.loads(data)),
                  ("pickletools.genops", lambda: sum(1 for _ in pickletools.genops(data)))):
    times = []
    for _ in range(runs):
        t = time.perf_counter(); fn(); times.append(time.perf_counter() - t)
    out[label] = {"best": min(times), "mb_per_s": len(data) / 1e6 / min(times)}
print(json.dumps(out))
"""

INPROC = r"""
import json, sys, time
def hwm_kb():
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith("VmHWM:"))
import mlguard
from mlguard import scan_file
path, runs, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
after_import = hwm_kb()
t = time.perf_counter(); result = scan_file(path); first = time.perf_counter() - t
times = []
# at least `runs` scans, and more (up to 100x) until `seconds` of scanning: this kind of machine has slow
# spells of a second or more, into which a short series of quick scans can fall whole
while len(times) < runs or (sum(times) < seconds and len(times) < 100 * runs):
    t = time.perf_counter(); result = scan_file(path); times.append(time.perf_counter() - t)
print(json.dumps({"first": first, "best": min(times), "median": sorted(times)[len(times) // 2],
                  "runs": len(times), "hwm_after_import_kb": after_import, "hwm_kb": hwm_kb(),
                  "engine": result.engine, "files": result.files_scanned,
                  "findings": sorted(f.rule_id for f in result.findings),
                  "limits": [{"rule": f.rule_id, "offset": f.location.offset, "message": f.message}
                             for f in result.findings if "limit" in f.rule_id],
                  "errors": [str(e) for e in result.errors]}))
"""


@dataclass
class Input:
    key: str
    label: str
    path: Path
    is_zip: bool
    size: int = 0


@dataclass
class Run:
    wall: float
    maxrss_kb: int
    rc: int | None  # None: timed out
    log: str
    load: float = 0.0  # 1-minute load average when the run started (other work on the machine shows here)


@dataclass
class Cell:
    tool: str
    input: str
    status: str  # "ok" | "timeout" | "not installed" | "error" | "not applicable"
    runs: list[Run] = field(default_factory=list)
    note: str = ""

    @property
    def best(self) -> float | None:
        done = [r.wall for r in self.runs if r.rc is not None]
        return min(done) if done else None

    @property
    def best_load(self) -> float | None:
        done = [r for r in self.runs if r.rc is not None]
        return min(done, key=lambda r: r.wall).load if done else None

    @property
    def peak_mib(self) -> float | None:
        return max(r.maxrss_kb for r in self.runs) / 1024 if self.runs else None

    @property
    def rc(self) -> int | None:
        return self.runs[-1].rc if self.runs else None


# ---------------------------------------------------------------------------------------------- processes

TIME = "/usr/bin/time"  # GNU time: reports the max RSS of the process it runs (and its reaped descendants)
RUNNING: set[int] = set()  # sessions (= process groups) of tools running now, ended if the harness is stopped


def run_once(cmd: list[str], timeout: float, cwd: Path, env: dict, log_path: Path) -> Run:
    """Run cmd in its own session under GNU time; kill the whole session on timeout.

    Peak RSS is not taken from our own wait4: on Linux a child's ru_maxrss starts from the RSS of the
    process that forked it (the harness, with torch and the inputs loaded), so a small launcher must sit
    in between. GNU time is that launcher when present; otherwise a bare `python -S` does the same job
    (its own ~10 MiB then floors the figure).
    """
    rss_file = log_path.with_suffix(".rss")
    if os.access(TIME, os.X_OK):
        launcher = [TIME, "-q", "-f", "%M", "-o", str(rss_file)]
    else:
        launcher = [sys.executable, "-S", "-c", LAUNCHER, str(rss_file)]
    load = os.getloadavg()[0]
    with open(log_path, "wb") as log:
        start = time.perf_counter()
        proc = subprocess.Popen(launcher + cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                cwd=cwd, env=env, start_new_session=True)
        timed_out = threading.Event()

        def kill() -> None:
            timed_out.set()
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

        timer = threading.Timer(timeout, kill)
        timer.start()
        RUNNING.add(proc.pid)
        try:
            rc = proc.wait()
        finally:
            timer.cancel()
        RUNNING.discard(proc.pid)
        wall = time.perf_counter() - start
        try:  # anything the tool left running in its session (ours: we started that session)
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    try:
        maxrss_kb = int(rss_file.read_text().split()[-1])
    except (OSError, ValueError, IndexError):
        maxrss_kb = 0
    tail = log_path.read_bytes()[-2000:].decode("utf-8", "replace")
    return Run(wall, maxrss_kb, None if timed_out.is_set() else rc, tail, load)


def measure(tool: str, inp: Input, cmd: list[str] | None, args, scratch: Path, env: dict) -> Cell:
    if cmd is None:
        return Cell(tool, inp.key, "not installed")
    cell = Cell(tool, inp.key, "ok")
    cwd = scratch / "cwd"
    cwd.mkdir(exist_ok=True)
    if inp.key == "0":  # the tool's first start in this run: fills its byte-code cache; not counted
        run_once(cmd, args.timeout, cwd, env, scratch / f"log-{tool.replace(' ', '_')}-warmup.txt")
    for i in range(args.runs):
        run = run_once(cmd, args.timeout, cwd, env, scratch / f"log-{tool.replace(' ', '_')}-{inp.key}-{i}.txt")
        cell.runs.append(run)
        if run.rc is None:
            cell.status = "timeout"
            break
        if run.rc not in COMPLETED_RCS:
            cell.status = "error"
            break
        if run.wall > args.repeat_cap:
            break
    if cell.status == "error":
        cell.note = last_meaningful_line(cell.runs[-1].log)
    elif tool == "ml-guard" and cell.runs:
        cell.note = mlguard_findings(scratch / f"log-ml-guard-{inp.key}-{len(cell.runs) - 1}.txt")
    return cell


def mlguard_findings(log_path: Path) -> str:
    """Rule ids and severities from `ml-guard scan --format json` output, for the result column."""
    try:
        report = json.loads(log_path.read_text())
    except (OSError, ValueError):
        return ""
    seen: dict[str, str] = {}
    for f in report.get("findings", []):
        seen.setdefault(f["rule_id"], f["severity"])
    return ", ".join(f"{rule} ({sev})" for rule, sev in seen.items())


def run_tool(tool: str, cmd: list[str] | None, inp: Input, args, scratch: Path, env: dict) -> Cell:
    print(f"# ({inp.key}) {tool} ...", file=sys.stderr, flush=True)
    cell = measure(tool, inp, cmd, args, scratch, env)
    if cmd is not None:
        shown = "python -c <scan_zip_archive>" if tool == "fickling (zip API)" else " ".join(cmd)
        print(f"#     {shown} -> {cell.status}, best {fmt_s(cell.best)}, peak {cell.peak_mib or 0:.0f} MiB, "
              f"rc {cell.rc}", file=sys.stderr, flush=True)
    return cell


def last_meaningful_line(text: str) -> str:
    """The tool's own explanation of a failure: its first line that mentions an error, else its last line."""
    lines = [line.strip() for line in text.splitlines() if line.strip() and not set(line.strip()) <= set("-=─━")]
    said = next((line for line in lines if "rror" in line), lines[-1] if lines else "")
    return said[:120]


# ---------------------------------------------------------------------------------------------- tools

def peer_bin(venv: Path | None, name: str) -> str | None:
    if venv is None:
        return None
    exe = venv / "bin" / name
    return str(exe) if exe.is_file() and os.access(exe, os.X_OK) else None


def mlguard_cli() -> str | None:
    exe = Path(sys.executable).parent / "ml-guard"
    return str(exe) if exe.is_file() else shutil.which("ml-guard")


def commands(inp: Input, venv: Path | None, scratch: Path) -> dict[str, list[str] | None]:
    f = str(inp.path)
    ours = mlguard_cli()
    cmds: dict[str, list[str] | None] = {"ml-guard": [ours, "scan", "-q", "--format", "json", f] if ours else None}
    exe = peer_bin(venv, "picklescan")
    cmds["picklescan"] = [exe, "-p", f] if exe else None
    exe = peer_bin(venv, "modelscan")
    cmds["modelscan"] = [exe, "-p", f] if exe else None
    exe = peer_bin(venv, "fickling")
    cmds["fickling"] = [exe, "--check-safety", "--json-output", str(scratch / "fickling.json"), f] if exe else None
    if inp.is_zip:
        py = peer_bin(venv, "python")
        cmds["fickling (zip API)"] = ([py, "-c", FICKLING_ZIP_API, f, str(scratch / "fickling-api.json")]
                                      if exe and py else None)
    exe = peer_bin(venv, "modelaudit")
    # --no-cache: modelaudit caches results by file; without it runs 2..N would time a cache hit.
    cmds["modelaudit"] = [exe, "scan", "--no-cache", f] if exe else None
    return cmds


def mlguard_build() -> str:
    """Which ML Guard ran: the commit of the source tree, whether it had local changes, and the native
    module's modification time (an editable install is rebuilt in place, possibly during a run)."""
    repo = Path(__file__).resolve().parent.parent
    git = ["git", "--no-optional-locks", "-C", str(repo)]  # read-only: never touches the index
    head = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run([*git, "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                           text=True).stdout.strip()
    res = subprocess.run([sys.executable, "-c", "import mlguard_rs; print(mlguard_rs.__file__)"],
                         capture_output=True, text=True)
    native = "no native module"
    if res.returncode == 0:
        so = Path(res.stdout.strip())
        if so.name == "__init__.py":
            so = next((p for p in so.parent.glob("*.so")), so)
        built = datetime.datetime.fromtimestamp(so.stat().st_mtime, datetime.timezone.utc)
        native = f"native module built {built:%Y-%m-%d %H:%M:%S} UTC"
    return f"commit {head or '?'}{' + uncommitted changes' if dirty else ''}; {native}"


def versions(venv: Path | None) -> dict[str, str]:
    out = {}
    ours = mlguard_cli()
    out["ml-guard"] = (subprocess.run([ours, "--version"], capture_output=True, text=True).stdout.strip()
                       if ours else "not installed")
    py = peer_bin(venv, "python")
    for name in ("picklescan", "modelscan", "fickling", "modelaudit"):
        if py is None:
            out[name] = "not installed"
            continue
        res = subprocess.run([py, "-c", f"import importlib.metadata as m; print(m.version({name!r}))"],
                             capture_output=True, text=True)
        out[name] = res.stdout.strip() if res.returncode == 0 else "not installed"
    out["ml-guard build"] = mlguard_build()
    if py:
        out["peers' python"] = subprocess.run([py, "-c", "import sys; print(sys.version.split()[0])"],
                                              capture_output=True, text=True).stdout.strip()
    return out


# ---------------------------------------------------------------------------------------------- inputs

def make_inputs(scratch: Path, args) -> list[Input]:
    wanted = set(args.inputs.split(","))
    inputs: list[Input] = []
    if "0" in wanted:
        p = scratch / "one-byte.bin"
        p.write_bytes(b"\n")
        inputs.append(Input("0", "1-byte file", p, False))
    if "a" in wanted:
        p = scratch / "dense.pkl"
        rows = [{"id": i, "name": f"n{i}", "v": i * 0.5} for i in range(args.pickle_rows)]
        p.write_bytes(pickle.dumps(rows, protocol=4))
        del rows
        inputs.append(Input("a", "opcode-dense pickle", p, False))
    # (key, label, file, tensors, shape of each): random float32 tensors, torch.save of the state_dict
    side = 2560 if args.small else 8192  # four tensors: ~1.07 GB, or ~105 MB with --small
    specs = [("b", f"PyTorch checkpoint, 4 tensors of {side}x{side} float32", "big.pt", 4, [side, side]),
             ("c", "PyTorch checkpoint, 5,000 tensors of 32 float32", "many.pt", 5000, [32])]
    specs = [spec for spec in specs if spec[0] in wanted]
    if specs:
        # torch is imported in a child, which keeps it out of the harness
        jobs = [[str(scratch / name), count, shape] for _, _, name, count, shape in specs]
        subprocess.run([sys.executable, "-c", MAKE_TORCH, json.dumps(jobs)], check=True)
        inputs.extend(Input(key, label, scratch / name, True) for key, label, name, _, _ in specs)
    for inp in inputs:
        inp.size = inp.path.stat().st_size
    return inputs


# ---------------------------------------------------------------------------------------------- ML Guard extras

def inprocess(inp: Input, runs: int, seconds: float, timeout: float, env: dict) -> dict:
    try:
        res = subprocess.run([sys.executable, "-c", INPROC, str(inp.path), str(runs), str(seconds)],
                             capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"error": "timeout"}
    if res.returncode != 0:
        return {"error": (res.stderr.strip().splitlines() or ["?"])[-1]}
    return json.loads(res.stdout.strip().splitlines()[-1])


def startup(scratch: Path, runs: int, env: dict, args) -> dict:
    ours = mlguard_cli()
    if ours is None:
        return {}
    one = scratch / "one-byte.bin"
    if not one.exists():
        one.write_bytes(b"\n")
    out = {}
    for label, cmd in (("ml-guard --version", [ours, "--version"]),
                       ("ml-guard scan (1-byte file)", [ours, "scan", "-q", "--format", "json", str(one)])):
        rs = [run_once(cmd, args.timeout, scratch, env, scratch / "log-startup.txt") for _ in range(runs)]
        out[label] = {"best": min(r.wall for r in rs), "median": sorted(r.wall for r in rs)[len(rs) // 2],
                      "maxrss_kb": max(r.maxrss_kb for r in rs), "rc": rs[-1].rc, "runs": runs,
                      "load": min(rs, key=lambda r: r.wall).load}
    return out


def cpython_baselines(path: Path, runs: int) -> dict:
    """CPython's own speed on (a), in a fresh interpreter (no torch in the heap to slow the GC)."""
    res = subprocess.run([sys.executable, "-c", CPYTHON, str(path), str(runs)], capture_output=True, text=True)
    return json.loads(res.stdout) if res.returncode == 0 else {}


# ---------------------------------------------------------------------------------------------- environment

def machine_snapshot() -> dict:
    snap = {"date_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count(),
            "loadavg": os.getloadavg()}
    try:
        with open("/proc/cpuinfo") as f:
            snap["cpu"] = next((l.split(":", 1)[1].strip() for l in f if l.startswith("model name")), "?")
    except OSError:
        snap["cpu"] = "?"
    try:  # second frame of top: %CPU over the last second, not since process start
        text = subprocess.run(["top", "-b", "-n", "2", "-d", "1", "-w", "200"], capture_output=True, text=True,
                              timeout=30).stdout
        frame = text.split("\ntop - ")[-1].splitlines()
        head = next(i for i, l in enumerate(frame) if l.strip().startswith("PID"))
        busy = [l.split() for l in frame[head + 1:] if l.split() and _pcpu(l) >= 5.0 and l.split()[-1] != "top"]
        snap["busy_processes"] = [f"pid {f[0]}, {f[8]}% CPU, RSS {_rss_mib(f[5])}: {_args(f[0])}" for f in busy[:8]]
    except (OSError, subprocess.SubprocessError, StopIteration):
        snap["busy_processes"] = ["(top unavailable)"]
    return snap


def _rss_mib(field_: str) -> str:
    units = {"m": 1, "g": 1024, "t": 1 << 20}
    try:
        return f"{float(field_[:-1]) * units[field_[-1]]:,.0f} MiB" if field_[-1] in units else \
            f"{int(field_) / 1024:,.0f} MiB"
    except ValueError:
        return field_


def _args(pid: str) -> str:
    res = subprocess.run(["ps", "-o", "args=", "-p", pid], capture_output=True, text=True)
    return (res.stdout.strip() or "(exited)")[:100]


def _pcpu(line: str) -> float:
    try:
        return float(line.split()[8])
    except (IndexError, ValueError):
        return 0.0


# ---------------------------------------------------------------------------------------------- report

def fmt_s(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds < 1:
        return f"{seconds * 1e3:.0f} ms"
    return f"{seconds:.2f} s" if seconds < 10 else f"{seconds:.1f} s"


def fmt_ms(seconds: float) -> str:
    return f"{seconds * 1e3:.3f} ms" if seconds < 0.01 else f"{seconds * 1e3:.1f} ms"


def fmt_size(n: int) -> str:
    return f"{n / 1e6:,.1f} MB" if n >= 1e5 else f"{n:,} B"


def result_text(cell: Cell) -> str:
    if cell.status in ("not installed", "timeout"):
        return cell.status
    meaning = RC_MEANING.get(cell.tool, {}).get(cell.rc, "?")
    text = f"exit {cell.rc} ({meaning})"
    if cell.status == "error":
        text = f"failed: {text}"
    if cell.note:
        text += f": {cell.note}".replace("|", "\\|")
    return text


def render(inputs: list[Input], cells: list[Cell], inproc: dict, start: dict, base: dict, vers: dict,
           snap_before: dict, snap_after: dict, args) -> str:
    out = []
    w = out.append
    w(f"Run: {snap_before['date_utc']}; {snap_before['cpus']} CPUs ({snap_before['cpu']}); Python "
      f"{snap_before['python']}; {snap_before['platform']}")
    w(f"Load average before: {', '.join(f'{x:.2f}' for x in snap_before['loadavg'])}; after: "
      f"{', '.join(f'{x:.2f}' for x in snap_after['loadavg'])}")
    for label, snap in (("before", snap_before), ("after", snap_after)):
        busy = snap.get("busy_processes") or []
        w(f"Processes using ≥5% CPU {label} the run (top, over 1 s): " + ("none" if not busy else ""))
        for line in busy:
            w(f"- {line}")
    w("")
    w("Versions: " + "; ".join(f"{k} {v}" for k, v in vers.items()))
    w("")
    w("Commands (FILE = the input; run from a scratch folder, under `/usr/bin/time -f %M`, with NO_COLOR=1, "
      "PROMPTFOO_DISABLE_TELEMETRY=1, NO_ANALYTICS=1, HF_HUB_OFFLINE=1, and PYTHONPYCACHEPREFIX in the scratch "
      "folder so every tool runs from byte-code after its first start):")
    w("")
    template = commands(Input("x", "", Path("FILE"), True), args.peers_venv, Path("SCRATCH"))
    for tool, cmd in template.items():
        if cmd is None:
            w(f"- {tool}: not installed")
        elif tool == "fickling (zip API)":
            w(f"- {tool} (PyTorch inputs only): `python -c \"import fickling; "
              f"fickling.scan_zip_archive(FILE, graceful=True, json_output_path=...)\"` (exit 0 if every member "
              f"is_safe, 1 otherwise)")
        else:
            w(f"- {tool}: `{' '.join(Path(c).name if i == 0 else c for i, c in enumerate(cmd))}`")
    w("")
    w(f"Whole process, best of up to {args.runs} runs (one run when the first exceeds {args.repeat_cap:.0f} s), "
      f"timeout {args.timeout:.0f} s; peak RSS = GNU time's %M for the tool's process tree (largest process). "
      f"Ratios only for runs that completed (for (0), a start-up measure, for any exit). "
      f"Load = 1-minute load average when the best run started (2 cores: above ~1 means other work competed).")
    w("")
    w("| input | tool | runs | best wall time | peak RSS | result | time ÷ ML Guard's | load |")
    w("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for inp in inputs:
        row_cells = [c for c in cells if c.input == inp.key]
        ours = next((c.best for c in row_cells if c.tool == "ml-guard" and c.status == "ok"), None)
        for c in row_cells:
            ratio = "—"
            if c.tool == "ml-guard":
                ratio = "1×" if ours else "—"
            elif ours and c.best is not None and (c.status == "ok" or (inp.key == "0" and c.status == "error")):
                ratio = f"{c.best / ours:,.1f}×"
            elif c.status == "timeout" and ours:
                ratio = f"> {args.timeout / ours:,.0f}×"
            peak = f"{c.peak_mib:,.0f} MiB" if c.peak_mib is not None else "—"
            best = fmt_s(c.best) if c.status != "timeout" else f"> {args.timeout:.0f} s"
            load = f"{c.best_load:.1f}" if c.best_load is not None else "—"
            w(f"| ({inp.key}) {inp.label}, {fmt_size(inp.size)} | {c.tool} | {len(c.runs) or '—'} | {best} | "
              f"{peak} | {result_text(c)} | {ratio} | {load} |")
    w("")
    if inproc:
        w(f"ML Guard in-process: `mlguard.scan_file(path)` in a fresh interpreter, one warm-up call, then best "
          f"of at least {args.inproc_runs} runs and {args.inproc_seconds:g} s of scans (up to "
          f"{100 * args.inproc_runs} runs); RSS = the interpreter's high-water mark after `import mlguard` and "
          f"after the scans.")
        w("")
        w("| input | runs | best | median | first call | throughput | RSS after import → after scans | findings |")
        w("| --- | --- | --- | --- | --- | --- | --- | --- |")
        for inp in inputs:
            r = inproc.get(inp.key)
            if r is None:
                continue
            if "error" in r:
                w(f"| ({inp.key}) {inp.label} | failed: {r['error']} | | | | | | |")
                continue
            findings = ", ".join(sorted(set(r["findings"]))) or "none"
            if r["errors"]:
                findings += f"; errors: {r['errors']}"
            # a large checkpoint is not read whole (zip directory, data.pkl, tensor heads): no throughput
            rate = "n/a" if inp.is_zip and inp.size > 100e6 else f"{inp.size / 1e6 / r['best']:,.0f} MB/s"
            w(f"| ({inp.key}) {inp.label}, {fmt_size(inp.size)} | {r['runs']} | {fmt_ms(r['best'])} | "
              f"{fmt_ms(r['median'])} | "
              f"{fmt_ms(r['first'])} | {rate} | "
              f"{r['hwm_after_import_kb'] / 1024:.0f} → {r['hwm_kb'] / 1024:.0f} MiB | {findings} |")
        w("")
    if start:
        w("| ML Guard start-up | best | median | peak RSS | exit | load |")
        w("| --- | --- | --- | --- | --- | --- |")
        for label, r in start.items():
            w(f"| `{label}` (best of {r['runs']}) | {fmt_ms(r['best'])} | {fmt_ms(r['median'])} | "
              f"{r['maxrss_kb'] / 1024:.0f} MiB | {r['rc']} | {r['load']:.1f} |")
        w("")
    if base:
        w("| CPython baseline on (a) | best | throughput |")
        w("| --- | --- | --- |")
        for label, r in base.items():
            w(f"| `{label}` | {fmt_s(r['best'])} | {r['mb_per_s']:,.1f} MB/s |")
        w("")
    w(targets(inputs, cells, inproc, start))
    return "\n".join(out)


def targets(inputs: list[Input], cells: list[Cell], inproc: dict, start: dict) -> str:
    rows = []
    by = {(c.tool, c.input): c for c in cells}
    size = {i.key: i.size for i in inputs}

    def add(target: str, measured: str, met: bool | None | str) -> None:
        verdict = met if isinstance(met, str) else ('—' if met is None else ('met' if met else '**missed**'))
        rows.append(f"| {target} | {measured} | {verdict} |")

    a = inproc.get("a")
    if a and "error" not in a:
        mbps = size["a"] / 1e6 / a["best"]
        limits = a.get("limits") or []
        if limits:  # a scan that stopped early is no evidence of speed
            where = limits[0].get("offset")
            stopped = f" at byte {where:,} of {size['a']:,}" if where is not None else ""
            add("(a) in-process ≥ 300 MB/s", f"{mbps:,.0f} MB/s, but the analysis stopped{stopped}: "
                f"{limits[0]['message']}", "**missed** (partial scan)" if mbps >= 300 else "**missed**")
        else:
            add("(a) in-process ≥ 300 MB/s", f"{mbps:,.0f} MB/s", mbps >= 300)
    ml_a = by.get(("ml-guard", "a"))
    if ml_a and ml_a.peak_mib is not None:
        add("(a) `ml-guard scan` peak RSS ≤ 64 MiB", f"{ml_a.peak_mib:,.0f} MiB", ml_a.peak_mib <= 64)
    ps_a = by.get(("picklescan", "a"))
    if ml_a and ml_a.best and ps_a and ps_a.best and ps_a.status == "ok":
        ratio = ps_a.best / ml_a.best
        partial = "limit" in ml_a.note
        add("(a) `ml-guard scan` ≥ 40× faster than `picklescan -p`", f"{ratio:,.1f}×",
            ("**missed** (and ML Guard's scan stopped at a limit)" if ratio < 40 else
             "**not comparable**: ML Guard's scan stopped at a limit") if partial else ratio >= 40)
    for label, r in start.items():
        add(f"start-up `{label}` ≤ 100 ms", fmt_ms(r["best"]), r["best"] <= 0.1)
    for key in ("b", "c"):
        r = inproc.get(key)
        if r and "error" not in r:
            add(f"({key}) in-process ≤ 2 ms", fmt_ms(r["best"]), r["best"] <= 0.002)
    if not rows:
        return ""
    return "\n".join(["| target | measured | verdict |", "| --- | --- | --- |", *rows])


# ---------------------------------------------------------------------------------------------- main

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--peers-venv", type=Path, default=os.environ.get("MLGUARD_PEERS_VENV"),
                        help="venv holding picklescan, modelscan, fickling, modelaudit [env MLGUARD_PEERS_VENV]")
    parser.add_argument("--small", action="store_true", help="~100 MB checkpoint for (b) instead of ~1 GB")
    parser.add_argument("--runs", type=int, default=3, help="whole-process runs per tool and input (best of)")
    parser.add_argument("--inproc-runs", type=int, default=50, help="in-process scan_file runs after a warm-up")
    parser.add_argument("--inproc-seconds", type=float, default=3.0,
                        help="in-process: more runs (up to 100x --inproc-runs) until this much time is spent scanning")
    parser.add_argument("--startup-runs", type=int, default=20, help="runs of each ML Guard start-up command")
    parser.add_argument("--timeout", type=float, default=600.0, help="per run, seconds")
    parser.add_argument("--repeat-cap", type=float, default=60.0,
                        help="a tool whose first run takes longer than this many seconds is run once")
    parser.add_argument("--inputs", default="0,a,b,c", help="comma-separated subset of 0,a,b,c")
    parser.add_argument("--tools", default="ml-guard,picklescan,modelscan,fickling,modelaudit",
                        help="comma-separated subset of tools")
    parser.add_argument("--pickle-rows", type=int, default=950_000, help="N for (a); 950,000 gives ~30 MB")
    parser.add_argument("--workdir", type=Path, help="where to generate inputs [default: a new temp folder]")
    parser.add_argument("--keep-inputs", action="store_true", help="do not delete the generated inputs")
    parser.add_argument("--json", type=Path, help="also write the raw results here")
    args = parser.parse_args()

    venv = args.peers_venv
    if venv is not None and not (venv / "bin").is_dir():
        print(f"warning: peers venv {venv} has no bin/; peers count as not installed", file=sys.stderr)
    tools = args.tools.split(",")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so `finally` cleans up on kill
    scratch = Path(tempfile.mkdtemp(prefix="mlguard-bench-", dir=args.workdir))
    env = dict(os.environ, NO_COLOR="1",
               # no network here anyway; keep the peers from trying (modelaudit telemetry, HF hub look-ups)
               PROMPTFOO_DISABLE_TELEMETRY="1", NO_ANALYTICS="1", HF_HUB_OFFLINE="1",
               # Byte-code caches for every tool, as an installed package has them. ML Guard is an editable
               # install (no .pyc until first import) and PYTHONDONTWRITEBYTECODE may be set: without this
               # each ML Guard start would compile its sources (~50 ms). The cache lives in the scratch folder.
               PYTHONPYCACHEPREFIX=str(scratch / "pycache"))
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    try:
        snap_before = machine_snapshot()
        vers = versions(venv)
        print(f"# generating inputs in {scratch} ...", file=sys.stderr)
        inputs = make_inputs(scratch, args)
        for inp in inputs:
            print(f"#   ({inp.key}) {inp.label}: {inp.path.name}, {inp.size:,} bytes", file=sys.stderr)

        # ML Guard first, all of it within a minute or two: its editable install may be rebuilt by other
        # work while the (slow) peers run, and its whole-process and in-process numbers should be one build.
        cells: list[Cell] = []
        inproc: dict = {}
        start: dict = {}
        if "ml-guard" in tools:
            for inp in inputs:
                cells.append(run_tool("ml-guard", commands(inp, venv, scratch)["ml-guard"], inp, args, scratch, env))
                if inp.key != "0":
                    inproc[inp.key] = inprocess(inp, args.inproc_runs, args.inproc_seconds, args.timeout, env)
                    print(f"#     in-process: {inproc[inp.key]}", file=sys.stderr, flush=True)
            start = startup(scratch, args.startup_runs, env, args)
            build_after = mlguard_build()
            if build_after != vers["ml-guard build"]:
                vers["ml-guard build"] += f" (WARNING: rebuilt while ML Guard was measured, now: {build_after})"
        for inp in inputs:
            for tool, cmd in commands(inp, venv, scratch).items():
                base_tool = "fickling" if tool.startswith("fickling") else tool
                if base_tool in tools and tool != "ml-guard":
                    cells.append(run_tool(tool, cmd, inp, args, scratch, env))
        order = {inp.key: i for i, inp in enumerate(inputs)}
        cells.sort(key=lambda c: order[c.input])  # stable: ML Guard stays first within each input

        dense = next((i for i in inputs if i.key == "a"), None)
        base = cpython_baselines(dense.path, args.runs) if dense else {}
        snap_after = machine_snapshot()
        report = render(inputs, cells, inproc, start, base, vers, snap_before, snap_after, args)
        print(report)
        if args.json:
            args.json.write_text(json.dumps({
                "machine_before": snap_before, "machine_after": snap_after, "versions": vers,
                "args": {k: str(v) for k, v in vars(args).items()},
                "inputs": [{"key": i.key, "label": i.label, "file": i.path.name, "bytes": i.size} for i in inputs],
                "whole_process": [{"tool": c.tool, "input": c.input, "status": c.status, "note": c.note,
                                   "runs": [{"wall": r.wall, "maxrss_kb": r.maxrss_kb, "rc": r.rc, "load": r.load,
                                             "log_tail": r.log} for r in c.runs]} for c in cells],
                "in_process": inproc, "startup": start, "cpython": base}, indent=2))
    finally:
        for pgid in list(RUNNING):
            try:
                os.killpg(pgid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if args.keep_inputs:
            print(f"# inputs kept in {scratch}", file=sys.stderr)
        else:
            shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
