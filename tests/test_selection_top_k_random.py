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
  got = selection.top_k(scores, k, jnp.asarray(labeled))
  np.testing.assert_array_equal(got, ref_top_k(scores, k, labeled))
  check_invariants(got, n, k, labeled)


def test_top_k_ties_toward_lower_index():
  np.testing.assert_array_equal(selection.top_k(jnp.array([1.0, 2.0, 2.0, 2.0]), 2), [1, 2])


def test_top_k_never_picks_labeled_even_with_neg_inf_scores():
  scores = jnp.array([-jnp.inf, 5.0, -jnp.inf, jnp.nan])
  labeled = jnp.array([False, True, False, False])
  got = selection.top_k(scores, 3, labeled)
  np.testing.assert_array_equal(got, [0, 2, 3])


def test_top_k_budget_equal_to_unlabeled_pool():
  labeled = jnp.array([True, False, True, False, False])
  got = selection.top_k(jnp.arange(5.0), 3, labeled)
  np.testing.assert_array_equal(np.sort(got), [1, 3, 4])


def test_top_k_one_compile_per_shape():
  with count_traces() as c:
    for seed in range(3):
      selection.top_k(jax.random.normal(jax.random.key(seed), (32,)), 4,
                      jnp.arange(32) < seed)
  assert c["_top_k"] == 1


def test_top_k_bad_input():
  with pytest.raises(ValueError, match="k must be positive"):
    selection.top_k(jnp.zeros(4), 0)
  with pytest.raises(ValueError, match="k=3 is larger than the 2 unlabeled points"):
    selection.top_k(jnp.zeros(4), 3, jnp.array([True, True, False, False]))
  with pytest.raises(ValueError, match=r"labeled_mask must have shape \(4,\).*got shape \(5,\)"):
    selection.top_k(jnp.zeros(4), 1, jnp.zeros(5, bool))
  with pytest.raises(TypeError, match="labeled_mask must have dtype bool"):
    selection.top_k(jnp.zeros(4), 1, jnp.zeros(4, jnp.int32))
  with pytest.raises(ValueError, match=r"scores must have shape \[num_points\]"):
    selection.top_k(jnp.zeros((4, 2)), 1)
  with pytest.raises(TypeError, match="k must be a Python int"):
    selection.top_k(jnp.zeros(4), 1.5)


def test_random_invariants_and_determinism(getkey):
  n, k = 40, 12
  labeled = np.zeros(n, bool)
  labeled[::3] = True
  key = getkey()
  a = selection.random(key, n, k, jnp.asarray(labeled))
  b = selection.random(key, n, k, jnp.asarray(labeled))
  np.testing.assert_array_equal(a, b)
  check_invariants(a, n, k, labeled)
  c = selection.random(getkey(), n, k, jnp.asarray(labeled))
  assert not np.array_equal(a, c)


def test_random_is_uniform_over_unlabeled():
  n, k, trials = 6, 2, 6000
  labeled = jnp.array([True, False, False, False, False, False])
  keys = jax.random.split(jax.random.key(1), trials)
  picks = jax.vmap(lambda kk: selection.random(kk, n, k, labeled))(keys)
  counts = np.bincount(np.asarray(picks).ravel(), minlength=n)
  assert counts[0] == 0
  expected = trials * k / 5
  chi2 = np.sum((counts[1:] - expected) ** 2 / expected)
  assert chi2 < 18.47  # chi-square, 4 degrees of freedom, p = 0.001


def test_random_budget_equal_to_pool(getkey):
  got = selection.random(getkey(), 5, 5)
  np.testing.assert_array_equal(np.sort(got), np.arange(5))


def test_random_rejects_legacy_keys():
  with pytest.raises(TypeError, match=r"typed key from jax.random.key"):
    selection.random(jax.random.PRNGKey(0), 5, 2)
  with pytest.raises(TypeError, match=r"typed key"):
    selection.random(0, 5, 2)
  with pytest.raises(TypeError, match=r"typed key"):
    selection.random(np.zeros(2, np.uint32), 5, 2)
