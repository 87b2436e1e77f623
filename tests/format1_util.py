"""A real format-1 registry, made by modelreg 0.1.0's own code (commit 30aee38)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

RELEASE_010 = "30aee38"
REPO = Path(__file__).resolve().parent.parent


def release_010(where: Path) -> Path:
    """0.1.0's `src/` extracted under `where`; skips when git or the commit is unavailable."""
    if shutil.which("git") is None:
        pytest.skip("git is not installed: cannot extract modelreg 0.1.0 to make a format-1 registry")
    target = where / "modelreg-0.1.0"
    if not (target / "src" / "modelreg").is_dir():
        target.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(["git", "-C", str(REPO), "archive", RELEASE_010, "src/modelreg"],
                                 capture_output=True)
        if archive.returncode != 0:
            pytest.skip(f"commit {RELEASE_010} (modelreg 0.1.0) is not in this clone: "
                        f"{archive.stderr.decode(errors='replace').strip()}")
        subprocess.run(["tar", "-x", "-C", str(target)], input=archive.stdout, check=True)
    return target / "src"


def run_010(src: Path, *args, cwd: Path, env: dict) -> subprocess.CompletedProcess:
    """modelreg 0.1.0 as a real process."""
    env = {**env, "PYTHONPATH": str(src)}
    return subprocess.run([sys.executable, "-m", "modelreg", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, check=True)
