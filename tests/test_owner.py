"""The state's owner: the creating user's name from /etc/passwd, as runc's
libcontainer/user looks it up (no NSS on the create path)."""
from __future__ import annotations

import os
import pwd

import pytest

from ocipy.container import _owner


@pytest.fixture
def passwd(tmp_path):
    def write(text: str) -> str:
        path = tmp_path / "passwd"
        path.write_text(text)
        return str(path)
    return write


def test_the_host_owner_agrees_with_getpwuid():
    assert _owner() == pwd.getpwuid(os.geteuid()).pw_name


def test_the_first_line_with_our_uid_names_us(passwd):
    uid = os.geteuid()
    path = passwd(f"# {uid} commented out\nother:x:{uid + 1}:0::/:/bin/sh\n"
                  f"short:{uid}\nfirst:x:{uid}:0::/:/bin/sh\nsecond:x:{uid}:0::/:/bin/sh")
    assert _owner(path) == "first"


@pytest.mark.parametrize("text", ["", "\n\n", "nobody:x:65534:65534::/:/bin/false\n"])
def test_without_an_entry_the_owner_is_the_uid(passwd, text):
    assert _owner(passwd(text)) == str(os.geteuid())


def test_without_the_file_the_owner_is_the_uid(tmp_path):
    assert _owner(str(tmp_path / "missing")) == str(os.geteuid())
