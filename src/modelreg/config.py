"""Finding the registry and reading/writing `.modelreg/config.toml`."""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

from . import layout
from .errors import Error, InvalidInput, IntegrityError, NotFound
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
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ",".join(value)
    return str(value)


@dataclass
class Config:
    path: Path
    data: dict

    @classmethod
    def load(cls, path: Path) -> "Config":
        try:
            data = tomllib.loads(read_regular(path).decode())
        except FileNotFoundError:
            data = {}
        except NotRegularFile as exc:
            raise IntegrityError(f"{path}: {exc.strerror}") from None
        except OSError as exc:
            raise Error(f"{path}: cannot be read: {exc.strerror or exc}") from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise IntegrityError(f"{path}: not valid TOML: {exc}") from None
        except RecursionError:
            raise IntegrityError(f"{path}: not valid TOML: nested too deeply") from None
        fmt = data.get("format", 1)
        if fmt not in SUPPORTED:
            raise IntegrityError(f"{path}: registry format {fmt!r} is not supported by this modelreg", hint="upgrade modelreg")
        for key in KEYS:  # every reader of a key expects its section to be a table
            section = key.split(".")[0]
            if not isinstance(data.get(section, {}), dict):
                raise IntegrityError(f"{path}: [{section}] is not a table")
        return cls(path, data)

    @property
    def format(self) -> int:
        return self.data.get("format", 1)

    def stored(self, key: str):
        section, name = check_key(key).split(".")
        return self.data.get(section, {}).get(name)

    def get(self, key: str):
        value = self.stored(key)
        default, convert = KEYS[key]
        if value is None:
            return default
        try:
            return convert(value)
        except InvalidInput:
            raise IntegrityError(f"{self.path}: bad value for {key}: {value!r}") from None

    def set(self, key: str, text) -> None:
        default, convert = KEYS[check_key(key)]
        value = convert(text)
        section, name = key.split(".")
        self.data.setdefault(section, {})[name] = value

    def unset(self, key: str) -> bool:
        section, name = check_key(key).split(".")
        table = self.data.get(section, {})
        if name not in table:
            return False
        del table[name]
        if not table:
            self.data.pop(section, None)
        return True

    def dumps(self) -> bytes:
        import tomli_w  # deferred: only writers need it

        data = {"format": self.format, **{k: v for k, v in self.data.items() if k != "format"}}
        return tomli_w.dumps(data).encode()

    def items(self) -> list[tuple[str, object, bool]]:
        """(key, effective value, whether it is set in the file) for every key."""
        return [(key, self.get(key), self.stored(key) is not None) for key in KEYS]


def registry_dir(path: Path) -> Path:
    """`path` names the .modelreg directory itself or the directory that holds it."""
    return Path(layout.registry_dir(os.fspath(path)))


def find_registry(root: str | os.PathLike | None = None, start: Path | None = None) -> Path:
    """The registry to use: --root, else MODELREG_DIR, else the nearest .modelreg upward.

    The layout module decides (TAB asks it the same question), `~` expanded in both."""
    found = layout.find_registry(root, os.environ, os.fspath(start) if start is not None else None)
    if found is not None:
        return Path(found)
    explicit = root if root is not None else os.environ.get("MODELREG_DIR") or None
    if explicit is not None:
        raise NotFound(f"no registry at {explicit}", hint="create one with `modelreg init`")
    raise NotFound("no registry found here or in any parent directory", hint="create one with `modelreg init`, or pass --root")


def default_location(root: str | os.PathLike | None = None) -> Path:
    """Where a registry is created when none is found."""
    explicit = layout.explicit_root(root, os.environ)
    return Path(layout.registry_dir(explicit)) if explicit is not None else Path.cwd().absolute() / REGISTRY_DIR
