"""Shared helpers for the diversity / submodular benchmarks: machine facts, timing, peak memory."""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from typing import Any, Callable

import jax

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def machine() -> dict[str, Any]:
  load = os.getloadavg()
  return {
      "command": "python " + " ".join(sys.argv),
      "machine": f"{os.cpu_count()} CPU cores ({platform.processor() or platform.machine()}), "
                 "no GPU in this session",
      "jax": jax.__version__,
      "backend": jax.default_backend(),
      "devices": [str(d) for d in jax.devices()],
      "loadavg_at_start": [round(v, 2) for v in load],
      "load_note": ("high: other engineers' jobs shared the 2 cores, timings are pessimistic"
                    if load[0] > 1.5 else "low"),
  }


def block(x):
  return jax.tree.map(lambda t: t.block_until_ready() if hasattr(t, "block_until_ready") else t, x)


def first_and_best(fn: Callable[[], Any], repeats: int = 5) -> tuple[float, float, float, Any]:
  """(first call incl. compile, best, median of later calls, result) in seconds."""
  t = time.perf_counter()
  out = block(fn())
  first = time.perf_counter() - t
  times = []
  for _ in range(repeats):
    t = time.perf_counter()
    block(fn())
    times.append(time.perf_counter() - t)
  times.sort()
  return first, times[0], times[len(times) // 2], out


def reset_peak_rss() -> None:
  try:
    with open("/proc/self/clear_refs", "w") as f:
      f.write("5")  # resets VmHWM (Linux >= 4.0)
  except OSError:
    pass


def rss_mib() -> tuple[float, float]:
  """(current RSS, peak RSS since the last reset) in MiB."""
  cur = peak = float("nan")
  with open("/proc/self/status") as f:
    for line in f:
      if line.startswith("VmRSS:"):
        cur = int(line.split()[1]) / 1024
      elif line.startswith("VmHWM:"):
        peak = int(line.split()[1]) / 1024
  return cur, peak


def write(name: str, payload: dict[str, Any], markdown: str) -> None:
  os.makedirs(RESULTS, exist_ok=True)
  with open(os.path.join(RESULTS, name + ".json"), "w") as f:
    json.dump(payload, f, indent=2)
  with open(os.path.join(RESULTS, name + ".md"), "w") as f:
    f.write(markdown)
  print(markdown)
