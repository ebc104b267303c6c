"""The model interface: logits, features and MC-dropout passes from Flax models.

``MLP`` and ``CNN`` are re-exported from :mod:`jaxal.networks`, where they live.
"""

from jaxal._src.ensembles import ensemble
from jaxal._src.models import Model
from jaxal._src.models import Predictions
from jaxal._src.models import apply
from jaxal._src.models import dropout_flag
from jaxal._src.models import from_apply_fn
from jaxal._src.models import from_linen
from jaxal._src.models import from_nnx
from jaxal._src.models import from_train_state
from jaxal._src.models import init_params
from jaxal._src.models import load_factory
from jaxal._src.models import predict
from jaxal._src.models import predict_mc
from jaxal._src.networks import CNN
from jaxal._src.networks import MLP

__all__ = (
  "CNN",
  "MLP",
  "Model",
  "Predictions",
  "apply",
  "dropout_flag",
  "ensemble",
  "from_apply_fn",
  "from_linen",
  "from_nnx",
  "from_train_state",
  "init_params",
  "load_factory",
  "predict",
  "predict_mc",
)
