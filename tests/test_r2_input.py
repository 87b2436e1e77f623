"""Issue 9, "Bad input is exit 2, and nothing is written".

Every refused command here is checked for what a user would notice: the exit code and
one error line, and that the registry (`ls --json`, fsck, its data files) is unchanged
and shows no new, empty collection.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import make_tree
from modelreg import Registry
from modelreg.errors import Conflict, InvalidInput, NotFound
from reliability_util import assert_error, data_state, env_for, mr_runner

LIMIT = 1 << 20  # metadata, as compact JSON


@pytest.fixture
def mr(script_runner):
    return mr_runner(script_runner)


@pytest.fixture
def reg(isolated_env, tmp_path) -> Registry:
    Registry.init(isolated_env).config_set("core.fsync", "false")
    reg = Registry.open(isolated_env)
    reg.log(make_tree(tmp_path / "src", {"a.txt": "a\n"}), "m", aliases=["best"])
    return reg


@pytest.fixture
def src(tmp_path) -> Path:
    return make_tree(tmp_path / "new", {"w.bin": "weights\n", "sub/c.json": "{}\n"})


def nested(depth: int, leaf=1):
    """`depth` levels of lists around `leaf`, built without recursion."""
    value = leaf
    for _ in range(depth):
        value = [value]
    return value


def listing(mr) -> list:
    result = mr("ls", "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def fsck_ok(mr) -> None:
    result = mr("fsck", "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads(result.stdout)["problems"] == []


class Unchanged:
    """Snapshot what a user sees (ls) and what is stored (data files), then compare."""

    def __init__(self, reg: Registry, mr) -> None:
        self.reg, self.mr = reg, mr
        self.listing = listing(mr)
        self.data = data_state(reg.path)

    def check(self) -> None:
        assert data_state(self.reg.path) == self.data
        assert listing(self.mr) == self.listing
        fsck_ok(self.mr)


# -- metadata: depth and size --------------------------------------------------------


@pytest.mark.parametrize("value", [nested(32), nested(33), nested(1000), nested(100_000)],
                         ids=["32", "33", "1000", "100000"])
def test_api_metadata_deeper_than_32_levels_is_refused(reg, mr, src, value):
    before = Unchanged(reg, mr)
    with pytest.raises(InvalidInput, match="32 levels"):
        reg.log(src, "deep", metadata={"x": value})  # with the top-level object: 33 levels or more
    before.check()


def test_api_metadata_of_exactly_32_levels_is_stored(reg, mr, src):
    deep = {"x": nested(31)}
    reg.log(src, "deep", metadata=deep)
    assert reg.show("deep").metadata == deep
    fsck_ok(mr)
    assert [c["name"] for c in listing(mr)] == ["deep", "m"]


def test_api_metadata_nesting_counts_objects_too(reg, mr, src):
    value: dict = {}
    for _ in range(32):
        value = {"k": value}  # 32 objects inside the top-level one
    before = Unchanged(reg, mr)
    with pytest.raises(InvalidInput, match="32 levels"):
        reg.log(src, "deep", metadata=value)
    before.check()


def test_api_cyclic_metadata_is_refused(reg, mr, src):
    loop: list = []
    loop.append(loop)
    before = Unchanged(reg, mr)
    with pytest.raises(InvalidInput):
        reg.log(src, "loop", metadata={"x": loop})
    before.check()


def test_api_metadata_size_limit_is_one_mebibyte_of_compact_json(reg, mr, src):
    overhead = len(json.dumps({"x": ""}, separators=(",", ":")))
    before = Unchanged(reg, mr)
    with pytest.raises(InvalidInput, match="1 MiB"):
        reg.log(src, "big", metadata={"x": "a" * (LIMIT - overhead + 1)})
    with pytest.raises(InvalidInput, match="1 MiB"):  # bytes of UTF-8, not characters
        reg.log(src, "big", metadata={"x": "\u00e9" * ((LIMIT - overhead) // 2 + 1)})
    before.check()
    reg.log(src, "big", metadata={"x": "a" * (LIMIT - overhead)})
    assert len(reg.show("big").metadata["x"]) == LIMIT - overhead


@pytest.mark.parametrize("metadata", [
    {1: "a"}, {None: 1}, {("a", "b"): 1}, {"x": {2: 3}},
    {"x": {1, 2}}, {"x": b"bytes"}, {"x": object()}, {"x": 10 ** 5000},
    {"x": float("nan")}, {"x": [float("-inf")]}, {"x": "lone \udcff surrogate"}, {"k\udcff": 1},
    ["not", "an", "object"], "x=1", 5,
], ids=["int-key", "none-key", "tuple-key", "nested-int-key", "set", "bytes", "object", "huge-int",
        "nan", "inf-in-list", "surrogate-value", "surrogate-key", "list", "string", "int"])
def test_api_metadata_that_is_not_json_is_refused_before_anything_is_written(reg, mr, src, metadata):
    before = Unchanged(reg, mr)
    with pytest.raises(InvalidInput):
        reg.log(src, "bad", metadata=metadata)
    before.check()
    assert reg.collections()  # readers still work


def test_api_metadata_tuples_are_stored_as_lists(reg, src):
    reg.log(src, "t", metadata={"shape": (3, 4)})
    assert reg.show("t").metadata == {"shape": [3, 4]}


@pytest.mark.parametrize("depth", [33, 1000, 50_000])
def test_cli_deep_m_value_is_exit_2_and_nothing_written(reg, mr, src, depth):
    before = Unchanged(reg, mr)
    assert_error(mr("log", src, "-n", "deep", "-m", "x=" + "[" * depth + "]" * depth), 2, "32 levels")
    before.check()


def test_cli_m_value_of_31_levels_is_stored(reg, mr, src):
    result = mr("log", src, "-n", "deep", "-m", "x=" + "[" * 31 + "]" * 31, "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(mr("show", "deep", "--json").stdout)["metadata"]["x"] == nested(30, [])
    fsck_ok(mr)


def test_cli_deep_meta_file_is_exit_2(reg, mr, src, tmp_path):
    meta = tmp_path / "meta.json"
    meta.write_text('{"x": ' + "[" * 100_000 + "]" * 100_000 + "}")
    before = Unchanged(reg, mr)
    assert_error(mr("log", src, "-n", "deep", "--meta-file", meta), 2, "meta.json", "32 levels")
    before.check()


def test_cli_metadata_over_1_mib_after_merging_is_exit_2(reg, mr, src, tmp_path):
    meta = tmp_path / "meta.json"
    meta.write_text(json.dumps({"a": "x" * 600_000}))
    before = Unchanged(reg, mr)
    assert_error(mr("log", src, "-n", "big", "--meta-file", meta, "-m", "b=" + "y" * 500_000), 2, "1 MiB")
    before.check()


def test_cli_bad_metadata_creates_no_registry(mr, src, isolated_env):
    assert_error(mr("log", src, "-m", "x=" + "[" * 5000 + "]" * 5000), 2)
    assert_error(mr("log", src, "-m", "k=\udcff"), 2)
    assert_error(mr("log", src, "-d", "text \udcff"), 2)
    assert not (isolated_env / ".modelreg").exists()


# -- names that are not UTF-8, and meta files that are not JSON ----------------------


@pytest.fixture
def bad_name_dir(tmp_path) -> Path:
    root = make_tree(tmp_path / "bad", {"ok.txt": "fine\n"})
    (root / os.fsdecode(b"caf\xe9.bin")).write_bytes(b"latin-1 name")
    return root


def test_api_non_utf8_file_name_is_refused_naming_it(reg, mr, bad_name_dir):
    before = Unchanged(reg, mr)
    with pytest.raises(InvalidInput) as caught:
        reg.log(bad_name_dir, "bad")
    assert "caf\\xe9.bin" in str(caught.value) and "UTF-8" in str(caught.value)
    before.check()


def test_api_non_utf8_directory_name_is_refused(reg, mr, tmp_path):
    root = tmp_path / "nested"
    make_tree(root / os.fsdecode(b"d\xff"), {"f.txt": "x"})
    before = Unchanged(reg, mr)
    with pytest.raises(InvalidInput, match=r"d\\xff"):
        reg.log(root, "nested")
    before.check()


def test_cli_non_utf8_file_name_is_exit_2_escaped(reg, mr, bad_name_dir):
    before = Unchanged(reg, mr)
    result = mr("log", bad_name_dir, "-n", "bad")
    assert_error(result, 2, "caf\\xe9.bin", "UTF-8")
    assert "\udce9" not in result.stderr
    before.check()
    assert "bad" not in [c["name"] for c in listing(mr)]


def test_cli_non_utf8_file_name_can_be_excluded(reg, mr, bad_name_dir):
    result = mr("log", bad_name_dir, "-n", "bad", "--exclude", "*.bin", "--json")
    assert result.returncode == 0, result.stderr
    assert [f["path"] for f in json.loads(mr("ls", "bad:v0", "--json").stdout)] == ["ok.txt"]


def test_real_process_non_utf8_names_are_exit_2_with_no_raw_bytes(tmp_path, bad_name_dir):
    """Through the real command: argv and file names as bytes, stderr read as bytes."""
    work = tmp_path / "proc"
    work.mkdir()
    single = tmp_path / os.fsdecode(b"m\xfe.pt")
    single.write_bytes(b"x")
    env = env_for(NO_COLOR="1")
    for args in ([os.fsencode(bad_name_dir), b"-n", b"bad"], [os.fsencode(single), b"-n", b"single"],
                 [os.fsencode(bad_name_dir / "ok.txt"), b"-n", b"d", b"-d", b"caf\xe9"]):
        proc = subprocess.run([sys.executable.encode(), b"-m", b"modelreg", b"log", *args], cwd=work, env=env,
                              capture_output=True)
        assert proc.returncode == 2, proc.stderr
        assert proc.stdout == b""
        assert b"\xe9" not in proc.stderr and b"\xfe" not in proc.stderr, proc.stderr
        assert proc.stderr.startswith(b"modelreg: error: "), proc.stderr
    assert not (work / ".modelreg").exists()


def test_real_process_non_utf8_directory_argument_is_logged_with_an_escaped_producer(tmp_path):
    """Only the directory's contents are stored; its name reaches the manifest only as the
    producer's command line, which describes the run and is kept with `\\xNN` escapes."""
    work = tmp_path / "proc"
    make_tree(work / os.fsdecode(b"d\xe9"), {"a.txt": "a\n"})
    env = env_for(NO_COLOR="1")
    proc = subprocess.run([sys.executable.encode(), b"-m", b"modelreg", b"log", b"d\xe9", b"-n", b"x"], cwd=work,
                          env=env, capture_output=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == b"x:v0\n"
    shown = subprocess.run([sys.executable, "-m", "modelreg", "show", "x", "--json"], cwd=work, env=env,
                           capture_output=True, text=True)
    assert "d\\xe9" in json.loads(shown.stdout)["producer"]["command"]


@pytest.mark.parametrize("content,needle", [
    (b'{"a": "caf\xe9"}', "UTF-8"),
    (b"\xff\xfe{\x00}\x00", "UTF-8"),
    (b"{not json", "not valid JSON"),
    (b'["a", "b"]', "JSON object"),
    (b"3", "JSON object"),
    (b'{"a": NaN}', "NaN"),
    (b"", "not valid JSON"),
], ids=["latin1", "utf16", "not-json", "list", "number", "nan", "empty"])
def test_cli_bad_meta_file_is_exit_2_naming_it(reg, mr, src, tmp_path, content, needle):
    meta = tmp_path / "meta.json"
    meta.write_bytes(content)
    before = Unchanged(reg, mr)
    assert_error(mr("log", src, "-n", "x", "--meta-file", meta), 2, "meta.json", needle)
    before.check()
    with pytest.raises(InvalidInput):
        from modelreg.cli.metadata import load_meta_file
        load_meta_file(meta)


def test_cli_missing_meta_file_is_exit_3_and_dangling_symlink_exit_2(reg, mr, src, tmp_path):
    before = Unchanged(reg, mr)
    assert_error(mr("log", src, "-n", "x", "--meta-file", tmp_path / "nope.json"), 3, "nope.json")
    (tmp_path / "dangling.json").symlink_to(tmp_path / "gone.json")
    assert_error(mr("log", src, "-n", "x", "--meta-file", tmp_path / "dangling.json"), 2, "dangling")
    assert_error(mr("log", src, "-n", "x", "--meta-file", tmp_path), 2, "directory")
    before.check()


def test_cli_meta_file_path_with_a_newline_stays_one_line(reg, mr, src, tmp_path):
    meta = tmp_path / "a\nb.json"
    meta.write_bytes(b"[]")
    result = mr("log", src, "-n", "x", "--meta-file", meta)
    assert_error(result, 2, "\\n")
    assert len(result.stderr.rstrip("\n").split("\n")) <= 2  # the error, and at most a hint


# -- a path that does not exist is "not found" ---------------------------------------


def test_cli_log_of_a_missing_path_is_exit_3(reg, mr, src):
    before = Unchanged(reg, mr)
    assert_error(mr("log", "no-such-dir"), 3, "no-such-dir")
    assert_error(mr("log", src, "no-such-file", "-n", "x"), 3, "no-such-file")
    assert_error(mr("log", src / "w.bin" / "below", "-n", "x"), 3)
    before.check()
    with pytest.raises(NotFound):
        reg.log("no-such-dir")


def test_cli_log_of_a_missing_path_creates_no_registry(mr, isolated_env):
    assert_error(mr("log", "no-such-dir"), 3)
    assert not (isolated_env / ".modelreg").exists()


def test_cli_dangling_symlink_stays_exit_2(reg, mr, tmp_path):
    root = make_tree(tmp_path / "d", {"a": "a"})
    (root / "link").symlink_to(tmp_path / "gone")
    assert_error(mr("log", root, "-n", "x"), 2, "dangling")
    assert_error(mr("log", root / "link", "-n", "x"), 2, "dangling")


# -- Python API: wrong types are InvalidInput, before anything is written ------------


LOG_BAD = {
    "paths-none": dict(paths=None),
    "paths-int": dict(paths=5),
    "paths-bytes": dict(paths=[b"new"]),
    "paths-list-of-int": dict(paths=[5]),
    "name-int": dict(name=5),
    "aliases-none": dict(aliases=None),
    "alias-int": dict(aliases=["ok", 5]),
    "alias-bytes": dict(aliases=[b"best"]),
    "description-int": dict(description=5),
    "description-list": dict(description=["a"]),
    "run-int": dict(run=5),
    "metadata-list": dict(metadata=[("a", 1)]),
    "inputs-none": dict(inputs=None),
    "inputs-int": dict(inputs=[5]),
    "exclude-string": dict(exclude="*.tmp"),
    "exclude-none": dict(exclude=None),
    "exclude-int": dict(exclude=[5]),
    "force-string": dict(force="no"),
    "reason-int": dict(reason=5),
    "reason-surrogate": dict(reason="why \udcff"),
    "run-surrogate": dict(run="\udcff"),
}


@pytest.mark.parametrize("bad", LOG_BAD.values(), ids=LOG_BAD.keys())
def test_api_log_wrong_types_are_invalid_input_and_write_nothing(reg, mr, src, bad):
    args = {"paths": src, "name": "new", **bad}
    before = Unchanged(reg, mr)
    with pytest.raises(InvalidInput):
        reg.log(args.pop("paths"), args.pop("name"), **args)
    before.check()
    assert [c.name for c in reg.collections()] == ["m"]


def test_api_log_exclude_string_hints_at_a_list(reg, src):
    with pytest.raises(InvalidInput) as caught:
        reg.log(src, "new", exclude="*.tmp")
    assert "list" in (caught.value.hint or "")


def test_api_log_still_takes_one_alias_string_and_pathlike(reg, src):
    result = reg.log(src, "new", aliases="best", exclude=["*.tmp"], inputs=("m:v0",))
    assert "best" in result.aliases
    assert reg.log(str(src / "w.bin"), "one", aliases=()).ref == "one:v0"


OTHER_BAD = {
    "link-ref-int": lambda r: r.link(5, "cls"),
    "link-registered-none": lambda r: r.link("m:v0", None),
    "link-alias-int": lambda r: r.link("m:v0", "cls", aliases=[1]),
    "link-aliases-none": lambda r: r.link("m:v0", "cls", aliases=None),
    "link-description-int": lambda r: r.link("m:v0", "cls", description=5),
    "alias-aliases-none": lambda r: r.alias("m:v0", None),
    "alias-alias-int": lambda r: r.alias("m:v0", ["x", 1]),
    "alias-expect-int": lambda r: r.alias("m:v0", "x", expect=0),
    "alias-reason-list": lambda r: r.alias("m:v0", "x", reason=["a"]),
    "alias-force-string": lambda r: r.alias("m:v0", "x", force="yes"),
    "unalias-aliases-none": lambda r: r.unalias("m", None),
    "unalias-alias-int": lambda r: r.unalias("m", [1]),
    "rm-ref-none": lambda r: r.rm(None),
    "rm-all-string": lambda r: r.rm("m", all="yes", force=True),
    "rm-reason-surrogate": lambda r: r.rm("m:v0", force=True, reason="\udcff"),
    "pull-mode-int": lambda r: r.pull("m:v0", "out", mode=5),
    "pull-files-string": lambda r: r.pull("m:v0", "out", files="*.txt"),
    "pull-files-none": lambda r: r.pull("m:v0", "out", files=None),
    "pull-out-int": lambda r: r.pull("m:v0", 5),
    "pull-verify-string": lambda r: r.pull("m:v0", "out", verify="no"),
    "diff-int": lambda r: r.diff(5, "m"),
    "show-none": lambda r: r.show(None),
    "versions-int": lambda r: r.versions(5),
    "versions-sort-int": lambda r: r.versions("m", sort=5),
    "versions-where-string": lambda r: r.versions("m", where="metadata.a=1"),
    "collections-project-int": lambda r: r.collections(5),
    "collections-kind-list": lambda r: r.collections(kind=["artifact"]),
    "history-int": lambda r: r.history(5),
    "config-key-int": lambda r: r.config_set(5, "x"),
    "config-value-int": lambda r: r.config_set("aliases.protected", 5),
    "config-value-none": lambda r: r.config_set("defaults.project", None),
    "gc-grace-nan": lambda r: r.gc(grace=float("nan")),
    "gc-grace-inf": lambda r: r.gc(grace=math.inf),
    "gc-grace-negative": lambda r: r.gc(grace=-1),
    "gc-grace-bool": lambda r: r.gc(grace=True),
    "gc-grace-list": lambda r: r.gc(grace=[1]),
    "gc-grace-bad-text": lambda r: r.gc(grace="soon"),
}


@pytest.mark.parametrize("call", OTHER_BAD.values(), ids=OTHER_BAD.keys())
def test_api_wrong_types_are_invalid_input_and_change_nothing(reg, mr, call, isolated_env):
    before = Unchanged(reg, mr)
    config = (reg.path / "config.toml").read_bytes()
    with pytest.raises(InvalidInput):
        call(reg)
    before.check()
    assert (reg.path / "config.toml").read_bytes() == config
    assert not (isolated_env / "out").exists()


def test_description_5_leaves_every_reader_working(reg, mr, src):
    """The issue's example: v0 was written with description 5, then every `ls` failed."""
    with pytest.raises(InvalidInput):
        reg.log(src, "m", description=5)
    assert [v.version for v in reg.versions("m")] == [0]
    assert mr("ls").returncode == 0
    assert mr("ls", "m").returncode == 0
    fsck_ok(mr)


# -- reserved aliases compare without case -------------------------------------------


RESERVED = ["x.LOCK", "x.Lock", "X.lock", "NONE", "None", "V3", "V0", "v007"]


@pytest.mark.parametrize("alias", RESERVED)
def test_reserved_aliases_in_any_case_are_refused_everywhere(reg, mr, src, alias):
    reg.link("m:v0", "cls")
    before = Unchanged(reg, mr)
    config = (reg.path / "config.toml").read_bytes()
    assert_error(mr("alias", "m:v0", alias), 2, "reserved")
    assert_error(mr("alias", "m:v0", "ok", alias), 2, "reserved")
    assert_error(mr("log", src, "-n", "m", "-a", alias), 2, "reserved")
    assert_error(mr("log", src, "-n", "fresh", "-a", alias), 2, "reserved")
    assert_error(mr("link", "m:v0", "cls", "-a", alias), 2, "reserved")
    assert_error(mr("config", "set", "aliases.protected", f"production,{alias}"), 2, "reserved")
    before.check()
    assert (reg.path / "config.toml").read_bytes() == config
    for call in (lambda: reg.alias("m:v0", alias), lambda: reg.log(src, "m", aliases=[alias]),
                 lambda: reg.link("m:v0", "cls", aliases=alias),
                 lambda: reg.config_set("aliases.protected", ["production", alias])):
        with pytest.raises(InvalidInput, match="reserved"):
            call()
    before.check()


def test_aliases_that_only_look_reserved_are_fine(reg):
    result = reg.alias("m:v0", ["lock", "x.locks", "nonE1", "v3a", "Vx"])
    assert set(result.aliases) >= {"lock", "x.locks", "nonE1", "v3a", "Vx"}


# -- a failed log leaves no collection behind -----------------------------------------


def test_log_that_cannot_take_the_lock_leaves_no_collection(reg, mr, src, monkeypatch):
    """Format 2 takes no collection lock: a log that fails to commit its first record (here
    the disk fills at that moment) leaves no collection, and the name stays free."""
    import errno

    from modelreg import Error, changes

    def full(self, key, record):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    before = listing(mr)
    with monkeypatch.context() as patch:
        patch.setattr(changes.Collection, "_publish", full)
        with pytest.raises(Error):
            reg.log(src, "fresh")
        assert_error(mr("log", src, "-n", "fresh"), 1)
    assert listing(mr) == before
    assert "fresh" not in [c.name for c in reg.collections()]
    assert reg.log(src, "fresh").ref == "fresh:v0"  # and the name is still free


def test_refused_log_into_an_existing_name_of_other_case_writes_nothing(reg, mr, src):
    before = Unchanged(reg, mr)
    with pytest.raises(Conflict):
        reg.log(src, "M")
    assert_error(mr("log", src, "-n", "M"), 4)
    before.check()
