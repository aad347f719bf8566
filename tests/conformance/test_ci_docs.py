"""docs/ci.md installs evflow in a way that works, and pins a revision that exists (issue 14).

evflow is not on PyPI: the docs install it from the repository URL at a pinned commit, and the
pre-commit example's ``rev`` names that commit, which must be in this repository's history.
"""

from __future__ import annotations

import re
import subprocess

import pytest

from tests.conftest import REPO

DOC = (REPO / "docs" / "ci.md").read_text()


def test_no_install_from_an_index_that_does_not_have_evflow() -> None:
    for line in DOC.splitlines():
        if "pip install" in line and "evflow" in line:
            assert "git+https://" in line, line
            assert re.search(r"git\+https://\S+@[0-9a-f]{40}", line), f"unpinned: {line}"


def test_pre_commit_rev_is_a_commit_of_this_repository() -> None:
    revs = re.findall(r"^\s*rev:\s*(\S+)", DOC, re.M)
    pins = re.findall(r"git\+https://\S+?@([0-9a-f]{40})", DOC)
    assert revs and pins
    for rev in revs + pins:
        assert re.fullmatch(r"[0-9a-f]{40}", rev), (
            f"rev {rev!r}: pin a commit (a tag may be absent)"
        )
    if not (REPO / ".git").exists():
        pytest.skip("not a git checkout")
    shallow = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--is-shallow-repository"],
        capture_output=True,
        text=True,
    )
    if shallow.stdout.strip() == "true":
        pytest.skip("a shallow clone does not hold the pinned commit")
    for rev in set(revs + pins):
        found = subprocess.run(
            ["git", "-C", str(REPO), "cat-file", "-e", f"{rev}^{{commit}}"], capture_output=True
        )
        assert found.returncode == 0, f"{rev} is not a commit of this repository"
        hooks = subprocess.run(
            ["git", "-C", str(REPO), "cat-file", "-e", f"{rev}:.pre-commit-hooks.yaml"],
            capture_output=True,
        )
        assert hooks.returncode == 0, f"{rev} has no .pre-commit-hooks.yaml"
