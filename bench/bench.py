#!/usr/bin/env python3
"""SPEC §8 benchmark: modelreg against a reference command, as ratios from one run.

    /work/venv/bin/python bench/bench.py                 # every workload, 3 repetitions
    /work/venv/bin/python bench/bench.py --reps 3 ls complete
    /work/venv/bin/python bench/bench.py --big 512M      # a quicker run with a smaller "2 GiB" file
    /work/venv/bin/python bench/bench.py --list

Each workload builds its data in a temporary directory on the disk being measured
(`--tmp`, default /work/bench-tmp if it exists, else the system temp dir; removed
afterwards unless `--keep`), then runs the modelreg command and its reference
alternately (A B, B A, A B, …), each as a fresh process, and prints the median and the
minimum of each and their ratio. This machine's absolute timings swing by 2× or more
(other processes, memory handed back to the host), so only the ratios of one run mean
anything. Before every timed run, outside the timing, the previous run's output is
removed and `sync` flushes what is dirty, so a run never pays for its predecessor.

Child processes run in the scratch directory (not a git checkout) with bytecode caching
(PYTHONPYCACHEPREFIX under it, as an installed package has its .pyc files) and no
MODELREG_* variables. With core.fsync on (the default), references that write include
a `sync`. Workloads (SPEC §8; `--list`):

  log-big        log one 2 GiB file (fresh registry each run)  vs  cp + sync
  log-small      log 5,000 files of 1-64 KiB in 50 directories  vs  cp -r + sync
  relog          re-log of a 10-file, 500 MB checkpoint with one file rewritten  vs  the
                 first log of it (each run: fresh registry, first log, rewrite, re-log)
  pull-hardlink  pull --mode hardlink of the 2 GiB version  vs  python -c pass + ln
  pull-copy      pull (auto: reflink, else a verified copy)  vs  cp (neither syncs)
  ls             ls NAME --plain, 10,000 versions  vs  python -c "import typer"
                 (ls-json and ls-table, not run by default, time the other output modes)
  complete       TAB: _MODELREG_COMPLETE=complete_zsh "modelreg pull res"  vs  python -c
                 pass; skipped unless cli/complete.py answers with `resnet`
  dvc            log vs `dvc add` of the 2 GiB file in a fresh `dvc init --no-scm` repo
                 (dvc on PATH or /work/dvc-venv/bin/dvc; at most 2 runs: one takes 10-20 s)

The 10,000 versions are written through the library (stored as `log` stores them, made
visible by one change record, fsync off), not by 10,000 CLI runs.

The script is not part of the test suite and asserts nothing: a target missed is
reported as `MISSED`, and the exit status is 0 unless a command failed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

GiB = 1 << 30
MB = 1000 * 1000


# -- running commands ------------------------------------------------------------------


@dataclass
class Side:
    """One side of a comparison: commands run in sequence and timed together."""

    label: str
    commands: Callable[[int], list[list[str]]]  # rep -> argv lists
    prepare: Callable[[int], None] = lambda rep: None  # untimed, before each timed run
    env: dict | None = None
    cwd: Path | None = None
    sync_before: bool = True


@dataclass
class Result:
    name: str
    modelreg: str
    reference: str
    a: list[float] = field(default_factory=list)
    b: list[float] = field(default_factory=list)
    target: float | None = None
    note: str = ""

    @property
    def ratio(self) -> float:
        return statistics.median(self.a) / statistics.median(self.b)

    @property
    def ratio_min(self) -> float:
        return min(self.a) / min(self.b)


class Bench:
    def __init__(self, tmp: Path, reps: int, big: int, verbose: bool) -> None:
        self.tmp = tmp
        self.reps = reps
        self.big = big
        self.verbose = verbose
        self.python = sys.executable
        self.modelreg = shutil.which("modelreg", path=str(Path(sys.executable).parent)) or shutil.which("modelreg")
        if not self.modelreg:
            sys.exit("bench: the modelreg console script is not installed next to this Python")
        self.env = {k: v for k, v in os.environ.items()
                    if not k.startswith("MODELREG_") and k not in ("_MODELREG_COMPLETE", "PYTHONDONTWRITEBYTECODE")}
        self.env["PYTHONPYCACHEPREFIX"] = str(tmp / "pycache")
        self.env["NO_COLOR"] = "1"
        self.data = tmp / "data"
        self.data.mkdir(parents=True, exist_ok=True)
        self._big_file: Path | None = None
        self._big_registry: Path | None = None

    # -- helpers ---------------------------------------------------------------------

    def mr(self, *args) -> list[str]:
        return [self.modelreg, *map(str, args)]

    def call(self, argv: list[str], env=None, cwd=None) -> None:
        # In the scratch directory: not a git checkout, so `log` records no commit and
        # both sides run where the data is.
        proc = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env or self.env,
                              cwd=cwd or self.tmp)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(map(str, argv))} exited {proc.returncode}: {proc.stderr.decode()[-2000:]}")

    def timed(self, side: Side, rep: int) -> float:
        side.prepare(rep)
        if side.sync_before:
            os.sync()
        commands = side.commands(rep)
        env = side.env or self.env
        start = time.perf_counter()
        for argv in commands:
            self.call(argv, env=env, cwd=side.cwd)
        return time.perf_counter() - start

    def compare(self, result: Result, a: Side, b: Side, warmup: bool = False) -> Result:
        if warmup:
            self.timed(a, -1)
            self.timed(b, -1)
        for rep in range(self.reps):
            order = (("a", a), ("b", b)) if rep % 2 == 0 else (("b", b), ("a", a))
            for key, side in order:
                elapsed = self.timed(side, rep)
                getattr(result, key).append(elapsed)
                if self.verbose:
                    print(f"  {result.name} {side.label} rep {rep}: {elapsed:.3f}s", file=sys.stderr)
        return result

    # -- data ------------------------------------------------------------------------

    def big_file(self) -> Path:
        """One incompressible file of `--big` bytes (default 2 GiB), made once per run."""
        if self._big_file is None:
            path = self.data / "big.bin"
            write_random(path, self.big, seed=b"big")
            os.sync()
            self._big_file = path
        return self._big_file

    def big_registry(self) -> Path:
        """A registry holding the big file as `big:v0`, for the pull workloads."""
        if self._big_registry is None:
            reg = self.tmp / "reg-big"
            self.call(self.mr("--root", reg, "init", "-q"))
            self.call(self.mr("--root", reg, "log", self.big_file(), "-n", "big", "-q"))
            os.sync()
            self._big_registry = reg
        return self._big_registry

    def blob_of(self, reg: Path, ref: str) -> Path:
        out = subprocess.run(self.mr("--root", reg, "ls", ref, "--json"), capture_output=True, text=True,
                             env=self.env, check=True).stdout
        digest = json.loads(out)[0]["digest"]
        return reg / ".modelreg" / "objects" / digest[:2] / digest[2:]

    def fresh_registry(self, path: Path) -> Path:
        rmtree(path)
        self.call(self.mr("--root", path, "init", "-q"))
        return path


def rmtree(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.exists():
        for root, dirs, _ in os.walk(path):
            for d in dirs:  # blobs and their fan-out directories are read-only
                os.chmod(os.path.join(root, d), 0o755)
        shutil.rmtree(path)


def write_random(path: Path, size: int, seed: bytes) -> None:
    """Deterministic incompressible bytes, fast (BLAKE3's extendable output)."""
    from blake3 import blake3

    chunk = 8 << 20
    xof = blake3(seed)
    with open(path, "wb") as f:
        offset = 0
        while offset < size:
            n = min(chunk, size - offset)
            f.write(xof.digest(length=n, seek=offset))
            offset += n


# -- workloads -------------------------------------------------------------------------


def w_log_big(b: Bench) -> Result:
    src = b.big_file()
    reg = b.tmp / "reg-log-big"
    out = b.tmp / "cp-big"
    return b.compare(
        Result("log-big", f"log one {human(b.big)} file", "cp + sync", target=1.15),
        Side("modelreg", lambda rep: [b.mr("--root", reg, "log", src, "-n", "big", "-q")],
             prepare=lambda rep: b.fresh_registry(reg)),
        Side("cp+sync", lambda rep: [["cp", src, out / "big.bin"], ["sync"]],
             prepare=lambda rep: (rmtree(out), out.mkdir())),
    )


def small_tree(b: Bench) -> Path:
    root = b.data / "small"
    if not root.exists():
        rng = random.Random(5000)
        from blake3 import blake3

        for d in range(50):
            sub = root / f"layer{d:02d}"
            sub.mkdir(parents=True)
            for i in range(100):
                size = rng.randint(1024, 64 * 1024)
                (sub / f"part{i:03d}.bin").write_bytes(blake3(f"{d}/{i}".encode()).digest(length=size))
        os.sync()
    return root


def w_log_small(b: Bench) -> Result:
    src = small_tree(b)
    # Outputs are kept until the end: creating thousands of files right after deleting
    # thousands is several times slower here for minutes (FIELD-NOTES), for both sides.
    regs = b.tmp / "reg-log-small"
    outs = b.tmp / "cp-small"
    regs.mkdir(exist_ok=True)
    outs.mkdir(exist_ok=True)
    result = b.compare(
        Result("log-small", "log 5,000 files of 1-64 KiB", "cp -r + sync", target=2.0),
        Side("modelreg", lambda rep: [b.mr("--root", regs / f"r{rep}", "log", src, "-n", "small", "-q")],
             prepare=lambda rep: b.fresh_registry(regs / f"r{rep}")),
        Side("cp -r+sync", lambda rep: [["cp", "-r", src, outs / f"c{rep}"], ["sync"]],
             prepare=lambda rep: rmtree(outs / f"c{rep}")),
        warmup=False,
    )
    rmtree(regs)
    rmtree(outs)
    return result


def w_relog(b: Bench) -> Result:
    """First log of a 10-file, 500 MB checkpoint, then a re-log with one file changed."""
    ckpt = b.data / "ckpt"
    ckpt.mkdir(exist_ok=True)
    for i in range(10):
        write_random(ckpt / f"shard{i}.bin", 50 * MB, seed=f"shard{i}".encode())
    changed = ckpt / "shard3.bin"
    reg = b.tmp / "reg-relog"
    os.sync()
    time.sleep(1.2)  # older than the stat cache's racy window (1 s), as a checkpoint logged again is

    def first_prepare(rep: int) -> None:
        b.fresh_registry(reg)
        write_random(changed, 50 * MB, seed=b"shard3")

    def relog_prepare(rep: int) -> None:
        write_random(changed, 50 * MB, seed=f"shard3-changed-{rep}".encode())

    # The re-log needs the first log before it: the pair always runs first, then re-log.
    result = Result("relog", "re-log, 1 of 10 files (500 MB) changed", "first log of it", target=0.2)
    first = Side("first log", lambda rep: [b.mr("--root", reg, "log", ckpt, "-n", "ckpt", "-q")], prepare=first_prepare)
    again = Side("re-log", lambda rep: [b.mr("--root", reg, "log", ckpt, "-n", "ckpt", "-q")], prepare=relog_prepare)
    for rep in range(b.reps):
        result.b.append(b.timed(first, rep))
        result.a.append(b.timed(again, rep))
        if b.verbose:
            print(f"  relog rep {rep}: first {result.b[-1]:.3f}s re-log {result.a[-1]:.3f}s", file=sys.stderr)
    rmtree(reg)
    return result


def w_pull_hardlink(b: Bench) -> Result:
    reg = b.big_registry()
    blob = b.blob_of(reg, "big:v0")
    out = b.tmp / "pull-hl"
    out_ref = b.tmp / "ln-hl"
    return b.compare(
        Result("pull-hardlink", f"pull --mode hardlink ({human(b.big)})", "python -c pass + ln", target=3.0),
        Side("modelreg", lambda rep: [b.mr("--root", reg, "pull", "big:v0", "-o", out, "--mode", "hardlink", "-q")],
             prepare=lambda rep: rmtree(out)),
        Side("python+ln", lambda rep: [[b.python, "-c", "pass"], ["ln", blob, out_ref / "big.bin"]],
             prepare=lambda rep: (rmtree(out_ref), out_ref.mkdir())),
        warmup=True,
    )


def w_pull_copy(b: Bench) -> Result:
    reg = b.big_registry()
    blob = b.blob_of(reg, "big:v0")
    out = b.tmp / "pull-copy"
    out_ref = b.tmp / "cp-copy"
    # Pulled files are the user's: neither side syncs (SPEC §8).
    return b.compare(
        Result("pull-copy", f"pull (copy, verified) ({human(b.big)})", "cp", target=1.15),
        Side("modelreg", lambda rep: [b.mr("--root", reg, "pull", "big:v0", "-o", out, "-q")],
             prepare=lambda rep: rmtree(out)),
        Side("cp", lambda rep: [["cp", blob, out_ref / "big.bin"]],
             prepare=lambda rep: (rmtree(out_ref), out_ref.mkdir())),
        warmup=True,  # the blob was written with O_DIRECT: bring it into the page cache for both
    )


def many_versions(b: Bench, count: int = 10_000) -> Path:
    """A registry whose artifact `resnet` has `count` versions, written through the library.

    10,000 CLI runs would take many minutes; the manifests are stored as `log` stores them
    and made visible by one change record (fsync off while building: a cache of the run).
    """
    reg = b.tmp / "reg-ls"
    if (reg / ".modelreg").exists():
        return reg
    code = r"""
import sys
from modelreg import Registry, FileEntry
from modelreg import changes, manifest as mf
from modelreg.refs import parse_collection
from modelreg.hashing import version_digest
from modelreg.util import now

reg = Registry.init(sys.argv[1])
reg.config_set("core.fsync", "false")
reg = Registry.open(reg.path)
count = int(sys.argv[2])
for name in ("resnet", "resnext", "bert"):
    cid = parse_collection(name, reg.entity, reg.project)
    coll = reg.collection(cid)
    coll.ensure("artifact")
    add = {}
    for n in range(count if name == "resnet" else 3):
        files = tuple(FileEntry(p, f"{n:016x}{i:048x}", 1000 * (i + 1) + n, False)
                      for i, p in enumerate(("config.json", "model.safetensors", "tokenizer.json")))
        digest = version_digest([(f.path, f.digest, f.size, f.executable) for f in files])
        created = now()
        record = mf.VersionManifest(
            artifact=cid, version=n, digest=digest, size=sum(f.size for f in files), created=created,
            files=files, metadata={"epoch": n, "val_acc": round(0.5 + n / (2 * count), 6)},
            description="", inputs=(), producer={"user": "bench", "time": created})
        add[str(n)] = changes.summary_of(record, coll.put_manifest(record))
    best = count - 1 if name == "resnet" else 2
    coll.commit(lambda state: (changes.Change([{"event": "logged"}], {"best": best}, add=add), None))
reg.config_set("core.fsync", "true")
"""
    subprocess.run([sys.executable, "-c", code, str(reg), str(count)], check=True, env=b.env)
    return reg


def w_ls(b: Bench, mode: str) -> Result:
    reg = many_versions(b)
    flags = {"plain": ["--plain"], "json": ["--json"], "table": []}[mode]
    return b.compare(
        Result(f"ls-{mode}", f"ls NAME {' '.join(flags) or '(table)'}, 10,000 versions", "python -c 'import typer'",
               target=1.5),
        Side("modelreg", lambda rep: [b.mr("--root", reg, "ls", "resnet", *flags)], sync_before=False),
        Side("import typer", lambda rep: [[b.python, "-c", "import typer"]], sync_before=False),
        warmup=True,
    )


def w_complete(b: Bench) -> Result | None:
    import importlib.util

    spec = importlib.util.find_spec("modelreg.cli.complete")
    if spec is None:
        return None
    reg = many_versions(b)
    env = dict(b.env, _MODELREG_COMPLETE="complete_zsh", _TYPER_COMPLETE_ARGS="modelreg pull res",
               MODELREG_DIR=str(reg))
    # Only a fast path that really answers counts: check the answer first.
    answer = subprocess.run([b.modelreg], env=env, capture_output=True, text=True)
    if answer.returncode != 0 or "resnet" not in answer.stdout:
        print(f"bench: completion gave no `resnet` (exit {answer.returncode}); skipped", file=sys.stderr)
        return None
    return b.compare(
        Result("complete", "TAB: modelreg pull res (zsh)", "python -c pass", target=4.0),
        Side("modelreg", lambda rep: [[b.modelreg]], env=env, sync_before=False),
        Side("python -c pass", lambda rep: [[b.python, "-c", "pass"]], sync_before=False),
        warmup=True,
    )


def find_dvc() -> str | None:
    return shutil.which("dvc") or next((p for p in ("/work/dvc-venv/bin/dvc",) if os.access(p, os.X_OK)), None)


def w_dvc(b: Bench) -> Result | None:
    dvc = find_dvc()
    if dvc is None:
        return None
    src = b.big_file()
    reg = b.tmp / "reg-vs-dvc"
    repo = b.tmp / "dvc-repo"
    dvc_env = dict(b.env, DVC_NO_ANALYTICS="1")

    def dvc_prepare(rep: int) -> None:
        # dvc add moves the file into its cache, so each run gets its own copy.
        rmtree(repo)
        repo.mkdir()
        b.call([dvc, "init", "--no-scm", "-q"], env=dvc_env, cwd=repo)
        b.call(["cp", src, repo / "big.bin"])

    reps, b.reps = b.reps, min(b.reps, 2)  # one `dvc add` of 2 GiB takes 10-20 s here
    result = b.compare(
        Result("vs-dvc", f"log one {human(b.big)} file", "dvc add", target=0.3),
        Side("modelreg", lambda rep: [b.mr("--root", reg, "log", src, "-n", "big", "-q")],
             prepare=lambda rep: b.fresh_registry(reg)),
        Side("dvc add", lambda rep: [[dvc, "add", "-q", "big.bin"]], prepare=dvc_prepare, env=dvc_env, cwd=repo),
    )
    b.reps = reps
    version = subprocess.run([dvc, "--version"], capture_output=True, text=True, env=dvc_env).stdout.strip()
    result.note = f"dvc {version}"
    rmtree(repo)
    rmtree(reg)
    return result


WORKLOADS: dict[str, Callable[[Bench], Result | None]] = {
    "log-big": w_log_big,
    "log-small": w_log_small,
    "relog": w_relog,
    "pull-hardlink": w_pull_hardlink,
    "pull-copy": w_pull_copy,
    "ls": lambda b: w_ls(b, "plain"),
    "ls-json": lambda b: w_ls(b, "json"),
    "ls-table": lambda b: w_ls(b, "table"),
    "complete": w_complete,
    "dvc": w_dvc,
}
DEFAULT = [name for name in WORKLOADS if name not in ("ls-json", "ls-table")]


# -- reporting -------------------------------------------------------------------------


def human(size: int) -> str:
    for unit, scale in (("GiB", GiB), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= scale:
            value = size / scale
            return f"{value:g} {unit}" if value == int(value) else f"{value:.1f} {unit}"
    return f"{size} B"


def parse_size(text: str) -> int:
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    text = text.strip().upper().rstrip("B").rstrip("I")
    if text and text[-1] in units:
        return int(float(text[:-1]) * units[text[-1]])
    return int(text)


def machine(tmp: Path) -> list[str]:
    def run(*argv) -> str:
        try:
            return subprocess.run(argv, capture_output=True, text=True).stdout.strip()
        except OSError:
            return "?"

    mem = next((line for line in run("free", "-h").splitlines() if line.startswith("Mem:")), "?")
    fs = run("findmnt", "-n", "-o", "FSTYPE,SOURCE", "-T", str(tmp)) or run("stat", "-f", "-c", "%T", str(tmp))
    try:
        import typer

        typer_version = typer.__version__
    except ImportError:
        typer_version = "?"
    return [
        f"machine: nproc {os.cpu_count()}; free -h: {' '.join(mem.split())}",
        f"kernel {platform.release()}; filesystem of {tmp}: {fs}; Python {platform.python_version()}; "
        f"typer {typer_version}",
        "load average at start: " + " ".join(f"{x:.2f}" for x in os.getloadavg()),
    ]


def report(results: list[Result], header: list[str]) -> str:
    lines = [*header, ""]
    cols = ("workload", "modelreg", "reference", "modelreg med/min s", "reference med/min s", "ratio med (min)",
            "target", "")
    rows = []
    for r in results:
        met = r.ratio <= r.target if r.target is not None else None
        rows.append((r.name, r.modelreg, r.reference,
                     f"{statistics.median(r.a):.3f} / {min(r.a):.3f}",
                     f"{statistics.median(r.b):.3f} / {min(r.b):.3f}",
                     f"{r.ratio:.2f} ({r.ratio_min:.2f})",
                     f"<= {r.target:g}" if r.target is not None else "",
                     ("met" if met else "MISSED") + (f"  [{r.note}]" if r.note else "")))
    widths = [max(len(str(row[i])) for row in (cols, *rows)) for i in range(len(cols))]
    fmt = lambda row: "  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip()
    lines.append(fmt(cols))
    lines.append(fmt(["-" * w for w in widths]))
    lines += [fmt(row) for row in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="modelreg against reference commands (SPEC §8), as ratios.")
    parser.add_argument("workloads", nargs="*", metavar="WORKLOAD",
                        help=f"workloads to run (default: {' '.join(DEFAULT)}; also: ls-json ls-table)")
    parser.add_argument("--reps", type=int, default=3,
                        help="timed runs of each side (default 3; the dvc workload runs at most 2)")
    parser.add_argument("--big", default="2G", help="size of the big file (default 2G)")
    parser.add_argument("--tmp", type=Path, help="scratch directory on the disk to measure "
                        "(default /work/bench-tmp if it exists, else the system temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory")
    parser.add_argument("--list", action="store_true", help="list the workloads and exit")
    parser.add_argument("-v", "--verbose", action="store_true", help="print every timing on stderr")
    args = parser.parse_args(argv)
    if args.list:
        print("\n".join(WORKLOADS))
        return 0
    names = args.workloads or DEFAULT
    unknown = [n for n in names if n not in WORKLOADS]
    if unknown:
        parser.error(f"unknown workload(s): {', '.join(unknown)}; --list shows them")
    base = args.tmp or (Path("/work/bench-tmp") if Path("/work/bench-tmp").is_dir() else Path(tempfile.gettempdir()))
    base.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="modelreg-bench-", dir=base))
    bench = Bench(tmp, max(1, args.reps), parse_size(args.big), args.verbose)
    header = machine(tmp)
    started = time.perf_counter()
    results = []
    try:
        # Warm the bytecode cache so that no side pays for compiling.
        bench.call(bench.mr("--help"))
        bench.call([bench.python, "-c", "import typer"])
        for name in names:
            print(f"bench: {name} …", file=sys.stderr)
            began = time.perf_counter()
            result = WORKLOADS[name](bench)
            if result is None:
                print(f"bench: {name} skipped (not available here)", file=sys.stderr)
                continue
            print(f"bench: {name} took {time.perf_counter() - began:.0f} s", file=sys.stderr)
            results.append(result)
    finally:
        if args.keep:
            print(f"bench: kept {tmp}", file=sys.stderr)
        else:
            rmtree(tmp)
    header.append(f"{bench.reps} runs of each side, alternating; whole run {time.perf_counter() - started:.0f} s; "
                  "load average at end: " + " ".join(f"{x:.2f}" for x in os.getloadavg()))
    print(report(results, header))
    return 0


if __name__ == "__main__":
    sys.exit(main())
