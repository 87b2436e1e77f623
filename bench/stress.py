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
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

DEDUP_CONTENTS = 3


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
    mine: list[int] = []  # versions of `shared` this writer logged
    linked: dict[int, str] = {}
    alias_at: int | None = None
    n = 0
    while time.time() < args.until:
        n += 1
        op = rng.choices(["log", "dedup", "alias", "hot", "link", "relink", "scratch"],
                         [40, 10, 15, 5, 15, 5, 10])[0]
        record = {"op": op, "writer": ident, "n": n}
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
        out.write(json.dumps(record) + "\n")
    out.close()


def cli_log(root: str, src: Path, name: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELREG_")}
    env["MODELREG_DIR"] = root
    proc = subprocess.run([sys.executable, "-m", "modelreg", "log", str(src), "-n", name, "--json"],
                          capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        from modelreg.errors import Error

        raise Error(f"cli exit {proc.returncode}: {proc.stderr.strip()}")
    return json.loads(proc.stdout)


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


def verify(root: Path, ledgers: dict[str, list[dict]]) -> tuple[list[str], dict]:
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
    if unexpected:
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
        if len(refs) != 1 or news[k] != 1:
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
        if r["op"] == "alias":
            last[r["alias"]] = r["version"]
    for alias, version in last.items():
        if aliases.get(alias) != version:
            issues.append(f"alias {alias} is at v{aliases.get(alias)}, its writer left it at v{version}")
    stats["aliases"] = (sum(aliases.get(a) == v for a, v in last.items()), len(last))

    result = reg.fsck()
    stats["fsck"] = result
    if not result.ok:
        issues.extend(f"fsck: {p.kind} {p.object}: {p.message}" for p in result.problems[:10])
    return issues, stats


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
              "--gc-pause", str(args.gc_pause), "--cli-every", str(args.cli_every)]
    procs = [subprocess.Popen([*common, "--role", "writer", "--id", str(i)], env=env) for i in range(args.writers)]
    procs += [subprocess.Popen([*common, "--role", "reader", "--id", str(i)], env=env) for i in range(args.readers)]
    if not args.no_gc:
        procs.append(subprocess.Popen([*common, "--role", "gc", "--id", "0"], env=env))
    crashed = [p.args[-1] for p in procs if p.wait() != 0]
    elapsed = time.time() - started

    ledgers = load(work)
    issues, stats = verify(root, ledgers)
    if crashed:
        issues.append(f"{len(crashed)} worker process(es) crashed")
    report(args, root, elapsed, ledgers, issues, stats)
    if args.keep or issues:
        print(f"kept: {base}")
    else:
        shutil.rmtree(base, ignore_errors=True)
    return 1 if issues else 0


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
    print(f"modelreg stress: {args.writers} writers, {args.readers} readers, "
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
