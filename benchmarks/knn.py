"""The kNN kernel build (``submodular.knn_kernel``) against its previous form and the matmul floor.

    python benchmarks/knn.py                       # N=50,000, d=512, 64-NN; N=10^6 compiled only
    python benchmarks/knn.py --n 20000 --run-big 200000   # also run a bigger N for peak memory

The build computes every one of the N x N similarities (N·N·d multiply-adds) and keeps each
row's 64 largest. Three programs over the same features, in the same run:

* ``blocked``: the current builder, ``[512, 4096]`` tiles merged into a running top-k per row
  (``jaxal.neighbors``); memory ``O(N·k + 512·(4096 + k))``.
* ``previous``: the builder it replaced, one ``top_k`` over each whole ``[512, N]`` row block.
* ``matmul floor``: the blocked build's own ``[512, 4096]`` tile matmuls with only a running
  max kept per row, i.e. the same N·N·d FLOPs in the same tiles without the top-k.

The N = 10^6 line is the compiled program's own memory account (XLA's ``memory_analysis``:
arguments, outputs, temporaries) for d = 512, without running it (10^12 similarities take hours
on two cores); ``--run-big N`` runs one build at that N and reports its peak RSS.
"""

from __future__ import annotations

import argparse
import functools

import _common
import jax
import jax.numpy as jnp
import numpy as np

from jaxal import submodular
from jaxal._src.submodular import kernels


@functools.partial(jax.jit, static_argnames=("num_neighbors", "chunk_size"))
def previous_knn_kernel(x, num_neighbors, chunk_size=512):
  """The builder before the blocked top-k: ``top_k`` over each whole ``[chunk, N]`` row block."""
  x = x / jnp.maximum(jnp.sqrt(jnp.sum(x * x, axis=1, keepdims=True)), 1e-12)
  n = x.shape[0]
  rows = min(chunk_size, n)

  def body(b, out):
    vals, idx = out
    start = jnp.minimum(b * rows, n - rows)
    xb = jax.lax.dynamic_slice_in_dim(x, start, rows)
    s = (1.0 + jnp.clip(xb @ x.T, -1.0, 1.0)) * 0.5
    r = start + jnp.arange(rows)
    s = jnp.where(r[:, None] == jnp.arange(n)[None, :], 1.0, s)
    v, i = jax.lax.top_k(s, num_neighbors)
    return (
      jax.lax.dynamic_update_slice_in_dim(vals, v, start, axis=0),
      jax.lax.dynamic_update_slice_in_dim(idx, i.astype(jnp.int32), start, axis=0),
    )

  init = (jnp.zeros((n, num_neighbors), jnp.float32), jnp.zeros((n, num_neighbors), jnp.int32))
  return jax.lax.fori_loop(0, -(-n // rows), body, init)


@functools.partial(jax.jit, static_argnames=("row_block", "col_block"))
def matmul_floor(x, row_block=512, col_block=4096):
  """The blocked build's ``[row_block, col_block]`` tile matmuls (N·N·d multiply-adds), keeping
  only a running max per row: the same products in the same tiles, without the top-k."""
  n = x.shape[0]
  rows, cols = min(row_block, n), min(col_block, n)

  def row_body(b, out):
    start = jnp.minimum(b * rows, n - rows)
    xb = jax.lax.dynamic_slice_in_dim(x, start, rows)

    def col_body(c, best):
      yb = jax.lax.dynamic_slice_in_dim(x, jnp.minimum(c * cols, n - cols), cols)
      return jnp.maximum(best, jnp.max(xb @ yb.T, axis=1))

    best = jax.lax.fori_loop(0, -(-n // cols), col_body, jnp.full((rows,), -jnp.inf))
    return jax.lax.dynamic_update_slice_in_dim(out, best, start, axis=0)

  return jax.lax.fori_loop(0, -(-n // rows), row_body, jnp.zeros((n,), jnp.float32))


def compiled_memory(n, d, k):
  """XLA's memory account of the blocked build at ``[n, d]`` (compiled, not run), in MiB."""
  spec = jax.ShapeDtypeStruct((n, d), jnp.float32)
  lowered = kernels._knn_kernel.lower(spec, k, "cosine", None, 512, 4096)
  m = lowered.compile().memory_analysis()
  mib = 2.0**20
  return {
    "n": n,
    "d": d,
    "k": k,
    "argument_mib": round(m.argument_size_in_bytes / mib, 1),
    "output_mib": round(m.output_size_in_bytes / mib, 1),
    "temp_mib": round(m.temp_size_in_bytes / mib, 1),
    "n_x_n_matrix_mib": round(n * n * 4 / mib, 1),
  }


def main(argv=None) -> None:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--n", type=int, default=50_000)
  p.add_argument("--d", type=int, default=512)
  p.add_argument("--k", type=int, default=64)
  p.add_argument("--repeats", type=int, default=0, help="0: one call each, compile included")
  p.add_argument("--big", type=int, default=1_000_000, help="N of the compiled-memory line")
  p.add_argument("--run-big", type=int, default=0, help="also run one build at this N (peak RSS)")
  p.add_argument("--quick", action="store_true")
  args = p.parse_args(argv)
  if args.quick:
    args.n, args.d, args.big = 3000, 64, 100_000
  info = _common.machine(argv)
  x = jax.random.normal(jax.random.key(0), (args.n, args.d), jnp.float32)
  xn = x / jnp.linalg.norm(x, axis=1, keepdims=True)
  rows = []
  results = {}
  for name, fn in (
    ("blocked (current)", lambda: submodular.knn_kernel(x, args.k)),
    ("previous (whole-row top_k)", lambda: previous_knn_kernel(x, args.k)),
    ("matmul floor", lambda: matmul_floor(xn)),
  ):
    if args.repeats:
      first, best, _, out = _common.first_and_best(fn, repeats=args.repeats)
    else:  # one call, compile included (a few seconds of a long run)
      first, out = _common.once(fn)
      best = first
    results[name] = (best, out)
    print(name, round(first, 2), round(best, 2), flush=True)
    rows.append({"program": name, "first call (s)": f"{first:.2f}", "best (s)": f"{best:.2f}"})
  floor = results["matmul floor"][0]
  for r, (b, _) in zip(rows, results.values()):
    r["× matmul floor"] = f"{b / floor:.2f}"
  cur, prev = results["blocked (current)"][1], results["previous (whole-row top_k)"][1]
  same_idx = float(np.mean(np.asarray(cur.indices) == np.asarray(prev[1])))
  max_dv = float(np.max(np.abs(np.asarray(cur.values) - np.asarray(prev[0]))))
  flops = 2.0 * args.n * args.n * args.d
  mem = compiled_memory(args.big, args.d, args.k)
  big_run = None
  if args.run_big:
    _common.reset_peak_rss()
    xb = jax.random.normal(jax.random.key(1), (args.run_big, args.d), jnp.float32)
    t, _ = _common.once(lambda: submodular.knn_kernel(xb, args.k))
    big_run = {"n": args.run_big, "seconds": round(t, 1), "peak_rss_mib": _common.rss_mib()[1]}
  info["loadavg_at_end"] = _common.load_now()
  md = _common.header("kNN kernel build: blocked running top-k vs previous vs matmul floor", info)
  md += [
    f"N = {args.n}, d = {args.d}, {args.k}-NN, cosine; {flops / 1e12:.2f} TFLOP of similarities; "
    + (
      f"best of {args.repeats} after a first (compiling) call. "
      if args.repeats
      else "one call each (compile included: seconds against minutes of compute). "
    )
    + "The machine was shared "
    "(see the load): read the ratios, measured in the same run, not the seconds.",
    "",
    *_common.table(rows, ["program", "first call (s)", "best (s)", "× matmul floor"]),
    "",
    f"Same result: {same_idx * 100:.3f}% of the neighbour indices equal the previous builder's "
    f"(ties may order differently), largest similarity difference {max_dv:.2e}.",
    "",
    f"## N = {mem['n']:,} (compiled, not run)",
    "",
    f"XLA's memory account of the blocked build at N = {mem['n']:,}, d = {mem['d']}, "
    f"{mem['k']}-NN: arguments {mem['argument_mib']} MiB (the features), outputs "
    f"{mem['output_mib']} MiB (values and indices), temporaries {mem['temp_mib']} MiB; an N x N "
    f"float32 matrix would be {mem['n_x_n_matrix_mib']:,} MiB.",
    "",
  ]
  if big_run:
    md += [
      f"Run at N = {big_run['n']:,}: {big_run['seconds']} s, peak RSS {big_run['peak_rss_mib']:.0f}"
      " MiB (the whole process, JAX included).",
      "",
    ]
  payload = {
    "meta": info,
    "args": vars(args),
    "rows": rows,
    "same_indices_fraction": same_idx,
    "max_value_difference": max_dv,
    "compiled_memory": mem,
    "big_run": big_run,
  }
  reading = _common.kept_section("knn_quick" if args.quick else "knn", "## Reading")
  if reading:  # written by hand: kept
    md += [reading.strip("\n"), ""]
  _common.write("knn", payload, "\n".join(md), quick=args.quick)


if __name__ == "__main__":
  main()
