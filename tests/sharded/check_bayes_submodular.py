"""Sharded equals unsharded: BatchBALD over log-probs sharded along N (axis 1), and
submodular greedy over a ground set sharded along N; no pool gathered."""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import collectives
from jax.sharding import AxisType, NamedSharding, PartitionSpec as P

from jaxal import bayes, submodular
from jaxal._src import bayes as bayes_src
from jaxal._src import sharding

N = 64


@pytest.fixture(params=[AxisType.Explicit, AxisType.Auto], ids=["explicit", "auto"])
def mesh(request):
  return jax.make_mesh((8,), ("pool",), axis_types=(request.param,))


def put(mesh, x, axis=0):
  """``x`` sharded along ``axis`` over the 1-D mesh."""
  x = jnp.asarray(x)
  return jax.device_put(x, NamedSharding(mesh, P(*([None] * axis), "pool")))


def assert_moves_at_most(fn, *args, max_elements, **kwargs):
  """Every array a collective of the compiled ``jax.jit(fn)`` moves has at most ``max_elements``."""
  lines = collectives(fn, *args, **kwargs)
  for line in lines:
    head = line.split("=", 1)[1] if "=" in line else line
    head = re.split(r"\b(all-gather|all-reduce|all-to-all|collective-permute)\(", head)[0]
    for dims in re.findall(r"\[([\d,]*)\]", head):
      size = int(np.prod([int(d) for d in dims.split(",") if d]))
      assert size <= max_elements, f"a collective moves {size} > {max_elements} values: {line[:200]}"
  return lines


def test_gather_detector_catches_a_gathered_matrix():
  mesh = jax.make_mesh((8,), ("pool",), axis_types=(AxisType.Auto,))
  x = put(mesh, jnp.ones((N, 3)))
  with pytest.raises(AssertionError, match="a collective moves"):
    assert_moves_at_most(lambda x, i: x[i], x, 5, max_elements=N)


# ---------------------------------------------------------------------------
# BatchBALD: log_probs [S, N, K] sharded along N.


def _mc(seed, s=5, n=N, c=3):
  return jax.random.normal(jax.random.key(seed), (s, n, c)) * 2.5


@pytest.mark.parametrize("exact", [1000, 3], ids=["exact", "sampled"])
def test_batchbald_same_indices(mesh, exact):
  mc = _mc(0)
  mask = jnp.zeros(N, bool).at[::7].set(True)
  for seed in range(2):
    key = jax.random.key(seed)
    want = bayes.batchbald(key, mc, 6, labeled_mask=mask, num_joint_samples=40,
                           max_exact_configs=exact)
    got = bayes.batchbald(key, put(mesh, mc, axis=1), 6, labeled_mask=put(mesh, mask),
                          num_joint_samples=40, max_exact_configs=exact)
    np.testing.assert_array_equal(got, want)
    got = bayes.batchbald(key, put(mesh, mc, axis=1), 6, labeled_mask=mask,
                          num_joint_samples=40, max_exact_configs=exact)
    np.testing.assert_array_equal(got, want)


def test_batchbald_mask_only_sharded(mesh):
  mc, mask = _mc(1), jnp.zeros(N, bool).at[:40].set(True)
  key = jax.random.key(3)
  want = bayes.batchbald(key, mc, N - 40, labeled_mask=mask, num_joint_samples=16)
  got = bayes.batchbald(key, mc, N - 40, labeled_mask=put(mesh, mask), num_joint_samples=16)
  np.testing.assert_array_equal(got, want)


def test_batchbald_gathers_no_pool(mesh):
  mc, mask = _mc(2), jnp.zeros(N, bool)
  ps = sharding.pool_sharding(put(mesh, mc, axis=1), "log_probs", pool_axis=1)
  assert ps is not None and ps.num_shards == 8
  lp, m = sharding.place(mc, ps, 1), sharding.replicate(mask, ps)
  # Legitimate collectives: the chosen point's [S, K] log-probs (15), scalars,
  # argmax partials (8); the pool holds S * N * K = 960 values, a [N] vector 64.
  for exact in (1000, 3):
    core = lambda key, lp, m: bayes_src._batchbald(key, lp, m, 4, 20, exact, ps=ps)
    assert_moves_at_most(core, jax.random.key(0), lp, m, max_elements=N - 1)


def test_batchbald_bad_sharding(mesh):
  with pytest.raises(ValueError, match=r"log_probs must be sharded along axis 1 \(the pool axis\)"):
    sharding.pool_sharding(jax.ShapeDtypeStruct((8, N, 3), jnp.float32, sharding=NamedSharding(
        mesh, P("pool"))), "log_probs", pool_axis=1)
  uneven = jax.ShapeDtypeStruct((5, N + 4, 3), jnp.float32,
                                sharding=NamedSharding(mesh, P(None, "pool")))
  with pytest.raises(ValueError, match="68 points, which the 8 devices"):
    sharding.pool_sharding(uneven, "log_probs", pool_axis=1)


def test_take_along(mesh):
  x = put(mesh, jnp.arange(4 * N * 3.0).reshape(4, N, 3), axis=1)
  ps = sharding.pool_sharding(x, pool_axis=1)
  f = jax.jit(lambda x, i: sharding.take_along(x, i, ps, axis=1))
  for i in (0, 13, 63):
    np.testing.assert_array_equal(f(x, i), np.asarray(x)[:, i])
  assert_moves_at_most(lambda x, i: sharding.take_along(x, i, ps, axis=1), x, 5, max_elements=12)
