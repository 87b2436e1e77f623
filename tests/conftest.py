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


# -- modelreg 0.1.0, the release that wrote format 1 ------------------------------------

OLD_RELEASE = "30aee38"  # modelreg 0.1.0: format-1 registries are built by its own code


class OldModelreg:
    """modelreg 0.1.0's code, unpacked from git; `run(...)` is a real 0.1.0 process."""

    def __init__(self, src: Path) -> None:
        self.src = src

    def env(self, root: Path | None = None, **extra) -> dict:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MODELREG_")}
        env["PYTHONPATH"] = str(self.src)
        if root is not None:
            env["MODELREG_DIR"] = str(root)
        env.update({k: str(v) for k, v in extra.items()})
        return env

    def run(self, *args, root: Path | None = None, cwd=None, env_extra=None, timeout=120):
        return subprocess.run([sys.executable, "-m", "modelreg", *map(str, args)], cwd=cwd,
                              env=self.env(root, **(env_extra or {})), capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL)

    def check(self, *args, **kwargs):
        proc = self.run(*args, **kwargs)
        assert proc.returncode == 0, f"0.1.0 `modelreg {' '.join(map(str, args))}` failed: {proc.stderr}"
        return proc


@pytest.fixture(scope="session")
def modelreg_010(tmp_path_factory) -> OldModelreg:
    """modelreg 0.1.0 from this repository's history (CI clones it with full history)."""
    repo = Path(__file__).resolve().parent.parent
    if not shutil.which("git"):
        pytest.skip("git is not installed: cannot unpack modelreg 0.1.0 to build a format-1 registry")
    known = subprocess.run(["git", "-C", str(repo), "cat-file", "-e", f"{OLD_RELEASE}^{{commit}}"],
                           capture_output=True)
    if known.returncode != 0:
        pytest.skip(f"commit {OLD_RELEASE} (modelreg 0.1.0) is not in this clone (shallow?): "
                    "cannot build a format-1 registry")
    base = tmp_path_factory.mktemp("modelreg-0.1.0")
    archive = subprocess.run(["git", "-C", str(repo), "archive", OLD_RELEASE, "src/modelreg"],
                             capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(base)], input=archive.stdout, check=True)
    return OldModelreg(base / "src")
