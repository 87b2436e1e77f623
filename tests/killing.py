"""Kill a command at one exact system call (strace fault injection), for tests/test_r2_kill.py.

A command is first run once under `strace -y` to learn its write-class system calls in
order (with the files they touch); then, for each chosen call, it is run again from the
same starting state under `strace -e inject=SYSCALL:signal=KILL:when=N`, which SIGKILLs
it on entry to its N-th call of SYSCALL, before the call takes effect.

Two choices differ from `shared/tools/kill-sweep`:

- strace counts `when=N` per syscall and per tracee, not per group: `inject=link,rename:
  when=2` kills at the second link or the second rename, whichever comes first, and
  skips points. So a group is walked one syscall at a time, N over that syscall's calls.
- no `-f`: with it every child gets its own counters, and `log`'s helper children
  (`ldconfig -p` behind ctypes, `git rev-parse`) would be the ones killed at their N-th
  write. The command's own process is single-threaded for the small inputs used here;
  a SIGKILL from any thread ends it whole anyway.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

# The write-class groups of kill-sweep; the open group keeps only opens that can write.
GROUPS = {
    "write": ("write", "pwrite64", "writev"),
    "open": ("openat", "open", "creat"),
    "publish": ("link", "linkat", "rename", "renameat", "renameat2"),
    "sync": ("fsync", "fdatasync"),
    "unlink": ("unlink", "unlinkat", "rmdir"),
}
ALL_SYSCALLS = tuple(s for group in GROUPS.values() for s in group)
CALL_LINE = re.compile(r"^(\w+)\((.*)$")
WRITING_OPEN = re.compile(r"O_WRONLY|O_RDWR|O_CREAT")
REGISTRY_PREFIX = re.compile(r'[^"<>, ]*/\.modelreg/')
AT_CWD = re.compile(r"AT_FDCWD<[^>]*>, ")


@dataclass(frozen=True)
class Call:
    """One system call of a traced run: the `nth` call of `syscall` in that run."""

    syscall: str
    nth: int
    text: str  # strace's line (arguments with -y paths), cut short

    @property
    def group(self) -> str:
        return next(name for name, members in GROUPS.items() if self.syscall in members)

    def label(self) -> str:
        """`write#3 tmp/rec-…`: the call, with paths shown from inside the registry."""
        text = REGISTRY_PREFIX.sub("", AT_CWD.sub("", self.text))
        if self.group == "write":
            text = text.split(', "')[0]  # the file, not the bytes
        return f"{self.syscall}#{self.nth} {text[:120]}"


def strace_problem() -> str | None:
    """Why strace fault injection cannot run here (None when it can)."""
    if not shutil.which("strace"):
        return "strace is not installed (.ci/run installs it)"
    probe = subprocess.run(["strace", "-qq", "-o", "/dev/null", "-e", "inject=getpid:signal=KILL:when=1",
                            "python3", "-c", "import os; os.getpid()"], capture_output=True, text=True)
    if probe.returncode not in (-9, 137):
        return f"strace cannot trace or inject here (ptrace not permitted?): {probe.stderr.strip()[-200:]}"
    return None


def trace(argv: list[str], *, env: dict, cwd: Path, out: Path, timeout: float = 60) -> list[Call]:
    """The command's write-class calls, in order, from one real (unkilled) run."""
    proc = subprocess.run(["strace", "-qq", "-y", "-s", "48", "-o", str(out), "-e", "trace=" + ",".join(ALL_SYSCALLS),
                           *argv], env=env, cwd=cwd, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, f"traced run failed ({proc.returncode}): {proc.stderr[-600:]}"
    return parse(out)


def parse(out: Path) -> list[Call]:
    counts: dict[str, int] = {}
    calls = []
    for line in out.read_text().splitlines():
        match = CALL_LINE.match(line)
        if not match:
            continue  # signals, exits
        name = match.group(1)
        counts[name] = counts.get(name, 0) + 1
        calls.append(Call(name, counts[name], match.group(2)))
    return calls


def points(calls: list[Call], group: str, cap: int) -> list[Call]:
    """The calls of `group` worth a kill: every one, or (past `cap`) the first and last few
    and an even stride between them. Opens that only read are left out (a kill there is
    the same as one at the call before)."""
    chosen = [c for c in calls if c.group == group and (group != "open" or WRITING_OPEN.search(c.text))]
    if len(chosen) <= cap:
        return chosen
    edge = min(3, max(1, cap // 3))
    middle = chosen[edge:-edge]
    room = cap - 2 * edge
    step = len(middle) / room if room > 0 else 0
    return chosen[:edge] + [middle[int(i * step)] for i in range(max(room, 0))] + chosen[-edge:]


@dataclass(frozen=True)
class Kill:
    proc: subprocess.CompletedProcess
    at: Call | None  # the call the process died on; None when it was not killed

    @property
    def killed(self) -> bool:
        # strace ends itself with the tracee's signal, or exits 128+9 where it cannot
        return self.proc.returncode in (-9, 137)


def kill_at(argv: list[str], call: Call, *, env: dict, cwd: Path, out: Path, timeout: float = 60) -> Kill:
    """Run the command, SIGKILLed on entry to its `call.nth` call of `call.syscall`.

    Some calls come and go between runs (a cache rewritten only when stale), so the call
    actually killed is read back from this run's own trace, not taken from `call`.
    """
    proc = subprocess.run(["strace", "-qq", "-y", "-s", "48", "-o", str(out), "-e", f"trace={call.syscall}",
                           "-e", f"inject={call.syscall}:signal=KILL:when={call.nth}", *argv],
                          env=env, cwd=cwd, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=timeout)
    kill = Kill(proc, None)
    if kill.killed:
        calls = parse(out)
        kill = Kill(proc, calls[-1] if calls else call)
    return kill


def restore(template: Path, target: Path) -> None:
    """Put the pristine registry back in place, so every kill starts from the same state."""
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(template, target, symlinks=True)
