"""The BADGE strategy: closed-form and exact embeddings, invariants, registry, bad input."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import check_invariants

from jaxal import models
from jaxal import strategies


def setup(n=40):
  module = models.MLP(num_classes=3, hidden=(8,))
  x = jax.random.normal(jax.random.key(0), (n, 5))
  params = models.init_params(jax.random.key(1), module, x)
  return models.from_linen(module), params, x


def ref_embedding_sq_norms(logits, features):
  """‖(p − onehot(ŷ)) ⊗ [z, 1]‖² from the definition, float64."""
  logits = np.asarray(logits, np.float64)
  p = np.exp(logits - logits.max(1, keepdims=True))
  p /= p.sum(1, keepdims=True)
  a = p - np.eye(p.shape[1])[p.argmax(1)]
  return (a**2).sum(1) * ((np.asarray(features, np.float64) ** 2).sum(1) + 1.0)


@pytest.mark.parametrize("exact", [False, True])
def test_badge_invariants_and_max_norm_first(exact, getkey):
  model, params, x = setup()
  labeled = jnp.arange(40) % 4 == 0
  strategy = strategies.badge(exact=exact)
  assert strategy.name == "badge"
  idx = strategy.acquire(getkey(), model, params, x, labeled, 7)
  check_invariants(idx, 40, 7, labeled)
  logits, features = models.predict(model, params, x)
  norms = np.where(np.asarray(labeled), -1.0, ref_embedding_sq_norms(logits, features))
  assert int(idx[0]) == int(np.argmax(norms))
  # The whole unlabeled pool.
  idx = strategy.acquire(getkey(), model, params, x, labeled, 30)
  check_invariants(idx, 40, 30, labeled)


class TempHead(nn.Module):
  @nn.compact
  def __call__(self, x, train: bool = False):
    f = nn.relu(nn.Dense(6, name="body")(x))
    log_t = self.param("log_temperature", nn.initializers.constant(0.5), ())
    return nn.Dense(3, name="out")(f) * jnp.exp(-log_t), f


def test_badge_exact_on_a_temperature_head(getkey):
  x = jax.random.normal(jax.random.key(2), (20, 4))
  module = TempHead()
  params = models.init_params(jax.random.key(3), module, x)
  model = models.from_linen(module)
  strategy = strategies.badge(exact=True, head="/")  # every parameter
  labeled = jnp.arange(20) < 3
  check_invariants(strategy.acquire(getkey(), model, params, x, labeled, 5), 20, 5, labeled)


def test_badge_is_registered():
  assert "badge" in strategies.names()
  assert strategies.get("badge", bias=False).name == "badge"


def test_badge_bad_input(getkey):
  model, params, x = setup()
  with pytest.raises(ValueError, match="exact=True"):
    strategies.badge(head="head")
  with pytest.raises(ValueError, match="unknown first"):
    strategies.badge(first="farthest")
  with pytest.raises(ValueError, match="larger than the 10 unlabeled"):
    strategies.badge().acquire(getkey(), model, params, x, jnp.arange(40) < 30, 11)
  bad = jax.tree.map(lambda t: t, params)
  bad["head"]["bias"] = bad["head"]["bias"].at[0].set(jnp.nan)
  with pytest.raises(ValueError, match="NaN"):
    strategies.badge().acquire(getkey(), model, bad, x, jnp.zeros(40, bool), 3)
