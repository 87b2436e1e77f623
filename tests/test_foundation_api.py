"""The Python API (SPEC §6): what training code calls directly, and its typed errors."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest


import modelreg
from conftest import make_tree
from foundation_util import manifest_path, rewrite_manifest, tree_snapshot


@pytest.fixture
def reg(isolated_env):
    return modelreg.Registry.init(isolated_env)


def test_error_types_know_their_exit_codes():
    assert modelreg.Error.exit_code == 1
    assert modelreg.InvalidInput.exit_code == 2
    assert modelreg.NotFound.exit_code == 3
    assert modelreg.Conflict.exit_code == 4
    assert modelreg.IntegrityError.exit_code == 1
    for kind in (modelreg.InvalidInput, modelreg.NotFound, modelreg.Conflict, modelreg.IntegrityError):
        assert issubclass(kind, modelreg.Error)


def test_init_is_idempotent_and_open_finds_the_nearest_registry(isolated_env):
    made = modelreg.Registry.init(isolated_env)
    assert made.path == isolated_env / ".modelreg"
    assert modelreg.Registry.init(isolated_env).path == made.path
    deep = isolated_env / "a" / "b"
    deep.mkdir(parents=True)
    assert modelreg.Registry.open(root=deep.parent.parent).path == made.path
    assert modelreg.Registry.open(root=made.path).path == made.path
    import os
    os.chdir(deep)
    assert modelreg.Registry.open().path == made.path


def test_open_without_a_registry_raises_not_found(isolated_env):
    with pytest.raises(modelreg.NotFound) as raised:
        modelreg.Registry.open()
    assert raised.value.exit_code == 3
    assert not (isolated_env / ".modelreg").exists()


def test_open_or_init_creates_once_and_reopens(isolated_env):
    notes = []
    first = modelreg.Registry.open_or_init(notify=notes.append)
    second = modelreg.Registry.open_or_init(notify=notes.append)
    assert first.path == second.path == isolated_env / ".modelreg"
    assert len(notes) == 1 and "created" in notes[0]


def test_log_returns_ref_version_digest_and_new(reg, tree):
    v = reg.log(tree, name="resnet", aliases=["best"], metadata={"epoch": 3, "val_acc": 0.91})
    assert (v.ref, v.version, v.new) == ("resnet:v0", 0, True)
    assert len(v.digest) == 64 and "best" in v.aliases
    again = reg.log(str(tree), name="resnet")
    assert (again.ref, again.version, again.new, again.digest) == ("resnet:v0", 0, False, v.digest)
    assert v.to_json()["version"] == 0


def test_log_accepts_several_paths_and_a_default_name(reg, tmp_path):
    src = make_tree(tmp_path / "src", {"a.bin": "a", "tok/v.txt": "v"})
    assert reg.log(src / "a.bin").ref == "a.bin:v0"
    assert reg.log([src / "a.bin", src / "tok"], name="both").ref == "both:v0"
    assert [f.path for f in reg.files("both")] == ["a.bin", "tok/v.txt"]


def test_versions_collections_show_and_files(reg, tree):
    reg.log(tree, name="resnet", metadata={"epoch": 1})
    (tree / "model.bin").write_bytes(b"better")
    reg.log(tree, name="resnet", aliases=["best"], metadata={"epoch": 2})

    versions = reg.versions("resnet")
    assert [(v.version, v.metadata["epoch"]) for v in versions] == [(0, 1), (1, 2)]
    collections = reg.collections()
    assert [(c.name, c.kind, c.versions, c.latest, c.aliases) for c in collections] == \
        [("resnet", "artifact", 2, 1, {"best": 1})]

    shown = reg.show("resnet:best")
    assert (shown.ref, shown.version, shown.metadata) == ("resnet:v1", 1, {"epoch": 2})
    assert "best" in shown.aliases and "latest" in shown.aliases
    with pytest.raises(dataclasses.FrozenInstanceError):
        shown.version = 7
    files = reg.files("resnet:v1")
    assert {f.path: f.size for f in files}["model.bin"] == len(b"better")
    assert all(isinstance(f, modelreg.FileEntry) for f in files)


def test_pull_writes_the_files_and_returns_the_directory(reg, tree, tmp_path):
    reg.log(tree, name="resnet")
    result = reg.pull("resnet", tmp_path / "out", mode="copy")
    assert result.path == str(tmp_path / "out") and result.files == 5 and result.mode == "copy"
    assert tree_snapshot(tmp_path / "out") == tree_snapshot(tree)
    assert reg.pull("resnet", tmp_path / "out").written == 0


def test_api_errors_are_typed(reg, tree, tmp_path):
    reg.log(tree, name="resnet")
    with pytest.raises(modelreg.NotFound):
        reg.show("resnet:v3")
    with pytest.raises(modelreg.InvalidInput):
        reg.log(tree, name="bad name")
    with pytest.raises(modelreg.InvalidInput):
        reg.log(tree, name="x", metadata={"loss": math.nan})
    with pytest.raises(modelreg.InvalidInput):
        reg.log(tree, name="x", metadata={"loss": math.inf})
    with pytest.raises(modelreg.InvalidInput):
        reg.log(tree, name="x", aliases=["v2"])
    reg.pull("resnet", tmp_path / "out")
    (tmp_path / "out" / "config.json").write_text("mine")
    with pytest.raises(modelreg.Conflict):
        reg.pull("resnet", tmp_path / "out")
    manifest = manifest_path(reg.path, "resnet", 0)
    data = json.loads(manifest.read_text())
    data["files"][0]["path"] = "../escape"
    rewrite_manifest(manifest, json.dumps(data).encode())
    with pytest.raises(modelreg.IntegrityError):
        reg.pull("resnet", tmp_path / "elsewhere")
    assert not (tmp_path / "escape").exists() and not (tmp_path / "elsewhere").exists()


def test_the_api_never_prints(reg, tree, tmp_path, capsys):
    reg.log(tree, name="resnet")
    reg.log(tree, name="resnet")  # unchanged: a note, but only through notify
    reg.pull("resnet", tmp_path / "out", mode="hardlink")  # copied executable: a note too
    reg.versions("resnet"), reg.collections(), reg.show("resnet")
    captured = capsys.readouterr()
    assert (captured.out, captured.err) == ("", "")


def test_notes_go_to_the_notify_callback(isolated_env, tree, tmp_path):
    notes = []
    reg = modelreg.Registry.init(isolated_env, notify=notes.append)
    reg.log(tree, name="resnet")
    reg.log(tree, name="resnet")
    assert any("unchanged" in n for n in notes)
