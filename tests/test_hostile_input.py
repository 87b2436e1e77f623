"""Hostile input: tampered manifests, symlinked targets, deceptive names, metadata that is not an object.

A tampered manifest here is a careful forgery: its version digest is recomputed, so only
the path checks stand between it and the user's disk.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from conftest import make_tree
from foundation_util import manifest_path, rewrite_manifest
from modelreg import Registry
from modelreg.hashing import version_digest
from reliability_util import assert_error, data_state, mr_runner, tree_state


@pytest.fixture
def mr(script_runner):
    return mr_runner(script_runner)


@pytest.fixture
def reg(isolated_env, tmp_path) -> Registry:
    Registry.init(isolated_env).config_set("core.fsync", "false")
    reg = Registry.open(isolated_env)
    reg.log(make_tree(tmp_path / "src", {"a.txt": "a\n", "b.txt": "b\n"}), "m")
    reg.link("m:v0", "classifier")
    return reg


def forge(reg: Registry, paths: list[str]) -> None:
    """Rewrite m:v0 so that its files carry `paths`, with a matching version digest (in
    format 2 also in the records' summaries, and in the link that vouches for it)."""
    manifest = manifest_path(reg.path, "m", 0)
    data = json.loads(manifest.read_text())
    template = data["files"][0]
    data["files"] = [dict(template, path=p) for p in paths]
    entries = [(f["path"], f["digest"], f["size"], f["executable"]) for f in data["files"]]
    data["digest"] = version_digest(entries)
    data["size"] = sum(f["size"] for f in data["files"])
    rewrite_manifest(manifest, json.dumps(data).encode(), digest=data["digest"], size=data["size"])
    link = manifest_path(reg.path, "classifier", 0)
    record = json.loads(link.read_text())
    record["source_digest"] = data["digest"]
    rewrite_manifest(link, json.dumps(record).encode(), digest=data["digest"])


def user_files(tmp_path: Path) -> dict:
    """Everything under tmp_path but the registry (whose caches readers may refresh)."""
    return {k: v for k, v in tree_state(tmp_path).items() if ".modelreg" not in Path(k).parts}


UNSAFE = {
    "dotdot": ["../evil.txt"],
    "deep-dotdot": ["sub/../../evil.txt"],
    "absolute": ["/tmp/evil.txt"],
    "drive": ["C:evil.txt"],
    "drive-slash": ["C:/evil.txt"],
    "unc": ["//server/share/evil.txt"],
    "backslash": ["sub\\evil.txt"],
    "backslash-dotdot": ["..\\evil.txt"],
    "nul": ["evil\x00.txt"],
    "newline": ["evil\n.txt"],
    "escape": ["\x1b[31mred.txt"],
    "del": ["evil\x7f.txt"],
    "c1-control": ["evil\x85.txt"],
    "dot": ["./a.txt"],
    "empty-part": ["sub//a.txt"],
    "trailing-slash": ["sub/"],
    "empty": [""],
    "registry": [".modelreg/config.toml"],
    "registry-case": ["x/.MODELREG/objects"],
    "duplicate": ["a.txt", "a.txt"],
    "case": ["Model.bin", "model.bin"],
    "nfc-nfd": ["caf\u00e9.txt", "cafe\u0301.txt"],
    "file-and-dir": ["sub", "sub/a.txt"],
}


@pytest.mark.parametrize("paths", UNSAFE.values(), ids=UNSAFE.keys())
def test_tampered_manifest_is_refused_by_pull_and_reported_by_fsck(reg, tmp_path, mr, paths):
    forge(reg, paths)
    outside = tmp_path / "outside-check"
    outside.mkdir()
    watched = user_files(tmp_path)
    absolute = Path("/tmp/evil.txt")
    absolute_before = absolute.exists() and absolute.stat().st_mtime_ns
    for ref in ("m:v0", "classifier:v0"):
        out = tmp_path / "out"
        assert_error(mr("pull", ref, "-o", out), 1)
        assert not out.exists()
    assert_error(mr("show", "m:v0"), 1)
    assert user_files(tmp_path) == watched and list(outside.iterdir()) == []
    assert (absolute.exists() and absolute.stat().st_mtime_ns) == absolute_before
    # fsck's report of it: test_fsck_reports_a_forged_or_mistyped_manifest





@pytest.mark.parametrize("paths", [UNSAFE["dotdot"], UNSAFE["absolute"]], ids=["dotdot", "absolute"])
def test_fsck_reports_a_forged_or_mistyped_manifest(reg, mr, paths):
    forge(reg, paths)
    result = mr("fsck", "--json")
    assert result.returncode == 1
    problems = json.loads(result.stdout)["problems"]
    assert {(p["kind"], p["object"]) for p in problems} >= {("manifest", "m:v0")}


def test_pull_refuses_a_symlinked_subdirectory_leading_outside(reg, tmp_path, mr):
    reg.log(make_tree(tmp_path / "nested", {"sub/weights.bin": "w", "top.txt": "t"}), "n")
    outside = tmp_path / "outside"
    outside.mkdir()
    out = tmp_path / "out"
    out.mkdir()
    (out / "sub").symlink_to(outside)
    result = mr("pull", "n:v0", "-o", out)
    assert result.returncode != 0 and "symlink" in result.stderr
    assert list(outside.iterdir()) == [] and not (out / "top.txt").exists()
    # a symlink that stays inside the target is followed
    (out / "sub").unlink()
    (out / "real").mkdir()
    (out / "sub").symlink_to(out / "real")
    assert mr("pull", "n:v0", "-o", out).returncode == 0
    assert (out / "real" / "weights.bin").read_text() == "w"


def test_pull_refuses_a_relative_symlink_escaping_through_dotdot(reg, tmp_path, mr):
    reg.log(make_tree(tmp_path / "nested", {"sub/weights.bin": "w"}), "n")
    out = tmp_path / "out"
    out.mkdir()
    (tmp_path / "elsewhere").mkdir()
    (out / "sub").symlink_to("../elsewhere")
    assert mr("pull", "n:v0", "-o", out).returncode != 0
    assert list((tmp_path / "elsewhere").iterdir()) == []


# -- names and aliases ------------------------------------------------------------------

DECEPTIVE = {
    "cyrillic-e": "resn\u0435t",
    "fullwidth": "\uff52esnet",
    "nfc": "caf\u00e9",
    "nfd": "cafe\u0301",
    "newline": "res\nnet",
    "trailing-newline": "resnet\n",
    "carriage-return": "resnet\r",
    "tab": "res\tnet",
    "zero-width": "res\u200bnet",
    "rtl-override": "res\u202enet",
    "escape": "\x1b[31mresnet",
    "arabic-digit": "model\u0663",
    "nul": "res\x00net",
    "space": "res net",
    "leading-dot": ".resnet",
    "leading-dash": "-resnet",
    "too-long": "a" * 10_000,
}


@pytest.mark.parametrize("name", DECEPTIVE.values(), ids=DECEPTIVE.keys())
def test_deceptive_names_and_aliases_are_refused(reg, tmp_path, mr, name):
    if "\x00" in name:
        pytest.skip("argv cannot carry NUL; the API check below covers it")
    before = data_state(reg.path)
    src = tmp_path / "src"
    for args in (("log", src, "-n", name), ("link", "m:v0", name), ("alias", "m:v0", name),
                 ("show", f"{name}:v0"), ("show", f"m:{name}"), ("alias", "m:v0", "ok", "--expect", name)):
        result = mr(*args)
        assert_error(result, 2)
        first = result.stderr.splitlines()[0]
        assert len(first) < 300 and "\x1b" not in result.stderr, first  # one short, inert line
    assert data_state(reg.path) == before


@pytest.mark.parametrize("name", DECEPTIVE.values(), ids=DECEPTIVE.keys())
def test_deceptive_names_through_the_api(reg, tmp_path, name):
    from modelreg import InvalidInput

    with pytest.raises(InvalidInput):
        reg.log(tmp_path / "src", name)
    with pytest.raises(InvalidInput):
        reg.alias("m:v0", [name])
    with pytest.raises(InvalidInput):
        reg.link("m:v0", name)


def test_case_variant_of_an_existing_alias_is_refused(reg, mr):
    reg.alias("m:v0", ["best"])
    assert_error(mr("alias", "m:v0", "BEST"), 4)


# -- metadata ---------------------------------------------------------------------------


@pytest.mark.parametrize("content", ["[1, 2]", '"text"', "3", "null", "true", "{not json", "", '{"a": NaN}',
                                     '{"a": Infinity}', "\ufeff{}"])
def test_meta_file_that_is_not_a_json_object(reg, tmp_path, mr, content):
    meta = tmp_path / "meta.json"
    meta.write_text(content)
    assert_error(mr("log", tmp_path / "src", "-n", "x", "--meta-file", meta), 2)
    assert not (reg.path / "collections/local/default/x").exists()


@pytest.mark.parametrize("item", ["noequals", "=value", "x=NaN", "x=-Infinity", "x=[1, NaN]"])
def test_bad_metadata_items(reg, tmp_path, mr, item):
    assert_error(mr("log", tmp_path / "src", "-n", "x", "-m", item), 2)


def test_metadata_through_the_api_must_be_an_object(reg, tmp_path):
    from modelreg import InvalidInput

    for bad in ([("a", 1)], "a=1", 3, {"a": float("nan")}, {"a": {1, 2}}):
        with pytest.raises(InvalidInput):
            reg.log(tmp_path / "src", "x", metadata=bad)


@pytest.mark.parametrize("field,value", [("metadata", [1]), ("metadata", "x"), ("files", {}), ("version", -1),
                                         ("version", True), ("artifact", "../../x"), ("digest", "ABC")])
def test_stored_manifest_with_wrong_types(reg, mr, field, value):
    path = manifest_path(reg.path, "m", 0)
    data = json.loads(path.read_text())
    data[field] = value
    rewrite_manifest(path, json.dumps(data).encode())
    assert_error(mr("show", "m:v0"), 1)
    assert_error(mr("pull", "m:v0", "-o", "out"), 1)
    assert not os.path.exists("out")


def test_fsck_reports_a_stored_manifest_with_a_wrong_type(reg, mr):
    path = manifest_path(reg.path, "m", 0)
    data = json.loads(path.read_text())
    data["metadata"] = [1]
    rewrite_manifest(path, json.dumps(data).encode())
    assert json.loads(mr("fsck", "--json").stdout)["ok"] is False
