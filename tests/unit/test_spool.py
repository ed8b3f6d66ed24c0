import os

import pytest

from radtriage.ingest.spool import Spool, SpoolFullError


def test_write_is_atomic_and_leaves_no_partials(tmp_path):
    sp = Spool(tmp_path / "spool")
    p = sp.instance_path("1.2", "1.2.3", "1.2.3.4")
    assert sp.write(p, b"abcdef") == p
    assert p.read_bytes() == b"abcdef"
    assert not list((tmp_path / "spool").rglob("*.part"))


def test_place_never_replaces_an_existing_file(tmp_path):
    sp = Spool(tmp_path / "spool")
    p = sp.instance_path("1.2", "1.2.3", "1.2.3.4")
    first, created = sp.place(sp.stage(b"old"), p)
    assert (first, created) == (p, True)
    second, created = sp.place(sp.stage(b"new"), p)
    assert not created and second != p and second.parent == p.parent
    assert p.read_bytes() == b"old" and second.read_bytes() == b"new"
    assert not list(sp.incoming.iterdir())


def test_the_same_bytes_left_by_a_crash_are_shared_not_written_twice(tmp_path):
    # a process killed after placing an instance and before indexing it leaves the file; the sender tries again
    sp = Spool(tmp_path / "spool")
    p = sp.instance_path("1.2", "1.2.3", "1.2.3.4")
    sp.place(sp.stage(b"same"), p)
    again, created = sp.place(sp.stage(b"same"), p)
    assert (again, created) == (p, False)  # not ours to remove if indexing fails again
    assert [f.name for f in p.parent.iterdir()] == [p.name] and not list(sp.incoming.iterdir())


def test_failed_stage_removes_its_temporary_file(tmp_path, monkeypatch):
    sp = Spool(tmp_path / "spool")

    def boom(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", boom)
    with pytest.raises(OSError):
        sp.stage(b"x" * 100)
    assert not list((tmp_path / "spool").rglob("*.part"))


def test_free_space_reserve(tmp_path):
    sp = Spool(tmp_path / "spool", min_free_bytes=10**18)
    with pytest.raises(SpoolFullError):
        sp.stage(b"x")


def test_staged_files_from_a_crash_are_removed(tmp_path):
    sp = Spool(tmp_path / "spool")
    staged = sp.stage(b"half")
    final = sp.write(sp.instance_path("1", "2", "3"), b"whole")
    assert staged.path.exists()
    assert sp.remove_partials() == 0  # still locked: a live write
    os.close(staged.fd)  # as when its writer dies
    assert sp.remove_partials() == 1
    assert not staged.path.exists() and final.read_bytes() == b"whole"
