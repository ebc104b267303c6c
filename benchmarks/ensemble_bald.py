"""BALD from a deep ensemble against BALD from MC dropout on MNIST: accuracy and acquisition time.

    JAXAL_SHARED_DATA=../shared/data python benchmarks/ensemble_bald.py           # the recorded run
    JAXAL_SHARED_DATA=../shared/data python benchmarks/ensemble_bald.py --quick   # a smoke test

Both arms use the same MLP (``networks.MLP``, dropout 0.3), the same pool subsample, initial
labels and training (``loop.fit``: Adam, re-initialised each round) and ``strategies.bald``:
the MC-dropout arm scores ``--mc-samples`` dropout passes of one network; the ensemble arm
trains ``--members`` networks in one vmapped fit (``loop.create_train_state(num_members=M)``)
and scores their ``M`` predictions (``models.predict_mc`` returns the members). Reported per
arm and round: test accuracy (mean ± std over seeds), the fit time and the acquisition time;
the ratio is the ensemble's time over MC dropout's, measured in the same run.
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
from jaxal import networks
from jaxal import strategies


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--seeds", type=int, default=3)
  p.add_argument("--rounds", type=int, default=5)
  p.add_argument("--initial", type=int, default=50)
  p.add_argument("--budget", type=int, default=50)
  p.add_argument("--pool", type=int, default=5000)
  p.add_argument("--test", type=int, default=2000)
  p.add_argument("--steps", type=int, default=200)
  p.add_argument("--members", type=int, default=5)
  p.add_argument("--mc-samples", type=int, default=20)
  p.add_argument("--data-dir", default=os.path.join(tempfile.gettempdir(), "jaxal-quality-tfds"))
  p.add_argument("--quick", action="store_true", help="1 seed, 2 rounds, a small pool")
  args = p.parse_args(argv)
  if args.quick:
    args.seeds, args.rounds, args.pool, args.test, args.steps = 1, 2, 1000, 500, 50
  return args


def load(args):
  root = os.environ.get("JAXAL_SHARED_DATA")
  if not root:
    raise SystemExit("set JAXAL_SHARED_DATA to the shared datasets folder (holding mnist_idx/)")
  kw = {"data_dir": os.path.join(args.data_dir, "mnist"), "manual_dir": f"{root}/mnist_idx"}
  x, y = datasets.load("mnist", "train", **kw)
  xt, yt = datasets.load("mnist", "test", **kw)
  return x, y, xt[: args.test], yt[: args.test]


def run_arm(arm, seed, args, x_all, y_all, xt, yt):
  rng = np.random.default_rng(seed)
  sub = rng.choice(len(x_all), args.pool, replace=False)
  x, y = jnp.asarray(x_all[sub]), jnp.asarray(y_all[sub])
  key = jax.random.key(seed)
  module = networks.MLP(num_classes=10, hidden=(128,))
  members = args.members if arm == "ensemble" else None
  ts = loop.create_train_state(key, module, x, num_members=members)
  state = loop.init(key, args.pool, num_initial=args.initial)
  strategy = strategies.bald(num_samples=args.members if members else args.mc_samples)
  acc, fit_s, acq_s = [], [], []
  for r in range(args.rounds + 1):
    k_fit, k_acq = loop.round_keys(state)
    t = time.perf_counter()
    ts = jax.block_until_ready(
      loop.fit(k_fit, ts, x, y, state.labeled_mask, num_steps=args.steps, batch_size=32)
    )
    fit_s.append(time.perf_counter() - t)
    model, params = models.from_train_state(ts)
    acc.append(loop.accuracy(model, params, xt, yt))
    if r == args.rounds:
      break
    t = time.perf_counter()
    idx = jax.block_until_ready(
      strategy.acquire(k_acq, model, params, x, state.labeled_mask, args.budget)
    )
    acq_s.append(time.perf_counter() - t)
    state = loop.label(state, idx)
  return {"accuracy": acc, "fit_s": fit_s, "acquire_s": acq_s}


def main(argv=None):
  args = parse_args(argv)
  info = _common.machine(argv)
  info["command"] = "JAXAL_SHARED_DATA=../shared/data " + info["command"]
  x_all, y_all, xt, yt = load(args)
  arms = ("mc_dropout", "ensemble")
  runs = {a: [] for a in arms}
  for seed in range(args.seeds):
    for arm in arms:
      runs[arm].append(run_arm(arm, seed, args, x_all, y_all, xt, yt))
      print(arm, seed, np.round(runs[arm][-1]["accuracy"], 3), flush=True)
  info["loadavg_at_end"] = _common.load_now()
  labels = [args.initial + r * args.budget for r in range(args.rounds + 1)]
  summary = {}
  for arm in arms:
    a = np.array([run["accuracy"] for run in runs[arm]])
    # Later rounds only: the first fit and acquisition include compilation.
    acq = np.array([run["acquire_s"][1:] or run["acquire_s"] for run in runs[arm]])
    fit = np.array([run["fit_s"][1:] for run in runs[arm]])
    summary[arm] = {
      "accuracy_mean": a.mean(0).tolist(),
      "accuracy_std": a.std(0).tolist(),
      "acquire_s_median": float(np.median(acq)),
      "fit_s_median": float(np.median(fit)),
    }
  ratio_acq = summary["ensemble"]["acquire_s_median"] / summary["mc_dropout"]["acquire_s_median"]
  ratio_fit = summary["ensemble"]["fit_s_median"] / summary["mc_dropout"]["fit_s_median"]
  rows = []
  for i, n in enumerate(labels):
    row = {"labels": n}
    for arm in arms:
      s = summary[arm]
      row[arm] = f"{s['accuracy_mean'][i]:.3f} ± {s['accuracy_std'][i]:.3f}"
    rows.append(row)
  lines = _common.header("Deep-ensemble BALD vs MC-dropout BALD on MNIST", info)
  lines += [
    f"MNIST, a pool of {args.pool} training images per seed, {args.test} test images; "
    f"MLP(128), {args.steps} Adam steps per round (re-initialised); {args.initial} initial "
    f"labels, {args.budget} per round, {args.rounds} rounds, {args.seeds} seeds. MC dropout: "
    f"{args.mc_samples} passes; ensemble: {args.members} members trained in one vmapped fit.",
    "",
    "Test accuracy (mean ± std over seeds) against the number of labels:",
    "",
    *_common.table(rows, ["labels", *arms]),
    "",
    "Median time per round after the first (compilation excluded), seconds:",
    "",
    *_common.table(
      [
        {
          "arm": arm,
          "fit": f"{summary[arm]['fit_s_median']:.3f}",
          "acquire": f"{summary[arm]['acquire_s_median']:.3f}",
        }
        for arm in arms
      ],
      ["arm", "fit", "acquire"],
    ),
    "",
    f"Ensemble / MC dropout, same run: acquisition time × {ratio_acq:.2f}, fit time × "
    f"{ratio_fit:.2f} (the ensemble fits {args.members} networks; the machine was shared, so "
    "the ratios, not the absolute times, are the reading).",
    "",
    "The ensemble's accuracy is that of its members' mean predictive, MC dropout's that of one "
    "deterministic network: the curves compare the two posteriors as they would be deployed. "
    "Acquisition scores M predictions for the ensemble against S dropout passes.",
  ]
  payload = {
    **info,
    "args": vars(args),
    "labels": labels,
    "summary": summary,
    "runs": runs,
    "ratio_acquire": ratio_acq,
    "ratio_fit": ratio_fit,
  }
  _common.write("ensemble_bald", payload, "\n".join(lines), quick=args.quick)


if __name__ == "__main__":
  main()
