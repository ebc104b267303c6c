"""The stateless active-learning loop over Flax train states."""

from jaxal._src.loop import PROTOCOLS
from jaxal._src.loop import ALState
from jaxal._src.loop import FitInfo
from jaxal._src.loop import Protocol
from jaxal._src.loop import TrainState
from jaxal._src.loop import accuracy
from jaxal._src.loop import acquire
from jaxal._src.loop import create_train_state
from jaxal._src.loop import fit
from jaxal._src.loop import init
from jaxal._src.loop import label
from jaxal._src.loop import loss_fn
from jaxal._src.loop import reinit
from jaxal._src.loop import restore_train_state
from jaxal._src.loop import round_keys
from jaxal._src.loop import run_round
from jaxal._src.loop import save_train_state
from jaxal._src.loop import train_step

__all__ = (
  "PROTOCOLS",
  "ALState",
  "FitInfo",
  "Protocol",
  "TrainState",
  "accuracy",
  "acquire",
  "create_train_state",
  "fit",
  "init",
  "label",
  "loss_fn",
  "reinit",
  "restore_train_state",
  "round_keys",
  "run_round",
  "save_train_state",
  "train_step",
)
