"""Issue 9, "Locks and leftovers never strand anyone": locks always name their holder,
gc works on a full disk, temp files of dead writers are judged by their names, config
writes are read-modify-write under a lock, and `Foo`/`foo` are created atomically."""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import make_tree
from modelreg import Registry
from modelreg.errors import Conflict
from reliability_util import assert_error, dead_pid, env_for, mount, mount_available, run_cli, spawn_cli, umount




def holder(pid: int, **extra) -> dict:
    return {"host": socket.gethostname(), "pid": pid, "pstart": None, "time": time.time(), **extra}


def backdate(path: Path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then), follow_symlinks=False)


@pytest.fixture
def reg(isolated_env, tmp_path) -> Registry:
    registry = Registry.init(isolated_env)
    registry.config_set("core.fsync", "false")  # durability is not what these test
    registry = Registry.open(isolated_env)
    registry.log(make_tree(tmp_path / "a", {"f": "a"}), "m")
    registry.log(make_tree(tmp_path / "b", {"f": "b"}), "m")
    return registry


def coll_lock(reg: Registry) -> Path:
    """Format 2 keeps no collection lock; config.lock is the lock writers contend for here."""
    return reg.path / "locks" / "config.lock"


# -- a lock always names its holder ---------------------------------------------------


@pytest.mark.parametrize("where", ["gc"])  # format 2 keeps no collection lock
def test_an_empty_lock_left_by_0_1_0_does_not_block(reg, mr, where):
    """0.1.0 created its lock empty and filled it afterwards; a kill in between left one."""
    lock = reg.gc_lock  # format 2's (0.1.0's gc.lock is upgrade's for good)
    lock.write_bytes(b"")
    backdate(lock, 5)
    env = env_for(reg.path, MODELREG_LOCK_TIMEOUT="10")
    # 0.1.0: alias exited 4 after 10 s; log waited 55 s more for the empty gc.lock
    result = run_cli("alias", "m:v0", "best", env=env, timeout=15)
    assert result.returncode == 0, result.stderr
    result = run_cli("log", make_tree(reg.path.parent / "c", {"f": "c"}), "-n", "m", env=env, timeout=15)
    assert result.returncode == 0, result.stderr
    assert mr("gc", "--grace", "0").returncode == 0
    assert not os.path.lexists(lock)
    assert reg.fsck().ok


def test_a_dead_or_reused_holder_on_this_host_is_broken_and_recorded(reg, mr):
    lock = coll_lock(reg)
    # pid alive (this test) but started at another time: the pid was reused
    lock.write_text(json.dumps(holder(os.getpid(), pstart="1")))
    assert mr("config", "set", "gc.grace", "1h").returncode == 0
    assert not os.path.lexists(lock)
    lock.write_text(json.dumps(holder(dead_pid())))
    assert mr("config", "set", "gc.grace", "2h").returncode == 0
    assert not os.path.lexists(lock)
    assert mr("config", "get", "gc.grace").stdout == "2h\n"


def test_symlink_locks_are_understood_by_every_reader(reg, mr, monkeypatch):
    """The full-disk form of a lock: a symlink whose target names the holder."""
    from modelreg.locks import _process_start

    lock = coll_lock(reg)
    me = os.getpid()
    os.symlink(f"mrlock:{socket.gethostname()}:{me}:{_process_start(me)}:{int(time.time())}", lock)
    monkeypatch.setenv("MODELREG_LOCK_TIMEOUT", "0.3")
    assert_error(mr("config", "set", "gc.grace", "1h"), 4, f"pid {me} on {socket.gethostname()}")
    assert [r for r in reg.fsck().reclaimable if r.kind == "lock"] == []  # a live holder's lock is no leftover

    lock.unlink()
    os.symlink(f"mrlock:{socket.gethostname()}:{dead_pid()}::{int(time.time())}", lock)
    assert [r.kind for r in reg.fsck().reclaimable if r.kind == "lock"] == ["lock"]
    monkeypatch.setenv("MODELREG_LOCK_TIMEOUT", "10")
    assert mr("config", "set", "gc.grace", "1h").returncode == 0
    assert not os.path.lexists(lock)
    os.symlink(f"mrlock:{socket.gethostname()}:{dead_pid()}::{int(time.time())}", reg.gc_lock)
    assert mr("log", make_tree(reg.path.parent / "c", {"f": "c"}), "-n", "m").returncode == 0
    assert mr("gc", "--grace", "0").returncode == 0
    assert not os.path.lexists(reg.gc_lock)


def test_a_lock_is_published_whole_and_falls_back_to_a_symlink_on_a_full_disk(reg, monkeypatch):
    from modelreg import locks

    seen = []
    real_link = os.link

    def watching_link(src, dst, *args, **kwargs):
        if str(dst).endswith(".lock"):
            seen.append(json.loads(Path(src).read_bytes()))  # complete before it is visible
        return real_link(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "link", watching_link)
    reg.config_set("gc.grace", "1h")
    assert seen and seen[0]["pid"] == os.getpid()
    monkeypatch.undo()

    def full(fd, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(locks, "write_all", full)
    with reg._config_lock() as lock:
        assert os.path.islink(lock.path)
        assert locks.read_record(lock.path)["pid"] == os.getpid()
    assert not os.path.lexists(lock.path)
    assert list((reg.path / "tmp").iterdir()) == []  # no temp file left behind


STRACE = shutil.which("strace")


LOCK_FILE = re.compile(r"\.lock\b|\.break\b|/tmp/lock_|/writers/")


def _lock_syscalls(trace: Path, pid: int, registry: Path) -> list[tuple[str, int]]:
    """(syscall, ordinal within that syscall in `pid`) of each call on a lock of `registry`."""
    counts: dict[str, int] = {}
    picked = []
    for line in trace.read_text().splitlines():
        match = re.match(r"(\d+)\s+(\w+)\((.*)", line)
        if not match or int(match.group(1)) != pid:
            continue
        name, args = match.group(2), match.group(3)
        counts[name] = counts.get(name, 0) + 1
        if str(registry) in args and LOCK_FILE.search(args.replace(str(registry), "")):
            picked.append((name, counts[name]))
    return picked


@pytest.mark.skipif(STRACE is None, reason="needs strace")
@pytest.mark.parametrize("command", [("alias", "m:v0", "best"), ("gc", "--grace", "0")])
def test_a_kill_at_any_step_of_taking_a_lock_strands_nobody(reg, tmp_path, command):
    """SIGKILL at each system call that touches a lock; the next commands finish at once."""
    reg.rm("m:v1")  # garbage for gc
    template = tmp_path / "template"
    shutil.copytree(reg.path, template, symlinks=True)
    work = tmp_path / "attempt"
    env = env_for(work, PYTHONDONTWRITEBYTECODE="1", MODELREG_LOCK_TIMEOUT="10")
    argv = [sys.executable, "-m", "modelreg", *command]

    shutil.copytree(template, work, symlinks=True)
    trace = tmp_path / "trace"
    subprocess.run([STRACE, "-f", "-qq", "-y", "-o", str(trace), "-e",
                    "trace=openat,write,link,linkat,symlink,symlinkat,unlink,unlinkat", *argv],
                   env=env, capture_output=True, check=True, timeout=60)
    main_pid = int(trace.read_text().split(None, 1)[0])
    steps = _lock_syscalls(trace, main_pid, work)[:12]  # bounded: the suite stays fast
    assert steps, trace.read_text()[-2000:]

    killed = 0
    for name, nth in steps:
        shutil.rmtree(work)
        shutil.copytree(template, work, symlinks=True)
        proc = subprocess.run([STRACE, "-f", "-qq", "-o", "/dev/null", "-e",
                               f"inject={name}:signal=KILL:when={nth}", *argv],
                              env=env, capture_output=True, timeout=60)
        killed += proc.returncode in (-9, 137)
        for after in (("alias", "m:v0", "after"), ("log", tmp_path / "a", "-n", "other"), ("gc", "--grace", "0")):
            done = run_cli(*after, env=env, timeout=15)  # waiting 10 s for a dead holder fails here
            assert done.returncode == 0, (name, nth, after, done.stderr)
        result = Registry.open(work).fsck()
        assert result.ok, (name, nth, result.problems)
    assert killed >= len(steps) // 2, "the kills did not land"


# -- gc on a full disk ------------------------------------------------------------------


@pytest.fixture
def tiny_fs(tmp_path):
    """A 4 MiB tmpfs (needs root); skipped where it cannot be mounted."""
    if not mount_available():
        pytest.skip("mounting a tmpfs needs root on Linux")
    where = tmp_path / "tiny"
    where.mkdir()
    mount("-t", "tmpfs", "-o", "size=4m", "tmpfs", where)
    yield where
    umount(where)


def test_gc_works_on_a_full_disk_and_frees_the_space(tiny_fs, tmp_path, mr, monkeypatch):
    monkeypatch.setenv("MODELREG_DIR", str(tiny_fs))
    for n in range(3):
        src = make_tree(tmp_path / f"v{n}", {"weights": os.urandom(400_000)})
        assert mr("log", src, "-n", "m").returncode == 0
    assert mr("rm", "m:v0").returncode == 0
    assert mr("rm", "m:v1").returncode == 0
    filler = tiny_fs / "filler"
    with open(filler, "wb", buffering=0) as fh:  # unbuffered: closing it must not write again
        try:
            while True:
                fh.write(b"\0" * 65536)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    # the disk is full: a log fails with the hint to run gc...
    assert_error(mr("log", make_tree(tmp_path / "new", {"w": os.urandom(300_000)}), "-n", "m"), 1, "gc")
    # ...and gc can do it
    result = mr("gc", "--grace", "0", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["blobs"] == 2
    assert not os.path.lexists(tiny_fs / ".modelreg" / "locks" / "gc-2.lock")
    assert os.statvfs(tiny_fs).f_bavail * os.statvfs(tiny_fs).f_frsize >= 700_000
    assert mr("log", make_tree(tmp_path / "new2", {"w": os.urandom(100_000)}), "-n", "m").returncode == 0
    check = mr("fsck", "--json")
    assert check.returncode == 0, check.stdout
    assert json.loads(check.stdout)["reclaimable"] == []


def test_gc_takes_its_lock_when_no_lock_file_can_be_filled(reg, monkeypatch):
    from modelreg import locks

    def full(fd, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(locks, "write_all", full)
    reg.rm("m:v0")
    assert reg.gc(grace=0).blobs == 1
    assert not os.path.lexists(reg.path / "locks" / "gc.lock")


# -- temporary files are judged by their writer -----------------------------------------


def test_temp_names_carry_host_and_pid_and_parse_back():
    from modelreg.util import host_tag, temp_name, temp_owner

    assert temp_owner(temp_name("blob")) == (host_tag(), os.getpid())
    assert temp_owner(temp_name("rec")) == (host_tag(), os.getpid())
    for host in ("node-1.example.com", "a-b-c", "x.y", "7-11"):
        assert temp_owner(f"blob_{host}_4242_0a1b2c3d4e5f-17") == (host, 4242)
        assert temp_owner(f"rec_{host}_4242_0a1b2c3d4e5f") == (host, 4242)
    assert temp_owner("blob-123-abcdef012345-7") == (host_tag(), 123)  # 0.1.0's names
    assert temp_owner("rec-123-abcdef012345") == (host_tag(), 123)
    assert temp_owner("whatever") is None
    assert re.fullmatch(r"[A-Za-z0-9._-]+", temp_name("statcache"))  # safe as a file name and an S3 key


def _temp_of_a_dead_writer(reg: Registry) -> Path:
    """A blob temp file made by the store's own naming in a process that then died."""
    code = ("import sys; from pathlib import Path; from modelreg.store import Store; "
            "name, fd = Store(Path(sys.argv[1]))._new_temp(1); print(name)")
    out = subprocess.run([sys.executable, "-c", code, str(reg.path)], capture_output=True, text=True, check=True)
    return Path(out.stdout.strip())


def test_gc_grace_0_removes_temp_files_of_dead_or_unknown_writers_and_fsck_lists_them(reg, mr):
    from modelreg.util import host_tag

    tmp = reg.path / "tmp"
    gone = dead_pid()
    dead = [
        _temp_of_a_dead_writer(reg),
        tmp / f"blob-{gone}-abcdef012345-3",  # 0.1.0 blob name
        tmp / f"rec-{gone}-abcdef012345",  # 0.1.0 record name
        tmp / f"rec_{host_tag()}_{gone}_abcdef012345",
        tmp / "config.toml",  # unknown owner (0.1.0's init wrote this name)
    ]
    live = tmp / f"rec_{host_tag()}_{os.getpid()}_abcdef012345"
    elsewhere = tmp / f"blob_other-host.example.com_{os.getpid()}_abcdef012345-0"
    for path in [*dead[1:], live, elsewhere]:
        path.write_bytes(b"x")

    listed = json.loads(mr("fsck", "--json").stdout)
    tmp_listed = sorted(r["object"] for r in listed["reclaimable"] if r["kind"] == "tmp")
    assert tmp_listed == sorted(f"tmp/{p.name}" for p in dead)
    assert listed["ok"]

    assert json.loads(mr("gc", "--grace", "1h", "--json").stdout)["tmp"] == 0  # all young
    result = json.loads(mr("gc", "--grace", "0", "--json").stdout)
    # another host's file: nobody here can ask its writer, so the grace period alone decides
    assert result["tmp"] == len(dead) + 1
    assert sorted(p.name for p in tmp.iterdir()) == [live.name]
    assert reg.fsck().reclaimable == ()


# -- config writes ----------------------------------------------------------------------


def test_parallel_config_sets_of_different_keys_both_land(reg):
    env = env_for(reg.path)
    for round_ in range(20):
        grace, project = f"{round_ + 1}h", f"p{round_}"
        procs = [spawn_cli("config", "set", "gc.grace", grace, env=env),
                 spawn_cli("config", "set", "defaults.project", project, env=env)]
        for proc in procs:
            out, err = proc.communicate(timeout=60)
            assert proc.returncode == 0, err
        config = Registry.open(reg.path).config
        assert (config.get("gc.grace"), config.get("defaults.project")) == (grace, project), round_


def test_config_set_rereads_the_file_and_a_stale_config_lock_does_not_block(reg, mr):
    other = Registry.open(reg.path)
    other.config_set("gc.grace", "2h")
    reg.config_set("pull.mode", "copy")  # reg loaded its config before other's change
    config = Registry.open(reg.path).config
    assert (config.get("gc.grace"), config.get("pull.mode")) == ("2h", "copy")
    lock = reg.path / "locks" / "config.lock"
    lock.write_text(json.dumps(holder(dead_pid())))
    assert [r.message for r in reg.fsck().reclaimable if r.kind == "lock"][0].startswith("stale config lock")
    assert mr("config", "unset", "pull.mode").returncode == 0
    assert mr("config", "get", "pull.mode").stdout.strip() == "auto"
    assert_error(mr("config", "set", "no.such", "1"), 2)
    assert not os.path.lexists(lock)


# -- Foo and foo ------------------------------------------------------------------------


def test_parallel_logs_of_names_differing_by_case_create_one(reg, tmp_path):
    env = env_for(reg.path)
    src = make_tree(tmp_path / "src", {"f": "x"})
    for n in range(20):
        procs = [spawn_cli("log", src, "-n", f"Foo{n}", env=env), spawn_cli("log", src, "-n", f"foo{n}", env=env)]
        codes = sorted(p.wait(timeout=60) for p in procs)
        for p in procs:
            p.communicate()
        assert codes == [0, 4], (n, codes)
    names = {c.name.casefold() for c in Registry.open(reg.path).collections()}
    assert len(names) == 21  # m and one of each pair
    assert len(Registry.open(reg.path).collections()) == 21
    assert reg.fsck().ok


def test_a_name_claim_of_a_dead_creator_does_not_block_and_old_collections_still_count(reg, mr, tmp_path):
    claims = reg.path / "names" / "local" / "default"
    src = make_tree(tmp_path / "src", {"f": "x"})
    # a creator of "Bar" killed after claiming the name, before the collection's first record
    (claims / "bar.json").write_text(json.dumps({"format": 2, "name": "Bar", "kind": "artifact",
                                                 "created": "2020-01-01T00:00:00Z"}))
    assert mr("log", src, "-n", "bar").returncode == 0
    assert_error(mr("log", src, "-n", "BAR"), 4, "'bar' already exists")
    assert_error(mr("link", "bar:v0", "Bar"), 4)
    assert_error(mr("log", src, "-n", "M"), 4, "'m' already exists")
    with pytest.raises(Conflict):
        reg.log(src, "bAr")
    assert [c.name for c in reg.collections()] == ["bar", "m"]
    assert mr("ls", "--plain").stdout.count("\n") == 2
