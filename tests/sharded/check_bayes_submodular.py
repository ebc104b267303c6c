"""Sharded equals unsharded: BatchBALD over log-probs sharded along N (axis 1), and
submodular greedy over a ground set sharded along N; no pool gathered."""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import collectives
from jax.sharding import AxisType
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from jaxal import bayes
from jaxal import submodular
from jaxal._src import bayes as bayes_src
from jaxal._src import sharding
from jaxal._src.submodular import kernels as submodular_kernels
from jaxal._src.submodular import maximizers as submodular_maximizers

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
      assert size <= max_elements, (
        f"a collective moves {size} > {max_elements} values: {line[:200]}"
      )
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
    want = bayes.batchbald(
      key, mc, 6, labeled_mask=mask, num_joint_samples=40, max_exact_configs=exact
    )
    got = bayes.batchbald(
      key,
      put(mesh, mc, axis=1),
      6,
      labeled_mask=put(mesh, mask),
      num_joint_samples=40,
      max_exact_configs=exact,
    )
    np.testing.assert_array_equal(got, want)
    got = bayes.batchbald(
      key,
      put(mesh, mc, axis=1),
      6,
      labeled_mask=mask,
      num_joint_samples=40,
      max_exact_configs=exact,
    )
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
    sharding.pool_sharding(
      jax.ShapeDtypeStruct((8, N, 3), jnp.float32, sharding=NamedSharding(mesh, P("pool"))),
      "log_probs",
      pool_axis=1,
    )
  uneven = jax.ShapeDtypeStruct(
    (5, N + 4, 3), jnp.float32, sharding=NamedSharding(mesh, P(None, "pool"))
  )
  with pytest.raises(ValueError, match="68 points, which the 8 devices"):
    sharding.pool_sharding(uneven, "log_probs", pool_axis=1)


def test_take_along(mesh):
  x = put(mesh, jnp.arange(4 * N * 3.0).reshape(4, N, 3), axis=1)
  ps = sharding.pool_sharding(x, pool_axis=1)
  f = jax.jit(lambda x, i: sharding.take_along(x, i, ps, axis=1))
  for i in (0, 13, 63):
    np.testing.assert_array_equal(f(x, i), np.asarray(x)[:, i])
  assert_moves_at_most(lambda x, i: sharding.take_along(x, i, ps, axis=1), x, 5, max_elements=12)


# ---------------------------------------------------------------------------
# Submodular greedy: kernel rows (or features) sharded along N.


def _features(seed, n=N, dim=5):
  return jax.random.normal(jax.random.key(seed), (n, dim))


@pytest.mark.parametrize("metric", ["cosine", "rbf"])
def test_similarity_kernel_rows_sharded(mesh, metric):
  x = _features(0)
  want = submodular.similarity_kernel(x, metric=metric, chunk_size=16)
  for chunk in (3, 16):
    got = submodular.similarity_kernel(put(mesh, x), metric=metric, chunk_size=chunk)
    assert got.sharding.spec[0] == "pool"
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(np.diagonal(np.asarray(got)), 1.0)


def test_similarity_kernel_gathers_no_features(mesh):
  x = put(mesh, _features(1, dim=12))
  ps = sharding.pool_sharding(x)
  core = lambda x: submodular_kernels.similarity_kernel_sharded(x, "rbf", None, 4, ps)
  # One device's feature block (8 x 12 = 96 values) moves per step; x holds 768.
  lines = assert_moves_at_most(core, x, max_elements=96)
  assert any("collective-permute" in line for line in lines)


def _assert_same_greedy_up_to_ties(got, want, kernel, ground, candidates, tol=1e-5):
  """``got`` is a greedy run of facility location on ``kernel`` (float64 gains, recomputed
  along its own picks): every pick a largest gain, its gain the one reported. It equals
  ``want`` up to the first step where ``want``'s pick ties ``got``'s within ``tol``: two
  points that cover only each other tie exactly, and rounding then decides the pick."""
  k = np.asarray(kernel, np.float64)[np.asarray(ground)]
  cand = np.asarray(candidates).copy()
  cover = np.zeros(k.shape[0])
  same = True
  for t, (g, w) in enumerate(zip(np.asarray(got.indices), np.asarray(want.indices))):
    gains = np.maximum(k - cover[:, None], 0.0).sum(axis=0)
    best = gains[cand].max()
    assert cand[g] and gains[g] >= best - tol, (t, g, gains[g], best)
    np.testing.assert_allclose(float(got.gains[t]), gains[g], rtol=tol, atol=tol)
    if same and g != w:
      assert abs(gains[w] - gains[g]) <= tol, (t, g, w, gains[g], gains[w])
      same = False
    cover = np.maximum(cover, k[:, g])
    cand[g] = False


@pytest.mark.parametrize("metric", ["cosine", "rbf"])
def test_facility_location_greedy_same_indices(mesh, metric):
  x = _features(2)
  ground = jnp.ones(N, bool).at[5:9].set(False)
  cand = jnp.ones(N, bool).at[::6].set(False)
  fn = submodular.facility_location(
    submodular.similarity_kernel(x, metric=metric), ground_mask=ground
  )
  want = submodular.greedy(fn, 10, candidates=cand)
  fns = submodular.facility_location(
    submodular.similarity_kernel(put(mesh, x), metric=metric, chunk_size=4),
    ground_mask=put(mesh, ground),
  )
  got = submodular.greedy(fns, 10, candidates=put(mesh, cand))
  kernel = submodular.similarity_kernel(x, metric=metric)
  _assert_same_greedy_up_to_ties(got, want, kernel, ground, cand)
  assert int(got.evaluations) == int(want.evaluations)
  # A dense kernel handed in row-sharded, candidates unsharded.
  got = submodular.greedy(submodular.facility_location(put(mesh, kernel)), 10, candidates=cand)
  want = submodular.greedy(submodular.facility_location(kernel), 10, candidates=cand)
  _assert_same_greedy_up_to_ties(got, want, kernel, jnp.ones(N, bool), cand, tol=1e-6)


def test_facility_location_greedy_gathers_no_kernel(mesh):
  kernel = put(mesh, submodular.similarity_kernel(_features(3)))
  fn = submodular.facility_location(kernel)
  ps = sharding.pool_sharding(kernel)
  fn = submodular_maximizers.place(fn, ps)
  cand = sharding.replicate(jnp.ones(N, bool), ps)
  # One kernel row (N values) per pick, argmax partials; the kernel holds N².
  core = lambda init, gains, update, c: submodular_maximizers.greedy_core(
    init, gains, update, c, 6, ps=ps
  )
  assert_moves_at_most(core, fn.init, fn.gains, fn.update, cand, max_elements=N)


@pytest.mark.parametrize(
  "name", ["sparse_facility_location", "feature_based", "saturated_coverage"]
)
def test_other_functions_greedy_same_indices(mesh, name):
  x = _features(4)
  if name == "sparse_facility_location":
    kernel = submodular.knn_kernel(x, 6)
    fn = submodular.facility_location(kernel)
    fns = submodular.facility_location(
      sharding.place(kernel, sharding.pool_sharding(put(mesh, kernel.values)))
    )
    max_elements = 2 * N
  elif name == "feature_based":
    feats = jax.nn.relu(x)
    fn = submodular.feature_based(feats)
    fns = submodular.feature_based(put(mesh, feats))
    max_elements = N
  else:
    kernel = submodular.similarity_kernel(x)
    fn = submodular.saturated_coverage(kernel, alpha=0.3)
    fns = submodular.saturated_coverage(put(mesh, kernel), alpha=0.3)
    max_elements = N
  want = submodular.greedy(fn, 8)
  got = submodular.greedy(fns, 8)
  np.testing.assert_array_equal(got.indices, want.indices)
  np.testing.assert_allclose(got.gains, want.gains, rtol=1e-5, atol=1e-6)
  ps = sharding.pool_sharding(fns)
  fnp = submodular_maximizers.place(fns, ps)
  core = lambda init, gains, update, c: submodular_maximizers.greedy_core(
    init, gains, update, c, 4, ps=ps
  )
  assert_moves_at_most(
    core,
    fnp.init,
    fnp.gains,
    fnp.update,
    sharding.replicate(jnp.ones(N, bool), ps),
    max_elements=max_elements,
  )
