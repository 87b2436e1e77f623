"""Helpers shared by the tests/test_lifecycle_*.py files (issue 3, registered models and lifecycle)."""

from __future__ import annotations

import json
from pathlib import Path


class CLI:
    """`modelreg ARGS...` through pytest-console-scripts, with assertions on the outcome."""

    def __init__(self, script_runner) -> None:
        self.runner = script_runner

    def __call__(self, *args, code: int | None = 0, env: dict | None = None):
        kwargs = {"env": env} if env is not None else {}
        result = self.runner.run(["modelreg", *map(str, args)], **kwargs)
        assert "Traceback" not in result.stderr, result.stderr
        if code is not None:
            assert result.returncode == code, (args, result.returncode, result.stdout, result.stderr)
        if result.returncode != 0:
            assert result.stdout == "", (args, result.stdout)
            assert result.stderr.startswith("modelreg: error: "), (args, result.stderr)
        return result

    def out(self, *args, env=None) -> str:
        return self(*args, env=env).stdout

    def json(self, *args, env=None):
        return json.loads(self(*args, "--json", env=env).stdout)

    def line(self, *args, env=None) -> str:
        lines = self(*args, env=env).stdout.splitlines()
        assert len(lines) == 1, lines
        return lines[0]


def write_ckpt(root: Path, content: str, extra: dict[str, str] | None = None) -> Path:
    """A tiny checkpoint directory whose weights file holds `content`."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "model.bin").write_text(content)
    (root / "config.json").write_text('{"layers": 2}\n')
    for rel, text in (extra or {}).items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


def registry_state(root: Path) -> dict[str, bytes]:
    """Every alias file, record and history file of a registry, to prove nothing changed."""
    state = {}
    base = root / ".modelreg" / "collections"
    for path in sorted(base.rglob("*")):
        if path.is_file() and path.name not in ("index.json", "collection.lock"):
            state[path.relative_to(base).as_posix()] = path.read_bytes()
    return state
