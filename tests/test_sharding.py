"""Pools sharded over 8 simulated CPU devices, in a process of their own.

The checks live in tests/sharded/check_*.py; they need
``XLA_FLAGS=--xla_force_host_platform_device_count=8`` before JAX starts, so
they run in a subprocess and the rest of the suite keeps its single device.
"""

from __future__ import annotations

import os
import subprocess
import sys


def test_sharded_equals_unsharded():
  here = os.path.dirname(os.path.abspath(__file__))
  env = dict(os.environ)
  env["XLA_FLAGS"] = (
    env.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
  ).strip()
  env["JAX_PLATFORMS"] = "cpu"
  proc = subprocess.run(
    [
      sys.executable,
      "-m",
      "pytest",
      "-q",
      "-p",
      "no:cacheprovider",
      "-p",
      "no:hypothesispytest",  # the checks use no Hypothesis: its import is a second of start-up
      "-o",
      "python_files=check_*.py",
      "-o",
      "addopts=",
      "-W",
      "error",
      os.path.join(here, "sharded"),
    ],
    env=env,
    capture_output=True,
    text=True,
    cwd=here,
    timeout=900,
  )
  assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
  assert " passed" in proc.stdout and "failed" not in proc.stdout
