"""The man pages' hand-written prose: one `<page>.md` per page, in this directory.

`manpage` takes synopsis, options and examples from the command tree, the OUTPUT
section's `--plain` columns and `--json` keys from the output forms that
`modelreg.records` declares, and everything else from these files. A file is a few
`# section` blocks (description, output, exit status, exit status common, exit
status notes, environment, files, files default, examples, see also) in the small
Markdown subset of `manpage.prose_to_roff`; `exit status` and `environment` are
`TERM::` lists, `see also` a comma-separated list of pages, and a line
`@include NAME` stands for `_NAME.md` (text that several pages share).
"""

from __future__ import annotations

import re
from pathlib import Path

HERE = Path(__file__).parent
_SECTION = re.compile(r"^# (.+)\n", re.M)
_INCLUDE = re.compile(r"^@include ([\w-]+)$", re.M)


def _definitions(text: str) -> dict:
    terms: dict = {}
    for term, body in re.findall(r"^(\S.*)::\n((?:[ \t]+.*\n?)*)", text, re.M):
        terms[int(term) if term.isdigit() else term] = "\n".join(ln.strip() for ln in body.strip().split("\n"))
    return terms


def load_page(path: Path) -> dict:
    text = _INCLUDE.sub(lambda m: (HERE / f"_{m.group(1)}.md").read_text().strip(), path.read_text())
    pieces = _SECTION.split(text)[1:]
    prose: dict = {}
    for title, body in zip(pieces[::2], pieces[1::2]):
        key = title.strip().replace(" ", "_")
        if key in ("exit_status", "exit_status_common", "environment"):
            prose[key] = _definitions(body)
        elif key == "see_also":
            prose[key] = [page.strip() for page in body.split(",") if page.strip()]
        else:
            prose[key] = body.strip()
    return prose


def _with_forms(pages: dict) -> dict:
    from ...records import FORMS

    for form in FORMS:
        prose = pages[form.name.split()[0]]
        prose.setdefault("plain_columns", {})[form.name] = [c.name for c in form.columns]
        if form.row:
            prose.setdefault("plain_rows", {})[form.name] = form.row
        if form.fields:
            prose.setdefault("plain_fields", {})[form.name] = [f.name for f in form.fields]
        prose.setdefault("json_keys", {})[form.name] = form.contract_keys()
        prose.setdefault("json_shape", {})[form.name] = form.shape
    return pages


PROSE: dict[str, dict] = _with_forms(
    {path.stem: load_page(path) for path in sorted(HERE.glob("*.md")) if not path.name.startswith("_")}
)
