"""Adversarial distances to the decision boundary: DeepFool and BIM, vmapped over the pool."""

from jaxal._src.adversarial import Attack
from jaxal._src.adversarial import bim
from jaxal._src.adversarial import deepfool

__all__ = (
  "Attack",
  "bim",
  "deepfool",
)
