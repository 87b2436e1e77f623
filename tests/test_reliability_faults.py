"""Disk full, a read-only registry, corrupted blobs: a clear error and nothing half-done."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest

from conftest import make_tree
from modelreg import Error, Registry
from reliability_util import assert_error, mount, mount_available, mr_runner, tree_state, umount


@pytest.fixture
def mr(script_runner):
    return mr_runner(script_runner)


def no_versions(root: Path, name: str = "m") -> bool:
    versions = root / "collections" / "local" / "default" / name / "versions"
    return not versions.exists() or not any(versions.iterdir())


# -- disk full --------------------------------------------------------------------------


@pytest.fixture
def small_fs(tmp_path):
    """A 1 MiB tmpfs (needs root); skipped where it cannot be mounted."""
    if not mount_available():
        pytest.skip("mounting a tmpfs needs root on Linux")
    where = tmp_path / "small"
    where.mkdir()
    mount("-t", "tmpfs", "-o", "size=1m", "tmpfs", where)
    yield where
    umount(where)


def test_disk_full_during_log_on_a_real_small_filesystem(small_fs, tmp_path, mr, monkeypatch):
    Registry.init(small_fs)
    root = small_fs / ".modelreg"
    big = make_tree(tmp_path / "big", {"a.bin": os.urandom(600_000), "b.bin": os.urandom(600_000)})
    monkeypatch.setenv("MODELREG_DIR", str(root))
    assert_error(mr("log", big, "-n", "m"), 1, "no space left on device")
    assert no_versions(root) and list((root / "tmp").iterdir()) == []
    reg = Registry.open(root)
    assert reg.fsck().ok
    # space is back for something that fits
    small = make_tree(tmp_path / "small-src", {"a.txt": "fits"})
    assert mr("log", small, "-n", "m", "-q").stdout == "m:v0\n"
    assert reg.fsck().ok


def _enospc_on(monkeypatch, failing: str) -> None:
    """Make the next temp file with `prefix` (rec: records, aliases; blob: blobs) fail as disk full."""
    from modelreg import util

    original = util.write_temp

    def full(tmp_dir, data, fsync, prefix="rec"):
        if prefix == failing:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return original(tmp_dir, data, fsync, prefix=prefix)

    monkeypatch.setattr(util, "write_temp", full)


def test_enospc_while_publishing_the_manifest(isolated_env, tmp_path, monkeypatch, mr):
    reg = Registry.init(isolated_env)
    reg.log(make_tree(tmp_path / "a", {"f": "a"}), "m")
    _enospc_on(monkeypatch, "rec")
    with pytest.raises(Error) as caught:
        reg.log(make_tree(tmp_path / "b", {"f": "b"}), "m")
    assert caught.value.exit_code == 1 and "no space left" in str(caught.value)
    assert_error(mr("log", tmp_path / "b", "-n", "m"), 1, "no space left on device")
    assert [v.version for v in reg.versions("m")] == [0]
    assert not (reg.path / "collections/local/default/m/versions/v1.json").exists()
    assert reg.fsck().ok


def test_enospc_while_storing_a_blob(isolated_env, tmp_path, monkeypatch, mr):
    reg = Registry.init(isolated_env)
    from modelreg import store

    def full(self, src, sync_now):
        raise store.io_error(OSError(errno.ENOSPC, "No space left on device"), f"storing {src}")

    monkeypatch.setattr(store.Store, "stage", full)
    assert_error(mr("log", make_tree(tmp_path / "b", {"f": "b"}), "-n", "m"), 1, "no space left")
    assert no_versions(reg.path)


def test_enospc_while_appending_history_leaves_no_torn_line(isolated_env, tmp_path, monkeypatch):
    """A short write followed by ENOSPC while the change record (format 2's history) is
    written: no record, torn or whole, appears; the history and aliases are as before."""
    reg = Registry.init(isolated_env)
    reg.log(make_tree(tmp_path / "a", {"f": "a"}), "m")
    changes = reg.path / "collections/local/default/m/changes"
    before = {p.name: p.read_bytes() for p in changes.iterdir()}
    history = reg.history("m")
    real_write = os.write
    calls = {"n": 0}

    def short_then_full(fd, data):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            target = ""
        if "/tmp/" in target and calls["n"] < 2:  # alias's first write: its change record
            calls["n"] += 1
            if calls["n"] == 1:
                return real_write(fd, bytes(data)[:7])  # the kernel wrote part of it
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", short_then_full)
    with pytest.raises(Error):
        reg.alias("m:v0", ["best"])
    monkeypatch.undo()
    assert calls["n"] == 2, "the record was not written through os.write"
    assert {p.name: p.read_bytes() for p in changes.iterdir()} == before
    fresh = Registry.open(reg.path)
    assert fresh.history("m") == history
    assert "best" not in fresh.show("m:v0").aliases
    assert list((reg.path / "tmp").iterdir()) == []
    assert fresh.alias("m:v0", ["best"]).aliases == ("best", "latest")


# -- a read-only registry ---------------------------------------------------------------

WRITES = [
    ("log", "{src}", "-n", "m"),
    ("log", "{src}", "-n", "newname"),
    ("alias", "m:v0", "best"),
    ("alias", "--delete", "m", "old"),
    ("link", "m:v0", "classifier"),
    ("rm", "m:v0", "--force"),
    ("config", "set", "pull.mode", "copy"),
    ("gc", "--grace", "0"),
]
# Format 2: linking a version already linked there returns the existing link and has
# nothing to write, so it succeeds on a read-only registry too, as a read does.
READS = [("ls",), ("ls", "m"), ("show", "m:v0"), ("history", "m"), ("fsck",), ("gc", "--dry-run"),
         ("pull", "m:v0", "-o", "{out}"), ("link", "m:v0", "existing")]


@pytest.fixture
def readonly(isolated_env, tmp_path, monkeypatch):
    """A registry seen through a read-only bind mount (root only; skipped elsewhere)."""
    if not mount_available():
        pytest.skip("a read-only bind mount needs root on Linux")
    home = tmp_path / "home-of-registry"
    reg = Registry.init(home)
    reg.log(make_tree(tmp_path / "a", {"f": "a"}), "m", aliases=["old"])
    reg.link("m:v0", "existing")
    reg.log(make_tree(tmp_path / "a1", {"f": "a1"}), "m")
    reg.rm("m:v1")  # garbage, so that gc has something it would remove
    view = tmp_path / "ro"
    view.mkdir()
    mount("--bind", home, view)
    try:
        mount("-o", "remount,bind,ro", view)
    except BaseException:
        umount(view)
        raise
    monkeypatch.setenv("MODELREG_DIR", str(view / ".modelreg"))
    yield home / ".modelreg"
    umount(view)


def test_read_only_registry_refuses_writes_clearly_and_changes_nothing(readonly, tmp_path, mr):
    src = make_tree(tmp_path / "b", {"f": "b"})
    before = tree_state(readonly)
    for command in WRITES:
        args = [a.format(src=src) for a in command]
        result = mr(*args)
        assert_error(result, 1)
        assert "read-only" in result.stderr.lower(), (args, result.stderr)
    assert tree_state(readonly) == before
    for command in READS:
        result = mr(*[a.format(out=tmp_path / "pulled") for a in command])
        assert result.returncode == 0, (command, result.stderr)
    assert (tmp_path / "pulled" / "f").read_text() == "a"
    assert tree_state(readonly) == before


def test_write_refusal_without_a_mount(isolated_env, tmp_path, monkeypatch, mr):
    """The same refusals where no read-only mount can be made: EROFS injected on every create."""
    reg = Registry.init(isolated_env)
    reg.log(make_tree(tmp_path / "a", {"f": "a"}), "m", aliases=["old"])
    reg.link("m:v0", "existing")
    src = make_tree(tmp_path / "b", {"f": "b"})
    before = tree_state(reg.path)
    real_open = os.open
    root = str(reg.path)

    def readonly_open(path, flags, *args, **kwargs):
        if str(path).startswith(root) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", readonly_open)
    for command in WRITES[:-1]:  # gc, with nothing to remove, takes its lock first: covered by the mount test
        args = [a.format(src=src) for a in command]
        result = mr(*args)
        if args[0] == "alias" and args[1] == "--delete":
            continue
        assert_error(result, 1)
        assert "read-only" in result.stderr.lower(), (args, result.stderr)
    monkeypatch.undo()
    assert tree_state(reg.path) == before


# -- corrupted blobs --------------------------------------------------------------------


@pytest.fixture
def corrupt(isolated_env, tmp_path, request):
    reg = Registry.init(isolated_env)
    reg.log(make_tree(tmp_path / "src", {"a.txt": "fine\n", "model.bin": b"W" * 10_000, "z.txt": "also fine\n"}),
            "m")
    entry = next(f for f in reg.resolve("m:v0").files if f.path == "model.bin")
    blob = reg.store.blob_path(entry.digest)
    data = bytearray(blob.read_bytes())
    damage = request.param
    if damage == "flip":
        data[5000] ^= 0x40
    elif damage == "truncate":
        data = data[:-1]
    else:
        data += b"\0"
    os.chmod(blob, 0o644)
    blob.write_bytes(bytes(data))
    os.chmod(blob, 0o444)
    return reg, entry.digest


@pytest.mark.parametrize("corrupt", ["flip", "truncate", "extend"], indirect=True)
def test_corrupted_blob_is_named_by_fsck_and_refused_by_pull(corrupt, tmp_path, mr):
    reg, digest = corrupt
    # fsck's part: test_fsck_names_a_corrupted_blob_and_its_users
    for mode in ("copy", "auto"):
        out = tmp_path / f"out-{mode}"
        assert_error(mr("pull", "m:v0", "-o", out, "--mode", mode), 1, "model.bin")
        assert not (out / "model.bin").exists()
        assert not [p for p in out.rglob("*") if p.name.startswith(".modelreg-tmp-")]
    out = tmp_path / "out-link"
    assert_error(mr("pull", "m:v0", "-o", out, "--mode", "hardlink", "--verify"), 1, "corrupt")
    assert not (out / "model.bin").exists()


@pytest.mark.parametrize("corrupt", ["flip"], indirect=True)
def test_fsck_names_a_corrupted_blob_and_its_users(corrupt, mr):
    reg, digest = corrupt
    result = mr("fsck", "--json")
    assert result.returncode == 1
    problems = json.loads(result.stdout)["problems"]
    assert [p["object"] for p in problems] == [digest] and "m:v0 (model.bin)" in problems[0]["message"]
