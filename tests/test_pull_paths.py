"""The ways `pull` writes a file (materialize.py): exact bytes, or a refusal that leaves nothing."""

from __future__ import annotations

import os
import stat

import pytest

from modelreg import Registry, hashing
from modelreg.errors import IntegrityError


def payload(size: int, seed: int = 1) -> bytes:
    block = bytes((i * 131 + seed) % 251 for i in range(4099))
    return (block * (size // len(block) + 1))[:size]


BIG = hashing.MMAP_THRESHOLD + 12345  # large enough for the copy-while-hashing path


@pytest.fixture
def logged(isolated_env, tmp_path):
    reg = Registry.init(isolated_env)
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    files = {"big.bin": payload(BIG), "sub/small.txt": b"small\n", "sub/run.sh": b"#!/bin/sh\n"}
    for path, data in files.items():
        (src / path).write_bytes(data)
    (src / "sub/run.sh").chmod(0o755)
    reg.log(src, "m")
    return reg, files


def blob(reg: Registry, path: str):
    return reg.store.blob_path(next(f.digest for f in reg.files("m:v0") if f.path == path))


def leftovers(out) -> list[str]:
    return [str(p) for p in out.rglob("*") if p.name.startswith(".modelreg-tmp-")] if out.exists() else []


@pytest.mark.parametrize("mode", ["auto", "copy", "hardlink", "symlink"])
@pytest.mark.parametrize("verify", [None, True, False])
def test_every_mode_puts_exact_bytes(logged, tmp_path, mode, verify):
    reg, files = logged
    out = tmp_path / f"out-{mode}-{verify}"
    reg.pull("m:v0", out, mode=mode, verify=verify)
    for path, data in files.items():
        assert (out / path).read_bytes() == data
    assert os.access(out / "sub/run.sh", os.X_OK)
    assert leftovers(out) == []


@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_a_damaged_large_blob_fails_a_verified_copy_and_leaves_no_file(logged, tmp_path, damage):
    reg, files = logged
    path = blob(reg, "big.bin")
    path.chmod(0o644)
    data = bytearray(path.read_bytes())
    if damage == "flip":
        data[len(data) // 2] ^= 1
    else:
        del data[-1000:]
    path.write_bytes(bytes(data))
    path.chmod(0o444)
    out = tmp_path / "out"
    with pytest.raises(IntegrityError):
        reg.pull("m:v0", out, mode="copy", files=["big.bin"])
    assert not (out / "big.bin").exists() and leftovers(out) == []


@pytest.mark.parametrize("mode", ["copy", "hardlink", "symlink"])
def test_a_missing_blob_is_an_integrity_error_in_every_mode(logged, tmp_path, mode):
    reg, files = logged
    blob(reg, "sub/small.txt").unlink()
    out = tmp_path / "out"
    with pytest.raises(IntegrityError, match="missing from the store"):
        reg.pull("m:v0", out, mode=mode, files=["sub/small.txt"])
    assert not (out / "sub/small.txt").exists() and leftovers(out) == []


def test_copies_get_the_users_mode_under_the_umask(logged, tmp_path):
    reg, files = logged
    old = os.umask(0o027)
    try:
        reg.pull("m:v0", tmp_path / "out", mode="copy")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "out/big.bin").stat().st_mode) == 0o640
    assert stat.S_IMODE((tmp_path / "out/sub/run.sh").stat().st_mode) == 0o750


def test_copies_work_where_the_kernel_has_no_copy_file_range(isolated_env, monkeypatch):
    """macOS has no copy_file_range: logging and pulling fall back to read/write."""
    import os

    import modelreg

    monkeypatch.delattr(os, "copy_file_range", raising=False)
    src = isolated_env / "big"
    src.mkdir()
    payload = os.urandom(5 * 1024 * 1024 + 123)  # past the small-file path
    (src / "w.bin").write_bytes(payload)
    reg = modelreg.Registry.init(isolated_env)
    reg.config_set("core.fsync", "false")  # the copy_fd path of ingest
    reg = modelreg.Registry.open(isolated_env)
    reg.log(src, name="big")
    reg.pull("big:v0", isolated_env / "out", mode="copy")
    assert (isolated_env / "out" / "w.bin").read_bytes() == payload
