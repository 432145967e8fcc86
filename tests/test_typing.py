"""mypy over the packages reports no error, so that it stays at zero.

The flags and the few third-party modules without types are configured in
pyproject.toml's [tool.mypy]; this test only runs mypy from the repository
root, where it reads that configuration, exactly as a developer would:

    python -m mypy cluster actors storage supervisor.py

mypy keeps a cache in .mypy_cache: a warm run takes a few seconds, a cold one
(as in CI's fresh clone) a few more.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TARGETS = ("cluster", "actors", "storage", "supervisor.py")
MYPY_TIMEOUT_S = 600  # generous: cold runs take ~10 s here, but CI shares its 2 cores


@pytest.mark.skipif(importlib.util.find_spec("mypy") is None,
                    reason="mypy is not installed (it comes with the test extra)")
def test_mypy_reports_no_errors_in_the_packages() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", *TARGETS],
        cwd=ROOT, capture_output=True, text=True, timeout=MYPY_TIMEOUT_S, check=False,
    )
    assert proc.returncode == 0, (
        f"mypy exited {proc.returncode}:\n{proc.stdout}{proc.stderr}")
