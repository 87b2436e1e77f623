"""A directory is a location like any other (SPEC §7): it must offer a create-only publish.

Change records are published by link(2), or by renameat2(RENAME_NOREPLACE) where hard
links are not offered (some SMB and FUSE mounts); a filesystem with neither is refused
when a registry is created there, since two writers could then take one number.
"""

from __future__ import annotations

import errno
import os

import pytest

import modelreg
from modelreg import util
from modelreg.errors import Error


def _no_hard_links(monkeypatch, where):
    real_link = os.link

    def link(src, dst, *args, **kwargs):
        if os.fspath(dst).startswith(os.fspath(where)):
            raise OSError(errno.EPERM, "Operation not permitted", os.fspath(dst))
        return real_link(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "link", link)


def test_a_directory_without_hard_links_is_used_through_rename_noreplace(tmp_path, monkeypatch):
    _no_hard_links(monkeypatch, tmp_path)
    reg = modelreg.Registry.init(tmp_path / "shared")
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt" / "w.bin").write_bytes(b"weights")
    first = reg.log(str(tmp_path / "ckpt"), "resnet", aliases=["best"])
    (tmp_path / "ckpt" / "w.bin").write_bytes(b"weights 2")
    second = reg.log(str(tmp_path / "ckpt"), "resnet")
    assert (first.ref, second.ref) == ("resnet:v0", "resnet:v1")
    assert reg.show("resnet:best").version == 0
    assert reg.fsck().ok


def test_a_directory_offering_neither_is_refused_when_a_registry_is_made(tmp_path, monkeypatch, mr):
    _no_hard_links(monkeypatch, tmp_path)
    monkeypatch.setattr(util, "rename_noreplace", lambda src, dst: False)
    with pytest.raises(Error) as caught:
        modelreg.Registry.init(tmp_path / "shared")
    assert "neither link(2) nor renameat2" in caught.value.message
    assert not (tmp_path / "shared" / ".modelreg" / "config.toml").exists()
    result = mr("init", str(tmp_path / "other"))
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.startswith("modelreg: error: ") and "link(2)" in result.stderr
    assert not (tmp_path / "other" / ".modelreg" / "config.toml").exists()
