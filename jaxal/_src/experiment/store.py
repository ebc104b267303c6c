"""The experiment folder on disk: its files, the configuration record and the checkpoints.

An experiment folder holds:

* ``config.json``: the configuration and the sha256 of the data it runs on.
  Running again against the folder with another configuration is refused.
* ``checkpoints/<strategy>/seed_<seed>.npz``: one record per (strategy,
  seed), rewritten atomically after every round (see :mod:`checkpoint`): the
  labeled indices in order, the round, the run's key, the metrics so far, and
  the round of the run's train state, the sha256 of its arrays and of each of
  its files.
* ``checkpoints/<strategy>/seed_<seed>.state/round_<r>/``: the train state
  trained in round ``r`` (parameters, BatchNorm statistics or NNX state,
  optimiser state; parameters sharded over a mesh stay sharded), written with
  orbax-checkpoint (:func:`jaxal.loop.save_train_state`) before the record
  that names it; the previous round's folder is deleted once the new record
  is written. The record always names a complete folder, whenever the writer
  is killed. Running the same command again continues every run from its
  last completed round, with results identical to an uninterrupted run.
* ``results.json`` (rewritten whenever a (strategy, seed) run completes),
  ``curves.png``; ``jaxal report`` adds ``report.md`` and
  ``curves_vs_random.png``.

Every file jaxal writes there is written atomically, and every record
carries a sha256, through :mod:`checkpoint` (the file format); every train
state is checked against the sha256 its record holds when it is restored.
This module says which files the folder holds and what a checkpoint contains.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import shutil
from typing import Any

import jax
import numpy as np

from jaxal._src import checks
from jaxal._src import data as data_lib
from jaxal._src import loop
from jaxal._src import version
from jaxal._src.experiment import checkpoint as ckpt_lib
from jaxal._src.experiment import config as config_lib

CONFIG_FILE = "config.json"
RESULTS_FILE = "results.json"
REPORT_FILE = "report.md"
CHECKPOINT_DIR = "checkpoints"
STATE_SUFFIX = ".state"
_ROUND_DIR = re.compile(r"round_(\d+)")
# What loop.save_train_state (and orbax under it) leave behind when killed mid-write.
_PARTIAL_STATE = re.compile(r"\.round_\d+\.partial-.*")
METRICS = ("accuracy", "labels", "acquire_seconds", "train_seconds")


# ---------------------------------------------------------------------------
# The configuration record.


def config_record(cfg: config_lib.Config, ds: data_lib.Dataset) -> dict[str, Any]:
  """What ``config.json`` holds: the configuration, the data's sha256 and sizes, the version.

  Args:
    cfg: the configuration.
    ds: the dataset it runs on.
  """
  # Through JSON, so that it compares equal to a record read back from config.json.
  return json.loads(
    json.dumps(
      {
        "config": dataclasses.asdict(cfg),
        "dataset_sha256": data_lib.fingerprint(ds),
        "pool_size": int(ds.x_train.shape[0]),
        "test_size": int(ds.x_test.shape[0]),
        "num_classes": int(ds.num_classes),
        "jaxal_version": version.__version__,
      }
    )
  )


def config_id(record: dict[str, Any]) -> str:
  """A short hash of the configuration and the data, saved in every checkpoint.

  The strategies and the number of seeds are left out: runs of more strategies
  or seeds merge into one folder (:func:`merge_records`).

  Args:
    record: from :func:`config_record`.
  """
  cfg = {k: v for k, v in record["config"].items() if k not in config_lib.MERGEABLE}
  key = {"config": cfg, "dataset_sha256": record["dataset_sha256"]}
  return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


# ---------------------------------------------------------------------------
# The folder.


def check_can_create(out_dir: str) -> None:
  """Checks, creating nothing, that ``out_dir`` exists as a writable folder or can be made.

  Args:
    out_dir: the experiment folder.

  Raises:
    PermissionError: a file is in the way, or the folder (or its nearest existing parent)
      is not writable.
  """
  path = os.path.abspath(out_dir)
  probe = path
  while not os.path.exists(probe):
    parent = os.path.dirname(probe)
    if parent == probe:
      break
    probe = parent
  if not os.path.isdir(probe) or not os.access(probe, os.W_OK | os.X_OK):
    why = "is not a folder" if not os.path.isdir(probe) else "is not writable"
    raise PermissionError(
      f"output folder {out_dir!r} cannot be created or written ({probe!r} {why}); "
      "choose another --out"
    )


def ensure_writable(out_dir: str) -> None:
  """Creates ``out_dir`` and proves it writable by writing a file there, or says why not.

  Args:
    out_dir: the experiment folder.

  Raises:
    PermissionError: the folder cannot be created or written.
  """
  try:
    os.makedirs(out_dir, exist_ok=True)
    ckpt_lib.atomic_write_bytes(os.path.join(out_dir, ".jaxal-write-test"), b"ok\n")
    os.remove(os.path.join(out_dir, ".jaxal-write-test"))
  except OSError as e:
    cause = e.__cause__ if isinstance(e.__cause__, OSError) else e
    raise PermissionError(
      f"output folder {out_dir!r} cannot be created or written "
      f"({type(cause).__name__}: {cause.strerror or cause}); choose another --out"
    ) from e


def read_record(out_dir: str) -> dict[str, Any] | None:
  """The folder's ``config.json`` record, or None for a new folder.

  Args:
    out_dir: the experiment folder.

  Raises:
    ConfigMismatchError: ``config.json`` is unreadable, or checkpoints lie there without it.
  """
  path = os.path.join(out_dir, CONFIG_FILE)
  if os.path.exists(path):
    try:
      with open(path) as f:
        return json.load(f)
    except (OSError, ValueError) as e:
      raise config_lib.ConfigMismatchError(
        f"{path!r} is unreadable ({e}); it describes the experiment in {out_dir!r}. "
        "Restore it, or choose another --out"
      ) from e
  if os.path.exists(os.path.join(out_dir, CHECKPOINT_DIR)):
    raise config_lib.ConfigMismatchError(
      f"{out_dir!r} holds checkpoints but no {CONFIG_FILE}, so they cannot be matched to "
      "this configuration; choose another --out or delete the folder"
    )
  return None


def _full_config(d: dict[str, Any]) -> dict[str, Any]:
  """A saved configuration with today's defaults for fields it predates."""
  full = dataclasses.asdict(config_lib.Config())
  full.update(d)
  return json.loads(json.dumps(full))


def merge_records(
  out_dir: str, old: dict[str, Any] | None, record: dict[str, Any]
) -> dict[str, Any]:
  """The folder's record after this run: its strategies and seeds grown to include this run's.

  Args:
    out_dir: the experiment folder (for messages).
    old: from :func:`read_record` (None: a new folder).
    record: this run's, from :func:`config_record`.

  Returns:
    The merged record: the old strategies then the new ones, the larger number of seeds.

  Raises:
    ConfigMismatchError: another field differs (the message names each), or the data differ.
  """
  if old is None:
    return record
  old_cfg = _full_config(old.get("config", {}))
  new_cfg = _full_config(record["config"])
  diffs = [
    f"{k}: {old_cfg.get(k)!r} in the folder, {new_cfg.get(k)!r} now"
    for k in sorted(set(old_cfg) | set(new_cfg))
    if k not in config_lib.MERGEABLE and old_cfg.get(k) != new_cfg.get(k)
  ]
  if diffs:
    raise config_lib.ConfigMismatchError(
      f"{out_dir!r} holds an experiment with another configuration ({'; '.join(diffs)}). "
      "Results of different configurations are never mixed (only strategies and seeds may "
      "be added): run with the folder's settings to resume or extend it, or choose another "
      "--out (or delete the folder) to start anew"
    )
  if old.get("dataset_sha256") != record["dataset_sha256"]:
    raise config_lib.ConfigMismatchError(
      f"{out_dir!r} holds an experiment that ran on other data: the "
      f"{record['config']['dataset']!r} arrays now have sha256 "
      f"{record['dataset_sha256'][:16]}..., the folder's had "
      f"{str(old.get('dataset_sha256'))[:16]}...; choose another --out"
    )
  strategies = list(old_cfg["strategies"])
  strategies += [s for s in new_cfg["strategies"] if s not in strategies]
  merged = json.loads(json.dumps(record))
  merged["config"]["strategies"] = strategies
  merged["config"]["seeds"] = max(int(old_cfg["seeds"]), int(new_cfg["seeds"]))
  return merged


def write_record(out_dir: str, record: dict[str, Any]) -> None:
  """Writes ``config.json`` atomically (when it changed).

  Args:
    out_dir: the experiment folder (it exists).
    record: the merged record.
  """
  path = os.path.join(out_dir, CONFIG_FILE)
  if os.path.exists(path):
    with open(path) as f:
      if json.load(f) == record:
        return
  ckpt_lib.atomic_write_json(path, record)


def open_experiment(out_dir: str, record: dict[str, Any]) -> dict[str, Any]:
  """Writes ``config.json``, or checks that the folder's experiment is this one and merges.

  Args:
    out_dir: the experiment folder.
    record: from :func:`config_record`.

  Returns:
    The merged record written (see :func:`merge_records`).

  Raises:
    ConfigMismatchError: the folder holds another configuration or ran on other data.
  """
  merged = merge_records(out_dir, read_record(out_dir), record)
  write_record(out_dir, merged)
  return merged


def remove_partial_writes(out_dir: str) -> None:
  """Deletes what writers killed mid-write left (the last good files are intact).

  That is the temporary files of records and the partial train-state folders.

  Args:
    out_dir: the experiment folder.
  """
  ckpt_lib.remove_stale_temporaries(out_dir, recursive=False)
  ckpt_lib.remove_stale_temporaries(os.path.join(out_dir, CHECKPOINT_DIR))
  for root, dirs, _ in os.walk(os.path.join(out_dir, CHECKPOINT_DIR)):
    for name in dirs:
      if name.endswith(STATE_SUFFIX):
        _prune_states(os.path.join(root, name[: -len(STATE_SUFFIX)] + ".npz"), keep=None)
    dirs[:] = [d for d in dirs if not d.endswith(STATE_SUFFIX)]


def save_results(out_dir: str, payload: dict[str, Any]) -> None:
  """Writes ``results.json`` atomically.

  Args:
    out_dir: the experiment folder.
    payload: the JSON-serialisable results.
  """
  ckpt_lib.atomic_write_json(os.path.join(out_dir, RESULTS_FILE), payload)


def save_report(results_dir: str, md: str) -> None:
  """Writes ``report.md`` atomically.

  Args:
    results_dir: the experiment folder.
    md: the Markdown text.
  """
  ckpt_lib.atomic_write_bytes(os.path.join(results_dir, REPORT_FILE), md.encode())


# ---------------------------------------------------------------------------
# Checkpoints: one per (strategy, seed) run.


def spec_folder(spec: str) -> str:
  """The folder name of a strategy spec: the name itself, or ``name-<hash>`` with settings.

  Args:
    spec: a canonical strategy spec (``config.canonical_spec``).
  """
  if spec.isidentifier():
    return spec
  name = spec.split("(", 1)[0]
  return f"{name}-{hashlib.sha256(spec.encode()).hexdigest()[:10]}"


def checkpoint_path(out_dir: str, strategy: str, seed: int) -> str:
  """``<out_dir>/checkpoints/<strategy folder>/seed_<seed>.npz``.

  Args:
    out_dir: the experiment folder.
    strategy: the strategy's canonical spec (see :func:`spec_folder`).
    seed: the run's seed.
  """
  return os.path.join(out_dir, CHECKPOINT_DIR, spec_folder(strategy), f"seed_{seed}.npz")


def empty_metrics() -> dict[str, list]:
  """One empty list per metric a run records."""
  return {k: [] for k in METRICS}


def state_dir(path: str) -> str:
  """The train-state folder of the checkpoint ``path``: ``seed_<seed>.state`` beside its ``.npz``.

  Args:
    path: the checkpoint file (``.../seed_<seed>.npz``).
  """
  return os.path.splitext(path)[0] + STATE_SUFFIX


def state_path(path: str, round_: int) -> str:
  """``<state_dir(path)>/round_<round_>``: the train state trained in round ``round_``.

  Args:
    path: the checkpoint file.
    round_: the round whose training produced the state.
  """
  return os.path.join(state_dir(path), f"round_{int(round_)}")


def _host(leaf: Any) -> np.ndarray:
  if checks.is_key(leaf):
    leaf = jax.random.key_data(leaf)
  return np.asarray(jax.device_get(leaf))


def leaf_dtypes(template: Any) -> list[tuple[str, np.dtype]]:
  """The path and dtype of every leaf of a train state, in tree order (what a digest needs).

  A leaf that is not a ``jax.Array`` (the step counter of a fresh ``TrainState``, a Python
  int) has the dtype NumPy gives it, as :func:`jaxal.loop.restore_train_state` restores it;
  typed rng keys have the dtype of their key data.

  Args:
    template: a freshly created train state of the model.
  """
  out = []
  for p, leaf in jax.tree_util.tree_flatten_with_path(template)[0]:
    if checks.is_key(leaf):
      dtype = jax.random.key_data(leaf).dtype
    else:
      dtype = leaf.dtype if isinstance(leaf, jax.Array) else np.asarray(leaf).dtype
    out.append((jax.tree_util.keystr(p), np.dtype(dtype)))
  return out


def train_state_digest(train_state: Any, dtypes: list[tuple[str, np.dtype]]) -> str:
  """The sha256 of a train state's arrays: per leaf, in tree order, its path, dtype, shape, bytes.

  Each leaf is taken in the model's dtype (``dtypes``, from :func:`leaf_dtypes`), so a
  state digests alike before saving and after :func:`jaxal.loop.restore_train_state`.

  Args:
    train_state: the train state.
    dtypes: from :func:`leaf_dtypes` of a template of the same model.

  Returns:
    The hex digest.

  Raises:
    ValueError: ``train_state`` has another number of leaves than ``dtypes``.
  """
  leaves = jax.tree_util.tree_leaves(train_state)
  if len(leaves) != len(dtypes):
    raise ValueError(
      f"the train state has {len(leaves)} leaves, the model's template {len(dtypes)}"
    )
  h = hashlib.sha256()
  for (name, dtype), leaf in zip(dtypes, leaves):
    a = _host(leaf).astype(dtype, copy=False)
    h.update(f"\0{name}\0{a.dtype.str}\0{a.shape}\0".encode())
    h.update(np.ascontiguousarray(a).reshape(-1).view(np.uint8))
  return h.hexdigest()


def file_digests(folder: str) -> dict[str, str]:
  """The sha256 of every file under ``folder``, keyed by its ``/``-separated relative path.

  Args:
    folder: a train-state folder.
  """
  out = {}
  for root, dirs, names in os.walk(folder):
    dirs.sort()
    for name in sorted(names):
      full = os.path.join(root, name)
      h = hashlib.sha256()
      with open(full, "rb") as f:
        for block in iter(lambda f=f: f.read(1 << 20), b""):
          h.update(block)
      out[os.path.relpath(full, folder).replace(os.sep, "/")] = h.hexdigest()
  return out


def _prune_states(path: str, keep: int | None) -> None:
  """Deletes ``path``'s train-state folders but round ``keep``'s, and killed writers' leftovers."""
  folder = state_dir(path)
  if not os.path.isdir(folder):
    return
  for name in os.listdir(folder):
    m = _ROUND_DIR.fullmatch(name)
    stale = _PARTIAL_STATE.fullmatch(name) or (
      m is not None and keep is not None and int(m[1]) != keep
    )
    if stale:
      target = os.path.join(folder, name)
      if os.path.isdir(target):
        shutil.rmtree(target)
      else:
        os.remove(target)


def save_run(
  path: str,
  cfg_id: str,
  strategy: str,
  seed: int,
  next_round: int,
  state: loop.ALState,
  train_state: Any,
  metrics: dict[str, list],
  dtypes: list[tuple[str, np.dtype]],
) -> None:
  """Saves a run after a round: the train state with orbax, then the record that names it.

  The train state goes to :func:`state_path` ``(path, next_round - 1)`` (with
  :func:`jaxal.loop.save_train_state`: a temporary folder renamed into place); then the
  ``.npz`` record (labeled indices, round, key, metrics, the train state's round, the
  :func:`train_state_digest` of its arrays and the sha256 of each of its files) replaces
  the previous one atomically; then the previous round's train state is
  deleted. Killed at any point, the record on disk names a complete train state.

  Args:
    path: the checkpoint file (its folder is created).
    cfg_id: from :func:`config_id`.
    strategy: the strategy's name.
    seed: the run's seed.
    next_round: the first round not yet run.
    state: the loop state after the round's acquisition.
    train_state: the round's trained Flax ``TrainState``.
    metrics: the metrics so far, as :func:`empty_metrics` lays them out.
    dtypes: from :func:`leaf_dtypes` of a template of the model.
  """
  state_round = next_round - 1
  digest = train_state_digest(train_state, dtypes)
  os.makedirs(os.path.dirname(path), exist_ok=True)
  files = file_digests(
    loop.save_train_state(state_path(path, state_round), train_state, overwrite=True)
  )
  history = [np.asarray(jax.device_get(h), np.int32) for h in state.history]
  arrays = {
    "labeled": np.concatenate(history) if history else np.zeros((0,), np.int32),
    "history_lengths": np.asarray([len(h) for h in history], np.int64),
    "key_data": np.asarray(jax.device_get(jax.random.key_data(state.key))),
    "round": np.asarray(int(state.round), np.int64),
  }
  for k in METRICS:
    arrays[f"metric_{k}"] = np.asarray(metrics[k], np.float64)
  meta = {
    "config_id": cfg_id,
    "strategy": strategy,
    "seed": seed,
    "next_round": next_round,
    "train_state_round": state_round,
    "train_state_sha256": digest,
    "train_state_files": files,
  }
  ckpt_lib.save(path, arrays, meta)
  _prune_states(path, keep=state_round)


def load_run(
  path: str,
  cfg: config_lib.Config,
  cfg_id: str,
  strategy: str,
  seed: int,
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
  """Loads a run's record saved by :func:`save_run`, checking it belongs to this run and is whole.

  Args:
    path: the checkpoint file.
    cfg: the configuration.
    cfg_id: from :func:`config_id`.
    strategy: the strategy's name.
    seed: the run's seed.

  Returns:
    ``(arrays, meta)``; ``meta["next_round"]`` is the first round not yet run,
    ``meta["train_state_round"]``, ``meta["train_state_sha256"]`` and
    ``meta["train_state_files"]`` the round of its train state, the digest of its arrays
    and the sha256 of each of its files (see :func:`restore_train_state`).

  Raises:
    CheckpointError: the file is damaged, belongs to another run or is inconsistent.
  """
  arrays, meta = ckpt_lib.load(path)
  expect = {"config_id": cfg_id, "strategy": strategy, "seed": seed}
  got = {k: meta.get(k) for k in expect}
  if got != expect:
    raise ckpt_lib.CheckpointError(
      f"checkpoint {path!r} belongs to another run ({got}, expected {expect}); "
      "delete it to recompute that run, or choose another --out"
    )
  nr = meta.get("next_round")
  needed = {
    "labeled",
    "history_lengths",
    "key_data",
    "round",
    *(f"metric_{k}" for k in METRICS),
  }
  lengths = arrays.get("history_lengths")
  ok = (
    isinstance(nr, int)
    and 1 <= nr <= cfg.rounds + 1
    and needed <= set(arrays)
    and len(arrays["metric_accuracy"]) == nr
    and len(arrays["metric_acquire_seconds"]) == min(nr, cfg.rounds)
    and lengths is not None
    and len(lengths) == min(nr, cfg.rounds) + 1
    and int(lengths.sum()) == len(arrays["labeled"])
  )
  if not ok:
    raise ckpt_lib.CheckpointError(
      f"checkpoint {path!r} is inconsistent (round {nr!r} of {cfg.rounds}, arrays "
      f"{sorted(arrays)}); delete it to recompute that run"
    )
  sr, sha = meta.get("train_state_round"), meta.get("train_state_sha256")
  files = meta.get("train_state_files")
  if "train_state" in arrays or sr is None or sha is None or files is None:
    raise ckpt_lib.CheckpointError(
      f"checkpoint {path!r} names no orbax train state (it was written by an older jaxal, "
      "which kept the train state inside the .npz); delete it to recompute that run"
    )
  hexes = [sha, *(files.values() if isinstance(files, dict) else [None])]
  if sr != nr - 1 or not all(isinstance(h, str) and re.fullmatch("[0-9a-f]{64}", h) for h in hexes):
    raise ckpt_lib.CheckpointError(
      f"checkpoint {path!r} is inconsistent (train state of round {sr!r} with next round "
      f"{nr}); delete {path!r} and {state_dir(path)!r} to recompute that run"
    )
  return arrays, meta


def check_run(
  path: str,
  arrays: dict[str, np.ndarray],
  meta: dict[str, Any],
  cfg: config_lib.Config,
  seed: int,
  num_points: int,
) -> None:
  """Checks a loaded run's labels and metrics, finished or not, as strictly as resuming does.

  The labeled indices must lie in ``0 .. num_points - 1``, be unique, and come
  in steps of ``initial`` then ``budget``; the key must be the seed's; the
  recorded labeled-set sizes must be ``initial + r * budget``.

  Args:
    path: the checkpoint file (for messages).
    arrays: from :func:`load_run`.
    meta: from :func:`load_run`.
    cfg: the configuration.
    seed: the run's seed.
    num_points: the pool size.

  Raises:
    CheckpointError: any of these does not hold.
  """
  if not np.array_equal(arrays["key_data"], np.asarray(jax.random.key_data(jax.random.key(seed)))):
    raise ckpt_lib.CheckpointError(f"checkpoint {path!r} holds the key of another seed")
  nr = meta["next_round"]
  lengths = arrays["history_lengths"].tolist()
  expect = [cfg.initial] + [cfg.budget] * (len(lengths) - 1)
  labeled = arrays["labeled"]
  problem = None
  if lengths != expect:
    problem = f"steps of {lengths} labels, expected {expect}"
  elif labeled.dtype.kind not in "iu":
    problem = f"labels of dtype {labeled.dtype}"
  elif labeled.size and (labeled.min() < 0 or labeled.max() >= num_points):
    problem = (
      f"labeled indices {int(labeled.min())} .. {int(labeled.max())} outside the pool "
      f"0 .. {num_points - 1}"
    )
  elif np.unique(labeled).size != labeled.size:
    problem = "a labeled index more than once"
  elif arrays["metric_labels"].tolist() != config_lib.labels_per_round(cfg)[:nr]:
    problem = f"labeled-set sizes {arrays['metric_labels'].tolist()}"
  elif int(arrays["round"]) != min(nr, cfg.rounds):
    problem = f"round {int(arrays['round'])} with next round {nr}"
  if problem is not None:
    raise ckpt_lib.CheckpointError(
      f"checkpoint {path!r} holds invalid labels ({problem}); it was damaged or edited after "
      "writing"
    )


def metrics_from(arrays: dict[str, np.ndarray]) -> dict[str, list]:
  """The metrics so far, from :func:`load_run`'s arrays.

  Args:
    arrays: from :func:`load_run`.
  """
  out = {k: arrays[f"metric_{k}"].tolist() for k in METRICS}
  out["labels"] = [int(v) for v in out["labels"]]
  return out


def history_from(arrays: dict[str, np.ndarray]) -> list[np.ndarray]:
  """The indices labeled at each step (initial set first), from :func:`load_run`'s arrays.

  Args:
    arrays: from :func:`load_run`.
  """
  bounds = np.cumsum(arrays["history_lengths"])[:-1]
  return np.split(arrays["labeled"].astype(np.int32), bounds)


def restore_train_state(path: str, meta: dict[str, Any], like: Any) -> Any:
  """The train state a run's record names, restored with orbax and checked against its sha256.

  Args:
    path: the checkpoint file.
    meta: from :func:`load_run`.
    like: a freshly created train state of the same model and optimiser (its structure,
      dtypes and shardings are the result's; see :func:`jaxal.loop.restore_train_state`).

  Returns:
    The restored train state.

  Two checks: every file of the folder must have the sha256 the record holds for it
  (before orbax reads any), and the restored arrays must have the record's
  :func:`train_state_digest`.

  Raises:
    CheckpointError: the folder or one of its files is missing, a file or the arrays'
      sha256 is not the one the record holds (damaged, or copied from another run), or it
      is unreadable or of another model.
  """
  folder = state_path(path, meta["train_state_round"])
  hint = (
    f"delete {path!r} and {state_dir(path)!r} to recompute that run from its first round "
    "(--recompute-damaged does so, keeping both as *.damaged), or restore them from a backup"
  )
  if not os.path.isdir(folder):
    raise ckpt_lib.CheckpointError(
      f"checkpoint {path!r} names the train state of round {meta['train_state_round']} at "
      f"{folder!r}, which is missing; {hint}"
    )
  # The files first: orbax is never handed a folder whose files are not the ones written
  # (it reads a damaged one in concurrent tasks that fail again, and echo, after it returns).
  recorded = meta["train_state_files"]
  files = file_digests(folder)
  missing = sorted(set(recorded) - set(files))
  if missing:
    raise ckpt_lib.CheckpointError(
      f"the train state {folder!r} of checkpoint {path!r} lacks {len(missing)} of its "
      f"{len(recorded)} files ({', '.join(missing[:3])}{', ...' if len(missing) > 3 else ''}); "
      f"{hint}"
    )
  changed = sorted(name for name in recorded if files[name] != recorded[name])
  if changed:
    raise ckpt_lib.CheckpointError(
      f"the train state {folder!r} fails the sha256 its checkpoint {path!r} holds for "
      f"{', '.join(changed[:3])}{', ...' if len(changed) > 3 else ''}: it was damaged, "
      f"edited or copied from another run after writing; {hint}"
    )
  try:
    restored = loop.restore_train_state(folder, like)
    digest = train_state_digest(restored, leaf_dtypes(like))
  except Exception as e:  # orbax and tensorstore raise many kinds
    why = (str(e).strip().splitlines() or [""])[0]  # tensorstore appends its whole spec
    why = why if len(why) <= 300 else why[:300] + " ..."
    raise ckpt_lib.CheckpointError(
      f"the train state {folder!r} of checkpoint {path!r} is unreadable or does not fit "
      f"the model ({type(e).__name__}: {why}); {hint}"
    ) from e
  if digest != meta["train_state_sha256"]:
    raise ckpt_lib.CheckpointError(
      f"the train state {folder!r} fails the sha256 of its arrays its checkpoint {path!r} "
      f"holds ({digest[:16]}..., recorded {meta['train_state_sha256'][:16]}...): it was "
      f"damaged, edited or copied from another run after writing; {hint}"
    )
  return restored


def set_aside_damaged(path: str) -> None:
  """Renames a damaged checkpoint and its train-state folder to ``*.damaged`` (replacing any).

  Args:
    path: the checkpoint file.
  """
  if os.path.exists(path):
    os.replace(path, path + ".damaged")
  folder = state_dir(path)
  if os.path.exists(folder):
    if os.path.exists(folder + ".damaged"):
      shutil.rmtree(folder + ".damaged")
    os.replace(folder, folder + ".damaged")


def restore_run(
  path: str,
  arrays: dict[str, np.ndarray],
  meta: dict[str, Any],
  key: jax.Array,
  num_points: int,
  train_state: Any,
) -> tuple[loop.ALState, Any]:
  """The loop state and train state of a run loaded by :func:`load_run`.

  The loop state is rebuilt by labeling the saved history again, so its
  bookkeeping is checked as it was when the run labeled it; the train state is
  restored by :func:`restore_train_state`.

  Args:
    path: the checkpoint file.
    arrays: from :func:`load_run`.
    meta: from :func:`load_run`.
    key: the run's key, ``jax.random.key(seed)``.
    num_points: the pool size.
    train_state: a freshly created train state of the same model.

  Returns:
    ``(state, train_state)``.

  Raises:
    CheckpointError: the checkpoint holds another seed's key, invalid labels,
      an inconsistent round, or a train state that is missing, damaged, of another run or
      does not fit the model.
  """
  if not np.array_equal(arrays["key_data"], np.asarray(jax.random.key_data(key))):
    raise ckpt_lib.CheckpointError(f"checkpoint {path!r} holds the key of another seed")
  history = history_from(arrays)
  try:
    state = loop.init(key, num_points, initial_indices=history[0])
    for h in history[1:]:
      state = loop.label(state, h)
  except ValueError as e:
    raise ckpt_lib.CheckpointError(f"checkpoint {path!r} holds invalid labels: {e}") from e
  if int(state.round) != int(arrays["round"]) or int(state.round) != meta["next_round"]:
    raise ckpt_lib.CheckpointError(f"checkpoint {path!r} is at an inconsistent round")
  return state, restore_train_state(path, meta, train_state)
