"""Strategies: the one layer that knows how scores, embeddings and selection combine.

Each strategy family lives in its own module; :data:`REGISTRY` maps the names
used by ``jaxal run --strategies`` to their factories.
"""

from __future__ import annotations

from typing import Any, Callable

from jaxal._src import checks
from jaxal._src.strategies import uncertainty
from jaxal._src.strategies import adversarial as adversarial_strategies
from jaxal._src.strategies import badge as badge_strategies
from jaxal._src.strategies import bayesian
from jaxal._src.strategies import diversity as diversity_strategies
from jaxal._src.strategies import glister as glister_strategies
from jaxal._src.strategies.base import Strategy

REGISTRY: dict[str, Callable[..., Strategy]] = {
    "random": uncertainty.random,
    "least_confidence": uncertainty.least_confidence,
    "margin": uncertainty.margin,
    "entropy": uncertainty.entropy,
    "ratio": uncertainty.ratio,
    "mc_least_confidence": uncertainty.mc_least_confidence,
    "mc_margin": uncertainty.mc_margin,
    "mc_entropy": uncertainty.mc_entropy,
    "mc_ratio": uncertainty.mc_ratio,
    "variation_ratio": uncertainty.variation_ratio,
    "mean_std": uncertainty.mean_std,
    "bald": uncertainty.bald,
    "badge": badge_strategies.badge,
    "batchbald": bayesian.batchbald,
    "power": bayesian.power,
    "softmax": bayesian.softmax,
    "softrank": bayesian.softrank,
    "glister": glister_strategies.glister,
    "deepfool": adversarial_strategies.deepfool,
    "bim": adversarial_strategies.bim,
    "coreset": diversity_strategies.coreset,
    "kmeans_sampling": diversity_strategies.kmeans_sampling,
    "submodular": diversity_strategies.submodular,
    "fass": diversity_strategies.fass,
    # New strategy families register their factories here.
}


def get(name: str, **kwargs: Any) -> Strategy:
  """The strategy registered as ``name``, built with ``kwargs``.

  Raises:
    ValueError: for an unknown name; the message lists the valid ones.
  """
  checks.check_one_of(name, REGISTRY, "strategy")
  return REGISTRY[name](**kwargs)


def names() -> list[str]:
  """Every registered strategy name, sorted."""
  return sorted(REGISTRY)
