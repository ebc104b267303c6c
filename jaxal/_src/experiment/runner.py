"""Runs an experiment: strategies × seeds × rounds, each run resumable from its checkpoint."""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from jaxal._src import checks
from jaxal._src import data as data_lib
from jaxal._src import loop
from jaxal._src import models as models_lib
from jaxal._src.experiment import config as config_lib
from jaxal._src.experiment import report as report_lib
from jaxal._src.experiment import store
from jaxal._src.strategies import registry as strategies_lib


def run_one(
  cfg: config_lib.Config,
  ds: data_lib.Dataset,
  strategy_name: str,
  seed: int,
  *,
  checkpoint: str | None = None,
  config_id: str = "",
  on_round: Callable[[int], None] = lambda r: None,
  log: Callable[[str], None] = lambda s: None,
) -> dict[str, Any]:
  """One strategy on one seed, resuming from ``checkpoint`` when it exists.

  Each round trains (from scratch or warm), measures test accuracy, then
  acquires ``cfg.budget`` points; after each round the whole state is saved to
  ``checkpoint`` atomically, then ``on_round(round)`` is called.

  Args:
    cfg: the configuration.
    ds: the dataset (from :func:`load_data`); its training split is the pool.
    strategy_name: a registered strategy name (``jaxal.strategies.names()``).
    seed: the run's seed: its key is ``jax.random.key(seed)``.
    checkpoint: the checkpoint file to resume from and write (None: none).
    config_id: the experiment's identity, saved in and checked against the
      checkpoint.
    on_round: called as ``on_round(round)`` after each round.
    log: where messages go.

  Returns:
    ``{"accuracy", "labels", "acquire_seconds", "train_seconds"}`` per round
    (``acquire_seconds`` has ``rounds`` entries, the others ``rounds + 1``) and
    ``"labeled_indices"``: the indices labeled at each step (initial set first).
  """
  seed = checks.check_int(seed, "seed")
  config_lib.check_fits(cfg, ds)
  if checkpoint is not None and os.path.exists(checkpoint):
    arrays, meta = store.load_run(checkpoint, cfg, config_id, strategy_name, seed)
    start = meta["next_round"]
  else:
    arrays, start = None, 0
  if start == cfg.rounds + 1:  # finished earlier
    history = store.history_from(arrays)
    return {**store.metrics_from(arrays), "labeled_indices": [h.tolist() for h in history]}
  strategy = strategies_lib.get(strategy_name)
  module = config_lib.MODELS[cfg.model](cfg, ds.num_classes)
  x, y = ds.x_train, ds.y_train
  key = jax.random.key(seed)
  train_state = loop.create_train_state(
    jax.random.fold_in(key, 1), module, x, learning_rate=cfg.learning_rate
  )
  if arrays is None:
    state = loop.init(key, x.shape[0], num_initial=cfg.initial)
    metrics = store.empty_metrics()
  else:
    state, train_state = store.restore_run(checkpoint, arrays, key, x.shape[0], start, train_state)
    metrics = store.metrics_from(arrays)
    log(
      f"resuming {strategy_name} seed {seed} at round {start} of {cfg.rounds} (from {checkpoint})"
    )
  for r in range(start, cfg.rounds + 1):
    k_train, _ = loop.round_keys(state)
    t0 = time.perf_counter()
    train_state = loop.fit(
      k_train,
      train_state,
      x,
      y,
      state.labeled_mask,
      num_steps=cfg.num_steps,
      batch_size=cfg.batch_size,
      reinitialize=(cfg.retrain == "scratch" or r == 0),
    )
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
      store.save_run(checkpoint, config_id, strategy_name, seed, r + 1, state, train_state, metrics)
    on_round(r)
  return {**metrics, "labeled_indices": [np.asarray(h).tolist() for h in state.history]}


class _NoBar:
  """The part of tqdm's interface :func:`run` uses, doing nothing."""

  n = 0

  def update(self, k: int) -> None:
    self.n += k

  def set_postfix_str(self, s: str) -> None:
    pass

  def close(self) -> None:
    pass


def _payload(
  cfg: config_lib.Config,
  record: dict[str, Any],
  results: dict[str, Any],
  complete: bool,
  seconds: float,
) -> dict[str, Any]:
  return {
    "config": dataclasses.asdict(cfg),
    "complete": complete,
    "labels": config_lib.labels_per_round(cfg),
    "results": results,
    "summary": report_lib.summarize(cfg, results),
    "dataset_sha256": record["dataset_sha256"],
    "pool_size": record["pool_size"],
    "seconds": seconds,
    "jax_version": jax.__version__,
    "backend": jax.default_backend(),
  }


def run(
  cfg: config_lib.Config,
  out_dir: str,
  *,
  data_dir: str | None = None,
  manual_dir: str | None = None,
  download: bool = True,
  progress: bool = True,
  log: Callable[[str], None] = print,
  on_round: Callable[[str, int, int], None] = lambda name, seed, r: None,
) -> dict[str, Any]:
  """Runs (or resumes) the experiment in ``out_dir``; writes ``results.json`` and ``curves.png``.

  Args:
    cfg: the configuration.
    out_dir: the experiment folder (created): ``config.json``, one checkpoint
      per (strategy, seed) under ``checkpoints/``, ``results.json`` and
      ``curves.png``.
    data_dir: where TFDS datasets are prepared (see :func:`jaxal.datasets.load`).
    manual_dir: a folder with the dataset's original files, used instead of
      downloading.
    download: whether TFDS may download a dataset that is not prepared.
    progress: show a progress bar.
    log: where messages go.
    on_round: called as ``on_round(strategy, seed, round)`` after each round's
      checkpoint is written.

  Returns:
    The ``results.json`` payload.

  Raises:
    ValueError: a bad configuration or a pool too small for it.
    TypeError: a configuration field of the wrong type.
    ConfigMismatchError: ``out_dir`` holds another experiment.
    CheckpointError: a checkpoint in ``out_dir`` is corrupt or foreign.
    PermissionError: ``out_dir`` cannot be written.
  """
  cfg = cfg.validate()
  store.ensure_writable(out_dir)
  ds = config_lib.load_data(cfg, data_dir=data_dir, manual_dir=manual_dir, download=download)
  config_lib.check_fits(cfg, ds)
  record = store.config_record(cfg, ds)
  store.open_experiment(out_dir, record)
  cfg_id = store.config_id(record)
  # A writer killed mid-write leaves only its temporary file: the last good file is intact.
  store.remove_partial_writes(out_dir)
  total = len(cfg.strategies) * cfg.seeds * (cfg.rounds + 1)
  if progress:
    from tqdm.auto import tqdm

    bar = tqdm(total=total, desc="jaxal run", unit="round")
    say = bar.write
  else:
    bar, say = _NoBar(), log
  results: dict[str, dict[str, list]] = {
    name: {**store.empty_metrics(), "labeled_indices": []} for name in cfg.strategies
  }
  t_start = time.perf_counter()
  try:
    for name in cfg.strategies:
      for seed in range(cfg.seeds):
        bar.set_postfix_str(f"{name} seed {seed}")
        path = store.checkpoint_path(out_dir, name, seed)
        done_before = bar.n

        def tick(r, name=name, seed=seed):
          bar.update(1)
          on_round(name, seed, r)

        out = run_one(
          cfg, ds, name, seed, checkpoint=path, config_id=cfg_id, on_round=tick, log=say
        )
        bar.update(done_before + cfg.rounds + 1 - bar.n)  # rounds restored from the checkpoint
        for k, v in out.items():
          results[name][k].append(v)
        store.save_results(
          out_dir, _payload(cfg, record, results, False, time.perf_counter() - t_start)
        )
  finally:
    bar.close()
  payload = _payload(cfg, record, results, True, time.perf_counter() - t_start)
  store.save_results(out_dir, payload)
  summary = payload["summary"]
  report_lib.plot_curves(cfg, summary, os.path.join(out_dir, "curves.png"))
  log(f"\nTest accuracy on {cfg.dataset} (mean ± std over {cfg.seeds} seeds):\n")
  log(report_lib.format_table(cfg, summary))
  log(f"\nAUC = normalised area under the learning curve. Total {payload['seconds']:.1f} s.")
  log(
    f"Wrote {os.path.join(out_dir, store.RESULTS_FILE)} and {os.path.join(out_dir, 'curves.png')}"
  )
  return payload
