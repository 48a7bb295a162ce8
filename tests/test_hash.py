"""SHA-256 of artifact files (``mlguard.engine.sha256_file[s]``): both engines against hashlib.

Files are generated here. The native engine must be built (a missing build is a failure).
"""
from __future__ import annotations

import errno
import hashlib
import os
import pathlib
import random
import sys
import threading
import time

import pytest

import mlguard.engine as engine
from mlguard.engine.pure import hash as pure_hash

BUF = pure_hash.BUF_SIZE          # 1 MiB, as mlguard_rs/src/hash.rs
ENGINES = ("native", "python")


def reference(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_native_kernel_is_built():
    import mlguard_rs
    for kernel in ("sha256_file", "sha256_files", "crc32"):
        assert hasattr(mlguard_rs, kernel), "stale mlguard_rs build: rebuild with `pip install -e .`"
    assert engine.engine_name() in ENGINES


@pytest.fixture(scope="module")
def sized_files(tmp_path_factory):
    """Files at and around the read-buffer size, plus random multi-MiB ones: {path: bytes}."""
    folder = tmp_path_factory.mktemp("hash")
    rng = random.Random(1234)
    blob = rng.randbytes(3 * BUF + 4321)
    sizes = [0, 1, 2, 63, 64, 65, 4096, BUF - 1, BUF, BUF + 1, 2 * BUF, 2 * BUF + 1, 3 * BUF + 4321]
    files = {}
    for size in sizes:
        path = folder / f"f{size}"
        path.write_bytes(blob[:size])
        files[path] = blob[:size]
    for i in range(2):                      # random content and size, 2..6 MiB
        data = rng.randbytes(rng.randrange(2 * BUF, 6 * BUF))
        path = folder / f"random{i}"
        path.write_bytes(data)
        files[path] = data
    return files


@pytest.mark.parametrize("name", ENGINES)
def test_matches_hashlib_at_buffer_boundaries(sized_files, name):
    for path, data in sized_files.items():
        got = engine.sha256_file(path, engine=name)
        assert got == reference(data), (path.name, len(data))
        assert len(got) == 64 and got == got.lower()


def test_known_digests(tmp_path):
    empty, abc = tmp_path / "empty", tmp_path / "abc"
    empty.write_bytes(b"")
    abc.write_bytes(b"abc")
    for name in ENGINES:
        assert engine.sha256_file(empty, engine=name) == \
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        assert engine.sha256_file(abc, engine=name) == \
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


@pytest.mark.parametrize("name", ENGINES)
def test_path_types(tmp_path, name):
    path = tmp_path / "x.bin"
    path.write_bytes(b"model")
    expected = reference(b"model")
    for p in (path, str(path), os.fsencode(path), pathlib.PurePath(path)):
        assert engine.sha256_file(p, engine=name) == expected
    assert engine.sha256_files([os.fsencode(path)], engine=name) == [expected]
    with pytest.raises(TypeError):
        engine.sha256_file(123, engine=name)
    for bad in ("a\x00b", b"a\x00b"):       # as open() does, for both engines and both functions
        with pytest.raises(ValueError):
            engine.sha256_file(bad, engine=name)
        with pytest.raises(ValueError):
            engine.sha256_files([path, bad], engine=name)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs a bytes file system (Linux)")
@pytest.mark.parametrize("name", ENGINES)
def test_non_utf8_file_name(tmp_path, name):
    raw = os.fsencode(tmp_path) + b"/w\xff\xfe.bin"
    with open(raw, "wb") as f:
        f.write(b"weights")
    expected = reference(b"weights")
    assert engine.sha256_file(raw, engine=name) == expected
    assert engine.sha256_file(os.fsdecode(raw), engine=name) == expected
    missing = os.fsencode(tmp_path) + b"/gone\xff"
    got = engine.sha256_files([raw, missing], engine=name)
    assert got[0] == expected
    assert isinstance(got[1], FileNotFoundError) and got[1].filename == os.fsdecode(missing)


@pytest.mark.parametrize("name", ENGINES)
@pytest.mark.parametrize("jobs", [None, 1, 2, 7])
def test_many_files_in_order(sized_files, name, jobs):
    paths = list(sized_files)
    got = engine.sha256_files(paths, jobs=jobs, engine=name)
    assert got == [reference(sized_files[p]) for p in paths]


def test_engines_agree(sized_files, tmp_path):
    paths = list(sized_files) + [tmp_path / "missing", tmp_path]
    native = engine.sha256_files(paths, engine="native")
    python = engine.sha256_files(paths, engine="python")
    for p, a, b in zip(paths, native, python):
        if isinstance(a, OSError):
            assert type(a) is type(b) and (a.errno, a.filename) == (b.errno, b.filename), (p, a, b)
        else:
            assert a == b, p


def test_empty_list_and_bad_jobs():
    assert engine.sha256_files([]) == []
    assert engine.sha256_files([], engine="python") == []
    assert engine.sha256_files([__file__], jobs=10**30) == engine.sha256_files([__file__], jobs=1)
    for jobs in (0, -1, 1.5, True):
        with pytest.raises(ValueError):
            engine.sha256_files([], jobs=jobs)
    with pytest.raises(ValueError):
        engine.sha256_files([], engine="rust")


# ------------------------------------------------------------------------------- errors ----

def unreadable_paths(tmp_path):
    """(path, expected errno) of files that cannot be hashed; each a distinct failure."""
    cases = [(tmp_path / "missing.bin", errno.ENOENT),
             (tmp_path, errno.EISDIR),                          # a directory
             (tmp_path / "file.bin" / "below", errno.ENOTDIR)]   # a file used as a folder
    (tmp_path / "file.bin").write_bytes(b"x")
    if os.path.exists("/proc/self/mem"):
        cases.append((pathlib.Path("/proc/self/mem"), errno.EIO))  # opens, then the read fails
    if hasattr(os, "geteuid") and os.geteuid() != 0:               # root reads mode-000 files
        locked = tmp_path / "locked.bin"
        locked.write_bytes(b"secret")
        locked.chmod(0)
        cases.append((locked, errno.EACCES))
    return cases


@pytest.mark.parametrize("name", ENGINES)
def test_unreadable_file_raises_oserror_with_path(tmp_path, name):
    for path, code in unreadable_paths(tmp_path):
        with pytest.raises(OSError) as info:
            engine.sha256_file(path, engine=name)
        assert info.value.errno == code, (path, info.value)
        assert info.value.filename == str(path)
        assert str(path) in str(info.value)
    with pytest.raises(IsADirectoryError):
        engine.sha256_file(tmp_path, engine=name)
    with pytest.raises(FileNotFoundError):
        engine.sha256_file(tmp_path / "missing.bin", engine=name)


@pytest.mark.parametrize("name", ENGINES)
def test_unreadable_file_gives_oserror_in_its_slot(tmp_path, name):
    good = tmp_path / "good.bin"
    good.write_bytes(b"weights")
    bad = unreadable_paths(tmp_path)
    paths = [good] + [p for p, _ in bad] + [good]
    for jobs in (1, 2):
        got = engine.sha256_files(paths, jobs=jobs, engine=name)
        assert got[0] == got[-1] == reference(b"weights")
        for (path, code), result in zip(bad, got[1:-1]):
            assert isinstance(result, OSError), (path, result)
            assert (result.errno, result.filename) == (code, str(path))


# ------------------------------------------------------- big sparse file: bounded memory ----

def _peak_rss_reset() -> bool:
    """Reset this process's peak RSS (VmHWM), where Linux allows it."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise LookupError(field)


# Sizes: reading a sparse file's holes the first time makes the kernel allocate and zero page-cache
# pages, which on the project's VM can cost up to ~4 s per GiB (first touch of guest memory): the
# files stay far under a GiB to keep this module fast, yet far over the 32 MiB memory bound checked
# below (bench_hash.py hashes 1 GiB). The digests are those of zeros (`head -c 256M /dev/zero |
# sha256sum`).
SPARSE = {
    "native": (256 << 20, "a6d72ac7690f53be6ae46ba88506bd97302a093f7108472bd9efc3cefda06484"),
    "python": (128 << 20, "254bcc3fc4f27172636df4bf32de9f107f620d559b20d760197e452b97453917"),
}


@pytest.mark.parametrize("name", ENGINES)
def test_sparse_file_streams_with_bounded_memory_and_without_the_gil(tmp_path, name):
    """A sparse file of zeros (nothing on disk) hashes with about the buffer's memory per thread,
    while this thread keeps running Python (both engines release the GIL while reading and hashing,
    one file or a list of them)."""
    size, expected = SPARSE[name]
    path = tmp_path / "sparse.bin"
    with open(path, "wb") as f:
        f.truncate(size)
    can_measure = _peak_rss_reset()
    rss_before = _status_kib("VmRSS") if can_measure else 0
    result = {}

    def work():
        result["digest"] = engine.sha256_file(path, engine=name)
        result["digests"] = engine.sha256_files([path, path], jobs=2, engine=name)

    worker = threading.Thread(target=work)
    start = last = time.perf_counter()
    max_gap = 0.0
    worker.start()
    while worker.is_alive():
        time.sleep(0.002)   # needs the GIL back to return
        now = time.perf_counter()
        max_gap, last = max(max_gap, now - last), now
    worker.join()
    elapsed = time.perf_counter() - start
    assert result["digest"] == expected and result["digests"] == [expected, expected]
    assert elapsed < 30, f"{size >> 20} MiB of zeros took {elapsed:.1f}s"
    if can_measure:
        grown = _status_kib("VmHWM") - rss_before
        assert grown < 32 * 1024, f"peak RSS grew by {grown} KiB hashing a {size >> 20} MiB file"
    # Holding the GIL for the whole hash would stall this loop for all of it.
    if elapsed > 0.1:
        assert max_gap < elapsed / 2, (max_gap, elapsed)



@pytest.mark.parametrize("name", ENGINES)
def test_crc32_is_zlibs(name):
    """CRC-32 of zip members: zlib's value for every length around the kernel's 16-byte folding and
    the 64 KiB at which it releases the GIL, for any bytes-like object."""
    import array
    import zlib

    blob = random.Random(5).randbytes((1 << 16) + 300)
    for size in (0, 1, 15, 16, 17, 63, 64, 65, 255, 4096, (1 << 16) - 1, 1 << 16, (1 << 16) + 300):
        assert engine.crc32(blob[:size], engine=name) == zlib.crc32(blob[:size]), size
    view = memoryview(blob)
    assert engine.crc32(view[3:1000], engine=name) == zlib.crc32(blob[3:1000])
    assert engine.crc32(view[::2], engine=name) == zlib.crc32(blob[::2])           # not contiguous
    assert engine.crc32(bytearray(b"torch"), engine=name) == zlib.crc32(b"torch")
    assert engine.crc32(array.array("I", [1, 2]), engine=name) == zlib.crc32(array.array("I", [1, 2]))
    with pytest.raises(TypeError):
        engine.crc32("text", engine=name)


@pytest.mark.parametrize("name", ENGINES)
def test_sha256_of_bytes_is_hashlibs(name):
    """SHA-256 of bytes (finding fingerprints, the rules cache): hashlib's value around the 64-byte block
    and the 64 KiB at which the native engine releases the GIL, for any bytes-like object."""
    blob = random.Random(6).randbytes((1 << 16) + 300)
    for size in (0, 1, 55, 56, 63, 64, 65, 4096, (1 << 16) - 1, 1 << 16, (1 << 16) + 300):
        assert engine.sha256(blob[:size], engine=name) == hashlib.sha256(blob[:size]).hexdigest(), size
    view = memoryview(blob)
    assert engine.sha256(view[::3], engine=name) == hashlib.sha256(blob[::3]).hexdigest()  # not contiguous
    assert engine.sha256(bytearray(b"torch"), engine=name) == hashlib.sha256(b"torch").hexdigest()
    with pytest.raises(TypeError):
        engine.sha256("text", engine=name)
