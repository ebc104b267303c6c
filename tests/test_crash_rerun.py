"""The crash rerun of tests/crash_rerun.py, on a nested pytest-xdist run of probe tests."""

from __future__ import annotations

import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))

CONFTEST = f"""
import sys
sys.path.insert(0, {HERE!r})
from crash_rerun import pytest_handlecrashitem, pytest_report_teststatus, pytest_terminal_summary
"""

PROBES = """
import os

def test_crashes_once(tmp_path_factory):
  flag = tmp_path_factory.getbasetemp().parent / "crashed-once"
  if not flag.exists():
    flag.write_text("x")
    os.abort()

def test_passes():
  assert True

def test_fails():
  assert os.environ.get("PROBE_FAIL") != "1"

def test_always_crashes():
  if os.environ.get("PROBE_ALWAYS") == "1":
    os.abort()
"""


def _run(tmp_path, **env):
  tmp_path.mkdir()
  (tmp_path / "conftest.py").write_text(CONFTEST)
  (tmp_path / "test_probes.py").write_text(PROBES)
  out = subprocess.run(
    # Without Hypothesis's plugin (the probes use none): its import is most of each process's start.
    [
      sys.executable,
      "-m",
      "pytest",
      "-n",
      "2",
      "-p",
      "no:cacheprovider",
      "-p",
      "no:hypothesispytest",
      "-q",
      str(tmp_path),
    ],
    cwd=tmp_path,
    # The outer run's PYTEST_* variables (xdist's worker id among them) stay out of the nested one.
    env={**{k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}, **env},
    capture_output=True,
    text=True,
    timeout=300,
  )
  return out.returncode, out.stdout


def test_a_crash_reruns_once_and_a_second_crash_or_an_assertion_fails(tmp_path):
  rc, out = _run(tmp_path / "once", PROBE_FAIL="0", PROBE_ALWAYS="0")
  assert rc == 0, out
  assert "4 passed, 1 rerun" in out
  assert "test_crashes_once: worker crashed, rerun on a fresh worker" in out
  rc, out = _run(tmp_path / "always", PROBE_FAIL="1", PROBE_ALWAYS="1")
  assert rc == 1, out
  assert "test_always_crashes: worker crashed twice: failed" in out
  assert "FAILED test_probes.py::test_fails - AssertionError" in out
  assert "2 failed, 2 passed, 2 rerun" in out  # the two crashes; a failed assertion never reruns
