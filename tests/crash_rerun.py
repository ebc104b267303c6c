"""Rerunning a test whose pytest-xdist worker died of a native crash (a pytest plugin).

A worker process killed by a native abort is not a failed assertion (those are never rerun).
XLA:CPU has aborted a worker twice in the suite's recent runs, both times while deserialising
an executable from the persistent compilation cache (in a different test each time); every
entry of a full suite's cache deserialises cleanly when read back one by one, so no damaged
entry explains it. Such a test is run once more on a fresh worker (at most two per run); a
second crash of the same test fails it, and every crash is listed at the end of the run with
the test's name. tests/conftest.py imports these hooks; tests/test_crash_rerun.py checks them.
"""

from __future__ import annotations

import pytest

CRASHED: list[str] = []  # in the controlling process: the node ids whose worker crashed
MAX_CRASH_RERUNS = 2


@pytest.hookimpl(optionalhook=True)
def pytest_handlecrashitem(crashitem, report, sched):
  CRASHED.append(crashitem)
  if CRASHED.count(crashitem) == 1 and len(CRASHED) <= MAX_CRASH_RERUNS:
    sched.mark_test_pending(crashitem)
    report.outcome = "rerun"


def pytest_report_teststatus(report, config):
  if report.outcome == "rerun":
    return "rerun", "R", ("RERUN", {"yellow": True})
  return None


def pytest_terminal_summary(terminalreporter, exitstatus, config):
  if CRASHED:
    terminalreporter.section("workers that crashed (native abort; the output above has it)")
    for nodeid in dict.fromkeys(CRASHED):
      again = CRASHED.count(nodeid) > 1
      terminalreporter.write_line(
        f"{nodeid}: worker crashed" + (" twice: failed" if again else ", rerun on a fresh worker")
      )
