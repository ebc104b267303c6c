"""Acquisition strategies: `Strategy` values built by factories."""

from jaxal._src.strategies.adversarial_sampling import bim
from jaxal._src.strategies.adversarial_sampling import deepfool
from jaxal._src.strategies.badge import badge
from jaxal._src.strategies.bait_sampling import bait
from jaxal._src.strategies.base import Strategy
from jaxal._src.strategies.base import score_strategy
from jaxal._src.strategies.bayesian import bald
from jaxal._src.strategies.bayesian import batchbald
from jaxal._src.strategies.bayesian import power
from jaxal._src.strategies.bayesian import softmax
from jaxal._src.strategies.bayesian import softrank
from jaxal._src.strategies.cluster_margin import cluster_margin
from jaxal._src.strategies.cluster_margin import cluster_margin_clusters
from jaxal._src.strategies.diversity import coreset
from jaxal._src.strategies.diversity import fass
from jaxal._src.strategies.diversity import kmeans_sampling
from jaxal._src.strategies.diversity import submodular
from jaxal._src.strategies.epig_sampling import epig
from jaxal._src.strategies.glister_active import glister
from jaxal._src.strategies.gradmatch import gradmatch
from jaxal._src.strategies.low_budget import probcover
from jaxal._src.strategies.low_budget import probcover_delta
from jaxal._src.strategies.low_budget import typiclust
from jaxal._src.strategies.partitioned import partitioned
from jaxal._src.strategies.random_sampling import random
from jaxal._src.strategies.registry import get
from jaxal._src.strategies.registry import names
from jaxal._src.strategies.registry import register
from jaxal._src.strategies.targeted import scg
from jaxal._src.strategies.targeted import scmi
from jaxal._src.strategies.targeted import smi
from jaxal._src.strategies.uncertainty_sampling import entropy
from jaxal._src.strategies.uncertainty_sampling import least_confidence
from jaxal._src.strategies.uncertainty_sampling import margin
from jaxal._src.strategies.uncertainty_sampling import mc_entropy
from jaxal._src.strategies.uncertainty_sampling import mc_least_confidence
from jaxal._src.strategies.uncertainty_sampling import mc_margin
from jaxal._src.strategies.uncertainty_sampling import mc_ratio
from jaxal._src.strategies.uncertainty_sampling import mean_std
from jaxal._src.strategies.uncertainty_sampling import ratio
from jaxal._src.strategies.uncertainty_sampling import variation_ratio

__all__ = (
  "Strategy",
  "badge",
  "bait",
  "bald",
  "batchbald",
  "bim",
  "cluster_margin",
  "cluster_margin_clusters",
  "coreset",
  "deepfool",
  "entropy",
  "epig",
  "fass",
  "get",
  "glister",
  "gradmatch",
  "kmeans_sampling",
  "least_confidence",
  "margin",
  "mc_entropy",
  "mc_least_confidence",
  "mc_margin",
  "mc_ratio",
  "mean_std",
  "names",
  "partitioned",
  "power",
  "probcover",
  "probcover_delta",
  "random",
  "ratio",
  "register",
  "scg",
  "scmi",
  "score_strategy",
  "smi",
  "softmax",
  "softrank",
  "submodular",
  "typiclust",
  "variation_ratio",
)
