"""Ready-made Flax linen networks that return ``(logits, features)``: :class:`MLP` and :class:`CNN`.

Both end in a Dense head named ``"head"`` (the last layer of gradient
embeddings) with dropout before it (for MC-dropout strategies). Wrap them with
:func:`jaxal.models.from_linen`, or pass them to
:func:`jaxal.loop.create_train_state`.
"""

from jaxal._src.networks import CNN
from jaxal._src.networks import MLP

__all__ = (
  "CNN",
  "MLP",
)
