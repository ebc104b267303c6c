"""Low-budget quality: TypiClust and ProbCover against random and BADGE, 10 to 100 labels.

The low-budget papers (Hacohen et al., ICML 2022; Yehuda et al., NeurIPS 2022)
start from no label at all and buy a few labels per round; their strategies
select on a fixed self-supervised embedding (SimCLR). We have no such model
here, so TypiClust and ProbCover select on a PCA of the raw pixels of the
pool (``--pca-dim`` components, fitted on the pool once), passed as their
``embed``; BADGE uses the MLP's own gradient embeddings, as usual. This is a
weaker embedding than the papers': read the results with that in mind.

Protocol: a pool of ``--pool`` training images drawn once per dataset, the
full 10,000-image test split, an MLP (one hidden layer of ``--hidden``)
retrained from scratch on the labeled set every round (``--steps`` Adam
steps); every strategy starts from zero labels and buys ``--budget`` per round
for ``--rounds`` rounds (the first batch of random and BADGE comes from the
untrained network), ``--seeds`` seeds. ProbCover's δ is chosen once per seed
by the paper's purity criterion (``strategies.probcover_delta``, purity 0.95,
k-means pseudo-labels with 10 clusters) on the same PCA features.

Usage:

    JAXAL_SHARED_DATA=../shared/data python benchmarks/low_budget.py
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import _common
import jax
import jax.numpy as jnp
import numpy as np

from jaxal import datasets
from jaxal import loop
from jaxal import models
from jaxal import strategies

SHARED_FOLDERS = {"mnist": "mnist_idx", "fashion_mnist": "fashion_mnist_idx"}


def _csv(s: str) -> list[str]:
  return [t.strip() for t in s.split(",") if t.strip()]


def parse_args(argv=None) -> argparse.Namespace:
  p = argparse.ArgumentParser(
    description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
  )
  p.add_argument("--datasets", type=_csv, default=["mnist", "fashion_mnist"])
  p.add_argument("--strategies", type=_csv, default=["random", "badge", "typiclust", "probcover"])
  p.add_argument("--seeds", type=int, default=3)
  p.add_argument("--rounds", type=int, default=10)
  p.add_argument("--budget", type=int, default=10)
  p.add_argument("--pool", type=int, default=5000)
  p.add_argument("--steps", type=int, default=100)
  p.add_argument("--hidden", type=int, default=64)
  p.add_argument("--pca-dim", type=int, default=50)
  p.add_argument("--purity", type=float, default=0.95)
  p.add_argument(
    "--data-dir", default=os.path.join(tempfile.gettempdir(), "jaxal-quality-tfds"),
    help="TFDS data_dir (prepared once per dataset)",
  )  # fmt: skip
  p.add_argument("--quick", action="store_true", help="a smoke run: 1 seed, 2 rounds")
  return p.parse_args(argv)


def log(msg: str) -> None:
  print(time.strftime("%H:%M:%S"), msg, flush=True)


def pca_embed(pool: np.ndarray, dim: int):
  """``embed(pool) -> [N, dim]``: the projection on the pool's top ``dim`` principal axes."""
  flat = pool.reshape(len(pool), -1).astype(np.float64)
  mean = flat.mean(0)
  _, _, vt = np.linalg.svd(flat - mean, full_matrices=False)
  mean_j = jnp.asarray(mean, jnp.float32)
  comp = jnp.asarray(vt[:dim].T, jnp.float32)

  def embed(x):
    return (jnp.reshape(x, (x.shape[0], -1)) - mean_j[None, :]) @ comp

  return embed


def run_one(name, seed, x, y, x_test, y_test, embed, delta, args):
  key = jax.random.key(seed)
  module = models.MLP(num_classes=10, hidden=(args.hidden,))
  ts = loop.create_train_state(key, module, x)
  model, params = models.from_train_state(ts)
  if name == "typiclust":
    strategy = strategies.typiclust(embed=embed)
  elif name == "probcover":
    strategy = strategies.probcover(delta=delta, embed=embed)
  else:
    strategy = strategies.get(name)
  state = loop.init(key, len(x))
  accs, acq_s, fit_s = [], [], []
  for r in range(args.rounds):
    t = time.perf_counter()
    state, _ = loop.acquire(state, strategy, model, params, x, args.budget)
    jax.block_until_ready(state.labeled_mask)
    acq_s.append(time.perf_counter() - t)
    t = time.perf_counter()
    ts = loop.fit(jax.random.fold_in(key, r), ts, x, y, state.labeled_mask, num_steps=args.steps)
    model, params = models.from_train_state(ts)
    fit_s.append(time.perf_counter() - t)
    accs.append(loop.accuracy(model, params, x_test, y_test))
  return accs, acq_s, fit_s


def main(argv=None) -> None:
  args = parse_args(argv)
  if args.quick:
    args.seeds, args.rounds = 1, 2
  info = _common.machine(argv)
  t0 = time.time()
  manual_root = os.environ.get("JAXAL_SHARED_DATA")
  results = {}
  for dataset in args.datasets:
    manual = os.path.join(manual_root, SHARED_FOLDERS[dataset]) if manual_root else None
    data_dir = os.path.join(args.data_dir, dataset)
    x_all, y_all = datasets.load(dataset, "train", data_dir=data_dir, manual_dir=manual)
    x_test, y_test = datasets.load(dataset, "test", data_dir=data_dir, manual_dir=manual)
    pick = np.random.default_rng(0).choice(len(x_all), args.pool, replace=False)
    x, y = jnp.asarray(x_all[pick]), jnp.asarray(y_all[pick])
    x_test, y_test = jnp.asarray(x_test), jnp.asarray(y_test)
    embed = pca_embed(np.asarray(x), args.pca_dim)
    feats = embed(x)
    res = {"deltas": [], "strategies": {}}
    deltas = [
      strategies.probcover_delta(
        feats, key=jax.random.key(1000 + s), num_classes=10, purity=args.purity
      )
      for s in range(args.seeds)
    ]
    res["deltas"] = deltas
    log(f"{dataset}: pool {args.pool}, PCA {args.pca_dim}; ProbCover deltas {deltas}")
    for name in args.strategies:
      runs = []
      for seed in range(args.seeds):
        accs, acq, fit = run_one(
          name, seed, x, y, x_test, y_test, embed, deltas[seed], args
        )  # fmt: skip
        runs.append({"accuracy": accs, "acquire_seconds": acq, "fit_seconds": fit})
        log(f"{dataset} {name} seed {seed}: {[round(a, 3) for a in accs]}")
      res["strategies"][name] = runs
    results[dataset] = res
    write(args, info, results, t0, manual_root)  # after every dataset: a partial page survives


def write(args, info, results, t0, manual_root) -> None:
  info = dict(info)
  info["loadavg_at_end"] = _common.load_now()
  if manual_root:
    info["command"] = "JAXAL_SHARED_DATA=../shared/data " + info["command"]
  labels = [args.budget * (r + 1) for r in range(args.rounds)]
  md = _common.header(
    "Low-budget quality: TypiClust and ProbCover on MNIST and Fashion-MNIST", info
  )
  md += [
    f"Wall time {(time.time() - t0) / 60:.1f} min. Protocol: pool of {args.pool} training images "
    f"(drawn once), full test split, MLP (hidden {args.hidden}) retrained from scratch each round "
    f"({args.steps} Adam steps, batch 32), from 0 labels, {args.budget} per round, "
    f"{args.rounds} rounds, {args.seeds} seeds. TypiClust and ProbCover select on a PCA "
    f"({args.pca_dim} components) of the raw pixels of the pool, not on self-supervised "
    "features as in the papers (we have none); BADGE on the MLP's gradient embeddings. "
    f"ProbCover's δ by the purity criterion (purity {args.purity}, k-means pseudo-labels).",
    "",
  ]
  for dataset, res in results.items():
    md += [f"## {dataset}", "", f"ProbCover δ per seed: {[round(d, 3) for d in res['deltas']]}", ""]
    cols = ["strategy"] + [str(n) for n in labels] + ["mean over budgets", "Δ vs random"]
    rows = []
    base = np.mean([r["accuracy"] for r in res["strategies"].get("random", [])], axis=0)
    for name, runs in res["strategies"].items():
      a = np.array([r["accuracy"] for r in runs])
      row = {"strategy": name}
      for j, n in enumerate(labels):
        row[str(n)] = f"{a[:, j].mean():.3f} ± {a[:, j].std():.3f}"
      row["mean over budgets"] = f"{a.mean():.3f}"
      if "random" in res["strategies"]:
        row["Δ vs random"] = f"{a.mean() - base.mean():+.3f}"
      rows.append(row)
    md += ["Test accuracy (mean ± std over seeds) after each number of labels:", ""]
    md += _common.table(rows, cols) + [""]
  payload = {"meta": info, "args": vars(args), "labels": labels, "results": results}
  reading = _common.kept_section("low_budget", "## Reading")
  _common.write("low_budget", payload, "\n".join(md) + reading, quick=args.quick)


if __name__ == "__main__":
  main()
