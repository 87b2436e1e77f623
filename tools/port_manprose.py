"""Port another branch's edits of the old `cli/manprose.py` into `cli/manprose/*.md`.

    python tools/port_manprose.py BRANCH [BASE]

The man pages' prose moved from one Python dict into one text file per page. A branch
that still edits `manprose.py` conflicts (modify/delete) when merged; this converts
the branch's and the base's `manprose.py` into text files the same way the move did
and merges the branch's changes into the current files with `git merge-file`
(conflict markers where both sides changed one passage). Then run
`python -m modelreg.cli.manpage` and resolve the merge with `git rm
src/modelreg/cli/manprose.py`. BASE defaults to the merge base of BRANCH and HEAD.
Delete this script once no branch edits `manprose.py` any more.
"""

from __future__ import annotations

import inspect
import subprocess
import sys
import tempfile
from pathlib import Path

OLD = "src/modelreg/cli/manprose.py"
NEW = Path(__file__).resolve().parent.parent / "src" / "modelreg" / "cli" / "manprose"
# Declared by the records' output forms now, not by prose.
FORM_KEYS = {"plain_columns", "plain_rows", "plain_fields", "json_keys", "json_shape"}
ORDER = ["description", "output", "exit_status", "exit_status_common", "exit_status_notes", "environment",
         "files", "files_default", "examples", "see_also"]


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], check=True, capture_output=True, text=True).stdout


def _load(rev: str) -> dict:
    module: dict = {}
    exec(compile(_git("show", f"{rev}:{OLD}"), f"{rev}:{OLD}", "exec"), module)
    return module


def pages(module: dict) -> dict[str, str]:
    shared = {"protected": inspect.cleandoc(module["_PROTECTED"]),
              "registry-files": inspect.cleandoc(module["_REGISTRY_FILES"])}

    def text(value: str) -> str:
        value = inspect.cleandoc(value)
        for name, body in shared.items():
            value = value.replace(body, f"@include {name}")
        return value

    def terms(mapping: dict) -> str:
        return "\n".join(f"{k}::\n" + "\n".join("    " + ln.strip() for ln in inspect.cleandoc(v).split("\n"))
                         for k, v in mapping.items())

    out = {f"_{name}.md": body + "\n" for name, body in shared.items()}
    for page, prose in module["PROSE"].items():
        unknown = set(prose) - FORM_KEYS - set(ORDER)
        if unknown:
            sys.exit(f"{page}: keys this script does not know: {sorted(unknown)}")
        parts = []
        for key in (k for k in ORDER if k in prose):
            value = prose[key]
            body = (terms(value) if key in ("exit_status", "exit_status_common", "environment")
                    else ", ".join(value) if key == "see_also" else text(value))
            parts.append(f"# {key.replace('_', ' ')}\n\n{body}")
        out[f"{page}.md"] = "\n\n".join(parts) + "\n"
    return out


def main(argv: list[str]) -> int:
    if not 1 <= len(argv) <= 2:
        print(__doc__, file=sys.stderr)
        return 2
    branch = argv[0]
    base = argv[1] if len(argv) > 1 else _git("merge-base", branch, "HEAD").strip()
    theirs, ancestor = pages(_load(branch)), pages(_load(base))
    conflicts = 0
    with tempfile.TemporaryDirectory() as tmp:
        for name, text in theirs.items():
            if ancestor.get(name) == text:
                continue
            mine = NEW / name
            if not mine.exists():
                mine.write_text(text)
                print(f"new: {mine}")
                continue
            (Path(tmp) / "base").write_text(ancestor.get(name, ""))
            (Path(tmp) / "theirs").write_text(text)
            code = subprocess.run(["git", "merge-file", "-L", "current", "-L", "base", "-L", branch,
                                   str(mine), str(Path(tmp) / "base"), str(Path(tmp) / "theirs")]).returncode
            conflicts += max(code, 0)
            print(f"{'CONFLICT' if code else 'merged'}: {mine}")
    return 1 if conflicts else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
