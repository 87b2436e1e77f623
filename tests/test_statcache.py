"""The stat cache of source files (SPEC §5): a digest is reused only when it cannot be wrong."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import pytest

from modelreg import Registry, statcache
from modelreg.hashing import hash_bytes
from modelreg.store import Store

HOUR_NS = 3600 * 10**9


def age(path: Path, ns: int = HOUR_NS) -> None:
    """Make a file look written long ago (its ctime still moves: only mtime is settable)."""
    when = time.time_ns() - ns
    os.utime(path, ns=(when, when))


@pytest.fixture
def reg(isolated_env):
    return Registry.init(isolated_env)


@pytest.fixture
def staged(monkeypatch):
    """The source paths Store.stage reads (a cache hit reads nothing)."""
    seen: list[str] = []
    original = Store.stage

    def stage(self, src, sync_now):
        seen.append(os.path.basename(src))
        return original(self, src, sync_now)

    monkeypatch.setattr(Store, "stage", stage)
    return seen


def stored(reg: Registry, ref: str) -> dict[str, bytes]:
    """path -> the bytes of its blob, for every file of a version."""
    return {f.path: reg.store.blob_path(f.digest).read_bytes() for f in reg.files(ref)}


def settle(*paths: Path) -> None:
    """Wait until the files' ctimes are older than the racy window, so entries are recorded."""
    newest = max(os.stat(p).st_ctime_ns for p in paths)
    delay = newest + statcache.RACY_FINE_NS - time.time_ns()
    if delay > 0:
        time.sleep(delay / 1e9 + 0.05)


# -- what the brief asks ------------------------------------------------------------------


@pytest.fixture
def coarse_timestamps(monkeypatch, tmp_path):
    """Stat results of files under tmp_path/src with whole-second times, as on a coarse
    filesystem: a rewrite within the same second then leaves size, mtime and ctime
    exactly as they were, which only the racy-timestamp rule can catch."""
    src_dir = str(tmp_path / "src")
    real_stat, real_fstat = os.stat, os.fstat

    def coarse(st: os.stat_result) -> os.stat_result:
        sec = lambda ns: ns - ns % 10**9
        return os.stat_result(tuple(st), {"st_atime_ns": sec(st.st_atime_ns), "st_mtime_ns": sec(st.st_mtime_ns),
                                          "st_ctime_ns": sec(st.st_ctime_ns)})

    def fake_stat(path, *args, **kwargs):
        st = real_stat(path, *args, **kwargs)
        return coarse(st) if str(path).startswith(src_dir) else st

    def fake_fstat(fd):
        st = real_fstat(fd)
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            return st
        return coarse(st) if target.startswith(src_dir) else st

    if not sys.platform.startswith("linux"):
        pytest.skip("needs /proc/self/fd to tell which descriptor is a source file")
    monkeypatch.setattr(os, "stat", fake_stat)
    monkeypatch.setattr(os, "fstat", fake_fstat)
    (tmp_path / "src").mkdir()
    return tmp_path / "src"


def test_a_file_rewritten_with_the_same_size_within_the_same_second_is_rehashed(reg, coarse_timestamps):
    src = coarse_timestamps
    for _ in range(5):  # the write, the log and the rewrite must fall within one second
        start = time.time()
        (src / "w.bin").write_bytes(b"A" * 1000)
        first = reg.log(src, "m")
        (src / "w.bin").write_bytes(b"B" * 1000)
        st_after = os.stat(src / "w.bin")
        if int(time.time()) == int(start):
            break
        reg = Registry.open(reg.path)  # a second boundary passed: try again
    else:
        pytest.skip("this machine never managed a write, a log and a rewrite within one second")
    # Size, mtime and ctime are all unchanged (whole seconds), so only the racy rule helps.
    second = reg.log(src, "m")
    assert second.new and second.digest != first.digest
    assert stored(reg, second.ref) == {"w.bin": b"B" * 1000}
    assert os.stat(src / "w.bin").st_mtime_ns == st_after.st_mtime_ns


def test_touching_a_file_without_changing_it_does_not_change_its_digest(reg, tmp_path, staged):
    src = tmp_path / "src"
    src.mkdir()
    (src / "w.bin").write_bytes(b"weights" * 100)
    age(src / "w.bin")
    settle(src / "w.bin")
    first = reg.log(src, "m")
    os.utime(src / "w.bin")  # touch: new mtime and ctime, same bytes
    staged.clear()
    again = reg.log(src, "m")
    assert staged == ["w.bin"]  # the changed timestamps sent it to be hashed again
    assert (again.digest, again.new, again.ref) == (first.digest, False, first.ref)
    assert reg.files(again.ref)[0].digest == hash_bytes(b"weights" * 100)


def test_a_corrupt_cache_file_falls_back_to_hashing(reg, tmp_path, staged):
    src = tmp_path / "src"
    src.mkdir()
    (src / "w.bin").write_bytes(b"one")
    age(src / "w.bin")
    settle(src / "w.bin")
    reg.log(src, "m")
    path = statcache.stat_cache_path(reg.path)
    assert path.is_file()
    for garbage in (b"{not json", b"[]", b'{"format": 1, "entries": []}', b'{"format": 99, "entries": {}}',
                    json.dumps({"format": 1, "entries": {str(src / "w.bin"): ["x", 1, 2]}}).encode()):
        path.write_bytes(garbage)
        staged.clear()
        result = reg.log(src, "m")
        assert staged == ["w.bin"]
        assert not result.new and reg.files(result.ref)[0].digest == hash_bytes(b"one")


# -- the rules behind them ----------------------------------------------------------------


def test_an_unchanged_file_is_not_read_again(reg, tmp_path, staged):
    src = tmp_path / "src"
    src.mkdir()
    for name in ("a.bin", "b.bin", "c.bin"):
        (src / name).write_bytes(name.encode() * 500)
        age(src / name)
    settle(*src.iterdir())
    reg.log(src, "m")
    assert sorted(staged) == ["a.bin", "b.bin", "c.bin"]
    (src / "b.bin").write_bytes(b"changed")
    staged.clear()
    result = reg.log(src, "m")
    assert staged == ["b.bin"]
    assert result.new and stored(reg, result.ref) == {"a.bin": b"a.bin" * 500, "b.bin": b"changed",
                                                      "c.bin": b"c.bin" * 500}


def test_a_file_changed_within_the_racy_window_is_not_recorded(reg, tmp_path, staged):
    src = tmp_path / "src"
    src.mkdir()
    (src / "fresh.bin").write_bytes(b"fresh")  # written just now: its timestamps prove nothing yet
    reg.log(src, "m")
    staged.clear()
    reg.log(src, "m")
    assert staged == ["fresh.bin"]


def test_a_cached_digest_whose_blob_is_gone_is_not_used(reg, tmp_path, staged):
    src = tmp_path / "src"
    src.mkdir()
    (src / "w.bin").write_bytes(b"payload")
    age(src / "w.bin")
    settle(src / "w.bin")
    first = reg.log(src, "m")
    blob = reg.store.blob_path(reg.files(first.ref)[0].digest)
    blob.unlink()
    staged.clear()
    reg.log(src, "m")
    assert staged == ["w.bin"]
    assert blob.read_bytes() == b"payload"


def test_the_cache_is_keyed_by_path_and_identity(reg, tmp_path, staged):
    """A file replaced by another (a new inode, as an atomic save makes) is hashed."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "w.bin").write_bytes(b"AAAA")
    age(src / "w.bin")
    settle(src / "w.bin")
    reg.log(src, "m")
    (tmp_path / "new.bin").write_bytes(b"BBBB")
    os.replace(tmp_path / "new.bin", src / "w.bin")
    age(src / "w.bin")  # even with the old mtime back, the inode and ctime differ
    staged.clear()
    result = reg.log(src, "m")
    assert staged == ["w.bin"] and stored(reg, result.ref) == {"w.bin": b"BBBB"}


def test_trusted_needs_timestamps_older_than_the_granularity():
    now = time.time_ns()

    def st(mtime_ns, ctime_ns):
        return os.stat_result((0o100644, 1, 1, 1, 0, 0, 10, 0, 0, 0),
                              {"st_mtime_ns": mtime_ns, "st_ctime_ns": ctime_ns, "st_atime_ns": 0})

    fine = now - now % 1000 + 7  # not a whole second
    assert not statcache.trusted(st(fine, fine), fine + 1000)
    assert not statcache.trusted(st(fine, fine), fine + statcache.RACY_FINE_NS)
    assert statcache.trusted(st(fine, fine), fine + statcache.RACY_FINE_NS + 1)
    assert not statcache.trusted(st(fine - HOUR_NS, fine), fine + 1000)  # ctime counts too
    whole = now - now % 10**9
    assert not statcache.trusted(st(whole, whole), whole + statcache.RACY_FINE_NS + 1)
    assert statcache.trusted(st(whole, whole), whole + statcache.RACY_COARSE_NS + 1)
    assert not statcache.trusted(st(now + HOUR_NS, now + HOUR_NS), now)  # from the future


def test_saves_merge_with_what_another_log_wrote(reg, tmp_path):
    one, two = statcache.StatCache(reg.path), statcache.StatCache(reg.path)
    for cache, name in ((one, "a"), (two, "b")):
        path = tmp_path / name
        path.write_bytes(name.encode())
        age(path)
        cache.record(path, os.stat(path), hash_bytes(name.encode()), time.time_ns() + 2 * 10**9)
    one.save()
    two.save()
    fresh = statcache.StatCache(reg.path)
    for name in ("a", "b"):
        assert fresh.lookup(tmp_path / name, os.stat(tmp_path / name)) == hash_bytes(name.encode())
    assert not any(p.name.startswith("statcache") for p in (reg.path / "tmp").iterdir())
    assert statcache.problem(reg.path) is None


def test_the_cache_is_bounded(reg, tmp_path, monkeypatch):
    monkeypatch.setattr(statcache, "MAX_ENTRIES", 3)
    cache = statcache.StatCache(reg.path)
    path = tmp_path / "f"
    path.write_bytes(b"x")
    age(path)
    st = os.stat(path)
    for i in range(5):
        cache.record(tmp_path / f"f{i}", st, hash_bytes(b"x"), time.time_ns() + 2 * 10**9 + i)
    cache.save()
    kept = json.loads(statcache.stat_cache_path(reg.path).read_bytes())["entries"]
    assert sorted(Path(p).name for p in kept) == ["f2", "f3", "f4"]


def test_fsck_is_content_with_the_cache(reg, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "w.bin").write_bytes(b"w")
    age(src / "w.bin")
    settle(src / "w.bin")
    reg.log(src, "m")
    assert statcache.stat_cache_path(reg.path).is_file()
    assert reg.fsck().ok
    statcache.stat_cache_path(reg.path).write_bytes(b"garbage")
    assert statcache.problem(reg.path)
