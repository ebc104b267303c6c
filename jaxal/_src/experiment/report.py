"""Summaries of an experiment: learning-curve measures, Markdown tables, plots, reports."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from collections.abc import Sequence
from typing import Any

import numpy as np

from jaxal._src import checks
from jaxal._src.experiment import config as config_lib
from jaxal._src.experiment import store


def area_under_curve(labels: Sequence[int], acc: Sequence[float]) -> float:
  """Normalised area under the learning curve (trapezoid), in accuracy units.

  Args:
    labels: the labeled-set size at each measured round, ``[num_rounds]``, increasing.
    acc: the accuracy at each of them, ``[num_rounds]``.

  Returns:
    The trapezoid area divided by ``labels[-1] - labels[0]`` (the accuracy
    itself for a single round).
  """
  labels = np.asarray(labels, float)
  acc = np.asarray(acc, float)
  if len(labels) == 1:
    return float(acc[0])
  area = np.sum((acc[1:] + acc[:-1]) * np.diff(labels)) / 2.0
  return float(area / (labels[-1] - labels[0]))


def labels_to_reach(labels: Sequence[int], acc: Sequence[float], target: float) -> int | None:
  """The first labeled-set size at which the accuracy curve reaches ``target`` (None: never).

  Args:
    labels: the labeled-set size at each measured round, ``[num_rounds]``.
    acc: the accuracy at each of them, ``[num_rounds]``.
    target: the accuracy to reach.

  Returns:
    The size, or None when no measured round reaches ``target``.
  """
  for n, a in zip(labels, acc):
    if a >= target:
      return int(n)
  return None


def summarize(
  cfg: config_lib.Config, results: dict[str, dict[str, list[list[float]]]]
) -> dict[str, Any]:
  """Mean and std over seeds per round, AUC and mean seconds, per strategy.

  Strategies with no finished seed are left out.

  Args:
    cfg: the experiment's configuration.
    results: strategy -> metric -> one list per finished seed (``results.json``'s
      ``"results"``).

  Returns:
    strategy -> ``{"seeds", "mean", "std", "auc_mean", "auc_std",
    "acquire_seconds_mean", "train_seconds_mean"}``.
  """
  labels = config_lib.labels_per_round(cfg)
  summary = {}
  for name, res in results.items():
    if not res["accuracy"]:
      continue
    acc = np.asarray(res["accuracy"])  # [seeds, rounds + 1]
    aucs = [area_under_curve(labels, a) for a in acc]
    summary[name] = {
      "seeds": int(acc.shape[0]),
      "mean": acc.mean(0).tolist(),
      "std": acc.std(0).tolist(),
      "auc_mean": float(np.mean(aucs)),
      "auc_std": float(np.std(aucs)),
      "acquire_seconds_mean": float(np.mean(res["acquire_seconds"])) if cfg.rounds else 0.0,
      "train_seconds_mean": float(np.mean(res["train_seconds"])),
    }
  return summary


def format_table(cfg: config_lib.Config, summary: dict[str, Any]) -> str:
  """Markdown learning-curve table: test accuracy (mean ± std over seeds) per round.

  Args:
    cfg: the experiment's configuration.
    summary: from :func:`summarize`.

  Returns:
    One row per round and an AUC row, one column per strategy.
  """
  labels = config_lib.labels_per_round(cfg)
  names = list(summary)
  head = "| labels | " + " | ".join(names) + " |"
  sep = "|---:|" + "---:|" * len(names)
  rows = [head, sep]
  for r, n_lab in enumerate(labels):
    cells = [f"{summary[s]['mean'][r]:.3f} ± {summary[s]['std'][r]:.3f}" for s in names]
    rows.append(f"| {n_lab} | " + " | ".join(cells) + " |")
  rows.append(
    "| **AUC** | "
    + " | ".join(f"**{summary[s]['auc_mean']:.3f} ± {summary[s]['auc_std']:.3f}**" for s in names)
    + " |"
  )
  return "\n".join(rows)


def default_target(summary: dict[str, Any]) -> float | None:
  """Random's final mean accuracy (how many labels each strategy needs to match it), if random ran.

  Args:
    summary: from :func:`summarize`.
  """
  if "random" in summary:
    return float(summary["random"]["mean"][-1])
  return None


def format_summary(
  cfg: config_lib.Config, summary: dict[str, Any], target: float | None = None
) -> str:
  """Markdown table per strategy: AUC, final accuracy, labels needed to reach ``target``, seconds.

  "labels to reach" is the first labeled-set size at which the mean curve
  reaches the target (measured rounds only, no interpolation); "saved vs
  random" is random's number minus the strategy's (positive: fewer labels).

  Args:
    cfg: the experiment's configuration.
    summary: from :func:`summarize`.
    target: the accuracy to reach (None: those columns are left out).

  Returns:
    The Markdown table.
  """
  labels = config_lib.labels_per_round(cfg)
  reach = {
    s: (labels_to_reach(labels, summary[s]["mean"], target) if target is not None else None)
    for s in summary
  }
  rnd = reach.get("random")
  head = ["strategy", "seeds", "AUC", f"accuracy at {labels[-1]}"]
  if target is not None:
    head += [f"labels to reach {target:.3f}", "saved vs random"]
  head += ["acquire s/round", "train s/round"]
  rows = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
  for s, v in summary.items():
    cells = [
      s,
      str(v["seeds"]),
      f"{v['auc_mean']:.3f} ± {v['auc_std']:.3f}",
      f"{v['mean'][-1]:.3f} ± {v['std'][-1]:.3f}",
    ]
    if target is not None:
      n = reach[s]
      cells.append("not reached" if n is None else str(n))
      if s == "random" or "random" not in summary or (n is None and rnd is None):
        cells.append("—")
      elif n is None:
        cells.append(f"worse (random: {rnd})")
      elif rnd is None:
        cells.append(f"> {labels[-1] - n} (random never reaches it)")
      else:
        cells.append(f"{rnd - n:+d}")
    cells += [f"{v['acquire_seconds_mean']:.3f}", f"{v['train_seconds_mean']:.3f}"]
    rows.append("| " + " | ".join(cells) + " |")
  return "\n".join(rows)


def _pyplot():
  try:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
  except ImportError as e:  # pragma: no cover - depends on the install
    raise ImportError("plots need matplotlib: pip install 'jaxal[plot]'") from e
  return plt


def plot_curves(
  cfg: config_lib.Config,
  summary: dict[str, Any],
  path: str,
  *,
  relative_to: str | None = None,
  target: float | None = None,
) -> None:
  """Learning curves with a shaded ±1 std band, saved as PNG.

  Args:
    cfg: the experiment's configuration (labels per round, title).
    summary: from :func:`summarize`.
    path: the PNG file to write.
    relative_to: plot each mean minus this strategy's mean (e.g. ``"random"``).
    target: draw a horizontal line at this accuracy (absolute plots only).
  """
  plt = _pyplot()
  labels = np.asarray(config_lib.labels_per_round(cfg))
  base = np.asarray(summary[relative_to]["mean"]) if relative_to else 0.0
  many = len(summary) > 10
  # Up to 10 curves: the default colours. More: 20 colours, then dashed and dotted lines,
  # thinner bands, and the legend beside the axes.
  colors = plt.get_cmap("tab20").colors if many else plt.get_cmap("tab10").colors
  fig, ax = plt.subplots(figsize=(10, 5) if many else (7, 4.5), dpi=120)
  for i, (name, s) in enumerate(summary.items()):
    mean, std = np.asarray(s["mean"]) - base, np.asarray(s["std"])
    color = colors[i % len(colors)]
    ls = ("-", "--", ":")[(i // len(colors)) % 3]
    ax.plot(
      labels, mean, marker="o", ms=3, color=color, ls=ls, label=f"{name} (AUC {s['auc_mean']:.3f})"
    )
    ax.fill_between(labels, mean - std, mean + std, color=color, alpha=0.08 if many else 0.2)
  if target is not None and not relative_to:
    ax.axhline(target, color="grey", lw=0.8, ls="--")
  ax.set_xlabel("labeled examples")
  ax.set_ylabel(f"test accuracy − {relative_to}" if relative_to else "test accuracy")
  ax.set_title(f"{cfg.dataset}, {cfg.model}, {cfg.seeds} seeds, budget {cfg.budget}/round")
  ax.grid(alpha=0.3)
  if many:
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
  else:
    ax.legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(path)
  plt.close(fig)


def load_results(results_dir: str) -> tuple[config_lib.Config, dict[str, Any]]:
  """``(config, payload)`` of the ``results.json`` in ``results_dir``.

  Args:
    results_dir: a folder written by :func:`run` (``jaxal run --out``).

  Raises:
    FileNotFoundError: the folder holds no ``results.json``.
    ExperimentError: the file is not a jaxal results file.
  """
  path = os.path.join(results_dir, store.RESULTS_FILE)
  if not os.path.exists(path):
    raise FileNotFoundError(
      f"no {store.RESULTS_FILE} in {results_dir!r}: run `jaxal run --out {results_dir}` first "
      "(it is written as soon as the first (strategy, seed) run completes)"
    )
  try:
    with open(path) as f:
      payload = json.load(f)
    cfg = config_lib.Config.from_dict(payload["config"])
    payload["results"]  # pylint: disable=pointless-statement
  except (OSError, ValueError, KeyError, TypeError) as e:
    raise config_lib.ExperimentError(
      f"{path!r} is not a jaxal results file ({type(e).__name__}: {e})"
    ) from e
  return cfg, payload


def report(
  results_dir: str, *, target: float | None = None, log: Callable[[str], None] = print
) -> str:
  """Markdown report and plots of an experiment folder (finished or still running).

  Writes ``report.md``, ``curves.png`` and (when random ran)
  ``curves_vs_random.png`` into ``results_dir``.

  Args:
    results_dir: a folder written by :func:`run` (``jaxal run --out``).
    target: the accuracy for "labels to reach", in ``[0, 1]``; None: random's
      final mean accuracy when random ran, else the column is left out.
    log: where the text and a closing line go.

  Returns:
    The Markdown text.

  Raises:
    FileNotFoundError: the folder holds no ``results.json``.
    ExperimentError: no (strategy, seed) run has finished yet.
    ValueError: ``target`` is not an accuracy.
  """
  cfg, payload = load_results(results_dir)
  summary = summarize(cfg, payload["results"])
  if not summary:
    raise config_lib.ExperimentError(f"{results_dir!r} holds no finished (strategy, seed) run yet")
  if target is not None:
    target = checks.check_float(target, "target", low=0.0, high=1.0)
  how = "given"
  if target is None:
    target, how = default_target(summary), "random's final mean accuracy"
  status = "complete" if payload.get("complete") else "in progress (finished runs only)"
  lines = [
    f"# {cfg.dataset}: {', '.join(summary)}",
    "",
    f"{cfg.model} (hidden {cfg.hidden}), {cfg.initial} initial labels, {cfg.budget} per round, "
    f"{cfg.rounds} rounds, {cfg.seeds} seeds, {cfg.num_steps} training steps per round "
    f"(retrain: {cfg.retrain}), pool of {payload.get('pool_size', '?')} points; "
    f"status: {status}.",
    "",
    "## Test accuracy per round (mean ± std over seeds)",
    "",
    format_table(cfg, summary),
    "",
    "## Summary",
    "",
  ]
  if target is not None:
    lines += [
      f"Target accuracy {target:.3f} ({how}). Labels to reach it are read on the mean "
      "curve at measured rounds only.",
      "",
    ]
  lines += [format_summary(cfg, summary, target), ""]
  md = "\n".join(lines)
  store.save_report(results_dir, md)
  plot_curves(cfg, summary, os.path.join(results_dir, "curves.png"), target=target)
  pngs = ["curves.png"]
  if "random" in summary and len(summary) > 1:
    plot_curves(
      cfg, summary, os.path.join(results_dir, "curves_vs_random.png"), relative_to="random"
    )
    pngs.append("curves_vs_random.png")
  log(md)
  log(f"Wrote {', '.join(os.path.join(results_dir, p) for p in [store.REPORT_FILE, *pngs])}")
  return md
