"""Submodular set functions over similarity kernels, and greedy / lazy / stochastic maximisers."""

from jaxal._src.submodular import CONCAVE
from jaxal._src.submodular import FUNCTIONS
from jaxal._src.submodular import METRICS
from jaxal._src.submodular import OPTIMIZERS
from jaxal._src.submodular import Selection
from jaxal._src.submodular import SetFunction
from jaxal._src.submodular import SparseKernel
from jaxal._src.submodular import facility_location
from jaxal._src.submodular import feature_based
from jaxal._src.submodular import graph_cut
from jaxal._src.submodular import greedy
from jaxal._src.submodular import knn_kernel
from jaxal._src.submodular import lazy_greedy
from jaxal._src.submodular import make
from jaxal._src.submodular import marginal_gains
from jaxal._src.submodular import maximize
from jaxal._src.submodular import saturated_coverage
from jaxal._src.submodular import similarity_kernel
from jaxal._src.submodular import stochastic_greedy
from jaxal._src.submodular import sum_redundancy
from jaxal._src.submodular import value

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
