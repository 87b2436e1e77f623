"""Issue 2 "must show": the installed command round-trips a directory byte for byte, and
what it stores on disk is SPEC §5's format (blobs, manifests, the version digest)."""

from __future__ import annotations

import json
import os
import stat
import subprocess

from conftest import make_tree
from foundation_util import blake3_hex, is_rfc3339_utc, manifest_path, ok, one_json, tree_snapshot


def real(modelreg_bin, *args, cwd=None):
    return subprocess.run([modelreg_bin, *map(str, args)], cwd=cwd, capture_output=True, text=True)


def test_installed_command_logs_lists_and_pulls_identical_files_with_exec_bit(tree, modelreg_bin, isolated_env):
    logged = real(modelreg_bin, "log", tree)
    assert ok(logged) == "ckpt:v0\n"
    assert "created a new registry" in logged.stderr

    listed = json.loads(ok(real(modelreg_bin, "ls", "--json")))
    assert [(c["name"], c["kind"], c["versions"], c["latest"]) for c in listed] == [("ckpt", "artifact", 1, 0)]
    assert listed[0]["size"] == sum(len(content) for content, _ in tree_snapshot(tree).values())

    target = isolated_env / "restored"
    pulled = real(modelreg_bin, "pull", "ckpt:v0", "-o", target)
    assert ok(pulled).strip() == str(target)

    original, restored = tree_snapshot(tree), tree_snapshot(target)
    assert restored == original
    assert restored["empty"] == (b"", False)
    assert restored["bin/run.sh"][1] is True
    assert restored["model.bin"][1] is False


def test_logging_the_same_directory_twice_prints_the_same_ref_and_makes_no_second_version(mr, tree, isolated_env):
    first = mr("log", tree)
    second = mr("log", tree)
    assert ok(first) == ok(second) == "ckpt:v0\n"
    assert "unchanged" in second.stderr
    versions = one_json(mr("ls", "ckpt", "--json"))
    assert [v["version"] for v in versions] == [0]
    assert not manifest_path((isolated_env / ".modelreg"), "ckpt", 1).exists()


def test_blobs_are_read_only_files_named_by_their_blake3(mr, tree, isolated_env):
    ok(mr("log", tree))
    objects = (isolated_env / ".modelreg") / "objects"
    blobs = [p for p in objects.rglob("*") if p.is_file()]
    contents = {content for content, _ in tree_snapshot(tree).values()}
    assert len(blobs) == len(contents)
    for blob in blobs:
        digest = blob.parent.name + blob.name
        assert len(blob.parent.name) == 2 and len(blob.name) == 62
        assert blake3_hex(blob.read_bytes()) == digest
        assert stat.S_IMODE(blob.stat().st_mode) == 0o444


def test_manifest_holds_spec_fields_and_the_version_digest_recomputes(mr, tree, isolated_env):
    result = one_json(mr("log", tree, "-n", "resnet", "-m", "epoch=3", "-d", "first try", "--json"))
    path = manifest_path((isolated_env / ".modelreg"), "resnet", 0)
    manifest = json.loads(path.read_text())

    # format 2: the number is the record's, not the manifest's; the manifest is named by its BLAKE3
    assert path.stem == blake3_hex(path.read_bytes())
    assert manifest["artifact"] == "local/default/resnet"
    assert "version" not in manifest or manifest["version"] == 0
    assert manifest["metadata"] == {"epoch": 3}
    assert manifest["description"] == "first try"
    assert manifest["inputs"] == []
    assert is_rfc3339_utc(manifest["created"])
    assert {"user", "host", "cwd", "command", "time"} <= set(manifest["producer"])

    files = manifest["files"]
    assert [f["path"] for f in files] == sorted(f["path"] for f in files)
    snapshot = tree_snapshot(tree)
    assert {f["path"] for f in files} == set(snapshot)
    for entry in files:
        assert set(entry) == {"path", "digest", "size", "executable"}
        content, executable = snapshot[entry["path"]]
        assert entry["digest"] == blake3_hex(content)
        assert entry["size"] == len(content)
        assert entry["executable"] is executable
    assert manifest["size"] == sum(len(c) for c, _ in snapshot.values())

    # SPEC §5: BLAKE3 of the compact JSON of [path, digest, size, executable] sorted by path.
    entries = sorted([path, blake3_hex(content), len(content), executable]
                     for path, (content, executable) in snapshot.items())
    expected = blake3_hex(json.dumps(entries, separators=(",", ":")).encode())
    assert manifest["digest"] == expected == result["digest"]


def test_equal_file_sets_give_equal_digests_whatever_the_metadata(mr, tmp_path):
    a = make_tree(tmp_path / "a", {"w.bin": b"same"})
    b = make_tree(tmp_path / "b", {"w.bin": b"same"})
    first = one_json(mr("log", a, "-n", "one", "-m", "lr=0.1", "--json"))
    second = one_json(mr("log", b, "-n", "two", "-m", "lr=0.2", "-d", "other", "--json"))
    assert first["digest"] == second["digest"]
    assert first["new"] is second["new"] is True


def test_the_executable_bit_alone_changes_the_version(mr, tmp_path):
    src = make_tree(tmp_path / "m", {"run": b"#!/bin/sh\n"})
    assert ok(mr("log", src)) == "m:v0\n"
    (src / "run").chmod(0o755)
    assert ok(mr("log", src)) == "m:v1\n"
    files = one_json(mr("ls", "m:v1", "--json"))
    assert files == [{"path": "run", "size": 10, "digest": blake3_hex(b"#!/bin/sh\n"), "executable": True}]


def test_empty_directories_are_not_recorded(mr, tmp_path):
    src = make_tree(tmp_path / "m", {"keep/a.txt": "a"})
    (src / "hollow" / "deeper").mkdir(parents=True)
    ok(mr("log", src))
    assert [f["path"] for f in one_json(mr("ls", "m:v0", "--json"))] == ["keep/a.txt"]
    ok(mr("pull", "m:v0", "-o", tmp_path / "out"))
    assert not (tmp_path / "out" / "hollow").exists()


def test_alias_file_holds_the_version_and_a_newline_and_latest_is_not_stored(mr, tree, isolated_env):
    """Format 2: the aliases are the last change record's map, the kind is the name claim's,
    the history is the records' events; `latest` is stored nowhere."""
    ok(mr("log", tree, "-a", "best"))
    root = isolated_env / ".modelreg"
    records = [json.loads(p.read_bytes()) for p in
               sorted((root / "collections" / "local" / "default" / "ckpt" / "changes").glob("*.json"))]
    assert records[-1]["aliases"] == {"best": 0}
    assert all("latest" not in r["aliases"] for r in records)
    assert json.loads((root / "names" / "local" / "default" / "ckpt.json").read_text())["kind"] == "artifact"
    history = [e for r in records for e in r["events"]]
    assert [e["event"] for e in history] == ["logged", "alias-set"]
    assert all(isinstance(e["version"], int) for e in history)


def test_registry_directories_and_config_exist_after_init(mr, isolated_env):
    ok(mr("init"))
    root = isolated_env / ".modelreg"
    for sub in ("objects", "tmp", "locks", "collections"):
        assert (root / sub).is_dir(), sub
    assert "format = 2" in (root / "config.toml").read_text()
    assert os.listdir(root / "tmp") == []


def test_version_digest_of_non_ascii_paths_uses_the_spec_formula_exactly(mr, tmp_path):
    files = {"modèle/poids.bin": b"w", "日本.txt": b"j", "plain": b"p"}
    src = make_tree(tmp_path / "m", files)
    result = one_json(mr("log", src, "--json"))
    entries = sorted([path, blake3_hex(content), len(content), False] for path, content in files.items())
    assert result["digest"] == blake3_hex(json.dumps(entries, separators=(",", ":")).encode())
    pulled = tmp_path / "out"
    ok(mr("pull", "m", "-o", pulled))
    assert tree_snapshot(pulled) == tree_snapshot(src)
