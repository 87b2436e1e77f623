"""Shared fixtures: every test runs with its own HOME, cwd and no MODELREG_* settings."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def isolated_env(tmp_path, monkeypatch):
    """Isolate HOME, the working directory and every MODELREG_* variable."""
    for key in list(os.environ):
        if key.startswith("MODELREG_") or key == "_MODELREG_COMPLETE":
            monkeypatch.delenv(key, raising=False)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    for key in ("XDG_CONFIG_HOME", "XDG_CACHE_HOME"):  # they would lead past HOME to the real user's files
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setenv("MODELREG_LOCK_TIMEOUT", "10")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    yield work


@pytest.fixture
def modelreg_bin() -> str:
    """The installed console script, for tests that need real processes."""
    found = shutil.which("modelreg", path=str(Path(sys.executable).parent)) or shutil.which("modelreg")
    if not found:
        pytest.skip("modelreg console script is not installed")
    return found


@pytest.fixture
def mr(script_runner):
    """`mr("ls", "--json")`: run the installed console script in-process."""
    def run(*args, **kwargs):
        return script_runner.run(["modelreg", *map(str, args)], print_result=False, **kwargs)
    return run


def make_tree(root: Path, files: dict[str, bytes | str], executable=()) -> Path:
    """Write `files` (relative path -> content) under root; mark `executable` paths +x."""
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content.encode() if isinstance(content, str) else content)
        if rel in executable:
            path.chmod(0o755)
    return root


@pytest.fixture
def tree(tmp_path):
    """A small checkpoint directory: nested files, an empty file and an executable."""
    return make_tree(tmp_path / "work" / "ckpt", {
        "model.bin": b"\x00\x01weights" * 100,
        "config.json": '{"layers": 3}\n',
        "empty": b"",
        "sub/deeper/notes.txt": "hello\n",
        "bin/run.sh": "#!/bin/sh\necho run\n",
    }, executable=("bin/run.sh",))


def run(*args, cwd=None, env=None, check=False):
    """Run the installed command as a real process."""
    return subprocess.run([sys.executable, "-m", "modelreg", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, check=check)
