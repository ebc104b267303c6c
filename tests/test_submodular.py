"""Submodular functions and maximisers against NumPy references from the definitions."""

from __future__ import annotations

import itertools
import math

import jax.numpy as jnp
import numpy as np
import pytest
from conftest import count_traces

from jaxal import submodular as sm

N = 12  # one ground-set size for most tests: one compile per function kind
KERNEL_FUNCTIONS = ("facility_location", "graph_cut", "saturated_coverage", "sum_redundancy")

# ---------------------------------------------------------------------------
# NumPy references (float64), straight from the definitions.


def ref_value(name, S, A, V, *, lam=1.0, alpha=0.1, X=None, concave="sqrt"):
  A, V = list(A), list(V)
  if name == "feature_based":
    m = X[A].sum(0) if A else np.zeros(X.shape[1])
    g = {"sqrt": np.sqrt, "log1p": np.log1p, "inverse": lambda v: v / (1 + v)}[concave]
    return float(g(m).sum())
  # S[j, i]: how well candidate j represents element i.
  if name == "facility_location":
    return float(np.maximum(S[np.ix_(A, V)].max(0), 0).sum()) if A else 0.0
  if name == "graph_cut":
    return float(S[np.ix_(A, V)].sum() - lam * S[np.ix_(A, A)].sum())
  if name == "saturated_coverage":
    return float(np.minimum(S[np.ix_(A, V)].sum(0), alpha * S[np.ix_(V, V)].sum(0)).sum())
  return float(S[np.ix_(V, V)].sum() - S[np.ix_(A, A)].sum())  # sum redundancy


def ref_greedy(name, S, k, V, candidates=None, **kw):
  cand = list(V) if candidates is None else [j for j in V if candidates[j]]
  A = []
  for _ in range(k):
    base = ref_value(name, S, A, V, **kw)
    gains = [ref_value(name, S, A + [j], V, **kw) - base if j not in A else -np.inf for j in cand]
    A.append(cand[int(np.argmax(gains))])
  return A


def dense_of(kernel: sm.SparseKernel, n):
  S = np.zeros((n, n))
  v, i = np.asarray(kernel.values, np.float64), np.asarray(kernel.indices)
  for r in range(n):
    S[r, i[r]] = v[r]
  return S


def _features(seed, n=N, d=4, nonneg=False):
  x = np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)
  return np.abs(x) if nonneg else x


def _fn(name, seed=0, *, sparse=None, ground_mask=None, **kw):
  x = _features(seed, nonneg=name == "feature_based")
  if name == "feature_based":
    return sm.feature_based(jnp.asarray(x), ground_mask=ground_mask, **kw), None, x
  if sparse is None:
    kernel = sm.similarity_kernel(jnp.asarray(x))
    S = np.asarray(kernel, np.float64)
  else:
    kernel = sm.knn_kernel(jnp.asarray(x), sparse)
    S = dense_of(kernel, len(x))
  return sm.make(name, kernel=kernel, ground_mask=ground_mask, **kw), S, x


def _kw(name, **kw):
  return {
    k: v
    for k, v in kw.items()
    if (k == "lam" and name == "graph_cut")
    or (k == "alpha" and name == "saturated_coverage")
    or (k == "concave" and name == "feature_based")
  }


# ---------------------------------------------------------------------------
# Kernels.


def test_similarity_kernel_matches_reference():
  x = _features(1, n=20, d=5)
  x[3] = 0.0  # a zero vector: cosine 0 with everything (0.5 after the shift)
  xn = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
  ref = (1 + np.clip(xn @ xn.T, -1, 1)) / 2
  np.fill_diagonal(ref, 1.0)
  np.testing.assert_allclose(
    sm.similarity_kernel(jnp.asarray(x), chunk_size=6), ref, rtol=1e-5, atol=1e-6
  )
  d2 = ((x[:, None] - x[None]) ** 2).sum(-1)
  gamma = 1.0 / d2.mean()
  np.testing.assert_allclose(
    sm.similarity_kernel(jnp.asarray(x), metric="rbf", chunk_size=7),
    np.exp(-gamma * d2),
    rtol=1e-4,
    atol=1e-5,
  )
  np.testing.assert_allclose(
    sm.similarity_kernel(jnp.asarray(x), metric="rbf", gamma=0.3),
    np.exp(-0.3 * d2),
    rtol=1e-4,
    atol=1e-5,
  )


def test_knn_kernel_keeps_each_rows_largest_entries():
  x = _features(2, n=20, d=3)
  dense = np.asarray(sm.similarity_kernel(jnp.asarray(x)))
  sk = sm.knn_kernel(jnp.asarray(x), 5, chunk_size=6)
  assert sk.values.shape == (20, 5) and sk.indices.dtype == jnp.int32
  np.testing.assert_array_equal(sk.indices[:, 0], np.arange(20))  # itself first
  np.testing.assert_allclose(sk.values, -np.sort(-dense, axis=1)[:, :5], rtol=1e-6)
  np.testing.assert_allclose(np.take_along_axis(dense, np.asarray(sk.indices), 1), sk.values)


# ---------------------------------------------------------------------------
# Values and marginal gains against the definitions.


@pytest.mark.parametrize(
  "name,kernel",
  [
    (f, k)
    for f in sm.FUNCTIONS
    for k in ("dense", "sparse")
    if not (f == "feature_based" and k == "sparse")
  ],
)
def test_value_and_gains_match_reference(name, kernel):
  rng = np.random.default_rng(3)
  ground = rng.random(N) < 0.75
  kw = _kw(name, lam=0.7, alpha=0.3, concave="log1p")
  fn, S, x = _fn(
    name, sparse=None if kernel == "dense" else 5, ground_mask=jnp.asarray(ground), **kw
  )
  V = np.nonzero(ground)[0]
  for size in (0, 1, 4):
    A = [int(a) for a in rng.choice(V, size, replace=False)]
    ref = ref_value(name, S, A, V, X=x, **kw)
    np.testing.assert_allclose(sm.value(fn, jnp.asarray(A, jnp.int32)), ref, rtol=1e-5, atol=1e-4)
    gains = np.asarray(sm.marginal_gains(fn, jnp.asarray(A, jnp.int32)))
    for j in range(N):
      expected = 0.0 if j in A else ref_value(name, S, A + [j], V, X=x, **kw) - ref
      if j in V or name == "feature_based":
        np.testing.assert_allclose(gains[j], expected, rtol=1e-4, atol=1e-4)


def test_sparse_kernel_with_every_neighbour_equals_dense():
  x = jnp.asarray(_features(4))
  for name in KERNEL_FUNCTIONS:
    dense = sm.make(name, kernel=sm.similarity_kernel(x))
    sparse = sm.make(name, kernel=sm.knn_kernel(x, N))
    np.testing.assert_array_equal(sm.greedy(dense, 5).indices, sm.greedy(sparse, 5).indices)
    np.testing.assert_allclose(
      sm.value(dense, jnp.arange(4)), sm.value(sparse, jnp.arange(4)), rtol=1e-5
    )


# ---------------------------------------------------------------------------
# Maximisers.


@pytest.mark.parametrize("name", sm.FUNCTIONS)
def test_greedy_matches_numpy_greedy(name):
  for concave in ("sqrt", "log1p", "inverse") if name == "feature_based" else ("sqrt",):
    kw = _kw(name, lam=0.4, alpha=0.2, concave=concave)
    fn, S, x = _fn(name, seed=5, **kw)
    got = sm.greedy(fn, 6)
    np.testing.assert_array_equal(got.indices, ref_greedy(name, S, 6, range(N), X=x, **kw))
    # The reported gains add up to the value of the set.
    np.testing.assert_allclose(
      np.sum(got.gains),
      float(sm.value(fn, got.indices)) - float(sm.value(fn, jnp.zeros(0, jnp.int32))),
      rtol=1e-4,
      atol=1e-4,
    )


@pytest.mark.parametrize("name", KERNEL_FUNCTIONS)
def test_greedy_with_ground_set_candidates_and_sparse_kernel(name):
  rng = np.random.default_rng(6)
  ground = rng.random(N) < 0.8
  cand = rng.random(N) < 0.7
  kw = _kw(name, lam=0.4, alpha=0.2)
  fn, S, _ = _fn(name, seed=6, sparse=4, ground_mask=jnp.asarray(ground), **kw)
  got = sm.greedy(fn, 3, candidates=jnp.asarray(cand))
  V = np.nonzero(ground)[0]
  np.testing.assert_array_equal(got.indices, ref_greedy(name, S, 3, V, candidates=cand, **kw))
  assert (ground & cand)[np.asarray(got.indices)].all()


@pytest.mark.parametrize("name", sm.FUNCTIONS)
def test_lazy_greedy_equals_greedy_with_fewer_evaluations(name):
  kw = _kw(name, lam=1.0, alpha=0.1, concave="inverse")
  for seed in range(3):
    fn, _, _ = _fn(name, seed=10 + seed, sparse=None if seed < 2 else 6, **kw)
    g = sm.greedy(fn, 7)
    for batch_size in (1, 32):  # 1: Minoux's one-at-a-time re-evaluation
      lz = sm.lazy_greedy(fn, 7, batch_size=batch_size)
      np.testing.assert_array_equal(lz.indices, g.indices)
      np.testing.assert_allclose(lz.gains, g.gains, rtol=1e-5, atol=1e-5)
      assert int(lz.evaluations) <= int(g.evaluations)


def test_lazy_greedy_one_compile_per_shape():
  x = jnp.asarray(_features(20, n=15))
  with count_traces() as c:
    for seed in range(3):
      kernel = sm.similarity_kernel(x + seed)
      sm.lazy_greedy(sm.facility_location(kernel), 4)
  assert c["_lazy_greedy"] == 1


def test_greedy_one_compile_for_new_arrays_and_hyperparameters():
  """A SetFunction's arrays and hyperparameters are traced: new values reuse the compilation."""
  x = jnp.asarray(_features(21, n=15))
  with count_traces() as c:
    for seed in range(3):
      fn = sm.graph_cut(sm.similarity_kernel(x + seed), lam=0.2 + 0.3 * seed)
      sm.greedy(fn, 4)
      sm.value(fn, jnp.arange(2))
  assert c["greedy_core"] == 1 and c["_value"] == 1


def test_stochastic_greedy(getkey):
  fn, _, _ = _fn("facility_location", seed=7)
  key = getkey()
  a = sm.stochastic_greedy(key, fn, 5)
  np.testing.assert_array_equal(a.indices, sm.stochastic_greedy(key, fn, 5).indices)
  assert len(set(np.asarray(a.indices).tolist())) == 5
  # s = ceil(n/k · log 1/ε): with ε small enough every candidate is sampled: plain greedy.
  full = sm.stochastic_greedy(key, fn, 5, epsilon=1e-9)
  np.testing.assert_array_equal(full.indices, sm.greedy(fn, 5).indices)
  assert int(a.evaluations) == 5 * math.ceil(N / 5 * math.log(100))
  cand = jnp.arange(N) % 2 == 0
  b = sm.stochastic_greedy(getkey(), fn, 6, candidates=cand)
  np.testing.assert_array_equal(np.sort(b.indices), np.arange(0, N, 2))


MONOTONE = [
  ("facility_location", {}),
  ("graph_cut", {"lam": 0.5}),
  ("graph_cut", {"lam": 0.2}),
  ("saturated_coverage", {"alpha": 0.1}),
  ("saturated_coverage", {"alpha": 0.5}),
  ("feature_based", {"concave": "sqrt"}),
  ("feature_based", {"concave": "log1p"}),
  ("feature_based", {"concave": "inverse"}),
]


@pytest.mark.parametrize("name,kw", MONOTONE)
def test_greedy_within_one_minus_one_over_e_of_brute_force(name, kw):
  """Nemhauser et al. (1978): greedy >= (1 − 1/e) OPT for monotone submodular f, |V| <= 10."""
  n, k = 9, 3
  for seed in range(3):
    x = _features(30 + seed, n=n, d=3, nonneg=True)
    if name == "feature_based":
      fn = sm.feature_based(jnp.asarray(x), **kw)
    else:
      fn = sm.make(name, kernel=sm.similarity_kernel(jnp.asarray(x), metric="rbf"), **kw)
    best = max(
      float(sm.value(fn, jnp.asarray(s, jnp.int32))) for s in itertools.combinations(range(n), k)
    )
    got = float(sm.value(fn, sm.greedy(fn, k).indices))
    assert got >= (1 - 1 / math.e) * best - 1e-5
    assert got <= best + 1e-5


@pytest.mark.parametrize("name", sm.FUNCTIONS)
def test_diminishing_returns_on_random_sets(name):
  """f(j | A) >= f(j | B) for A ⊆ B, j ∉ B; and gains >= 0 for the monotone functions."""
  kw = _kw(name, lam=1.0, alpha=0.2, concave="sqrt")
  rng = np.random.default_rng(40)
  for trial in range(6):
    fn, _, _ = _fn(name, seed=50 + trial, sparse=None if trial % 2 else 5, **kw)
    B = rng.random(N) < 0.5
    A = B & (rng.random(N) < 0.5)
    ga = np.asarray(sm.marginal_gains(fn, jnp.asarray(A)))
    gb = np.asarray(sm.marginal_gains(fn, jnp.asarray(B)))
    assert (ga[~B] >= gb[~B] - 1e-4).all()
    if name not in ("sum_redundancy", "graph_cut"):  # graph cut at λ = 1 is not monotone
      assert (ga >= -1e-5).all()


# ---------------------------------------------------------------------------
# Bad input.


def test_bad_input(getkey):
  x = jnp.asarray(_features(0))
  kernel = sm.similarity_kernel(x)
  with pytest.raises(ValueError, match="square"):
    sm.facility_location(jnp.ones((4, 5)))
  with pytest.raises(ValueError, match=r"lam must be a finite number in \[0.0, 1.0\]"):
    sm.graph_cut(kernel, lam=1.5)
  with pytest.raises(ValueError, match=r"lam must be a finite number in \[0.0, 1.0\]"):
    sm.graph_cut(kernel, lam=-0.1)
  with pytest.raises(ValueError, match=r"alpha must be a finite number in \(0.0, 1.0\]"):
    sm.saturated_coverage(kernel, alpha=0.0)
  with pytest.raises(ValueError, match=r"alpha must be a finite number in \(0.0, 1.0\]"):
    sm.saturated_coverage(kernel, alpha=2.0)
  with pytest.raises(ValueError, match="valid names are: facility_location, feature_based"):
    sm.make("log_determinant", kernel=kernel)
  with pytest.raises(ValueError, match="valid names are: inverse, log1p, sqrt"):
    sm.feature_based(jnp.abs(x), concave="cube")
  with pytest.raises(ValueError, match="non-negative"):
    sm.feature_based(x)
  with pytest.raises(ValueError, match="features of shape .* holds NaN or inf"):
    sm.feature_based(jnp.abs(x).at[0, 1].set(jnp.nan))
  with pytest.raises(ValueError, match="kernel of shape .* holds NaN or inf"):
    sm.facility_location(kernel.at[2, 3].set(jnp.inf))
  sparse = sm.knn_kernel(x, 3)
  with pytest.raises(ValueError, match="kernel.values of shape .* holds NaN or inf"):
    sm.graph_cut(sm.SparseKernel(sparse.values.at[0, 0].set(jnp.nan), sparse.indices))
  with pytest.raises(ValueError, match="larger than the 3 candidates"):
    sm.greedy(sm.facility_location(kernel), 4, candidates=jnp.arange(N) < 3)
  with pytest.raises(ValueError, match="valid names are: cosine, rbf"):
    sm.similarity_kernel(x, metric="euclid")
  with pytest.raises(ValueError, match="num_neighbors"):
    sm.knn_kernel(x, N + 1)
  with pytest.raises(ValueError, match="epsilon"):
    sm.stochastic_greedy(getkey(), sm.facility_location(kernel), 2, epsilon=1.0)
  with pytest.raises(TypeError, match="SetFunction"):
    sm.greedy(kernel, 2)
