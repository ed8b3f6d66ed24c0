import os

import pytest

from radtriage.ingest.spool import Spool, SpoolFullError


def test_write_is_atomic_and_leaves_no_partials(tmp_path):
    sp = Spool(tmp_path / "spool")
    p = sp.instance_path("1.2", "1.2.3", "1.2.3.4")
    assert sp.write(p, [b"abc", memoryview(b"def")]) == 6
    assert p.read_bytes() == b"abcdef"
    assert not list((tmp_path / "spool").rglob("*.part"))


def test_failed_write_removes_its_temporary_file(tmp_path, monkeypatch):
    sp = Spool(tmp_path / "spool")
    p = sp.instance_path("1.2", "1.2.3", "1.2.3.4")

    def boom(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", boom)
    with pytest.raises(OSError):
        sp.write(p, [b"x" * 100])
    assert not p.exists() and not list((tmp_path / "spool").rglob("*.part"))


def test_free_space_reserve(tmp_path):
    sp = Spool(tmp_path / "spool", min_free_bytes=10**18)
    with pytest.raises(SpoolFullError):
        sp.write(sp.instance_path("1", "2", "3"), [b"x"])


def test_partials_from_a_crash_are_removed(tmp_path):
    sp = Spool(tmp_path / "spool")
    d = tmp_path / "spool" / "1" / "2"
    d.mkdir(parents=True)
    (d / ".3.dcm.abc.part").write_bytes(b"half")
    (d / "3.dcm").write_bytes(b"whole")
    assert sp.remove_partials() == 1
    assert [p.name for p in d.iterdir()] == ["3.dcm"]
