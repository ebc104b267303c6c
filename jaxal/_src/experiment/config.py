"""An experiment's configuration, the models it names and the data it runs on."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np

from jaxal._src import checks
from jaxal._src import data as data_lib
from jaxal._src import networks
from jaxal._src.strategies import registry as strategies_lib

DEFAULT_STRATEGIES = ("random", "least_confidence", "margin", "entropy", "bald")
# The pool subsample is the same for every strategy and seed, drawn from this seed.
POOL_SUBSAMPLE_SEED = 0


class ExperimentError(ValueError):
  """An experiment cannot run as configured (for example the pool is too small)."""


class ConfigMismatchError(ExperimentError):
  """An output folder holds an experiment with another configuration or other data."""


@dataclasses.dataclass(frozen=True)
class Config:
  """An experiment's whole configuration (it is saved beside the results).

  Attributes:
    dataset: the dataset's name (see :func:`jaxal.datasets.names`).
    strategies: the names of the strategies to compare (see :func:`jaxal.strategies.names`),
      each at most once.
    rounds: acquisition rounds (0 or more).
    budget: points acquired per round.
    initial: initial random labeled points.
    seeds: number of seeds, run as seeds ``0 .. seeds - 1``.
    model: ``"mlp"`` or ``"cnn"``.
    hidden: hidden units (mlp) or dense units (cnn).
    num_steps: training steps per round.
    batch_size: training minibatch size.
    learning_rate: Adam learning rate, above 0.
    retrain: ``"scratch"`` to re-initialise the model each round, or ``"warm"`` to
      warm-start it from the previous round.
    pool_subsample: use this many training points as the pool (0: the whole training split).
  """

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

  def validate(self) -> Config:
    """Checks every field; returns the configuration with Python ints and floats.

    NumPy integers and floats are accepted where an int or a float is meant;
    the returned copy holds them as Python numbers, as ``config.json`` saves them.

    Raises:
      ValueError: an unknown strategy, dataset, model or retrain mode, a
        repeated strategy, or a count or rate out of range.
      TypeError: a count that is not an int or a rate that is not a number.
    """
    if not self.strategies:
      raise ValueError("strategies must name at least one strategy")
    for name in self.strategies:
      checks.check_one_of(name, strategies_lib.REGISTRY, "strategy")
    if len(set(self.strategies)) != len(self.strategies):
      raise ValueError(f"strategies must not repeat a name, got {list(self.strategies)}")
    data_lib.check_name(self.dataset)
    checks.check_one_of(self.model, MODELS, "model")
    checks.check_one_of(self.retrain, ("scratch", "warm"), "retrain mode")
    fixed = {}
    for field in ("rounds", "pool_subsample"):
      fixed[field] = checks.check_nonnegative_int(getattr(self, field), field)
    for field in ("budget", "initial", "seeds", "num_steps", "batch_size", "hidden"):
      fixed[field] = checks.check_positive_int(getattr(self, field), field)
    fixed["learning_rate"] = checks.check_float(
      self.learning_rate, "learning_rate", low=0.0, low_open=True
    )
    return dataclasses.replace(self, **fixed)

  @classmethod
  def from_dict(cls, d: dict[str, Any]) -> Config:
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
  """The labeled-set size at each measured round: ``initial + r * budget`` for ``r`` in 0..rounds.

  Args:
    cfg: the configuration.

  Returns:
    ``rounds + 1`` sizes, the initial set first.
  """
  return [cfg.initial + r * cfg.budget for r in range(cfg.rounds + 1)]


def check_fits(cfg: Config, ds: data_lib.Dataset) -> None:
  """Checks that the pool holds every label the experiment will ask for.

  Args:
    cfg: the configuration.
    ds: the dataset it runs on.

  Raises:
    ExperimentError: ``initial + rounds * budget`` is larger than the pool.
  """
  n = ds.x_train.shape[0]
  if cfg.initial + cfg.rounds * cfg.budget > n:
    raise ExperimentError(
      f"initial + rounds * budget = {cfg.initial + cfg.rounds * cfg.budget} is larger than "
      f"the pool of {n} points of {cfg.dataset}"
    )


def load_data(
  cfg: Config, *, data_dir: str | None = None, manual_dir: str | None = None, download: bool = True
) -> data_lib.Dataset:
  """The experiment's dataset, its pool subsampled when ``cfg.pool_subsample`` asks.

  The subsample (``pool_subsample`` points of the training split, without
  replacement, in index order) is drawn once from ``POOL_SUBSAMPLE_SEED``: every
  strategy and seed sees the same pool.

  Args:
    cfg: the configuration (``dataset`` and ``pool_subsample``).
    data_dir: where TFDS datasets are prepared (None: TFDS's default).
    manual_dir: a folder with the dataset's original files, used instead of
      downloading.
    download: whether TFDS may download a dataset that is not prepared.

  Returns:
    The :class:`~jaxal.datasets.Dataset`, its training split (the pool) subsampled.
  """
  ds = data_lib.load_dataset(
    cfg.dataset, data_dir=data_dir, manual_dir=manual_dir, download=download
  )
  n = ds.x_train.shape[0]
  if cfg.pool_subsample and cfg.pool_subsample < n:
    rng = np.random.default_rng(POOL_SUBSAMPLE_SEED)
    idx = np.sort(rng.choice(n, cfg.pool_subsample, replace=False))
    ds = ds._replace(x_train=ds.x_train[idx], y_train=ds.y_train[idx])
  return ds
