"""Atomic writes: a file under its final name is always whole."""

import pytest

from workers.files import write_atomically


def test_a_failed_write_leaves_neither_the_file_nor_its_partial(tmp_path):
    def broken(handle):
        handle.write(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_atomically(tmp_path / "a.json", broken)
    assert list(tmp_path.iterdir()) == []
