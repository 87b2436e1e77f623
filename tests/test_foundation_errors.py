"""SPEC §4: one-line errors without tracebacks, usage errors too, exit codes, a quiet closed pipe,
and a library that imports neither typer nor rich."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap

import pytest

from conftest import make_tree, run
from foundation_util import assert_error, manifest_path, ok

USAGE_ERRORS = {
    "unknown-command": ["frobnicate"],
    "unknown-option": ["ls", "--frobnicate"],
    "unknown-global-option": ["--frobnicate", "ls"],
    "missing-argument": ["show"],
    "missing-option-value": ["ls", "--kind"],
    "extra-argument": ["show", "a", "b"],
    "flag-with-value": ["pull", "ckpt", "--verify=yes"],
    "log-without-path": ["log"],
}


@pytest.mark.parametrize("args", USAGE_ERRORS.values(), ids=USAGE_ERRORS.keys())
def test_usage_errors_are_one_modelreg_error_line_not_a_panel(mr, tree, args):
    ok(mr("log", tree))
    result = mr(*args)
    assert_error(result, 2)
    assert "╭" not in result.stderr and "│" not in result.stderr and "Usage:" not in result.stderr


def test_usage_errors_from_a_real_process_on_a_colour_terminal_setting_are_plain_too(modelreg_bin, isolated_env):
    env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    env.update(TERM="xterm-256color", COLUMNS="80", FORCE_COLOR="1")
    for args in (["frobnicate"], ["ls", "--frobnicate"], ["show"]):
        result = subprocess.run([modelreg_bin, *args], capture_output=True, text=True, env=env)
        assert_error(result, 2)
        assert "\x1b" not in result.stderr and "╭" not in result.stderr


# -- exit codes --------------------------------------------------------------------------


def test_not_found_is_3(mr, tree):
    ok(mr("log", tree))
    assert_error(mr("show", "nothing"), 3, "nothing")
    assert_error(mr("show", "ckpt:v5"), 3, "v5")
    assert_error(mr("show", "ckpt:nosuchalias"), 3, "nosuchalias")
    assert_error(mr("ls", "ckpt:v5"), 3)


def test_no_registry_is_3_with_a_hint(mr):
    result = mr("ls")
    assert_error(result, 3, "registry")
    assert "hint:" in result.stderr


def test_invalid_input_is_2(mr, tree):
    assert_error(mr("log", tree, "-m", "x=NaN"), 2)
    assert_error(mr("log", tree, "-a", "v3"), 2)
    ok(mr("log", tree))
    assert_error(mr("show", "bad name"), 2)


def test_conflict_is_4(mr, tree, isolated_env):
    ok(mr("log", tree))
    ok(mr("pull", "ckpt", "-o", "out"))
    (isolated_env / "out" / "model.bin").write_bytes(b"mine")
    assert_error(mr("pull", "ckpt", "-o", "out"), 4)


def test_a_lock_held_too_long_is_4_naming_its_holder(mr, tree, isolated_env, monkeypatch):
    ok(mr("log", tree))
    # A live holder on this host: this test process itself.
    from modelreg.locks import holder_record

    # format 2 keeps no collection lock; the config's lock is one a command waits for
    lock = isolated_env / ".modelreg" / "locks" / "config.lock"
    lock.write_text(json.dumps(holder_record()))
    monkeypatch.setenv("MODELREG_LOCK_TIMEOUT", "0.3")
    result = mr("config", "set", "gc.grace", "1h")
    assert_error(result, 4, str(os.getpid()))
    assert socket.gethostname() in result.stderr
    lock.unlink()
    ok(mr("config", "set", "gc.grace", "1h"))
    assert ok(mr("config", "get", "gc.grace")) == "1h\n"


def test_a_stale_lock_of_a_dead_process_is_broken(mr, tree, isolated_env):
    ok(mr("log", tree))
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    lock = isolated_env / ".modelreg" / "locks" / "config.lock"
    lock.write_text(json.dumps({"host": socket.gethostname(), "pid": dead.pid, "pstart": None, "time": 0}))
    ok(mr("config", "set", "gc.grace", "1h"))
    assert not lock.exists()
    (tree / "model.bin").write_bytes(b"new weights")
    assert ok(mr("log", tree)) == "ckpt:v1\n"


def test_an_integrity_problem_is_1(mr, tree, isolated_env):
    ok(mr("log", tree))
    manifest = manifest_path(isolated_env / ".modelreg", "ckpt", 0)
    manifest.write_text("[]")
    assert_error(mr("show", "ckpt"), 1)


def test_debug_shows_the_traceback_that_is_otherwise_hidden(mr, tree):
    ok(mr("log", tree))
    assert_error(mr("show", "nothing"), 3)
    debug = run("show", "nothing", env={**os.environ, "MODELREG_DEBUG": "1"})
    assert debug.returncode != 0
    assert "Traceback" in debug.stderr and "NotFound" in debug.stderr


# -- a closed pipe -----------------------------------------------------------------------


def _piped(modelreg_bin, root, command, reader):
    """Run `modelreg ... | reader` in bash; returns (modelreg's exit code, its stderr, stdout)."""
    err = root.parent / "stderr.txt"
    script = f'"{modelreg_bin}" --root "{root}" {command} 2>"{err}" | {reader}; echo "${{PIPESTATUS[0]}}" >&2'
    result = subprocess.run(["bash", "-c", script], capture_output=True, text=True)
    return int(result.stderr.strip().splitlines()[-1]), err.read_text(), result.stdout


@pytest.fixture
def small_registry(tmp_path, tree):
    import modelreg

    reg = modelreg.Registry.init(tmp_path / "small")
    reg.log(tree, name="ckpt")
    reg.log(tree, name="vision/resnet")
    return reg.path


@pytest.fixture(scope="module")
def many_files(tmp_path_factory):
    """One version whose file list is far bigger than a pipe buffer, so the writer meets EPIPE."""
    import modelreg

    tmp_path = tmp_path_factory.mktemp("many-files")
    modelreg.Registry.init(tmp_path / "big").config_set("core.fsync", "false")
    reg = modelreg.Registry.open(tmp_path / "big")
    src = make_tree(tmp_path / "src", {f"dir-{i % 10}/file-{i:05d}.bin": str(i) for i in range(3000)})
    reg.log(src, name="big")
    return reg.path


@pytest.mark.parametrize("mode", ["", "--json"])
def test_ls_piped_into_head_ends_quietly_with_exit_0(small_registry, modelreg_bin, mode):
    code, stderr, stdout = _piped(modelreg_bin, small_registry, f"ls {mode}", "head -1")
    assert (code, stderr) == (0, "")
    assert len(stdout.splitlines()) == 1


@pytest.mark.parametrize("command", ["ls", "ls --plain", "show ckpt", "show ckpt --json"])
def test_output_into_a_reader_that_already_exited_ends_quietly_with_exit_0(small_registry, modelreg_bin, command):
    code, stderr, _ = _piped(modelreg_bin, small_registry, command, "true")
    assert (code, stderr) == (0, "")


@pytest.mark.parametrize("mode", ["", "--plain", "-q"])
def test_a_long_listing_cut_off_by_head_ends_quietly_with_exit_0(many_files, modelreg_bin, mode):
    code, stderr, stdout = _piped(modelreg_bin, many_files, f"ls big:v0 {mode}", "head -1")
    assert (code, stderr) == (0, "")
    assert len(stdout.splitlines()) == 1


# -- the library on its own --------------------------------------------------------------


def test_the_library_imports_neither_typer_nor_rich(tmp_path, tree):
    script = textwrap.dedent(f"""
        import sys
        import modelreg
        reg = modelreg.Registry.init({str(tmp_path / "lib")!r})
        v = reg.log({str(tree)!r}, name="resnet", aliases=["best"], metadata={{"epoch": 3}})
        reg.log({str(tree)!r}, name="resnet")
        reg.versions("resnet"); reg.collections(); reg.show("resnet:best"); reg.files(v.ref)
        reg.pull(v.ref, {str(tmp_path / "out")!r}, mode="copy")
        try:
            reg.show("nothing")
        except modelreg.NotFound as exc:
            assert exc.exit_code == 3
        heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("typer", "rich", "click"))
        print(",".join(heavy))
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""
    assert result.stderr == ""  # the API never prints


@pytest.mark.parametrize("args, page", [
    (["ls", "--kind"], "modelreg ls --help"),
    (["pull"], "modelreg pull --help"),
    (["ls", "--frobnicate"], "modelreg ls --help"),
    (["config", "get"], "modelreg config get --help"),
    (["frobnicate"], "modelreg --help"),
])
def test_a_usage_error_hints_at_the_help_of_the_command_typed(mr, args, page):
    result = mr(*args)
    assert_error(result, 2)
    assert result.stderr.splitlines()[-1] == f"hint: run '{page}' for usage"
