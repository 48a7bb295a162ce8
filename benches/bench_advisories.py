"""Advisory database: import time (the shared OSV snapshot and a synthetic 100,000-record export) and the
time to check 1,000 pinned dependencies.

Run: python benches/bench_advisories.py [--snapshot PATH]   (results go into docs/performance.md by hand)
The snapshot defaults to ../shared/data/osv/PyPI-all-snapshot.zip; the synthetic export is generated here.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
import zipfile
from pathlib import Path

from mlguard import Policy, scan_tree
from mlguard.advisories.database import Database, update
from mlguard.config import Config

SNAPSHOT = Path(__file__).resolve().parents[2] / "shared" / "data" / "osv" / "PyPI-all-snapshot.zip"


def synthetic_export(path: Path, n: int) -> None:
    """``n`` records shaped like real PYSEC/GHSA ones (ranges, versions lists, aliases, CVSS)."""
    rng = random.Random(0)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for i in range(n):
            fixed = f"{rng.randint(1, 9)}.{rng.randint(0, 30)}.{rng.randint(0, 9)}"
            record = {"schema_version": "1.6.0", "id": f"GHSA-synth-{i:06d}", "modified": "2025-01-01T00:00:00Z",
                      "summary": "synthetic advisory " * 4, "details": "details " * 60,
                      "aliases": [f"CVE-2025-{i:05d}"],
                      "severity": [{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:R/S:U/C:H/I:H/A:N"}],
                      "affected": [{"package": {"ecosystem": "PyPI", "name": f"package-{i % 30000}"},
                                    "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"},
                                                                                {"fixed": fixed}]}],
                                    "versions": [f"0.{k}" for k in range(rng.randint(0, 40))]}]}
            z.writestr(f"GHSA-synth-{i:06d}.json", json.dumps(record))


def timed(fn):
    start = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--snapshot", type=Path, default=SNAPSHOT)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        rows = []
        if args.snapshot.is_file():
            meta, seconds = timed(lambda: update(folder / "snap.sqlite", args.snapshot))
            rows.append(f"| import the shared snapshot ({meta['records']:,} records) | {seconds:.2f} s |")
        else:
            print(f"(no snapshot at {args.snapshot}: skipped)", file=sys.stderr)
        synthetic_export(folder / "synth.zip", 100_000)
        meta, seconds = timed(lambda: update(folder / "synth.sqlite", folder / "synth.zip"))
        rows.append(f"| import a synthetic export ({meta['records']:,} records, "
                    f"{os.path.getsize(folder / 'synth.zip') / 1e6:.0f} MB zip) | {seconds:.2f} s |")
        db_path = folder / ("snap.sqlite" if args.snapshot.is_file() else "synth.sqlite")
        db = Database(db_path)
        packages = [row[0] for row in db._con.execute("SELECT DISTINCT package FROM affected ORDER BY package")]
        rng = random.Random(1)
        chosen = rng.sample(packages, min(1000, len(packages)))
        project = folder / "project"
        project.mkdir()
        (project / "requirements.txt").write_text("".join(f"{p}=={rng.randint(0, 3)}.{rng.randint(0, 9)}\n"
                                                          for p in chosen))
        config = Config(policy=Policy(scanners=frozenset({"dependencies"}),
                                      scanner_options={"dependencies": {"db": str(db_path)}}))
        for run in ("first scan: opens the database", "again: package lookups cached"):
            result, seconds = timed(lambda: scan_tree(project, config))
            rows.append(f"| check {len(chosen):,} pinned requirements, {run} ({db_path.stem} database, "
                        f"{len(result.findings):,} findings) | {seconds * 1e3:.0f} ms |")
    print("| step | time |\n| --- | --- |\n" + "\n".join(rows))


if __name__ == "__main__":
    main()
