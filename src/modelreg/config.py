"""Finding the registry and reading/writing `.modelreg/config.toml`."""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

from . import layout
from .errors import Conflict, Error, InvalidInput, IntegrityError, NotFound
from .refs import DEFAULT_ENTITY, DEFAULT_PROJECT, validate_alias, validate_name
from .util import NotRegularFile, read_regular

REGISTRY_DIR = layout.REGISTRY_DIR
FORMAT = layout.FORMAT  # what this modelreg writes; format 1 (0.1.0) is read, and written only by `upgrade`
SUPPORTED = (1, 2)
PULL_MODES = ("auto", "reflink", "copy", "hardlink", "symlink")
DURATION_RE = re.compile(r"0|([0-9]+)([smhdw])")
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> int:
    """Seconds in a DURATION: `0`, or an integer followed by s, m, h, d or w."""
    match = DURATION_RE.fullmatch(str(text).strip())
    if not match:
        raise InvalidInput(f"invalid duration {text!r}", hint="use 0 or a number followed by s, m, h, d or w, e.g. 24h")
    return 0 if match.group(0) == "0" else int(match.group(1)) * UNITS[match.group(2)]


def _bool(text) -> bool:
    if isinstance(text, bool):
        return text
    value = str(text).strip().lower()
    if value in ("true", "1", "yes", "on"):
        return True
    if value in ("false", "0", "no", "off"):
        return False
    raise InvalidInput(f"invalid boolean {text!r}", hint="use true or false")


def _protected(value) -> list[str]:
    items = value if isinstance(value, list) else [v.strip() for v in str(value).split(",") if v.strip()]
    return [validate_alias(str(v)) for v in items]


def _mode(value) -> str:
    if value not in PULL_MODES:
        raise InvalidInput(f"invalid pull mode {value!r}", hint="use one of " + ", ".join(PULL_MODES))
    return value


def _duration(value) -> str:
    parse_duration(value)
    return str(value)


# key -> (default, converter from a string or stored value to the stored value)
KEYS = {
    "defaults.entity": (DEFAULT_ENTITY, lambda v: validate_name(str(v), "entity")),
    "defaults.project": (DEFAULT_PROJECT, lambda v: validate_name(str(v), "project")),
    "pull.mode": ("auto", _mode),
    "aliases.protected": (["production"], _protected),
    "gc.grace": ("24h", _duration),
    "core.fsync": (True, _bool),
}


def check_key(key: str) -> str:
    if key not in KEYS:
        raise InvalidInput(f"unknown config key {key!r}", hint="keys: " + ", ".join(KEYS))
    return key


def format_value(value) -> str:
    if value is None:
        return ""  # a user key left unset: the registry's value or the built-in default applies
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ",".join(value)
    return str(value)


def _load_toml(path: Path) -> dict:
    try:
        raw = read_regular(path)
    except FileNotFoundError:
        return {}
    except NotRegularFile as exc:
        raise IntegrityError(f"{path}: {exc.strerror}") from None
    except OSError as exc:
        raise Error(f"{path}: cannot be read: {exc.strerror or exc}") from None
    return _parse_toml(raw, path)


def _parse_toml(raw: bytes, where) -> dict:
    try:
        return tomllib.loads(raw.decode())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise IntegrityError(f"{where}: not valid TOML: {exc}") from None
    except RecursionError:
        raise IntegrityError(f"{where}: not valid TOML: nested too deeply") from None


@dataclass
class Config:
    """The registry's config.toml: what a team shares (SPEC §7)."""

    path: Path
    data: dict
    SECTIONS = tuple(dict.fromkeys(key.split(".")[0] for key in KEYS))

    @classmethod
    def load(cls, path: Path) -> "Config":
        return cls._checked(path, _load_toml(path))

    @classmethod
    def parse(cls, raw: bytes, where: str) -> "Config":
        """A registry's config read through its storage (a remote registry's)."""
        return cls._checked(where, _parse_toml(raw, where))

    @classmethod
    def _checked(cls, path, data: dict) -> "Config":
        fmt = data.get("format", 1)
        if fmt not in SUPPORTED:
            raise IntegrityError(f"{path}: registry format {fmt!r} is not supported by this modelreg", hint="upgrade modelreg")
        cls._check_tables(path, data)
        return cls(path, data)

    @classmethod
    def _check_tables(cls, path: Path, data: dict) -> None:
        for section in cls.SECTIONS:  # every reader of a key expects its section to be a table
            if not isinstance(data.get(section, {}), dict):
                raise IntegrityError(f"{path}: [{section}] is not a table")

    @property
    def format(self) -> int:
        return self.data.get("format", 1)

    # What varies between the two files: the keys, and where a key lives in the TOML.
    def keys(self) -> list[str]:
        return list(KEYS)

    @classmethod
    def spec(cls, key: str) -> tuple[tuple[str, ...], object, object]:
        """(TOML path, default, converter) of a key; an unknown key is InvalidInput."""
        default, convert = KEYS[check_key(key)]
        return tuple(key.split(".")), default, convert

    def stored(self, key: str):
        path, _, _ = self.spec(key)
        table = self.data
        for part in path[:-1]:
            table = table.get(part, {})
            if not isinstance(table, dict):
                return None
        return table.get(path[-1])

    def get(self, key: str):
        value = self.stored(key)
        _, default, convert = self.spec(key)
        if value is None:
            return default
        try:
            return convert(value)
        except InvalidInput:
            raise IntegrityError(f"{self.path}: bad value for {key}: {value!r}") from None

    def set(self, key: str, text) -> None:
        path, _, convert = self.spec(key)
        value = convert(text)
        table = self.data
        for part in path[:-1]:
            if not isinstance(table.get(part), dict):
                table[part] = {}
            table = table[part]
        table[path[-1]] = value

    def unset(self, key: str) -> bool:
        path, _, _ = self.spec(key)
        tables = [self.data]
        for part in path[:-1]:
            table = tables[-1].get(part)
            if not isinstance(table, dict):
                return False
            tables.append(table)
        if path[-1] not in tables[-1]:
            return False
        del tables[-1][path[-1]]
        for parent, part, table in reversed(list(zip(tables, path, tables[1:]))):
            if not table:  # an emptied table goes too: `remote rm` leaves no [remote.NAME]
                del parent[part]
        return True

    def dumps(self) -> bytes:
        import tomli_w  # deferred: only writers need it

        data = {"format": self.format, **{k: v for k, v in self.data.items() if k != "format"}}
        return tomli_w.dumps(data).encode()

    def items(self) -> list[tuple[str, object, bool]]:
        """(key, effective value, whether it is set in the file) for every key."""
        return [(key, self.get(key), self.stored(key) is not None) for key in self.keys()]


# -- the user's config (SPEC §7): what belongs to one person or machine ------------------

URL_SCHEMES = ("s3", "gs", "az")
_SCHEME_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
# `remote.timeout` shares the [remote] table with the remotes: no remote may be named so.
RESERVED_REMOTE_NAMES = ("timeout",)


def is_url(text: str) -> bool:
    """Whether a location names an object store (`s3://…`) rather than a directory."""
    return bool(_SCHEME_RE.match(str(text)))


def location_value(value) -> str:
    """A remote's URL as stored: an object-store URL as given, a directory made absolute."""
    text = str(value).strip()
    if not text:
        raise InvalidInput("empty location", hint="give a directory or an s3://, gs:// or az:// URL")
    match = _SCHEME_RE.match(text)
    if match:
        if match.group(1).lower() not in URL_SCHEMES or len(text) == len(match.group(0)):
            raise InvalidInput(f"unsupported location {text!r}",
                               hint="give a directory, or an s3://, gs:// or az:// URL")
        return text
    if "\0" in text:
        raise InvalidInput("a location may not hold a NUL character")
    return os.path.abspath(Path(text).expanduser())


def _endpoint(value) -> str:
    text = str(value).strip()
    if not re.fullmatch(r"https?://[^\s/]+(/\S*)?", text):
        raise InvalidInput(f"invalid endpoint {value!r}", hint="give an http:// or https:// URL")
    return text


def _directory(value) -> str:
    text = str(value).strip()
    if not text or "\0" in text:
        raise InvalidInput(f"invalid directory {value!r}")
    return os.path.abspath(Path(text).expanduser())


def validate_remote_name(name: str) -> str:
    validate_name(str(name), "remote")
    if name in RESERVED_REMOTE_NAMES:
        raise InvalidInput(f"invalid remote name {name!r}: it is reserved (remote.{name} is a key of its own)")
    return name


USER_KEYS = {
    "pull.mode": (None, _mode),  # None: the registry's pull.mode (or auto) applies
    "cache.dir": (None, _directory),
    "remote.timeout": ("30s", _duration),
}
REMOTE_FIELDS = {"url": (None, location_value), "endpoint": (None, _endpoint)}
_REMOTE_KEY = re.compile(r"remote\.(.+)\.(url|endpoint)")


def user_config_path(environ=os.environ) -> Path:
    base = environ.get("XDG_CONFIG_HOME") or str(Path(environ.get("HOME") or Path.home()) / ".config")
    return Path(base) / "modelreg" / "config.toml"


class UserConfig(Config):
    """The user's `$XDG_CONFIG_HOME/modelreg/config.toml`: remotes, cache, timeout, pull.mode."""

    SECTIONS = ("pull", "cache", "remote")

    @classmethod
    def load(cls, path: Path | None = None) -> "UserConfig":
        path = user_config_path() if path is None else path
        data = _load_toml(path)
        cls._check_tables(path, data)
        remotes = data.get("remote", {})
        for name, table in remotes.items():
            if name not in ("timeout",) and not isinstance(table, dict):
                raise IntegrityError(f"{path}: [remote.{name}] is not a table")
        return cls(path, data)

    @property
    def format(self) -> int:
        return 0  # not a registry's file: it carries no format

    def dumps(self) -> bytes:
        import tomli_w

        return tomli_w.dumps(self.data).encode()

    @classmethod
    def spec(cls, key: str):
        if key in USER_KEYS:
            default, convert = USER_KEYS[key]
            return tuple(key.split(".")), default, convert
        match = _REMOTE_KEY.fullmatch(str(key))
        if match:
            validate_remote_name(match.group(1))
            default, convert = REMOTE_FIELDS[match.group(2)]
            return ("remote", match.group(1), match.group(2)), default, convert
        if key in KEYS:
            raise InvalidInput(f"{key} is not a user setting: it belongs to the registry's config.toml",
                               hint=f"run `modelreg config set {key} ...` without --user")
        raise InvalidInput(f"unknown user config key {key!r}",
                           hint="keys: " + ", ".join([*USER_KEYS, "remote.NAME.url", "remote.NAME.endpoint"]))

    def remotes(self) -> dict[str, dict]:
        """name -> {"url": …, "endpoint": …} of every remote with a URL, sorted by name."""
        found = {}
        for name, table in sorted(self.data.get("remote", {}).items()):
            if isinstance(table, dict) and table.get("url") is not None:
                found[name] = {"url": self.get(f"remote.{name}.url"), "endpoint": table.get("endpoint")}
        return found

    def keys(self) -> list[str]:
        names = [f"remote.{n}.{f}" for n, t in sorted(self.data.get("remote", {}).items())
                 if isinstance(t, dict) for f in REMOTE_FIELDS if f in t]
        return [*USER_KEYS, *names]


def edit_user_config(edit, path: Path | None = None):
    """Apply `edit(config)` to the user's config file, read and written under a lock.

    `edit` returns (changed, result); the file is replaced atomically only when changed,
    so a parallel `remote add` of another name is kept.
    """
    from .locks import FileLock
    from .store import io_error
    from .util import replace_file

    path = user_config_path() if path is None else path
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(path.parent / "config.lock", "the user's config", tmp_dir=path.parent):
            config = UserConfig.load(path)
            changed, result = edit(config)
            if changed:
                replace_file(path.parent, path, config.dumps(), True)
    except OSError as exc:
        raise io_error(exc, f"writing {path}") from None
    return result


def add_remote(name: str, url: str, endpoint: str | None = None) -> bool:
    """Add a named remote; False when it already names this URL (and endpoint): a no-op.

    A name taken by another URL is a Conflict (exit 4): the user removes it first.
    """
    validate_remote_name(name)
    url = location_value(url)
    endpoint = None if endpoint is None else _endpoint(endpoint)

    def edit(config: UserConfig):
        known = config.remotes().get(name)
        if known is not None:
            if known["url"] == url and (endpoint is None or known.get("endpoint") == endpoint):
                return False, False
            raise Conflict(f"remote {name!r} already names {known['url']}",
                           hint=f"remove it first: `modelreg remote rm {name}`")
        config.set(f"remote.{name}.url", url)
        if endpoint is not None:
            config.set(f"remote.{name}.endpoint", endpoint)
        return True, True

    return edit_user_config(edit)


def remove_remote(name: str) -> None:
    validate_remote_name(name)

    def edit(config: UserConfig):
        if name not in config.remotes():
            raise NotFound(f"no remote named {name!r}", hint="`modelreg remote ls` lists them")
        del config.data["remote"][name]
        if not config.data["remote"]:
            del config.data["remote"]
        return True, None

    edit_user_config(edit)


def remote(name: str, user: UserConfig | None = None) -> dict:
    """A named remote of the user's config: {"url", "endpoint"}; unknown -> NotFound."""
    validate_remote_name(name)
    user = UserConfig.load() if user is None else user
    found = user.remotes().get(name)
    if found is None:
        raise NotFound(f"no remote named {name!r}", hint="`modelreg remote ls` lists them; `modelreg remote add NAME URL` adds one")
    return found


def resolve_location(text: str, user: UserConfig | None = None) -> tuple[str, str]:
    """(location, how output names it) for `push --to`: a remote's name, a URL or a directory.

    A configured remote name wins over a directory of that name (as in git). A bare word
    that is neither a remote nor an existing directory is NotFound, so a typo never
    creates a registry: a new directory is named with a slash (`./team`).
    """
    text = str(text)
    if not text.strip():
        raise InvalidInput("empty location", hint="give a remote name or a directory")
    user = UserConfig.load() if user is None else user
    if text in user.remotes():
        return user.remotes()[text]["url"], text
    if is_url(text):
        return location_value(text), text
    path = Path(text).expanduser()
    if "/" not in text and not path.exists():
        raise NotFound(f"no remote named {text!r}, and no directory {text!r}",
                       hint=f"`modelreg remote ls` lists the remotes; name a new directory with a slash: ./{text}")
    return os.path.abspath(path), text


def remote_location(root=None) -> str | None:
    """The object-store URL that --root (or MODELREG_DIR) names, if it names one."""
    explicit = root if root is not None else os.environ.get("MODELREG_DIR") or None
    if explicit is not None and is_url(os.fspath(explicit)):
        return location_value(os.fspath(explicit))
    return None


def registry_dir(path: Path) -> Path:
    """`path` names the .modelreg directory itself or the directory that holds it."""
    return Path(layout.registry_dir(os.fspath(path)))


def find_registry(root: str | os.PathLike | None = None, start: Path | None = None) -> Path:
    """The registry to use: --root, else MODELREG_DIR, else the nearest .modelreg upward.

    The layout module decides (TAB asks it the same question), `~` expanded in both."""
    explicit = root if root is not None else os.environ.get("MODELREG_DIR") or None
    found = layout.find_registry(root, os.environ, os.fspath(start) if start is not None else None)
    if found is not None:
        return Path(found)
    if explicit is not None:
        raise NotFound(f"no registry at {explicit}", hint="create one with `modelreg init`")
    raise NotFound("no registry found here or in any parent directory", hint="create one with `modelreg init`, or pass --root")


def default_location(root: str | os.PathLike | None = None) -> Path:
    """Where a registry is created when none is found."""
    explicit = layout.explicit_root(root, os.environ)
    return Path(layout.registry_dir(explicit)) if explicit is not None else Path.cwd().absolute() / REGISTRY_DIR
