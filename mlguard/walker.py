"""Walk a scan root: which files to scan, and what to report instead of scanning."""
from __future__ import annotations

import functools
import os
import re
import stat
from typing import Iterable, Iterator

from .record import Record


class Entry(Record):
    """A regular file to scan."""

    fs_path: str
    """Path to open."""
    rel: str
    """Display path: relative to the root, ``/``-separated (the file name when the root is a file)."""
    size: int


class Skipped(Record):
    """Something not scanned that the user must hear about (becomes a finding of ``rule_id``)."""

    rel: str
    rule_id: str
    message: str


@functools.lru_cache(maxsize=512)
def _glob_regex(pattern: str) -> re.Pattern:
    """Compile a glob: ``**`` spans folders, ``*`` and ``?`` stay within one path component."""
    out, i = [], 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out))


def matches(rel: str, patterns: Iterable[str]) -> bool:
    """Whether a relative path matches any glob; a glob without ``/`` also matches the base name."""
    base = rel.rsplit("/", 1)[-1]
    for pattern in patterns:
        pattern = (pattern[2:] if pattern.startswith("./") else pattern).rstrip("/")
        rx = _glob_regex(pattern)
        if rx.fullmatch(rel) or ("/" not in pattern and rx.fullmatch(base)):
            return True
    return False


def _dir_excluded(rel: str, exclude: Iterable[str]) -> bool:
    return matches(rel, exclude) or matches(rel + "/", exclude)


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def walk(root: str, *, include: Iterable[str] = (), exclude: Iterable[str] = (),
         max_file_size: int | None = None) -> Iterator[Entry | Skipped]:
    """Yield the files under ``root`` in sorted order, and what was skipped and why.

    Symlinks are never followed out of the root; symlinked folders are not entered (their targets
    inside the root are walked on their own, so loops cannot happen); non-regular files are ignored.
    """
    include, exclude = tuple(include), tuple(exclude)
    if not os.path.isdir(root):
        yield from _file(root, os.path.basename(root) or root, None, max_file_size)
        return
    real_root = os.path.realpath(root)
    stack = [_listing("", root)]
    while stack:
        child = next(stack[-1], None)
        if child is None:
            stack.pop()
            continue
        if isinstance(child, Skipped):
            yield child
            continue
        rel_dir, child = child
        rel = f"{rel_dir}/{child.name}" if rel_dir else child.name
        try:
            is_link = child.is_symlink()
            is_dir = child.is_dir(follow_symlinks=False)
        except OSError:
            is_link, is_dir = False, False
        if is_dir:
            if not _dir_excluded(rel, exclude):
                stack.append(_listing(rel, child.path))
            continue
        if matches(rel, exclude) or (include and not matches(rel, include)):
            continue
        if is_link:
            target = os.path.realpath(child.path)
            if not _inside(target, real_root):
                yield Skipped(rel, "symlink-outside-root", f"symlink to {target} (outside the scanned tree), not followed")
                continue
            if os.path.isdir(target):
                continue
        yield from _file(child.path, rel, real_root, max_file_size)


def _listing(rel_dir: str, path: str) -> Iterator:
    """A folder's entries in name order (paired with the folder's relative path), or why it can't be listed."""
    try:
        with os.scandir(path) as it:
            children = sorted(it, key=lambda e: e.name)
    except OSError as exc:
        yield Skipped(rel_dir or ".", "file-unreadable", f"cannot list folder: {exc.strerror or exc}")
        return
    for child in children:
        yield rel_dir, child


def _file(path: str, rel: str, real_root: str | None, max_file_size: int | None) -> Iterator[Entry | Skipped]:
    try:
        st = os.stat(path)
    except OSError as exc:
        reason = "broken symlink" if os.path.islink(path) else (exc.strerror or str(exc))
        yield Skipped(rel, "file-unreadable", f"cannot read: {reason}")
        return
    if not stat.S_ISREG(st.st_mode):
        if real_root is None:
            yield Skipped(rel, "file-unreadable", "not a regular file")
        return
    if max_file_size is not None and st.st_size > max_file_size:
        yield Skipped(rel, "file-too-large", f"{st.st_size} bytes, over max_file_size ({max_file_size}); not scanned")
        return
    yield Entry(path, rel, st.st_size)
