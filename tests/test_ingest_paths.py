"""The ways a file reaches the store (store.py, fastcopy.py): every path stores exact bytes."""

from __future__ import annotations

import errno
import os
import stat

import pytest

from modelreg import Registry, fastcopy, store, util
from modelreg.hashing import hash_bytes


def payload(size: int, seed: int = 1) -> bytes:
    block = bytes((i * 131 + seed) % 251 for i in range(4099))  # never aligned to anything
    return (block * (size // len(block) + 1))[:size]


@pytest.fixture
def reg(isolated_env):
    return Registry.init(isolated_env)


@pytest.fixture
def small_chunks(monkeypatch):
    monkeypatch.setattr(fastcopy, "CHUNK", 256 * 1024)  # many chunks, quickly


def check_stored(reg: Registry, ref: str, files: dict[str, bytes]) -> None:
    entries = {f.path: f for f in reg.files(ref)}
    assert set(entries) == set(files)
    for path, data in files.items():
        blob = reg.store.blob_path(entries[path].digest)
        assert entries[path].digest == hash_bytes(data) and entries[path].size == len(data)
        assert blob.read_bytes() == data
        assert stat.S_IMODE(blob.stat().st_mode) == 0o444
    assert list((reg.path / "tmp").iterdir()) == []


@pytest.mark.parametrize("fsync", [True, False])
def test_a_large_file_with_an_unaligned_size_is_stored_exactly(reg, tmp_path, small_chunks, fsync):
    if not fsync:
        reg.config_set("core.fsync", "false")
        reg = Registry.open(reg.path)
    data = payload(store.SMALL_FILE + 12345)
    (tmp_path / "big.bin").write_bytes(data)
    result = reg.log(tmp_path / "big.bin", "m")
    check_stored(reg, result.ref, {"big.bin": data})


def test_without_o_direct_the_large_path_still_stores_exact_bytes(reg, tmp_path, small_chunks, monkeypatch):
    monkeypatch.setattr(fastcopy, "set_direct", lambda fd: False)
    data = payload(store.SMALL_FILE + 1, seed=7)
    (tmp_path / "big.bin").write_bytes(data)
    check_stored(reg, reg.log(tmp_path / "big.bin", "m").ref, {"big.bin": data})


def test_a_write_error_in_the_large_path_leaves_nothing_behind(reg, tmp_path, small_chunks, monkeypatch):
    real = os.pwrite
    calls = []

    def failing(fd, data, offset):
        calls.append(offset)
        if len(calls) == 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd, data, offset)

    monkeypatch.setattr(os, "pwrite", failing)
    (tmp_path / "big.bin").write_bytes(payload(store.SMALL_FILE + 99))
    with pytest.raises(Exception) as info:
        reg.log(tmp_path / "big.bin", "m")
    assert "no space left" in str(info.value).lower()
    assert list((reg.path / "tmp").iterdir()) == []
    assert list((reg.path / "objects").iterdir()) == []
    assert reg.collections() == [] or all(c.versions == 0 for c in reg.collections())


def test_many_small_files_are_batched_and_stored_exactly(reg, tmp_path):
    files = {f"d{i % 3}/f{i}.bin": payload(1000 + i * 37, seed=i) for i in range(store.BATCH_SYNC_FILES + 5)}
    for path, data in files.items():
        (tmp_path / "src" / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "src" / path).write_bytes(data)
    check_stored(reg, reg.log(tmp_path / "src", "m").ref, files)


def test_publishing_falls_back_to_link_where_rename_noreplace_is_missing(reg, tmp_path, monkeypatch):
    monkeypatch.setattr(util, "_noreplace_works", False)
    files = {"a": b"a" * 10, "b": payload(store.SMALL_FILE + 3)}
    for path, data in files.items():
        (tmp_path / "src").mkdir(exist_ok=True)
        (tmp_path / "src" / path).write_bytes(data)
    check_stored(reg, reg.log(tmp_path / "src", "m").ref, files)


def test_rename_noreplace_never_replaces(tmp_path):
    (tmp_path / "a").write_bytes(b"new")
    (tmp_path / "b").write_bytes(b"old")
    try:
        done = store.rename_noreplace(str(tmp_path / "a"), str(tmp_path / "b"))
    except FileExistsError:
        done = None
    else:
        assert done is False  # not available here: the caller falls back to link(2)
    assert (tmp_path / "b").read_bytes() == b"old"


@pytest.mark.parametrize("size", [100, store.SMALL_FILE + 5])
def test_an_existing_blob_is_not_rewritten_but_refreshed(reg, tmp_path, size):
    data = payload(size, seed=3)
    (tmp_path / "one").mkdir()
    (tmp_path / "one" / "w.bin").write_bytes(data)
    first = reg.log(tmp_path / "one", "a")
    blob = reg.store.blob_path(reg.files(first.ref)[0].digest)
    before = blob.stat()
    os.utime(blob, (before.st_atime - 3600, before.st_mtime - 3600))
    (tmp_path / "two").mkdir()
    (tmp_path / "two" / "w.bin").write_bytes(data)
    reg.log(tmp_path / "two", "b")
    after = blob.stat()
    assert after.st_ino == before.st_ino
    assert after.st_mtime > before.st_mtime - 60
    assert list((reg.path / "tmp").iterdir()) == []


def test_blobs_are_read_only_whatever_the_umask(reg, tmp_path):
    old = os.umask(0o277)
    try:
        (tmp_path / "src").mkdir()
        (tmp_path / "src" / "s.bin").write_bytes(b"small")
        (tmp_path / "src" / "l.bin").write_bytes(payload(store.SMALL_FILE + 10))
        result = reg.log(tmp_path / "src", "m")
    finally:
        os.umask(old)
    for f in reg.files(result.ref):
        assert stat.S_IMODE(reg.store.blob_path(f.digest).stat().st_mode) == 0o444
