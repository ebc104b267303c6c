"""Ready-made linen networks for active learning: :class:`MLP` and :class:`CNN`.

Both end in a Dense head named ``"head"`` and return ``(logits, features)``,
features being the head's input (the penultimate activations), with dropout
before the head for MC-dropout strategies. Any other Flax model works as well
through the adapters of :mod:`jaxal.models`.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax.numpy as jnp


class MLP(nn.Module):
  """A multilayer perceptron: flatten → [Dense → ReLU]* → Dropout → Dense head.

  Attributes:
    num_classes: K.
    hidden: widths of the hidden layers; the last is the feature dimension d.
    dropout_rate: dropout before the head (used by MC-dropout strategies).

  Returns ``(logits [B, K], features [B, d])`` from ``__call__(x, train=False)``.
  """

  num_classes: int
  hidden: Sequence[int] = (128,)
  dropout_rate: float = 0.3

  @nn.compact
  def __call__(self, x, train: bool = False):
    x = x.reshape(x.shape[0], -1).astype(jnp.float32)
    for i, width in enumerate(self.hidden):
      x = nn.relu(nn.Dense(width, name=f"dense_{i}")(x))
    features = x
    x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
    return nn.Dense(self.num_classes, name="head")(x), features


class CNN(nn.Module):
  """A small convolutional network for ``[B, H, W, C]`` images.

  [Conv 3x3 → ReLU → 2x2 max pool]* → flatten → Dense → ReLU → Dropout →
  Dense head. Returns ``(logits [B, K], features [B, dense])``; ``[B, H, W]``
  inputs get a channel axis.

  Attributes:
    num_classes: K.
    channels: output channels of the convolutions.
    dense: width of the last hidden Dense, the feature dimension d.
    dropout_rate: dropout before the head (used by MC-dropout strategies).
  """

  num_classes: int
  channels: Sequence[int] = (16, 32)
  dense: int = 64
  dropout_rate: float = 0.3

  @nn.compact
  def __call__(self, x, train: bool = False):
    x = x.astype(jnp.float32)
    if x.ndim == 3:
      x = x[..., None]
    for i, c in enumerate(self.channels):
      x = nn.relu(nn.Conv(c, (3, 3), name=f"conv_{i}")(x))
      x = nn.max_pool(x, (2, 2), strides=(2, 2), padding="SAME")
    x = x.reshape(x.shape[0], -1)
    features = nn.relu(nn.Dense(self.dense, name="dense")(x))
    x = nn.Dropout(self.dropout_rate, deterministic=not train)(features)
    return nn.Dense(self.num_classes, name="head")(x), features
