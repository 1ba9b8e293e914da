"""Where a result came from: the code's commit, for every record aveyb writes."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent


def git_commit(short: bool = False) -> str | None:
    """The commit of the checkout aveyb runs from (``short``: its first 12 hex digits), with
    ``+dirty`` when the package has uncommitted changes, or None outside a git checkout.
    ``AVEYB_COMMIT`` overrides it: a copy of the tree without its ``.git`` (or with a stale one, as
    on a lent GPU machine) cannot tell."""
    if os.environ.get("AVEYB_COMMIT"):
        return os.environ["AVEYB_COMMIT"]
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=_PACKAGE_DIR, capture_output=True, text=True,
                              timeout=10, check=False)
        if head.returncode != 0 or not head.stdout.strip():
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", "."],
                               cwd=_PACKAGE_DIR, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    commit = head.stdout.strip()[:12] if short else head.stdout.strip()
    return commit + ("+dirty" if dirty.stdout.strip() else "")
