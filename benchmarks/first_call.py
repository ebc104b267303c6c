"""First call of every registered strategy in a fresh process: cold vs warm compilation cache.

    python benchmarks/first_call.py                       # every registered strategy
    python benchmarks/first_call.py --strategies badge,coreset,batchbald
    python benchmarks/first_call.py --pool 2000 --budget 50
    python benchmarks/first_call.py --targets-only        # the two sized problems below
    python benchmarks/first_call.py --targets-only --profile   # and where each first call goes

Two sized problems are measured the same way first (``--no-targets`` leaves them out):
``badge@mnist``, a BADGE acquisition of 500 from 20,000 MNIST-sized inputs (784 features,
a 784-256-10 MLP, 100 labeled), and ``k_center@512``, ``selection.k_center_greedy`` of 500
on 20,000 points with 1,000 labeled (d = 512, standard normal). Targets on 2 CPU cores: cold
first calls under 1.2 s and 1.0 s, warm-cache first calls within 1.5x of the compiled time.

For each strategy, three fresh processes (subprocesses) run one acquisition on the
same small problem (a 32-unit MLP on the bundled digits, fitted a few steps;
``--pool`` points, 20 labeled, ``--budget`` picks): the first with empty caches
(``jaxal.enable_compilation_cache`` on a new folder: ``cold``), the second with only
JAX's persistent compilation cache, which the first filled (``executables=False``:
``jax_cache``, traced and lowered again), the third with the default, JAX's cache and
jaxal's whole executables (``warm cache``: what every later process on the machine
pays). Inside the third process the same call is then repeated: ``compiled`` is its
best time (nothing left to compile). The ratios to ``compiled`` are what a user feels
on the first round; the model's training and JAX's import are not timed.

``--profile`` also splits each fresh process's first call with JAX's own monitoring events:
Python tracing to a jaxpr, lowering to StableHLO, XLA compilation or the persistent-cache
read (JAX's ``backend_compile`` span, which holds the cache key, the read and, on a miss, the
compile), the cache read alone, and the rest (running the programs, dispatch, host checks);
with the number of separate programs the call compiled or read. A "## Reading" section
written by hand into first_call.md is kept when the page is rewritten.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

import _common

HERE = os.path.dirname(os.path.abspath(__file__))


# JAX's monitoring events (jax._src.dispatch, jax._src.compiler) -> the profile's columns.
EVENTS = {
  "/jax/core/compile/jaxpr_trace_duration": "trace_s",
  "/jax/core/compile/jaxpr_to_mlir_module_duration": "lower_s",
  "/jax/core/compile/backend_compile_duration": "compile_or_read_s",
  "/jax/compilation_cache/cache_retrieval_time_sec": "cache_read_s",
}


def _listen(events: list) -> None:
  """Appends ``(column, program, seconds)`` to ``events`` for every JAX event of :data:`EVENTS`."""
  from jax._src import monitoring

  def on_duration(event, seconds, **kwargs):
    if event in EVENTS:
      events.append((EVENTS[event], kwargs.get("fun_name", ""), seconds))

  monitoring.register_event_duration_secs_listener(on_duration)


def stage(name: str, pool: int, budget: int, cache: str, executables: bool = True) -> dict:
  """One fresh process's measurements for strategy ``name`` (run in a subprocess);
  ``executables``: jaxal's whole-executable cache on beside JAX's (the default of
  ``jaxal.enable_compilation_cache``)."""
  import jax
  import jax.numpy as jnp

  import jaxal
  from jaxal import datasets
  from jaxal import loop
  from jaxal import models
  from jaxal._src.strategies import registry

  jaxal.enable_compilation_cache(cache, executables=executables)
  if name in TARGETS:
    call = TARGETS[name]()
    return _time(call)
  ds = datasets.load_digits()
  reps = -(-pool // len(ds.x_train))
  x = jnp.concatenate([jnp.asarray(ds.x_train)] * reps)[:pool]
  y = jnp.concatenate([jnp.asarray(ds.y_train)] * reps)[:pool]
  key = jax.random.key(0)
  state = loop.init(key, pool, num_initial=20)
  ts = loop.create_train_state(key, models.MLP(num_classes=10, hidden=(32,)), x)
  ts = loop.fit(key, ts, x, y, state.labeled_mask, num_steps=5)
  model, params = models.from_train_state(ts)
  strategy = registry.get(name)
  jax.block_until_ready(params)

  def call():
    return jax.block_until_ready(
      strategy.acquire(key, model, params, x, state.labeled_mask, budget)
    )

  return _time(call)


def _time(call) -> dict:
  events: list = []
  _listen(events)
  t = time.perf_counter()
  call()
  first = time.perf_counter() - t
  split = {c: round(sum(s for col, _, s in events if col == c), 4) for c in EVENTS.values()}
  split["programs"] = sum(1 for col, _, _ in events if col == "compile_or_read_s")
  split["names"] = sorted({f for col, f, _ in events if col == "compile_or_read_s"})
  events.clear()
  times = []
  for _ in range(3):
    t = time.perf_counter()
    call()
    times.append(time.perf_counter() - t)
  return {"first_s": first, "compiled_s": min(times), "split": split}


def _badge_mnist():
  """BADGE, 500 of 20,000 MNIST-sized inputs, 784-256-10 MLP (fitted 5 steps), 100 labeled."""
  import jax
  import jax.numpy as jnp

  from jaxal import loop
  from jaxal import models
  from jaxal import strategies

  key = jax.random.key(0)
  x = jax.random.uniform(key, (20_000, 784), jnp.float32)
  y = jax.random.randint(jax.random.key(1), (20_000,), 0, 10)
  mask = jnp.zeros((20_000,), bool).at[:100].set(True)
  ts = loop.create_train_state(key, models.MLP(num_classes=10, hidden=(256,)), x)
  ts = loop.fit(key, ts, x, y, mask, num_steps=5)
  model, params = models.from_train_state(ts)
  strategy = strategies.badge()
  jax.block_until_ready((x, params))
  return lambda: jax.block_until_ready(strategy.acquire(key, model, params, x, mask, 500))


def _k_center_512():
  """k-center greedy, 500 of 20,000 points (d = 512) with 1,000 labeled."""
  import jax
  import jax.numpy as jnp

  from jaxal import selection

  x = jax.random.normal(jax.random.key(0), (20_000, 512), jnp.float32)
  mask = jnp.zeros((20_000,), bool).at[::20].set(True)
  jax.block_until_ready(x)
  return lambda: jax.block_until_ready(
    selection.k_center_greedy(jax.random.key(1), x, 500, labeled_mask=mask)
  )


# Sized problems (name -> a function building the timed call), with their cold-call targets.
TARGETS = {"badge@mnist": _badge_mnist, "k_center@512": _k_center_512}
COLD_TARGET_S = {"badge@mnist": 1.2, "k_center@512": 1.0}


WARM_PROCESSES = 3


def _median_run(runs: list) -> dict:
  """The run whose first call is the median of ``runs`` (an odd number of fresh processes)."""
  return sorted(runs, key=lambda r: r["first_s"])[len(runs) // 2]


def fresh(name, pool, budget, cache, executables=True):
  stage_args = [name, str(pool), str(budget), cache, "on" if executables else "off"]
  return _common.run_stage(__file__, stage_args, name)


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--strategies", default="", help="comma-separated (default: all)")
  parser.add_argument("--pool", type=int, default=1000)
  parser.add_argument("--budget", type=int, default=20)
  parser.add_argument("--quick", action="store_true", help="three strategies, pool 300")
  parser.add_argument("--targets-only", action="store_true", help="only the sized problems")
  parser.add_argument("--no-targets", action="store_true", help="leave the sized problems out")
  parser.add_argument("--profile", action="store_true", help="split each first call (see above)")
  parser.add_argument(
    "--stage", nargs=5, metavar=("NAME", "POOL", "BUDGET", "CACHE", "EXECUTABLES")
  )
  args = parser.parse_args()
  if args.stage:
    name, pool, budget, cache, executables = args.stage
    print(json.dumps(stage(name, int(pool), int(budget), cache, executables == "on")))
    return
  from jaxal._src.strategies import registry

  names = [s for s in args.strategies.split(",") if s] or registry.names()
  if args.targets_only:
    names = list(TARGETS)
  elif not args.no_targets and not args.quick:
    names = list(TARGETS) + names
  pool, budget = args.pool, args.budget
  if args.quick:
    names, pool = names[:3] if args.strategies else ["entropy", "badge", "coreset"], 300
  meta = _common.machine()
  meta["speed"] = _common.machine_speed()  # absolute seconds differ between machines
  rows, splits = [], []
  for name in names:
    with tempfile.TemporaryDirectory() as cache:
      cold = fresh(name, pool, budget, cache)
      # The sized problems: the median of WARM_PROCESSES later processes of each kind (the
      # first one after a write is often slower); the strategies by name: one of each.
      repeats = WARM_PROCESSES if name in TARGETS else 1
      jax_only = _median_run(
        [fresh(name, pool, budget, cache, executables=False) for _ in range(repeats)]
      )
      warm = _median_run([fresh(name, pool, budget, cache) for _ in range(repeats)])
    compiled = warm["compiled_s"]
    row = {
      "strategy": name,
      "cold_first_s": round(cold["first_s"], 3),
      "jax_cache_first_s": round(jax_only["first_s"], 3),
      "warm_cache_first_s": round(warm["first_s"], 3),
      "compiled_s": round(compiled, 4),
      "cold_over_compiled": round(cold["first_s"] / compiled, 1),
      "jax_cache_over_compiled": round(jax_only["first_s"] / compiled, 2),
      "warm_cache_over_compiled": round(warm["first_s"] / compiled, 2),
    }
    if name in TARGETS:
      cold_ok = cold["first_s"] < COLD_TARGET_S[name]
      warm_ok = warm["first_s"] < 1.5 * compiled
      row["targets"] = (
        f"cold < {COLD_TARGET_S[name]} s: {'met' if cold_ok else 'missed'}; "
        f"warm cache < 1.5x: {'met' if warm_ok else 'missed'}"
      )
    rows.append(row)
    print(row, flush=True)
    for label, run in (("cold", cold), ("JAX cache only", jax_only), ("warm cache", warm)):
      sp = run["split"]
      rest = run["first_s"] - sp["trace_s"] - sp["lower_s"] - sp["compile_or_read_s"]
      splits.append(
        {
          "strategy": name,
          "process": label,
          "first_s": round(run["first_s"], 3),
          "trace_s": round(sp["trace_s"], 3),
          "lower_s": round(sp["lower_s"], 3),
          "compile_or_read_s": round(sp["compile_or_read_s"], 3),
          "cache_read_s": round(sp["cache_read_s"], 3),
          "run_and_rest_s": round(rest, 3),
          "programs": sp["programs"],
          "program_names": ", ".join(sp["names"]),
        }
      )
      if args.profile:
        print(splits[-1], flush=True)
  meta["loadavg_at_end"] = _common.load_now()
  cols = [c for c in rows[0] if c != "targets"] + (
    ["targets"] if any("targets" in r for r in rows) else []
  )
  lines = _common.header("First call in a fresh process: cold vs warm compilation cache", meta)
  lines += [
    "`badge@mnist`: BADGE, 500 of 20,000 MNIST-sized inputs (784-256-10 MLP, 100 labeled); "
    "`k_center@512`: k-center greedy, 500 of 20,000 points with 1,000 labeled (d = 512). "
    f"The strategies by name: one acquisition of {budget} from a pool of {pool} digits "
    "(32-unit MLP, 20 labeled). `cold`: a fresh process and empty caches; `jax_cache`: a "
    "second fresh process with only JAX's persistent compilation cache (the cold process's "
    "XLA compiles; it still traces and lowers); `warm cache`: a third fresh process with "
    "`jaxal.enable_compilation_cache`'s default, JAX's cache plus jaxal's whole executables "
    "(no trace when every program of the call was keyed); `compiled`: the best of three "
    "later calls in that process. For the two sized problems the JAX-cache and warm "
    f"columns are the median of {WARM_PROCESSES} such processes each. Training and imports "
    "are not timed.",
    "",
    *_common.table(rows, cols),
    "",
  ]
  payload = {"meta": meta, "rows": rows}
  if args.profile:
    payload["profile"] = splits
    lines += [
      "## Where the first call goes",
      "",
      "Each fresh process's first call split with JAX's monitoring events: `trace` (Python "
      "to jaxpr), `lower` (to StableHLO), `compile_or_read` (JAX's backend-compile span: the "
      "cache key and the persistent-cache read, plus XLA's compile on a miss), `cache_read` "
      "(the read alone, inside the former), `run_and_rest` (the first call less the three: "
      "running, dispatch, host-side checks); `programs`: separate programs compiled or read.",
      "",
      *_common.table(splits, list(splits[0])),
      "",
    ]
  name = "first_call_quick" if args.quick else "first_call"
  reading = _common.kept_section(name, "## Reading")  # written by hand: kept
  if reading:
    lines += [reading.strip("\n"), ""]
  _common.write("first_call", payload, "\n".join(lines), quick=args.quick)


if __name__ == "__main__":
  main()
