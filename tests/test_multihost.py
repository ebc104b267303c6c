"""Multi-host: two processes joined by jax.distributed select exactly what one process does."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import jax
import numpy as np

from jaxal import scores
from jaxal import selection

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "examples", "multihost.py")
sys.path.insert(0, os.path.join(ROOT, "examples"))


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def test_two_processes_match_one():
  import multihost

  n, d, k = 256, 12, 6
  port = _free_port()
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu")
  args = [
    "--coordinator",
    f"127.0.0.1:{port}",
    "--num-processes",
    "2",
    "--n",
    str(n),
    "--d",
    str(d),
    "--k",
    str(k),
  ]
  procs = [
    subprocess.Popen(
      [sys.executable, SCRIPT, *args, "--process-id", str(i)],
      env=env,
      stdout=subprocess.PIPE,
      stderr=subprocess.PIPE,
      text=True,
    )
    for i in range(2)
  ]
  outs = []
  for p in procs:
    stdout, stderr = p.communicate(timeout=300)
    assert p.returncode == 0, stderr[-3000:]
    outs.append(json.loads([l for l in stdout.splitlines() if l.startswith("{")][-1]))
  assert [o["devices"] for o in outs] == [8, 8] and [o["processes"] for o in outs] == [2, 2]
  x = multihost.pool_rows(n, d, slice(0, n))
  labeled = np.arange(n) < 8
  want = {
    "entropy_top_k": selection.top_k(scores.entropy(x[:, :10]), k, labeled_mask=labeled),
    "k_center_greedy": selection.k_center_greedy(None, x, k, labeled_mask=labeled),
    "random": selection.random(jax.random.key(0), n, k, labeled_mask=labeled),
  }
  for o in outs:
    for name, idx in want.items():
      np.testing.assert_array_equal(o[name], np.asarray(idx), err_msg=name)
