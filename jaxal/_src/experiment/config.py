"""An experiment's configuration, the models it names and the data it runs on."""

from __future__ import annotations

import ast
import dataclasses
import functools
import inspect
import math
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import numpy as np
import optax
from flax import nnx

from jaxal._src import checks
from jaxal._src import data as data_lib
from jaxal._src import loop
from jaxal._src import models as models_lib
from jaxal._src import networks
from jaxal._src.strategies import registry as strategies_lib
from jaxal._src.strategies.base import Strategy

DEFAULT_STRATEGIES = ("random", "least_confidence", "margin", "entropy", "bald")
# The pool subsample is the same for every strategy and seed, drawn from this seed.
POOL_SUBSAMPLE_SEED = 0
# The seed of the train/test split of data without a test split (a CSV, an .npz without x_test).
SPLIT_SEED = 0
# Training protocols (``--protocol``): "fixed" trains ``num_steps`` steps each round; the
# others take their ``loop.fit`` settings from ``loop.PROTOCOLS[name]``.
PROTOCOLS = ("fixed", "badge", "distil")
# The fields that may differ between runs merged into one results folder.
MERGEABLE = ("strategies", "seeds")


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
    model: ``"mlp"``, ``"cnn"``, or ``"package.module:factory"``: a callable taking the
      number of classes and an example input ``[1, ...]`` and returning a Flax module.
    hidden: hidden units (mlp) or dense units (cnn).
    num_steps: training steps per round.
    batch_size: training minibatch size.
    learning_rate: Adam learning rate, above 0.
    retrain: ``"scratch"`` to re-initialise the model each round, or ``"warm"`` to
      warm-start it from the previous round.
    pool_subsample: use this many training points as the pool (0: the whole training split).
    protocol: the training protocol per round: ``"fixed"`` (``num_steps`` steps), or
      ``"badge"`` / ``"distil"`` (the settings of ``loop.PROTOCOLS``).
    label_column: the label column of a CSV/TSV dataset (name or index; None: the last).
    test_fraction: the test share of a seeded split, for data without a test split.
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
  protocol: str = "fixed"
  label_column: str | int | None = None
  test_fraction: float = 0.2

  def validate(self) -> Config:
    """Checks every field; returns the configuration with Python ints and floats.

    NumPy integers and floats are accepted where an int or a float is meant;
    the returned copy holds them as Python numbers, as ``config.json`` saves them.

    Strategy specs are put in canonical form (``name(k=v, ...)``, settings
    sorted, defaults as given); each is built once to check its settings.

    Raises:
      ValueError: an unknown strategy, setting, dataset, model, protocol or
        retrain mode, a repeated strategy, or a count or rate out of range.
      TypeError: a count that is not an int or a rate that is not a number.
    """
    if isinstance(self.strategies, str) or not self.strategies:
      raise ValueError(
        f"strategies must be a non-empty sequence of strategy specs, got {self.strategies!r}"
      )
    specs = tuple(canonical_spec(s) for s in self.strategies)
    if len(set(specs)) != len(specs):
      raise ValueError(f"strategies must not repeat a strategy, got {list(specs)}")
    for spec in specs:
      build_strategy(spec)
    data_lib.check_name(self.dataset)
    if not isinstance(self.model, str):
      raise TypeError(f"model must be a str, got {self.model!r}")
    if self.model not in MODELS:
      model_factory(self.model)
    checks.check_one_of(self.retrain, ("scratch", "warm"), "retrain mode")
    checks.check_one_of(self.protocol, PROTOCOLS, "protocol")
    if self.label_column is not None and not isinstance(self.label_column, str):
      checks.check_int(self.label_column, "label_column")
    fixed = {}
    for field in ("rounds", "pool_subsample"):
      fixed[field] = checks.check_nonnegative_int(getattr(self, field), field)
    for field in ("budget", "initial", "seeds", "num_steps", "batch_size", "hidden"):
      fixed[field] = checks.check_positive_int(getattr(self, field), field)
    fixed["learning_rate"] = checks.check_float(
      self.learning_rate, "learning_rate", low=0.0, low_open=True
    )
    if not math.isfinite(fixed["learning_rate"]):
      raise ValueError(f"learning_rate must be finite, got {self.learning_rate!r}")
    fixed["test_fraction"] = checks.check_float(
      self.test_fraction, "test_fraction", low=0.0, high=1.0, low_open=True, high_open=True
    )
    if isinstance(self.label_column, (int, np.integer)):
      fixed["label_column"] = int(self.label_column)
    return dataclasses.replace(self, strategies=specs, **fixed)

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


def model_factory(spec: str) -> Callable[..., Any]:
  """The model factory named by ``"package.module:factory"`` (:func:`jaxal.models.load_factory`).

  Args:
    spec: ``"package.module:attribute"`` (the attribute may be dotted).

  Returns:
    ``build(num_classes, example_x, *, rngs=None)`` returning a linen or NNX module.

  Raises:
    ValueError: ``spec`` is not ``module:attribute``, or the module or attribute does not
      exist.
    TypeError: the attribute is not callable.
  """
  return models_lib.load_factory(spec)


def build_module(cfg: Config, num_classes: int, example_x: Any) -> Any:
  """What :func:`jaxal.loop.create_train_state` takes for ``cfg.model``.

  Args:
    cfg: the configuration.
    num_classes: the dataset's number of classes.
    example_x: ``[1, ...]`` an example input (what a user's factory receives).

  Returns:
    A linen module, or for a factory of NNX modules a function of ``rngs`` building one (so
    that every round re-initialises it).
  """
  if cfg.model in MODELS:
    return _builtin_module(cfg.model, cfg.hidden, int(num_classes))
  build = model_factory(cfg.model)
  module = build(num_classes, example_x)
  if isinstance(module, nnx.Module):
    return functools.partial(build, num_classes, example_x)
  return module


@functools.lru_cache(maxsize=32)
def _builtin_module(name: str, hidden: int, num_classes: int) -> Any:
  # One module object per setting: a train state's ``apply_fn`` is the module's bound
  # ``apply``, which compares by the module's identity, and it is part of the state's tree
  # structure; sharing the module lets every strategy and seed share one compiled fit.
  return MODELS[name](SimpleNamespace(hidden=hidden), num_classes)


def protocol(cfg: Config) -> loop.Protocol | None:
  """The published protocol ``cfg.protocol`` names, or None for ``"fixed"`` (``num_steps``)."""
  return None if cfg.protocol == "fixed" else loop.PROTOCOLS[cfg.protocol]


def fit_options(cfg: Config) -> dict[str, Any]:
  """The keyword settings of ``loop.fit`` for ``cfg.protocol``.

  ``"fixed"`` is ``{"num_steps": cfg.num_steps, "batch_size": cfg.batch_size}``; a published
  protocol is ``loop.PROTOCOLS[cfg.protocol].fit_kwargs()`` (``epochs``,
  ``until_train_accuracy``, ``max_steps`` and its own ``batch_size``).
  """
  p = protocol(cfg)
  if p is None:
    return {"num_steps": cfg.num_steps, "batch_size": cfg.batch_size}
  return p.fit_kwargs()


def optimizer(cfg: Config) -> optax.GradientTransformation:
  """The optimiser of ``cfg.protocol``: Adam at ``cfg.learning_rate`` for ``"fixed"``, else the
  protocol's own (:meth:`jaxal.loop.Protocol.make_tx`); the same object for the same
  settings, so that runs share their compiled training loop."""
  return _optimizer(cfg.protocol, float(cfg.learning_rate))


@functools.lru_cache(maxsize=32)
def _optimizer(name: str, learning_rate: float) -> optax.GradientTransformation:
  # One transformation object per setting: a train state carries its ``tx`` in its tree
  # structure, so every strategy and seed of an experiment sharing it shares one compiled fit.
  if name == "fixed":
    return optax.adam(learning_rate)
  return loop.PROTOCOLS[name].make_tx()


# ---------------------------------------------------------------------------
# Strategy specs: "name" or "name(key=literal, ...)".


def split_specs(text: str) -> tuple[str, ...]:
  """Splits ``"bald(num_samples=50),badge(exact=True),random"`` at top-level commas.

  Args:
    text: comma-separated strategy specs; commas inside brackets or quotes stay.

  Returns:
    The specs, stripped, empty ones dropped.
  """
  out, depth, quote, cur = [], 0, "", []
  for ch in text:
    if quote:
      quote = "" if ch == quote else quote
    elif ch in "'\"":
      quote = ch
    elif ch in "([{":
      depth += 1
    elif ch in ")]}":
      depth -= 1
    elif ch == "," and depth == 0:
      out.append("".join(cur).strip())
      cur = []
      continue
    cur.append(ch)
  out.append("".join(cur).strip())
  return tuple(s for s in out if s)


def parse_spec(spec: str) -> tuple[str, dict[str, Any]]:
  """``"bald(num_samples=50)"`` -> ``("bald", {"num_samples": 50})``.

  Settings are keyword arguments of the registered factory, their values
  Python literals (``ast.literal_eval``), checked against the factory's
  signature.

  Args:
    spec: a registered name, optionally followed by ``(key=literal, ...)``.

  Returns:
    ``(name, settings)``.

  Raises:
    ValueError: a malformed spec, an unknown strategy, a positional or unknown
      setting (the message names it and lists the accepted ones), or a value
      that is not a literal.
  """
  if not isinstance(spec, str):
    raise TypeError(f"a strategy spec must be a str, got {spec!r} of type {type(spec).__name__}")
  try:
    node = ast.parse(spec.strip(), mode="eval").body
  except SyntaxError as e:
    raise ValueError(
      f"strategy {spec!r} is not 'name' or 'name(key=value, ...)' ({e.msg})"
    ) from None
  if isinstance(node, ast.Name):
    name, kwargs = node.id, {}
  elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
    name = node.func.id
    if node.args:
      raise ValueError(
        f"strategy {spec!r}: settings must be given by keyword, as {name}(key=value)"
      )
    kwargs = {}
    for kw in node.keywords:
      if kw.arg is None:
        raise ValueError(f"strategy {spec!r}: '**' is not a setting; write key=value")
      try:
        kwargs[kw.arg] = ast.literal_eval(kw.value)
      except ValueError:
        raise ValueError(
          f"strategy {spec!r}: the value of {kw.arg!r} ({ast.unparse(kw.value)}) is not a "
          "Python literal (a number, string, bool, None, tuple, list or dict)"
        ) from None
  else:
    raise ValueError(f"strategy {spec!r} is not 'name' or 'name(key=value, ...)'")
  checks.check_one_of(name, strategies_lib.REGISTRY, "strategy")
  factory = strategies_lib.REGISTRY[name]
  try:
    params = inspect.signature(factory).parameters
  except (TypeError, ValueError):  # pragma: no cover - builtins without a signature
    return name, kwargs
  if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
    accepted = [
      p.name
      for p in params.values()
      if p.kind in (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    ]
    for k in kwargs:
      if k not in accepted:
        raise ValueError(
          f"strategy {name!r} has no setting {k!r}; it accepts: "
          f"{', '.join(accepted) if accepted else 'no settings'}"
        )
  return name, kwargs


def canonical_spec(spec: str) -> str:
  """The canonical form of a spec: ``name`` or ``name(a=1, b='x')`` with settings sorted."""
  name, kwargs = parse_spec(spec)
  if not kwargs:
    return name
  return f"{name}({', '.join(f'{k}={kwargs[k]!r}' for k in sorted(kwargs))})"


def build_strategy(spec: str) -> Strategy:
  """The :class:`Strategy` a spec names, built by its factory with its settings.

  Raises:
    ValueError: a bad spec (see :func:`parse_spec`) or a setting its factory refuses.
  """
  name, kwargs = parse_spec(spec)
  try:
    strategy = strategies_lib.REGISTRY[name](**kwargs)
  except (ValueError, TypeError) as e:
    raise ValueError(f"strategy {spec!r}: {e}") from e
  if not isinstance(strategy, Strategy):
    raise TypeError(
      f"strategy {spec!r}: its factory returned {type(strategy).__name__}, not a Strategy"
    )
  return strategy


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
  cfg: Config,
  *,
  data_dir: str | None = None,
  manual_dir: str | None = None,
  download: bool = True,
  data: data_lib.Dataset | None = None,
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
    data: a :class:`~jaxal.datasets.Dataset` to run on instead of loading
      ``cfg.dataset`` (see :func:`jaxal.datasets.from_arrays`).

  Returns:
    The :class:`~jaxal.datasets.Dataset`, its training split (the pool) subsampled.

  """
  if data is not None:
    if not isinstance(data, data_lib.Dataset):
      raise TypeError(
        f"data must be a jaxal.datasets.Dataset (see datasets.from_arrays), got "
        f"{type(data).__name__}"
      )
    ds = data
  else:
    ds = data_lib.load_dataset(
      cfg.dataset,
      data_dir=data_dir,
      manual_dir=manual_dir,
      download=download,
      label_column=cfg.label_column,
      test_fraction=cfg.test_fraction,
      seed=SPLIT_SEED,
    )
  n = ds.x_train.shape[0]
  if cfg.pool_subsample and cfg.pool_subsample < n:
    rng = np.random.default_rng(POOL_SUBSAMPLE_SEED)
    idx = np.sort(rng.choice(n, cfg.pool_subsample, replace=False))
    ds = ds._replace(x_train=ds.x_train[idx], y_train=ds.y_train[idx])
  return ds
