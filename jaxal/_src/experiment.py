"""Experiments: strategies × seeds × rounds → learning curves, tables, plots; resumable.

An experiment folder holds:

* ``config.json``: the configuration and the sha256 of the data it runs on.
  Running again against the folder with another configuration is refused.
* ``checkpoints/<strategy>/seed_<seed>.npz``: one checkpoint per (strategy,
  seed), rewritten atomically after every round (see :mod:`checkpoint`): the
  labeled indices in order, the round, the run's key, the metrics so far and
  the trained ``TrainState``. Running the same command again continues every
  run from its last completed round, with results identical to an
  uninterrupted run.
* ``results.json`` (rewritten whenever a (strategy, seed) run completes),
  ``curves.png``; ``jaxal report`` adds ``report.md`` and
  ``curves_vs_random.png``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from typing import Any, Callable, Sequence

import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np

from jaxal._src import checkpoint as ckpt_lib
from jaxal._src import checks
from jaxal._src import data as data_lib
from jaxal._src import loop
from jaxal._src import models as models_lib
from jaxal._src import networks
from jaxal._src.strategies import registry as strategies_lib

DEFAULT_STRATEGIES = ("random", "least_confidence", "margin", "entropy", "bald")
CONFIG_FILE = "config.json"
RESULTS_FILE = "results.json"
CHECKPOINT_DIR = "checkpoints"
METRICS = ("accuracy", "labels", "acquire_seconds", "train_seconds")
# The pool subsample is the same for every strategy and seed, drawn from this seed.
POOL_SUBSAMPLE_SEED = 0


class ExperimentError(ValueError):
  """An experiment cannot run as configured (for example the pool is too small)."""


class ConfigMismatchError(ExperimentError):
  """An output folder holds an experiment with another configuration or other data."""


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
  pool_subsample: int = 0  # 0: the whole training split is the pool

  def validate(self) -> "Config":
    if not self.strategies:
      raise ValueError("strategies must name at least one strategy")
    for name in self.strategies:
      checks.check_one_of(name, strategies_lib.REGISTRY, "strategy")
    if len(set(self.strategies)) != len(self.strategies):
      raise ValueError(f"strategies must not repeat a name, got {list(self.strategies)}")
    data_lib.check_name(self.dataset)
    checks.check_one_of(self.model, MODELS, "model")
    checks.check_one_of(self.retrain, ("scratch", "warm"), "retrain mode")
    for field in ("rounds", "pool_subsample"):
      if getattr(self, field) < 0:
        raise ValueError(f"{field} must be >= 0, got {getattr(self, field)}")
    for field in ("budget", "initial", "seeds", "num_steps", "batch_size", "hidden"):
      if getattr(self, field) <= 0:
        raise ValueError(f"{field} must be positive, got {getattr(self, field)}")
    if not self.learning_rate > 0:
      raise ValueError(f"learning_rate must be positive, got {self.learning_rate}")
    return self

  @classmethod
  def from_dict(cls, d: dict[str, Any]) -> "Config":
    """The inverse of ``dataclasses.asdict`` (JSON lists back to tuples)."""
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = set(d) - fields
    if unknown:
      raise ValueError(f"unknown configuration fields {sorted(unknown)}")
    d = dict(d)
    if "strategies" in d:
      d["strategies"] = tuple(d["strategies"])
    return cls(**d)


MODELS: dict[str, Callable[[Config, int], Any]] = {
    "mlp": lambda cfg, k: networks.MLP(num_classes=k, hidden=(cfg.hidden,)),
    "cnn": lambda cfg, k: networks.CNN(num_classes=k, dense=cfg.hidden),
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


def labels_to_reach(labels: Sequence[int], acc: Sequence[float], target: float) -> int | None:
  """The first labeled-set size at which the accuracy curve reaches ``target`` (None: never)."""
  for n, a in zip(labels, acc):
    if a >= target:
      return int(n)
  return None


def check_fits(cfg: Config, ds: data_lib.Dataset) -> None:
  n = ds.x_train.shape[0]
  if cfg.initial + cfg.rounds * cfg.budget > n:
    raise ExperimentError(
        f"initial + rounds * budget = {cfg.initial + cfg.rounds * cfg.budget} is larger than "
        f"the pool of {n} points of {cfg.dataset}"
    )


def load_data(cfg: Config, *, data_dir: str | None = None, manual_dir: str | None = None,
              download: bool = True) -> data_lib.Dataset:
  """The experiment's dataset, its pool subsampled when ``cfg.pool_subsample`` asks.

  The subsample (``pool_subsample`` points of the training split, without
  replacement, in index order) is drawn once from ``POOL_SUBSAMPLE_SEED``: every
  strategy and seed sees the same pool.
  """
  ds = data_lib.load_dataset(cfg.dataset, data_dir=data_dir, manual_dir=manual_dir,
                             download=download)
  n = ds.x_train.shape[0]
  if cfg.pool_subsample and cfg.pool_subsample < n:
    idx = np.sort(np.random.default_rng(POOL_SUBSAMPLE_SEED).choice(n, cfg.pool_subsample, replace=False))
    ds = ds._replace(x_train=ds.x_train[idx], y_train=ds.y_train[idx])
  return ds


# ---------------------------------------------------------------------------
# The output folder: configuration record and checkpoints.


def _config_record(cfg: Config, ds: data_lib.Dataset) -> dict[str, Any]:
  from jaxal import __version__

  # Through JSON, so that it compares equal to a record read back from config.json.
  return json.loads(json.dumps({
      "config": dataclasses.asdict(cfg),
      "dataset_sha256": data_lib.fingerprint(ds),
      "pool_size": int(ds.x_train.shape[0]),
      "test_size": int(ds.x_test.shape[0]),
      "num_classes": int(ds.num_classes),
      "jaxal_version": __version__,
  }))


def _config_id(record: dict[str, Any]) -> str:
  key = {"config": record["config"], "dataset_sha256": record["dataset_sha256"]}
  return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


def ensure_writable(out_dir: str) -> None:
  """Creates ``out_dir`` and proves it writable by writing a file there, or says why not."""
  try:
    os.makedirs(out_dir, exist_ok=True)
    ckpt_lib.atomic_write_bytes(os.path.join(out_dir, ".jaxal-write-test"), b"ok\n")
    os.remove(os.path.join(out_dir, ".jaxal-write-test"))
  except OSError as e:
    raise PermissionError(
        f"output folder {out_dir!r} cannot be created or written ({type(e).__name__}: {e}); "
        "choose another --out") from e


def open_experiment(out_dir: str, record: dict[str, Any]) -> None:
  """Writes ``config.json``, or checks that the folder's experiment is this one.

  Raises:
    ConfigMismatchError: the folder holds another configuration or ran on other data.
  """
  path = os.path.join(out_dir, CONFIG_FILE)
  old = None
  if os.path.exists(path):
    try:
      with open(path) as f:
        old = json.load(f)
    except (OSError, ValueError) as e:
      raise ConfigMismatchError(
          f"{path!r} is unreadable ({e}); it describes the experiment in {out_dir!r}. "
          "Restore it, or choose another --out") from e
  elif os.path.exists(os.path.join(out_dir, CHECKPOINT_DIR)):
    raise ConfigMismatchError(
        f"{out_dir!r} holds checkpoints but no {CONFIG_FILE}, so they cannot be matched to "
        "this configuration; choose another --out or delete the folder")
  if old is None:
    ckpt_lib.atomic_write_json(path, record)
    return
  old_cfg = old.get("config", {})
  new_cfg = record["config"]
  diffs = [f"{k}: {old_cfg.get(k)!r} in the folder, {new_cfg.get(k)!r} now"
           for k in sorted(set(old_cfg) | set(new_cfg)) if old_cfg.get(k) != new_cfg.get(k)]
  if diffs:
    raise ConfigMismatchError(
        f"{out_dir!r} holds an experiment with another configuration ({'; '.join(diffs)}). "
        "Results of different configurations are never mixed: run the same command as "
        "before to resume it, or choose another --out (or delete the folder) to start anew")
  if old.get("dataset_sha256") != record["dataset_sha256"]:
    raise ConfigMismatchError(
        f"{out_dir!r} holds an experiment that ran on other data: the {record['config']['dataset']!r} "
        f"arrays now have sha256 {record['dataset_sha256'][:16]}..., the folder's had "
        f"{str(old.get('dataset_sha256'))[:16]}...; choose another --out")


def checkpoint_path(out_dir: str, strategy: str, seed: int) -> str:
  return os.path.join(out_dir, CHECKPOINT_DIR, strategy, f"seed_{seed}.npz")


def _empty_metrics() -> dict[str, list]:
  return {k: [] for k in METRICS}


def _save_run(path: str, cfg_id: str, strategy: str, seed: int, next_round: int,
              state: loop.ALState, train_state: Any, metrics: dict[str, list]) -> None:
  history = [np.asarray(jax.device_get(h), np.int32) for h in state.history]
  arrays = {
      "labeled": np.concatenate(history) if history else np.zeros((0,), np.int32),
      "history_lengths": np.asarray([len(h) for h in history], np.int64),
      "key_data": np.asarray(jax.device_get(jax.random.key_data(state.key))),
      "round": np.asarray(int(state.round), np.int64),
      "train_state": np.frombuffer(flax.serialization.to_bytes(train_state), np.uint8),
  }
  for k in METRICS:
    arrays[f"metric_{k}"] = np.asarray(metrics[k], np.float64)
  meta = {"config_id": cfg_id, "strategy": strategy, "seed": seed, "next_round": next_round}
  os.makedirs(os.path.dirname(path), exist_ok=True)
  ckpt_lib.save(path, arrays, meta)


def _load_run(path: str, cfg: Config, cfg_id: str, strategy: str, seed: int,
              ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
  arrays, meta = ckpt_lib.load(path)
  expect = {"config_id": cfg_id, "strategy": strategy, "seed": seed}
  got = {k: meta.get(k) for k in expect}
  if got != expect:
    raise ckpt_lib.CheckpointError(
        f"checkpoint {path!r} belongs to another run ({got}, expected {expect}); "
        "delete it to recompute that run, or choose another --out")
  nr = meta.get("next_round")
  needed = {"labeled", "history_lengths", "key_data", "round", "train_state",
            *(f"metric_{k}" for k in METRICS)}
  lengths = arrays.get("history_lengths")
  ok = (isinstance(nr, int) and 1 <= nr <= cfg.rounds + 1 and needed <= set(arrays)
        and len(arrays["metric_accuracy"]) == nr and len(arrays["metric_acquire_seconds"]) == min(nr, cfg.rounds)
        and lengths is not None and len(lengths) == min(nr, cfg.rounds) + 1
        and int(lengths.sum()) == len(arrays["labeled"]))
  if not ok:
    raise ckpt_lib.CheckpointError(
        f"checkpoint {path!r} is inconsistent (round {nr!r} of {cfg.rounds}, arrays "
        f"{sorted(arrays)}); delete it to recompute that run")
  return arrays, meta


def _metrics_from(arrays: dict[str, np.ndarray]) -> dict[str, list]:
  out = {k: arrays[f"metric_{k}"].tolist() for k in METRICS}
  out["labels"] = [int(v) for v in out["labels"]]
  return out


def _history_from(arrays: dict[str, np.ndarray]) -> list[np.ndarray]:
  bounds = np.cumsum(arrays["history_lengths"])[:-1]
  return np.split(arrays["labeled"].astype(np.int32), bounds)


def _restore_train_state(template: Any, data: np.ndarray) -> Any:
  """The train state saved by ``flax.serialization.to_bytes``, with the template's dtypes."""
  restored = flax.serialization.from_bytes(template, data.tobytes())
  params, opt_state = jax.tree.map(
      lambda t, r: jnp.asarray(r, dtype=jnp.asarray(t).dtype),
      (template.params, template.opt_state), (restored.params, restored.opt_state))
  # The step is a (weakly typed) Python int, as TrainState.create makes it.
  return restored.replace(params=params, opt_state=opt_state, step=int(restored.step))


# ---------------------------------------------------------------------------
# One (strategy, seed) run.


def run_one(cfg: Config, ds: data_lib.Dataset, strategy_name: str, seed: int, *,
            checkpoint: str | None = None, config_id: str = "",
            on_round: Callable[[int], None] = lambda r: None,
            log: Callable[[str], None] = lambda s: None) -> dict[str, Any]:
  """One strategy on one seed, resuming from ``checkpoint`` when it exists.

  Each round trains (from scratch or warm), measures test accuracy, then
  acquires ``cfg.budget`` points; after each round the whole state is saved to
  ``checkpoint`` atomically, then ``on_round(round)`` is called.

  Returns:
    ``{"accuracy", "labels", "acquire_seconds", "train_seconds"}`` per round
    (``acquire_seconds`` has ``rounds`` entries, the others ``rounds + 1``) and
    ``"labeled_indices"``: the indices labeled at each step (initial set first).
  """
  check_fits(cfg, ds)
  if checkpoint is not None and os.path.exists(checkpoint):
    arrays, meta = _load_run(checkpoint, cfg, config_id, strategy_name, seed)
    start = meta["next_round"]
  else:
    arrays, start = None, 0
  if start == cfg.rounds + 1:  # finished earlier
    return {**_metrics_from(arrays), "labeled_indices": [h.tolist() for h in _history_from(arrays)]}
  strategy = strategies_lib.get(strategy_name)
  module = MODELS[cfg.model](cfg, ds.num_classes)
  x, y = ds.x_train, ds.y_train
  key = jax.random.key(seed)
  train_state = loop.create_train_state(jax.random.fold_in(key, 1), module, x,
                                        learning_rate=cfg.learning_rate)
  if arrays is None:
    state = loop.init(key, x.shape[0], num_initial=cfg.initial)
    metrics = _empty_metrics()
  else:
    if not np.array_equal(arrays["key_data"], np.asarray(jax.random.key_data(key))):
      raise ckpt_lib.CheckpointError(f"checkpoint {checkpoint!r} holds the key of another seed")
    history = _history_from(arrays)
    try:
      state = loop.init(key, x.shape[0], initial_indices=history[0])
      for h in history[1:]:
        state = loop.label(state, h)
    except ValueError as e:
      raise ckpt_lib.CheckpointError(f"checkpoint {checkpoint!r} holds invalid labels: {e}") from e
    if int(state.round) != int(arrays["round"]) or int(state.round) != start:
      raise ckpt_lib.CheckpointError(f"checkpoint {checkpoint!r} is at an inconsistent round")
    try:
      train_state = _restore_train_state(train_state, arrays["train_state"])
    except Exception as e:  # flax raises ValueError/KeyError/msgpack errors
      raise ckpt_lib.CheckpointError(
          f"checkpoint {checkpoint!r} holds a train state that does not fit the model: {e}") from e
    metrics = _metrics_from(arrays)
    log(f"resuming {strategy_name} seed {seed} at round {start} of {cfg.rounds} "
        f"(from {checkpoint})")
  for r in range(start, cfg.rounds + 1):
    k_train, _ = loop.round_keys(state)
    t0 = time.perf_counter()
    train_state = loop.fit(k_train, train_state, x, y, state.labeled_mask, num_steps=cfg.num_steps,
                           batch_size=cfg.batch_size, reinitialize=(cfg.retrain == "scratch" or r == 0))
    jax.block_until_ready(train_state.params)
    metrics["train_seconds"].append(time.perf_counter() - t0)
    model, params = models_lib.from_train_state(train_state)
    metrics["accuracy"].append(loop.accuracy(model, params, ds.x_test, ds.y_test))
    metrics["labels"].append(state.num_labeled)
    if r < cfg.rounds:
      t0 = time.perf_counter()
      state, idx = loop.acquire(state, strategy, model, params, x, cfg.budget)
      jax.block_until_ready(idx)
      metrics["acquire_seconds"].append(time.perf_counter() - t0)
    if checkpoint is not None:
      _save_run(checkpoint, config_id, strategy_name, seed, r + 1, state, train_state, metrics)
    on_round(r)
  return {**metrics, "labeled_indices": [np.asarray(h).tolist() for h in state.history]}


# ---------------------------------------------------------------------------
# Summaries, tables, plots.


def summarize(cfg: Config, results: dict[str, dict[str, list[list[float]]]]) -> dict[str, Any]:
  """Mean and std over seeds per round, AUC, mean seconds; strategies with no finished seed are left out."""
  labels = labels_per_round(cfg)
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


def default_target(summary: dict[str, Any]) -> float | None:
  """Random's final mean accuracy (how many labels each strategy needs to match it), if random ran."""
  if "random" in summary:
    return float(summary["random"]["mean"][-1])
  return None


def format_summary(cfg: Config, summary: dict[str, Any], target: float | None = None) -> str:
  """Markdown table per strategy: AUC, final accuracy, labels needed to reach ``target``, seconds.

  "labels to reach" is the first labeled-set size at which the mean curve
  reaches the target (measured rounds only, no interpolation); "saved vs
  random" is random's number minus the strategy's (positive: fewer labels).
  """
  labels = labels_per_round(cfg)
  reach = {s: (labels_to_reach(labels, summary[s]["mean"], target) if target is not None else None)
           for s in summary}
  rnd = reach.get("random")
  head = ["strategy", "seeds", "AUC", f"accuracy at {labels[-1]}"]
  if target is not None:
    head += [f"labels to reach {target:.3f}", "saved vs random"]
  head += ["acquire s/round", "train s/round"]
  rows = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
  for s, v in summary.items():
    cells = [s, str(v["seeds"]), f"{v['auc_mean']:.3f} ± {v['auc_std']:.3f}",
             f"{v['mean'][-1]:.3f} ± {v['std'][-1]:.3f}"]
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


def plot_curves(cfg: Config, summary: dict[str, Any], path: str, *,
                relative_to: str | None = None, target: float | None = None) -> None:
  """Learning curves with a shaded ±1 std band, saved as PNG.

  Args:
    cfg: the experiment's configuration (labels per round, title).
    summary: from :func:`summarize`.
    path: the PNG file to write.
    relative_to: plot each mean minus this strategy's mean (e.g. ``"random"``).
    target: draw a horizontal line at this accuracy (absolute plots only).
  """
  plt = _pyplot()
  labels = np.asarray(labels_per_round(cfg))
  base = np.asarray(summary[relative_to]["mean"]) if relative_to else 0.0
  many = len(summary) > 10
  # Up to 10 curves: the default colours. More: 20 colours, then dashed and dotted lines,
  # thinner bands, and the legend beside the axes.
  colors = plt.get_cmap("tab20").colors if many else plt.get_cmap("tab10").colors
  fig, ax = plt.subplots(figsize=(10, 5) if many else (7, 4.5), dpi=120)
  for i, (name, s) in enumerate(summary.items()):
    mean, std = np.asarray(s["mean"]) - base, np.asarray(s["std"])
    color = colors[i % len(colors)]
    ax.plot(labels, mean, marker="o", ms=3, color=color, ls=("-", "--", ":")[(i // len(colors)) % 3],
            label=f"{name} (AUC {s['auc_mean']:.3f})")
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


# ---------------------------------------------------------------------------
# Whole experiments.


class _NoBar:
  """The part of tqdm's interface :func:`run` uses, doing nothing."""

  n = 0

  def update(self, k: int) -> None:
    self.n += k

  def set_postfix_str(self, s: str) -> None:
    pass

  def close(self) -> None:
    pass


def _payload(cfg: Config, record: dict[str, Any], results: dict[str, Any],
             complete: bool, seconds: float) -> dict[str, Any]:
  return {
      "config": dataclasses.asdict(cfg),
      "complete": complete,
      "labels": labels_per_round(cfg),
      "results": results,
      "summary": summarize(cfg, results),
      "dataset_sha256": record["dataset_sha256"],
      "pool_size": record["pool_size"],
      "seconds": seconds,
      "jax_version": jax.__version__,
      "backend": jax.default_backend(),
  }


def run(cfg: Config, out_dir: str, *, data_dir: str | None = None, manual_dir: str | None = None,
        download: bool = True, progress: bool = True,
        log: Callable[[str], None] = print,
        on_round: Callable[[str, int, int], None] = lambda name, seed, r: None) -> dict[str, Any]:
  """Runs (or resumes) the experiment in ``out_dir``; writes ``results.json`` and ``curves.png``.

  Args:
    cfg: the configuration.
    out_dir: the experiment folder (created; see the module docstring).
    data_dir, manual_dir, download: where to find or how to prepare a TFDS
      dataset (see :func:`jaxal.datasets.load`).
    progress: show a progress bar.
    log: where messages go.
    on_round: called as ``on_round(strategy, seed, round)`` after each round's
      checkpoint is written.

  Returns:
    The ``results.json`` payload.

  Raises:
    ValueError: a bad configuration or a pool too small for it.
    ConfigMismatchError: ``out_dir`` holds another experiment.
    CheckpointError: a checkpoint in ``out_dir`` is corrupt or foreign.
    PermissionError: ``out_dir`` cannot be written.
  """
  cfg.validate()
  ensure_writable(out_dir)
  ds = load_data(cfg, data_dir=data_dir, manual_dir=manual_dir, download=download)
  check_fits(cfg, ds)
  record = _config_record(cfg, ds)
  open_experiment(out_dir, record)
  cfg_id = _config_id(record)
  # A writer killed mid-write leaves only its temporary file: the last good file is intact.
  ckpt_lib.remove_stale_temporaries(out_dir, recursive=False)
  ckpt_lib.remove_stale_temporaries(os.path.join(out_dir, CHECKPOINT_DIR))
  total = len(cfg.strategies) * cfg.seeds * (cfg.rounds + 1)
  if progress:
    from tqdm.auto import tqdm

    bar = tqdm(total=total, desc="jaxal run", unit="round")
    say = bar.write
  else:
    bar, say = _NoBar(), log
  results: dict[str, dict[str, list]] = {
      name: {**_empty_metrics(), "labeled_indices": []} for name in cfg.strategies}
  t_start = time.perf_counter()
  try:
    for name in cfg.strategies:
      for seed in range(cfg.seeds):
        bar.set_postfix_str(f"{name} seed {seed}")
        path = checkpoint_path(out_dir, name, seed)
        done_before = bar.n

        def tick(r, name=name, seed=seed):
          bar.update(1)
          on_round(name, seed, r)

        out = run_one(cfg, ds, name, seed, checkpoint=path, config_id=cfg_id, on_round=tick, log=say)
        bar.update(done_before + cfg.rounds + 1 - bar.n)  # rounds restored from the checkpoint
        for k, v in out.items():
          results[name][k].append(v)
        ckpt_lib.atomic_write_json(os.path.join(out_dir, RESULTS_FILE),
                                   _payload(cfg, record, results, False, time.perf_counter() - t_start))
  finally:
    bar.close()
  payload = _payload(cfg, record, results, True, time.perf_counter() - t_start)
  ckpt_lib.atomic_write_json(os.path.join(out_dir, RESULTS_FILE), payload)
  summary = payload["summary"]
  plot_curves(cfg, summary, os.path.join(out_dir, "curves.png"))
  log(f"\nTest accuracy on {cfg.dataset} (mean ± std over {cfg.seeds} seeds):\n")
  log(format_table(cfg, summary))
  log(f"\nAUC = normalised area under the learning curve. Total {payload['seconds']:.1f} s.")
  log(f"Wrote {os.path.join(out_dir, RESULTS_FILE)} and {os.path.join(out_dir, 'curves.png')}")
  return payload


def load_results(results_dir: str) -> tuple[Config, dict[str, Any]]:
  """``(config, payload)`` of the ``results.json`` in ``results_dir``."""
  path = os.path.join(results_dir, RESULTS_FILE)
  if not os.path.exists(path):
    raise FileNotFoundError(
        f"no {RESULTS_FILE} in {results_dir!r}: run `jaxal run --out {results_dir}` first "
        "(it is written as soon as the first (strategy, seed) run completes)")
  try:
    with open(path) as f:
      payload = json.load(f)
    cfg = Config.from_dict(payload["config"])
    payload["results"]  # pylint: disable=pointless-statement
  except (OSError, ValueError, KeyError, TypeError) as e:
    raise ExperimentError(f"{path!r} is not a jaxal results file ({type(e).__name__}: {e})") from e
  return cfg, payload


def report(results_dir: str, *, target: float | None = None,
           log: Callable[[str], None] = print) -> str:
  """Markdown report and plots of an experiment folder (finished or still running).

  Writes ``report.md``, ``curves.png`` and (when random ran)
  ``curves_vs_random.png`` into ``results_dir``.

  Args:
    results_dir: a folder written by :func:`run` (``jaxal run --out``).
    target: the accuracy for "labels to reach"; None: random's final mean
      accuracy when random ran, else the column is left out.

  Returns:
    The Markdown text.
  """
  cfg, payload = load_results(results_dir)
  summary = summarize(cfg, payload["results"])
  if not summary:
    raise ExperimentError(f"{results_dir!r} holds no finished (strategy, seed) run yet")
  if target is not None and not 0.0 <= target <= 1.0:
    raise ValueError(f"target must be an accuracy in [0, 1], got {target}")
  how = "given"
  if target is None:
    target, how = default_target(summary), "random's final mean accuracy"
  status = "complete" if payload.get("complete") else "in progress (finished runs only)"
  lines = [
      f"# {cfg.dataset}: {', '.join(summary)}",
      "",
      f"{cfg.model} (hidden {cfg.hidden}), {cfg.initial} initial labels, {cfg.budget} per round, "
      f"{cfg.rounds} rounds, {cfg.seeds} seeds, {cfg.num_steps} training steps per round "
      f"(retrain: {cfg.retrain}), pool of {payload.get('pool_size', '?')} points; status: {status}.",
      "",
      "## Test accuracy per round (mean ± std over seeds)",
      "",
      format_table(cfg, summary),
      "",
      "## Summary",
      "",
  ]
  if target is not None:
    lines += [f"Target accuracy {target:.3f} ({how}). Labels to reach it are read on the mean "
              "curve at measured rounds only.", ""]
  lines += [format_summary(cfg, summary, target), ""]
  md = "\n".join(lines)
  ckpt_lib.atomic_write_bytes(os.path.join(results_dir, "report.md"), md.encode())
  plot_curves(cfg, summary, os.path.join(results_dir, "curves.png"), target=target)
  pngs = ["curves.png"]
  if "random" in summary and len(summary) > 1:
    plot_curves(cfg, summary, os.path.join(results_dir, "curves_vs_random.png"), relative_to="random")
    pngs.append("curves_vs_random.png")
  log(md)
  log(f"Wrote {', '.join(os.path.join(results_dir, p) for p in ['report.md', *pngs])}")
  return md
