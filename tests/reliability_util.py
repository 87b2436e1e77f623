"""Helpers shared by tests/test_reliability_*.py and tests/test_hostile*.py (issue 4)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
CRASH_CHILD = HERE / "crash_child.py"


def mr_runner(script_runner):
    """`mr("log", ...)`: the CLI in-process through pytest-console-scripts."""
    def run(*args, **kwargs):
        return script_runner.run(["modelreg", *map(str, args)], print_result=False, **kwargs)
    return run


def assert_error(result, code: int, *needles: str) -> None:
    """SPEC §4: the exit code, stdout empty, one `modelreg: error:` line (+ hint), no traceback."""
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    assert result.stdout == "", result.stdout
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr, result.stderr
    lines = result.stderr.rstrip("\n").split("\n")
    assert lines[-1].startswith(("modelreg: error: ", "hint: ")), result.stderr
    text = result.stderr
    for needle in needles:
        assert needle in text, (needle, text)


def env_for(root: Path | None = None, **extra) -> dict:
    """The environment of a child process: this interpreter's, no MODELREG_* leaking in."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELREG_")}
    if root is not None:
        env["MODELREG_DIR"] = str(root)
    env.update({k: str(v) for k, v in extra.items()})
    return env


def run_cli(*args, cwd=None, env=None, timeout=60) -> subprocess.CompletedProcess:
    """The CLI as a real process."""
    return subprocess.run([sys.executable, "-m", "modelreg", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def spawn_cli(*args, cwd=None, env=None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "modelreg", *map(str, args)], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def spawn_paused(step: str, marker: Path, *args, cwd=None, env=None) -> subprocess.Popen:
    """The CLI as a real process that stops at `step` (see crash_child.py) and waits to be killed."""
    env = dict(env or env_for())
    env["CRASH_AT"] = step
    env["CRASH_MARKER"] = str(marker)
    return subprocess.Popen([sys.executable, str(CRASH_CHILD), *map(str, args)], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_paused(proc: subprocess.Popen, marker: Path, timeout: float = 20) -> bool:
    """True once the child reached its step; False if it finished without reaching it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if marker.exists():
            return True
        if proc.poll() is not None:
            return marker.exists()
        time.sleep(0.01)
    proc.kill()
    raise AssertionError(f"child never reached its step; stderr: {proc.communicate()[1]}")


def kill(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
    proc.communicate()


def fsck_json(root: Path) -> dict:
    result = run_cli("fsck", "--json", env=env_for(root))
    assert result.returncode in (0, 1), result.stderr
    return json.loads(result.stdout)


def tree_state(root: Path) -> dict[str, tuple]:
    """Every entry under root: type, size, mtime and mode (what any write would change)."""
    found = {}
    for dirpath, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(dirpath, name)
            st = os.lstat(path)
            found[str(path.relative_to(root))] = (st.st_mode, st.st_size, st.st_mtime_ns)
    return found


def data_state(registry: Path) -> dict[str, tuple]:
    """The registry's data files (no caches, no tmp/): what a refused write must leave alone."""
    found = {}
    for path, state in tree_state(registry).items():
        parts = Path(path).parts
        if parts[0] == "tmp" or parts[-1] == "index.json":
            continue
        found[path] = state if not os.path.isdir(registry / path) else "dir"
    return found


def mount_available() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0 and sys.platform.startswith("linux")


def mount(*args) -> None:
    result = subprocess.run(["mount", *map(str, args)], capture_output=True, text=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount ({result.stderr.strip()})")


def umount(path: Path) -> None:
    subprocess.run(["umount", "-l", str(path)], capture_output=True)


def dead_pid() -> int:
    """A pid that belongs to no process right now."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def lock_record(pid: int) -> bytes:
    """A lock file's content naming `pid` on this host as its holder."""
    import socket

    return json.dumps({"host": socket.gethostname(), "pid": pid, "pstart": None, "time": time.time()}).encode()
