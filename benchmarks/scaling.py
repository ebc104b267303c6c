"""Scale: time against N for k-center and BADGE, AFK-MC² against exact k-means++, and a
sharded run on 8 simulated CPU devices against one device.

    python benchmarks/scaling.py                 # N = 1e4 .. 1e6 on this machine
    python benchmarks/scaling.py --sharded       # the same code over 8 simulated devices

With ``--sharded`` the script re-runs itself with
``XLA_FLAGS=--xla_force_host_platform_device_count=8`` and times k-center,
k-means++ and top-k with the pool sharded along N over a 1-D mesh, against
the same calls on one device, in the same process. Simulated devices share
this machine's 2 cores: the figure measures overhead, not a speed-up.

Multi-host is the same code: start one process per host with
``--coordinator HOST:PORT --num-processes P --process-id I`` and it calls
``jax.distributed.initialize`` before building the mesh over ``jax.devices()``
(every device of every host); see README.md, "Pools across devices and hosts".
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

import _common
import numpy as np


def _time(fn, repeats=3):
  first, best, _, _ = _common.first_and_best(fn, repeats)
  return first, best


def scaling(sizes, d, k, badge_k, badge_classes, badge_dim):
  import jax
  import jax.numpy as jnp

  from jaxal import selection
  from jaxal.embeddings import GradEmbedding

  rows = []
  for n in sizes:
    x = jax.random.normal(jax.random.key(n), (n, d))
    mask = jnp.zeros(n, bool).at[:100].set(True)
    # _time calls the lambda at once, before `del x`.
    kc_first, kc = _time(lambda: selection.k_center_greedy(None, x, k, labeled_mask=mask))  # noqa: F821
    del x
    emb = GradEmbedding(
      jax.random.normal(jax.random.key(1), (n, badge_classes)) * 0.1,
      jax.random.normal(jax.random.key(2), (n, badge_dim)),
    )
    bd_first, bd = _time(
      lambda: selection.kmeans_pp(jax.random.key(0), emb, badge_k, labeled_mask=mask)
    )
    mc_first, mc = _time(
      lambda: selection.kmeans_pp(jax.random.key(0), emb, badge_k, labeled_mask=mask, method="mcmc")
    )
    rows.append(
      dict(
        n=n,
        kcenter_s=kc,
        kcenter_first_s=kc_first,
        badge_s=bd,
        badge_first_s=bd_first,
        mcmc_s=mc,
        mcmc_first_s=mc_first,
      )
    )
    print(rows[-1], flush=True)
  logn = np.log([r["n"] for r in rows])
  exps = {
    name: float(np.polyfit(logn, np.log([r[name] for r in rows]), 1)[0])
    for name in ("kcenter_s", "badge_s", "mcmc_s")
  }
  return rows, exps


def sharded(n, d, k):
  import jax
  import jax.numpy as jnp
  from jax.sharding import NamedSharding
  from jax.sharding import PartitionSpec as P

  from jaxal import selection

  devices = jax.devices()
  mesh = jax.make_mesh((len(devices),), ("pool",))
  put = lambda a: jax.device_put(a, NamedSharding(mesh, P("pool", *([None] * (a.ndim - 1)))))
  x = jax.random.normal(jax.random.key(0), (n, d))
  u = jax.random.normal(jax.random.key(1), (n,))
  mask = jnp.zeros(n, bool).at[:100].set(True)
  xs, us, ms = put(x), put(u), put(mask)
  out = {}
  for name, one, many in [
    (
      "k_center_greedy",
      lambda: selection.k_center_greedy(None, x, k, labeled_mask=mask),
      lambda: selection.k_center_greedy(None, xs, k, labeled_mask=ms),
    ),
    (
      "kmeans_pp",
      lambda: selection.kmeans_pp(jax.random.key(0), x, k, labeled_mask=mask),
      lambda: selection.kmeans_pp(jax.random.key(0), xs, k, labeled_mask=ms),
    ),
    (
      "top_k",
      lambda: selection.top_k(u, k, labeled_mask=mask),
      lambda: selection.top_k(us, k, labeled_mask=ms),
    ),
  ]:
    a, b = one(), many()
    same = bool(np.array_equal(np.asarray(a), np.asarray(b)))
    out[name] = dict(one_device=_time(one), sharded=_time(many), same_indices=same)
    print(name, out[name], flush=True)
  return out


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--sizes", default="10000,30000,100000,300000,1000000")
  parser.add_argument("--d", type=int, default=256)
  parser.add_argument("--k", type=int, default=100)
  parser.add_argument("--sharded", action="store_true")
  parser.add_argument("--_child", action="store_true", help=argparse.SUPPRESS)
  parser.add_argument("--coordinator", default=None, help="multi-host: coordinator HOST:PORT")
  parser.add_argument("--num-processes", type=int, default=1)
  parser.add_argument("--process-id", type=int, default=0)
  args = parser.parse_args()

  if args.sharded and not args._child and args.coordinator is None:
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8")
    sys.exit(subprocess.call([sys.executable, *sys.argv, "--_child"], env=env))

  import jax

  if args.coordinator is not None:
    jax.distributed.initialize(args.coordinator, args.num_processes, args.process_id)

  info = _common.machine([a for a in sys.argv[1:] if a != "--_child"])
  if args.sharded:
    n = 200_000
    res = sharded(n, args.d, args.k)
    md = _common.header(f"Sharded selection: {jax.device_count()} devices against one", info) + [
      f"Pool N = {n:,}, d = {args.d}, k = {args.k}; simulated CPU devices share the same 2 cores, so "
      "this measures the overhead of running sharded, not a speed-up.\n",
      "| function | one device first / best (s) | sharded first / best (s) | same indices |",
      "|---|---:|---:|---|",
    ]
    for name, r in res.items():
      md.append(
        f"| {name} | {r['one_device'][0]:.3f} / {r['one_device'][1]:.3f} | "
        f"{r['sharded'][0]:.3f} / {r['sharded'][1]:.3f} | {r['same_indices']} |"
      )
    _common.write("sharded", dict(info, results=res), "\n".join(md) + "\n")
    return

  sizes = [int(s) for s in args.sizes.split(",")]
  rows, exps = scaling(sizes, args.d, args.k, badge_k=args.k, badge_classes=10, badge_dim=args.d)
  md = _common.header("Scaling with the pool size N", info) + [
    f"k-center greedy on dense [N, {args.d}] (100 labeled), k = {args.k}; BADGE-style k-means++ on a "
    f"factorised GradEmbedding (K = 10, d = {args.d}), k = {args.k}, exact and AFK-MC² "
    '(`method="mcmc"`, chain 200). Best of 3 compiled calls; first call includes compilation.\n',
    "| N | k-center (s) | k-means++ exact (s) | k-means++ AFK-MC² (s) | AFK-MC² speed-up |",
    "|---:|---:|---:|---:|---:|",
  ]
  for r in rows:
    md.append(
      f"| {r['n']:,} | {r['kcenter_s']:.3f} | {r['badge_s']:.3f} | {r['mcmc_s']:.3f} | "
      f"{r['badge_s'] / r['mcmc_s']:.1f}× |"
    )
  md.append("")
  md.append(
    "Scaling exponents (slope of log time against log N): "
    + ", ".join(f"{name.replace('_s', '')} {e:.2f}" for name, e in exps.items())
    + "."
  )
  _common.write("scaling", dict(info, rows=rows, exponents=exps), "\n".join(md) + "\n")


if __name__ == "__main__":
  main()
