"""A file is never written outside DIR, whatever a manifest says (SPEC §3 `pull`, §5 path safety)."""

from __future__ import annotations

import json

import pytest

from foundation_util import assert_error, listing, manifest_path, ok, rewrite_manifest


@pytest.fixture
def logged(mr, tree, isolated_env):
    ok(mr("log", tree))
    return manifest_path(isolated_env / ".modelreg", "ckpt", 0)


def tamper(manifest, old_path, new_path):
    data = json.loads(manifest.read_text())
    for entry in data["files"]:
        if entry["path"] == old_path:
            entry["path"] = new_path
    data["files"].sort(key=lambda e: e["path"])
    return rewrite_manifest(manifest, json.dumps(data, indent=1).encode())


def everything_but_the_registry(tmp_path):
    # The registry may refresh its caches on a read; nothing else may change.
    return listing(tmp_path, skip=("work/.modelreg",))


UNSAFE = {
    "dotdot": "../outside",
    "deep-dotdot": "sub/../../outside",
    "absolute": "{tmp}/victim/outside",
    "dot-part": "./model.bin",
    "empty-part": "sub//x",
    "backslash": "..\\outside",
    "drive": "C:/outside",
    "registry-part": ".modelreg/config.toml",
    "control-char": "evil\x1b[2J",
}


@pytest.mark.parametrize("bad", UNSAFE.values(), ids=UNSAFE.keys())
def test_an_unsafe_path_in_a_stored_manifest_fails_pull_and_writes_nothing_anywhere(mr, logged, tmp_path, bad):
    (tmp_path / "victim").mkdir()
    # The last file in the manifest is the bad one: a per-file check would already have written the others.
    tamper(logged, "sub/deeper/notes.txt", bad.format(tmp=tmp_path))
    before = everything_but_the_registry(tmp_path)
    for target in (["-o", "out"], ["-o", tmp_path / "victim" / "deeper"], []):
        assert_error(mr("pull", "ckpt:v0", *target), 1)
        assert everything_but_the_registry(tmp_path) == before
    assert not (tmp_path / "outside").exists() and not (tmp_path / "work" / "outside").exists()


def test_a_manifest_path_through_a_symlink_in_the_target_is_refused(mr, logged, tmp_path, isolated_env):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out = isolated_env / "out"
    out.mkdir()
    (out / "sub").symlink_to(elsewhere, target_is_directory=True)
    before = everything_but_the_registry(tmp_path)
    assert_error(mr("pull", "ckpt:v0", "-o", out), 2, "sub")
    assert everything_but_the_registry(tmp_path) == before
    assert list(elsewhere.iterdir()) == []


def test_a_symlinked_subdirectory_that_stays_inside_the_target_is_fine(mr, logged, isolated_env):
    out = isolated_env / "out"
    (out / "real-sub").mkdir(parents=True)
    (out / "sub").symlink_to("real-sub", target_is_directory=True)
    ok(mr("pull", "ckpt:v0", "-o", out))
    assert (out / "real-sub" / "deeper" / "notes.txt").read_text() == "hello\n"


@pytest.mark.parametrize("clash", ["config.json", "CONFIG.json", "sub"], ids=["equal", "case-only", "file-and-dir"])
def test_a_manifest_whose_paths_clash_is_refused(mr, logged, isolated_env, clash):
    tamper(logged, "empty", clash)
    assert_error(mr("pull", "ckpt:v0", "-o", "out"), 1)
    assert not (isolated_env / "out").exists()


def test_a_manifest_that_is_not_json_is_an_integrity_error(mr, logged, isolated_env):
    rewrite_manifest(logged, b"{ this is not json")
    for args in (["pull", "ckpt:v0", "-o", "out"], ["show", "ckpt:v0"], ["ls", "ckpt:v0"]):
        assert_error(mr(*args), 1)
    assert not (isolated_env / "out").exists()


def test_show_and_ls_of_a_tampered_version_fail_too(mr, logged):
    tamper(logged, "model.bin", "../../etc/passwd")
    assert_error(mr("show", "ckpt:v0"), 1)
    assert_error(mr("ls", "ckpt:v0"), 1)
