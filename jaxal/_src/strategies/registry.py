"""The strategy registry: the names of ``jaxal run --strategies``, mapped to their factories."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from jaxal._src import checks
from jaxal._src.strategies import adversarial_sampling
from jaxal._src.strategies import badge
from jaxal._src.strategies import bayesian
from jaxal._src.strategies import diversity
from jaxal._src.strategies import epig_sampling
from jaxal._src.strategies import glister_active
from jaxal._src.strategies import random_sampling
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
  "epig": epig_sampling.epig,
  # New strategy families register their factories here.
}


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
