"""Experiments: strategies × seeds × rounds → learning curves, tables, plots."""

from __future__ import annotations

import dataclasses
import json
import os
import time
from typing import Any, Callable, Sequence

import jax
import numpy as np

from jaxal._src import checks
from jaxal._src import data as data_lib
from jaxal._src import loop
from jaxal._src import models as models_lib
from jaxal._src import strategies as strategies_lib

DEFAULT_STRATEGIES = ("random", "least_confidence", "margin", "entropy", "bald")


@dataclasses.dataclass(frozen=True)
class Config:
  """An experiment's whole configuration (it is saved beside the results)."""

  dataset: str = "digits"
  strategies: tuple[str, ...] = DEFAULT_STRATEGIES
  rounds: int = 10
  budget: int = 20
  initial: int = 20
  seeds: int = 3
  model: str = "mlp"
  hidden: int = 128
  num_steps: int = 300
  batch_size: int = 32
  learning_rate: float = 1e-3
  retrain: str = "scratch"  # or "warm"

  def validate(self) -> "Config":
    for name in self.strategies:
      checks.check_one_of(name, strategies_lib.REGISTRY, "strategy")
    checks.check_one_of(self.dataset, data_lib.LOADERS, "dataset")
    checks.check_one_of(self.model, MODELS, "model")
    checks.check_one_of(self.retrain, ("scratch", "warm"), "retrain mode")
    for field in ("rounds",):
      if getattr(self, field) < 0:
        raise ValueError(f"{field} must be >= 0, got {getattr(self, field)}")
    for field in ("budget", "initial", "seeds", "num_steps", "batch_size", "hidden"):
      if getattr(self, field) <= 0:
        raise ValueError(f"{field} must be positive, got {getattr(self, field)}")
    if not self.strategies:
      raise ValueError("strategies must name at least one strategy")
    return self


MODELS: dict[str, Callable[[Config, int], Any]] = {
    "mlp": lambda cfg, k: models_lib.MLP(num_classes=k, hidden=(cfg.hidden,)),
    "cnn": lambda cfg, k: models_lib.CNN(num_classes=k, dense=cfg.hidden),
}


def labels_per_round(cfg: Config) -> list[int]:
  return [cfg.initial + r * cfg.budget for r in range(cfg.rounds + 1)]


def area_under_curve(labels: Sequence[int], acc: Sequence[float]) -> float:
  """Normalised area under the learning curve (trapezoid), in accuracy units."""
  labels = np.asarray(labels, float)
  acc = np.asarray(acc, float)
  if len(labels) == 1:
    return float(acc[0])
  area = np.sum((acc[1:] + acc[:-1]) * np.diff(labels)) / 2.0
  return float(area / (labels[-1] - labels[0]))


def check_fits(cfg: Config, ds: data_lib.Dataset) -> None:
  n = ds.x_train.shape[0]
  if cfg.initial + cfg.rounds * cfg.budget > n:
    raise ValueError(
        f"initial + rounds * budget = {cfg.initial + cfg.rounds * cfg.budget} is larger than "
        f"the pool of {n} points of {cfg.dataset}"
    )


def run_one(cfg: Config, ds: data_lib.Dataset, strategy_name: str, seed: int,
            on_round: Callable[[], None] = lambda: None) -> dict[str, list[float]]:
  """One strategy on one seed: accuracy, acquisition and training seconds per round."""
  strategy = strategies_lib.get(strategy_name)
  module = MODELS[cfg.model](cfg, ds.num_classes)
  x, y = ds.x_train, ds.y_train
  n = x.shape[0]
  check_fits(cfg, ds)
  key = jax.random.key(seed)
  state = loop.init(key, n, num_initial=cfg.initial)
  train_state = loop.create_train_state(jax.random.fold_in(key, 1), module, x,
                                        learning_rate=cfg.learning_rate)
  out: dict[str, list[float]] = {"accuracy": [], "acquire_seconds": [], "train_seconds": []}
  for r in range(cfg.rounds + 1):
    k_train, _ = loop.round_keys(state)
    t0 = time.perf_counter()
    train_state = loop.fit(k_train, train_state, x, y, state.labeled_mask, num_steps=cfg.num_steps,
                           batch_size=cfg.batch_size, reinitialize=(cfg.retrain == "scratch" or r == 0))
    jax.block_until_ready(train_state.params)
    out["train_seconds"].append(time.perf_counter() - t0)
    model, params = models_lib.from_train_state(train_state)
    out["accuracy"].append(loop.accuracy(model, params, ds.x_test, ds.y_test))
    if r < cfg.rounds:
      t0 = time.perf_counter()
      state, idx = loop.acquire(state, strategy, model, params, x, cfg.budget)
      jax.block_until_ready(idx)
      out["acquire_seconds"].append(time.perf_counter() - t0)
    on_round()
  return out


def summarize(cfg: Config, results: dict[str, dict[str, list[list[float]]]]) -> dict[str, Any]:
  labels = labels_per_round(cfg)
  summary = {}
  for name, res in results.items():
    acc = np.asarray(res["accuracy"])  # [seeds, rounds + 1]
    aucs = [area_under_curve(labels, a) for a in acc]
    summary[name] = {
        "mean": acc.mean(0).tolist(),
        "std": acc.std(0).tolist(),
        "auc_mean": float(np.mean(aucs)),
        "auc_std": float(np.std(aucs)),
        "acquire_seconds_mean": float(np.mean(res["acquire_seconds"])) if cfg.rounds else 0.0,
    }
  return summary


def format_table(cfg: Config, summary: dict[str, Any]) -> str:
  """Markdown learning-curve table: test accuracy (mean ± std over seeds) per round."""
  labels = labels_per_round(cfg)
  names = list(summary)
  head = "| labels | " + " | ".join(names) + " |"
  sep = "|---:|" + "---:|" * len(names)
  rows = [head, sep]
  for r, n_lab in enumerate(labels):
    cells = [f"{summary[s]['mean'][r]:.3f} ± {summary[s]['std'][r]:.3f}" for s in names]
    rows.append(f"| {n_lab} | " + " | ".join(cells) + " |")
  rows.append("| **AUC** | " + " | ".join(
      f"**{summary[s]['auc_mean']:.3f} ± {summary[s]['auc_std']:.3f}**" for s in names) + " |")
  return "\n".join(rows)


def plot_curves(cfg: Config, summary: dict[str, Any], path: str) -> None:
  """Learning curves with a shaded ±1 std band, saved as PNG."""
  try:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
  except ImportError as e:  # pragma: no cover - depends on the install
    raise ImportError("plots need matplotlib: pip install 'jaxal[plot]'") from e
  labels = np.asarray(labels_per_round(cfg))
  fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
  for name, s in summary.items():
    mean, std = np.asarray(s["mean"]), np.asarray(s["std"])
    ax.plot(labels, mean, marker="o", ms=3, label=f"{name} (AUC {s['auc_mean']:.3f})")
    ax.fill_between(labels, mean - std, mean + std, alpha=0.2)
  ax.set_xlabel("labeled examples")
  ax.set_ylabel("test accuracy")
  ax.set_title(f"{cfg.dataset}, {cfg.model}, {cfg.seeds} seeds, budget {cfg.budget}/round")
  ax.grid(alpha=0.3)
  ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path)
  plt.close(fig)


def run(cfg: Config, out_dir: str, *, progress: bool = True, log: Callable[[str], None] = print) -> dict[str, Any]:
  """Runs the experiment and writes ``results.json`` and ``curves.png`` to ``out_dir``."""
  cfg.validate()
  os.makedirs(out_dir, exist_ok=True)
  if not os.access(out_dir, os.W_OK):
    raise PermissionError(f"output folder {out_dir!r} is not writable")
  ds = data_lib.load_dataset(cfg.dataset)
  check_fits(cfg, ds)
  total = len(cfg.strategies) * cfg.seeds * (cfg.rounds + 1)
  from tqdm.auto import tqdm

  bar = tqdm(total=total, desc="jaxal run", unit="round", disable=not progress)
  results: dict[str, dict[str, list[list[float]]]] = {}
  t_start = time.perf_counter()
  for name in cfg.strategies:
    per_seed: dict[str, list[list[float]]] = {"accuracy": [], "acquire_seconds": [], "train_seconds": []}
    for seed in range(cfg.seeds):
      bar.set_postfix_str(f"{name} seed {seed}")
      out = run_one(cfg, ds, name, seed, on_round=lambda: bar.update(1))
      for k, v in out.items():
        per_seed[k].append(v)
    results[name] = per_seed
  bar.close()
  summary = summarize(cfg, results)
  payload = {
      "config": dataclasses.asdict(cfg),
      "labels": labels_per_round(cfg),
      "results": results,
      "summary": summary,
      "seconds": time.perf_counter() - t_start,
      "jax_version": jax.__version__,
      "backend": jax.default_backend(),
  }
  tmp = os.path.join(out_dir, "results.json.tmp")
  with open(tmp, "w") as f:
    json.dump(payload, f, indent=1)
  os.replace(tmp, os.path.join(out_dir, "results.json"))
  plot_curves(cfg, summary, os.path.join(out_dir, "curves.png"))
  log(f"\nTest accuracy on {cfg.dataset} (mean ± std over {cfg.seeds} seeds):\n")
  log(format_table(cfg, summary))
  log(f"\nAUC = normalised area under the learning curve. Total {payload['seconds']:.1f} s.")
  log(f"Wrote {os.path.join(out_dir, 'results.json')} and {os.path.join(out_dir, 'curves.png')}")
  return payload
