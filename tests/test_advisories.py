"""The OSV database and version matching: synthetic records for every range form, real data when present."""
from __future__ import annotations

import json
import sqlite3

import pytest

from mlguard.advisories import osv
from mlguard.advisories.database import Database, DatabaseError, info, update
from mlguard.advisories.matching import affects, range_match
from osv_records import STANDARD, record, write_zip


def entry(rec: dict) -> osv.Affected:
    return osv.parse(json.dumps(rec)).affected[0]


@pytest.mark.parametrize("events, versions, expected", [
    # introduced/fixed
    ([("introduced", "0"), ("fixed", "2.0.0")], (), {"0.1": True, "1.9.9": True, "2.0.0": False, "2.0": False,
                                                      "2.0.0rc1": True, "1.0+cu118": True, "2.0.0+cu118": False}),
    # last_affected is inclusive, a local build of it is it
    ([("introduced", "1.0"), ("last_affected", "1.4.2")], (), {"0.9": False, "1.0": True, "1.4.2": True,
                                                                "1.4.2+local": True, "1.4.3": False, "1.0rc1": False}),
    # two ranges in one, fix in a pre-release
    ([("introduced", "1.0"), ("fixed", "1.2"), ("introduced", "2.0"), ("fixed", "2.1rc1")], (),
     {"1.1": True, "1.2": False, "1.5": False, "2.0": True, "2.1a1": True, "2.1rc1": False, "2.1": False}),
    # events out of order are placed by version
    ([("fixed", "3.0"), ("introduced", "2.0")], (), {"1.0": False, "2.5": True, "3.0": False}),
    # an introduced with no end: every later version
    ([("introduced", "1.0")], (), {"0.9": False, "1.0": True, "99.0": True}),
    # versions list only
    (None, ("0.9", "1.0", "1.1"), {"1.0": True, "1.0.0": True, "1.1+local": True, "1.2": False}),
])
def test_exact_versions(events, versions, expected):
    e = entry(record("X-1", "pkg", events=events, versions=versions))
    assert {v: affects(e, v) for v in expected} == expected


@pytest.mark.parametrize("specifier, some, every", [
    ("", True, False),
    (">=2.0", False, False),
    ("<2.0", True, True),
    (">=1.5,<2", True, True),
    (">=1.9,<2.1", True, False),
    ("~=1.4", True, True),          # >=1.4, ==1.*
    ("==1.*", True, True),
    ("==2.*", False, False),
    ("!=1.9.9,<2", True, True),
    (">1.99,<2.0", True, True),     # only versions just above 1.99
])
def test_ranges_allowed_by_a_specifier(specifier, some, every):
    e = entry(record("X-1", "pkg", events=[("introduced", "0"), ("fixed", "2.0")]))
    m = range_match(e, specifier)
    assert (m.some, m.every) == (some, every), m
    if some:
        assert affects(e, m.example)


def test_pre_releases_are_not_allowed_unless_asked():
    e = entry(record("X-1", "pkg", events=[("introduced", "3.0rc1"), ("fixed", "3.0")]))
    assert not range_match(e, ">=2.0").some          # only 3.0rc1.. are affected: pip would not pick them
    assert range_match(e, ">=3.0rc1").some


def test_record_parsing_severity_and_malicious():
    by_id = {r["id"]: osv.parse(json.dumps(r)) for r in STANDARD}
    a = by_id["GHSA-aaaa-0001"]
    assert (a.score, a.severity, a.fixed) == (9.8, "critical", ("2.0.0",))
    assert a.affected[0].package == "flask-thing"                     # PEP 503
    assert by_id["GHSA-bbbb-0002"].severity == "medium"               # database_specific MODERATE
    assert by_id["PYSEC-2024-3"].severity is None
    assert by_id["MAL-2024-0005"].malicious and not a.malicious
    assert by_id["GHSA-eeee-0007"].affected == ()                     # not PyPI
    for bad in (b"{", b"[]", b'{"no": "id"}', b'"x"'):
        with pytest.raises(osv.RecordError):
            osv.parse(bad)


@pytest.fixture
def db_path(tmp_path):
    source = write_zip(tmp_path / "all.zip", STANDARD, extra={"broken.json": b"{not json", "README.txt": b"x"})
    path = tmp_path / "db" / "osv.sqlite"
    update(path, source)
    return path


def test_update_from_a_zip_and_query(db_path):
    meta = info(db_path)
    assert meta["records"] == 8 and meta["skipped"] == 1 and meta["malicious"] == 1 and meta["withdrawn"] == 1
    db = Database(db_path)
    assert [a.id for a, _ in db.for_package("flask-thing")] == ["GHSA-aaaa-0001", "PYSEC-2024-1"]
    assert db.for_package("gone") == []                               # withdrawn: never matched
    assert db.lookup("GHSA-dddd-0006").withdrawn == "2024-05-01T00:00:00Z"
    assert db.lookup("CVE-2024-0001").id in ("GHSA-aaaa-0001", "PYSEC-2024-1")
    assert db.for_package("othereco") == []


def test_update_from_a_folder_is_the_same(tmp_path, db_path):
    folder = tmp_path / "records" / "nested"
    folder.mkdir(parents=True)
    for r in STANDARD:
        (folder / f"{r['id']}.json").write_text(json.dumps(r))
    other = tmp_path / "from-dir.sqlite"
    update(other, tmp_path / "records")
    assert {k: v for k, v in info(other).items() if k in ("records", "packages", "malicious")} == \
        {k: v for k, v in info(db_path).items() if k in ("records", "packages", "malicious")}


def test_update_is_idempotent(tmp_path, db_path):
    before = Database(db_path).for_package("twopkg")
    update(db_path, tmp_path / "all.zip")
    assert Database(db_path).for_package("twopkg") == before
    con = sqlite3.connect(db_path)
    assert con.execute("SELECT COUNT(*) FROM advisories").fetchone()[0] == 8


def test_a_failed_update_leaves_the_previous_database(tmp_path, db_path):
    good = db_path.read_bytes()
    broken = tmp_path / "truncated.zip"
    broken.write_bytes((tmp_path / "all.zip").read_bytes()[:200])
    empty = write_zip(tmp_path / "empty.zip", [])
    for source in (broken, empty, tmp_path / "missing.zip"):
        with pytest.raises(DatabaseError):
            update(db_path, source)
        assert db_path.read_bytes() == good
    assert [p.name for p in db_path.parent.iterdir()] == ["osv.sqlite"]   # no temporary file left


def test_an_interrupted_update_leaves_the_previous_database(tmp_path, db_path):
    good = db_path.read_bytes()

    def interrupt(done, total):
        raise KeyboardInterrupt

    many = write_zip(tmp_path / "many.zip", [record(f"X-{i}", f"p{i}", events=[("introduced", "0")])
                                             for i in range(1200)])
    with pytest.raises(KeyboardInterrupt):
        update(db_path, many, progress=interrupt)
    assert db_path.read_bytes() == good
    assert [p.name for p in db_path.parent.iterdir()] == ["osv.sqlite"]


def test_unreadable_databases_are_clear_errors(tmp_path):
    with pytest.raises(DatabaseError, match="ml-guard db update"):
        Database(tmp_path / "nope.sqlite")
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"not sqlite at all" * 100)
    with pytest.raises(DatabaseError, match="ml-guard db update"):
        Database(junk)


def test_the_shared_snapshot(shared_dir, tmp_path):
    """Real data: OSV's PyPI export layout, 11,870 records."""
    path = tmp_path / "osv.sqlite"
    meta = update(path, shared_dir / "data" / "osv" / "PyPI-all-snapshot.zip")
    assert meta["records"] > 11_000 and meta["malicious"] > 9_000
    db = Database(path)
    hits = [a for a, e in db.for_package("transformers") if affects(e, "4.30.0")]
    ghsa = next(a for a in hits if a.id == "GHSA-3863-2447-669p")
    assert "CVE-2023-6730" in ghsa.aliases and ghsa.severity == "critical" and "4.36.0" in ghsa.fixed
    assert not any(a.id == "GHSA-3863-2447-669p" for a, e in db.for_package("transformers") if affects(e, "4.36.0"))
    mal = [a for a, e in db.for_package("ascii2text") if affects(e, "1.0")]
    assert "MAL-2022-7421" in [a.id for a in mal] and all(a.malicious for a in mal)


def test_update_from_a_url(tmp_path):
    """The download path, against a local HTTP server (no network here)."""
    import http.server
    import threading
    write_zip(tmp_path / "all.zip", STANDARD)

    class Files(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(tmp_path), **kwargs)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Files)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        assert update(tmp_path / "url.sqlite", f"{url}/all.zip")["records"] == 8
        with pytest.raises(DatabaseError, match="cannot download"):
            update(tmp_path / "url.sqlite", f"{url}/missing.zip")
        assert info(tmp_path / "url.sqlite")["records"] == 8
        assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    finally:
        server.shutdown()
