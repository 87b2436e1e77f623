"""Who made a version, where and how: the producer record of SPEC §3 `log`."""

from __future__ import annotations

import getpass
import os
import socket
import subprocess
import sys


def user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no passwd entry, no USER: still record something
        return str(os.getuid())


def git_info(cwd: str) -> dict | None:
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=5)
        if commit.returncode != 0:
            return None
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd,
                                capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit.stdout.strip(), "dirty": bool(status.stdout.strip())}


def producer(run: str | None) -> dict:
    """User, host, working directory, command line and the git commit (with a dirty flag)."""
    cwd = os.getcwd()
    found = {
        "user": user(),
        "host": socket.gethostname(),
        "cwd": cwd,
        "command": list(sys.argv),
    }
    git = git_info(cwd)
    if git:
        found["git"] = git
    if run is not None:
        found["run"] = run
    return found
