"""The documents people run the product by name only what exists: every setting in the README and
docs/deploy.md is read by the code, every command line command they show exists, and every page they link
to is in the repository."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from lib import cli

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", ROOT / "docs" / "deploy.md"]
CODE = "\n".join(p.read_text(encoding="utf-8") for p in [*ROOT.glob("lib/**/*.py"), ROOT / "serve.py",
                                                          ROOT / "dashboard.py"])


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_setting_named_is_read_by_the_code(doc):
    named = set(re.findall(r"\bNETZAUSBAU_[A-Z_]+\b", doc.read_text(encoding="utf-8")))
    assert named
    for name in sorted(named):
        assert f'"{name}"' in CODE, f"{doc.name} names {name}, which no code reads"


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_command_shown_exists(doc):
    shown = set(re.findall(r"python -m lib\.cli ([\w-]+)", doc.read_text(encoding="utf-8")))
    parser_commands = set(re.findall(r'sub\.add_parser\("([\w-]+)"', (ROOT / "lib" / "cli.py").read_text()))
    assert shown and shown <= parser_commands, shown - parser_commands
    assert cli.main is not None


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_linked_file_exists(doc):
    for target in re.findall(r"\]\(([^)#:]+)\)", doc.read_text(encoding="utf-8")):
        assert (doc.parent / target).exists(), f"{doc.name} links {target}, which does not exist"
