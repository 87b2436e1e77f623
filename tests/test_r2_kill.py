"""Issue 9 "Reliability II": SIGKILL at single system calls of `log`, `alias`, `gc`, `link`.

Each command runs as a real process from a pristine copy of one registry and is killed on
entry to one of its write-class system calls (tests/killing.py: strace fault injection),
walking every call of each group where there are few and a stride with both ends where
there are many. After every kill, whatever the point:

(a) `modelreg fsck --json` says `ok: true` (leftovers are only reclaimable);
(b) the next write command, a real process with a lock timeout of 10 s, exits 0 within
    5 s: no dead holder makes anyone wait;
(c) every version that existed is there with its digest; a killed `log` left no new
    version or one whole version; aliases stand where the old or the new state puts them;
    no number or content is given twice;
(d) a killed `gc --grace 0` lost no blob of a live version (each still pulls, byte-exact).

Each test runs all its points and then fails once, listing every (syscall, N) that broke
the contract, so one run shows the whole picture. Atomicity of a multi-alias change is
asserted too: after `alias art:v1 a b c` is killed the aliases are all at their old or
all at their new places (format 2; tests/test_format2_kill.py checks the events as well).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

import killing
from conftest import make_tree
from modelreg import Error, NotFound, Registry
from reliability_util import env_for

SKIP = killing.strace_problem()
pytestmark = pytest.mark.skipif(SKIP is not None, reason=SKIP or "")

# A follow-up waits at most this long; the lock timeout is longer, so a follow-up stuck
# behind a dead holder shows as a timeout here, not as its own exit 4.
FOLLOW_UP_SECONDS = 5
LOCK_TIMEOUT = 10

A = {"model.bin": b"A" * 3000, "config.json": '{"a": 1}\n'}
B = {"model.bin": b"B" * 3000, "config.json": '{"b": 2}\n'}
C = {"weights.bin": b"C" * 2000, "config.json": '{"c": 3}\n', "notes.txt": "third\n"}
OLD = {"config.json": '{"a": 1}\n', "junk.bin": b"J" * 5000}  # shares a blob with art:v0

# Per (command, group), at most this many kill points; groups past it get a stride.
# A kill on entry to fsync or to an open leaves what a kill at the call before leaves,
# so those groups get fewer points than write, publish and unlink.
CAPS = {"write": 24, "publish": 24, "unlink": 24, "open": 4, "sync": 3}


# -- the world every kill starts from ----------------------------------------------------


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A pristine registry: art:v0 (A, alias a), art:v1 (B, alias best), old:v0 deleted
    (its own blob is garbage, its other blob shared with art:v0), and temp files of a dead
    writer; plus the source trees the commands log."""
    base = tmp_path_factory.mktemp("kill-world")
    src = {name: make_tree(base / "src" / name, files) for name, files in
           (("a", A), ("b", B), ("c", C), ("old", OLD))}
    reg = Registry.init(base / "template")
    reg.log(src["a"], "art", aliases=["a"])
    reg.log(src["b"], "art", aliases=["best"])
    reg.log(src["old"], "old")
    reg.rm("old:v0")
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = time.time() - 7200
    for name in (f"rec-{dead.pid}-0123456789ab", f"blob-{dead.pid}-0123456789ab-0"):
        path = reg.path / "tmp" / name
        path.write_bytes(b"left by a writer killed two hours ago")
        os.utime(path, (stale, stale))
    before = {v.version: v.digest for v in reg.versions("art")}
    # the digest a log of C gets, learnt from a registry of its own
    c_digest = Registry.init(base / "probe").log(src["c"], "art").digest
    # core.fsync=false is as safe against a killed process (SPEC §5) and several times
    # faster here; the sync group runs on a copy with fsync on, where there are fsyncs
    synced = base / "template-fsync" / ".modelreg"
    shutil.copytree(reg.path, synced, symlinks=True)
    Registry.open(synced).config_set("core.fsync", "true")
    reg.config_set("core.fsync", "false")
    # Caches judged by timestamps must behave alike in every run, so that the calls of a
    # trace recur in the kill runs: the index is skipped within 0.1 s of a change of its
    # directory (so the registry gets old mtimes), the stat cache skips source files
    # changed within the last second or so (their ctimes cannot be set: wait that out).
    for path in (reg.path, synced):
        age(path, time.time() - 3600)
    wait_until_trusted(base / "src")
    return {"template": reg.path, "template-fsync": synced, "src": src, "before": before, "c_digest": c_digest}


def wait_until_trusted(root: Path) -> None:
    from modelreg.statcache import trusted

    files = [p for p in root.rglob("*") if p.is_file()]
    while not all(trusted(p.stat(), time.time_ns()) for p in files):
        time.sleep(0.1)


def age(root: Path, when: float) -> None:
    for dirpath, dirs, files in os.walk(root, topdown=False):
        for name in files:
            path = os.path.join(dirpath, name)
            if os.stat(path).st_mtime > when:
                os.utime(path, (when, when))
        os.utime(dirpath, (when, when))


@pytest.fixture
def bench(world, tmp_path, modelreg_bin, mr):
    return Bench(world, tmp_path, modelreg_bin, mr)


class Bench:
    """Restores the registry, kills a command at a call, runs follow-ups, collects failures."""

    def __init__(self, world, tmp_path: Path, modelreg_bin: str, mr) -> None:
        self.world = world
        self.src = world["src"]
        self.root = tmp_path / "kill" / ".modelreg"
        self.bin = modelreg_bin
        self.mr = mr
        # a fixed hash seed keeps set orders, and so the order of calls, alike in every run
        self.env = env_for(self.root, MODELREG_LOCK_TIMEOUT=LOCK_TIMEOUT, PYTHONHASHSEED=0)
        self.cwd = tmp_path
        self.scratch = tmp_path / "scratch"
        self.failures: list[str] = []
        self.killed = 0
        self.synced = False  # start from the copy with core.fsync on

    # commands -----------------------------------------------------------------------

    def cli(self, *args) -> list[str]:
        return [self.bin, *map(str, args)]

    def lib(self, code: str) -> list[str]:
        """The library in a process of its own: `reg` is the registry, `src` the sources."""
        prelude = ("import sys, modelreg; reg = modelreg.Registry.open(sys.argv[1]); "
                   "src = dict(a.split('=', 1) for a in sys.argv[2:]); ")
        return [sys.executable, "-c", prelude + code, str(self.root),
                *(f"{k}={v}" for k, v in self.src.items())]

    # one attempt --------------------------------------------------------------------

    def restore(self) -> None:
        killing.restore(self.world["template-fsync" if self.synced else "template"], self.root)

    def trace(self, argv: list[str]) -> list[killing.Call]:
        self.restore()
        return killing.trace(argv, env=self.env, cwd=self.cwd, out=self.cwd / "trace.txt")

    def attempt(self, argv, call: killing.Call, follow_ups, check_killed, check_after) -> None:
        """Kill `argv` at `call` and hold the registry to the contract (a)-(d)."""
        self.restore()
        kill = killing.kill_at(argv, call, env=self.env, cwd=self.cwd, out=self.cwd / "kill.txt")
        proc = kill.proc
        if kill.killed:
            self.killed += 1
            where = kill.at.label()
        else:
            where = f"{call.label()} (not reached: the command completed)"
        if not kill.killed and proc.returncode != 0:
            self.fail(where, f"the command, not killed, failed ({proc.returncode}): {proc.stderr.strip()[-300:]}")
            return
        problems = self.fsck_problems()
        if problems:
            self.fail(where, f"fsck after the kill: {problems}")
        self.check(where, "after the kill", check_killed)
        for follow_up in follow_ups:
            if not self.follow(where, follow_up):
                return
        problems = self.fsck_problems()
        if problems:
            self.fail(where, f"fsck after the follow-up: {problems}")
        self.check(where, "after the follow-up", check_after)

    def follow(self, where: str, argv: list[str]) -> bool:
        started = time.monotonic()
        try:
            proc = subprocess.run(argv, env=self.env, cwd=self.cwd, stdin=subprocess.DEVNULL,
                                  capture_output=True, text=True, timeout=FOLLOW_UP_SECONDS)
        except subprocess.TimeoutExpired:
            self.fail(where, f"follow-up {self.short(argv)} still waiting after {FOLLOW_UP_SECONDS} s "
                             f"(a dead holder blocks it)")
            return False
        if proc.returncode != 0:
            self.fail(where, f"follow-up {self.short(argv)} exit {proc.returncode} after "
                             f"{time.monotonic() - started:.1f} s: {proc.stderr.strip()[-300:]}")
            return False
        return True

    def fsck_problems(self) -> list | None:
        return self.fsck()[0]

    def fsck(self) -> tuple[list | None, dict]:
        """(problems, or None when `fsck --json` says ok; the JSON document)."""
        result = self.mr("--root", self.root, "fsck", "--json")
        try:
            doc = json.loads(result.stdout)
        except ValueError:
            return [f"exit {result.returncode}, no JSON: {result.stderr.strip()[-300:]}"], {}
        if result.returncode != 0 or doc.get("ok") is not True:
            return [f"{p['kind']} {p['object']}: {p['message']}" for p in doc.get("problems", [])] or \
                [f"exit {result.returncode}"], doc
        return None, doc

    def check(self, where: str, when: str, check) -> None:
        reg = Registry.open(self.root)
        try:
            self.unchanged(reg)
            if check is not None:
                check(reg)
        except (AssertionError, Error) as exc:  # Error: a pull or a listing refused
            self.fail(where, f"{when}: {type(exc).__name__}: {exc}")

    def unchanged(self, reg: Registry) -> None:
        """Every version of the template is still there with its digest; no content twice."""
        now = {v.version: v.digest for v in reg.versions("art")}
        for number, digest in self.world["before"].items():
            assert now.get(number) == digest, f"art:v{number} is {now.get(number)}, was {digest}"
        assert len(set(now.values())) == len(now), f"one content in two versions of art: {now}"

    def fail(self, where: str, message: str) -> None:
        self.failures.append(f"{where}\n      -> {message}")

    def short(self, argv: list[str]) -> str:
        if argv[:2] == [sys.executable, "-c"]:
            return "(library) " + argv[2].split("; ")[-1][:60]
        return "modelreg " + " ".join(Path(a).name if "/" in a else a for a in argv[1:])

    def report(self, what: str, tried: int) -> None:
        broken = len({line.split("\n")[0] for line in self.failures})
        print(f"{what}: {tried} kill points, {self.killed} killed, {broken} broke the contract")
        for line in self.failures:
            print("  FAIL " + line)
        assert self.killed, f"{what}: no point killed the command (the trace did not match the runs)"
        if self.failures:
            pytest.fail(f"{what}: {broken} of {tried} kill points broke the contract:\n  "
                        + "\n  ".join(self.failures), pytrace=False)


# -- what each command must leave --------------------------------------------------------


def aliases_of(reg: Registry, name: str) -> dict[str, int]:
    return {a: v.version for v in reg.versions(name) for a in v.aliases if a != "latest"}


def log_killed(c_digest):
    def check(reg: Registry) -> None:
        now = {v.version: v.digest for v in reg.versions("art")}
        assert sorted(now) in ([0, 1], [0, 1, 2]), f"art has versions {sorted(now)}"
        if 2 in now:
            assert now[2] == c_digest, "art:v2 is not the content that was logged"
        aliases = aliases_of(reg, "art")
        assert aliases.get("a") == 0, aliases
        assert aliases.get("best") in ((1, 2) if 2 in now else (1,)), aliases
    return check


def log_done(c_digest):
    def check(reg: Registry) -> None:
        now = {v.version: v.digest for v in reg.versions("art")}
        assert sorted(now) == [0, 1, 2] and now[2] == c_digest, f"after logging C again art is {now}: not one v2 of C"
        assert aliases_of(reg, "art") == {"a": 0, "best": 2}, aliases_of(reg, "art")
    return check


def alias_killed(reg: Registry) -> None:
    aliases = aliases_of(reg, "art")
    # format 2: the three aliases change in one record, all or none
    assert aliases in ({"a": 0, "best": 1}, {"a": 1, "b": 1, "c": 1, "best": 1}), aliases


def alias_done(reg: Registry) -> None:
    assert aliases_of(reg, "art") == {"a": 1, "b": 1, "c": 1, "best": 1}, aliases_of(reg, "art")


def link_killed(reg: Registry) -> None:
    try:
        links = reg.versions("reg")
    except NotFound:
        return  # killed before the registered model was made
    assert [(v.version, v.source) for v in links] in ([], [(0, "art:v0")]), [(v.version, v.source) for v in links]
    assert aliases_of(reg, "reg") in ({}, {"staging": 0}), aliases_of(reg, "reg")


def link_done(reg: Registry) -> None:
    links = reg.versions("reg")
    assert [(v.version, v.source) for v in links] == [(0, "art:v0")], [(v.version, v.source) for v in links]
    assert aliases_of(reg, "reg") == {"staging": 0}, aliases_of(reg, "reg")


def live_content_intact(out: Path):
    """(d): every live version still pulls, byte for byte."""
    def check(reg: Registry) -> None:
        for number, files in ((0, A), (1, B)):
            target = out / f"v{number}-{time.monotonic_ns()}"
            reg.pull(f"art:v{number}", target, mode="copy")
            for rel, content in files.items():
                data = content.encode() if isinstance(content, str) else content
                assert (target / rel).read_bytes() == data, f"art:v{number} {rel} changed or lost"
    return check


def gc_done(c_digest, out):
    intact = live_content_intact(out)

    def check(reg: Registry) -> None:
        intact(reg)
        assert {v.version: v.digest for v in reg.versions("art")}[2] == c_digest
    return check


# -- the sweeps --------------------------------------------------------------------------


def plan(bench: Bench, command: str):
    """(killed argv, follow-ups, check after the kill, check after the follow-ups)."""
    src = bench.src
    c_digest = bench.world["c_digest"]
    if command == "log":
        argv = bench.cli("log", src["c"], "-n", "art", "-a", "best")
        return argv, [argv], log_killed(c_digest), log_done(c_digest)
    if command == "log-library":
        argv = bench.lib("reg.log(src['c'], 'art', aliases=['best'])")
        return argv, [argv], log_killed(c_digest), log_done(c_digest)
    if command == "alias":
        argv = bench.cli("alias", "art:v1", "a", "b", "c")
        return argv, [argv], alias_killed, alias_done
    if command == "gc":
        # writers must not wait for a dead gc, nor the next gc for it
        log = bench.cli("log", src["c"], "-n", "art")
        return (bench.cli("gc", "--grace", "0"), [log, bench.cli("gc", "--grace", "0")],
                live_content_intact(bench.scratch), gc_done(c_digest, bench.scratch))
    if command == "link":
        argv = bench.cli("link", "art:v0", "reg", "-a", "staging")
        return argv, [argv], link_killed, link_done
    raise AssertionError(command)





@pytest.mark.parametrize("group", list(killing.GROUPS))
@pytest.mark.parametrize("command", ["log", "alias", "gc", "link", "log-library"])
def test_kill_at_every_write_class_call(bench, command, group):
    if command == "log-library" and group != "write":
        pytest.skip("the library's log makes the CLI's calls; its writes show that it keeps the contract too")
    bench.synced = group == "sync"
    argv, follow_ups, check_killed, check_after = plan(bench, command)
    calls = bench.trace(argv)
    # calls on lock files are test_kill_while_a_lock_is_created's, with follow-ups that
    # contend for each lock
    on_locks = {c for part in LOCK_PARTS for c in lock_calls(calls, part)}
    chosen = killing.points([c for c in calls if c not in on_locks], group, CAPS[group])
    if not chosen:
        pytest.skip(f"{command} makes no {group} call here")
    for call in chosen:
        bench.attempt(argv, call, follow_ups, check_killed, check_after)
    bench.report(f"{command} / {group}", len(chosen))


# -- lock creation -----------------------------------------------------------------------

LOCK_CASES = {
    # name: (killed command, lock path part, follow-ups that must get past the dead holder)
    # (format 2 keeps no collection lock: a collection changes by one create-only record)
    "gc-lock-by-gc": ("gc", "gc-2.lock", ["log", "gc"]),
    "writer-entry-by-log": ("log", "locks/writers/", ["gc"]),
}


LOCK_PARTS = ("gc-2.lock", "locks/writers/")


def lock_command(bench: Bench, name: str) -> list[str]:
    src = bench.src
    return {
        "alias": bench.cli("alias", "art:v1", "a", "b", "c"),
        "alias-library": bench.lib("reg.alias('art:v1', ['a', 'b', 'c'])"),
        "log": bench.cli("log", src["c"], "-n", "art", "-a", "best"),
        "link": bench.cli("link", "art:v0", "reg", "-a", "staging"),
        "gc": bench.cli("gc", "--grace", "0"),
    }[name]


@pytest.mark.parametrize("case", LOCK_CASES)
def test_kill_while_a_lock_is_created(bench, case):
    """Every call that touches the lock file (its open, write, link or rename, and its
    removal): killed there, the lock's next taker goes on within seconds."""
    command, part, follow = LOCK_CASES[case]
    argv = lock_command(bench, command)
    calls = lock_calls(bench.trace(argv), part)
    assert calls, f"{command} touched no file named like {part}"
    for call in calls:
        bench.attempt(argv, call, [lock_command(bench, f) for f in follow], None, None)
    bench.report(f"lock {case}", len(calls))


def lock_calls(calls: list[killing.Call], part: str) -> list[killing.Call]:
    """The calls that create, fill, publish or remove a lock file whose path holds `part`,
    including the write of a temp file later linked or renamed onto the lock."""
    chosen = []
    for i, call in enumerate(calls):
        if part in call.text:
            chosen.append(call)
            if call.group == "publish":  # a holder written to a temp file first
                source = call.text.split('"')[1] if '"' in call.text else ""
                chosen.extend(c for c in calls[:i] if source and source in c.text and c not in chosen)
    return sorted(set(chosen), key=calls.index)


# -- temp files of dead writers ----------------------------------------------------------


IN_TMP = re.compile(r'^\S+ [0-9]*[<"]tmp/')  # a call's label whose first file is in tmp/


def test_temp_files_of_a_killed_log_are_reclaimable_and_reclaimed(bench):
    """Killed while it writes into tmp/, `log` leaves temp files of a dead process: fsck
    lists every one as reclaimable and `gc --grace 0` removes them all (with the
    template's two-hour-old temp files of another dead writer)."""
    argv = bench.cli("log", bench.src["c"], "-n", "art", "-a", "best")
    calls = [c for c in bench.trace(argv) if c.group in ("write", "publish") and IN_TMP.search(c.label())]
    calls = killing.points(calls, "write", 6) + killing.points(calls, "publish", 3)
    assert calls, "log wrote nothing into tmp/"
    for call in calls:
        bench.restore()
        kill = killing.kill_at(argv, call, env=bench.env, cwd=bench.cwd, out=bench.cwd / "kill.txt")
        where = kill.at.label() if kill.killed else f"{call.label()} (not reached)"
        if kill.killed:
            bench.killed += 1
        problems, doc = bench.fsck()
        if problems:
            bench.fail(where, f"fsck: {problems}")
            continue
        left = sorted(f"tmp/{p.name}" for p in (bench.root / "tmp").iterdir())
        listed = {r["object"] for r in doc.get("reclaimable", [])}
        unlisted = [p for p in left if p not in listed]
        if unlisted:
            bench.fail(where, f"fsck does not list these temp files of dead writers as reclaimable: {unlisted}")
        if bench.follow(where, bench.cli("gc", "--grace", "0")):
            still = sorted(p.name for p in (bench.root / "tmp").iterdir())
            if still:
                bench.fail(where, f"gc --grace 0 left temp files of dead writers in tmp/: {still}")
    bench.report("temp files of a killed log", len(calls))
