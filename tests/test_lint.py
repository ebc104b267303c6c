"""The tree stays as the formatter and linter configured in pyproject.toml leave it.

``ruff format`` and ``ruff check`` (``[tool.ruff]``) were applied once over the whole tree;
these tests keep it that way, so a change that needs them shows in the test command.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _ruff(*args: str) -> subprocess.CompletedProcess:
  exe = shutil.which("ruff")
  cmd = [exe] if exe else [sys.executable, "-m", "ruff"]
  return subprocess.run([*cmd, *args], cwd=ROOT, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(
  "args",
  [("check", "--no-cache", "."), ("format", "--check", "--no-cache", ".")],
  ids=["check", "format"],
)
def test_ruff(args):
  proc = _ruff(*args)
  assert proc.returncode == 0, f"ruff {' '.join(args)}:\n{proc.stdout}\n{proc.stderr}"
