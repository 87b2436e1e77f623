"""Hand-written prose of the man pages, one entry per command, written from SPEC.md.

`manpage` takes synopsis, options and examples from the command tree and everything
here for the rest. Text is a small subset of Markdown (see `manpage.prose_to_roff`):
blank-line paragraphs, `## Subsection`, `- ` bullets, `TERM::` lists, 4-space literal
blocks, `code`, `page(1)` and *METAVAR*.

The output keys are also the contract of `--plain` and `--json`:

- `plain_columns[form]`: the tab-separated columns, in order; `plain_rows[form]` says
  what one line is (absent: the form prints exactly one line). `show` prints one
  `field<TAB>value` line per field, in the order of `plain_fields["show"]`.
- `json_keys[form]`: the keys every JSON object of that form holds (others may be
  added, none renamed); `json_shape[form]` is "object" or "list" (of such objects).

A form is the command as typed, e.g. "ls", "ls NAME", "alias --delete", "config get".
How values are written in `--plain` is defined once, in the program page's OUTPUT.
"""

from __future__ import annotations

import inspect


def _paras(*texts: str) -> str:
    """Join prose written at different indentations into one text."""
    return "\n\n".join(inspect.cleandoc(t) for t in texts)


ENVIRONMENT = {
    "MODELREG_DIR": """
        The registry to use, as with `--root` (which wins): the `.modelreg` directory
        or the directory that holds it. Without either, the nearest `.modelreg` found
        walking up from the current directory is used.""",
    "MODELREG_ENTITY": """
        The entity of references that omit it; overrides `defaults.entity` of the
        configuration (default: `local`).""",
    "MODELREG_PROJECT": """
        The project of references that omit it; overrides `defaults.project` of the
        configuration (default: `default`).""",
    "MODELREG_DEBUG": """
        When `1`, an error also prints its Python traceback on standard error; the
        error line and the exit status stay the same.""",
    "NO_COLOR": """
        When set to a non-empty value, no colour is used, even on a terminal.""",
}

_REGISTRY_FILES = """
    `.modelreg/`::
        The registry, found through `--root`, `MODELREG_DIR`, or by walking up from
        the current directory. Its layout is described in `modelreg(1)`.
"""

_PROTECTED = """
    A protected alias (one named in the configuration's `aliases.protected`, by default
    `production`) may be set the first time freely; moving it, removing it or deleting
    the version it points at needs `--force`. `--reason` *TEXT* is recorded in the
    history with the change.
"""

PROSE: dict[str, dict] = {
    # -- the program page ------------------------------------------------------------
    "modelreg": {
        "description": """
            `modelreg` keeps trained models the way git keeps source. A training run
            logs a directory, or some files, as an immutable *model version*; the
            versions of one model line form a *model artifact* (`resnet:v0`,
            `resnet:v1`, ...). A *registered model* holds links to chosen versions of
            any artifacts and carries lifecycle aliases such as `production` and
            `staging`. Everything lives in a `.modelreg` directory: there is no server
            and no account, and it works offline.

            ## Concepts

            model version::
                An immutable set of files (path to content) plus metadata, a
                description, inputs and producer information. It never changes after
                it is written, and its number is never reused, even after deletion.
            model artifact::
                A named sequence of versions `v0`, `v1`, ... in logging order. A version
                belongs to exactly one artifact.
            registered model::
                A named sequence of links to versions of any artifacts, in any project,
                numbered `v0`, `v1`, ... in the registered model. Linking a version
                twice into one registered model returns the existing link; linking a
                link links its source, so links never chain.
            alias::
                A name that pins one version (or link) of one collection. It is unique
                there: setting it on another version moves it. Two aliases of one
                collection may not differ only by case. `latest` is not stored but
                computed: the highest live version number (for a registered model, the
                most recent link).
            protected alias::
                An alias named in the configuration's `aliases.protected` list (default:
                `production`). Setting it the first time is free; moving or removing
                it, or deleting the version it points at, needs `--force`, and
                `--reason` is recorded in the history.
            collection::
                An artifact or a registered model. Names are unique within a project
                across both kinds.

            ## References

            Commands name versions and collections with references:

                ref       := [[entity "/"] project "/"] name [":" selector]
                selector  := "v" DIGITS     version or link number
                           | alias          e.g. latest, best, production
                           | HEX{8,64}      prefix of the version digest

            - An omitted entity or project comes from `MODELREG_ENTITY` and
              `MODELREG_PROJECT`, else from the configuration (`defaults.entity`,
              `defaults.project`), else is `local` and `default`.
            - An omitted selector means `latest`, except where a command says that a
              bare name means the collection: `ls NAME`, `history NAME`,
              `alias --delete NAME`, `rm NAME --all`.
            - A selector is tried as `vN`, then as an alias, then as a digest prefix;
              a prefix that matches several versions is an error.
            - Entity, project and collection names match
              `^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`. Aliases match
              `^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$` and are never `v` followed by
              digits, never `none`, and never end in `.lock`; `latest` cannot be set
              or removed by hand.
            - A registered-model reference resolves through its link to the artifact
              version, so `pull`, `show`, `diff` and `ls REF` accept either kind. A
              link whose source was deleted is dangling: `show` prints it with a
              warning, and `pull`, `diff` and `ls REF` on it exit with status 3. It
              never resolves to anything else.
            - Output shows the shortest reference that resolves under the current
              defaults.

            ## Safety

            Every write into `.modelreg` goes to a temporary file that is flushed,
            synced (unless `core.fsync` is false) and renamed into place, so a crash or
            Ctrl-C never leaves anything half-written under its final name. Readers
            take no lock. Writers to one collection take its lock file in turn, so
            parallel commands (from `make -j`, say) each get their own version number;
            a lock held by a live process is waited for up to 10 seconds, then the
            command exits with status 4 naming the holder, and a lock left by a dead
            process is broken. A lock names its holder (host, pid, start time) from the
            moment it exists: it is written to a temporary file and linked into place,
            or on a full disk made a symbolic link whose target names the holder. A lock
            whose holder is gone from this host (or whose pid now belongs to another
            process) is broken at once, one that names no holder (as modelreg 0.1.0
            could leave) once it is 2 seconds old, one held from another host after 10
            minutes. Creating a collection claims its case-folded name first, so `Foo`
            and `foo` never both appear, also when created in parallel. Creating a
            registry is atomic too: parallel first `log` commands in one directory
            share one registry.
        """,
        "output": """
            Standard output carries only the result; progress, notes and warnings go to
            standard error. Every command that reports something takes these options
            after the command name:

            (default)::
                A table or panel for people. Colour (a bold header, references in cyan,
                aliases in yellow, a dangling link in red) and progress bars appear only
                on a terminal, never when `NO_COLOR` is set or `TERM` is `dumb`. Text
                that users supplied (descriptions, metadata, `--reason`, `--run`, file
                names) is shown with its control and other non-printable characters
                escaped, as git and `ls` do: `\\t`, `\\n` and `\\r` by name, any other
                as `\\x1b`, `\\u009b` or `\\u202e`; a description keeps its line
                breaks. Backslashes are shown as they are: `--plain` and `--json` give
                the exact values. Errors, notes and warnings on standard error are
                escaped the same way.
            `--plain`::
                Tab-separated lines, no header, no colour, no truncation, in the
                columns that each command's page lists.
            `--json`::
                Exactly one JSON document. Version numbers are integers (`3`),
                references are strings (`"resnet:v3"`), sizes are bytes and times are
                RFC 3339 UTC strings. Keys may be added but are never renamed without
                a "breaking" entry in the changelog.
            `-q`, `--quiet`::
                Only the essential ids, one per line (each page says which), and
                nothing on standard error but errors.

            ## Plain values

            A `--plain` line holds the values of the JSON object of the same name, in
            the documented column order, written so that every line has all its
            columns and no value holds a tab or a newline:

            - a missing or empty value (JSON `null`, `""` or `[]`) is `-`, because a
              shell `read` with `IFS` set to a tab merges empty fields;
            - numbers are written as in JSON, so version numbers are bare integers
              (`3`) while references carry the `v` (`resnet:v3`); booleans are `true`
              and `false`; sizes are bytes; times are RFC 3339 UTC; digests are whole;
            - a list is comma-separated without spaces (`best,production`);
            - an object, and every metadata value, is compact JSON with sorted keys
              (`{"epoch":3,"v":"1.10"}`), so that `1.10` and `"1.10"` stay apart;
            - in text, a backslash, tab, carriage return or newline is written as
              `\\\\`, `\\t`, `\\r` or `\\n`.

            ## Errors

            An error, usage errors included, is one line on standard error,
            `modelreg: error: ...`, sometimes followed by a `hint:` line saying what to
            do next. Standard output then stays empty. No traceback is printed unless
            `MODELREG_DEBUG=1`, which adds it before the error line and leaves the exit
            status as it would be without it.
        """,
        "exit_status": {
            0: "Success, also when there was nothing to do.",
            1: """The operation failed: an I/O error, a full disk, an integrity problem
                found (by `fsck`, say), a stored manifest that was tampered with.""",
            2: """Bad usage or invalid input: an unknown option, a bad name, alias,
                reference or metadata value, an unsafe input path.""",
            3: """Not found: no registry, no such collection, version, alias or file,
                a dangling link.""",
            4: """Refused: a conflict, a protected alias without `--force`, a lock held
                too long. `--force` overrides where a command offers it.""",
            130: "Interrupted (Ctrl-C); nothing half-written is left visible.",
            143: "Terminated (SIGTERM, as `make` or `timeout` send); nothing half-written is left visible.",
        },
        # Every command can end this way; each command page lists it with its own codes.
        "exit_status_common": {
            130: "Interrupted (Ctrl-C); nothing half-written is left visible.",
            143: "Terminated (SIGTERM); nothing half-written is left visible.",
        },
        "exit_status_notes": """
            A closed pipe on standard output (`modelreg ls | head -1`) ends the command
            quietly with status 0. Any other failure to write standard output (a full
            disk, `modelreg ls > /dev/full`, or a closed standard output,
            `modelreg ls >&-`) is status 1 with one error line,
            `modelreg: error: cannot write to standard output: ...`; a change the
            command made before it printed its result stays made.
        """,
        "environment": ENVIRONMENT,
        "files": """
            A registry is a `.modelreg` directory (format version 1):

                .modelreg/
                  config.toml               settings (format = 1)
                  objects/<2 hex>/<62 hex>  file contents by BLAKE3, read-only
                  tmp/                      writes in flight: <prefix>_<host>_<pid>_<unique>
                  locks/                    gc.lock, config.lock, writers/<host>-<pid>-<random>
                  collections/<entity>/<project>/
                    .<folded name>.name     claims a name in any case, made first
                    <name>/
                      collection.json       kind, created, description
                      versions/v<N>.json    manifest, link record or tombstone
                      aliases/<alias>       one line: v<N>
                      history.jsonl         events, appended
                      collection.lock       held while changing the collection

            `.modelreg/config.toml`::
                The configuration; see `modelreg-config(1)`.
            `.modelreg/objects/`::
                One read-only file per distinct content, shared by all versions that
                hold it. A version's digest is the BLAKE3 hash of its sorted list of
                path, content digest, size and executable bit, so equal file sets have
                equal digests whatever their metadata.
            `.modelreg/collections/`::
                Version manifests, link records, aliases and history as JSON and text
                files. A deleted version leaves a tombstone, which keeps its number
                from being reused. Caches kept beside them (version index, backlinks,
                a stat cache of logged files) are rebuilt when missing or stale.

            Leftovers of interrupted commands (temporary files, unreferenced blobs,
            stale locks) are harmless; `fsck` lists them and `gc` removes them. A
            temporary file's name carries the host and pid of the process writing it;
            a lock file holds its holder's, or is a symbolic link to
            `mrlock:HOST:PID:START:TIME` when the disk was full.
        """,
        "files_default": _REGISTRY_FILES,
        "examples": """
            A training script logs its checkpoint; the best one is promoted:

                $ modelreg log ckpt/ -n resnet -a best -m epoch=3 -m val_acc=0.91
                resnet:v0
                $ modelreg link resnet:best classifier -a staging
                classifier:v0
                $ modelreg alias classifier:v0 production --reason "beats baseline"
                $ modelreg pull classifier:production -o serve/

            Scripts read `--plain` or `--json`:

                $ modelreg ls resnet --plain | cut -f1,3
                $ modelreg show classifier:production --json | jq -r .digest
        """,
    },
    # -- commands --------------------------------------------------------------------
    "init": {
        "description": """
            Creates a registry in `DIR/.modelreg` (DIR defaults to the current
            directory and is created if missing) and prints its absolute path. A
            registry further up the tree is not consulted: `init` always creates
            `DIR/.modelreg`.

            Running it on an existing registry changes nothing and succeeds. Creation
            is atomic, so an `init` racing another `init`, or a first `log`, in the same
            directory ends with one registry. A registry is not needed before the first
            `log`, which creates one in the current directory when none is found;
            `init` is for choosing where it goes.
        """,
        "output": """
            By default and with `-q`, the registry's absolute path (the `.modelreg`
            directory). `new` is `false` when the registry already existed.
        """,
        "plain_columns": {"init": ["path", "new"]},
        "json_keys": {"init": ["path", "new"]},
        "json_shape": {"init": "object"},
        "exit_status": {
            0: "The registry was created, or already existed.",
            1: "It could not be written (permissions, a full disk).",
            2: "DIR, or `DIR/.modelreg`, exists and is not a directory.",
        },
        "files": """
            `DIR/.modelreg/`::
                The registry created; its layout is described in `modelreg(1)`.
            `DIR/.modelreg/config.toml`::
                Written with `format = 1` and nothing else: every other key has its
                default.
        """,
        "see_also": ["config", "log"],
    },
    "log": {
        "description": _paras(
            """
            Stores the files at PATH... as a new version of artifact NAME and prints
            its reference, such as `resnet:v3`. Versions are numbered from `v0` and a
            number is never reused, even after `rm`. When no registry is found, `log`
            creates one in the current directory and says so on standard error.

            ## What is stored

            - One PATH that is a directory: its contents become the version's root.
              One PATH that is a file: it is stored under its basename. Several PATHs
              need `-n`; each is stored under its basename (a directory as a folder),
              and two equal basenames are an error.
            - NAME defaults to the basename of the single PATH. `-n` accepts
              `entity/project/name`; a selector there is an error.
            - Regular files are stored with their executable bit; symbolic links are
              followed; empty directories are not recorded. A dangling symbolic link,
              a FIFO, socket or device file is an error naming the path, and nothing
              is logged.
            - `--exclude` *PATTERN* (repeatable) skips files by shell-style patterns,
              matched against each relative path and against the name of each of its
              parts: `*.tmp`, `__pycache__`, `logs/*`. `.modelreg` directories are
              always skipped, with a note.
            - Paths are checked before anything is written: a path with a backslash,
              a control character or a `.modelreg` part, or two paths that differ only
              by case, are an error. So is a file or directory name that is not valid
              UTF-8 (the message shows its bytes as `\\xNN`): versions are stored as
              UTF-8 JSON, and the same registry must work on object stores, whose keys
              are UTF-8. Rename it, or leave it out with `--exclude`.
            - A PATH that does not exist is not found (exit status 3); a dangling
              symbolic link is invalid input (exit status 2).

            ## Identical content

            When the files have the same digest as a live version of the same
            artifact, no version is made: the existing reference is printed, standard
            error says the content was unchanged, and `--json` has `"new": false`.
            Aliases given with `-a` are still applied to that version (`latest`, being
            computed, never moves backward); its metadata and description are left as
            they were.

            ## Metadata, inputs and producer

            - `-m` *KEY*=*VALUE* values are parsed as JSON when they parse, else kept
              as strings: `-m epoch=3` is a number, `-m tags='["a","b"]'` a list and
              `-m 'v="1.10"'` a string. `NaN` and `Infinity` are refused.
              `--meta-file` is merged first, so `-m` overrides its keys; it must hold
              a JSON object, as UTF-8 text (a byte-order mark is refused). A
              `--meta-file` that does not exist is not found (exit status 3).
            - Limits: the metadata, `--meta-file` and `-m` merged, nests at most 32
              levels of objects and lists, counting the top-level object (so a value
              may nest 31), and is at most 1 MiB as compact JSON (UTF-8 bytes, as it
              is stored). A `--meta-file` larger than 16 MiB is refused unread. Keep
              larger data in a file of the version.
            - All input (metadata, description, `--run`, `--reason`, names, aliases,
              paths) is checked before anything is written: a refused `log` stores no
              file and creates no collection (and, with no registry yet, no registry).
            - `--input` *REF* (repeatable) records a version this one was made from,
              such as a base model or a dataset logged as an artifact; `modelreg show`
              lists inputs with their digests.
            - The producer is recorded: user, host, working directory, command line,
              time, and, when the working directory is a git checkout, its commit and
              whether it was dirty. `--run` *ID* adds a run id.

            ## Aliases

            `-a` *ALIAS* (repeatable) points aliases at the new version, moving them
            from other versions of the artifact.
            """,
            _PROTECTED,
            """
            ## Concurrency

            File contents are stored before any lock is taken; the version number is
            then claimed under the collection's lock, so parallel `log` commands each
            get their own number, and a version becomes visible only once all its
            files are stored.
            """,
        ),
        "output": """
            By default and with `-q`, the reference of the new version, or of the
            existing one when the content was unchanged.
        """,
        "plain_columns": {
            "log": ["ref", "collection", "entity", "project", "version", "digest", "aliases", "new"]
        },
        "json_keys": {
            "log": ["ref", "collection", "entity", "project", "version", "digest", "aliases", "new"]
        },
        "json_shape": {"log": "object"},
        "exit_status": {
            0: "A version was logged, or the content was already there.",
            1: "An I/O error or a full disk; nothing was logged.",
            2: """Invalid input: a bad name, alias or metadata value, metadata over
                its limits, a `--meta-file` that is not a UTF-8 JSON object, text that
                is not valid UTF-8, a selector in `-n`, several PATHs without `-n`, two
                equal basenames, an unsafe path or a name that is not UTF-8, a file
                that is not a regular file, a dangling symbolic link.""",
            3: "A PATH, the `--meta-file` or an `--input` reference does not exist.",
            4: """Refused: NAME is a registered model, a protected alias would move
                without `--force`, an alias differs only by case from another, or the
                collection's lock was held too long.""",
        },
        "see_also": ["alias", "gc", "rm", "show"],
    },
    "ls": {
        "description": """
            Lists collections, versions or files, depending on its argument:

            (no argument)::
                Every collection in every project, sorted by entity, project and name.
            *PROJECT*`/` or *ENTITY*`/`*PROJECT*`/`::
                The collections of one project. An unknown project is not found.
            *NAME*::
                The live versions of one collection, oldest first, with their aliases,
                digest, size, number of files, creation time, and the registered models
                that link them (for a registered model: each link's source). It reads
                no file content, so it stays fast with many versions.
            *REF* (with a selector)::
                The files of one version, sorted by path. A link lists its source's
                files; a dangling link is not found.

            `--kind` keeps one kind of collection, `artifact` or `registered`, in the
            lists of collections.

            `--sort` *FIELD* orders the versions of `ls NAME` by `version`, `created`,
            `size` or `metadata.KEY`; a leading `-` sorts in descending order. Versions
            without the metadata key come last.

            `--where` `metadata.KEY=VALUE` (repeatable; all must hold) keeps the
            versions whose metadata KEY equals VALUE. VALUE is read as `log -m` reads
            it: as JSON when it parses, else as a string; `NaN` and `Infinity` are
            refused. Values are compared with their JSON type: `--where
            metadata.epoch=3` matches the number 3 (and 3.0) but never the string
            `"3"`, which `--where 'metadata.epoch="3"'` matches; `true` matches only
            the boolean, not 1 or `"true"`; `abc`, not being JSON, matches the string
            `abc`; lists and objects match when equal element by element, with the
            same rule.

            A stored record that cannot be read or parsed fails only what needs it:
            `ls` and `ls NAME` leave out each such collection or version with a
            warning on stderr and list the rest (`latest` is then unknown when the
            newest record is the bad one); `ls REF` of it fails. `modelreg fsck` names
            every such problem. A collection that never held a version is not listed.
        """,
        "output": """
            With `-q`: for collections, their names in the shortest form that resolves
            (`resnet`, or `vision/resnet` in another project); for versions, their
            references; for files, their paths. In `--plain` and `--json`, `name` is
            the bare collection name, qualified by the `entity` and `project` columns.

            In the list of collections, `versions` counts live versions, `latest` is
            the highest live version number (`-` or `null` when none is left),
            `aliases` maps each alias to its version number and `updated` is the time
            of the last event. In the list of versions, `links` holds the references of
            the links to the version, and `source` the source of a link (`-` for an
            artifact version; in JSON the key appears for links only).
        """,
        "plain_columns": {
            "ls": ["name", "entity", "project", "kind", "versions", "latest", "aliases", "size", "updated"],
            "ls NAME": [
                "ref", "version", "aliases", "digest", "size", "files", "created", "links", "source",
                "metadata",
            ],
            "ls REF": ["path", "size", "digest", "executable"],
        },
        "plain_rows": {"ls": "collection", "ls NAME": "version", "ls REF": "file"},
        "json_keys": {
            "ls": ["name", "entity", "project", "kind", "versions", "latest", "aliases", "size", "updated"],
            "ls NAME": ["ref", "version", "aliases", "digest", "size", "files", "created", "metadata", "links"],
            "ls REF": ["path", "size", "digest", "executable"],
        },
        "json_shape": {"ls": "list", "ls NAME": "list", "ls REF": "list"},
        "exit_status": {
            0: "Listed, also when nothing matched (the list is then empty).",
            2: "A bad name, reference, `--kind`, `--sort` field or `--where` filter.",
            1: "The collection or version that NAME or REF names cannot be read or fails its checks.",
            3: "Not found: no registry, or no such project, collection or version, or a dangling link.",
        },
        "see_also": ["history", "pull", "show"],
    },
    "show": {
        "description": """
            Shows one version in full: digest, size, creation time, aliases,
            metadata, description, inputs (with their digests), producer, files, and
            the registered models that link it.

            For a link, the link's own reference, version, aliases and description
            are shown, with its source and the source's content (digest, size, files,
            metadata, inputs, producer). A dangling link is shown with `dangling` true
            and a warning on standard error; that is not an error.
        """,
        "output": """
            With `-q`, the version's reference, in the shortest form that resolves
            (useful to turn an alias into a number: `modelreg show resnet:best -q`).

            With `--plain`, one line per field: the field's name, a tab and its value,
            in the order below. `metadata` and `producer` are compact JSON objects;
            `aliases` and `links` are comma-separated; `source` is `-` and `dangling`
            `false` for an artifact version. An `input` line per input holds two
            values, its reference and its digest; a `file` line per file holds four,
            as in `ls REF`: path, size, digest, executable.

            In JSON, `inputs` is a list of objects with `ref` and `digest`, `producer`
            an object, `files` a list of objects as in `ls REF`, and `links` a list of
            references; a link adds `source` (a reference) and `dangling`.
        """,
        "plain_columns": {"show": ["field", "value"]},
        "plain_rows": {"show": "field"},
        "plain_fields": {
            "show": [
                "ref", "collection", "entity", "project", "kind", "version", "digest", "size", "created",
                "aliases", "metadata", "description", "input", "producer", "links", "source", "dangling",
                "file",
            ]
        },
        "json_keys": {
            "show": [
                "ref", "collection", "entity", "project", "kind", "version", "digest", "size", "created",
                "aliases", "metadata", "description", "inputs", "producer", "files", "links",
            ]
        },
        "json_shape": {"show": "object"},
        "exit_status": {
            0: "Shown, a dangling link included.",
            1: "The stored manifest is unreadable or fails its checks.",
            2: "A bad reference.",
            3: "Not found: no registry, or no such collection or version.",
        },
        "see_also": ["diff", "history", "ls", "pull"],
    },
    "link": {
        "description": _paras(
            """
            Links the version that REF names into the registered model REGISTERED,
            which is created on first use, and prints the link's reference, such as
            `classifier:v1`. Links are numbered `v0`, `v1`, ... within the registered
            model, whose `latest` is the most recent link. The `linked` event is
            recorded in the registered model's history, with the source.

            - REGISTERED takes an omitted entity and project from the defaults, not
              from REF, and may be in any project; a selector in it is an error. It
              cannot name an artifact.
            - Linking a version that is already linked into REGISTERED makes no new
              link: the existing one is printed (`"new": false`) and the aliases given
              are applied to it.
            - REF may itself be a link: its source is linked, so links never chain.
            - `-a` *ALIAS* (repeatable) sets aliases on the link, and `-d` *TEXT*
              describes it.
            """,
            _PROTECTED,
        ),
        "output": """
            By default and with `-q`, the link's reference. `version` is the link's
            number, `digest` its source's digest and `source` the source's reference.
        """,
        "plain_columns": {
            "link": ["ref", "collection", "entity", "project", "version", "digest", "aliases", "new", "source"]
        },
        "json_keys": {
            "link": ["ref", "collection", "entity", "project", "version", "digest", "aliases", "new", "source"]
        },
        "json_shape": {"link": "object"},
        "exit_status": {
            0: "Linked, or already linked.",
            2: "A bad reference, name or alias, or a selector in REGISTERED.",
            3: "Not found: no registry, or REF names nothing, or a dangling link.",
            4: """Refused: REGISTERED is an artifact, a protected alias would move
                without `--force`, an alias differs only by case from another, or the
                lock was held too long.""",
        },
        "see_also": ["alias", "rm", "show"],
    },
    "alias": {
        "description": _paras(
            """
            Points each ALIAS at the version that REF names, in REF's collection,
            moving it from another version where needed, and prints the reference with
            the version's aliases. The aliases named change together: all of them or
            none. An alias that already points there is left alone (no event). For a
            registered model, aliases are set on its links.

            `--expect` *SELECTOR* is a compare-and-swap for promotions: every ALIAS
            named must point at SELECTOR right now (`vN`, an alias, a digest prefix, or
            `none` for unset), else nothing changes and the exit status is 4. It is
            checked under the collection's lock, so of two racing promotions only one
            succeeds.

            With `--delete`, the aliases are removed instead. REF without a selector
            names the collection, and each ALIAS is removed wherever it points; REF
            with a selector names a version, and each ALIAS must point there. An alias
            that is not set is not found.

            `latest` cannot be set or removed: it is always the highest live version.
            Names that read as something else are reserved, in any case: `v` followed
            by digits (`v3`, `V3`), `none` (`NONE`) and names ending in `.lock`
            (`x.LOCK`) cannot be set, here, with `log -a`, `link -a` or in
            `aliases.protected`. One set before it was reserved can still be removed
            with `--delete`.
            """,
            _PROTECTED,
            """
            Changes are recorded in the history as `alias-set`, `alias-moved` (with
            `from` and `to`) and `alias-removed`.
            """,
        ),
        "output": """
            By default and with `-q`, the reference; with `--delete`, the aliases
            removed, one per line. `aliases` lists every alias of the version after
            the change. With `--delete`, each JSON object of `removed` has `alias` and
            `ref`, the version it pointed at.
        """,
        "plain_columns": {"alias": ["ref", "aliases"], "alias --delete": ["alias", "ref"]},
        "plain_rows": {"alias --delete": "alias removed"},
        "json_keys": {"alias": ["ref", "aliases"], "alias --delete": ["removed"]},
        "json_shape": {"alias": "object", "alias --delete": "object"},
        "exit_status": {
            0: "The aliases point where asked, or were removed.",
            2: """A bad reference or alias name, `latest`, `none`, `vN`, a name ending
                in `.lock` (these three in any case), or `--expect` with `--delete`.""",
            3: "Not found: no registry, or no such version, or (with `--delete`) an alias that is not set.",
            4: """Refused, nothing changed: an alias is not where `--expect` says, a
                protected alias without `--force`, an alias pointing elsewhere than the
                version given to `--delete`, two aliases differing only by case, or the
                lock was held too long.""",
        },
        "see_also": ["config", "history", "link"],
    },
    "pull": {
        "description": """
            Writes the files of the version that REF names into DIR and prints DIR.
            DIR defaults to `./NAME-vN`, from the name and number of REF's own
            collection: `./classifier-v1` for a link.

            ## Modes

            `--mode` (default: the configuration's `pull.mode`, else `auto`) says how
            files are placed. Pulled files belong to the user: with `auto`, `reflink`
            and `copy` they never share an inode with the store.

            `auto`::
                Clone (reflink) where the filesystem can, else copy.
            `reflink`::
                Clone, or fail where the filesystem cannot.
            `copy`::
                Copy, hashing the content on the way unless `--no-verify` (which lets
                the kernel copy).
            `hardlink`::
                Hard-link to the store; fails across filesystems.
            `symlink`::
                Symbolic links into the store.

            With `hardlink` and `symlink`, stored files are read-only and shared, so
            executable files are copied instead, with a note. `--verify` also re-hashes
            linked files.

            ## What is written

            - `--file` *PATTERN* (repeatable) selects paths by shell-style matching
              on the whole relative path; a pattern that matches nothing is not found.
            - If DIR already holds exactly the version's files, nothing is rewritten.
              A file missing from DIR is restored. A file whose content differs is a
              conflict, and nothing is written, unless `--force`: a refused pull
              changes nothing in DIR, not even the executable bit of a file that is
              already in place. Files that the version does not have are left alone.
            - A file is never written outside DIR, whatever a manifest says, nor
              through a symbolic link to a directory outside DIR.
            - Nothing is ever written into the registry: a DIR that is the registry
              or lies inside it (symbolic links resolved), or a file that would land
              in it (a registry inside DIR, or a symbolic link in DIR leading into
              it), is refused before anything is written.
            - Before anything is written, the manifest's file list must hash to the
              version's digest; a manifest changed after it was logged is refused.
            - Files are written as `.modelreg-tmp-*` beside their final names and
              renamed into place. Ctrl-C or SIGTERM removes them; after a SIGKILL, the
              next `pull` into DIR does.

            On a terminal, a pull of 64 MiB or more shows a progress bar on standard
            error (bytes done of the total, rate and time left), advanced as bytes are
            copied and cleared when the pull ends; never with `-q`, off a terminal or
            with `TERM=dumb`.
        """,
        "output": """
            By default and with `-q`, DIR as given, or the default `./NAME-vN`.
            `files` and `bytes` count the files selected (written or already in
            place); `mode` is the mode used, so `auto` reports `reflink` or `copy`.
        """,
        "plain_columns": {"pull": ["ref", "path", "files", "bytes", "mode"]},
        "json_keys": {"pull": ["ref", "path", "files", "bytes", "mode"]},
        "json_shape": {"pull": "object"},
        "exit_status": {
            0: "DIR holds the files, written now or already there.",
            1: """Failed: the filesystem cannot clone (`reflink`), DIR is on another
                filesystem (`hardlink`), content did not verify, the stored manifest is
                unreadable or fails its checks, or an I/O error.""",
            2: "A bad reference or mode, a path that would leave DIR, or a DIR or file inside the registry.",
            3: "Not found: no registry, or no such version, a dangling link, or a `--file` pattern that matches nothing.",
            4: "A file in DIR differs from the version's (use `--force`); nothing was written.",
        },
        "files": _paras(
            """
            `DIR/.modelreg-tmp-*`::
                Files being written; removed on success, interruption or the next pull.
            """,
            _REGISTRY_FILES,
        ),
        "see_also": ["config", "ls", "show"],
    },
    "diff": {
        "description": """
            Compares two versions, the first taken as old and the second as new;
            either may be a link, which stands for its source. It reports files added,
            removed and changed (in content or in the executable bit), and the metadata
            keys whose values differ. Descriptions, producers and inputs are not
            compared.

            Unlike diff(1), the exit status is 0 whether or not the versions differ;
            empty output means they are the same.
        """,
        "output": """
            With `-q`, the paths that differ, sorted, one per line. With `--plain`,
            one line per difference, files first (sorted by path), then metadata
            (sorted by key): `change` is `added`, `removed`, `changed` or `metadata`;
            `name` is the path or the metadata key; for metadata, `old` and `new` are
            the values as compact JSON, `-` on the side where the key is missing; for
            files they are `-`.

            In JSON, `added`, `removed` and `changed` are sorted lists of paths and
            `metadata` maps each differing key to `[old, new]`, with `null` on the side
            where the key is missing.
        """,
        "plain_columns": {"diff": ["change", "name", "old", "new"]},
        "plain_rows": {"diff": "difference"},
        "json_keys": {"diff": ["added", "removed", "changed", "metadata"]},
        "json_shape": {"diff": "object"},
        "exit_status": {
            0: "Compared, whether or not the versions differ.",
            2: "A bad reference.",
            3: "Not found: no registry, or no such version, or a dangling link.",
        },
        "see_also": ["ls", "show"],
    },
    "history": {
        "description": """
            Prints the events of a collection, oldest first. A selector keeps the
            events of one version or of one alias, read in the order of references
            (`vN`, then alias, then digest prefix):

            *NAME*::
                Every event of the collection.
            *NAME*`:vN`::
                The events of version N: its logging (or linking) and deletion, and
                every alias set on it, moved to it or away from it, or removed from it.
                A deleted version still has its events; a number never given is not
                found.
            *NAME*`:latest`::
                The events of the version `latest` names now (the highest live
                version); not found when no version is left.
            *NAME*`:`*ALIAS*::
                The events of that alias, also when it is no longer set but once was.
                An alias never set in the collection is not found.
            *NAME*`:`*DIGEST*::
                The events of the version(s) whose digest starts with this prefix (8 to
                64 hexadecimal digits), deleted ones included; a prefix of several
                different digests is an error, one of none is not found. A name that is
                an alias, set now or before, is read as that alias.

            The events:

            `logged`::
                A version was logged.
            `linked`::
                A link was made (recorded in the registered model, with its `source`).
            `alias-set`, `alias-moved`, `alias-removed`::
                An alias was set, moved (`from` and `to`) or removed.
            `deleted`::
                A version was deleted.
            `collection-deleted`::
                Every version was deleted with `rm NAME --all`.

            Every event has a time, an event name, the user and a version; `alias`,
            `from`, `to`, `source` and `reason` appear where they apply. `latest` is
            computed, so its changes are not events. The history outlives deletion:
            `history NAME` still works after `rm NAME --all`.
        """,
        "output": """
            Nothing with `-q`: the exit status tells whether the collection exists.
            `version`, `from` and `to` are version numbers.
        """,
        "plain_columns": {
            "history": ["time", "event", "user", "version", "alias", "from", "to", "source", "reason"]
        },
        "plain_rows": {"history": "event"},
        "json_keys": {"history": ["time", "event", "user", "version"]},
        "json_shape": {"history": "list"},
        "exit_status": {
            0: "Printed, also when the version or alias has no events to show.",
            2: "A bad name or selector, or an ambiguous digest prefix.",
            3: """Not found: no registry, no such collection, a version number never
                given, an alias never set, a digest prefix of no version, or
                `latest` when no version is left.""",
        },
        "examples": """
            Who moved production, and why:

                $ modelreg history classifier:production --plain | cut -f1,3,6,7,9
        """,
        "see_also": ["alias", "log", "rm"],
    },
    "rm": {
        "description": """
            Deletes a version (`rm REF`) or every version of a collection
            (`rm NAME --all`). Without `--all`, a bare NAME means `NAME:latest`.

            A deleted version leaves a tombstone, so its number is never reused; its
            files stay in the store until `gc` finds them unreferenced. Deleting a link
            removes the link, not its source. Links to a deleted version are kept and
            become dangling.

            A version that holds an alias or is linked from a registered model is
            refused unless `--force`, which also removes its aliases and records them
            in the history. A protected alias needs `--force` in any case, and
            `--reason` *TEXT* is recorded with the deletion.

            `rm NAME --all` records `collection-deleted`; a later `log NAME` numbers on
            after the deleted versions.
        """,
        "output": """
            By default and with `-q`, the references deleted, one per line. `aliases`
            lists the aliases removed with the version (by `--force`).
        """,
        "plain_columns": {"rm": ["ref", "version", "aliases"]},
        "plain_rows": {"rm": "version deleted"},
        "json_keys": {"rm": ["deleted"]},
        "json_shape": {"rm": "object"},
        "exit_status": {
            0: "Deleted.",
            2: "A bad reference, or `--all` with a selector.",
            3: "Not found: no registry, or no such collection or live version.",
            4: """Refused, nothing deleted: a version holds an alias or is linked
                (use `--force`), or the lock was held too long.""",
        },
        "examples": """
            In JSON, `deleted` is a list of objects with `ref`, `version` and `aliases`:

                $ modelreg rm resnet --all --force --json | jq -r '.deleted[].ref'
        """,
        "see_also": ["alias", "gc", "history"],
    },
    "gc": {
        "description": """
            Removes stored file contents (blobs) that no live version references, and
            temporary files and stale locks left by interrupted commands, when they
            are older than the grace period: `--grace` *DURATION*, else the
            configuration's `gc.grace`, else `24h`. A DURATION is `0` or an integer
            followed by `s`, `m`, `h`, `d` or `w`. `--dry-run` reports what would be
            removed and removes nothing.

            `gc` is safe to run beside other commands. It takes `locks/gc.lock`, then
            waits until no writer is registered in `locks/writers/`; a writer that finds
            `gc.lock` waits for `gc` to finish. So even `--grace 0` never removes a blob
            that a running `log` is about to reference.

            A temporary file is judged by the host and pid in its name: one whose
            process is gone from this host is removed once older than the grace period
            (at once with `--grace 0`), one whose process still runs is kept. For one
            made on another host, or whose name names no process, the grace period
            alone decides. On a shared registry, use a grace period longer than any
            write takes.

            `gc` works on a full disk: it writes nothing but its lock, which is then a
            symbolic link that needs no space, so it can free the space that a failed
            write's hint sends you to free.

            While a version record cannot be read at all (not a regular file, an I/O
            error), `gc` cannot tell which blobs it names: it removes no blob, says so
            on stderr, and does the rest. A record that reads but does not parse keeps
            every digest it mentions.
        """,
        "output": """
            Nothing with `-q`. `blobs` and `bytes` count what was removed (or, with
            `--dry-run`, would be).
        """,
        "plain_columns": {"gc": ["blobs", "bytes", "dry_run"]},
        "json_keys": {"gc": ["blobs", "bytes", "dry_run"]},
        "json_shape": {"gc": "object"},
        "exit_status": {
            0: "Done, also when there was nothing to remove.",
            1: "An I/O error.",
            2: "A bad DURATION.",
            3: "No registry was found.",
            4: "Another `gc` is running, or a writer kept going past the wait.",
        },
        "files": """
            `.modelreg/objects/`::
                The blobs examined and removed.
            `.modelreg/tmp/`::
                Temporary files of writes in flight or interrupted.
            `.modelreg/locks/gc.lock`, `.modelreg/locks/writers/`::
                How `gc` and writers keep out of each other's way. Locks of dead
                processes found here and in collections are removed.
        """,
        "see_also": ["fsck", "rm"],
    },
    "fsck": {
        "description": """
            Checks the registry and lists each problem. It re-hashes every blob
            (`--quick` compares sizes only) and checks every manifest, alias, link,
            tombstone, cache index and history file: that manifests parse, name only
            safe paths and existing blobs, that aliases point at live versions, that
            link records name a source, and that caches agree with the manifests. It
            changes nothing.

            Leftovers of interrupted writes (temporary files, unreferenced blobs,
            stale locks) are not problems: they are listed as reclaimable by `gc`. A
            dangling link is not a problem either.
        """,
        "output": """
            Nothing with `-q`: the exit status speaks. With `--plain`, one line per
            finding: `status` is `problem` or `reclaimable`; `kind` is what was checked
            (`blob`, `manifest`, `alias`, `link`, `tombstone`, `index`, `history`,
            `config`, `tmp`, `lock`); `object` is its path in the registry or its
            reference. In JSON, `ok` is true when there is no problem, and `problems`
            and `reclaimable` are lists of objects with `kind`, `object` and `message`.
        """,
        "plain_columns": {"fsck": ["status", "kind", "object", "message"]},
        "plain_rows": {"fsck": "finding"},
        "json_keys": {"fsck": ["ok", "problems", "reclaimable"]},
        "json_shape": {"fsck": "object"},
        "exit_status": {
            0: "No problem found (reclaimable leftovers allowed).",
            1: "At least one problem was found.",
            3: "No registry was found.",
        },
        "see_also": ["gc"],
    },
    "config": {
        "description": """
            Reads and writes the registry's configuration, `.modelreg/config.toml`.
            `get` prints a key's value, its default when unset; `set` writes it;
            `unset` removes it, so its default applies again; `list` prints every key
            with its value, defaults included. Values come from the file only: the
            `MODELREG_ENTITY` and `MODELREG_PROJECT` overrides are not shown. `set` and
            `unset` read the file again under `locks/config.lock` and rewrite it
            atomically, so parallel changes of different keys are all kept.

            `defaults.entity`, `defaults.project`::
                The entity and project of references that omit them (defaults: `local`,
                `default`).
            `pull.mode`::
                How `pull` places files: `auto`, `reflink`, `copy`, `hardlink` or
                `symlink` (default: `auto`).
            `aliases.protected`::
                The protected aliases, a list; `set` takes comma-separated values
                (default: `production`).
            `gc.grace`::
                How old unreferenced blobs and temporary files must be before `gc`
                removes them: `0` or an integer followed by `s`, `m`, `h`, `d` or `w`
                (default: `24h`).
            `core.fsync`::
                `true` or `false` (default: `true`). Without fsync the registry stays
                consistent if a process is killed, but not across a power loss.

            An unknown key or a bad value is an error.
        """,
        "output": """
            `get` prints the bare value (a list comma-separated), also with `-q`;
            `list` prints `key`, `value` lines with `--plain`. `set` and `unset` print
            nothing. In JSON, `get` gives `key` and `value`, and `list` one object
            mapping every key to its value (a list for `aliases.protected`, a boolean
            for `core.fsync`).
        """,
        "plain_columns": {"config get": ["value"], "config list": ["key", "value"]},
        "plain_rows": {"config list": "key"},
        "json_keys": {
            "config get": ["key", "value"],
            "config list": [
                "defaults.entity", "defaults.project", "pull.mode", "aliases.protected", "gc.grace",
                "core.fsync",
            ],
        },
        "json_shape": {"config get": "object", "config list": "object"},
        "exit_status": {
            0: "Done.",
            1: "`config.toml` could not be read (malformed) or written.",
            2: "An unknown key or a bad value.",
            3: "No registry was found.",
            4: "`set` or `unset` waited too long for another one's lock.",
        },
        "files": """
            `.modelreg/config.toml`::
                The configuration, TOML with `format = 1`.
            `.modelreg/locks/config.lock`::
                Held while `set` or `unset` rewrites the file.
        """,
        "see_also": ["gc", "pull"],
    },
}
