"""GradMatch-active (non-negative OMP) and partitioned selection.

The OMP reference is written from the definition in NumPy (float64): the greedy pick
``argmax g_j · r`` over unchosen unlabeled points, then the refit
``argmin_{w >= 0} ‖G_S w − b‖² + lam ‖w‖²`` solved exactly by enumerating supports (the
minimiser over every support's unconstrained solution that is feasible).
"""

from __future__ import annotations

import functools
import itertools
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import check_invariants
from conftest import count_traces

from jaxal import embeddings
from jaxal import models
from jaxal import scores
from jaxal import selection
from jaxal import strategies
from jaxal._src.selection import omp as omp_lib
from jaxal._src.strategies import partitioned as partitioned_lib

RTOL, ATOL = 1e-4, 1e-5  # float32 solves against a float64 reference


def nnls_ref(a, b, lam):
  """``argmin_{w >= 0} ‖a w − b‖² + lam ‖w‖²`` by enumerating the supports (small m only)."""
  m = a.shape[1]
  q = a.T @ a + lam * np.eye(m)
  c = a.T @ b
  best, best_w = np.inf, np.zeros(m)
  for r in range(m + 1):
    for support in itertools.combinations(range(m), r):
      w = np.zeros(m)
      if support:
        s = list(support)
        if np.linalg.matrix_rank(q[np.ix_(s, s)]) < len(s):
          continue  # lam = 0 and dependent columns: another support attains the minimum
        w[s] = np.linalg.solve(q[np.ix_(s, s)], c[s])
      if (w < 0).any():
        continue
      f = 0.5 * w @ q @ w - c @ w
      if f < best - 1e-12:
        best, best_w = f, w
  return best_w


def omp_ref(g, b, k, labeled, lam):
  """Non-negative OMP from the definition on dense ``g [N, D]``, target ``b [D]``."""
  chosen, w = [], np.zeros(0)
  for _ in range(k):
    r = b - (g[chosen].T @ w if chosen else 0.0)
    proj = g @ r
    proj[labeled] = -np.inf
    proj[chosen] = -np.inf
    chosen.append(int(np.argmax(proj)))
    w = nnls_ref(g[chosen].T, b, lam)
  return np.array(chosen), w


def fixed_weight_ref(g, b, k, labeled):
  """Greedy ``argmin_j ‖Σ_S g + g_j − k b‖`` over unchosen unlabeled points, from the definition."""
  chosen = []
  for _ in range(k):
    base = g[chosen].sum(0) - k * b
    cost = np.linalg.norm(base[None, :] + g, axis=1)
    cost[labeled] = np.inf
    cost[chosen] = np.inf
    chosen.append(int(np.argmin(cost)))
  return np.array(chosen)


def grad_embedding_ref(logits, features, labels=None):
  """``(p − onehot(y)) ⊗ [z, 1]`` dense, class-major, float64; ``y = argmax p`` by default."""
  logits = np.asarray(logits, np.float64)
  p = np.exp(logits - logits.max(1, keepdims=True))
  p /= p.sum(1, keepdims=True)
  y = p.argmax(1) if labels is None else np.asarray(labels)
  a = p - np.eye(p.shape[1])[y]
  z = np.concatenate([np.asarray(features, np.float64), np.ones((len(a), 1))], 1)
  return (a[:, :, None] * z[:, None, :]).reshape(len(a), -1)


def random_embedding(seed, n=30, k=3, d=4):
  rng = np.random.default_rng(seed)
  a = rng.normal(size=(n, k)).astype(np.float32)
  z = rng.normal(size=(n, d)).astype(np.float32)
  labeled = rng.random(n) < 0.25
  return embeddings.GradEmbedding(jnp.asarray(a), jnp.asarray(z)), labeled


# --- OMP ---------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("lam", [0.0, 0.3])
def test_omp_factorised_equals_reference(seed, lam):
  g, labeled = random_embedding(seed)
  dense = np.asarray(g.dense(), np.float64)
  b = dense[~labeled].mean(0)  # the default target: mean of the unlabeled points
  res = selection.omp(g, 5, labeled_mask=jnp.asarray(labeled), lam=lam)
  want_idx, want_w = omp_ref(dense, b, 5, labeled, lam)
  np.testing.assert_array_equal(res.indices, want_idx)
  np.testing.assert_allclose(res.weights, want_w, rtol=RTOL, atol=ATOL)
  check_invariants(res.indices, 30, 5, labeled)
  # The dense matrix gives the same picks.
  dense_res = selection.omp(g.dense(), 5, labeled_mask=jnp.asarray(labeled), lam=lam)
  np.testing.assert_array_equal(dense_res.indices, want_idx)


@pytest.mark.parametrize(("lam", "k", "seed"), [(0.0, 4, 8), (0.5, 6, 3)])
def test_omp_nonnegativity_binds_against_reference(lam, k, seed):
  # Dimension 4, up to 6 picks: the refit sets some weights to 0. (With lam = 0 and more
  # picks than dimensions the weights would not be unique, hence k = 4 there.)
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(20, 4)).astype(np.float32)
  b = (2.0 * rng.normal(size=4)).astype(np.float32)
  res = selection.omp(jnp.asarray(x), k, target=jnp.asarray(b), lam=lam)
  want_idx, want_w = omp_ref(x.astype(np.float64), b.astype(np.float64), k, np.zeros(20, bool), lam)
  np.testing.assert_array_equal(res.indices, want_idx)
  np.testing.assert_allclose(res.weights, want_w, rtol=RTOL, atol=ATOL)
  assert (np.asarray(res.weights) >= 0).all()
  assert (want_w == 0).any() and (want_w > 0).sum() >= 2  # a binding constraint


def test_nnls_gram_from_zero_equals_reference():
  rng = np.random.default_rng(3)
  solve = jax.jit(functools.partial(omp_lib.nnls_gram, max_iter=15))
  for _ in range(5):
    a = rng.normal(size=(6, 5))
    b = rng.normal(size=6)
    lam = 0.1
    q = a.T @ a + lam * np.eye(5)
    c = a.T @ b
    w = solve(
      jnp.asarray(q, jnp.float32),
      jnp.asarray(c, jnp.float32),
      jnp.ones(5, bool),
      jnp.zeros(5, jnp.float32),
    )
    np.testing.assert_allclose(w, nnls_ref(a, b, lam), rtol=RTOL, atol=ATOL)


def test_omp_exact_match_then_zero_weights_and_duplicates():
  x = jnp.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [-1.0, 0.0]])
  res = selection.omp(x, 3, target=jnp.array([2.0, 1.0]))
  np.testing.assert_array_equal(res.indices, [2, 0, 1])
  np.testing.assert_allclose(res.weights, [1.0, 1.0, 0.0], atol=1e-5)
  # Duplicated points and lam = 0: the Gram matrix is singular, the ridge keeps it finite.
  res = selection.omp(jnp.tile(jnp.array([[1.0, 2.0]]), (4, 1)), 3, target=jnp.array([2.0, 4.0]))
  check_invariants(res.indices, 4, 3, np.zeros(4, bool))
  assert np.isfinite(np.asarray(res.weights)).all()
  np.testing.assert_allclose(np.sum(res.weights), 2.0, rtol=1e-4)


def test_omp_zero_embedding_gives_no_nan():
  # A perfectly confident model: every gradient is 0; the picks are still a valid batch.
  g, _ = random_embedding(0)
  res = selection.omp(embeddings.GradEmbedding(jnp.zeros_like(g.a), g.z), 5)
  check_invariants(res.indices, 30, 5, np.zeros(30, bool))
  np.testing.assert_array_equal(res.weights, np.zeros(5))


@pytest.mark.parametrize("seed", [0, 1])
def test_fixed_weight_matching_equals_reference(seed):
  g, labeled = random_embedding(seed)
  dense = np.asarray(g.dense(), np.float64)
  got = selection.fixed_weight_matching(g, 5, labeled_mask=jnp.asarray(labeled))
  np.testing.assert_array_equal(got, fixed_weight_ref(dense, dense[~labeled].mean(0), 5, labeled))
  check_invariants(got, 30, 5, labeled)
  b = np.random.default_rng(seed).normal(size=12)
  got = selection.fixed_weight_matching(g.dense(), 5, target=jnp.asarray(b, jnp.float32))
  np.testing.assert_array_equal(got, fixed_weight_ref(dense, b, 5, np.zeros(30, bool)))


def test_omp_one_compile_per_shape():
  g, labeled = random_embedding(0)
  omp_lib.omp_core.clear_cache()
  with count_traces() as c:
    selection.omp(g, 4, labeled_mask=jnp.asarray(labeled), lam=0.0)
    selection.omp(g, 4, labeled_mask=jnp.asarray(~labeled), lam=0.2)
  assert c["omp_core"] == 1


def test_omp_bad_input():
  g, labeled = random_embedding(0)
  with pytest.raises(ValueError, match="unlabeled"):
    selection.omp(g, 29, labeled_mask=jnp.asarray(labeled))
  with pytest.raises(ValueError, match="lam must be a finite number >= 0.0, got -1.0"):
    selection.omp(g, 3, lam=-1.0)
  with pytest.raises(TypeError, match="lam must be"):
    selection.omp(g, 3, lam="0.1")
  bad = embeddings.GradEmbedding(g.a.at[3, 1].set(jnp.nan), g.z)
  with pytest.raises(ValueError, match=r"x\.a of shape \(30, 3\) holds NaN"):
    selection.omp(bad, 3)
  with pytest.raises(ValueError, match=r"target must have shape \(12,\)"):
    selection.omp(g, 3, target=jnp.ones(5))
  with pytest.raises(ValueError, match="target .* holds NaN"):
    selection.omp(g, 3, target=jnp.full(12, jnp.nan))
  with pytest.raises(TypeError, match="the call is omp"):
    selection.omp(g, 3, labeled)


# --- GradMatch strategy -----------------------------------------------------------------


@pytest.fixture(scope="module")
def small_model():
  module = models.MLP(num_classes=3, hidden=(6,))
  x = jax.random.normal(jax.random.key(0), (40, 5))
  params = models.init_params(jax.random.key(1), module, x)
  labeled = np.arange(40) % 5 == 0
  return models.from_linen(module), params, x, labeled


@pytest.mark.parametrize("lam", [0.0, 0.1])
def test_gradmatch_equals_reference(small_model, getkey, lam):
  model, params, x, labeled = small_model
  idx = strategies.gradmatch(lam=lam).acquire(getkey(), model, params, x, jnp.asarray(labeled), 5)
  check_invariants(idx, 40, 5, labeled)
  pred = models.predict(model, params, x)
  g = grad_embedding_ref(pred.logits, pred.features)
  want, _ = omp_ref(g, g[~labeled].mean(0), 5, labeled, lam)
  np.testing.assert_array_equal(idx, want)


def test_gradmatch_fixed_weight_equals_reference(small_model, getkey):
  model, params, x, labeled = small_model
  s = strategies.gradmatch(weighted=False)
  idx = s.acquire(getkey(), model, params, x, jnp.asarray(labeled), 5)
  check_invariants(idx, 40, 5, labeled)
  pred = models.predict(model, params, x)
  g = grad_embedding_ref(pred.logits, pred.features)
  np.testing.assert_array_equal(idx, fixed_weight_ref(g, g[~labeled].mean(0), 5, labeled))


def test_gradmatch_valid_target_equals_reference(small_model, getkey):
  model, params, x, labeled = small_model
  x_val = jax.random.normal(jax.random.key(5), (12, 5))
  y_val = jnp.arange(12, dtype=jnp.int32) % 3
  s = strategies.gradmatch(lam=0.05, valid=(x_val, y_val))
  idx = s.acquire(getkey(), model, params, x, jnp.asarray(labeled), 5)
  check_invariants(idx, 40, 5, labeled)
  pred, pv = models.predict(model, params, x), models.predict(model, params, x_val)
  g = grad_embedding_ref(pred.logits, pred.features)
  b = grad_embedding_ref(pv.logits, pv.features, y_val).mean(0)
  want, _ = omp_ref(g, b, 5, labeled, 0.05)
  np.testing.assert_array_equal(idx, want)


def test_gradmatch_weights_through_selection(small_model):
  model, params, x, labeled = small_model
  pred = models.predict(model, params, x)
  emb = embeddings.closed_form_gradient_embedding(pred.logits, pred.features)
  res = selection.omp(emb, 5, labeled_mask=jnp.asarray(labeled), lam=0.1)
  idx = strategies.gradmatch(lam=0.1).acquire(
    jax.random.key(0), model, params, x, jnp.asarray(labeled), 5
  )
  np.testing.assert_array_equal(idx, res.indices)
  assert res.weights.shape == (5,) and (np.asarray(res.weights) >= 0).all()


def test_gradmatch_one_compile_across_rounds(small_model):
  model, params, x, labeled = small_model
  s = strategies.gradmatch(lam=0.1)
  omp_lib.omp_core.clear_cache()
  with count_traces() as c:
    for mask in (labeled, labeled | (np.arange(40) % 7 == 1)):  # a later round: more labels
      s.acquire(jax.random.key(0), model, params, x, jnp.asarray(mask), 5)
  assert c["omp_core"] == 1


def test_gradmatch_bad_input(small_model):
  model, params, x, labeled = small_model
  with pytest.raises(ValueError, match="lam must be a finite number >= 0.0, got -0.5"):
    strategies.gradmatch(lam=-0.5)
  with pytest.raises(ValueError, match="lam=0.1 is used only by the weighted"):
    strategies.gradmatch(lam=0.1, weighted=False)
  with pytest.raises(TypeError, match="weighted must be True or False"):
    strategies.gradmatch(weighted=1)
  with pytest.raises(TypeError, match="valid must be a pair"):
    strategies.gradmatch(valid=x)
  with pytest.raises(ValueError, match="valid y_val must be integer labels"):
    strategies.gradmatch(valid=(x[:4], jnp.ones(4)))
  s = strategies.gradmatch()
  with pytest.raises(ValueError, match="budget=33 is larger than the 32 unlabeled points"):
    s.acquire(jax.random.key(0), model, params, x, jnp.asarray(labeled), 33)
  with pytest.raises(ValueError, match="budget=41 is larger than the pool of 40"):
    s.acquire(jax.random.key(0), model, params, x, jnp.asarray(labeled), 41)
  with pytest.raises(ValueError, match="NaN"):
    s.acquire(jax.random.key(0), model, params, x.at[2, 0].set(jnp.nan), jnp.asarray(labeled), 3)
  bad_labels = strategies.gradmatch(valid=(x[:4], jnp.array([0, 1, 2, 7], jnp.int32)))
  with pytest.raises(ValueError, match=r"validation.labels must lie in \[0, 3\)"):
    bad_labels.acquire(jax.random.key(0), model, params, x, jnp.asarray(labeled), 3)


# --- partitioned ------------------------------------------------------------------------


def test_partition_shares_sum_cap_and_proportion():
  rng = np.random.default_rng(0)
  for _ in range(200):
    u = int(rng.integers(1, 200))
    p = int(rng.integers(1, u + 1))
    b = int(rng.integers(1, u + 1))
    sizes = partitioned_lib.partition_sizes(u, p)
    shares = partitioned_lib.partition_shares(b, sizes)
    assert sum(sizes) == u and max(sizes) - min(sizes) <= 1
    assert sum(shares) == b
    for s, share in zip(sizes, shares):
      assert 0 <= share <= s
      assert abs(share - b * s / u) < 1  # within one of the exact proportion


def spy(inner, calls):
  """A Strategy that records what the inner strategy is given, then runs it."""

  def acquire(key, model, params, pool, labeled_mask, budget):
    calls.append((np.asarray(pool), np.asarray(labeled_mask), budget))
    return inner.acquire(key, model, params, pool, labeled_mask, budget)

  return strategies.Strategy("spy", acquire)


def rows_of(part_pool, pool):
  """Global indices of the rows of ``part_pool`` in ``pool`` (rows are distinct)."""
  eq = (part_pool[:, None, :] == pool[None, :, :]).all(-1)
  assert (eq.sum(1) == 1).all()
  return eq.argmax(1)


@pytest.mark.parametrize("with_labeled", [True, False])
def test_partitioned_parts_shares_and_picks(small_model, with_labeled):
  model, params, x, labeled = small_model
  pool = np.asarray(x)
  calls = []
  s = strategies.partitioned(spy(strategies.margin(), calls), 3, with_labeled=with_labeled)
  assert s.name == "partitioned_spy"
  idx = np.asarray(s.acquire(jax.random.key(2), model, params, x, jnp.asarray(labeled), 7))
  check_invariants(idx, 40, 7, labeled)
  unl = np.flatnonzero(~labeled)  # 32 unlabeled: parts of 11, 11, 10; shares 3, 2, 2
  margins = np.asarray(scores.margin(models.predict(model, params, x).logits))
  seen, want = [], []
  assert [c[2] for c in calls] == [3, 2, 2]
  for part_pool, part_mask, share in calls:
    rows = rows_of(part_pool, pool)
    if with_labeled:  # the labeled points first, marked labeled
      np.testing.assert_array_equal(rows[:8], np.flatnonzero(labeled))
      np.testing.assert_array_equal(part_mask, np.arange(len(rows)) < 8)
    else:
      assert not part_mask.any()
    part = rows[~part_mask]
    assert not labeled[part].any()
    seen.append(part)
    # margin on the part = the part's top `share` points by margin
    want.extend(part[np.argsort(margins[part], kind="stable")[::-1][:share]])
  assert sorted(len(p) for p in seen) == [10, 11, 11]
  np.testing.assert_array_equal(np.sort(np.concatenate(seen)), unl)  # disjoint, cover the pool
  np.testing.assert_array_equal(np.sort(idx), np.sort(want))


def test_partitioned_same_key_same_result_and_keyed_parts(small_model):
  model, params, x, labeled = small_model
  mask = jnp.asarray(labeled)
  s = strategies.partitioned("margin", num_partitions=4)
  a = s.acquire(jax.random.key(3), model, params, x, mask, 9)
  b = s.acquire(jax.random.key(3), model, params, x, mask, 9)
  np.testing.assert_array_equal(a, b)
  check_invariants(a, 40, 9, labeled)
  parts = []
  for seed in (3, 4):
    calls = []
    spied = strategies.partitioned(spy(strategies.random(), calls), 4)
    spied.acquire(jax.random.key(seed), model, params, x, mask, 9)
    parts.append([tuple(rows_of(c[0], np.asarray(x))) for c in calls])
  assert parts[0] != parts[1]  # another key, other parts
  # One part and the labeled points: the inner strategy's batch, as a set.
  one = strategies.partitioned("margin", num_partitions=1)
  got = one.acquire(jax.random.key(5), model, params, x, mask, 6)
  want = strategies.margin().acquire(jax.random.key(5), model, params, x, mask, 6)
  assert set(np.asarray(got).tolist()) == set(np.asarray(want).tolist())


def test_partitioned_whole_unlabeled_pool_and_gradmatch_inside(small_model, getkey):
  model, params, x, labeled = small_model
  mask = jnp.asarray(labeled)
  idx = strategies.partitioned("gradmatch", 4, strategy_kwargs={"lam": 0.1}).acquire(
    getkey(), model, params, x, mask, 32
  )
  check_invariants(idx, 40, 32, labeled)
  idx = strategies.partitioned("submodular").acquire(getkey(), model, params, x, mask, 4)
  check_invariants(idx, 40, 4, labeled)


def test_registry_round_trip():
  assert {"gradmatch", "partitioned"} <= set(strategies.names())
  assert strategies.get("gradmatch").name == "gradmatch"
  assert strategies.get("gradmatch", lam=0.5).name == "gradmatch"
  s = strategies.get("partitioned", strategy="margin", num_partitions=4)
  assert s.name == "partitioned_margin"
  s = strategies.get("partitioned", strategy="bald", strategy_kwargs={"num_samples": 4})
  assert s.name == "partitioned_bald"
  assert strategies.get("partitioned").name == "partitioned_submodular"
  inner = strategies.entropy()
  assert strategies.partitioned(inner, 2).name == "partitioned_entropy"


def test_partitioned_bad_input(small_model):
  model, params, x, labeled = small_model
  with pytest.raises(ValueError, match="unknown strategy 'nope'"):
    strategies.partitioned("nope", 2)
  with pytest.raises(TypeError, match="strategy must be a Strategy or a registered"):
    strategies.partitioned(3, 2)
  with pytest.raises(ValueError, match="strategy_kwargs is used only with a registered name"):
    strategies.partitioned(strategies.margin(), 2, strategy_kwargs={"batch_size": 8})
  with pytest.raises(TypeError, match="strategy_kwargs must be a dict"):
    strategies.partitioned("margin", 2, strategy_kwargs=[1])
  with pytest.raises(ValueError, match="num_partitions must be a positive int, got 0"):
    strategies.partitioned("margin", 0)
  with pytest.raises(TypeError, match="num_partitions must be a positive int"):
    strategies.partitioned("margin", 2.0)
  with pytest.raises(ValueError, match="partition twice"):
    strategies.partitioned("partitioned", 2)
  assert strategies.partitioned("margin", np.int64(2)).name == "partitioned_margin"
  many = strategies.partitioned("margin", 33)
  with pytest.raises(ValueError, match="num_partitions=33 is larger than the 32 unlabeled"):
    many.acquire(jax.random.key(0), model, params, x, jnp.asarray(labeled), 3)
  with pytest.raises(ValueError, match="budget=33 is larger than the 32 unlabeled"):
    strategies.partitioned("margin", 2).acquire(
      jax.random.key(0), model, params, x, jnp.asarray(labeled), 33
    )


MESH_CHECK = """
import jax, jax.numpy as jnp, numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P
from jaxal import strategies

x = np.random.default_rng(0).normal(size=(40, 5)).astype(np.float32)
labeled = np.arange(40) % 5 == 0
mesh = jax.make_mesh((4,), ("pool",))
xs = jax.device_put(x, NamedSharding(mesh, P("pool", None)))
ms = jax.device_put(labeled, NamedSharding(mesh, P("pool")))
calls = []

def acquire(key, model, params, pool, labeled_mask, budget):
  calls.append((np.asarray(pool), pool.devices(), params["w"].devices()))
  return strategies.random().acquire(key, model, params, pool, labeled_mask, budget)

s = strategies.partitioned(strategies.Strategy("spy", acquire), 4)
params = {"w": jnp.ones(3)}
idx = np.asarray(s.acquire(jax.random.key(2), None, params, xs, ms, 9))
assert idx.shape == (9,) and len(set(idx.tolist())) == 9 and not labeled[idx].any(), idx
assert len(calls) == 4
for d, (pool, devs, pdevs) in enumerate(calls):
  rows = ((pool[:, None, :] == x[None]).all(-1)).argmax(1)
  np.testing.assert_array_equal(rows[:8], np.flatnonzero(labeled))  # the labeled points first
  assert set((rows[8:] // 10).tolist()) == {d}, rows  # part d: unlabeled rows of device d
  assert devs == pdevs == {mesh.devices.flat[d]}, (devs, pdevs)  # selected on device d
  assert set(idx[idx // 10 == d].tolist()) <= set(rows[8:].tolist())
np.testing.assert_array_equal(idx, s.acquire(jax.random.key(2), None, params, xs, ms, 9))
try:
  strategies.partitioned("random", 6).acquire(jax.random.key(0), None, params, xs, ms, 3)
  raise AssertionError("no error")
except ValueError as e:
  assert "multiple of the 4 devices" in str(e), e

# Non-negative OMP and fixed-weight matching on a sharded GradEmbedding: the same picks and
# weights as on one device, and no collective moves pool-sized arrays (40 rows, 10 per device).
from jaxal import embeddings, selection
from jaxal._src import sharding
from jaxal._src.selection import omp as omp_lib

rng = np.random.default_rng(1)
a, z = rng.normal(size=(40, 3)).astype(np.float32), rng.normal(size=(40, 4)).astype(np.float32)
put = lambda v: jax.device_put(v, NamedSharding(mesh, P("pool", *([None] * (v.ndim - 1)))))
one = embeddings.GradEmbedding(jnp.asarray(a), jnp.asarray(z))
many = embeddings.GradEmbedding(put(a), put(z))
want = selection.omp(one, 5, labeled_mask=jnp.asarray(labeled), lam=0.1)
got = selection.omp(many, 5, labeled_mask=ms, lam=0.1)
np.testing.assert_array_equal(got.indices, want.indices)
np.testing.assert_allclose(got.weights, want.weights, rtol=1e-5, atol=1e-6)
np.testing.assert_array_equal(
  selection.fixed_weight_matching(many, 5, labeled_mask=ms),
  selection.fixed_weight_matching(one, 5, labeled_mask=jnp.asarray(labeled)),
)
auto = jax.make_mesh((4,), ("pool",), axis_types=(jax.sharding.AxisType.Auto,))
g = jax.device_put(many, NamedSharding(auto, P("pool", None)))
m = jax.device_put(ms, NamedSharding(auto, P("pool")))
ps = sharding.pool_sharding((g, m))
target = omp_lib.mean_unlabeled(g, m)
text = omp_lib.omp_core.lower(g, target, 5, m, 0.1, ps).compile().as_text()
for line in text.splitlines():
  if any(op in line for op in ("all-gather(", "all-reduce(", "all-to-all(", "collective-permute(")):
    shapes = line.split("=", 1)[1].split("(")[0] if "=" in line else line
    assert "[40" not in shapes and "[10" not in shapes, line
print("MESH OK")
"""


def test_on_a_device_mesh_partitioned_parts_stay_on_their_device_and_omp_equals_one_device():
  # 4 simulated CPU devices need XLA_FLAGS before JAX starts: a process of its own.
  env = dict(os.environ)
  env["XLA_FLAGS"] = (
    env.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4"
  ).strip()
  env["JAX_PLATFORMS"] = "cpu"
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  env["PYTHONPATH"] = os.pathsep.join([root, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
  proc = subprocess.run(
    [sys.executable, "-W", "error", "-c", textwrap.dedent(MESH_CHECK)],
    env=env,
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert proc.returncode == 0 and "MESH OK" in proc.stdout, (
    proc.stdout[-3000:] + proc.stderr[-3000:]
  )
