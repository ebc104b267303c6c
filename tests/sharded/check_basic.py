"""Sharded equals unsharded: scores, top_k, random, BALD; no pool gathered."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from conftest import assert_no_pool_gather

from jaxal import scores
from jaxal import selection
from jaxal._src import sharding
from jaxal._src.selection import top_k

N = 64


def test_scores_and_top_k(shard):
  logits = jax.random.normal(jax.random.key(0), (N, 5)) * 3
  mask = jnp.zeros(N, bool).at[::5].set(True)
  for fn in (scores.entropy, scores.margin, scores.least_confidence, scores.ratio):
    u, us = fn(logits), fn(shard(logits))
    np.testing.assert_allclose(us, u, rtol=1e-6)
    for k in (1, 7, 20):
      np.testing.assert_array_equal(
        selection.top_k(us, k, labeled_mask=shard(mask)), selection.top_k(u, k, labeled_mask=mask)
      )


def test_top_k_ties_across_shards(shard):
  u = jnp.asarray(np.repeat(np.arange(8.0), 8)[::-1].copy())  # each shard one value
  u = u.at[3].set(7.0).at[40].set(7.0)
  for k in (1, 5, 9, 16, 64):
    np.testing.assert_array_equal(selection.top_k(shard(u), k), selection.top_k(u, k))


def test_random_same_indices(shard):
  mask = jnp.zeros(N, bool).at[::3].set(True)
  for seed in range(3):
    key = jax.random.key(seed)
    np.testing.assert_array_equal(
      selection.random(key, N, 10, labeled_mask=shard(mask)),
      selection.random(key, N, 10, labeled_mask=mask),
    )


def test_bald_and_mc_scores(shard):
  mc = jax.random.normal(jax.random.key(1), (6, N, 4)) * 2
  mesh_put = lambda a: jax.device_put(
    a,
    jax.sharding.NamedSharding(
      shard(jnp.zeros(8)).sharding.mesh, jax.sharding.PartitionSpec(None, "pool", None)
    ),
  )
  for fn in (scores.bald, scores.mean_std, scores.variation_ratio):
    np.testing.assert_allclose(fn(mesh_put(mc)), fn(mc), rtol=1e-5, atol=1e-7)


def test_top_k_gathers_only_candidates(shard):
  u = shard(jax.random.normal(jax.random.key(2), (N,)))
  mask = shard(jnp.zeros(N, bool))
  ps = sharding.pool_sharding(u)
  assert ps is not None and ps.num_shards == 8
  assert_no_pool_gather(lambda u, m: top_k.top_k_core(u, 4, m, ps), u, mask, num_points=N)


def test_take_gathers_one_row(shard):
  x = shard(jnp.arange(N * 3.0).reshape(N, 3))
  ps = sharding.pool_sharding(x)
  for i in (0, 13, 63):
    np.testing.assert_array_equal(
      jax.jit(lambda x, i: sharding.take(x, i, ps))(x, i), np.asarray(x)[i]
    )
  assert_no_pool_gather(lambda x, i: sharding.take(x, i, ps), x, 5, num_points=N)


def test_bad_shardings(shard):
  import pytest

  mesh = shard(jnp.zeros(8)).sharding.mesh
  spec = jax.sharding.PartitionSpec
  wrong_axis = jax.device_put(
    jnp.zeros((8, N)), jax.sharding.NamedSharding(mesh, spec(None, "pool"))
  )
  with pytest.raises(
    ValueError, match=r"x must be sharded along its first axis .* got shape \(8, 64\)"
  ):
    sharding.pool_sharding(wrong_axis, "x")
  uneven = jax.ShapeDtypeStruct(
    (N + 4,), jnp.float32, sharding=jax.sharding.NamedSharding(mesh, spec("pool"))
  )
  with pytest.raises(
    ValueError, match="68 points, which the 8 devices of mesh axis 'pool' do not divide"
  ):
    sharding.pool_sharding(uneven, "x")


def test_gather_detector_catches_a_gathered_pool():
  import pytest

  mesh = jax.make_mesh((8,), ("pool",), axis_types=(jax.sharding.AxisType.Auto,))
  x = jax.device_put(
    jnp.ones((N, 3)), jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("pool", None))
  )
  with pytest.raises(AssertionError, match="gathered whole"):
    assert_no_pool_gather(lambda x, i: x[i], x, 5, num_points=N)


def test_model_forward_over_a_sharded_pool(shard):
  """Forwards over a pool sharded along N give the same logits and MC samples; the
  parameters stay whole on every device (they are never split)."""
  from jaxal import models

  module = models.MLP(num_classes=4, hidden=(16,))
  x = jax.random.normal(jax.random.key(0), (N, 6))
  params = models.init_params(jax.random.key(1), module, x)
  model = models.from_linen(module)
  xs = shard(x)
  np.testing.assert_allclose(
    models.predict(model, params, xs, batch_size=16).logits,
    models.predict(model, params, x, batch_size=16).logits,
    rtol=1e-5,
    atol=1e-6,
  )
  np.testing.assert_allclose(
    models.predict_mc(jax.random.key(2), model, params, xs, num_samples=3),
    models.predict_mc(jax.random.key(2), model, params, x, num_samples=3),
    rtol=1e-5,
    atol=1e-6,
  )
  assert all(p.sharding.is_fully_replicated for p in jax.tree.leaves(params))
