import errno
import os
import stat

import pytest

from hinet.io import atomic_write, atomic_write_bytes, atomic_write_text


def test_writes_bytes_and_text_and_replaces_the_old_file(tmp_path):
    target = tmp_path / "out.bin"
    assert atomic_write_bytes(target, b"first") == target
    atomic_write_bytes(target, b"second")
    assert target.read_bytes() == b"second"
    text_target = tmp_path / "note.txt"
    atomic_write_text(text_target, "héllo\n")
    assert text_target.read_text(encoding="utf-8") == "héllo\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["note.txt", "out.bin"]


def test_new_file_gets_normal_permissions_not_mkstemp_0600(tmp_path):
    previous = os.umask(0o027)
    try:
        import hinet.io

        hinet.io._umask = None  # the helper caches the umask; make it read the one this test sets
        target = atomic_write_bytes(tmp_path / "perm.bin", b"x")
    finally:
        os.umask(previous)
        hinet.io._umask = None
    assert stat.S_IMODE(target.stat().st_mode) == 0o640


@pytest.mark.parametrize("failure", ["writer", "fsync"])
def test_failure_keeps_the_old_file_and_leaves_no_temp_file(tmp_path, monkeypatch, failure):
    target = tmp_path / "state.json"
    atomic_write_text(target, "old")

    def partial_writer(temp):
        temp.write_text("partial")
        if failure == "writer":
            raise OSError(errno.ENOSPC, "No space left on device")

    if failure == "fsync":

        def no_space(fd):
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(os, "fsync", no_space)

    with pytest.raises(OSError, match="No space left"):
        atomic_write(target, partial_writer)
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]


def test_writer_sees_a_temp_path_in_the_target_folder(tmp_path):
    seen = []
    atomic_write(tmp_path / "x.npz", lambda temp: (seen.append(temp), temp.write_bytes(b"1")))
    assert seen[0].parent == tmp_path and seen[0].name.startswith(".x.npz.") and seen[0].name.endswith(".tmp")
    assert not seen[0].exists()
