"""The local OSV database: built from OSV's ``PyPI/all.zip`` export (or a folder of records) into SQLite,
queried by package. An update writes a new file beside the old one and renames it into place, so a failed or
interrupted update leaves the previous database untouched."""
from __future__ import annotations

import json
import os
import sqlite3
import sys
import tempfile
import threading
import time
import urllib.request
import zipfile
from pathlib import Path
from typing import Callable, Iterator

from . import osv

OSV_URL = "https://osv-vulnerabilities.storage.googleapis.com/PyPI/all.zip"
SCHEMA_VERSION = "1"
MAX_RECORD = 8 << 20
"""Bytes of one record; larger ones are skipped as malformed."""
MAX_RECORDS = 2_000_000
MAX_DOWNLOAD = 2 << 30

Progress = Callable[[int, int], None]

_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE advisories (
    id TEXT PRIMARY KEY, aliases TEXT NOT NULL, summary TEXT NOT NULL, modified TEXT NOT NULL,
    withdrawn TEXT, severity TEXT, score REAL, vector TEXT, fixed TEXT NOT NULL);
CREATE TABLE affected (advisory TEXT NOT NULL, package TEXT NOT NULL, ranges TEXT NOT NULL, versions TEXT NOT NULL);
CREATE TABLE aliases (alias TEXT NOT NULL, advisory TEXT NOT NULL);
"""
_INDEXES = """
CREATE INDEX affected_package ON affected (package);
CREATE INDEX aliases_alias ON aliases (alias);
"""


class DatabaseError(Exception):
    """The database is missing, unreadable, or an update failed; the message says what to do."""


def default_path() -> Path:
    """``MLGUARD_DB``, else ``osv.sqlite`` in the user's data folder."""
    if os.environ.get("MLGUARD_DB"):
        return Path(os.environ["MLGUARD_DB"])
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Application Support"
    else:
        base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return base / "ml-guard" / "osv.sqlite"


# --------------------------------------------------------------------------- update

def update(db_path: str | os.PathLike, source: str | os.PathLike | None = None,
           progress: Progress | None = None) -> dict:
    """Rebuild the database from ``source`` (a zip, a folder of ``*.json`` records, or an http(s) URL;
    default: OSV's live PyPI export). Returns :func:`info` of the new database."""
    db_path = Path(db_path)
    source = OSV_URL if source is None else os.fspath(source)
    db_path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".osv-", suffix=".sqlite.tmp", dir=db_path.parent)
    os.close(fd)
    try:
        if str(source).startswith(("http://", "https://")):
            with _download(str(source), db_path.parent) as archive:
                _build(tmp, _zip_records(archive), str(source), progress)
        elif os.path.isdir(source):
            _build(tmp, _dir_records(Path(source)), str(source), progress)
        elif os.path.isfile(source):
            _build(tmp, _zip_records(source), str(source), progress)
        else:
            raise DatabaseError(f"{source}: no such file or folder (give OSV's PyPI all.zip, a folder of records, "
                                "or a URL)")
        os.replace(tmp, db_path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return info(db_path)


def _build(path: str, records: Iterator[tuple[int, int, bytes | None]], source: str,
           progress: Progress | None) -> None:
    con = sqlite3.connect(path)
    try:
        con.executescript("PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF;" + _SCHEMA)
        counts = {"records": 0, "skipped": 0, "withdrawn": 0, "malicious": 0}
        advisories, affected, aliases = [], [], []
        for done, total, raw in records:
            advisory = _parse(raw)
            if advisory is None:
                counts["skipped"] += 1
            else:
                counts["records"] += 1
                counts["withdrawn"] += bool(advisory.withdrawn)
                counts["malicious"] += advisory.malicious
                advisories.append((advisory.id, json.dumps(advisory.aliases), advisory.summary, advisory.modified,
                                   advisory.withdrawn, advisory.severity, advisory.score, advisory.vector,
                                   json.dumps(advisory.fixed)))
                aliases += [(a, advisory.id) for a in advisory.aliases]
                if not advisory.withdrawn:
                    affected += [(advisory.id, a.package, json.dumps(a.ranges), json.dumps(a.versions))
                                 for a in advisory.affected]
            if progress and (done % 500 == 0 or done == total):
                progress(done, total)
        con.executemany("INSERT OR REPLACE INTO advisories VALUES (?,?,?,?,?,?,?,?,?)", advisories)
        con.executemany("INSERT INTO affected VALUES (?,?,?,?)", affected)
        con.executemany("INSERT INTO aliases VALUES (?,?)", aliases)
        con.executescript(_INDEXES)
        meta = {"schema": SCHEMA_VERSION, "source": source, "updated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                **{k: str(v) for k, v in counts.items()}}
        con.executemany("INSERT INTO meta VALUES (?,?)", meta.items())
        con.commit()
        if counts["records"] == 0:
            raise DatabaseError(f"{source}: no OSV records found; the database was not changed")
    except sqlite3.Error as exc:
        raise DatabaseError(f"cannot build the database: {exc}") from None
    finally:
        con.close()


def _parse(raw: bytes | None) -> osv.Advisory | None:
    if raw is None:
        return None
    try:
        return osv.parse(raw)
    except osv.RecordError:
        return None


def _zip_records(path) -> Iterator[tuple[int, int, bytes | None]]:
    try:
        with zipfile.ZipFile(path) as z:
            members = [m for m in z.infolist() if m.filename.endswith(".json") and not m.is_dir()]
            if len(members) > MAX_RECORDS:
                raise DatabaseError(f"{path}: {len(members):,} records, more than the {MAX_RECORDS:,} allowed")
            for i, m in enumerate(members, 1):
                yield i, len(members), (_read_member(z, m) if m.file_size <= MAX_RECORD else None)
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise DatabaseError(f"{path}: not a readable zip of OSV records ({exc}); the database was not changed") from None


def _read_member(z: zipfile.ZipFile, m: zipfile.ZipInfo) -> bytes | None:
    with z.open(m) as f:
        data = f.read(MAX_RECORD + 1)
    return data if len(data) <= MAX_RECORD else None


def _dir_records(folder: Path) -> Iterator[tuple[int, int, bytes | None]]:
    files = sorted(p for p in folder.rglob("*.json") if p.is_file())[:MAX_RECORDS]
    for i, p in enumerate(files, 1):
        yield i, len(files), (p.read_bytes() if p.stat().st_size <= MAX_RECORD else None)


class _download:
    """Fetch a URL into a temporary file (deleted on exit)."""

    def __init__(self, url: str, folder: Path):
        self.url, self.folder, self.path = url, folder, None

    def __enter__(self) -> str:
        fd, self.path = tempfile.mkstemp(prefix=".osv-", suffix=".zip.tmp", dir=self.folder)
        try:
            with os.fdopen(fd, "wb") as out, urllib.request.urlopen(self.url, timeout=60) as response:
                size = 0
                for block in iter(lambda: response.read(1 << 20), b""):
                    size += len(block)
                    if size > MAX_DOWNLOAD:
                        raise DatabaseError(f"{self.url}: larger than {MAX_DOWNLOAD >> 20} MiB; refusing")
                    out.write(block)
        except OSError as exc:
            self.__exit__()
            raise DatabaseError(f"cannot download {self.url}: {exc}. Offline? Download it elsewhere and run "
                                "`ml-guard db update --from all.zip`") from None
        return self.path

    def __exit__(self, *exc) -> None:
        if self.path and os.path.exists(self.path):
            os.unlink(self.path)


# --------------------------------------------------------------------------- queries

class Database:
    """A read-only view of the database; thread-safe; per-package results are cached."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        if not self.path.is_file():
            raise DatabaseError(f"no advisory database at {self.path}: run `ml-guard db update` "
                                "(or `ml-guard db update --from all.zip` offline)")
        try:
            self._con = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True, check_same_thread=False)
            self._meta = dict(self._con.execute("SELECT key, value FROM meta"))
        except sqlite3.Error as exc:
            raise DatabaseError(f"{self.path} is not an ML Guard advisory database ({exc}): "
                                "run `ml-guard db update` to rebuild it") from None
        if self._meta.get("schema") != SCHEMA_VERSION:
            raise DatabaseError(f"{self.path} was built by another ML Guard version: run `ml-guard db update`")
        self._lock = threading.Lock()
        self._cache: dict[str, list[tuple[osv.Advisory, osv.Affected]]] = {}

    @property
    def meta(self) -> dict:
        return dict(self._meta)

    def for_package(self, normalized: str) -> list[tuple[osv.Advisory, osv.Affected]]:
        """Every (advisory, affected entry) naming the package (PEP 503 name); withdrawn ones excluded."""
        with self._lock:
            if normalized not in self._cache:
                rows = self._con.execute(
                    "SELECT a.id, a.aliases, a.summary, a.modified, a.withdrawn, a.severity, a.score, a.vector, "
                    "a.fixed, f.ranges, f.versions FROM affected f JOIN advisories a ON a.id = f.advisory "
                    "WHERE f.package = ? ORDER BY a.id", (normalized,)).fetchall()
                self._cache[normalized] = [_row(normalized, r) for r in rows]
            return self._cache[normalized]

    def lookup(self, id_or_alias: str) -> osv.Advisory | None:
        """An advisory by its id or one of its aliases (``CVE-…``)."""
        with self._lock:
            row = self._con.execute(
                "SELECT id, aliases, summary, modified, withdrawn, severity, score, vector, fixed FROM advisories "
                "WHERE id = ? OR id IN (SELECT advisory FROM aliases WHERE alias = ?) LIMIT 1",
                (id_or_alias, id_or_alias)).fetchone()
            if row is None:
                return None
            packages = self._con.execute("SELECT package, ranges, versions FROM affected WHERE advisory = ?",
                                         (row[0],)).fetchall()
        affected = tuple(osv.Affected(p, _ranges(r), tuple(json.loads(v))) for p, r, v in packages)
        return _advisory(row, affected)

    def close(self) -> None:
        self._con.close()


def _ranges(text: str) -> tuple:
    return tuple(tuple(tuple(e) for e in r) for r in json.loads(text))


def _advisory(row, affected: tuple) -> osv.Advisory:
    id_, aliases, summary, modified, withdrawn, severity, score, vector, fixed = row[:9]
    return osv.Advisory(id=id_, aliases=tuple(json.loads(aliases)), summary=summary, modified=modified,
                        withdrawn=withdrawn, severity=severity, score=score, vector=vector, affected=affected,
                        fixed=tuple(json.loads(fixed)))


def _row(package: str, r) -> tuple[osv.Advisory, osv.Affected]:
    entry = osv.Affected(package, _ranges(r[9]), tuple(json.loads(r[10])))
    return _advisory(r, (entry,)), entry


def info(path: str | os.PathLike) -> dict:
    """What the database holds: path, source, update time, record counts, size."""
    db = Database(path)
    try:
        meta = db.meta
        packages = db._con.execute("SELECT COUNT(DISTINCT package) FROM affected").fetchone()[0]
    finally:
        db.close()
    return {"path": str(path), "source": meta["source"], "updated": meta["updated"],
            "records": int(meta["records"]), "malicious": int(meta["malicious"]),
            "withdrawn": int(meta["withdrawn"]), "skipped": int(meta["skipped"]), "packages": packages,
            "size_bytes": os.path.getsize(path)}
