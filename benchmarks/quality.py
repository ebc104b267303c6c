"""Strategy quality on real data under the papers' training protocol: MNIST and Fashion-MNIST.

Each round re-initialises an MLP and trains it on the labeled set in epochs until its training
accuracy reaches a threshold (``jaxal.loop.PROTOCOLS``: ``badge``, Ash et al. 2020: Adam 1e-4,
batch 64, until 99 %; ``distil``: SGD 1e-3, batch 32, until 95 % or 150 epochs), then
measures test accuracy and acquires a batch. The model is therefore trained to the same
point whatever the labeled-set size, as in DISTIL and BADGE, instead of for a fixed number
of steps (``--protocol fixed``, jaxal's default: 300 steps).

The loop is jaxal's own (``loop.init`` / ``loop.fit`` / ``loop.acquire``), written out here
because the experiment runner trains for a fixed number of steps. Each finished
(dataset, strategy, seed) run is cached as JSON in ``--work``: a killed invocation, run
again, recomputes only the runs it had not finished.

Writes ``benchmarks/results/quality.md`` (command, machine, load, tables) and
``benchmarks/results/quality.json``. A "## Reading" section written by hand into quality.md
is kept when the script rewrites it.

Usage (default size: about 20 minutes on 2 loaded CPU cores):

    JAXAL_SHARED_DATA=../shared/data python benchmarks/quality.py
    JAXAL_SHARED_DATA=../shared/data python benchmarks/quality.py --protocol distil --seeds 1
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

import _common
import jax
import numpy as np

from jaxal import experiment
from jaxal import loop
from jaxal import models
from jaxal import strategies
from jaxal._src.experiment import config as config_lib

RESULTS = _common.RESULTS
SHARED_FOLDERS = {"mnist": "mnist_idx", "fashion_mnist": "fashion_mnist_idx"}
DEFAULT_STRATEGIES = ("random", "badge", "margin", "entropy", "bald", "coreset")


def _csv(s: str) -> list[str]:
  return [t.strip() for t in s.split(",") if t.strip()]


def parse_args(argv=None) -> argparse.Namespace:
  p = argparse.ArgumentParser(
    description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
  )
  p.add_argument("--datasets", type=_csv, default=["mnist", "fashion_mnist"])
  p.add_argument("--strategies", type=_csv, default=list(DEFAULT_STRATEGIES))
  p.add_argument("--protocol", default="badge", choices=sorted(loop.PROTOCOLS))
  p.add_argument("--seeds", type=int, default=2)
  p.add_argument("--rounds", type=int, default=6)
  p.add_argument("--initial", type=int, default=100)
  p.add_argument("--budget", type=int, default=100)
  p.add_argument("--pool-subsample", type=int, default=10000)
  p.add_argument("--hidden", type=int, default=128)
  p.add_argument("--max-steps", type=int, default=None, help="default: the protocol's")
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
    default=os.path.join(tempfile.gettempdir(), "jaxal-quality-protocol-runs"),
    help="finished runs, one JSON each (resumable)",
  )
  p.add_argument("--results", default=RESULTS)
  p.add_argument("--name", default="quality", help="results file name: <results>/<name>.md/.json")
  return p.parse_args(argv)


def log(msg: str) -> None:
  print(time.strftime("%H:%M:%S"), msg, flush=True)


def load(dataset: str, args) -> object:
  manual_root = args.manual_dir or os.environ.get("JAXAL_SHARED_DATA")
  manual = (
    os.path.join(manual_root, SHARED_FOLDERS[dataset])
    if manual_root and dataset in SHARED_FOLDERS
    else None
  )
  cfg = experiment.Config(dataset=dataset, pool_subsample=args.pool_subsample)
  return config_lib.load_data(cfg, data_dir=os.path.join(args.data_dir, dataset), manual_dir=manual)


def run_one(ds, strategy_name: str, seed: int, args, protocol: loop.Protocol) -> dict:
  """One strategy on one seed: per round test accuracy, labels, epochs, steps, seconds."""
  fit_kwargs = protocol.fit_kwargs()
  if args.max_steps is not None and "max_steps" in fit_kwargs:
    fit_kwargs["max_steps"] = args.max_steps
  strategy = strategies.get(strategy_name)
  x, y = ds.x_train, ds.y_train
  key = jax.random.key(seed)
  module = models.MLP(num_classes=ds.num_classes, hidden=(args.hidden,))
  ts = loop.create_train_state(jax.random.fold_in(key, 1), module, x, tx=protocol.make_tx())
  state = loop.init(key, x.shape[0], num_initial=args.initial)
  out = {k: [] for k in ("labels", "accuracy", "epochs", "steps", "train_accuracy")}
  out.update(train_seconds=[], acquire_seconds=[])
  for r in range(args.rounds + 1):
    k_train, _ = loop.round_keys(state)
    t0 = time.perf_counter()
    ts, info = loop.fit(k_train, ts, x, y, state.labeled_mask, with_info=True, **fit_kwargs)
    jax.block_until_ready(ts.params)
    out["train_seconds"].append(time.perf_counter() - t0)
    model, params = models.from_train_state(ts)
    out["accuracy"].append(loop.accuracy(model, params, ds.x_test, ds.y_test))
    out["labels"].append(state.num_labeled)
    out["epochs"].append(int(info.epochs))
    out["steps"].append(int(info.steps))
    out["train_accuracy"].append(float(info.train_accuracy))
    if r < args.rounds:
      t0 = time.perf_counter()
      state, idx = loop.acquire(state, strategy, model, params, x, args.budget)
      jax.block_until_ready(idx)
      out["acquire_seconds"].append(time.perf_counter() - t0)
  return out


def mean_std(a) -> str:
  a = np.asarray(a, float)
  return f"{a.mean():.3f} ± {a.std():.3f}"


def tables(dataset: str, res: dict[str, list[dict]], labels: list[int]) -> str:
  names = list(res)
  lines = [
    f"## {dataset}",
    "",
    "### Test accuracy per round (mean ± std over seeds)",
    "",
    "| labels | " + " | ".join(names) + " |",
    "|---:|" + "---:|" * len(names),
  ]
  for i, n in enumerate(labels):
    lines.append(
      f"| {n} | " + " | ".join(mean_std([r["accuracy"][i] for r in res[s]]) for s in names) + " |"
    )
  auc = {
    s: np.array([experiment.area_under_curve(labels, r["accuracy"]) for r in res[s]]) for s in names
  }
  lines.append("| **AUC** | " + " | ".join(f"**{mean_std(auc[s])}**" for s in names) + " |")
  lines += [
    "",
    "### Against random (paired by seed: same initial set), and what training cost",
    "",
    "| strategy | seeds | ΔAUC vs random | min, max | final accuracy | epochs per round "
    "(first → last) | steps per round (first → last) | train accuracy reached (min) | "
    "train s/round | acquire s/round |",
    "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
  ]
  for s in names:
    runs = res[s]
    d = auc[s] - auc["random"][: len(runs)] if "random" in auc else auc[s] * np.nan
    ep0 = np.mean([r["epochs"][0] for r in runs])
    ep1 = np.mean([r["epochs"][-1] for r in runs])
    st0 = np.mean([r["steps"][0] for r in runs])
    st1 = np.mean([r["steps"][-1] for r in runs])
    tr = min(min(r["train_accuracy"]) for r in runs)
    lines.append(
      f"| {s} | {len(runs)} | {d.mean():+.4f} | {d.min():+.4f}, {d.max():+.4f} | "
      f"{mean_std([r['accuracy'][-1] for r in runs])} | {ep0:.0f} → {ep1:.0f} | "
      f"{st0:.0f} → {st1:.0f} | {tr:.3f} | "
      f"{np.mean([np.mean(r['train_seconds']) for r in runs]):.2f} | "
      f"{np.mean([np.mean(r['acquire_seconds']) for r in runs]):.3f} |"
    )
  return "\n".join(lines)


def main(argv=None) -> None:
  args = parse_args(argv)
  t0 = time.time()
  info = _common.machine(argv)
  protocol = loop.PROTOCOLS[args.protocol]
  os.makedirs(args.work, exist_ok=True)
  labels = [args.initial + r * args.budget for r in range(args.rounds + 1)]
  results: dict[str, dict[str, list[dict]]] = {}
  compute = 0.0
  for dataset in args.datasets:
    ds = load(dataset, args)
    log(f"{dataset}: pool {ds.x_train.shape}, test {ds.x_test.shape}")
    results[dataset] = {}
    for name in args.strategies:
      for seed in range(args.seeds):
        tag = (
          f"{args.protocol}_{dataset}_{name}_s{seed}_i{args.initial}_b{args.budget}"
          f"_r{args.rounds}_p{args.pool_subsample}_h{args.hidden}_m{args.max_steps}"
        )
        cache = os.path.join(args.work, tag + ".json")
        if os.path.exists(cache):
          with open(cache) as f:
            run = json.load(f)
        else:
          t_run = time.time()
          run = run_one(ds, name, seed, args, protocol)
          with open(cache + ".tmp", "w") as f:
            json.dump(run, f)
          os.replace(cache + ".tmp", cache)
          log(
            f"{dataset} {name} seed {seed}: final {run['accuracy'][-1]:.3f}, "
            f"epochs {run['epochs']}, {time.time() - t_run:.0f} s"
          )
        compute += sum(run["train_seconds"]) + sum(run["acquire_seconds"])
        results[dataset].setdefault(name, []).append(run)
  wall = time.time() - t0
  info["loadavg_at_end"] = _common.load_now()
  if args.manual_dir or os.environ.get("JAXAL_SHARED_DATA"):
    info["command"] = "JAXAL_SHARED_DATA=../shared/data " + info["command"]
  fit_kwargs = protocol.fit_kwargs()
  header = (
    "\n".join(_common.header("Strategy quality on MNIST and Fashion-MNIST", info))
    + f"""
Compute (training and acquisition, summed over every round of every run): {compute / 60:.1f} min;
wall time of this invocation {wall / 60:.1f} min (runs already finished in --work are reused).

Protocol `{args.protocol}` ({protocol.source}): MLP (one hidden layer of {args.hidden}, ReLU,
dropout 0.3 before the head), re-initialised every round and trained with
{protocol.optimizer} (lr {protocol.learning_rate:g}, `PROTOCOLS["{args.protocol}"].make_tx()`) via `loop.fit(**loop.PROTOCOLS["{args.protocol}"].fit_kwargs())` =
`{fit_kwargs}`{f" (max_steps {args.max_steps})" if args.max_steps else ""}; pool: {args.pool_subsample} training images drawn
once (the same for every strategy and seed); test: the full 10,000-image test split;
{args.initial} initial random labels (the same per seed for every strategy), {args.budget} per round,
{args.rounds} rounds; {args.seeds} seeds; strategies {", ".join(args.strategies)}.
"""
  )
  reading = _common.kept_section(args.name, "## Reading", args.results)  # written by hand: kept
  body = "\n\n".join(tables(d, res, labels) for d, res in results.items())
  payload = {
    "meta": info,
    "protocol": protocol._asdict(),
    "args": vars(args),
    "labels": labels,
    "results": results,
  }
  _common.write(args.name, payload, header + reading + "\n" + body, results=args.results)
  log(f"wrote {os.path.join(args.results, args.name + '.md')} in {wall / 60:.1f} min")


if __name__ == "__main__":
  main()
