"""Submodular set functions over similarity kernels, information measures over query and private
sets (SIMILAR), and greedy / lazy / stochastic maximisers."""

from jaxal._src.submodular.functions import CONCAVE
from jaxal._src.submodular.functions import FUNCTIONS
from jaxal._src.submodular.functions import SetFunction
from jaxal._src.submodular.functions import facility_location
from jaxal._src.submodular.functions import feature_based
from jaxal._src.submodular.functions import graph_cut
from jaxal._src.submodular.functions import make
from jaxal._src.submodular.functions import saturated_coverage
from jaxal._src.submodular.functions import sum_redundancy
from jaxal._src.submodular.information import CG_FUNCTIONS
from jaxal._src.submodular.information import CMI_FUNCTIONS
from jaxal._src.submodular.information import MEASURES
from jaxal._src.submodular.information import SMI_FUNCTIONS
from jaxal._src.submodular.information import InformationKernels
from jaxal._src.submodular.information import cross_kernel
from jaxal._src.submodular.information import flcg
from jaxal._src.submodular.information import flcmi
from jaxal._src.submodular.information import flqmi
from jaxal._src.submodular.information import flvmi
from jaxal._src.submodular.information import gccg
from jaxal._src.submodular.information import gcmi
from jaxal._src.submodular.information import information_kernels
from jaxal._src.submodular.information import logdetcg
from jaxal._src.submodular.information import logdetcmi
from jaxal._src.submodular.information import logdetmi
from jaxal._src.submodular.information import make_information
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
  "CG_FUNCTIONS",
  "CMI_FUNCTIONS",
  "CONCAVE",
  "FUNCTIONS",
  "InformationKernels",
  "MEASURES",
  "METRICS",
  "OPTIMIZERS",
  "SMI_FUNCTIONS",
  "Selection",
  "SetFunction",
  "SparseKernel",
  "cross_kernel",
  "facility_location",
  "feature_based",
  "flcg",
  "flcmi",
  "flqmi",
  "flvmi",
  "gccg",
  "gcmi",
  "graph_cut",
  "greedy",
  "information_kernels",
  "knn_kernel",
  "lazy_greedy",
  "logdetcg",
  "logdetcmi",
  "logdetmi",
  "make",
  "make_information",
  "marginal_gains",
  "maximize",
  "saturated_coverage",
  "similarity_kernel",
  "stochastic_greedy",
  "sum_redundancy",
  "value",
)
