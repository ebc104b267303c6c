"""What a pick needs besides its compiled core, built in a fresh process: jaxal vs eager jax.numpy.

    python benchmarks/construction.py              # 3 fresh processes per problem and variant
    python benchmarks/construction.py --quick      # 1 process each, small sizes

Between its compiled cores, an acquisition builds things: a set function's blocks, a train
state, the labeled mask after a pick. Written as eager ``jax.numpy``, every operation is a
program of its own, compiled for each new shape in each fresh process (tens of milliseconds
each on a CPU). jaxal builds each in one cached program or on the host. The reference is the
same arrays built by eager ``jax.numpy`` (the idiom, and what jaxal did before), in a fresh
process of its own with empty caches; both columns count the programs compiled.

Problems (each timed once per fresh process, caches empty, imports and inputs not timed):

- ``logdetcmi``: ``submodular.logdetcmi`` on a kernel over ``--pool`` points (16 features),
  5 query and 4 private points, ``max_size`` 50; the reference builds the same ridge blocks,
  conditioning Cholesky factors, trackers and joint kernel eagerly.
- ``train_state``: ``loop.create_train_state`` of a 784-256-10 MLP with Adam; the reference
  is ``module.init`` then ``TrainState.create``, eagerly.
- ``label``: ``loop.init`` of a ``--pool``-point state and three ``loop.label`` batches of 20;
  the reference is ``jnp.zeros`` and ``.at[idx].set(True)`` per batch.
- ``train_steps``: 20 ``loop.train_step`` calls (a 784-256-10 MLP, batches of 64, dropout on);
  the reference runs the same step's operations eagerly (``jaxal._src.loop._train_step_eager``, what
  ``train_step`` was before it was one compiled step).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

import _common

PROBLEMS = ("logdetcmi", "train_state", "label", "train_steps")


def _inputs(problem: str, pool: int):
  import numpy as np

  rng = np.random.default_rng(0)
  if problem == "logdetcmi":
    from jaxal import submodular

    x = rng.normal(size=(pool, 16)).astype(np.float32)
    ks = submodular.information_kernels(x, query=x[:5], private=x[-4:], function="logdetcmi")
    import jax

    return jax.block_until_ready(ks)
  if problem == "train_state":
    return rng.uniform(size=(8, 784)).astype(np.float32)
  if problem == "train_steps":
    import jax

    from jaxal import loop
    from jaxal import models

    x = rng.uniform(size=(64, 784)).astype(np.float32)
    y = rng.integers(0, 10, size=64).astype(np.int32)
    module = models.MLP(num_classes=10, hidden=(256,))
    ts = loop.create_train_state(jax.random.key(0), module, x)
    return jax.block_until_ready(
      (ts, (jax.device_put(x), jax.device_put(y), jax.device_put(np.ones(64, np.float32))))
    )
  picks = rng.choice(pool, 60, replace=False)
  return [picks[i * 20 : (i + 1) * 20] for i in range(3)]


def _eager_logdetcmi(ks, lam=1.0, cap=50):
  """The arrays of LogDetCMI by eager jax.numpy (the blocks, their Cholesky factors, the
  trackers' start and the joint kernel), as jaxal built them before they were one program."""
  import jax
  import jax.numpy as jnp

  kernel, query, qq, private, pp, qp = (
    ks.kernel,
    ks.query,
    ks.query_query,
    ks.private,
    ks.private_private,
    ks.query_private,
  )
  n, qn, pn = kernel.shape[0], query.shape[1], private.shape[1]
  qmask, pmask = jnp.ones((qn,), bool), jnp.ones((pn,), bool)
  m_vv = kernel + lam * jnp.eye(n, dtype=jnp.float32)
  diag_vv = jnp.diagonal(m_vv)
  vq = jnp.where(qmask[None, :], query, 0.0)
  m_qq = jnp.where(qmask[:, None] & qmask[None, :], qq + lam * jnp.eye(qn), jnp.eye(qn))
  vp = jnp.where(pmask[None, :], private, 0.0)
  m_pp = jnp.where(pmask[:, None] & pmask[None, :], pp + lam * jnp.eye(pn), jnp.eye(pn))
  m_qp = jnp.where(qmask[:, None] & pmask[None, :], qp, 0.0)

  def base(m_bb, m_vb):
    chol = jnp.linalg.cholesky(m_bb)
    c0 = jax.scipy.linalg.solve_triangular(chol, m_vb.T, lower=True).T
    return c0, diag_vv - jnp.sum(c0 * c0, axis=1), jnp.diagonal(chol)

  c0p, d0p, lp = base(m_pp, vp)
  m_bb = jnp.concatenate([jnp.concatenate([m_qq, m_qp], 1), jnp.concatenate([m_qp.T, m_pp], 1)])
  c0qp, d0qp, lqp = base(m_bb, jnp.concatenate([vq, vp], 1))
  for diag, d0 in ((lp, d0p), (lqp, d0qp)):  # the positive-definiteness checks
    bool(jnp.all(jnp.isfinite(diag) & (diag > 0)))
    bool(jnp.any(~(d0 > 0)))
  joint = jnp.concatenate(
    [
      jnp.concatenate(row, axis=1)
      for row in [[m_vv, vq, vp], [vq.T, m_qq, m_qp], [vp.T, m_qp.T, m_pp]]
    ]
  )
  p_only = jnp.concatenate([jnp.zeros((qn,), bool), pmask])
  qp_all = jnp.concatenate([qmask, pmask])
  return m_vv, (c0p, c0qp), (d0p, d0qp), jnp.zeros((n, cap), jnp.float32), joint, p_only, qp_all


def _call(problem: str, variant: str, inputs):
  import jax
  import jax.numpy as jnp

  from jaxal import loop
  from jaxal import models
  from jaxal import submodular
  from jaxal._src import loop as loop_lib

  if problem == "logdetcmi":
    ks = inputs
    if variant == "jaxal":
      blocks = (ks.kernel, ks.query, ks.query_query, ks.private, ks.private_private)
      return submodular.logdetcmi(*blocks, ks.query_private, max_size=50)
    return _eager_logdetcmi(ks)
  if problem == "train_state":
    module = models.MLP(num_classes=10, hidden=(256,))
    if variant == "jaxal":
      return loop.create_train_state(jax.random.key(0), module, inputs)
    import optax
    from flax.training import train_state

    params = module.init({"params": jax.random.key(0)}, jnp.asarray(inputs[:1]))["params"]
    return train_state.TrainState.create(apply_fn=module.apply, params=params, tx=optax.adam(1e-3))
  if problem == "train_steps":
    ts, (x, y, w) = inputs
    for i in range(20):
      if variant == "jaxal":
        ts, _ = loop.train_step(ts, (x, y, w), jax.random.key(i))
      else:
        ts, _ = loop_lib._train_step_eager(ts, x, y, w, jax.random.key(i))
    return ts.params
  pool = int(os.environ["CONSTRUCTION_POOL"])
  if variant == "jaxal":
    state = loop.init(jax.random.key(0), pool, num_initial=0)
    for idx in inputs:
      state = loop.label(state, idx)
    return state.labeled_mask
  mask = jnp.zeros((pool,), bool)
  for idx in inputs:
    mask = mask.at[jnp.asarray(idx, jnp.int32)].set(True)
  return mask


def stage(problem: str, variant: str, pool: int, cache: str) -> dict:
  """One fresh process: the first build of ``problem`` by ``variant``, with empty caches."""
  import jax
  from jax._src import monitoring

  import jaxal

  jaxal.enable_compilation_cache(cache)
  os.environ["CONSTRUCTION_POOL"] = str(pool)
  inputs = _inputs(problem, pool)
  key = jax.random.key(1)  # JAX's own first programs (a key, MLIR's set-up) before the clock
  jax.block_until_ready(jax.random.split(key))
  programs = []
  monitoring.register_event_duration_secs_listener(
    lambda event, seconds, **kw: (
      programs.append(kw.get("fun_name"))
      if event == "/jax/core/compile/backend_compile_duration"
      else None
    )
  )
  t = time.perf_counter()
  jax.block_until_ready(jax.tree.leaves(_call(problem, variant, inputs)))
  return {"first_s": time.perf_counter() - t, "programs": len(programs)}


def fresh(problem: str, variant: str, pool: int) -> dict:
  with tempfile.TemporaryDirectory() as cache:
    return _common.run_stage(__file__, [problem, variant, str(pool), cache], f"{problem}/{variant}")


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--pool", type=int, default=2000)
  parser.add_argument("--processes", type=int, default=3)
  parser.add_argument("--quick", action="store_true", help="pool 300, one process each")
  parser.add_argument("--stage", nargs=4, metavar=("PROBLEM", "VARIANT", "POOL", "CACHE"))
  args = parser.parse_args()
  if args.stage:
    problem, variant, pool, cache = args.stage
    print(json.dumps(stage(problem, variant, int(pool), cache)))
    return
  pool, processes = (300, 1) if args.quick else (args.pool, args.processes)
  meta = _common.machine()
  rows = []
  for problem in PROBLEMS:
    runs = {}
    for variant in ("jaxal", "eager"):
      # Interleaved, so that a change of load falls on both; the median process of each.
      runs[variant] = sorted(
        (fresh(problem, variant, pool) for _ in range(processes)), key=lambda r: r["first_s"]
      )[processes // 2]
    row = {
      "problem": problem,
      "jaxal_first_s": round(runs["jaxal"]["first_s"], 3),
      "jaxal_programs": runs["jaxal"]["programs"],
      "eager_first_s": round(runs["eager"]["first_s"], 3),
      "eager_programs": runs["eager"]["programs"],
      "eager_over_jaxal": round(runs["eager"]["first_s"] / runs["jaxal"]["first_s"], 2),
    }
    rows.append(row)
    print(row, flush=True)
  meta["loadavg_at_end"] = _common.load_now()
  lines = _common.header("Building what a pick needs, in a fresh process", meta)
  lines += [
    f"Pool of {pool} points; each figure the median of {processes} fresh processes with "
    "empty caches (imports and inputs not timed). `jaxal`: the library's call; `eager`: the "
    "same arrays by eager `jax.numpy` (see the script's docstring); `programs`: the programs "
    "each compiled.",
    "",
    *_common.table(rows, list(rows[0])),
    "",
  ]
  reading = _common.kept_section(
    "construction_quick" if args.quick else "construction", "## Reading"
  )
  if reading:
    lines += [reading.strip("\n"), ""]
  _common.write("construction", {"meta": meta, "rows": rows}, "\n".join(lines), quick=args.quick)


if __name__ == "__main__":
  main()
