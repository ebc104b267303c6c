"""k-means++ seeding: the D² law (chi-square against a NumPy reference), invariants, bad input."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import check_invariants
from conftest import count_traces
from conftest import run_fast_jit

from jaxal import selection
from jaxal.embeddings import GradEmbedding

# Upper 0.1% points of the chi-square distribution (significance level 0.001),
# from the standard tables (checked against the regularised incomplete gamma).
CHI2_999 = {
  1: 10.828,
  2: 13.816,
  3: 16.266,
  4: 18.467,
  5: 20.515,
  6: 22.458,
  7: 24.322,
  8: 26.124,
  9: 27.877,
  10: 29.588,
  11: 31.264,
  15: 37.697,
  19: 43.820,
  20: 45.315,
  29: 58.301,
}
NUM_KEYS = 20_000


def dense_of(x):
  return np.asarray(x.dense() if isinstance(x, GradEmbedding) else x, np.float64)


def ref_d2_probs(x, centres, labeled):
  """The D² law from the definition, in float64 NumPy: P(i) ∝ min_c ‖x_i − x_c‖²."""
  x = dense_of(x)
  d2 = ((x[:, None, :] - x[None, centres, :]) ** 2).sum(-1).min(1)
  d2[list(centres)] = 0.0
  d2[np.asarray(labeled)] = 0.0
  if d2.sum() == 0:  # every remaining D² is 0: uniform over the remaining points
    d2 = np.ones(len(x))
    d2[list(centres)] = 0.0
    d2[np.asarray(labeled)] = 0.0
  return d2 / d2.sum()


def chi_square(counts, probs):
  """Pearson's statistic over the cells of nonzero probability; asserts none elsewhere."""
  counts, probs = np.asarray(counts, np.float64), np.asarray(probs, np.float64)
  assert counts[probs == 0].sum() == 0, "a zero-probability point was drawn"
  keep = probs > 0
  expected = counts.sum() * probs[keep]
  assert expected.min() >= 5, "too few draws per cell for the chi-square approximation"
  return float(((counts[keep] - expected) ** 2 / expected).sum()), int(keep.sum()) - 1


def draws(x, k, labeled=None, first="max_norm", num_keys=NUM_KEYS, seed=0):
  keys = jax.random.split(jax.random.key(seed), num_keys)
  f = run_fast_jit(
    jax.vmap(lambda key: selection.kmeans_pp(key, x, k, labeled_mask=labeled, first=first))
  )
  return np.asarray(f(keys))


def small_points(seed, n=8, dim=3):
  rng = np.random.default_rng(seed)
  return jnp.asarray(rng.normal(size=(n, dim)).astype(np.float32))


def small_grad_embedding(seed, n=8, num_classes=3, feat_dim=4):
  rng = np.random.default_rng(seed)
  return GradEmbedding(
    jnp.asarray(rng.normal(size=(n, num_classes)).astype(np.float32)),
    jnp.asarray(rng.normal(size=(n, feat_dim)).astype(np.float32)),
  )


@pytest.mark.parametrize("kind", ["dense", "factorised"])
def test_second_centre_follows_d2_law(kind):
  x = small_points(1) if kind == "dense" else small_grad_embedding(2)
  labeled = jnp.array([False, True, False, False, False, False, True, False])
  n = 8
  got = draws(x, 2, labeled)
  c0 = got[0, 0]
  norms = (dense_of(x) ** 2).sum(1)
  norms[np.asarray(labeled)] = -1
  assert (got[:, 0] == np.argmax(norms)).all()  # max-norm first centre, deterministic
  probs = ref_d2_probs(x, [c0], labeled)
  stat, df = chi_square(np.bincount(got[:, 1], minlength=n), probs)
  assert stat < CHI2_999[df], (stat, df)


def test_joint_law_of_two_later_centres():
  # k = 3: the third centre is drawn while the second is still pending, i.e.
  # through the rejection step; compare the joint law of (c1, c2).
  n = 6
  x = small_points(3, n=n, dim=2)
  got = draws(x, 3)
  c0 = got[0, 0]
  probs = np.zeros((n, n))
  p1 = ref_d2_probs(x, [c0], np.zeros(n, bool))
  for i in range(n):
    if p1[i] > 0:
      probs[i] = p1[i] * ref_d2_probs(x, [c0, i], np.zeros(n, bool))
  counts = np.zeros((n, n))
  np.add.at(counts, (got[:, 1], got[:, 2]), 1)
  stat, df = chi_square(counts.ravel(), probs.ravel())
  assert df == (n - 1) * (n - 2) - 1
  assert stat < CHI2_999[df], (stat, df)


def test_random_first_centre_is_uniform_over_unlabeled():
  x = small_points(4)
  labeled = jnp.arange(8) % 3 == 0
  got = draws(x, 1, labeled, first="random")
  probs = np.where(np.asarray(labeled), 0.0, 1.0)
  stat, df = chi_square(np.bincount(got[:, 0], minlength=8), probs / probs.sum())
  assert stat < CHI2_999[df], (stat, df)


def test_all_zero_distances_fall_back_to_uniform():
  # Every point identical: every D² is 0 after the first centre.
  x = jnp.ones((6, 3))
  got = draws(x, 3, num_keys=6000)
  assert (got[:, 0] == 0).all()  # max norm, ties to the lower index
  for t in (1, 2):
    stat, df = chi_square(np.bincount(got[:, t], minlength=6), np.r_[0.0, np.full(5, 0.2)])
    assert stat < CHI2_999[df], (t, stat, df)
  assert all(len(set(row)) == 3 for row in got.tolist())


@pytest.mark.parametrize("case", ["zeros", "duplicates", "labeled", "factorised_zero_rows"])
def test_invariants_with_ties_and_full_budget(case, getkey):
  n = 12
  rng = np.random.default_rng(0)
  labeled = np.zeros(n, bool)
  if case == "zeros":
    x = jnp.zeros((n, 2))
  elif case == "duplicates":
    x = jnp.asarray(np.repeat(rng.normal(size=(3, 2)), 4, axis=0).astype(np.float32))
  elif case == "labeled":
    x = small_points(5, n=n)
    labeled = rng.random(n) < 0.5
  else:
    a = rng.normal(size=(n, 3)).astype(np.float32)
    a[::2] = 0.0
    x = GradEmbedding(jnp.asarray(a), jnp.asarray(rng.normal(size=(n, 4)).astype(np.float32)))
  k = int(n - labeled.sum())  # the whole unlabeled pool
  for _ in range(3):
    idx = selection.kmeans_pp(getkey(), x, k, labeled_mask=jnp.asarray(labeled))
    check_invariants(idx, n, k, labeled)


def test_chunk_size_does_not_change_the_result():
  # k > 32 forces several passes over the pool and many rejection steps.
  n = 300
  x = small_grad_embedding(6, n=n, num_classes=4, feat_dim=5)
  labeled = jnp.asarray(np.random.default_rng(1).random(n) < 0.2)
  key = jax.random.key(7)
  results = [
    selection.kmeans_pp(key, x, 80, labeled_mask=labeled, chunk_size=c) for c in (7, 64, 1000)
  ]
  for r in results[1:]:
    np.testing.assert_array_equal(r, results[0])
  check_invariants(results[0], n, 80, np.asarray(labeled))


def test_same_key_same_result_and_dense_matches_factorised_first_centre():
  x = small_grad_embedding(8, n=40)
  key = jax.random.key(3)
  a = selection.kmeans_pp(key, x, 10)
  np.testing.assert_array_equal(a, selection.kmeans_pp(key, x, 10))
  b = selection.kmeans_pp(key, x.dense(), 10)
  assert int(a[0]) == int(b[0])  # the same max-norm point


def test_max_norm_first_centre_skips_labeled():
  x = jnp.array([[10.0, 0.0], [0.0, 1.0], [3.0, 0.0], [0.5, 0.5]])
  idx = selection.kmeans_pp(
    jax.random.key(0), x, 2, labeled_mask=jnp.array([True, False, False, False])
  )
  assert int(idx[0]) == 2


def test_one_compile_per_shape():
  x = small_grad_embedding(9, n=50)
  with count_traces() as c:
    for seed in range(3):
      selection.kmeans_pp(jax.random.key(seed), x, 5, labeled_mask=jnp.arange(50) < seed)
  assert c["kmeans_pp_core"] == 1


def test_runs_under_jit_with_traced_mask():
  x = small_points(10, n=20)

  @jax.jit
  def f(key, mask):
    return selection.kmeans_pp(key, x, 4, labeled_mask=mask)

  mask = jnp.arange(20) < 5
  check_invariants(f(jax.random.key(0), mask), 20, 4, np.asarray(mask))


def test_traced_budget_above_unlabeled_count_terminates_with_minus_one():
  # Under a trace the budget cannot be checked against the mask: no hang, -1 fills.
  x = small_points(12, n=10)
  f = jax.jit(lambda key, mask: selection.kmeans_pp(key, x, 6, labeled_mask=mask))
  got = np.asarray(f(jax.random.key(0), jnp.arange(10) < 6))
  assert sorted(got[:4].tolist()) == [6, 7, 8, 9]
  np.testing.assert_array_equal(got[4:], [-1, -1])


def test_bad_input():
  x = small_points(11)
  key = jax.random.key(0)
  with pytest.raises(ValueError, match="larger than the 2 unlabeled"):
    selection.kmeans_pp(key, x, 3, labeled_mask=jnp.arange(8) < 6)
  with pytest.raises(ValueError, match="NaN or inf"):
    selection.kmeans_pp(key, x.at[2, 1].set(jnp.nan), 2)
  with pytest.raises(ValueError, match=r"x\.z of shape \(8, 4\) holds NaN or inf"):
    g = small_grad_embedding(1)
    selection.kmeans_pp(key, GradEmbedding(g.a, g.z.at[0, 0].set(jnp.inf)), 2)
  with pytest.raises(ValueError, match=r"x\.a and x\.z must have the same number of points"):
    selection.kmeans_pp(key, GradEmbedding(jnp.ones((8, 3)), jnp.ones((7, 4))), 2)
  with pytest.raises(TypeError, match="typed key"):
    selection.kmeans_pp(jax.random.PRNGKey(0), x, 2)
  with pytest.raises(ValueError, match="unknown first"):
    selection.kmeans_pp(key, x, 2, first="farthest")
  with pytest.raises(ValueError, match="k must be a positive int"):
    selection.kmeans_pp(key, x, 0)
  with pytest.raises(ValueError, match="chunk_size"):
    selection.kmeans_pp(key, x, 2, chunk_size=0)
  with pytest.raises(ValueError, match=r"shape \[num_points, dim\]"):
    selection.kmeans_pp(key, jnp.ones(8), 2)


def test_numpy_integers_are_accepted():
  x = small_points(11)
  key = jax.random.key(0)
  np.testing.assert_array_equal(
    selection.kmeans_pp(key, x, np.int64(3), chunk_size=np.int32(4)),
    selection.kmeans_pp(key, x, 3, chunk_size=4),
  )
