"""Sharded equals unsharded for the diversity selectors; the pool is never gathered."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from conftest import assert_no_pool_gather

from jaxal import selection
from jaxal._src import sharding
from jaxal._src.selection import k_center
from jaxal._src.selection import kmeans_pp
from jaxal.embeddings import GradEmbedding

N, D = 64, 5


def _points(seed=0):
  return jax.random.normal(jax.random.key(seed), (N, D))


def test_k_center_greedy(shard):
  x = _points()
  mask = jnp.zeros(N, bool).at[jnp.array([2, 17, 40])].set(True)
  for labeled in (mask, None):
    want = selection.k_center_greedy(jax.random.key(1), x, 10, labeled_mask=labeled)
    got = selection.k_center_greedy(
      jax.random.key(1), shard(x), 10, labeled_mask=None if labeled is None else shard(labeled)
    )
    np.testing.assert_array_equal(got, want)


def test_k_center_greedy_factorised(shard):
  rng = np.random.default_rng(0)
  emb = GradEmbedding(
    jnp.asarray(rng.normal(size=(N, 3)), jnp.float32),
    jnp.asarray(rng.normal(size=(N, 4)), jnp.float32),
  )
  mask = jnp.zeros(N, bool).at[5].set(True)
  want = selection.k_center_greedy(None, emb, 8, labeled_mask=mask)
  got = selection.k_center_greedy(
    None, GradEmbedding(shard(emb.a), shard(emb.z)), 8, labeled_mask=shard(mask)
  )
  np.testing.assert_array_equal(got, want)


def test_k_center_greedy_does_not_gather_the_pool(shard):
  x, mask = shard(_points()), shard(jnp.zeros(N, bool).at[3].set(True))
  ps = sharding.pool_sharding(x)
  x, mask = sharding.place(x, ps), sharding.replicate(mask, ps)  # as the public wrapper does
  assert_no_pool_gather(
    lambda first, x, m: k_center.k_center_greedy_core(first, x, 6, m, 4, 16, ps),
    jnp.int32(0),
    x,
    mask,
    num_points=N,
  )


def test_kmeans_pp_dense_and_factorised(shard):
  x = _points(3)
  mask = jnp.zeros(N, bool).at[jnp.array([1, 30])].set(True)
  rng = np.random.default_rng(1)
  emb = GradEmbedding(
    jnp.asarray(rng.normal(size=(N, 3)), jnp.float32),
    jnp.asarray(rng.normal(size=(N, 4)), jnp.float32),
  )
  for first in ("max_norm", "random"):
    for seed in range(3):
      key = jax.random.key(seed)
      want = selection.kmeans_pp(key, x, 12, labeled_mask=mask, first=first)
      got = selection.kmeans_pp(key, shard(x), 12, labeled_mask=shard(mask), first=first)
      np.testing.assert_array_equal(got, want)
      want = selection.kmeans_pp(key, emb, 12, labeled_mask=mask, first=first)
      got = selection.kmeans_pp(
        key, GradEmbedding(shard(emb.a), shard(emb.z)), 12, labeled_mask=shard(mask), first=first
      )
      np.testing.assert_array_equal(got, want)


def test_kmeans_pp_does_not_gather_the_pool(shard):
  n = 512  # several sampling blocks of 64, so a block fetch is smaller than the pool
  x, mask = shard(jax.random.normal(jax.random.key(4), (n, D))), shard(jnp.zeros(n, bool))
  ps = sharding.pool_sharding(x)
  x, mask = sharding.place(x, ps), sharding.place(mask, ps)
  assert_no_pool_gather(
    lambda key, x, m: kmeans_pp.kmeans_pp_exact(key, x, 10, m, "max_norm", 16, ps),
    jax.random.key(0),
    x,
    mask,
    num_points=n,
  )
