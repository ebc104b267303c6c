"""Summaries of an experiment: learning-curve measures, Markdown tables, plots, reports."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from collections.abc import Sequence
from typing import Any

import numpy as np

from jaxal._src import checks
from jaxal._src import loop
from jaxal._src.experiment import checkpoint as ckpt_lib
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


CONFIDENCE = 0.95
STAT_NOTE = (
  "mean ± half-width of the 95% Student-t interval over seeds, from the sample std "
  "(ddof=1); n=1: no interval"
)
FORMATS = ("png", "pdf", "svg")


def t_critical(n: int, confidence: float = CONFIDENCE) -> float:
  """The two-sided Student-t critical value for ``n`` samples (``n - 1`` degrees of freedom).

  Args:
    n: the number of samples, at least 2.
    confidence: the interval's coverage.

  Returns:
    ``t`` with ``P(|T_{n-1}| <= t) = confidence`` (12.706 for n=2, 2.776 for n=5).
  """
  from scipy import stats  # installed with jax

  return float(stats.t.ppf(0.5 + confidence / 2.0, n - 1))


def interval(values: Any) -> dict[str, Any]:
  """Mean, sample std (ddof=1) and 95% t-interval half-width over the first axis.

  Args:
    values: ``[num_seeds, ...]`` one row per seed.

  Returns:
    ``{"n", "mean", "std", "ci"}``; ``std`` and ``ci`` are None with one seed
    (no interval), lists (or floats for 1-D input) otherwise.
  """
  v = np.asarray(values, float)
  n = int(v.shape[0])
  mean = v.mean(0)
  if n < 2:
    return {"n": n, "mean": mean.tolist(), "std": None, "ci": None}
  std = v.std(0, ddof=1)
  ci = t_critical(n) * std / np.sqrt(n)
  return {"n": n, "mean": mean.tolist(), "std": std.tolist(), "ci": ci.tolist()}


def _seeds(res: dict[str, Any]) -> list[int]:
  return list(res.get("seeds", range(len(res["accuracy"]))))


def summarize(
  cfg: config_lib.Config, results: dict[str, dict[str, list[list[float]]]]
) -> dict[str, Any]:
  """Per strategy: mean, sample std and 95% t-interval over seeds per round, AUC, seconds.

  Strategies with no finished seed are left out. When random ran, each other
  strategy also gets ``"vs_random"``: the paired difference to random over
  the seeds both finished (the interval of the per-seed difference, not of
  either curve).

  Args:
    cfg: the experiment's configuration.
    results: strategy -> metric -> one list per finished seed (``results.json``'s
      ``"results"``; ``"seeds"`` lists the seeds, else ``0 .. n - 1``).

  Returns:
    strategy -> ``{"seeds", "seed_ids", "mean", "std", "ci", "auc_mean", "auc_std",
    "auc_ci", "acquire_seconds_mean", "train_seconds_mean"[, "vs_random"]}``
    (``std`` / ``ci`` None with one seed).
  """
  labels = config_lib.labels_per_round(cfg)
  summary = {}
  for name, res in results.items():
    if not res["accuracy"]:
      continue
    acc = np.asarray(res["accuracy"], float)  # [seeds, rounds + 1]
    aucs = [area_under_curve(labels, a) for a in acc]
    curve, auc = interval(acc), interval(aucs)
    summary[name] = {
      "seeds": curve["n"],
      "seed_ids": _seeds(res),
      "mean": curve["mean"],
      "std": curve["std"],
      "ci": curve["ci"],
      "auc_mean": auc["mean"],
      "auc_std": auc["std"],
      "auc_ci": auc["ci"],
      "acquire_seconds_mean": float(np.mean(res["acquire_seconds"])) if cfg.rounds else 0.0,
      "train_seconds_mean": float(np.mean(res["train_seconds"])),
    }
  if "random" in summary:
    base = dict(zip(_seeds(results["random"]), results["random"]["accuracy"]))
    for name in summary:
      if name == "random":
        continue
      own = dict(zip(_seeds(results[name]), results[name]["accuracy"]))
      common = sorted(set(own) & set(base))
      if not common:
        continue
      diff = np.asarray([own[s] for s in common], float) - np.asarray([base[s] for s in common])
      d_curve = interval(diff)
      d_auc = interval(
        [area_under_curve(labels, own[s]) - area_under_curve(labels, base[s]) for s in common]
      )
      summary[name]["vs_random"] = {
        "seeds": common,
        "mean": d_curve["mean"],
        "std": d_curve["std"],
        "ci": d_curve["ci"],
        "auc_mean": d_auc["mean"],
        "auc_ci": d_auc["ci"],
      }
  return summary


def cell(mean: float, ci: float | None, n: int, digits: int = 3, sign: bool = False) -> str:
  """``"0.812 ± 0.010"``, or ``"0.812 (n=1, no interval)"`` with one seed.

  Args:
    mean: the mean.
    ci: the interval's half-width (None: no interval).
    n: the number of seeds.
    digits: decimals.
    sign: always print the sign (for differences).
  """
  m = f"{mean:+.{digits}f}" if sign else f"{mean:.{digits}f}"
  if ci is None or n < 2:
    return f"{m} (n={n}, no interval)"
  return f"{m} ± {ci:.{digits}f}"


def format_table(cfg: config_lib.Config, summary: dict[str, Any]) -> str:
  """Markdown learning-curve table: test accuracy per round, mean ± 95% t-interval over seeds.

  Args:
    cfg: the experiment's configuration.
    summary: from :func:`summarize`.

  Returns:
    One row per round and an AUC row, one column per strategy (with its number of seeds).
  """
  labels = config_lib.labels_per_round(cfg)
  names = list(summary)
  head = (
    "| labels (mean ± 95% t-interval, sample std ddof=1) | "
    + " | ".join(f"{s} (n={summary[s]['seeds']})" for s in names)
    + " |"
  )
  sep = "|---:|" + "---:|" * len(names)
  rows = [head, sep]

  def at(s, r):
    v = summary[s]
    return cell(v["mean"][r], None if v["ci"] is None else v["ci"][r], v["seeds"])

  for r, n_lab in enumerate(labels):
    rows.append(f"| {n_lab} | " + " | ".join(at(s, r) for s in names) + " |")
  rows.append(
    "| **AUC** | "
    + " | ".join(
      f"**{cell(summary[s]['auc_mean'], summary[s]['auc_ci'], summary[s]['seeds'])}**"
      for s in names
    )
    + " |"
  )
  return "\n".join(rows)


def format_vs_random(cfg: config_lib.Config, summary: dict[str, Any]) -> str:
  """Markdown table of the paired difference to random per round (empty when random did not run).

  Each cell is the mean over the seeds both runs finished of (strategy − random)
  and the 95% t-interval of that per-seed difference.

  Args:
    cfg: the experiment's configuration.
    summary: from :func:`summarize`.

  Returns:
    The table, or ``""``.
  """
  names = [s for s in summary if "vs_random" in summary[s]]
  if not names:
    return ""
  labels = config_lib.labels_per_round(cfg)
  rows = [
    "| labels (paired difference to random, mean ± 95% t-interval) | "
    + " | ".join(f"{s} (n={len(summary[s]['vs_random']['seeds'])})" for s in names)
    + " |",
    "|---:|" + "---:|" * len(names),
  ]
  for r, n_lab in enumerate(labels + ["AUC"]):
    cells = []
    for s in names:
      d = summary[s]["vs_random"]
      n = len(d["seeds"])
      if n_lab == "AUC":
        cells.append(f"**{cell(d['auc_mean'], d['auc_ci'], n, sign=True)}**")
      else:
        cells.append(cell(d["mean"][r], None if d["ci"] is None else d["ci"][r], n, sign=True))
    first = "**AUC**" if n_lab == "AUC" else str(n_lab)
    rows.append(f"| {first} | " + " | ".join(cells) + " |")
  return "\n".join(rows)


def pairwise_penalty(
  settings: Sequence[dict[str, Any]], *, confidence: float = CONFIDENCE
) -> tuple[list[str], np.ndarray]:
  """The pairwise-penalty matrix of Ash et al. (2020) over several settings.

  For each setting (a dataset, budget or model), each labeled-set size and
  each pair of strategies ``(i, j)``, a two-sided paired t-test over the seeds
  both ran, ``t = sqrt(n) mean(d) / std(d, ddof=1)`` with ``d = acc_i - acc_j``:
  if ``t`` exceeds the ``confidence`` critical value, ``i`` beats ``j`` and
  ``C[i, j]`` grows by ``1 / L`` (``L``: the setting's number of labeled-set
  sizes), so a setting adds at most 1 to a cell. Pairs with fewer than two
  common seeds are not tested.

  Args:
    settings: one ``{"labels": [L], "accuracy": {strategy: {seed: [L]}}}`` per setting.
    confidence: the test's level (0.95: p < 0.05).

  Returns:
    ``(names, C)``: the strategies (first-seen order) and ``C`` ``[S, S]``; the
    column mean is how often a strategy is beaten, over settings.

  References:
    Ash, Zhang, Krishnamurthy, Langford, Agarwal. Deep Batch Active Learning by Diverse,
    Uncertain Gradient Lower Bounds. ICLR 2020, Section 4.2.
  """
  names: list[str] = []
  for st in settings:
    names += [s for s in st["accuracy"] if s not in names]
  c = np.zeros((len(names), len(names)))
  for st in settings:
    num_sizes = len(st["labels"])
    acc = st["accuracy"]
    for i, a in enumerate(names):
      for j, b in enumerate(names):
        if i == j or a not in acc or b not in acc:
          continue
        common = sorted(set(acc[a]) & set(acc[b]))
        n = len(common)
        if n < 2:
          continue
        d = np.asarray([acc[a][s] for s in common], float) - np.asarray(
          [acc[b][s] for s in common], float
        )  # [n, L]
        mean, sd = d.mean(0), d.std(0, ddof=1)
        with np.errstate(divide="ignore", invalid="ignore"):
          t = np.where(
            sd > 0, np.sqrt(n) * mean / np.where(sd > 0, sd, 1.0), np.inf * np.sign(mean)
          )
        c[i, j] += np.sum(t > t_critical(n, confidence)) / num_sizes
  return names, c


def format_penalty(names: Sequence[str], c: np.ndarray, settings: Sequence[str]) -> str:
  """The pairwise-penalty matrix as Markdown: row beats column, and the column means.

  Args:
    names: the strategies.
    c: ``[S, S]`` from :func:`pairwise_penalty`.
    settings: the settings' descriptions (listed under the table).

  Returns:
    The Markdown text.
  """
  rows = [
    "| row beats column | " + " | ".join(names) + " |",
    "|---|" + "---:|" * len(names),
  ]
  for i, a in enumerate(names):
    rows.append(
      f"| {a} | "
      + " | ".join("—" if i == j else f"{c[i, j]:.2f}" for j in range(len(names)))
      + " |"
    )
  rows.append("| **column mean** | " + " | ".join(f"**{v:.2f}**" for v in c.mean(0)) + " |")
  rows += ["", f"Over {len(settings)} settings (each adds at most 1 to a cell):", ""]
  rows += [f"- {s}" for s in settings]
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
  head = ["strategy", "seeds", "AUC", f"accuracy at {labels[-1]}", "AUC − random (paired)"]
  if target is not None:
    head += [f"labels to reach {target:.3f}", "saved vs random"]
  head += ["acquire s/round", "train s/round"]
  rows = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
  for s, v in summary.items():
    d = v.get("vs_random")
    cells = [
      s,
      str(v["seeds"]),
      cell(v["auc_mean"], v["auc_ci"], v["seeds"]),
      cell(v["mean"][-1], None if v["ci"] is None else v["ci"][-1], v["seeds"]),
      "—" if d is None else cell(d["auc_mean"], d["auc_ci"], len(d["seeds"]), sign=True),
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


def check_formats(formats: Sequence[str] | str) -> tuple[str, ...]:
  """``"png,pdf"`` or ``("png", "pdf")`` as a tuple of known plot formats.

  Raises:
    ValueError: an unknown format or none.
  """
  if isinstance(formats, str):
    formats = [f.strip() for f in formats.split(",") if f.strip()]
  out = tuple(checks.check_one_of(f, FORMATS, "plot format") for f in formats)
  if not out:
    raise ValueError(f"give at least one plot format of {', '.join(FORMATS)}")
  return out


def _figure_cls():
  try:
    from matplotlib.figure import Figure
  except ImportError as e:  # pragma: no cover - depends on the install
    raise ImportError("plots need matplotlib: pip install 'jaxal[plot]'") from e
  return Figure


def plot_curves(
  cfg: config_lib.Config,
  summary: dict[str, Any],
  path: str | None = None,
  *,
  relative_to: str | None = None,
  target: float | None = None,
) -> Any:
  """Learning curves with a shaded 95% t-interval band; returns the figure.

  The figure is a ``matplotlib.figure.Figure`` made without pyplot: the
  caller's backend and pyplot's current figure are untouched, and a notebook
  displays the returned figure.

  With ``relative_to="random"`` each curve is the paired difference to random
  (mean over common seeds) and its band that difference's own interval.

  Args:
    cfg: the experiment's configuration (labels per round, title).
    summary: from :func:`summarize`.
    path: save the figure there too (its suffix gives the format); None: do not save.
    relative_to: ``"random"``: plot the paired differences to random.
    target: draw a horizontal line at this accuracy (absolute plots only).

  Returns:
    The ``matplotlib.figure.Figure``.
  """
  import matplotlib

  figure = _figure_cls()
  labels = np.asarray(config_lib.labels_per_round(cfg))
  if relative_to not in (None, "random"):
    raise ValueError(f"relative_to must be None or 'random', got {relative_to!r}")
  curves = {}
  for name, s in summary.items():
    if relative_to:
      if "vs_random" not in s:
        continue
      d = s["vs_random"]
      curves[name] = (np.asarray(d["mean"]), d["ci"], len(d["seeds"]), d["auc_mean"])
    else:
      curves[name] = (np.asarray(s["mean"]), s["ci"], s["seeds"], s["auc_mean"])
  many = len(curves) > 10
  # Up to 10 curves: the default colours. More: 20 colours, then dashed and dotted lines,
  # thinner bands, and the legend beside the axes.
  colors = matplotlib.colormaps["tab20" if many else "tab10"].colors
  fig = figure(figsize=(10, 5) if many else (7, 4.5), dpi=120)
  ax = fig.subplots()
  if relative_to:
    ax.axhline(0.0, color="grey", lw=0.8)
  for i, (name, (mean, ci, n, auc)) in enumerate(curves.items()):
    color = colors[i % len(colors)]
    ls = ("-", "--", ":")[(i // len(colors)) % 3]
    what = "AUC − random" if relative_to else "AUC"
    ax.plot(
      labels, mean, marker="o", ms=3, color=color, ls=ls, label=f"{name} ({what} {auc:.3f}, n={n})"
    )
    if ci is not None:
      ci = np.asarray(ci)
      ax.fill_between(labels, mean - ci, mean + ci, color=color, alpha=0.08 if many else 0.2)
  if target is not None and not relative_to:
    ax.axhline(target, color="grey", lw=0.8, ls="--")
  ax.set_xlabel("labeled examples")
  ax.set_ylabel(
    "test accuracy − random (paired, 95% t-interval)"
    if relative_to
    else "test accuracy (95% t-interval)"
  )
  seeds = sorted({v["seeds"] for v in summary.values()})
  ax.set_title(
    f"{cfg.dataset}, {cfg.model}, {'/'.join(map(str, seeds))} seeds, budget {cfg.budget}/round"
  )
  ax.grid(alpha=0.3)
  if many:
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
  elif curves:
    ax.legend(fontsize=7)
  fig.tight_layout()
  if path is not None:
    fig.savefig(path)
  return fig


def save_figure(fig: Any, stem: str, formats: Sequence[str] = ("png",)) -> list[str]:
  """Saves ``fig`` as ``stem.<format>`` for each format; returns the paths written.

  Args:
    fig: a ``matplotlib.figure.Figure``.
    stem: the path without its suffix.
    formats: among ``"png"``, ``"pdf"``, ``"svg"``.
  """
  paths = []
  for fmt in check_formats(formats):
    fig.savefig(f"{stem}.{fmt}")
    paths.append(f"{stem}.{fmt}")
  return paths


def read_payload(results_dir: str) -> dict[str, Any] | None:
  """The ``results.json`` payload of a folder, or None when it is missing or unreadable."""
  try:
    with open(os.path.join(results_dir, store.RESULTS_FILE)) as f:
      return json.load(f)
  except (OSError, ValueError):
    return None


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


def _training(cfg: config_lib.Config) -> str:
  """How each round trains, in words: fixed steps, or a published protocol's stopping rule."""
  if cfg.protocol == "fixed":
    return f"{cfg.num_steps} training steps per round (protocol: fixed)"
  p = loop.PROTOCOLS[cfg.protocol]
  bound = f"at most {p.epochs} epochs" if p.epochs else f"at most {p.max_steps} steps"
  return (
    f"trained each round until {p.until_train_accuracy:.0%} training accuracy ({bound}; "
    f"protocol: {cfg.protocol}, {p.source})"
  )


def report(
  results_dir: str,
  *,
  target: float | None = None,
  formats: Sequence[str] = ("png",),
  log: Callable[[str], None] = print,
) -> str:
  """Markdown report and plots of an experiment folder (finished or still running).

  Writes ``report.md``, ``curves.<format>`` and (when random ran with another
  strategy) ``curves_vs_random.<format>`` into ``results_dir``. Accuracies are
  given as mean ± the 95% Student-t interval over seeds (sample std, ddof=1);
  differences to random are paired over the seeds both runs finished.

  Args:
    results_dir: a folder written by :func:`run` (``jaxal run --out``).
    target: the accuracy for "labels to reach", in ``[0, 1]``; None: random's
      final mean accuracy when random ran, else the column is left out.
    formats: the plot formats, among ``"png"``, ``"pdf"``, ``"svg"``.
    log: where the text and a closing line go.

  Returns:
    The Markdown text.

  Raises:
    FileNotFoundError: the folder holds no ``results.json``.
    ExperimentError: no (strategy, seed) run has finished yet.
    ValueError: ``target`` is not an accuracy, or an unknown format.
  """
  formats = check_formats(formats)
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
  seeds = ", ".join(f"{s}: {v['seeds']}" for s, v in summary.items())
  lines = [
    f"# {cfg.dataset}: {', '.join(summary)}",
    "",
    f"{cfg.model} (hidden {cfg.hidden}), {cfg.initial} initial labels, {cfg.budget} per round, "
    f"{cfg.rounds} rounds, seeds per strategy ({seeds}), {_training(cfg)} "
    f"(retrain: {cfg.retrain}), pool of "
    f"{payload.get('pool_size', '?')} points; status: {status}.",
    "",
    f"## Test accuracy per round ({STAT_NOTE})",
    "",
    format_table(cfg, summary),
    "",
  ]
  paired = format_vs_random(cfg, summary)
  if paired:
    lines += [
      "## Paired difference to random",
      "",
      "Per seed, the strategy's accuracy minus random's on the same seed (the same initial "
      "set); mean over the seeds both finished ± the 95% t-interval of that difference.",
      "",
      paired,
      "",
    ]
  lines += ["## Summary", ""]
  if target is not None:
    lines += [
      f"Target accuracy {target:.3f} ({how}). Labels to reach it are read on the mean "
      "curve at measured rounds only.",
      "",
    ]
  lines += [format_summary(cfg, summary, target), ""]
  md = "\n".join(lines)
  store.save_report(results_dir, md)
  stem = os.path.join(results_dir, "curves")
  written = save_figure(plot_curves(cfg, summary, target=target), stem, formats)
  if paired:
    fig = plot_curves(cfg, summary, relative_to="random")
    written += save_figure(fig, stem + "_vs_random", formats)
  log(md)
  log(f"Wrote {', '.join([os.path.join(results_dir, store.REPORT_FILE), *written])}")
  return md


def setting_of(cfg: config_lib.Config, payload: dict[str, Any]) -> dict[str, Any]:
  """One setting of :func:`pairwise_penalty` from a results folder's configuration and payload.

  Args:
    cfg: the folder's configuration.
    payload: its ``results.json``.
  """
  acc = {}
  for name, res in payload["results"].items():
    if res["accuracy"]:
      acc[name] = dict(zip(_seeds(res), res["accuracy"]))
  return {
    "labels": config_lib.labels_per_round(cfg),
    "accuracy": acc,
    "description": f"{cfg.dataset}, {cfg.model}, initial {cfg.initial}, budget {cfg.budget}"
    f"/round, {cfg.rounds} rounds",
  }


def report_many(
  results_dirs: Sequence[str],
  *,
  out: str | None = None,
  target: float | None = None,
  formats: Sequence[str] = ("png",),
  log: Callable[[str], None] = print,
) -> str:
  """Reports each folder (see :func:`report`), then the pairwise-penalty matrix over all of them.

  Args:
    results_dirs: folders written by :func:`run`, one per setting (dataset, budget, model).
    out: a folder for the combined ``penalty.md`` (created); None: only logged.
    target: as in :func:`report`.
    formats: as in :func:`report`.
    log: where the text goes.

  Returns:
    The penalty matrix's Markdown.

  Raises:
    FileNotFoundError: a folder holds no ``results.json``.
    ExperimentError: a folder holds no finished run.
  """
  settings = []
  for d in results_dirs:
    report(d, target=target, formats=formats, log=log)
    cfg, payload = load_results(d)
    settings.append(setting_of(cfg, payload))
  names, c = pairwise_penalty(settings)
  md = "\n".join(
    [
      "# Pairwise penalty matrix (Ash et al., 2020)",
      "",
      "Cell (row, column): over settings and labeled-set sizes, the share of sizes at which the "
      "row strategy beats the column strategy in a two-sided paired t-test over common seeds "
      "(p < 0.05); each setting adds at most 1. Column mean: how often a strategy is beaten "
      "(lower is better).",
      "",
      format_penalty(names, c, [s["description"] for s in settings]),
      "",
    ]
  )
  if out is not None:
    os.makedirs(out, exist_ok=True)
    ckpt_lib.atomic_write_bytes(os.path.join(out, "penalty.md"), md.encode())
  log(md)
  return md
