"""jaxal: active learning in JAX.

Pure, jitted acquisition functions (uncertainty, Bayesian, diversity, ...),
composed by a small stateless loop over Flax train states.
"""

from jaxal import adversarial
from jaxal import bayes
from jaxal import datasets
from jaxal import embeddings
from jaxal import experiment
from jaxal import glister
from jaxal import loop
from jaxal import models
from jaxal import neighbors
from jaxal import networks
from jaxal import scores
from jaxal import selection
from jaxal import strategies
from jaxal import streaming
from jaxal import submodular
from jaxal._src.compile_cache import enable_compilation_cache
from jaxal._src.strategies.base import Strategy
from jaxal._src.version import __version__

__all__ = (
  "Strategy",
  "__version__",
  "adversarial",
  "bayes",
  "datasets",
  "embeddings",
  "enable_compilation_cache",
  "experiment",
  "glister",
  "loop",
  "models",
  "neighbors",
  "networks",
  "scores",
  "selection",
  "strategies",
  "streaming",
  "submodular",
)
