"""docs/reference.md is generated from cli's option tables: it must be what
`python -m ocipy.manpage` prints now (regenerate it after changing a flag)."""
from __future__ import annotations

from pathlib import Path

from ocipy import cli
from ocipy.manpage import reference

REFERENCE = Path(__file__).resolve().parent.parent / "docs" / "reference.md"


def test_the_committed_reference_is_up_to_date():
    assert REFERENCE.read_text() == reference(), \
        "run: .venv/bin/python -m ocipy.manpage > docs/reference.md"


def test_every_command_and_flag_is_in_it():
    text = reference()
    for name, (_, options, _) in cli.COMMANDS.items():
        assert f"### ocipy {name}" in text
        for names, *_ in options:
            for flag in names:
                assert f"`{flag}`" in text, (name, flag)
    for names, *_ in cli.GLOBAL_OPTIONS:
        for flag in names:
            assert f"`{flag}`" in text
