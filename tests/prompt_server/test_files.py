"""atomic_write: whole files only, with the modes the user's other files have."""
from __future__ import annotations

import os
import stat

import pytest

from prompt_server.files import atomic_write

pytestmark = pytest.mark.skipif(os.name != "posix", reason="file modes are POSIX")


def mode_of(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def umask():
    """Set the umask for one test, then put the old one back."""
    saved = os.umask(0o022)
    os.umask(saved)
    yield os.umask
    os.umask(saved)


@pytest.mark.parametrize("mask, expected", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_a_new_file_gets_the_mode_the_umask_gives_any_new_file(tmp_path, umask, mask, expected):
    umask(mask)
    path = atomic_write(tmp_path / "preset.json", b"{}")
    assert path.read_bytes() == b"{}"
    assert mode_of(path) == expected, "not mkstemp's 0600: the user's other programs must read it"


def test_a_replaced_file_keeps_its_mode_and_no_temp_file_is_left(tmp_path, umask):
    umask(0o022)
    path = tmp_path / "preset.json"
    path.write_bytes(b"old")
    path.chmod(0o640)
    atomic_write(path, b"new")
    assert path.read_bytes() == b"new" and mode_of(path) == 0o640
    assert [p.name for p in tmp_path.iterdir()] == ["preset.json"]
