"""The commit every record names: from git, or from AVEYB_COMMIT where git cannot tell."""

import re

from aveyb.provenance import git_commit


def test_the_commit_comes_from_the_checkout(monkeypatch):
    monkeypatch.delenv("AVEYB_COMMIT", raising=False)
    full, short = git_commit(), git_commit(short=True)
    if full is None:  # not a git checkout (an installed wheel): nothing to name
        assert short is None
        return
    assert re.fullmatch(r"[0-9a-f]{40}(\+dirty)?", full), full
    assert re.fullmatch(r"[0-9a-f]{12}(\+dirty)?", short) and full.startswith(short.split("+")[0])


def test_aveyb_commit_overrides_git(monkeypatch):
    monkeypatch.setenv("AVEYB_COMMIT", "abc1234")
    assert git_commit() == git_commit(short=True) == "abc1234"
