#!/usr/bin/env python3
"""Stress: writers, readers and a gc loop against one registry; then count what was lost.

    /work/venv/bin/python bench/stress.py --writers 8 --seconds 30
    /work/venv/bin/python bench/stress.py --writers 4 --readers 4 --seconds 10 --no-fsync --keep

For T seconds, every process works on one registry (a fresh one in a temporary
directory unless `--root`):

- writers (`--writers N`) log new content into one shared artifact (so they fight over
  version numbers), log a few fixed contents (so identical logs must share a version),
  move their own alias with a compare-and-swap and a shared one without, link their
  versions into one registered model (and link some again, which must return the same
  link), and log-then-delete scratch versions whose blobs the next log reuses (so gc
  always has garbage to race with). Every `--cli-every`-th log runs the real CLI.
- readers (`--readers M`) list, show and pull (copy, verified) what exists.
- one gc loop runs `gc --grace 0` back to back.

Each process records every result it got in a ledger. At the end the ledgers are
checked against the registry: no version lost (a ref handed out that is missing or
holds other content), none duplicated (one number handed to two logs), identical
content always one version, every link where it was made, every alias where its writer
left it; then `fsck` gives its verdict. Exit status 0 only if all of that holds.

Kill mode (`--kill`, SPEC §5 "killed at any point"):

    /work/venv/bin/python bench/stress.py --kill --writers 6 --seconds 30

Each writer is its own process group (`start_new_session`), so a killer thread can
SIGKILL one writer, with any CLI child it runs, at a random moment (every `--kill-every`
seconds on average, at least one writer always left), while the others, the readers and
gc go on; a new writer takes every killed one's place. A writer's ledger line is written
after its operation returns, so a killed writer's last operation is unknown: it may have
committed a version, moved its alias or made a link nobody recorded. The check therefore
allows one unrecorded version per kill, takes a killed writer's alias as unknown, and
counts an identical content made new at most (not exactly) once; everything else holds
as without kills: 0 lost (every version whose `log` returned is there, whole), 0
duplicated (no number handed out twice, no two live versions of one artifact with the
same content), `fsck` clean.

Waiting for a dead holder is measured where it happens, not guessed from durations:
every writer and the gc loop time each lock wait (`FileLock.acquire`, the writer's
wait for `gc.lock`, gc's wait for registered writers) and note each holder record they
read while waiting (its pid, or `?` when the lock file held no readable record). After
the run, a wait counts as waiting for a dead holder from the later of its start and the
kill of a holder it saw (pids of killed writers and their CLI children are known), or,
for a record that stayed unreadable for more than 1 s (a live holder fills its lock
right after creating it), from the first time it saw it; until the wait ended (acquired,
broken, or timed out) or that holder was no longer seen, whichever came first. The verdict needs every such wait to be at most 2 s. As a check on the
measurement, the slowest writer operations are reported too.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path

DEDUP_CONTENTS = 3
# Kill mode: the longest a command may wait for a holder that is dead (issue 9).
DEAD_WAIT_LIMIT = 2.0
# A wait shorter than this is not worth a ledger line.
WAIT_NOTED = 0.05
# A lock record unreadable for longer than this is taken for a dead creator's: a live one
# fills it right after creating it, though on a loaded machine it may be descheduled in
# between for a good fraction of a second. Below DEAD_WAIT_LIMIT, so no long wait escapes.
UNREADABLE_DEAD = 1.0


def ledger(work: Path, role: str, ident: int):
    return open(work / f"ledger-{role}-{ident}.jsonl", "a", buffering=1)


def write_tree(directory: Path, files: dict[str, bytes]) -> Path:
    if directory.exists():
        shutil.rmtree(directory)
    for rel, data in files.items():
        path = directory / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return directory


def unique_content(writer: int, n: int, rng: random.Random) -> dict[str, bytes]:
    body = f"writer {writer} op {n}\n".encode() * rng.randint(1, 2000)
    return {"data.txt": body, "common/shared.bin": b"shared by every version\n" * 100}


# -- roles -------------------------------------------------------------------------------


def run_writer(args, ident: int) -> None:
    from modelreg import Registry
    from modelreg.errors import Error

    rng = random.Random(ident * 7919 + 1)
    reg = Registry.open(args.root)
    scratch = Path(args.work) / f"w{ident}"
    out = ledger(Path(args.work), "writer", ident)
    if args.kill:
        watch_lock_waits(ledger(Path(args.work), "waits", ident), args.work, ident)
    mine: list[int] = []  # versions of `shared` this writer logged
    linked: dict[int, str] = {}
    alias_at: int | None = None
    n = 0
    while time.time() < args.until:
        n += 1
        op = rng.choices(["log", "dedup", "alias", "hot", "link", "relink", "scratch"],
                         [40, 10, 15, 5, 15, 5, 10])[0]
        record = {"op": op, "writer": ident, "n": n, "t0": time.time()}
        try:
            if op == "log" or not mine:
                record["op"] = "log"
                src = write_tree(scratch / "src", unique_content(ident, n, rng))
                if args.cli_every and n % args.cli_every == 0:
                    record["via"] = "cli"
                    result = cli_log(args.root, src, "shared")
                else:
                    result = reg.log(src, "shared").to_json()
                record.update(ref=result["ref"], version=result["version"], digest=result["digest"], new=result["new"])
                mine.append(result["version"])
            elif op == "dedup":
                k = rng.randrange(DEDUP_CONTENTS)
                src = write_tree(scratch / "dedup", {"fixed.txt": f"fixed content {k}\n".encode() * 500})
                result = reg.log(src, "dedup")
                record.update(content=k, ref=result.ref, version=result.version, digest=result.digest, new=result.new)
            elif op == "alias":
                target = rng.choice(mine)
                expect = "none" if alias_at is None else f"v{alias_at}"
                reg.alias(f"shared:v{target}", [f"w{ident}"], expect=expect)
                alias_at = target
                record.update(alias=f"w{ident}", version=target)
            elif op == "hot":
                target = rng.choice(mine)
                reg.alias(f"shared:v{target}", ["hot"])
                record.update(alias="hot", version=target)
            elif op == "link":
                candidates = [v for v in mine if v not in linked]
                if not candidates:
                    continue
                target = rng.choice(candidates)
                result = reg.link(f"shared:v{target}", "reg")
                linked[target] = result.ref
                record.update(source=target, ref=result.ref, new=result.new)
            elif op == "relink":
                if not linked:
                    continue
                target = rng.choice(list(linked))
                result = reg.link(f"shared:v{target}", "reg")
                record.update(source=target, ref=result.ref, new=result.new, expected=linked[target])
            elif op == "scratch":
                # Two alternating contents: each log reuses blobs the previous rm made garbage.
                src = write_tree(scratch / "scratch", {"s.bin": f"scratch {ident} {n % 2}\n".encode() * 3000})
                result = reg.log(src, f"scratch-{ident}")
                reg.rm(result.ref)
                record.update(ref=result.ref)
        except Error as exc:
            record.update(error=f"{type(exc).__name__}: {exc}")
        record["t1"] = time.time()
        out.write(json.dumps(record) + "\n")
    out.close()


def cli_log(root: str, src: Path, name: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELREG_")}
    env["MODELREG_DIR"] = root
    proc = subprocess.Popen([sys.executable, "-m", "modelreg", "log", str(src), "-n", name, "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    if CHILD_PIDS is not None:  # kill mode: a kill of this writer kills the child too
        CHILD_PIDS.write(f"{proc.pid}\n")
        CHILD_PIDS.flush()
    stdout, stderr = proc.communicate()
    proc.stdout, proc.stderr = stdout, stderr
    if proc.returncode != 0:
        from modelreg.errors import Error

        raise Error(f"cli exit {proc.returncode}: {proc.stderr.strip()}")
    return json.loads(proc.stdout)


CHILD_PIDS = None  # kill mode: the writer's file of CLI child pids


def watch_lock_waits(out, work: str, ident: int) -> None:
    """Kill mode: note every lock wait longer than WAIT_NOTED with the holders read meanwhile.

    Wraps the library's lock functions in this process only; without them (another
    lock implementation) the waits go unmeasured and the report says so.
    """
    global CHILD_PIDS
    CHILD_PIDS = open(Path(work) / f"children-{ident}.txt", "a")
    try:
        from modelreg import locks, maintenance
        targets = [(locks.FileLock, "acquire", "lock"), (locks.WriterRegistration, "__enter__", "gc.lock"),
                   (maintenance._Collector, "drain_writers", "writers")]
        original_read = locks.read_record
    except (ImportError, AttributeError):
        return
    waiting: list[dict | None] = [None]  # holder -> [first seen, last seen], while a wait runs

    def read_record(path):
        record = original_read(path)
        seen = waiting[0]
        if seen is not None and record is not None:
            holder = "?" if "unreadable_since" in record else str(record.get("pid", "?"))
            now = time.time()
            seen.setdefault(holder, [now, now])[1] = now
        return record

    def timed(function, what):
        def wrapper(*a, **kw):
            if waiting[0] is not None:  # nested: the outer wait notes it
                return function(*a, **kw)
            waiting[0] = {}
            start, error = time.time(), None
            try:
                return function(*a, **kw)
            except BaseException as exc:
                error = type(exc).__name__
                raise
            finally:
                end, seen, waiting[0] = time.time(), waiting[0], None
                if end - start >= WAIT_NOTED and seen:
                    out.write(json.dumps({"what": what, "start": start, "end": end, "holders": seen,
                                          "error": error}) + "\n")
        return wrapper

    locks.read_record = read_record
    if hasattr(maintenance, "read_record"):
        maintenance.read_record = read_record
    for owner, name, what in targets:
        if hasattr(owner, name):
            setattr(owner, name, timed(getattr(owner, name), what))
    out.write(json.dumps({"watching": True}) + "\n")


def run_reader(args, ident: int) -> None:
    from modelreg import Registry
    from modelreg.errors import Error

    rng = random.Random(ident * 104729 + 3)
    reg = Registry.open(args.root)
    out = ledger(Path(args.work), "reader", ident)
    target = Path(args.work) / f"r{ident}"
    while time.time() < args.until:
        op = rng.choice(["ls", "versions", "show", "pull", "pull-link"])
        record = {"op": op}
        try:
            if op == "ls":
                reg.collections()
            else:
                name = "reg" if op == "pull-link" else rng.choice(["shared", "dedup", "reg"])
                try:
                    versions = reg.versions(name)
                except Error:
                    versions = []  # not created yet
                if op != "versions" and versions:
                    ref = rng.choice(versions).ref
                    record["ref"] = ref
                    if op == "show":
                        reg.show(ref)
                    else:
                        shutil.rmtree(target, ignore_errors=True)
                        reg.pull(ref, target, mode="copy")
        except Error as exc:
            record["error"] = f"{type(exc).__name__}: {exc}"
        out.write(json.dumps(record) + "\n")
    out.close()


def run_gc(args, ident: int) -> None:
    from modelreg import Registry
    from modelreg.errors import Error

    reg = Registry.open(args.root)
    out = ledger(Path(args.work), "gc", ident)
    if args.kill:
        watch_lock_waits(ledger(Path(args.work), "waits", 1_000_000 + ident), args.work, 1_000_000 + ident)
    while time.time() < args.until:
        record = {"op": "gc"}
        try:
            result = reg.gc(grace=0)
            record.update(blobs=result.blobs, bytes=result.bytes, tmp=result.tmp)
        except Error as exc:
            record["error"] = f"{type(exc).__name__}: {exc}"
        out.write(json.dumps(record) + "\n")
        time.sleep(args.gc_pause)
    out.close()


ROLES = {"writer": run_writer, "reader": run_reader, "gc": run_gc}


# -- the check ---------------------------------------------------------------------------


def load(work: Path) -> dict[str, list[dict]]:
    found = defaultdict(list)
    for path in sorted(work.glob("ledger-*.jsonl")):
        role = path.name.split("-")[1]
        for line in path.read_text().splitlines():
            found[role].append(json.loads(line))
    return found


def verify(root: Path, ledgers: dict[str, list[dict]], killed: set[int] = frozenset()) -> tuple[list[str], dict]:
    """`killed`: ids of writers SIGKILLed (kill mode), whose last operation is unknown."""
    from modelreg import Registry

    reg = Registry.open(root)
    issues: list[str] = []
    stats: dict = {}
    writes = ledgers["writer"]
    ok = [r for r in writes if "error" not in r]

    # shared: every number handed out once, each still there with the content it was given
    logs = [r for r in ok if r["op"] == "log"]
    by_version = defaultdict(list)
    for r in logs:
        by_version[r["version"]].append(r)
    duplicated = [v for v, rs in by_version.items() if len({r["digest"] for r in rs}) > 1
                  or sum(r["new"] for r in rs) > 1]
    present = {v.version: v.digest for v in reg.versions("shared")} if logs else {}
    # lost: handed out but gone, holding other content, or holding content whose blobs are gone
    lost = [v for v, rs in by_version.items()
            if present.get(v) != rs[0]["digest"] or not content_intact(reg, f"shared:v{v}")]
    unexpected = sorted(set(present) - set(by_version))
    stats["shared"] = (len(present), len(lost), len(duplicated), len(unexpected))
    if duplicated:
        issues.append(f"duplicated versions of shared: {sorted(duplicated)[:10]}")
    if lost:
        issues.append(f"lost versions of shared: {sorted(lost)[:10]}")
    # a killed writer may have committed the version it was logging, unrecorded
    if len(unexpected) > len(killed):
        issues.append(f"versions of shared nobody logged: {unexpected[:10]}")
    if present and sorted(present) != list(range(len(present))):
        issues.append("version numbers of shared are not v0..vN")

    # dedup: one version per content, made new exactly once
    dedup = [r for r in ok if r["op"] == "dedup"]
    per_content = defaultdict(set)
    news = Counter()
    for r in dedup:
        per_content[r["content"]].add(r["ref"])
        news[r["content"]] += r["new"]
    for k, refs in per_content.items():
        # the one log that made it new may be a killed writer's, unrecorded
        if len(refs) != 1 or news[k] > 1 or (news[k] == 0 and not killed):
            issues.append(f"identical content {k} became {sorted(refs)} (new {news[k]} times)")
    stats["dedup"] = (len(per_content), sum(len(v) for v in per_content.values()))

    # links: one link per source, where it was made; relinks return it
    links = [r for r in ok if r["op"] == "link"]
    link_refs = Counter(r["ref"] for r in links)
    for ref, count in link_refs.items():
        if count > 1:
            issues.append(f"link {ref} handed out {count} times")
    for r in links:
        info = reg.show(r["ref"])
        if info.source != f"shared:v{r['source']}":
            issues.append(f"{r['ref']} links {info.source}, expected shared:v{r['source']}")
    for r in (r for r in ok if r["op"] == "relink"):
        if r["new"] or r["ref"] != r["expected"]:
            issues.append(f"relinking shared:v{r['source']} gave {r['ref']} (new={r['new']}), expected {r['expected']}")
    stats["links"] = len(links)

    # aliases: each writer's own alias is where it last put it
    aliases = reg.collection(reg.parse("shared").collection).aliases() if logs else {}
    last = {}
    for r in ok:
        if r["op"] == "alias" and r["writer"] not in killed:  # a killed writer's may have moved again
            last[r["alias"]] = r["version"]
    for alias, version in last.items():
        if aliases.get(alias) != version:
            issues.append(f"alias {alias} is at v{aliases.get(alias)}, its writer left it at v{version}")
    stats["aliases"] = (sum(aliases.get(a) == v for a, v in last.items()), len(last))

    # identical content is one version, in every artifact, whoever logged it
    twice = []
    for info in reg.collections(kind="artifact"):
        digests = Counter(v.digest for v in reg.versions(f"{info.entity}/{info.project}/{info.name}"))
        twice += [f"{info.name} ({n} versions of {d[:12]})" for d, n in digests.items() if n > 1]
    stats["same_content_twice"] = len(twice)
    if twice:
        issues.append(f"one content in several live versions: {twice[:10]}")

    result = reg.fsck()
    stats["fsck"] = result
    if not result.ok:
        issues.extend(f"fsck: {p.kind} {p.object}: {p.message}" for p in result.problems[:10])
    return issues, stats


def dead_holder_waits(ledgers: dict[str, list[dict]], kills: list[dict]) -> tuple[list[dict], bool]:
    """Each noted wait's time spent on a dead holder (see the module docstring); and
    whether waits were measured at all."""
    died = {}
    for kill in kills:
        for pid in kill["pids"]:
            died[str(pid)] = kill["time"]
    measured = any(r.get("watching") for r in ledgers["waits"])
    found = []
    for r in ledgers["waits"]:
        if "holders" not in r:
            continue
        worst, whom = 0.0, None
        for holder, (first, last) in r["holders"].items():
            if holder in died:
                dead_from = max(r["start"], died[holder])
            elif holder == "?" and last - first > UNREADABLE_DEAD:
                dead_from = first
            else:
                continue
            # a holder last seen well before the wait ended was gone then; the rest of the
            # wait was for others (live writers that gc waits for, say)
            until = r["end"] if r["end"] - last <= 0.25 else last
            if until - dead_from > worst:
                worst, whom = until - dead_from, holder
        if whom is not None:
            found.append({"what": r["what"], "seconds": worst, "holder": whom, "error": r.get("error")})
    return found, measured


def content_intact(reg, ref: str) -> bool:
    """Every blob of the version is in the store with its recorded size (fsck re-hashes them)."""
    for entry in reg.resolve(ref).files:
        try:
            if reg.store.blob_path(entry.digest).stat().st_size != entry.size:
                return False
        except FileNotFoundError:
            return False
    return True


# -- main --------------------------------------------------------------------------------


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--writers", type=int, default=8)
    parser.add_argument("--readers", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--root", help="registry to use (default: a new one in a temporary directory)")
    parser.add_argument("--no-fsync", action="store_true", help="set core.fsync = false in a new registry")
    parser.add_argument("--no-gc", action="store_true", help="run without the gc loop")
    parser.add_argument("--gc-pause", type=float, default=0.05, help="seconds between gc runs")
    parser.add_argument("--cli-every", type=int, default=20, help="every N-th log of a writer runs the CLI (0: never)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    parser.add_argument("--kill", action="store_true", help="SIGKILL random writers while the rest go on")
    parser.add_argument("--kill-every", type=float, default=1.0, help="mean seconds between kills (with --kill)")
    parser.add_argument("--role", choices=sorted(ROLES), help=argparse.SUPPRESS)
    parser.add_argument("--id", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    parser.add_argument("--until", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.role:
        ROLES[args.role](args, args.id)
        return 0

    from modelreg import Registry

    base = Path(tempfile.mkdtemp(prefix="modelreg-stress-"))
    work = base / "work"
    work.mkdir()
    if args.root:
        root = Registry.open(args.root).path
    else:
        root = Registry.init(base).path
        if args.no_fsync:
            Registry.open(root).config_set("core.fsync", "false")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELREG_")}
    started = time.time()
    until = started + 1.5 + args.seconds  # a moment for every process to start
    common = [sys.executable, __file__, "--root", str(root), "--work", str(work), "--until", str(until),
              "--gc-pause", str(args.gc_pause), "--cli-every", str(args.cli_every)] + (["--kill"] if args.kill else [])
    # each writer leads a process group of its own, so that a kill takes it and its CLI child alone
    writers = [subprocess.Popen([*common, "--role", "writer", "--id", str(i)], env=env, start_new_session=True)
               for i in range(args.writers)]
    procs = [subprocess.Popen([*common, "--role", "reader", "--id", str(i)], env=env) for i in range(args.readers)]
    if not args.no_gc:
        procs.append(subprocess.Popen([*common, "--role", "gc", "--id", "0"], env=env))
    kills: list[dict] = []
    killer = None
    if args.kill:
        killer = threading.Thread(target=kill_writers, name="killer",
                                  args=(args, writers, kills, [*common, "--role", "writer"], env, until, work))
        killer.start()
    crashed = [p.args[-1] for p in procs if p.wait() != 0]
    if killer is not None:
        killer.join()
    killed_ids = {k["writer"] for k in kills}
    crashed += [p.args[-1] for p in writers if p.wait() != 0 and int(p.args[-1]) not in killed_ids]
    elapsed = time.time() - started

    ledgers = load(work)
    issues, stats = verify(root, ledgers, killed_ids)
    if args.kill:
        stats["kills"] = kills
        stats["writers_started"] = len(writers)
        waits, measured = dead_holder_waits(ledgers, kills)
        stats["dead_waits"], stats["waits_measured"] = waits, measured
        too_long = [w for w in waits if w["seconds"] > DEAD_WAIT_LIMIT]
        if not measured:
            issues.append("lock waits were not measured (the library's lock functions were not found)")
        if too_long:
            issues.append(f"{len(too_long)} wait(s) for a dead holder over {DEAD_WAIT_LIMIT:g} s, longest "
                          f"{max(w['seconds'] for w in too_long):.1f} s")
        # every process has ended: whatever is in tmp/ is a dead writer's, and gc --grace 0 must take it
        stats["tmp_before_gc"] = sorted(p.name for p in (root / "tmp").iterdir())
        try:
            Registry.open(root).gc(grace=0)
        except Exception as exc:  # noqa: BLE001 - reported, not raised: the summary must print
            issues.append(f"the final gc --grace 0 failed: {type(exc).__name__}: {exc}")
        stats["tmp_after_gc"] = sorted(p.name for p in (root / "tmp").iterdir())
        if stats["tmp_after_gc"]:
            issues.append(f"gc --grace 0 left {len(stats['tmp_after_gc'])} temp file(s) of dead writers: "
                          f"{stats['tmp_after_gc'][:3]}")
    if crashed:
        issues.append(f"{len(crashed)} worker process(es) crashed")
    report(args, root, elapsed, ledgers, issues, stats)
    if args.keep or issues:
        print(f"kept: {base}")
    else:
        shutil.rmtree(base, ignore_errors=True)
    return 1 if issues else 0


def kill_writers(args, writers: list, kills: list, command: list, env: dict, until: float, work: Path) -> None:
    """The killer: SIGKILL a random running writer (and its CLI child) now and then, and
    start a new writer in its place; at least one writer is always left running."""
    rng = random.Random(7)
    next_id = len(writers)
    while True:
        time.sleep(rng.uniform(0.2, 1.8) * args.kill_every)
        if time.time() >= until - 0.5:
            return
        running = [p for p in writers if p.poll() is None]
        if len(running) < 2:
            continue
        victim = rng.choice(running)
        ident = int(victim.args[-1])
        try:
            os.killpg(victim.pid, signal.SIGKILL)
        except ProcessLookupError:
            continue
        victim.wait()
        children = work / f"children-{ident}.txt"
        pids = [victim.pid] + ([int(x) for x in children.read_text().split()] if children.exists() else [])
        kills.append({"writer": ident, "time": time.time(), "pids": pids})
        writers.append(subprocess.Popen([*command, "--id", str(next_id)], env=env, start_new_session=True))
        next_id += 1


def report(args, root, elapsed, ledgers, issues, stats) -> None:
    def counts(role):
        done = Counter(r["op"] for r in ledgers[role] if "error" not in r)
        failed = Counter(r["op"] for r in ledgers[role] if "error" in r)
        return done, failed

    wdone, wfail = counts("writer")
    rdone, rfail = counts("reader")
    gdone, gfail = counts("gc")
    logs = [r for r in ledgers["writer"] if r["op"] == "log" and "error" not in r]
    gc_blobs = sum(r.get("blobs", 0) for r in ledgers["gc"])
    fsync = "off" if args.no_fsync else "on"
    print(f"modelreg stress{' --kill' if args.kill else ''}: {args.writers} writers, {args.readers} readers, "
          f"{'no gc' if args.no_gc else '1 gc loop'}, {args.seconds:g} s (fsync {fsync}); took {elapsed:.1f} s")
    print(f"  writers: {sum(wdone.values())} ops — log {wdone['log']} (via CLI {sum(r.get('via') == 'cli' for r in logs)}), "
          f"identical log {wdone['dedup']}, alias CAS {wdone['alias']}, alias contended {wdone['hot']}, "
          f"link {wdone['link']}, relink {wdone['relink']}, log+rm {wdone['scratch']}")
    print(f"  readers: {sum(rdone.values())} ops — ls {rdone['ls']}, ls NAME {rdone['versions']}, "
          f"show {rdone['show']}, pull {rdone['pull'] + rdone['pull-link']}")
    print(f"  gc:      {gdone['gc']} runs, {gc_blobs} blobs removed")
    failures = sum(wfail.values()) + sum(rfail.values()) + sum(gfail.values())
    print(f"  failures: {failures}")
    for role in ("writer", "reader", "gc"):
        for r in [r for r in ledgers[role] if "error" in r][:5]:
            print(f"    {role} {r['op']}: {r['error']}")
    total, lost, duplicated, unexpected = stats.get("shared", (0, 0, 0, 0))
    print(f"  versions: shared has {total}; lost {lost}, duplicated {duplicated}, unexpected {unexpected}")
    contents, refs = stats.get("dedup", (0, 0))
    print(f"  identical content: {contents} contents -> {refs} versions")
    print(f"  links: {stats.get('links', 0)}, each once and where it was made" if not any("link" in i for i in issues)
          else "  links: WRONG (see below)")
    kept, total_aliases = stats.get("aliases", (0, 0))
    print(f"  aliases: {kept}/{total_aliases} where their writer left them")
    print(f"  same content in two live versions of one artifact: {stats.get('same_content_twice', 0)}")
    if args.kill:
        kills = stats["kills"]
        print(f"  kills: {len(kills)} writers SIGKILLed ({sum(len(k['pids']) for k in kills)} processes), "
              f"{stats['writers_started']} writers started in all")
        waits = stats["dead_waits"]
        if not stats["waits_measured"]:
            print("  waits for a dead holder: NOT MEASURED")
        else:
            over = [w for w in waits if w["seconds"] > DEAD_WAIT_LIMIT]
            longest = max((w["seconds"] for w in waits), default=0.0)
            print(f"  waits for a dead holder: {len(waits)}, longest {longest:.2f} s, "
                  f"over {DEAD_WAIT_LIMIT:g} s: {len(over)}")
            for w in sorted(over, key=lambda w: -w["seconds"])[:5]:
                holder = "an unreadable lock record" if w["holder"] == "?" else f"pid {w['holder']}"
                print(f"    {w['what']} waited {w['seconds']:.1f} s for {holder}"
                      + (f", then {w['error']}" if w["error"] else ""))
        print(f"  temp files of dead writers: {len(stats['tmp_before_gc'])} in tmp/ at the end, "
              f"{len(stats['tmp_after_gc'])} left by a final gc --grace 0")
        ops = sorted((r["t1"] - r["t0"], r["op"]) for r in ledgers["writer"] if "t1" in r)
        slow = [d for d, _ in ops if d > DEAD_WAIT_LIMIT]
        if ops:
            print(f"  writer operations: slowest {ops[-1][0]:.2f} s ({ops[-1][1]}), over {DEAD_WAIT_LIMIT:g} s: {len(slow)}")
    result = stats.get("fsck")
    if result is not None:
        c = result.checked
        print(f"  fsck: {'ok' if result.ok else 'PROBLEMS'} — {len(result.problems)} problems; checked {c['blobs']} blobs, "
              f"{c['versions']} versions, {c['links']} links, {c['aliases']} aliases; "
              f"{len(result.reclaimable)} reclaimable leftovers")
    print("verdict: " + ("PASS" if not issues and failures == 0 else "FAIL"))
    for issue in issues:
        print(f"  ! {issue}")


if __name__ == "__main__":
    sys.exit(main())
