"""The Typer command tree: a thin skin over `modelreg.Registry`.

Commands parse options, call one Registry method and hand the result to `Output`.
Errors are not handled here: they rise to `entry.main`, which maps them to exit codes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal, Optional

import typer

from .. import __version__
from .. import records as forms
from ..errors import InvalidInput, NotFound
from ..arguments import check_log_options, prepare_log
from ..registry import Registry
from .metadata import load_meta_file, parse_metadata_items
from . import callbacks
from .output import Output, human_size, human_time, term_safe

app = typer.Typer(
    name="modelreg",
    add_completion=True,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)
config_app = typer.Typer(
    name="config",
    help="Read and write .modelreg/config.toml.\n\n"
    "Keys: defaults.entity, defaults.project, pull.mode, aliases.protected, gc.grace, core.fsync.\n\n"
    "\b\nExamples:\n  $ modelreg config set aliases.protected production,staging\n  $ modelreg config get pull.mode",
    no_args_is_help=True,
    rich_markup_mode=None,
)
app.add_typer(config_app)


remote_app = typer.Typer(
    name="remote",
    help="Name the registries at other locations (a shared directory, or an object-store URL).\n\n"
    "Remotes live in the user's config file; `modelreg -r NAME COMMAND` works on one, and "
    "`modelreg push REF --to NAME` copies versions to one.\n\n"
    "\b\nExamples:\n  $ modelreg remote add team /shared/models\n  $ modelreg remote ls",
    no_args_is_help=True,
    rich_markup_mode=None,
)
app.add_typer(remote_app)
cache_app = typer.Typer(
    name="cache",
    help="Show the local cache of remote registries' blobs: where it is, how many blobs, how many bytes.\n\n"
    "A pull from a remote registry keeps each blob it downloads (verified against its digest) in this cache, "
    "so that a second pull downloads nothing. It is $XDG_CACHE_HOME/modelreg unless `cache.dir` is set "
    "(`modelreg config set --user cache.dir DIR`), belongs to no registry, and can be emptied at any time.\n\n"
    "\b\nExamples:\n  $ modelreg cache\n  $ modelreg cache prune --older-than 30d",
    invoke_without_command=True,
    rich_markup_mode=None,
)
app.add_typer(cache_app)


@dataclass
class State:
    root: Optional[str] = None  # a str: a Path would fold the // of an object-store URL
    remote: Optional[str] = None

    def location(self):
        """The registry the global options name: --root, or -r's remote URL, or None (search)."""
        if self.remote is None:
            return self.root
        from ..config import remote

        return remote(self.remote)["url"]

    def open(self, out: Output) -> Registry:
        return Registry.open(self.location(), notify=out.note)

    def open_or_init(self, out: Output) -> Registry:
        return Registry.open_or_init(self.location(), notify=out.note)


def _version(ctx: typer.Context, value: bool) -> None:
    if value and not ctx.resilient_parsing:  # never print into a completion answer
        typer.echo(f"modelreg {__version__}")  # Click's echo: entry maps its write errors
        raise typer.Exit()


@app.callback()
def main_callback(
    ctx: typer.Context,
    root: Annotated[Optional[str], typer.Option(
        "--root", metavar="PATH", autocompletion=callbacks.path,
        help="Registry to use: the .modelreg directory or the directory holding it, or an s3://BUCKET/PREFIX URL "
        "[default: $MODELREG_DIR, else the nearest .modelreg upward].")] = None,
    remote: Annotated[Optional[str], typer.Option(
        "-r", "--remote", metavar="NAME", autocompletion=callbacks.remote,
        help="Use the registry at this remote's location (see `modelreg remote`); not with --root.")] = None,
    version: Annotated[bool, typer.Option(
        "--version", callback=_version, is_eager=True, help="Print the version and exit.")] = False,
) -> None:
    """A local, git-like model registry.

    Log a directory as an immutable model version, link good versions into registered
    models, move aliases such as staging and production, and pull exact files back.

    \b
    Examples:
      $ modelreg log ckpt/ -n resnet -a best
      $ modelreg link resnet:best classifier -a staging
      $ modelreg pull classifier:production -o model/
    """
    if root is not None and remote is not None:
        raise InvalidInput("--root and --remote cannot be used together", hint="pick one registry")
    ctx.obj = State(root, remote)


def state(ctx: typer.Context) -> State:
    return ctx.find_root().obj or State()


# Output-mode options, shared by every command that reports something.
JsonOpt = Annotated[bool, typer.Option("--json", help="Print exactly one JSON document on stdout.")]
PlainOpt = Annotated[bool, typer.Option("--plain", help="Print tab-separated rows: no header, no colour, no truncation.")]
QuietOpt = Annotated[bool, typer.Option("-q", "--quiet", help="Print only the essential ids on stdout, and nothing but errors on stderr.")]
ForceOpt = Annotated[bool, typer.Option("--force", help="Allow moving or removing a protected alias.")]
ReasonOpt = Annotated[Optional[str], typer.Option("--reason", metavar="TEXT", help="Why: recorded in the history with each alias change.")]
AliasOpt = Annotated[Optional[list[str]], typer.Option("-a", "--alias", metavar="ALIAS", help="Point this alias at the version (repeatable).")]


def _aliases_text(aliases) -> str:
    return ", ".join(aliases)


# -- init ------------------------------------------------------------------------------


@app.command()
def init(
    ctx: typer.Context,
    # A str, not a Path: a Path folds the // of an object-store URL, which must be refused as one.
    directory: Annotated[str, typer.Argument(metavar="DIR", autocompletion=callbacks.path, help="Where to create .modelreg, or an s3://BUCKET/PREFIX URL to create the registry at [default: the current directory].")] = ".",
    json_mode: JsonOpt = False, plain: PlainOpt = False, quiet: QuietOpt = False,
) -> None:
    """Create a registry in DIR/.modelreg, or at a URL; running it again changes nothing.

    \b
    Examples:
      $ modelreg init
      $ modelreg init /shared/models
      $ modelreg init s3://ml-models/registry
    """
    out = Output(json_mode, plain, quiet)
    root = state(ctx).location()
    reg = Registry.init(root if root is not None and directory == "." else directory, notify=out.note)
    out.report(forms.INIT, reg)


# -- log -------------------------------------------------------------------------------


@app.command()
def log(
    ctx: typer.Context,
    paths: Annotated[list[Path], typer.Argument(metavar="PATH", help="A directory (its contents become the version's root), or files.")],
    name: Annotated[Optional[str], typer.Option("-n", "--name", metavar="NAME", autocompletion=callbacks.collection, help="Artifact name, optionally entity/project/name [default: the basename of the single PATH].")] = None,
    alias: AliasOpt = None,
    meta: Annotated[Optional[list[str]], typer.Option("-m", "--meta", metavar="KEY=VALUE", help="Metadata; VALUE is parsed as JSON when it parses, else kept as a string (repeatable).")] = None,
    meta_file: Annotated[Optional[Path], typer.Option("--meta-file", metavar="FILE", help="A JSON object of metadata, merged before -m.")] = None,
    description: Annotated[str, typer.Option("-d", "--description", metavar="TEXT", help="A description of this version.")] = "",
    run: Annotated[Optional[str], typer.Option("--run", metavar="ID", help="The training run that produced it, recorded with the producer.")] = None,
    input_: Annotated[Optional[list[str]], typer.Option("--input", metavar="REF", autocompletion=callbacks.ref, help="A version this one was made from (repeatable).")] = None,
    exclude: Annotated[Optional[list[str]], typer.Option("--exclude", metavar="PATTERN", help="Skip paths matching this shell pattern, e.g. '*.tmp' (repeatable).")] = None,
    force: ForceOpt = False, reason: ReasonOpt = None,
    json_mode: JsonOpt = False, plain: PlainOpt = False, quiet: QuietOpt = False,
) -> None:
    """Store files as a new version of an artifact and print its ref.

    Identical content makes no new version: the existing ref is printed (and the aliases
    given are applied to it). Creates a registry in the current directory if none is found.

    \b
    Examples:
      $ modelreg log ckpt/ -n resnet -a best -m epoch=3 -m val_acc=0.91
      resnet:v0
      $ modelreg log model.pt tokenizer.json -n bert --exclude '*.tmp'
    """
    out = Output(json_mode, plain, quiet)
    metadata = load_meta_file(meta_file) if meta_file is not None else {}
    metadata.update(parse_metadata_items(meta or []))
    # The merged metadata has its own size, and text from argv may not be UTF-8: all of it
    # is checked before a first log creates a registry.
    metadata, _ = check_log_options(metadata, description, run, input_ or [], force, reason)
    if len(paths) > 1 and not name:
        raise InvalidInput("several paths need a name", hint="add -n NAME")
    try:
        reg = state(ctx).open(out)
    except NotFound:
        if input_:
            raise  # an input names a version, which needs an existing registry
        prepare_log([str(p) for p in paths], name, alias or [], exclude or [])  # refused input creates no registry
        reg = state(ctx).open_or_init(out)
    with out.progress("logging", lambda: _source_bytes(paths, exclude or [])) as advance:
        result = reg.log([str(p) for p in paths], name, aliases=alias or [], metadata=metadata,
                         description=description, run=run, inputs=input_ or [], exclude=exclude or [],
                         force=force, reason=reason, on_progress=advance)
    _print_logged(out, result)


def _source_bytes(paths: list[Path], exclude: list[str]) -> int:
    """The bytes `log` will read, for the progress bar: the same walk `log` makes, so that
    the bar ends at its total (run only when a bar can be drawn)."""
    from ..errors import Error
    from ..scan import scan

    try:
        return sum(f.size for f in scan([str(p) for p in paths], exclude))
    except Error:
        return 0  # no bar: `log` itself reports what is wrong


def _print_logged(out: Output, result) -> None:
    out.report(result.form, result)


# -- link ------------------------------------------------------------------------------


@app.command()
def link(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(metavar="REF", autocompletion=callbacks.ref, help="The version to link (a link's ref links its source).")],
    registered: Annotated[str, typer.Argument(metavar="REGISTERED", autocompletion=callbacks.registered, help="The registered model, created on first use; [[entity/]project/]name.")],
    alias: AliasOpt = None,
    description: Annotated[str, typer.Option("-d", "--description", metavar="TEXT", help="A description of this link.")] = "",
    force: ForceOpt = False, reason: ReasonOpt = None,
    json_mode: JsonOpt = False, plain: PlainOpt = False, quiet: QuietOpt = False,
) -> None:
    """Link a version into a registered model and print the link's ref.

    Linking a version that is already linked there returns the existing link and applies
    the aliases given.

    \b
    Examples:
      $ modelreg link resnet:v3 classifier -a staging
      classifier:v1
      $ modelreg link resnet:best vision/classifier
    """
    out = Output(json_mode, plain, quiet)
    reg = state(ctx).open(out)
    result = reg.link(ref, registered, aliases=alias or [], description=description, force=force, reason=reason)
    if not result.new:
        out.note(f"{result.source} is already linked as {result.ref}")
    _print_logged(out, result)


# -- alias -----------------------------------------------------------------------------


@app.command()
def alias(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(metavar="REF", autocompletion=callbacks.ref, help="The version (or, with --delete and no selector, the collection).")],
    aliases: Annotated[list[str], typer.Argument(metavar="ALIAS", autocompletion=callbacks.alias, help="Aliases to set, move or (with --delete) remove.")],
    delete: Annotated[bool, typer.Option("--delete", help="Remove the aliases instead of setting them.")] = False,
    expect: Annotated[Optional[str], typer.Option("--expect", metavar="SELECTOR", help="Change nothing unless every alias now points at SELECTOR (v<N>, an alias, or 'none' for unset).")] = None,
    force: ForceOpt = False, reason: ReasonOpt = None,
    json_mode: JsonOpt = False, plain: PlainOpt = False, quiet: QuietOpt = False,
) -> None:
    """Point aliases at a version, moving them within its collection; all or none.

    \b
    Examples:
      $ modelreg alias classifier:v3 staging
      $ modelreg alias classifier:v3 production --expect v1 --force --reason "beats v1 on eval"
      $ modelreg alias --delete classifier staging
    """
    out = Output(json_mode, plain, quiet)
    reg = state(ctx).open(out)
    if delete:
        if expect is not None:
            raise InvalidInput("--expect cannot be used with --delete", hint="give the version as REF: name:v<N>")
        out.report(forms.UNALIAS, reg.unalias(ref, aliases, force=force, reason=reason))
        return
    result = reg.alias(ref, aliases, expect=expect, force=force, reason=reason)
    out.report(forms.ALIAS, result, human=lambda r: out.write(f"{r.ref}\t{_aliases_text(r.aliases)}"))


# -- ls --------------------------------------------------------------------------------


@app.command()
def ls(
    ctx: typer.Context,
    target: Annotated[Optional[str], typer.Argument(metavar="NAME|REF|PROJECT/", autocompletion=callbacks.ref, help="Nothing: every collection; PROJECT/: one project's; NAME: its versions; REF: that version's files.")] = None,
    kind: Annotated[Optional[Literal["artifact", "registered"]], typer.Option("--kind", metavar="KIND", help="Only artifacts or only registered models (artifact|registered).")] = None,
    sort: Annotated[Optional[str], typer.Option("--sort", metavar="FIELD", help="Sort versions by version, created, size or metadata.KEY; prefix - for descending.")] = None,
    where: Annotated[Optional[list[str]], typer.Option("--where", metavar="metadata.KEY=VALUE", help="Keep versions whose metadata KEY equals VALUE (JSON when it parses; repeatable).")] = None,
    json_mode: JsonOpt = False, plain: PlainOpt = False, quiet: QuietOpt = False,
) -> None:
    """List collections, the versions of one, or the files of a version.

    \b
    Examples:
      $ modelreg ls
      $ modelreg ls resnet --sort -metadata.val_acc -q | head -1
      $ modelreg ls resnet:v3 --json
    """
    out = Output(json_mode, plain, quiet)
    reg = state(ctx).open(out)
    if target is None or target.endswith("/"):
        if sort or where:
            raise InvalidInput("--sort and --where apply to the versions of one collection", hint="use `modelreg ls NAME --sort FIELD`")
        _ls_collections(out, reg.collections(target, kind=kind))
    elif ":" in target:
        if sort or where or kind:
            raise InvalidInput("--sort, --where and --kind do not apply to the files of a version")
        _ls_files(out, reg.files(target))
    else:
        if kind:
            raise InvalidInput("--kind applies to the list of collections", hint="use `modelreg ls --kind KIND`")
        _ls_versions(out, reg.versions(target, sort=sort, where=where or []))


def _ls_collections(out: Output, collections) -> None:
    out.report(forms.COLLECTIONS, collections, human=lambda collections: out.table(["name", "kind", "versions", "latest", "aliases", "size", "updated"],
                  [[c.display, c.kind, c.versions, "" if c.latest is None else f"v{c.latest}",
                    ", ".join(f"{a}→v{n}" for a, n in c.aliases.items()), human_size(c.size), human_time(c.updated)]
                   for c in collections], empty="no collections yet; `modelreg log PATH` makes one",
                  styles=["ref", None, None, "ref", "alias", None, None]))


def _ls_versions(out: Output, versions) -> None:
    out.report(forms.VERSIONS, versions, human=lambda versions: _versions_table(out, versions))


def _versions_table(out: Output, versions) -> None:
    registered = bool(versions) and versions[0].kind == "registered"
    columns = ["version", "aliases", "digest", "size", "files", "created"] + (["source"] if registered else ["links"])
    out.table(columns, [[f"v{v.version}", ", ".join(v.aliases), v.digest[:12], human_size(v.size), v.file_count,
                         human_time(v.created),
                         (v.source + (" (dangling)" if v.dangling else "")) if registered else ", ".join(v.links)]
                        for v in versions], empty="no versions",
              styles=["ref", "alias", None, None, None, None, "ref"],
              row_styles=["bad" if registered and v.dangling else None for v in versions])


def _ls_files(out: Output, files) -> None:
    out.report(forms.FILE, files, human=lambda files: out.table(
        ["path", "size", "digest", "exec"],
        [[f.path, human_size(f.size), f.digest[:12], "x" if f.executable else ""] for f in files]))


# -- show ------------------------------------------------------------------------------


@app.command()
def show(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(metavar="REF", autocompletion=callbacks.ref, help="The version or link to show.")],
    json_mode: JsonOpt = False, plain: PlainOpt = False, quiet: QuietOpt = False,
) -> None:
    """Show one version in full: digest, size, metadata, inputs, producer, aliases, files, links.

    For a link, shows the link's own number, aliases and description with its source's content.

    \b
    Examples:
      $ modelreg show resnet:best
      $ modelreg show classifier:production --json
    """
    out = Output(json_mode, plain, quiet)
    reg = state(ctx).open(out)
    info = reg.show(ref)
    if info.dangling:
        out.warn(f"{info.ref} is a dangling link: its source {info.source} was deleted")
    out.report(forms.SHOW, info, human=lambda info: _show_panel(out, info))


def _show_panel(out: Output, info) -> None:
    from rich.panel import Panel
    from rich.table import Table

    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    from rich.markup import escape

    # Every user value passes term_safe part by part, so that only the joins below break lines.
    rows = [("digest", info.digest), ("size", f"{human_size(info.size)} ({info.size} bytes)"),
            ("created", info.created), ("aliases", ", ".join(info.aliases) or "-")]
    if info.kind == "registered":
        rows.append(("source", escape(term_safe(info.source)) + ("  [red](dangling)[/red]" if info.dangling else "")))
    if info.description:  # a multi-line description keeps its lines; each is made safe
        rows.append(("description", "\n".join(term_safe(line) for line in info.description.split("\n"))))
    if info.metadata:
        rows.append(("metadata", "\n".join(f"{term_safe(k)} = {term_safe(json.dumps(v))}" for k, v in info.metadata.items())))
    if info.inputs:
        rows.append(("inputs", "\n".join(f"{term_safe(i.get('ref'))}  {term_safe(str(i.get('digest', ''))[:12])}"
                                         for i in info.inputs)))
    producer = info.producer
    if producer:
        who = term_safe(f"{producer.get('user', '?')}@{producer.get('host', '?')}  {producer.get('cwd', '')}")
        if producer.get("run"):
            who += f"\nrun {term_safe(producer['run'])}"
        git = producer.get("git")
        if git:
            who += f"\ngit {git.get('commit', '')[:12]}" + (" (dirty)" if git.get("dirty") else "")
        rows.append(("producer", who))
    if info.links:
        rows.append(("linked in", term_safe(", ".join(info.links))))
    rows.append(("files", "\n".join(f"{term_safe(f.path)}  {human_size(f.size)}{'  (x)' if f.executable else ''}"
                                    for f in info.files) or "-"))
    for key, value in rows:
        grid.add_row(key, value if key == "source" else escape(str(value)))
    out.render(Panel(grid, title=escape(term_safe(f"{info.ref} ({info.kind})")), title_align="left", expand=False))


# -- pull ------------------------------------------------------------------------------

Mode = Annotated[Optional[Literal["auto", "reflink", "copy", "hardlink", "symlink"]], typer.Option("--mode", metavar="MODE", help="How files are placed: auto (reflink, else copy), reflink, copy, hardlink or symlink [default: pull.mode, else auto].")]


@app.command()
def pull(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(metavar="REF", autocompletion=callbacks.ref, help="The version or link to put on disk.")],
    output: Annotated[Optional[Path], typer.Option("-o", "--output", metavar="DIR", help="Target directory [default: ./<name>-v<N>].")] = None,
    mode: Mode = None,
    file: Annotated[Optional[list[str]], typer.Option("--file", metavar="PATTERN", autocompletion=callbacks.version_file, help="Only paths matching this shell pattern (repeatable).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite files in DIR whose content differs.")] = False,
    verify: Annotated[Optional[bool], typer.Option("--verify/--no-verify", help="Hash content while copying (default for copies); --verify also re-hashes linked blobs.")] = None,
    json_mode: JsonOpt = False, plain: PlainOpt = False, quiet: QuietOpt = False,
) -> None:
    """Write a version's files into a directory and print the directory.

    A directory that already holds exactly these files is left as it is; a file whose
    content differs is a conflict unless --force.

    \b
    Examples:
      $ modelreg pull classifier:production -o model/
      $ modelreg pull resnet:v3 --file '*.json'
      $ modelreg pull resnet --mode hardlink
    """
    out = Output(json_mode, plain, quiet)
    reg = state(ctx).open(out)
    with out.progress("pulling", lambda: _selected_bytes(reg, ref, file or [])) as advance:
        result = reg.pull(ref, output, mode=mode, files=file or [], force=force, verify=verify, on_progress=advance)
    out.report(forms.PULL, result)


def _selected_bytes(reg: Registry, ref: str, patterns: list[str]) -> int:
    """The bytes `pull` will place, for the progress bar: only the files --file selects."""
    import fnmatch

    return sum(f.size for f in reg.files(ref)
               if not patterns or any(fnmatch.fnmatchcase(f.path, p) for p in patterns))


# -- diff ------------------------------------------------------------------------------


@app.command()
def diff(
    ctx: typer.Context,
    left: Annotated[str, typer.Argument(metavar="REF", autocompletion=callbacks.ref, help="The old version.")],
    right: Annotated[str, typer.Argument(metavar="REF", autocompletion=callbacks.ref, help="The new version.")],
    json_mode: JsonOpt = False, plain: PlainOpt = False, quiet: QuietOpt = False,
) -> None:
    """Compare two versions: files added, removed and changed, and metadata differences.

    Exits 0 whether or not they differ; no blob is read.

    \b
    Examples:
      $ modelreg diff resnet:v2 resnet:v3
      $ modelreg diff classifier:production resnet:latest --json
    """
    out = Output(json_mode, plain, quiet)
    reg = state(ctx).open(out)
    out.report(forms.DIFF, reg.diff(left, right), human=lambda result: _diff_tables(out, result))


def _diff_tables(out: Output, result) -> None:
    if result.same:
        out.note("no differences")
        return
    rows = forms.DIFF.lines(result)
    files = [row[:2] for row in rows if row[0] != "metadata"]
    meta = [[key, old or "-", new or "-"] for change, key, old, new in rows if change == "metadata"]
    if files:
        out.table(["change", "path"], files)
    if meta:
        out.table(["metadata", "old", "new"], meta)


# -- history ---------------------------------------------------------------------------

@app.command()
def history(
    ctx: typer.Context,
    target: Annotated[str, typer.Argument(metavar="NAME[:SELECTOR]", autocompletion=callbacks.ref, help="A collection, or one version (vN, latest, digest prefix) or alias of it.")],
    json_mode: JsonOpt = False, plain: PlainOpt = False, quiet: QuietOpt = False,
) -> None:
    """Show the events of a collection, oldest first: logs, links, alias moves, deletions.

    \b
    Examples:
      $ modelreg history classifier
      $ modelreg history classifier:production --json
    """
    out = Output(json_mode, plain, quiet)
    reg = state(ctx).open(out)
    out.report(forms.HISTORY, reg.history(target), human=lambda events: _history_table(out, events))


def _history_table(out: Output, events) -> None:
    def v(n):
        return "" if n is None else f"v{n}"

    def who(e):  # on a shared registry, where a change came from matters as much as who made it
        return f"{e.get('user')}@{e['host']}" if e.get("host") else e.get("user")

    out.table(["time", "event", "user", "version", "alias", "from → to", "source", "reason"],
              [[human_time(e.get("time")), e.get("event"), who(e), v(e.get("version")), e.get("alias", ""),
                f"{v(e.get('from'))} → {v(e.get('to'))}" if "from" in e or "to" in e else "",
                e.get("source", ""), e.get("reason", "")] for e in events], empty="no events",
              styles=[None, None, None, "ref", "alias", None, "ref", None])


# -- rm --------------------------------------------------------------------------------


@app.command()
def rm(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(metavar="REF", autocompletion=callbacks.ref, help="The version to delete, or with --all the collection.")],
    all_: Annotated[bool, typer.Option("--all", help="Delete every version of the collection NAME.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Delete even a version that holds an alias or is linked; its aliases are removed and recorded.")] = False,
    reason: ReasonOpt = None,
    json_mode: JsonOpt = False, plain: PlainOpt = False, quiet: QuietOpt = False,
) -> None:
    """Delete a version, or every version of a collection; numbers are never reused.

    \b
    Examples:
      $ modelreg rm resnet:v2
      $ modelreg rm resnet --all --force --reason "retired"
    """
    out = Output(json_mode, plain, quiet)
    reg = state(ctx).open(out)
    out.report(forms.RM, reg.rm(ref, all=all_, force=force, reason=reason))


# -- gc and fsck -----------------------------------------------------------------------


def _count(n: int, what: str) -> str:
    return f"{n} {what}" if n == 1 else f"{n} {what}{'es' if what.endswith('s') else 's'}"


@app.command()
def gc(
    ctx: typer.Context,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Report what would be removed; remove nothing.")] = False,
    grace: Annotated[Optional[str], typer.Option("--grace", metavar="DURATION", help="Only remove what is older than this: 0, or a number followed by s, m, h, d or w [default: gc.grace, else 24h].")] = None,
    json_mode: JsonOpt = False, plain: PlainOpt = False, quiet: QuietOpt = False,
) -> None:
    """Remove blobs no live version references, and leftovers of interrupted writes.

    Deleted versions' blobs, manifests no change record names, temporary files and locks
    of dead processes go; anything younger than the grace period stays. Safe while
    other commands run: gc waits for in-flight logs, and new ones wait for gc.

    \b
    Examples:
      $ modelreg gc --dry-run
      $ modelreg gc --grace 0 --json
    """
    out = Output(json_mode, plain, quiet)
    reg = state(ctx).open(out)
    out.report(forms.GC, reg.gc(dry_run=dry_run, grace=grace), human=lambda result: _gc_summary(out, result))


@app.command()
def upgrade(
    ctx: typer.Context,
    json_mode: JsonOpt = False, plain: PlainOpt = False, quiet: QuietOpt = False,
) -> None:
    """Upgrade a registry written by modelreg 0.1.0 (format 1) to format 2.

    Stops 0.1.0 writers first (a 0.1.0 process still running afterwards is refused, exit
    4), writes every collection's history as its first change record, and sets format 2
    last. Safe to interrupt and to run again; a format-2 registry is left as it is.

    \b
    Examples:
      $ modelreg upgrade
      $ modelreg --root /shared/models upgrade --json
    """
    out = Output(json_mode, plain, quiet)
    reg = state(ctx).open(out)
    out.report(forms.UPGRADE, reg.upgrade(), human=lambda r: out.write(
        f"upgraded {_count(r['collections'], 'collection')} to format {r['format']}" if r["upgraded"]
        else f"already format {r['format']}; nothing to do"))


def _gc_summary(out: Output, result) -> None:
    dry_run = result.dry_run
    parts = [f"{_count(result.blobs, 'blob')} ({human_size(result.bytes)})"]
    if result.tmp:
        parts.append(_count(result.tmp, "temporary file"))
    if result.locks:
        parts.append(_count(result.locks, "stale lock"))
    if result.repaired:
        parts.append(_count(result.repaired, "torn history line"))
    # Format 2's other leftovers have no count of their own in the JSON: they are in `removed`.
    for kind, what in (("manifest", "unnamed manifest"), ("mark", '"linked into" mark')):
        n = sum(1 for r in result.removed if r.kind == kind)
        if n:
            parts.append(_count(n, what))
    if len(parts) == 1 and not result.blobs:
        out.write("nothing to remove")
    else:
        out.write(("would remove " if dry_run else "removed ") + ", ".join(parts))
    if result.kept:
        out.note(f"kept {_count(result.kept, 'unreferenced blob')} younger than the grace period "
                 f"({result.grace} s); `--grace 0` removes them too")


@app.command()
def fsck(
    ctx: typer.Context,
    quick: Annotated[bool, typer.Option("--quick", help="Check blob sizes instead of re-hashing their content.")] = False,
    json_mode: JsonOpt = False, plain: PlainOpt = False, quiet: QuietOpt = False,
) -> None:
    """Check the registry: every blob, manifest, change record, alias, link and snapshot.

    Lists each problem (exit 1 if there is any). Leftovers of interrupted writes are
    listed as reclaimable by `modelreg gc`, and dangling links as notes; neither is a
    problem.

    \b
    Examples:
      $ modelreg fsck
      $ modelreg fsck --quick --json
      $ modelreg fsck -q || echo "registry damaged"
    """
    from ..maintenance import store_bytes

    out = Output(json_mode, plain, quiet)
    reg = state(ctx).open(out)
    with out.progress("checking", lambda: 0 if quick else store_bytes(reg)) as advance:
        result = reg.fsck(quick=quick, on_progress=advance)
    for link, source in result.dangling:
        out.note(f"{link} is a dangling link: its source {source} was deleted")
    out.report(forms.FSCK, result, human=lambda result: _fsck_summary(out, result))
    if not result.ok:
        raise typer.Exit(1)


def _fsck_summary(out: Output, result) -> None:
    if result.problems:
        out.table(["kind", "object", "problem"], [[p.kind, p.object, p.message] for p in result.problems])
    if result.reclaimable:
        out.table(["kind", "reclaimable", "why"], [[r.kind, r.object, r.message] for r in result.reclaimable])
    checked = result.checked
    out.write(f"checked {_count(checked['blobs'], 'blob')} ({human_size(checked['bytes'])}), "
              f"{_count(checked['versions'], 'version')}, {_count(checked['links'], 'link')}, "
              f"{_count(checked['aliases'], 'alias')}: "
              + (_count(len(result.problems), "problem") if result.problems else "no problems")
              + (f"; {human_size(result.reclaimable_bytes)} reclaimable by `modelreg gc`"
                 if result.reclaimable else ""))


# -- config ----------------------------------------------------------------------------

KeyArg = Annotated[str, typer.Argument(metavar="KEY", autocompletion=callbacks.config_key, help="A config key, e.g. pull.mode.")]
UserOpt = Annotated[bool, typer.Option("--user", help="Use the user's config file ($XDG_CONFIG_HOME/modelreg/config.toml), not the registry's.")]


@config_app.command("get")
def config_get(ctx: typer.Context, key: KeyArg, user: UserOpt = False,
               json_mode: JsonOpt = False, plain: PlainOpt = False, quiet: QuietOpt = False) -> None:
    """Print a key's value (its default when unset).

    \b
    Examples:
      $ modelreg config get aliases.protected
      $ modelreg config get --user remote.team.url
    """
    from ..config import UserConfig, check_key

    out = Output(json_mode, plain, quiet)
    if user:
        config = UserConfig.load()
        config.spec(key)  # an unknown key is exit 2 before anything is read
        value = config.get(key)
    else:
        value = state(ctx).open(out).config.get(check_key(key))
    out.report(forms.CONFIG_GET, (key, value))


@config_app.command("set")
def config_set(ctx: typer.Context, key: KeyArg,
               value: Annotated[str, typer.Argument(metavar="VALUE", help="The new value; a list takes comma-separated values.")],
               user: UserOpt = False) -> None:
    """Set a key in .modelreg/config.toml (with --user: in the user's config file).

    \b
    Examples:
      $ modelreg config set pull.mode hardlink
      $ modelreg config set aliases.protected production,staging
      $ modelreg config set --user remote.timeout 2m
    """
    if user:
        from ..config import UserConfig, edit_user_config

        UserConfig(Path(), {}).set(key, value)  # a bad key or value is refused before any lock
        edit_user_config(lambda config: (config.set(key, value), (True, None))[1])
        return
    state(ctx).open(Output()).config_set(key, value)


@config_app.command("unset")
def config_unset(ctx: typer.Context, key: KeyArg, user: UserOpt = False) -> None:
    """Remove a key, so its default applies again.

    \b
    Examples:
      $ modelreg config unset pull.mode
      $ modelreg config unset --user cache.dir
    """
    from ..config import UserConfig, check_key, edit_user_config

    out = Output()
    if user:
        UserConfig(Path(), {}).spec(key)
        removed = edit_user_config(lambda config: (lambda r: (r, r))(config.unset(key)))
    else:
        removed = state(ctx).open(out).config_unset(check_key(key))
    if not removed:
        out.note(f"{key} was not set")


@config_app.command("list")
def config_list(ctx: typer.Context, user: UserOpt = False,
                json_mode: JsonOpt = False, plain: PlainOpt = False, quiet: QuietOpt = False) -> None:
    """List every key with its value (defaults included).

    \b
    Examples:
      $ modelreg config list --plain
      $ modelreg config list --user
    """
    from ..config import UserConfig, format_value

    out = Output(json_mode, plain, quiet)
    config = UserConfig.load() if user else state(ctx).open(out).config
    items = config.items()
    out.report(forms.CONFIG_LIST, {key: value for key, value, _ in items}, human=lambda _: out.table(
        ["key", "value", "source"], [[k, format_value(v), "config.toml" if s else "default"] for k, v, s in items]))


# -- remote ----------------------------------------------------------------------------

RemoteArg = Annotated[str, typer.Argument(metavar="NAME", autocompletion=callbacks.remote, help="The remote's name.")]


@remote_app.command("add")
def remote_add(
    name: Annotated[str, typer.Argument(metavar="NAME", help="A name for the remote (the rules of collection names).")],
    url: Annotated[str, typer.Argument(metavar="URL", help="A directory (stored absolute) or an s3://, gs:// or az:// URL.")],
    endpoint: Annotated[Optional[str], typer.Option("--endpoint", metavar="URL", help="The S3-compatible service's endpoint URL (MinIO, Ceph RGW, R2).")] = None,
) -> None:
    """Add a named remote to the user's config file.

    Adding a name again with the same URL changes nothing; with another URL it is
    refused (exit 4): remove it first.

    \b
    Examples:
      $ modelreg remote add team /shared/models
      $ modelreg remote add cloud s3://bucket/models --endpoint http://minio:9000
    """
    from ..config import add_remote

    if not add_remote(name, url, endpoint):
        Output().note(f"remote {name} already names {url}; nothing changed")


@remote_app.command("ls")
def remote_ls(json_mode: JsonOpt = False, plain: PlainOpt = False, quiet: QuietOpt = False) -> None:
    """List the named remotes with their URLs.

    \b
    Examples:
      $ modelreg remote ls
      $ modelreg remote ls -q
    """
    from ..config import UserConfig

    out = Output(json_mode, plain, quiet)
    remotes = list(UserConfig.load().remotes().items())
    out.report(forms.REMOTES, remotes, human=lambda rows: out.table(
        ["name", "url", "endpoint"], [[n, r["url"], r.get("endpoint") or ""] for n, r in rows],
        empty="no remotes; add one with `modelreg remote add NAME URL`"))


@remote_app.command("rm")
def remote_rm(name: RemoteArg) -> None:
    """Remove a named remote from the user's config file (the registry there is untouched).

    \b
    Examples:
      $ modelreg remote rm team
    """
    from ..config import remove_remote

    remove_remote(name)


# -- cache -----------------------------------------------------------------------------


@cache_app.callback()
def cache_show(ctx: typer.Context, json_mode: JsonOpt = False, plain: PlainOpt = False,
               quiet: QuietOpt = False) -> None:
    if ctx.invoked_subcommand is not None:
        return
    from ..remote import cache_root, cache_size

    out = Output(json_mode, plain, quiet)
    root = cache_root()
    blobs, size = cache_size(root)
    data = {"path": str(root), "blobs": blobs, "bytes": size}
    out.report(forms.CACHE, data, human=lambda d: out.write(
        f"{d['path']}: {d['blobs']} blob{'s' if d['blobs'] != 1 else ''}, {human_size(d['bytes'])}"))


@cache_app.command("prune")
def cache_prune(
    older_than: Annotated[Optional[str], typer.Option("--older-than", metavar="DURATION", help="Remove only blobs no pull has used for this long, e.g. 30d [default: remove all].")] = None,
    json_mode: JsonOpt = False, plain: PlainOpt = False, quiet: QuietOpt = False,
) -> None:
    """Empty the local cache, or remove the blobs no pull has used for DURATION.

    Nothing stored in any registry is touched: a later pull downloads again what it needs.

    \b
    Examples:
      $ modelreg cache prune
      $ modelreg cache prune --older-than 2w
    """
    from ..config import parse_duration
    from ..remote import cache_root, prune_cache

    out = Output(json_mode, plain, quiet)
    seconds = None if older_than is None else parse_duration(older_than)
    root = cache_root()
    removed, size = prune_cache(root, seconds)
    data = {"path": str(root), "removed": removed, "bytes": size}
    out.report(forms.CACHE_PRUNE, data, human=lambda d: out.note(
        f"removed {d['removed']} blob{'s' if d['removed'] != 1 else ''} ({human_size(d['bytes'])}) from {d['path']}"))


# -- push ------------------------------------------------------------------------------


def _push_bytes(reg: Registry, refs: list[str]) -> int:
    """The bytes of the versions named, for the progress bar (run only when one can be drawn)."""
    from ..errors import Error

    total = 0
    for ref in refs:
        try:
            if ":" in ref:
                total += reg.resolve(ref).size
            else:
                total += sum(v.size for v in reg.versions(ref))
        except Error:
            pass  # `push` itself reports what is wrong
    return total


@app.command()
def push(
    ctx: typer.Context,
    refs: Annotated[list[str], typer.Argument(metavar="REF", autocompletion=callbacks.ref, help="A version, or a collection name for every live version of it.")],
    to: Annotated[str, typer.Option("--to", metavar="REMOTE|PATH", autocompletion=callbacks.remote, help="A remote's name, or the directory of the target registry (created when absent).")],
    as_name: Annotated[Optional[str], typer.Option("--as", metavar="NAME", help="Push into this collection name instead of the source's.")] = None,
    json_mode: JsonOpt = False, plain: PlainOpt = False, quiet: QuietOpt = False,
) -> None:
    """Copy versions to another registry, by digest; print each SOURCE-REF -> TARGET-REF.

    A version whose file set the target already holds is reused; otherwise it takes the
    target's next number. Links are pushed after their sources, inputs before the versions
    made from them; aliases are never pushed.

    \b
    Examples:
      $ modelreg push resnet:v3 --to team
      resnet:v3 -> team resnet:v7   (printed with an arrow)
      $ modelreg push resnet --to /shared/models --as alice-resnet
    """
    out = Output(json_mode, plain, quiet)
    reg = state(ctx).open(out)
    with out.progress("pushing", lambda: _push_bytes(reg, refs)) as advance:
        pushed = reg.push(refs, to, as_name=as_name, on_progress=advance)
    out.report(forms.PUSH, pushed, human=lambda rows: out.lines(
        f"{p.source} \u2192 {p.to} {p.target}" + ("" if p.new else "  (already there)") for p in rows))
