"""Strategy quality on real data: learning curves on MNIST and Fashion-MNIST.

In the spirit of Ash et al. (2020, BADGE), scaled to two CPU cores: an MLP,
100 initial random labels, 100 labels bought per round, 10 rounds, 3 seeds,
every registered strategy against random, retrained from scratch each round.
Everything runs through ``jaxal.experiment.run`` (what ``jaxal run`` calls), so
the experiment folders are resumable: kill this script and run the same command
again, it continues from the last completed round of every (strategy, seed).

Strategies whose acquisition is much slower at this pool size (``--slow``,
BatchBALD and submodular selection by default) run in a second experiment with
the same configuration and ``--slow-seeds`` seeds (same seeds, so the same
initial sets and pool), and are merged into the same tables.

Writes ``benchmarks/results/quality.md`` (command, machine, load, tables) and
``benchmarks/results/quality_<dataset>/`` (results.json without the labeled
indices, report.md, curves.png, curves_vs_random.png, and curves_key*.png with
only the methods the reading discusses). A "## Reading" section written by hand
into quality.md is kept when the script rewrites it.

Usage (with the offline copies of the datasets, as in this repository's CI):

    JAXAL_SHARED_DATA=../shared/data nohup python benchmarks/quality.py > quality.log 2>&1 &
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import tempfile
import time

import _common
import numpy as np

from jaxal import experiment
from jaxal._src.strategies import registry as strategies_lib

RESULTS = _common.RESULTS
SLOW = ("batchbald", "submodular")
# Baseline and the methods the reading is about first, so they finish first.
FIRST = ("random", "badge", "entropy", "margin", "least_confidence", "bald", "coreset")
SHARED_FOLDERS = {"mnist": "mnist_idx", "fashion_mnist": "fashion_mnist_idx"}
KEY = ("random", "badge", "margin", "entropy", "least_confidence", "bald", "batchbald", "coreset")


def _csv(s: str) -> list[str]:
  return [t.strip() for t in s.split(",") if t.strip()]


def parse_args(argv=None) -> argparse.Namespace:
  p = argparse.ArgumentParser(
    description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
  )
  p.add_argument("--datasets", type=_csv, default=["mnist", "fashion_mnist"])
  p.add_argument(
    "--strategies", type=_csv, default=None, help="default: every registered strategy except --slow"
  )
  p.add_argument(
    "--slow",
    type=_csv,
    default=list(SLOW),
    help="strategies run with --slow-seeds seeds in a second experiment",
  )
  p.add_argument("--slow-seeds", type=int, default=1)
  p.add_argument("--seeds", type=int, default=3)
  p.add_argument("--rounds", type=int, default=10)
  p.add_argument("--initial", type=int, default=100)
  p.add_argument("--budget", type=int, default=100)
  p.add_argument("--pool-subsample", type=int, default=10000)
  p.add_argument("--steps", type=int, default=300)
  p.add_argument("--hidden", type=int, default=128)
  p.add_argument(
    "--data-dir",
    default=os.path.join(tempfile.gettempdir(), "jaxal-quality-tfds"),
    help="TFDS data_dir (prepared once per dataset)",
  )
  p.add_argument(
    "--manual-dir",
    default=None,
    help="folder holding <dataset>_idx/ original files (default: $JAXAL_SHARED_DATA)",
  )
  p.add_argument(
    "--work",
    default=os.path.join(tempfile.gettempdir(), "jaxal-quality-runs"),
    help="experiment folders (checkpoints; resumable)",
  )
  p.add_argument("--results", default=RESULTS)
  p.add_argument(
    "--target",
    type=float,
    default=None,
    help="accuracy for 'labels to reach' (default: random's final mean accuracy)",
  )
  return p.parse_args(argv)


def log(msg: str) -> None:
  print(time.strftime("%H:%M:%S"), msg, flush=True)


def merge(parts: list[dict]) -> dict:
  """One results payload from experiments that differ only in their strategies (and seeds)."""
  base = json.loads(json.dumps(parts[0]))
  strategies = list(base["config"]["strategies"])
  for p in parts[1:]:
    a = {k: v for k, v in p["config"].items() if k not in ("strategies", "seeds")}
    b = {k: v for k, v in base["config"].items() if k not in ("strategies", "seeds")}
    assert a == b, (a, b)
    assert p["dataset_sha256"] == base["dataset_sha256"]
    strategies += p["config"]["strategies"]
    base["results"].update(p["results"])
  base["config"]["strategies"] = strategies
  base["complete"] = all(p["complete"] for p in parts)
  for res in base["results"].values():
    res.pop("labeled_indices", None)  # large; kept in the experiment folders
  cfg = experiment.Config.from_dict(base["config"])
  base["summary"] = experiment.summarize(cfg, base["results"])
  base["seconds"] = sum(p["seconds"] for p in parts)
  return base


def paired_auc_table(merged: dict) -> str:
  """Markdown: AUC minus random's AUC on the same seed (same initial set), best first."""
  labels = merged["labels"]
  res = merged["results"]
  auc = {
    k: np.array([experiment.area_under_curve(labels, a) for a in v["accuracy"]])
    for k, v in res.items()
  }
  rows = []
  for name, a in auc.items():
    if name == "random":
      continue
    d = a - auc["random"][: len(a)]
    rows.append((float(d.mean()), name, len(a), float(d.min()), float(d.max())))
  lines = [
    "| strategy | seeds | ΔAUC vs random (mean) | min, max over seeds |",
    "|---|---:|---:|---:|",
  ]
  lines += [
    f"| {n} | {k} | {m:+.4f} | {lo:+.4f}, {hi:+.4f} |"
    for m, n, k, lo, hi in sorted(rows, reverse=True)
  ]
  return "\n".join(lines)


def compute_minutes(merged: dict) -> float:
  """Training plus acquisition time summed over every round of every run (from the checkpoints)."""
  total = 0.0
  for res in merged["results"].values():
    total += sum(map(sum, res["train_seconds"])) + sum(map(sum, res["acquire_seconds"]))
  return total / 60


def main(argv=None) -> None:
  args = parse_args(argv)
  t0 = time.time()
  info = _common.machine(argv)
  load0 = info["loadavg_at_start"]
  registered = strategies_lib.names()
  slow = [s for s in args.slow if s in registered]
  if args.strategies is None:
    rest = [s for s in registered if s not in slow]
    fast = [s for s in FIRST if s in rest] + [s for s in rest if s not in FIRST]
  else:
    fast = [s for s in args.strategies if s not in slow]
  manual_root = args.manual_dir or os.environ.get("JAXAL_SHARED_DATA")
  log(
    f"datasets {args.datasets}; {len(fast)} strategies x {args.seeds} seeds: {fast}; "
    f"slow ({args.slow_seeds} seed): {slow}; load {load0}"
  )
  base = experiment.Config(
    strategies=tuple(fast),
    rounds=args.rounds,
    budget=args.budget,
    initial=args.initial,
    seeds=args.seeds,
    hidden=args.hidden,
    num_steps=args.steps,
    pool_subsample=args.pool_subsample,
  )
  groups = [("main", base)]
  if slow:
    groups.append(
      ("slow", dataclasses.replace(base, strategies=tuple(slow), seeds=args.slow_seeds))
    )
  payloads: dict[str, list[dict]] = {d: [] for d in args.datasets}
  # Every dataset's main group first, then the slow groups.
  for group, cfg0 in groups:
    for dataset in args.datasets:
      cfg = dataclasses.replace(cfg0, dataset=dataset)
      manual = (
        os.path.join(manual_root, SHARED_FOLDERS[dataset])
        if manual_root and dataset in SHARED_FOLDERS
        else None
      )
      out = os.path.join(args.work, f"{dataset}_{group}")
      t_group = time.time()

      def on_round(name, seed, r, cfg=cfg, t_group=t_group):
        if r == cfg.rounds:
          log(f"{cfg.dataset} {name} seed {seed} done ({time.time() - t_group:.0f} s into {group})")

      log(f"{dataset} {group}: {len(cfg.strategies)} strategies x {cfg.seeds} seeds -> {out}")
      payloads[dataset].append(
        experiment.run(
          cfg,
          out,
          data_dir=os.path.join(args.data_dir, dataset),
          manual_dir=manual,
          progress=False,
          log=log,
          on_round=on_round,
        )
      )
  wall = time.time() - t0
  info["loadavg_at_end"] = _common.load_now()
  if manual_root:
    info["command"] = "JAXAL_SHARED_DATA=../shared/data " + info["command"]
  os.makedirs(args.results, exist_ok=True)
  sections = []
  compute = 0.0
  for dataset, parts in payloads.items():
    merged = merge(parts)
    compute += compute_minutes(merged)
    folder = os.path.join(args.results, f"quality_{dataset}")
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder)
    with open(os.path.join(folder, "results.json"), "w") as f:
      json.dump(merged, f, indent=1)
    md = experiment.report(folder, target=args.target, log=lambda s: None)
    # The methods the reading is about, on their own: 24 curves in one plot are hard to read.
    cfg = experiment.Config.from_dict(merged["config"])
    key = {k: v for k, v in merged["summary"].items() if k in KEY}
    experiment.plot_curves(cfg, key, os.path.join(folder, "curves_key.png"))
    experiment.plot_curves(
      cfg, key, os.path.join(folder, "curves_key_vs_random.png"), relative_to="random"
    )
    md = md.replace("# ", "## ", 1).replace("\n## ", "\n### ")
    sections.append(
      md
      + "\n### Area under the curve against random, paired by seed\n\n"
      + paired_auc_table(merged)
      + "\n"
    )
  header = (
    "\n".join(_common.header("Strategy quality on MNIST and Fashion-MNIST", info))
    + f"""
Compute (training and acquisition, summed over every round of every run): {compute:.1f} min;
wall time of this invocation {wall / 60:.1f} min (runs already complete in --work are reused,
not recomputed).

Protocol: MLP (one hidden layer of {args.hidden}, ReLU, dropout 0.3 before the head), retrained from
scratch every round ({args.steps} Adam steps, batch 32, lr 1e-3); pool: {args.pool_subsample} training images
drawn once (the same for every strategy and seed); test: the full 10,000-image test split;
{args.initial} initial random labels (the same per seed for every strategy), {args.budget} per round,
{args.rounds} rounds; {args.seeds} seeds{f", {args.slow_seeds} for {', '.join(slow)}" if slow else ""}.
Per-round curves, AUC and labels needed to reach a target accuracy; "saved vs random" is the
number of labels random needs minus the strategy's (positive = fewer labels).
"""
  )
  reading = _common.kept_section("quality", "## Reading", args.results)  # written by hand: kept
  _common.write(
    "quality", None, header + reading + "\n" + "\n\n".join(sections), results=args.results
  )
  log(f"wrote {os.path.join(args.results, 'quality.md')} in {wall / 60:.1f} min")


if __name__ == "__main__":
  main()
