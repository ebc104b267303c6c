"""Hostile input: every case is a correct result or a clear error, never a hang or nonsense.

Property-based (hypothesis) over magnitudes (up to 1e38, inf, NaN), dtypes and labeled masks, on
a few fixed shapes (so compiled functions are reused). On every output: unique, in range, never
labeled, exact budget, same key same result, and the caller's arrays untouched.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import check_invariants
from hypothesis import HealthCheck
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from jaxal import bayes
from jaxal import embeddings
from jaxal import models
from jaxal import scores
from jaxal import selection
from jaxal import strategies
from jaxal import submodular

N, D, K = 12, 3, 4
SETTINGS = settings(
  max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)
MAGNITUDES = st.sampled_from([1e-30, 1e-3, 1.0, 1e4, 1e19, 1e20, 1e30, 1e38])
SEEDS = st.integers(0, 2**16)
BAD = st.sampled_from([np.nan, np.inf, -np.inf])


def points(seed, magnitude, dtype=np.float32):
  rng = np.random.default_rng(seed)
  x = rng.uniform(-1, 1, size=(N, D)) * magnitude
  return np.clip(x, -np.finfo(np.float32).max, np.finfo(np.float32).max).astype(dtype)


def mask_of(seed, num_labeled):
  m = np.zeros(N, bool)
  m[np.random.default_rng(seed + 1).choice(N, num_labeled, replace=False)] = True
  return m


LABELED = st.integers(0, 6)
BUDGET = st.integers(1, 5)


def same_twice(f):
  a, b = np.asarray(f()), np.asarray(f())
  np.testing.assert_array_equal(a, b)
  return a


@SETTINGS
@given(SEEDS, MAGNITUDES, LABELED, BUDGET, st.sampled_from(["exact", "mcmc"]))
def test_kmeans_pp_any_finite_magnitude(seed, mag, num_labeled, k, method):
  x = points(seed, mag)
  keep = x.copy()
  labeled = mask_of(seed, num_labeled)
  idx = same_twice(
    lambda: selection.kmeans_pp(
      jax.random.key(seed), jnp.asarray(x), k, labeled_mask=jnp.asarray(labeled), method=method
    )
  )
  check_invariants(idx, N, k, labeled)
  np.testing.assert_array_equal(x, keep)


@SETTINGS
@given(SEEDS, MAGNITUDES, MAGNITUDES, LABELED, BUDGET)
def test_kmeans_pp_grad_embedding_any_finite_magnitude(seed, mag_a, mag_z, num_labeled, k):
  rng = np.random.default_rng(seed)
  a = (rng.uniform(-1, 1, size=(N, K)) * mag_a).astype(np.float32)
  z = points(seed, mag_z)
  labeled = mask_of(seed, num_labeled)
  g = embeddings.GradEmbedding(jnp.asarray(a), jnp.asarray(z))
  idx = same_twice(
    lambda: selection.kmeans_pp(jax.random.key(seed), g, k, labeled_mask=jnp.asarray(labeled))
  )
  check_invariants(idx, N, k, labeled)


@settings(max_examples=12, deadline=None, derandomize=True)
@given(SEEDS, MAGNITUDES, LABELED, BUDGET)
def test_kmeans_sampling_any_finite_magnitude(seed, mag, num_labeled, k):
  x = points(seed, mag)
  labeled = mask_of(seed, num_labeled)
  idx = same_twice(
    lambda: selection.kmeans_sampling(
      jax.random.key(seed), jnp.asarray(x), k, labeled_mask=jnp.asarray(labeled), n_init=1
    )
  )
  check_invariants(idx, N, k, labeled)


@SETTINGS
@given(SEEDS, BAD, st.integers(0, N - 1))
def test_selection_rejects_non_finite_points_naming_the_row(seed, bad, row):
  x = points(seed, 1.0)
  x[row, 1] = bad
  with pytest.raises(ValueError, match=rf"x of shape \({N}, {D}\).*row {row}"):
    selection.kmeans_pp(jax.random.key(0), jnp.asarray(x), 2)
  with pytest.raises(ValueError, match=rf"row {row}"):
    selection.kmeans_sampling(jax.random.key(0), jnp.asarray(x), 2)
  with pytest.raises(ValueError, match=rf"row {row}"):
    submodular.similarity_kernel(jnp.asarray(x))


FUNCTIONS = ["facility_location", "graph_cut", "saturated_coverage", "sum_redundancy"]


@SETTINGS
@given(SEEDS, MAGNITUDES, st.sampled_from(FUNCTIONS), BUDGET, st.booleans())
def test_submodular_maximisers_any_finite_kernel(seed, mag, name, k, constant):
  """Lazy and plain greedy agree, terminate and return distinct picks, for kernels up to 1e38."""
  rng = np.random.default_rng(seed)
  s = np.full((N, N), mag) if constant else rng.uniform(0, 1, size=(N, N)) * mag
  s = np.minimum(s, np.finfo(np.float32).max).astype(np.float32)
  keep = s.copy()
  fn = submodular.make(name, kernel=jnp.asarray(s))
  lazy = submodular.lazy_greedy(fn, k)
  plain = submodular.greedy(fn, k)
  stoch = submodular.stochastic_greedy(jax.random.key(seed), fn, k)
  for sel in (lazy, plain, stoch):
    check_invariants(sel.indices, N, k, np.zeros(N, bool), name)
    assert not np.isnan(np.asarray(sel.gains)).any()
  if mag <= 1e30:  # beyond that, gains of nearly tied candidates round alike
    np.testing.assert_array_equal(lazy.indices, plain.indices)
  np.testing.assert_array_equal(s, keep)


@SETTINGS
@given(SEEDS, MAGNITUDES, st.sampled_from(["sqrt", "log1p", "inverse"]), BUDGET)
def test_feature_based_any_finite_features(seed, mag, concave, k):
  x = np.abs(points(seed, mag))
  fn = submodular.feature_based(jnp.asarray(x), concave=concave)
  lazy = submodular.lazy_greedy(fn, k)
  plain = submodular.greedy(fn, k)
  for sel in (lazy, plain):
    check_invariants(sel.indices, N, k, np.zeros(N, bool), concave)
    assert not np.isnan(np.asarray(sel.gains)).any()
  if 1e-3 <= mag <= 1e30:
    np.testing.assert_array_equal(lazy.indices, plain.indices)
  assert np.isfinite(float(submodular.value(fn, lazy.indices))) or mag > 1e30


@SETTINGS
@given(BAD, st.integers(0, N - 1))
def test_submodular_rejects_non_finite_input_naming_the_row(bad, row):
  s = np.ones((N, N), np.float32)
  s[row, 0] = bad
  with pytest.raises(ValueError, match=rf"kernel of shape \({N}, {N}\).*row {row}"):
    submodular.facility_location(jnp.asarray(s))
  f = np.ones((N, 2), np.float32)
  f[row, 1] = bad
  with pytest.raises(ValueError, match=rf"features .*row {row}"):
    submodular.feature_based(jnp.asarray(f))


def test_feature_based_weights_name_the_offending_entry():
  with pytest.raises(ValueError, match=r"weights of shape \(3,\).*index \(1,\): -1.0"):
    submodular.feature_based(jnp.ones((4, 3)), weights=jnp.array([1.0, -1.0, 2.0]))


@SETTINGS
@given(SEEDS, MAGNITUDES, st.sampled_from(["cosine", "rbf"]))
def test_similarity_kernel_is_finite_for_finite_features(seed, mag, metric):
  s = np.asarray(submodular.similarity_kernel(jnp.asarray(points(seed, mag)), metric=metric))
  assert np.isfinite(s).all() and s.min() >= 0 and s.max() <= 1
  np.testing.assert_array_equal(np.diag(s), 1.0)


SCORES = [scores.least_confidence, scores.margin, scores.ratio, scores.entropy]
MC_SCORES = [scores.bald, scores.variation_ratio, scores.mean_std, scores.mc_mean(scores.entropy)]


@SETTINGS
@given(SEEDS, BAD, st.integers(0, N - 1), st.integers(0, K - 1), st.integers(0, 7))
def test_scores_reject_nan_and_inf_naming_the_row(seed, bad, row, col, which):
  logits = np.random.default_rng(seed).normal(size=(N, K)).astype(np.float32)
  if bad == -np.inf:
    logits[row, :] = bad  # -inf alone is a masked class; a row of only -inf is the error
  else:
    logits[row, col] = bad
  if which < 4:
    with pytest.raises(ValueError, match=rf"logits of shape \({N}, {K}\).*row {row}"):
      SCORES[which](logits)
    out = SCORES[which](logits, check_finite=False)  # the opt-out: no error
    assert out.shape == (N,)
  else:
    mc = np.stack([logits, logits + 1.0])
    with pytest.raises(ValueError, match=rf"mc_logits of shape \(2, {N}, {K}\).*row {row}"):
      MC_SCORES[which - 4](mc)


@pytest.mark.parametrize("score", SCORES + MC_SCORES[:1])
def test_scores_on_float64_beyond_float32_say_why(score):
  x = np.array([[1e300, 0.0], [0.0, 1.0]])
  if score is scores.bald:
    x = np.stack([x, x[::-1]])
  with pytest.raises(ValueError, match="float64 with entries up to 1e\\+300"):
    score(x)


@pytest.mark.parametrize("score", SCORES + MC_SCORES)
def test_scores_on_ragged_lists_raise_a_clear_error(score):
  with pytest.raises(ValueError, match="rectangular .*ragged"):
    score([[1.0, 2.0], [1.0]] if score in SCORES else [[[1.0, 2.0]], [[1.0]]])
  with pytest.raises(TypeError, match="numbers"):
    score([["a", "b"], ["c", "d"]])


@SETTINGS
@given(SEEDS, MAGNITUDES, LABELED, BUDGET)
def test_scores_and_top_k_any_finite_logits(seed, mag, num_labeled, k):
  logits = np.clip(np.random.default_rng(seed).normal(size=(N, K)) * mag, -3e38, 3e38).astype(
    np.float32
  )
  labeled = mask_of(seed, num_labeled)
  for score in SCORES:
    u = np.asarray(score(logits))
    assert np.isfinite(u).all(), score.__name__
    idx = selection.top_k(u, k, labeled_mask=jnp.asarray(labeled))
    check_invariants(idx, N, k, labeled)


def test_top_k_rejects_nan_scores_and_orders_infinities():
  with pytest.raises(ValueError, match="scores of shape \\(3,\\) holds 1 NaN .*index 0"):
    selection.top_k(jnp.array([jnp.nan, 1.0, 0.0]), 2)
  got = selection.top_k(jnp.array([-jnp.inf, 1.0, jnp.inf]), 3)
  np.testing.assert_array_equal(got, [2, 1, 0])
  np.testing.assert_array_equal(
    selection.top_k(jnp.array([jnp.nan, 1.0, 0.0]), 2, check_finite=False), [1, 2]
  )


def test_bayes_entry_checks():
  with pytest.raises(ValueError, match=r"log_probs of shape \(2, 3, 2\).*row 1"):
    bayes.batchbald(jax.random.key(0), jnp.zeros((2, 3, 2)).at[0, 1, 0].set(jnp.nan), 2)
  with pytest.raises(ValueError, match="NaN or \\+inf"):
    bayes.stochastic_batch(jax.random.key(0), jnp.array([0.1, jnp.inf, 0.2]), 1)


def test_numpy_integers_are_accepted_and_unsigned_shown_unwrapped():
  fn = submodular.facility_location(jnp.eye(4))
  for k in (np.int64(2), np.uint8(2), np.int32(2)):
    check_invariants(submodular.lazy_greedy(fn, k, batch_size=np.int64(4)).indices, 4, 2, [0] * 4)
    check_invariants(selection.top_k(jnp.arange(4.0), k), 4, 2, [0] * 4)
  with pytest.raises(ValueError, match="k=18446744073709551615 is larger"):
    selection.top_k(jnp.ones(4), np.uint64(2**64 - 1))
  with pytest.raises(TypeError, match="got 2.0 of type numpy.float32"):
    selection.top_k(jnp.ones(4), np.float32(2.0))


def test_epsilon_bounds_have_one_wording():
  fn = submodular.facility_location(jnp.eye(4))
  with pytest.raises(ValueError, match=r"epsilon must be a finite number in \(0.0, 1.0\), got"):
    submodular.stochastic_greedy(jax.random.key(0), fn, 2, epsilon=1.5)
  with pytest.raises(ValueError, match=r"epsilon must be a finite number in \(0.0, 1.0\), got"):
    strategies.submodular(epsilon=0.0)


# --- MC dropout without active dropout


def _deterministic(params, x, dropout_key):
  return x.reshape(x.shape[0], -1) @ params


def _dropout(params, x, dropout_key):
  z = x.reshape(x.shape[0], -1)
  if dropout_key is not None:
    z = jnp.where(jax.random.bernoulli(dropout_key, 0.5, z.shape), 2.0 * z, 0.0)
  return z @ params


MC_STRATEGIES = ["bald", "batchbald", "variation_ratio", "mean_std", "mc_entropy", "power"]


@pytest.mark.parametrize("name", MC_STRATEGIES)
def test_mc_strategies_refuse_a_model_without_dropout(name):
  x = jnp.asarray(np.random.default_rng(0).normal(size=(16, 3)), jnp.float32)
  w = jnp.asarray(np.random.default_rng(1).normal(size=(3, 4)), jnp.float32)
  labeled = jnp.zeros(16, bool)
  strategy = strategies.get(name, num_samples=4)
  with pytest.raises(ValueError, match="identical.*dropout.*train_kwarg.*ensemble"):
    strategy.acquire(jax.random.key(0), models.from_apply_fn(_deterministic), w, x, labeled, 2)
  idx = strategy.acquire(jax.random.key(0), models.from_apply_fn(_dropout), w, x, labeled, 2)
  check_invariants(idx, 16, 2, np.zeros(16, bool), name)


def test_mutation_check_patches_apply_to_a_copy(tmp_path):
  import mutation_check

  for m in mutation_check.MUTATIONS:
    repo = tmp_path / m.name
    (repo / m.path).parent.mkdir(parents=True)
    (repo / m.path).write_text((mutation_check.ROOT / m.path).read_text())
    mutation_check.apply(repo, m)
    assert m.new in (repo / m.path).read_text()
    for t in m.tests:
      assert (mutation_check.ROOT / t.split("::")[0]).exists(), t
