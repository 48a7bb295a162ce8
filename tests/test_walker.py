import os

import pytest

from mlguard.walker import Entry, Skipped, matches, walk


def tree(tmp_path, files):
    for rel in files:
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
    return tmp_path


def rels(items):
    return [i.rel for i in items if isinstance(i, Entry)]


def test_walk_is_sorted_and_relative(tmp_path):
    tree(tmp_path, ["b.txt", "a/z.pkl", "a/b/c.pt", ".git/config"])
    assert rels(walk(str(tmp_path), exclude=[".git/**"])) == ["a/b/c.pt", "a/z.pkl", "b.txt"]


@pytest.mark.parametrize("rel, pattern, expected", [
    ("models/a.pkl", "models/*.pkl", True),
    ("models/sub/a.pkl", "models/*.pkl", False),
    ("models/sub/a.pkl", "models/**", True),
    ("models/sub/a.pkl", "**/*.pkl", True),
    ("a.pkl", "**/*.pkl", True),
    ("deep/x/a.pkl", "*.pkl", True),
    ("tests/fixtures/x.bin", "tests/fixtures/**", True),
    ("tests/fixturesX/x.bin", "tests/fixtures/**", False),
    ("src/.git/config", ".git/**", False),
    ("models/a.pkl", "./models/a.pkl", True),
])
def test_glob_matching(rel, pattern, expected):
    assert matches(rel, [pattern]) is expected


def test_include_and_exclude(tmp_path):
    tree(tmp_path, ["models/a.pkl", "models/b.txt", "tests/fixtures/evil.pkl", "c.pkl"])
    items = walk(str(tmp_path), include=["**/*.pkl"], exclude=["tests/fixtures/**"])
    assert rels(items) == ["c.pkl", "models/a.pkl"]


def test_single_file_root_uses_its_name(tmp_path):
    tree(tmp_path, ["m/model.pt"])
    items = list(walk(str(tmp_path / "m" / "model.pt")))
    assert items == [Entry(str(tmp_path / "m" / "model.pt"), "model.pt", 1)]


def test_symlink_out_of_root_is_reported_not_followed(tmp_path):
    outside = tmp_path / "outside"
    tree(outside, ["secret.pkl"])
    root = tmp_path / "root"
    tree(root, ["ok.txt"])
    os.symlink(outside / "secret.pkl", root / "link.pkl")
    os.symlink(outside, root / "linkdir")
    items = list(walk(str(root)))
    assert rels(items) == ["ok.txt"]
    skipped = {i.rel: i.rule_id for i in items if isinstance(i, Skipped)}
    assert skipped == {"link.pkl": "symlink-outside-root", "linkdir": "symlink-outside-root"}


def test_symlink_loops_terminate_and_inside_links_are_scanned(tmp_path):
    root = tree(tmp_path, ["a/x.pkl"])
    os.symlink(root / "a", root / "a" / "loop")
    os.symlink(root / "a" / "x.pkl", root / "alias.pkl")
    os.symlink(root / "missing", root / "broken.pkl")
    items = list(walk(str(root)))
    assert rels(items) == ["a/x.pkl", "alias.pkl"]
    assert [(i.rel, i.rule_id) for i in items if isinstance(i, Skipped)] == [("broken.pkl", "file-unreadable")]


def test_size_limit_is_a_finding_not_silence(tmp_path):
    (tmp_path / "big.bin").write_bytes(b"\0" * 100)
    (tmp_path / "small.bin").write_bytes(b"\0" * 10)
    items = list(walk(str(tmp_path), max_file_size=50))
    assert rels(items) == ["small.bin"]
    assert [(i.rel, i.rule_id) for i in items if isinstance(i, Skipped)] == [("big.bin", "file-too-large")]


def test_fifo_is_ignored_without_hanging(tmp_path):
    tree(tmp_path, ["a.txt"])
    os.mkfifo(tmp_path / "pipe")
    assert rels(walk(str(tmp_path))) == ["a.txt"]
