"""The strategy registry: the names of ``jaxal run --strategies``, mapped to their factories."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from jaxal._src import checks
from jaxal._src.strategies import adversarial_sampling
from jaxal._src.strategies import badge
from jaxal._src.strategies import bait_sampling
from jaxal._src.strategies import bayesian
from jaxal._src.strategies import cluster_margin
from jaxal._src.strategies import diversity
from jaxal._src.strategies import epig_sampling
from jaxal._src.strategies import glister_active
from jaxal._src.strategies import gradmatch
from jaxal._src.strategies import low_budget
from jaxal._src.strategies import partitioned
from jaxal._src.strategies import random_sampling
from jaxal._src.strategies import targeted
from jaxal._src.strategies import uncertainty_sampling
from jaxal._src.strategies.base import Strategy

REGISTRY: dict[str, Callable[..., Strategy]] = {
  "random": random_sampling.random,
  "least_confidence": uncertainty_sampling.least_confidence,
  "margin": uncertainty_sampling.margin,
  "entropy": uncertainty_sampling.entropy,
  "ratio": uncertainty_sampling.ratio,
  "mc_least_confidence": uncertainty_sampling.mc_least_confidence,
  "mc_margin": uncertainty_sampling.mc_margin,
  "mc_entropy": uncertainty_sampling.mc_entropy,
  "mc_ratio": uncertainty_sampling.mc_ratio,
  "variation_ratio": uncertainty_sampling.variation_ratio,
  "mean_std": uncertainty_sampling.mean_std,
  "bald": bayesian.bald,
  "badge": badge.badge,
  "batchbald": bayesian.batchbald,
  "power": bayesian.power,
  "softmax": bayesian.softmax,
  "softrank": bayesian.softrank,
  "glister": glister_active.glister,
  "deepfool": adversarial_sampling.deepfool,
  "bim": adversarial_sampling.bim,
  "coreset": diversity.coreset,
  "kmeans_sampling": diversity.kmeans_sampling,
  "submodular": diversity.submodular,
  "fass": diversity.fass,
  "gradmatch": gradmatch.gradmatch,
  "partitioned": partitioned.partitioned,
  "smi": targeted.smi,
  "scg": targeted.scg,
  "scmi": targeted.scmi,
  "typiclust": low_budget.typiclust,
  "probcover": low_budget.probcover,
  "cluster_margin": cluster_margin.cluster_margin,
  "epig": epig_sampling.epig,
  "bait": bait_sampling.bait,
  # New strategy families register their factories here.
}


# The names shipped with jaxal: :func:`register` refuses to replace them unless asked to.
BUILTIN = frozenset(REGISTRY)
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def register(
  name: str, factory: Callable[..., Strategy], *, overwrite: bool = False
) -> Callable[..., Strategy]:
  """Registers a strategy factory under ``name``, for :func:`get` and ``jaxal run --strategies``.

  The factory's keyword arguments are the strategy's settings: ``jaxal run
  --strategies "name(k=v)"`` and :func:`jaxal.experiment.run` pass them to it.

  Args:
    name: a Python identifier (letters, digits and ``_``, not starting with a digit).
    factory: a callable returning a :class:`Strategy`.
    overwrite: replace an existing registration (a built-in name included).

  Returns:
    ``factory`` (so that ``register`` can be used as ``register("x", f)`` inline).

  Raises:
    ValueError: ``name`` is not an identifier, or is already registered and
      ``overwrite`` is False.
    TypeError: ``name`` is not a str or ``factory`` is not callable.

  Example:
    >>> from jaxal import strategies
    >>> _ = strategies.register("my_entropy", strategies.entropy, overwrite=True)
    >>> strategies.get("my_entropy").name
    'entropy'
  """
  if not isinstance(name, str):
    raise TypeError(f"strategy name must be a str, got {name!r} of type {type(name).__name__}")
  if not _NAME.fullmatch(name):
    raise ValueError(
      f"strategy name must be an identifier (letters, digits and '_', not starting with a "
      f"digit), got {name!r}"
    )
  if not callable(factory):
    raise TypeError(
      f"factory for strategy {name!r} must be callable, got {factory!r} of type "
      f"{type(factory).__name__}"
    )
  overwrite = checks.check_bool(overwrite, "overwrite")
  if name in REGISTRY and not overwrite:
    what = "a built-in strategy" if name in BUILTIN else "already registered"
    raise ValueError(f"strategy {name!r} is {what}; pass overwrite=True to replace it")
  REGISTRY[name] = factory
  return factory


def get(name: str, **kwargs: Any) -> Strategy:
  """The strategy registered as ``name``, built with ``kwargs``.

  Args:
    name: a registered name (see :func:`names`).
    **kwargs: the factory's keyword arguments (its hyperparameters).

  Returns:
    The :class:`Strategy` the factory builds.

  Raises:
    ValueError: for an unknown name; the message lists the valid ones.
  """
  checks.check_one_of(name, REGISTRY, "strategy")
  return REGISTRY[name](**kwargs)


def names() -> list[str]:
  """Every registered strategy name, sorted."""
  return sorted(REGISTRY)
