"""What every benchmark shares: the command, machine facts, versions, load, timing, peak memory,
and writing ``results/<name>.json`` + ``results/<name>.md``.

A benchmark script ``benchmarks/<name>.py`` measures; this module records. The pattern::

    import _common

    info = _common.machine()                      # command, machine, versions, load at start
    first, best, median, out = _common.first_and_best(fn)
    info["loadavg_at_end"] = _common.load_now()
    md = _common.header("Title", info) + ["", "| table |", ...]
    _common.write("<name>", {"meta": info, "rows": rows}, "\\n".join(md), quick=args.quick)

Scripts import it as ``import _common`` (Python puts the script's folder on ``sys.path``).
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from collections.abc import Sequence
from typing import Any

import jax

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
RESULTS = os.path.join(HERE, "results")
VERSIONED = ("jax", "jaxlib", "numpy", "flax", "optax")


def command(argv: Sequence[str] | None = None) -> str:
  """The command that ran this script, as typed from the repository root.

  Args:
    argv: the script's arguments; default ``sys.argv[1:]``.

  Returns:
    ``"python benchmarks/<name>.py <args>"``.
  """
  script = os.path.relpath(os.path.abspath(sys.argv[0]), ROOT)
  return " ".join(["python", script, *(sys.argv[1:] if argv is None else argv)])


def load_now() -> list[float]:
  """The 1, 5 and 15 minute load averages, rounded to 0.01."""
  return [round(v, 2) for v in os.getloadavg()]


def versions() -> dict[str, str | None]:
  """Python's, jaxal's and the installed versions of jax, jaxlib, numpy, flax and optax."""
  out: dict[str, str | None] = {"python": platform.python_version()}
  try:
    import jaxal

    out["jaxal"] = jaxal.__version__
  except ImportError:
    out["jaxal"] = None
  for name in VERSIONED:
    try:
      out[name] = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
      out[name] = None
  return out


def accelerator() -> str:
  """``"no GPU"`` on the CPU backend, else ``"<count> x <device kind>"``."""
  if jax.default_backend() == "cpu":
    return "no GPU"
  devs = jax.devices()
  return f"{len(devs)} x {devs[0].device_kind}"


def cpu_model() -> str:
  """The processor's model name (``/proc/cpuinfo``), else ``platform.processor()``, else the
  architecture."""
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("model name"):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or platform.machine()


def describe_machine(accel: str) -> str:
  """``"<cores> CPU cores (<model>, <architecture>), <accel>"``."""
  model, arch = cpu_model(), platform.machine()
  cpu = model if model == arch else f"{model}, {arch}"
  return f"{os.cpu_count()} CPU cores ({cpu}), {accel}"


def machine_speed(repeats: int = 3) -> dict[str, float]:
  """This machine's speed measured with NumPy now, to compare absolute seconds across runs:
  ``matmul_gflops`` (a float32 ``2048 x 2048`` product, all cores) and ``read_gbs`` (summing
  200 MB of float32, one core), each the best of ``repeats``."""
  import numpy as np

  a = np.random.default_rng(0).random((2048, 2048), np.float32)
  x = np.ones(50_000_000, np.float32)
  mm, rd = [], []
  for _ in range(repeats):
    t = time.perf_counter()
    a @ a
    mm.append(time.perf_counter() - t)
    t = time.perf_counter()
    x.sum()
    rd.append(time.perf_counter() - t)
  return {
    "matmul_gflops": round(2 * 2048**3 / min(mm) / 1e9, 1),
    "read_gbs": round(x.nbytes / min(rd) / 1e9, 1),
  }


def machine(argv: Sequence[str] | None = None, *, devices: bool = True) -> dict[str, Any]:
  """The facts every result records: command, machine, versions, backend, load at start.

  Args:
    argv: the script's arguments for the recorded command; default ``sys.argv[1:]``.
    devices: ask JAX for its backend and devices. A driver whose stages run in processes of
      their own passes False, so that it does not initialise (and hold) an accelerator itself;
      a stage then reports :func:`accelerator` and the driver fills ``machine`` from it.

  Returns:
    A dict with ``command``, ``machine``, ``versions``, ``jax``, ``backend`` and ``devices``
    (with ``devices``), ``loadavg_at_start`` and ``load_note`` ("high" when the 1-minute
    load is above three quarters of the cores: timings are then pessimistic).
  """
  load = load_now()
  cores = os.cpu_count() or 1
  info: dict[str, Any] = {"command": command(argv)}
  info["machine"] = describe_machine(accelerator() if devices else "devices not queried")
  info["versions"] = versions()
  info["jax"] = jax.__version__
  if devices:
    info["backend"] = jax.default_backend()
    info["devices"] = [str(d) for d in jax.devices()]
  info["loadavg_at_start"] = load
  info["load_note"] = (
    "high: other jobs shared the cores, timings are pessimistic"
    if load[0] > 0.75 * cores
    else "low"
  )
  return info


def header(title: str, info: dict[str, Any]) -> list[str]:
  """The opening lines of every results page: title, command, machine, versions, load.

  Args:
    title: the page's title, without the ``#``.
    info: what :func:`machine` returned, with ``loadavg_at_end`` where the script set it.

  Returns:
    Markdown lines (hard line breaks between the facts), ending with an empty line.
  """
  v = info.get("versions", {})
  libs = ", ".join(f"{k} {v[k]}" for k in ("jaxal", *VERSIONED) if v.get(k))
  backend = f" ({info['backend']} backend)" if "backend" in info else ""
  load = f"Load average at start: {info['loadavg_at_start']}"
  if "loadavg_at_end" in info:
    load += f", at end: {info['loadavg_at_end']}"
  speed = info.get("speed")
  return [
    f"# {title}",
    "",
    f"Command: `{info['command']}` (from the repository root)  ",
    f"Machine: {info['machine']}{backend}; Python {v.get('python', '?')}; {libs}  ",
    *(
      [
        f"Machine speed (NumPy, at start): float32 matmul {speed['matmul_gflops']} GFLOP/s, "
        f"memory read {speed['read_gbs']} GB/s (one core)  "
      ]
      if speed
      else []
    ),
    f"{load} ({info['load_note']}).",
    "",
  ]


def table(rows: Sequence[dict[str, Any]], cols: Sequence[str]) -> list[str]:
  """A Markdown table of ``rows`` with one column per key in ``cols`` ("—" where a row lacks it)."""
  out = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
  out += ["| " + " | ".join(str(r.get(c, "—")) for c in cols) + " |" for r in rows]
  return out


def block(x):
  """Waits for every array in the pytree ``x``; returns ``x``."""
  return jax.tree.map(lambda t: t.block_until_ready() if hasattr(t, "block_until_ready") else t, x)


def once(fn: Callable[[], Any]) -> tuple[float, Any]:
  """(seconds, result) of one call of ``fn``, its arrays waited for."""
  t = time.perf_counter()
  out = block(fn())
  return time.perf_counter() - t, out


def first_and_best(fn: Callable[[], Any], repeats: int = 5) -> tuple[float, float, float, Any]:
  """(first call incl. compile, best, median of later calls, result) in seconds."""
  first, out = once(fn)
  times = sorted(once(fn)[0] for _ in range(repeats))
  return first, times[0], times[len(times) // 2], out


def run_stage(script: str, args: Sequence[str], what: str) -> Any:
  """Runs ``python script --stage *args`` in a fresh process (jaxal importable from the
  repository) and returns the JSON its last line of output holds; ``what`` names the run in
  the error raised when it fails."""
  import subprocess

  out = subprocess.run(
    [sys.executable, os.path.abspath(script), "--stage", *args],
    capture_output=True,
    text=True,
    env=dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")),
  )
  if out.returncode != 0:
    raise RuntimeError(f"{what}: {out.stderr[-2000:]}")
  return json.loads(out.stdout.strip().splitlines()[-1])


def reset_peak_rss() -> None:
  """Resets the process's peak-RSS mark (``VmHWM``; Linux >= 4.0, else a no-op)."""
  try:
    with open("/proc/self/clear_refs", "w") as f:
      f.write("5")
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


def kept_section(name: str, heading: str, results: str = RESULTS) -> str:
  """The section ``heading`` (e.g. ``"## Reading"``, written by hand) of ``<results>/<name>.md``.

  Args:
    name: the benchmark's name.
    heading: the section's heading line, e.g. ``"## Reading"``.
    results: the folder; default ``benchmarks/results``.

  Returns:
    The section's text up to the next ``## `` heading, starting and ending with a newline;
    ``""`` when the page or the section does not exist yet.
  """
  path = os.path.join(results, name + ".md")
  if not os.path.exists(path):
    return ""
  with open(path) as f:
    old = f.read()
  if "\n" + heading not in old:
    return ""
  start = old.index("\n" + heading)
  end = old.find("\n## ", start + 1)
  return old[start : end if end >= 0 else len(old)].rstrip("\n") + "\n"


# Set by `run_all.sh quick`: every page written is a smoke test's (``<name>_quick.*``).
QUICK_ENV = "JAXAL_BENCHMARK_QUICK"


def write(
  name: str,
  payload: dict[str, Any] | None,
  markdown: str,
  *,
  quick: bool = False,
  results: str = RESULTS,
) -> None:
  """Writes ``<results>/<name>.json`` (unless ``payload`` is None) and ``<name>.md``; prints the page.

  Args:
    name: the benchmark's name, the script's file name without ``.py``.
    payload: what the JSON holds (the machine facts among it); None writes the page only.
    markdown: the results page, from :func:`header` on.
    quick: a smoke-test run: ``<name>_quick.*`` instead, never the recorded results. Also
      set by :data:`QUICK_ENV` (``run_all.sh quick`` sets it), so a script whose smoke-test
      preset is one of its ordinary sizes (``--small``, ``--no-big``) does not overwrite its
      recorded page.
    results: the folder; default ``benchmarks/results``.
  """
  quick = quick or os.environ.get(QUICK_ENV, "").strip() not in ("", "0")
  name = name + "_quick" if quick else name
  os.makedirs(results, exist_ok=True)
  if payload is not None:
    with open(os.path.join(results, name + ".json"), "w") as f:
      json.dump(payload, f, indent=2)
  with open(os.path.join(results, name + ".md"), "w") as f:
    f.write(markdown if markdown.endswith("\n") else markdown + "\n")
  print(markdown)
  print("wrote", os.path.join(results, name + (".json and .md" if payload is not None else ".md")))


# ---------------------------------------------------------------------------
# benchmarks/run_all.sh: which arguments a script runs with on this device.

PRESET_MODES = ("cpu", "gpu", "quick")


def preset(script: str, mode: str) -> list[str] | None:
  """The arguments ``run_all.sh`` passes to ``script`` in ``mode`` (cpu, gpu, quick); None: skip.

  A script states its own with comment lines ``# run_all[MODE]: ARGS`` (``# run_all[MODE]:
  skip`` leaves it out). Without one: ``cpu`` runs the defaults; ``gpu`` adds ``--size gpu``
  where the script has that option (else its defaults); ``quick`` passes ``--quick`` or
  ``--small`` where the script has one, and skips the script otherwise.

  Args:
    script: path of a ``benchmarks/<name>.py``.
    mode: one of :data:`PRESET_MODES`.

  Returns:
    The argument list, or None to skip the script.
  """
  import re
  import shlex

  with open(script) as f:
    text = f.read()
  m = re.search(rf"^# run_all\[{mode}\]:[ \t]*(.*)$", text, re.MULTILINE)
  if m:
    args = m.group(1).strip()
    return None if args == "skip" else shlex.split(args)
  if mode == "cpu":
    return []
  if mode == "gpu":
    return ["--size", "gpu"] if re.search(r"[\"']--size[\"']", text) else []
  for flag in ("--quick", "--small"):
    if re.search(rf"[\"']{flag}[\"']", text):
      return [flag]
  return None


def _summary(path: str, mode: str, log: str) -> None:
  """Writes ``results/run_all.md``: the machine, versions, load and each script's outcome."""
  info = machine([mode])
  info["command"] = f"bash benchmarks/run_all.sh {mode}".strip()
  info["loadavg_at_end"] = load_now()
  rows = []
  with open(log) as f:
    for line in f:
      name, args, status, seconds = line.rstrip("\n").split("\t")
      rows.append({"script": name, "arguments": args or "(defaults)", "exit": status, "s": seconds})
  lines = header("Every benchmark, as run_all.sh ran them", info)
  lines += [
    f"Mode: `{mode}` (the device found: {info['machine']}). Each script wrote its own page "
    "in this folder; `exit` is its exit status (`skipped`: it has no preset for this mode).",
    "",
    *table(rows, ["script", "arguments", "exit", "s"]),
    "",
  ]
  write("run_all", None, "\n".join(lines), quick=mode == "quick", results=path)


if __name__ == "__main__":  # used by run_all.sh
  if sys.argv[1] == "preset":
    args = preset(sys.argv[2], sys.argv[3])
    print("SKIP" if args is None else " ".join(args))
  elif sys.argv[1] == "summary":
    _summary(RESULTS, sys.argv[2], sys.argv[3])
