"""Submodular set functions over similarity kernels, and greedy / lazy / stochastic maximisers."""

from jaxal._src.submodular.functions import CONCAVE
from jaxal._src.submodular.functions import FUNCTIONS
from jaxal._src.submodular.functions import SetFunction
from jaxal._src.submodular.functions import facility_location
from jaxal._src.submodular.functions import feature_based
from jaxal._src.submodular.functions import graph_cut
from jaxal._src.submodular.functions import make
from jaxal._src.submodular.functions import saturated_coverage
from jaxal._src.submodular.functions import sum_redundancy
from jaxal._src.submodular.kernels import METRICS
from jaxal._src.submodular.kernels import SparseKernel
from jaxal._src.submodular.kernels import knn_kernel
from jaxal._src.submodular.kernels import similarity_kernel
from jaxal._src.submodular.maximizers import OPTIMIZERS
from jaxal._src.submodular.maximizers import Selection
from jaxal._src.submodular.maximizers import greedy
from jaxal._src.submodular.maximizers import lazy_greedy
from jaxal._src.submodular.maximizers import marginal_gains
from jaxal._src.submodular.maximizers import maximize
from jaxal._src.submodular.maximizers import stochastic_greedy
from jaxal._src.submodular.maximizers import value

__all__ = (
  "CONCAVE",
  "FUNCTIONS",
  "METRICS",
  "OPTIMIZERS",
  "Selection",
  "SetFunction",
  "SparseKernel",
  "facility_location",
  "feature_based",
  "graph_cut",
  "greedy",
  "knn_kernel",
  "lazy_greedy",
  "make",
  "marginal_gains",
  "maximize",
  "saturated_coverage",
  "similarity_kernel",
  "stochastic_greedy",
  "sum_redundancy",
  "value",
)
