"""`modelreg pull` (SPEC §3): target directory, idempotence, conflicts, --file, modes, verification."""

from __future__ import annotations

import os
import stat
import subprocess
import time

import pytest

from foundation_util import assert_error, listing, ok, one_json, tree_snapshot


@pytest.fixture
def logged(mr, tree):
    ok(mr("log", tree))
    return tree


def blob_of(isolated_env, digest):
    return isolated_env / ".modelreg" / "objects" / digest[:2] / digest[2:]


def files_under(directory):
    return sorted(str(p.relative_to(directory)) for p in directory.rglob("*") if not p.is_dir()) \
        if directory.exists() else []


def digest_of(mr, ref, path):
    return next(f["digest"] for f in one_json(mr("ls", ref, "--json")) if f["path"] == path)


# -- where -------------------------------------------------------------------------------


def test_default_directory_is_name_dash_version_in_the_current_directory(mr, logged, isolated_env):
    result = mr("pull", "ckpt")
    assert os.path.samefile(ok(result).strip(), isolated_env / "ckpt-v0")
    assert tree_snapshot(isolated_env / "ckpt-v0") == tree_snapshot(logged)


def test_default_directory_names_the_version_of_the_selector(mr, logged, isolated_env):
    (logged / "model.bin").write_bytes(b"v1")
    ok(mr("log", logged, "-a", "best"))
    ok(mr("pull", "ckpt:v0"))
    ok(mr("pull", "ckpt:best"))
    assert (isolated_env / "ckpt-v0").is_dir() and (isolated_env / "ckpt-v1").is_dir()
    assert (isolated_env / "ckpt-v1" / "model.bin").read_bytes() == b"v1"


def test_output_option_names_the_directory_and_creates_parents(mr, logged, tmp_path):
    target = tmp_path / "a" / "b" / "model"
    assert ok(mr("pull", "ckpt", "-o", target)).strip() == str(target)
    assert tree_snapshot(target) == tree_snapshot(logged)


# -- idempotence and conflicts -----------------------------------------------------------


def test_pulling_again_rewrites_nothing(mr, logged, isolated_env):
    ok(mr("pull", "ckpt", "-o", "out"))
    before = listing(isolated_env / "out")
    again = mr("pull", "ckpt", "-o", "out")
    assert ok(again).strip() == "out"
    assert listing(isolated_env / "out") == before  # same inodes, sizes and mtimes


def test_a_missing_file_is_restored_and_the_others_are_left_as_they_are(mr, logged, isolated_env):
    out = isolated_env / "out"
    ok(mr("pull", "ckpt", "-o", out))
    (out / "sub" / "deeper" / "notes.txt").unlink()
    before = listing(out)
    ok(mr("pull", "ckpt", "-o", out))
    assert (out / "sub" / "deeper" / "notes.txt").read_text() == "hello\n"
    files_before = {k: v for k, v in before.items() if v[0] == stat.S_IFREG}
    assert {k: v for k, v in listing(out).items() if k in files_before} == files_before


def test_a_differing_file_is_a_conflict_and_nothing_is_written(mr, logged, isolated_env):
    out = isolated_env / "out"
    ok(mr("pull", "ckpt", "-o", out))
    (out / "config.json").write_text("edited by hand\n")
    (out / "empty").unlink()
    before = listing(out)
    assert_error(mr("pull", "ckpt", "-o", out), 4, "config.json")
    assert listing(out) == before
    assert (out / "config.json").read_text() == "edited by hand\n"
    assert not (out / "empty").exists()


def test_force_overwrites_a_differing_file(mr, logged, isolated_env):
    out = isolated_env / "out"
    ok(mr("pull", "ckpt", "-o", out))
    (out / "config.json").write_text("edited by hand\n")
    ok(mr("pull", "ckpt", "-o", out, "--force"))
    assert tree_snapshot(out) == tree_snapshot(logged)


def test_a_differing_executable_bit_alone_is_repaired_not_a_conflict(mr, logged, isolated_env):
    out = isolated_env / "out"
    ok(mr("pull", "ckpt", "-o", out))
    (out / "bin" / "run.sh").chmod(0o644)
    ok(mr("pull", "ckpt", "-o", out))
    assert os.stat(out / "bin" / "run.sh").st_mode & stat.S_IXUSR


def test_files_the_version_does_not_have_are_left_alone(mr, logged, isolated_env):
    out = isolated_env / "out"
    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    (out / "sub").mkdir()
    (out / "sub" / "also-mine").write_text("keep")
    ok(mr("pull", "ckpt", "-o", out))
    assert (out / "mine.txt").read_text() == "keep me"
    assert (out / "sub" / "also-mine").read_text() == "keep"
    snapshot = tree_snapshot(out)
    del snapshot["mine.txt"], snapshot["sub/also-mine"]
    assert snapshot == tree_snapshot(logged)


def test_a_file_where_the_version_has_a_directory_is_a_conflict(mr, logged, isolated_env):
    out = isolated_env / "out"
    out.mkdir()
    (out / "sub").write_text("a file in the way")
    assert_error(mr("pull", "ckpt", "-o", out), 4)
    assert sorted(os.listdir(out)) == ["sub"]


# -- --file ------------------------------------------------------------------------------


def test_file_patterns_pull_only_matching_paths(mr, logged, isolated_env):
    doc = one_json(mr("pull", "ckpt", "-o", "part", "--file", "*.json", "--file", "sub/*", "--json"))
    assert doc["files"] == 2
    assert sorted(tree_snapshot(isolated_env / "part")) == ["config.json", "sub/deeper/notes.txt"]


def test_a_file_pattern_matching_nothing_is_not_found_and_writes_nothing(mr, logged, isolated_env):
    assert_error(mr("pull", "ckpt", "-o", "part", "--file", "*.json", "--file", "*.onnx"), 3, "*.onnx")
    assert not (isolated_env / "part").exists()


# -- modes -------------------------------------------------------------------------------


def test_auto_and_copy_give_the_user_files_of_their_own(mr, logged, isolated_env):
    for mode in ("auto", "copy"):
        out = isolated_env / mode
        doc = one_json(mr("pull", "ckpt", "-o", out, "--mode", mode, "--json"))
        assert doc["mode"] in (("copy", "reflink") if mode == "auto" else ("copy",))
        assert tree_snapshot(out) == tree_snapshot(logged)
        for path in tree_snapshot(out):
            st = os.stat(out / path)
            blob = blob_of(isolated_env, digest_of(mr, "ckpt:v0", path))
            assert st.st_ino != blob.stat().st_ino and st.st_nlink == 1
            assert st.st_mode & stat.S_IWUSR  # the user's file, not a read-only blob


def test_hardlink_shares_the_blob_inode_except_for_executables_which_are_copied(mr, logged, isolated_env):
    out = isolated_env / "linked"
    result = mr("pull", "ckpt", "-o", out, "--mode", "hardlink")
    ok(result)
    assert "execut" in result.stderr  # the note about the copied executable
    assert tree_snapshot(out) == tree_snapshot(logged)
    for path in ("model.bin", "config.json", "empty", "sub/deeper/notes.txt"):
        blob = blob_of(isolated_env, digest_of(mr, "ckpt:v0", path))
        assert os.stat(out / path).st_ino == blob.stat().st_ino, path
        assert stat.S_IMODE(blob.stat().st_mode) == 0o444
    script = out / "bin" / "run.sh"
    assert os.stat(script).st_ino != blob_of(isolated_env, digest_of(mr, "ckpt:v0", "bin/run.sh")).stat().st_ino
    assert os.stat(script).st_mode & stat.S_IXUSR


def test_symlink_points_at_blobs_except_for_executables_which_are_copied(mr, logged, isolated_env):
    out = isolated_env / "symlinked"
    result = mr("pull", "ckpt", "-o", out, "--mode", "symlink")
    ok(result)
    assert "execut" in result.stderr
    assert tree_snapshot(out) == tree_snapshot(logged)
    for path in ("model.bin", "config.json"):
        assert (out / path).is_symlink()
        assert os.path.samefile(out / path, blob_of(isolated_env, digest_of(mr, "ckpt:v0", path)))
    assert not (out / "bin" / "run.sh").is_symlink()
    again = listing(out)
    ok(mr("pull", "ckpt", "-o", out, "--mode", "symlink"))
    assert listing(out) == again


def _can_reflink(directory) -> bool:
    src, dst = directory / "reflink-probe-src", directory / "reflink-probe-dst"
    src.write_bytes(b"probe")
    try:
        return subprocess.run(["cp", "--reflink=always", src, dst], capture_output=True).returncode == 0
    finally:
        src.unlink()
        dst.unlink(missing_ok=True)


def test_reflink_fails_where_the_filesystem_cannot_clone(mr, logged, isolated_env):
    result = mr("pull", "ckpt", "-o", "cloned", "--mode", "reflink")
    if _can_reflink(isolated_env):  # btrfs, xfs: then it must work
        assert ok(result).strip() == "cloned"
    else:  # ext4 (this machine), tmpfs
        assert_error(result, 1, "reflink")
        assert files_under(isolated_env / "cloned") == []


def test_an_unknown_mode_is_a_usage_error(mr, logged, isolated_env):
    assert_error(mr("pull", "ckpt", "--mode", "teleport"), 2)
    assert not (isolated_env / "ckpt-v0").exists()


def test_pull_mode_comes_from_the_config(mr, logged, isolated_env):
    ok(mr("config", "set", "pull.mode", "hardlink"))
    doc = one_json(mr("pull", "ckpt", "-o", "out", "--json"))
    assert doc["mode"] == "hardlink"
    blob = blob_of(isolated_env, digest_of(mr, "ckpt:v0", "model.bin"))
    assert os.stat(isolated_env / "out" / "model.bin").st_ino == blob.stat().st_ino


# -- verification ------------------------------------------------------------------------


def corrupt(isolated_env, digest):
    blob = blob_of(isolated_env, digest)
    size = blob.stat().st_size
    blob.chmod(0o644)
    blob.write_bytes(b"X" * size)
    blob.chmod(0o444)


def test_a_corrupt_blob_fails_a_copy_and_leaves_no_file(mr, logged, isolated_env):
    corrupt(isolated_env, digest_of(mr, "ckpt:v0", "model.bin"))
    assert_error(mr("pull", "ckpt", "-o", "out", "--mode", "copy"), 1)
    out = isolated_env / "out"
    assert not (out / "model.bin").exists()
    assert not [p for p in files_under(out) if ".modelreg-tmp-" in p]


def test_no_verify_copies_without_hashing(mr, logged, isolated_env):
    corrupt(isolated_env, digest_of(mr, "ckpt:v0", "model.bin"))
    ok(mr("pull", "ckpt", "-o", "out", "--mode", "copy", "--no-verify"))
    assert (isolated_env / "out" / "model.bin").read_bytes() == b"X" * len(b"\x00\x01weights" * 100)


def test_verify_rehashes_linked_blobs(mr, logged, isolated_env):
    corrupt(isolated_env, digest_of(mr, "ckpt:v0", "model.bin"))
    ok(mr("pull", "ckpt", "-o", "unchecked", "--mode", "hardlink"))
    assert_error(mr("pull", "ckpt", "-o", "checked", "--mode", "hardlink", "--verify"), 1)
    assert not (isolated_env / "checked" / "model.bin").exists()


# -- interrupted pulls -------------------------------------------------------------------


def test_temp_files_left_by_a_killed_pull_are_removed_by_the_next_pull(mr, logged, isolated_env):
    out = isolated_env / "out"
    ok(mr("pull", "ckpt", "-o", out))
    # What a SIGKILLed pull leaves: `.modelreg-tmp-*` siblings of the files it was writing.
    leftovers = [out / ".modelreg-tmp-0a1b2c3d4e5f", out / "sub" / "deeper" / ".modelreg-tmp-ffeeddccbbaa"]
    for path in leftovers:
        path.write_bytes(b"half a file")
    (out / "model.bin").unlink()
    ok(mr("pull", "ckpt", "-o", out))
    assert not any(path.exists() for path in leftovers)
    assert tree_snapshot(out) == tree_snapshot(logged)


@pytest.mark.slow
def test_a_really_killed_pull_leaves_nothing_the_next_pull_does_not_clean(logged, modelreg_bin, isolated_env):
    big = logged / "big.bin"
    big.write_bytes(os.urandom(32 * 1024 * 1024))
    subprocess.run([modelreg_bin, "log", logged, "-q"], check=True, capture_output=True)
    out = isolated_env / "out"
    proc = subprocess.Popen([modelreg_bin, "pull", "ckpt", "-o", out], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        for _ in range(400):  # kill it as soon as it has started writing files
            if out.exists() and any(out.rglob("*")):
                break
            if proc.poll() is not None:
                break
            time.sleep(0.005)
    finally:
        proc.kill()
        proc.wait()
    result = subprocess.run([modelreg_bin, "pull", "ckpt", "-o", out], capture_output=True, text=True)
    assert ok(result).strip() == str(out)
    assert not list(out.rglob(".modelreg-tmp-*"))
    assert tree_snapshot(out) == tree_snapshot(logged)
