"""Runs an experiment: strategies × seeds × rounds, each run resumable from its checkpoint."""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Callable
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np

from jaxal._src import checks
from jaxal._src import data as data_lib
from jaxal._src import loop
from jaxal._src import models as models_lib
from jaxal._src.experiment import checkpoint as ckpt_lib
from jaxal._src.experiment import config as config_lib
from jaxal._src.experiment import report as report_lib
from jaxal._src.experiment import store


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

  Each round trains (from scratch or warm, with the configuration's training
  protocol), measures test accuracy, then acquires ``cfg.budget`` points; after
  each round the run is saved, then ``on_round(round)`` is called: the train
  state with orbax-checkpoint into the folder ``<checkpoint stem>.state/``,
  then the ``.npz`` record (labeled indices, key, metrics, the train state's
  round and sha256) atomically. Resuming restores the train state with
  :func:`jaxal.loop.restore_train_state` and checks it against the record, so
  the run goes on exactly as if it had never stopped.

  Args:
    cfg: the configuration.
    ds: the dataset (from :func:`load_data`); its training split is the pool.
    strategy_name: a strategy spec: a registered name (``jaxal.strategies.names()``),
      optionally with settings, ``"bald(num_samples=50)"``.
    seed: the run's seed: its key is ``jax.random.key(seed)``.
    checkpoint: the checkpoint file (``.npz``) to resume from and write (None: none);
      its train state lies in the folder beside it (``seed_0.npz``: ``seed_0.state/``).
    config_id: the experiment's identity, saved in and checked against the
      checkpoint.
    on_round: called as ``on_round(round)`` after each round.
    log: where messages go.

  Returns:
    ``{"accuracy", "labels", "acquire_seconds", "train_seconds"}`` per round
    (``acquire_seconds`` has ``rounds`` entries, the others ``rounds + 1``) and
    ``"labeled_indices"``: the indices labeled at each step (initial set first).

  Raises:
    CheckpointError: the checkpoint is damaged, foreign or holds invalid labels, or its
      train state is missing, damaged or not the one its record names (nothing is
      re-trained in its place).
  """
  seed = checks.check_int(seed, "seed")
  config_lib.check_fits(cfg, ds)
  x, y = ds.x_train, ds.y_train
  if checkpoint is not None and os.path.exists(checkpoint):
    arrays, meta = store.load_run(checkpoint, cfg, config_id, strategy_name, seed)
    store.check_run(checkpoint, arrays, meta, cfg, seed, x.shape[0])
    start = meta["next_round"]
  else:
    arrays, start = None, 0
  if start == cfg.rounds + 1:  # finished earlier
    history = store.history_from(arrays)
    return {**store.metrics_from(arrays), "labeled_indices": [h.tolist() for h in history]}
  strategy = config_lib.build_strategy(strategy_name)
  module = config_lib.build_module(cfg, ds.num_classes, x[:1])
  fit_kwargs = config_lib.fit_options(cfg)
  key = jax.random.key(seed)
  train_state = loop.create_train_state(
    jax.random.fold_in(key, 1), module, x, tx=config_lib.optimizer(cfg)
  )
  dtypes = store.leaf_dtypes(train_state)
  if arrays is None:
    state = loop.init(key, x.shape[0], num_initial=cfg.initial)
    metrics = store.empty_metrics()
  else:
    state, train_state = store.restore_run(checkpoint, arrays, meta, key, x.shape[0], train_state)
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
      reinitialize=(cfg.retrain == "scratch" or r == 0),
      **fit_kwargs,
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
      store.save_run(
        checkpoint, config_id, strategy_name, seed, r + 1, state, train_state, metrics, dtypes
      )
    on_round(r)
  return {**metrics, "labeled_indices": [np.asarray(h).tolist() for h in state.history]}


def _json(obj: Any) -> Any:
  return json.loads(json.dumps(obj))


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


def _scan(
  cfg: config_lib.Config, out_dir: str, ds: data_lib.Dataset, cfg_id: str
) -> tuple[dict[tuple[str, int], dict[str, Any]], set[tuple[str, int]], dict[tuple[str, int], str]]:
  """Reads every checkpoint in the folder, creating and writing nothing.

  Every record is checked, and every train state it names is restored and checked against
  the record's sha256, finished runs' as well as unfinished ones'.

  Returns:
    ``(finished, partial, damaged)``: the results of finished runs, the runs
    with an unfinished checkpoint, and for each damaged checkpoint why.
  """
  finished, partial, damaged = {}, set(), {}
  template = None
  for spec in cfg.strategies:
    for seed in range(cfg.seeds):
      path = store.checkpoint_path(out_dir, spec, seed)
      if not os.path.exists(path):
        continue
      try:
        arrays, meta = store.load_run(path, cfg, cfg_id, spec, seed)
        store.check_run(path, arrays, meta, cfg, seed, ds.x_train.shape[0])
        if template is None:  # one template serves every run: only its structure is used
          template = _template(cfg, ds)
        store.restore_train_state(path, meta, template)
      except ckpt_lib.CheckpointError as e:
        damaged[(spec, seed)] = str(e)
        continue
      if meta["next_round"] == cfg.rounds + 1:
        history = store.history_from(arrays)
        finished[(spec, seed)] = {
          **store.metrics_from(arrays),
          "labeled_indices": [h.tolist() for h in history],
        }
      else:
        partial.add((spec, seed))
  return finished, partial, damaged


def _template(cfg: config_lib.Config, ds: data_lib.Dataset) -> Any:
  """A fresh train state of the experiment's model and optimiser (the shape of every run's)."""
  module = config_lib.build_module(cfg, ds.num_classes, ds.x_train[:1])
  return loop.create_train_state(
    jax.random.key(0), module, ds.x_train[:1], tx=config_lib.optimizer(cfg)
  )


def collect_results(
  cfg: config_lib.Config, done: dict[tuple[str, int], dict[str, Any]]
) -> dict[str, dict[str, list]]:
  """``results.json``'s ``"results"``: per strategy, one entry per finished seed, in seed order.

  Args:
    cfg: the (merged) configuration: its strategies give the order.
    done: ``(spec, seed) -> run_one's result`` for every finished run.

  Returns:
    strategy -> ``{"seeds": [...], metric: [one list per seed], "labeled_indices": [...]}``.
  """
  results: dict[str, dict[str, list]] = {}
  for spec in cfg.strategies:
    seeds = sorted(seed for (s, seed) in done if s == spec)
    res = {"seeds": seeds, **store.empty_metrics(), "labeled_indices": []}
    for seed in seeds:
      for k, v in done[(spec, seed)].items():
        res[k].append(v)
    results[spec] = res
  return results


def _prepare_model(cfg: config_lib.Config, ds: data_lib.Dataset) -> None:
  """Builds and initialises the model once on the data, so that a bad model fails first."""
  try:
    module = config_lib.build_module(cfg, ds.num_classes, ds.x_train[:1])
    loop.create_train_state(jax.random.key(0), module, ds.x_train[:1])
  except (ImportError, ValueError, TypeError) as e:
    raise config_lib.ExperimentError(
      f"model {cfg.model!r} cannot be built for {ds.num_classes} classes and inputs of "
      f"shape {ds.x_train.shape[1:]}: {type(e).__name__}: {e}"
    ) from e


def run(
  cfg: config_lib.Config,
  out_dir: str,
  *,
  data: data_lib.Dataset | None = None,
  data_dir: str | None = None,
  manual_dir: str | None = None,
  download: bool = True,
  recompute_damaged: bool = False,
  formats: Sequence[str] = ("png",),
  progress: bool = True,
  log: Callable[[str], None] = print,
  on_round: Callable[[str, int, int], None] = lambda name, seed, r: None,
) -> dict[str, Any]:
  """Runs (or resumes, or extends) the experiment in ``out_dir``; writes results and curves.

  Everything is checked before anything is created or written: the
  configuration, the strategies' settings, the data (loaded, and fitting the
  sizes asked for), the model (built and initialised once), the folder's own
  configuration and every checkpoint already there. A folder that holds the
  same experiment with other strategies or fewer seeds is extended: its
  finished runs are kept and the new ones added. A damaged checkpoint stops
  the run before anything is written, naming the run, unless
  ``recompute_damaged`` (then it is set aside as ``*.damaged`` and recomputed). A
  checkpoint is damaged when its ``.npz`` record is, or when the train state it names
  (saved with orbax-checkpoint in the folder beside it) is missing, unreadable or fails
  the sha256 the record holds: a run is never silently re-trained.

  Args:
    cfg: the configuration.
    out_dir: the experiment folder (created): ``config.json``, one checkpoint
      per (strategy, seed) under ``checkpoints/`` (``<strategy>/seed_<seed>.npz``
      and its train state, ``<strategy>/seed_<seed>.state/``), ``results.json``
      and ``curves.<format>``.
    data: a :class:`~jaxal.datasets.Dataset` of one's own (see
      :func:`jaxal.datasets.from_arrays`) instead of loading ``cfg.dataset``;
      its name is recorded as the dataset and its sha256 guards the folder.
    data_dir: where TFDS datasets are prepared (see :func:`jaxal.datasets.load`).
    manual_dir: a folder with the dataset's original files, used instead of
      downloading.
    download: whether TFDS may download a dataset that is not prepared.
    recompute_damaged: recompute the runs whose checkpoints are damaged instead
      of stopping.
    formats: the plot formats, among ``"png"``, ``"pdf"``, ``"svg"``.
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
    CheckpointError: a checkpoint in ``out_dir`` is corrupt or foreign (and
      ``recompute_damaged`` is False); nothing was written.
    PermissionError: ``out_dir`` cannot be written.

  Example:
    >>> import tempfile
    >>> from jaxal import experiment
    >>> cfg = experiment.Config(strategies=("random",), rounds=1, seeds=1, num_steps=5)
    >>> out = experiment.run(cfg, tempfile.mkdtemp(), progress=False, log=lambda s: None)
    >>> out["labels"]
    [20, 40]
  """
  cfg = cfg.validate()
  recompute_damaged = checks.check_bool(recompute_damaged, "recompute_damaged")
  formats = report_lib.check_formats(formats)
  store.check_can_create(out_dir)
  ds = config_lib.load_data(
    cfg, data_dir=data_dir, manual_dir=manual_dir, download=download, data=data
  )
  if data is not None:
    cfg = dataclasses.replace(cfg, dataset=ds.name)
  config_lib.check_fits(cfg, ds)
  _prepare_model(cfg, ds)
  config_lib.fit_options(cfg)
  record = store.merge_records(out_dir, store.read_record(out_dir), store.config_record(cfg, ds))
  folder_cfg = config_lib.Config.from_dict(record["config"])
  cfg_id = store.config_id(record)
  finished, partial, damaged = _scan(folder_cfg, out_dir, ds, cfg_id)
  if damaged and not recompute_damaged:
    listing = "; ".join(f"{spec} seed {seed}: {why}" for (spec, seed), why in damaged.items())
    raise ckpt_lib.CheckpointError(
      f"{len(damaged)} damaged checkpoint(s) in {out_dir!r}, nothing was written "
      f"({store.RESULTS_FILE} is unchanged). Recompute "
      f"{', '.join(f'{spec} seed {seed}' for spec, seed in damaged)} with --recompute-damaged "
      f"(recompute_damaged=True), or restore the file(s). {listing}"
    )
  # Everything is checked: from here on the folder is created and written.
  store.ensure_writable(out_dir)
  store.write_record(out_dir, record)
  # A writer killed mid-write leaves only its temporary file: the last good file is intact.
  store.remove_partial_writes(out_dir)
  for spec, seed in damaged:
    path = store.checkpoint_path(out_dir, spec, seed)
    store.set_aside_damaged(path)
    log(
      f"recomputing {spec} seed {seed}: its damaged checkpoint is kept as {path}.damaged "
      f"(its train state as {store.state_dir(path)}.damaged)"
    )
  todo = [(spec, seed) for spec in cfg.strategies for seed in range(cfg.seeds)]
  todo += [r for r in sorted(partial | set(damaged)) if r not in todo]
  todo = [r for r in todo if r not in finished]
  total = len(todo) * (cfg.rounds + 1)
  if progress:
    from tqdm.auto import tqdm

    bar = tqdm(total=total, desc="jaxal run", unit="round")
    say = bar.write
  else:
    bar, say = _NoBar(), log
  t_start = time.perf_counter()
  try:
    for name, seed in todo:
      bar.set_postfix_str(f"{name} seed {seed}")
      path = store.checkpoint_path(out_dir, name, seed)
      done_before = bar.n

      def tick(r, name=name, seed=seed):
        bar.update(1)
        on_round(name, seed, r)

      finished[(name, seed)] = run_one(
        folder_cfg, ds, name, seed, checkpoint=path, config_id=cfg_id, on_round=tick, log=say
      )
      bar.update(done_before + cfg.rounds + 1 - bar.n)  # rounds restored from the checkpoint
      results = collect_results(folder_cfg, finished)
      store.save_results(
        out_dir, _payload(folder_cfg, record, results, False, time.perf_counter() - t_start)
      )
  finally:
    bar.close()
  results = collect_results(folder_cfg, finished)
  payload = _payload(folder_cfg, record, results, True, time.perf_counter() - t_start)
  old = report_lib.read_payload(out_dir) if not todo else None
  if old is not None and old.get("complete") and old.get("results") == _json(results):
    payload = old  # nothing ran: results.json stays byte for byte as it was
  else:
    store.save_results(out_dir, payload)
  summary = payload["summary"]
  written = report_lib.save_figure(
    report_lib.plot_curves(folder_cfg, summary), os.path.join(out_dir, "curves"), formats
  )
  log(f"\nTest accuracy on {folder_cfg.dataset} ({report_lib.STAT_NOTE}):\n")
  log(report_lib.format_table(folder_cfg, summary))
  log(f"\nAUC = normalised area under the learning curve. Total {payload['seconds']:.1f} s.")
  log(f"Wrote {os.path.join(out_dir, store.RESULTS_FILE)} and {', '.join(written)}")
  return payload
