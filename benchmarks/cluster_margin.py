"""Cluster-Margin at scale on CPU: the clustering once, then a round's selection; peak RSS.

    python benchmarks/cluster_margin.py                  # N=20,000 end to end; N=10^6 clustering
    python benchmarks/cluster_margin.py --n 1000000      # end to end at 10^6 (the kNN takes hours)

Two measurements, each in its own bounded-memory pass:

* **end to end** at ``--n`` (d = ``--d``, Gaussian blobs): the exact blocked kNN graph
  (``jaxal.neighbors``), average-linkage merging on it (``cluster_margin_clusters``), then one
  round of ``cluster_margin`` selection (margins of random logits, ``margin_batch`` =
  10 x budget). The kNN graph is O(N² d) work: on two shared cores N = 10^6 takes hours,
  so the default N is 20,000 and 10^6 is behind ``--n``.
* **clustering and selection at** ``--big`` (default 10^6) on a kNN graph given exactly
  without the O(N²) search: points on a line (sorted), where each point's k nearest lie
  among its 2k neighbours in the order. This measures what the strategy adds beyond the
  kNN graph (the merge rounds over 2·N·k directed edges, and the selection) at N = 10^6.

Peak RSS is the whole process (JAX included), reset before each pass.
"""

from __future__ import annotations

import argparse
import time

import _common
import jax
import jax.numpy as jnp
import numpy as np

from jaxal import scores
from jaxal import strategies
from jaxal._src import neighbors
from jaxal._src.selection import agglomerative
from jaxal._src.strategies import cluster_margin as cm


def line_graph(n, k, seed=0):
  """Points on a line with random gaps, and their exact k nearest neighbours (NumPy, O(N k))."""
  rng = np.random.default_rng(seed)
  x = np.cumsum(rng.exponential(size=n)).astype(np.float64)
  off = np.concatenate([np.arange(-k, 0), np.arange(1, k + 1)])
  cand = np.arange(n)[:, None] + off[None, :]
  ok = (cand >= 0) & (cand < n)
  cand_c = np.clip(cand, 0, n - 1)
  d = np.where(ok, (x[cand_c] - x[:, None]) ** 2, np.inf)
  order = np.argsort(d, axis=1, kind="stable")[:, :k]
  idx = np.take_along_axis(cand_c, order, axis=1).astype(np.int32)
  return x, neighbors.Neighbors(
    jnp.asarray(np.take_along_axis(d, order, axis=1), jnp.float32), jnp.asarray(idx)
  )


def select(key, clusters, n, budget):
  logits = jax.random.normal(jax.random.fold_in(key, 1), (n, 10))
  labeled = jnp.zeros((n,), bool).at[: n // 100].set(True)
  margin_batch = min(10 * budget, n - n // 100)  # as the strategy: at most the unlabeled points
  idx = cm.cluster_margin_core(
    key, scores.margin(logits), clusters, labeled, budget=budget, margin_batch=margin_batch
  )
  assert not bool(jnp.any(labeled[idx]))
  return idx


def main(argv=None) -> None:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--n", type=int, default=20_000)
  p.add_argument("--d", type=int, default=32)
  p.add_argument("--k", type=int, default=16)
  p.add_argument("--budget", type=int, default=1000)
  p.add_argument("--big", type=int, default=1_000_000)
  p.add_argument("--quick", action="store_true")
  args = p.parse_args(argv)
  if args.quick:
    args.n, args.big, args.budget = 2000, 20_000, 50
  info = _common.machine(argv)
  key = jax.random.key(0)
  rows = []

  # End to end: exact kNN graph, clustering, one round of selection.
  _common.reset_peak_rss()
  centres = jax.random.normal(jax.random.key(1), (50, args.d)) * 3.0
  lab = jax.random.randint(jax.random.key(2), (args.n,), 0, 50)
  x = centres[lab] + jax.random.normal(jax.random.key(3), (args.n, args.d))
  t0 = time.perf_counter()
  nb = _common.block(
    neighbors.knn_core(
      x, x, args.k, None, None, exclude_self=True, row_block=1024, col_block=4096
    )
  )  # fmt: skip
  t_knn = time.perf_counter() - t0
  t_cl, out = _common.once(
    lambda: agglomerative.agglomerative_graph(nb, jnp.nan, max_rounds=10_000)
  )
  labels, num_clusters, thr, rounds = out
  t_sel, idx = _common.once(lambda: select(key, labels, args.n, args.budget))
  assert len(set(np.asarray(idx).tolist())) == args.budget
  rows.append({
    "pass": f"end to end, N = {args.n:,}, d = {args.d}",
    "kNN graph (s)": f"{t_knn:.1f}",
    "clustering (s)": f"{t_cl:.1f}",
    "merge rounds": int(rounds),
    "clusters": int(num_clusters),
    "selection (s)": f"{t_sel:.2f}",
    "peak RSS (MiB)": f"{_common.rss_mib()[1]:.0f}",
  })  # fmt: skip
  print(rows[-1], flush=True)
  # The same pipeline through the public function (one call) gives the same clusters.
  same = strategies.cluster_margin_clusters(x, num_neighbors=args.k)
  assert np.array_equal(np.asarray(same), np.asarray(labels))
  del x, nb, same

  # At --big: an exact kNN graph given without the O(N²) search (points on a line).
  _common.reset_peak_rss()
  t0 = time.perf_counter()
  _, nb = line_graph(args.big, args.k)
  t_graph = time.perf_counter() - t0
  t_cl, out = _common.once(
    lambda: agglomerative.agglomerative_graph(nb, jnp.nan, max_rounds=10_000)
  )
  labels, num_clusters, thr, rounds = out
  t_sel, idx = _common.once(lambda: select(key, labels, args.big, args.budget))
  assert len(set(np.asarray(idx).tolist())) == args.budget
  rows.append({
    "pass": f"clustering + selection, N = {args.big:,} (line graph)",
    "kNN graph (s)": f"{t_graph:.1f} (NumPy, 1-D)",
    "clustering (s)": f"{t_cl:.1f}",
    "merge rounds": int(rounds),
    "clusters": int(num_clusters),
    "selection (s)": f"{t_sel:.2f}",
    "peak RSS (MiB)": f"{_common.rss_mib()[1]:.0f}",
  })  # fmt: skip
  print(rows[-1], flush=True)
  info["loadavg_at_end"] = _common.load_now()
  edges_mib = 2 * args.big * args.k * 13 / 2**20  # u, v, distance, valid per directed edge
  md = _common.header("Cluster-Margin at scale on CPU", info)
  md += [
    f"{args.k}-NN graph, average linkage, threshold = the median nearest-neighbour distance "
    f"(the default); one selection round of budget {args.budget} from margin_batch = "
    f"min(10 x budget, unlabeled) (margins of random logits, 1% labeled). The machine was shared (see "
    "the load): the seconds are pessimistic. For scale, the 2·N·k directed edges of the "
    f"N = {args.big:,} graph hold {edges_mib:.0f} MiB (indices, distance, flag); an N x N "
    f"float32 matrix would be {args.big**2 * 4 / 2**30:,.0f} GiB.",
    "",
    *_common.table(
      rows,
      [
        "pass",
        "kNN graph (s)",
        "clustering (s)",
        "merge rounds",
        "clusters",
        "selection (s)",
        "peak RSS (MiB)",
      ],
    ),
    "",
  ]
  _common.write("cluster_margin", {"meta": info, "args": vars(args), "rows": rows}, "\n".join(md),
                quick=args.quick)  # fmt: skip


if __name__ == "__main__":
  main()
