"""AFK-MC² seeding (kmeans_pp(method="mcmc")): invariants and seeding cost."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import check_invariants
from conftest import count_traces

from jaxal import selection
from jaxal._src import distances
from jaxal.embeddings import GradEmbedding


def _clustered(seed, n=3000, d=8, clusters=15):
  rng = np.random.default_rng(seed)
  centres = rng.normal(size=(clusters, d)) * 10
  return jnp.asarray(
    (centres[rng.integers(0, clusters, n)] + rng.normal(size=(n, d))).astype(np.float32)
  )


def _cost(x, idx):
  """k-means potential: sum over points of the squared distance to the nearest centre."""
  return float(jnp.sum(distances.min_sq_dist(x, x[idx])[0]))


def test_mcmc_cost_within_factor_of_exact_kmeans_pp():
  """On clustered data AFK-MC² seeds as well as exact k-means++ (mean over keys, factor 1.5)
  and far better than uniform seeding."""
  x = _clustered(0)
  k, keys = 15, [jax.random.key(s) for s in range(8)]
  exact = np.mean([_cost(x, selection.kmeans_pp(kk, x, k, first="random")) for kk in keys])
  mcmc = np.mean(
    [_cost(x, selection.kmeans_pp(kk, x, k, first="random", method="mcmc")) for kk in keys]
  )
  uniform = np.mean([_cost(x, selection.random(kk, x.shape[0], k)) for kk in keys])
  assert mcmc <= 1.5 * exact, (mcmc, exact)
  assert mcmc < 0.5 * uniform, (mcmc, uniform)


def test_mcmc_invariants_labeled_duplicates_and_full_budget():
  x = jnp.concatenate([_clustered(1, n=60), jnp.zeros((20, 8))])  # 20 identical points
  mask = jnp.zeros(80, bool).at[::4].set(True)
  for k in (10, 60):  # 60 = every unlabeled point
    for first in ("max_norm", "random"):
      idx = np.asarray(
        selection.kmeans_pp(
          jax.random.key(k), x, k, labeled_mask=mask, method="mcmc", chain_length=5, first=first
        )
      )
      check_invariants(idx, 80, k, mask)


def test_mcmc_is_deterministic_one_compile_and_factorised():
  rng = np.random.default_rng(2)
  emb = GradEmbedding(
    jnp.asarray(rng.normal(size=(200, 4)), jnp.float32),
    jnp.asarray(rng.normal(size=(200, 6)), jnp.float32),
  )
  with count_traces() as c:
    a = selection.kmeans_pp(jax.random.key(0), emb, 12, method="mcmc", chain_length=20)
    b = selection.kmeans_pp(jax.random.key(0), emb, 12, method="mcmc", chain_length=20)
    selection.kmeans_pp(jax.random.key(1), emb, 12, method="mcmc", chain_length=20)
  np.testing.assert_array_equal(a, b)
  assert c["kmeans_pp_core"] == 1
  dense = selection.kmeans_pp(jax.random.key(0), emb.dense(), 12, method="mcmc", chain_length=20)
  # Same proposal and chain on the same geometry; float rounding may differ far down the order.
  assert int(dense[0]) == int(a[0])


def test_mcmc_bad_arguments():
  x = jnp.ones((10, 2))
  with pytest.raises(ValueError, match="unknown method 'fast'; valid names are: exact, mcmc"):
    selection.kmeans_pp(jax.random.key(0), x, 2, method="fast")
  with pytest.raises(ValueError, match="chain_length must be a positive int"):
    selection.kmeans_pp(jax.random.key(0), x, 2, method="mcmc", chain_length=0)


def test_mcmc_accepts_numpy_integers():
  x = jax.random.normal(jax.random.key(3), (40, 2))
  key = jax.random.key(0)
  np.testing.assert_array_equal(
    selection.kmeans_pp(key, x, np.int64(4), method="mcmc", chain_length=np.int32(10)),
    selection.kmeans_pp(key, x, 4, method="mcmc", chain_length=10),
  )
