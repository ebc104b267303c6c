"""The factorised gradient embedding ``a ⊗ z`` and its algebra (norms, inner products).

A :class:`GradEmbedding` stands for the ``[num_points, num_classes * feat_dim]``
matrix of per-example outer products without building it; it depends on
``jax`` only, so the distance layer below the embeddings can use it.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp


class GradEmbedding(NamedTuple):
  """Factorised per-example embedding ``a[n] ⊗ z[n]`` (class-major when dense).

  For BADGE, ``a = p - onehot(ŷ)`` and ``z`` the penultimate features (with a
  trailing 1 when the bias gradient is included), so row ``n`` of
  :meth:`dense` is the gradient of the loss at ``ŷ`` w.r.t. the last layer's
  weights, laid out class by class as in DISTIL.

  Attributes:
    a: ``[num_points, num_classes]`` float, the class factor (for BADGE ``p - onehot(ŷ)``).
    z: ``[num_points, feat_dim]`` float, the feature factor (for BADGE the penultimate
      features, with a trailing 1 when the bias gradient is included).
  """

  a: jax.Array  # shape=[num_points, num_classes]
  z: jax.Array  # shape=[num_points, feat_dim]

  @property
  def num_points(self) -> int:
    return self.a.shape[0]

  @property
  def dim(self) -> int:
    """Dimension of the dense embedding, ``num_classes * feat_dim``."""
    return self.a.shape[-1] * self.z.shape[-1]

  def dense(self) -> jax.Array:
    """The ``[num_points, num_classes * feat_dim]`` matrix (class-major)."""
    a, z = self.a, self.z
    return (a[..., :, None] * z[..., None, :]).reshape(*a.shape[:-1], self.dim)

  def sq_norms(self) -> jax.Array:
    """``[num_points]`` squared norms ``‖a‖²‖z‖²``."""
    return jnp.sum(self.a * self.a, -1) * jnp.sum(self.z * self.z, -1)

  def inner(self, other: GradEmbedding) -> jax.Array:
    """``[num_points, other.num_points]`` inner products ``(a·b)(z·w)``."""
    return (self.a @ other.a.T) * (self.z @ other.z.T)
