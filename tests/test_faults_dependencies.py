"""Security floors: the packages that parse what digitlab did not write are pinned at or above the releases
that fixed their known holes, each with its reason beside it, and the installed versions meet them."""

from __future__ import annotations

import re
import tomllib
from importlib.metadata import version
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"
# Package: the lowest release without the advisories named beside its requirement in pyproject.toml.
SECURITY_FLOORS = {"pillow": "12.2", "requests": "2.33", "urllib3": "2.7"}


def reason_above(text: str, requirement: str) -> str:
    """The comment lines right above requirement's line in pyproject.toml."""
    lines = text.splitlines()
    index = next(i for i, line in enumerate(lines) if line.strip().startswith(f'"{requirement}"'))
    comments = []
    while lines[index - 1].strip().startswith("#"):
        index -= 1
        comments.insert(0, lines[index].strip())
    return " ".join(comments)


@pytest.mark.fault("dependencies")
@pytest.mark.parametrize("package", sorted(SECURITY_FLOORS))
def test_security_floor_is_declared_with_its_reason_and_installed(package):
    text = PYPROJECT.read_text()
    declared = [Requirement(line) for line in tomllib.loads(text)["project"]["dependencies"]]
    (requirement,) = [r for r in declared if r.name.lower() == package]
    floors = [Version(spec.version) for spec in requirement.specifier if spec.operator == ">="]
    assert floors and max(floors) >= Version(SECURITY_FLOORS[package]), f"{package}'s floor is below the fixed release"
    assert re.search(r"CVE-\d{4}-\d+|vulnerabilit", reason_above(text, str(requirement))), f"no reason beside {package}"
    assert Version(version(package)) >= Version(SECURITY_FLOORS[package]), f"the installed {package} is too old"
