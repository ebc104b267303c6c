"""top_k and random selection: references, invariants, bad input."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import check_invariants
from conftest import count_traces

from jaxal import selection


def ref_top_k(scores, k, labeled):
  order = sorted(range(len(scores)), key=lambda i: (labeled[i], -scores[i], i))
  return np.array(order[:k])


@pytest.mark.parametrize("seed", range(5))
def test_top_k_matches_reference_with_ties(seed):
  rng = np.random.default_rng(seed)
  n = 50
  scores = rng.integers(0, 5, n).astype(np.float32)  # many ties
  labeled = rng.random(n) < 0.3
  k = 10
  got = selection.top_k(scores, k, labeled_mask=jnp.asarray(labeled))
  np.testing.assert_array_equal(got, ref_top_k(scores, k, labeled))
  check_invariants(got, n, k, labeled)


def test_top_k_ties_toward_lower_index():
  np.testing.assert_array_equal(selection.top_k(jnp.array([1.0, 2.0, 2.0, 2.0]), 2), [1, 2])


def test_top_k_never_picks_labeled_even_with_neg_inf_scores():
  scores = jnp.array([-jnp.inf, 5.0, -jnp.inf, jnp.nan])
  labeled = jnp.array([False, True, False, False])
  got = selection.top_k(scores, 3, labeled_mask=labeled, check_finite=False)  # NaN ranks last
  np.testing.assert_array_equal(got, [0, 2, 3])
  with pytest.raises(ValueError, match=r"scores of shape \(4,\) holds 1 NaN values"):
    selection.top_k(scores, 3, labeled_mask=labeled)


def test_top_k_budget_equal_to_unlabeled_pool():
  labeled = jnp.array([True, False, True, False, False])
  got = selection.top_k(jnp.arange(5.0), 3, labeled_mask=labeled)
  np.testing.assert_array_equal(np.sort(got), [1, 3, 4])


def test_top_k_one_compile_per_shape():
  with count_traces() as c:
    for seed in range(3):
      selection.top_k(
        jax.random.normal(jax.random.key(seed), (32,)), 4, labeled_mask=jnp.arange(32) < seed
      )
  assert c["top_k_core"] == 1


def test_top_k_bad_input():
  with pytest.raises(ValueError, match="k must be a positive int"):
    selection.top_k(jnp.zeros(4), 0)
  with pytest.raises(ValueError, match="k=3 is larger than the 2 unlabeled points"):
    selection.top_k(jnp.zeros(4), 3, labeled_mask=jnp.array([True, True, False, False]))
  with pytest.raises(ValueError, match=r"labeled_mask must have shape \(4,\).*got shape \(5,\)"):
    selection.top_k(jnp.zeros(4), 1, labeled_mask=jnp.zeros(5, bool))
  with pytest.raises(TypeError, match="labeled_mask must have dtype bool"):
    selection.top_k(jnp.zeros(4), 1, labeled_mask=jnp.zeros(4, jnp.int32))
  with pytest.raises(ValueError, match=r"scores must have shape \[num_points\]"):
    selection.top_k(jnp.zeros((4, 2)), 1)
  with pytest.raises(TypeError, match="k must be a positive int"):
    selection.top_k(jnp.zeros(4), 1.5)


def test_top_k_old_spelling_names_the_new_one():
  mask = jnp.array([True, False, False, False])
  with pytest.raises(
    TypeError, match=r"top_k\(scores, k, \*, labeled_mask=None, check_finite=True\)"
  ):
    selection.top_k(jnp.arange(4.0), 2, mask)


def test_top_k_and_random_accept_numpy_integers(getkey):
  mask = jnp.array([True, False, False, False])
  np.testing.assert_array_equal(
    selection.top_k(jnp.arange(4.0), np.int64(2), labeled_mask=mask), [3, 2]
  )
  got = selection.random(getkey(), np.int32(4), np.int64(3), labeled_mask=mask)
  np.testing.assert_array_equal(np.sort(got), [1, 2, 3])


def test_random_invariants_and_determinism(getkey):
  n, k = 40, 12
  labeled = np.zeros(n, bool)
  labeled[::3] = True
  key = getkey()
  a = selection.random(key, n, k, labeled_mask=jnp.asarray(labeled))
  b = selection.random(key, n, k, labeled_mask=jnp.asarray(labeled))
  np.testing.assert_array_equal(a, b)
  check_invariants(a, n, k, labeled)
  c = selection.random(getkey(), n, k, labeled_mask=jnp.asarray(labeled))
  assert not np.array_equal(a, c)


def test_random_is_uniform_over_unlabeled():
  n, k, trials = 6, 2, 6000
  labeled = jnp.array([True, False, False, False, False, False])
  keys = jax.random.split(jax.random.key(1), trials)
  picks = jax.vmap(lambda kk: selection.random(kk, n, k, labeled_mask=labeled))(keys)
  counts = np.bincount(np.asarray(picks).ravel(), minlength=n)
  assert counts[0] == 0
  expected = trials * k / 5
  chi2 = np.sum((counts[1:] - expected) ** 2 / expected)
  assert chi2 < 18.47  # chi-square, 4 degrees of freedom, p = 0.001


def test_random_budget_equal_to_pool(getkey):
  got = selection.random(getkey(), 5, 5)
  np.testing.assert_array_equal(np.sort(got), np.arange(5))


def test_random_rejects_legacy_keys():
  with pytest.raises(TypeError, match=r"random takes a jax.random.key"):
    selection.random(jax.random.PRNGKey(0), 5, 2)
  with pytest.raises(TypeError, match=r"jax.random.key"):
    selection.random(0, 5, 2)
  with pytest.raises(TypeError, match=r"jax.random.key"):
    selection.random(np.zeros(2, np.uint32), 5, 2)


def test_random_old_spelling_names_the_new_one(getkey):
  mask = jnp.array([True, False, False, False])
  with pytest.raises(TypeError, match=r"random\(key, n, k, \*, labeled_mask=None\)"):
    selection.random(getkey(), 4, 2, mask)
