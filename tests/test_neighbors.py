"""Blocked exact kNN against brute-force NumPy, and the kNN kernel built on it."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import count_traces

from jaxal import neighbors
from jaxal import submodular as sm


def _ref(x, y, k, exclude_self=False, xg=None, yg=None):
  """Brute force from the definition: squared distances, stable sort (ties: lower index)."""
  d = ((x[:, None, :].astype(np.float64) - y[None, :, :]) ** 2).sum(-1)
  if exclude_self:
    np.fill_diagonal(d, np.inf)
  if xg is not None:
    d = np.where(xg[:, None] == yg[None, :], d, np.inf)
  idx = np.argsort(d, axis=1, kind="stable")[:, :k]
  dist = np.take_along_axis(d, idx, axis=1)
  return dist, np.where(np.isinf(dist), -1, idx)


@pytest.mark.parametrize("row_block,col_block", [(7, 5), (64, 64), (1, 200), (13, 31)])
@pytest.mark.parametrize("exclude_self", [False, True])
def test_matches_brute_force(row_block, col_block, exclude_self):
  rng = np.random.default_rng(0)
  x = rng.normal(size=(53, 6)).astype(np.float32)
  nb = neighbors.knn(x, 9, exclude_self=exclude_self, row_block=row_block, col_block=col_block)
  d, i = _ref(x, x, 9, exclude_self)
  assert nb.indices.dtype == jnp.int32 and nb.sq_distances.shape == (53, 9)
  np.testing.assert_array_equal(nb.indices, i)
  np.testing.assert_allclose(nb.sq_distances, d, rtol=1e-4, atol=1e-5)
  if not exclude_self:
    np.testing.assert_array_equal(nb.indices[:, 0], np.arange(53))  # itself first


def test_ties_go_to_the_lower_index_across_tiles():
  # Integer points on a line: many exactly equal distances, exact in float32.
  x = np.repeat(np.arange(10, dtype=np.float32), 3)[:, None]
  nb = neighbors.knn(x, 7, exclude_self=True, row_block=4, col_block=4)
  d, i = _ref(x, x, 7, True)
  np.testing.assert_array_equal(nb.indices, i)
  np.testing.assert_array_equal(nb.sq_distances, d)


def test_queries_against_other_points_and_groups():
  rng = np.random.default_rng(1)
  x = rng.normal(size=(20, 3)).astype(np.float32)
  y = rng.normal(size=(33, 3)).astype(np.float32)
  nb = neighbors.knn(x, 5, y=y, row_block=6, col_block=8)
  d, i = _ref(x, y, 5)
  np.testing.assert_array_equal(nb.indices, i)
  np.testing.assert_allclose(nb.sq_distances, d, rtol=1e-4, atol=1e-5)
  # Groups: only points of the same group; a group smaller than k pads with inf / -1.
  g = rng.integers(0, 4, size=20).astype(np.int32)
  g[:3] = 9  # a group of three
  nb = neighbors.knn(x, 6, exclude_self=True, x_groups=g, row_block=5, col_block=7)
  d, i = _ref(x, x, 6, True, g, g)
  np.testing.assert_array_equal(nb.indices, i)
  np.testing.assert_allclose(nb.sq_distances, d, rtol=1e-4, atol=1e-5)
  assert (nb.indices[:3, 2:] == -1).all() and np.isinf(nb.sq_distances[:3, 2:]).all()


def test_large_magnitudes_do_not_overflow():
  rng = np.random.default_rng(2)
  x = rng.normal(size=(30, 4)).astype(np.float32)
  base = neighbors.knn(x, 5, exclude_self=True)
  for scale in (1e18, 1e-18):
    nb = neighbors.knn(x * np.float32(scale), 5, exclude_self=True, row_block=7, col_block=9)
    np.testing.assert_array_equal(nb.indices, base.indices)
    assert np.isfinite(np.asarray(nb.sq_distances)).all()
    np.testing.assert_allclose(
      np.asarray(nb.sq_distances) / scale**2, base.sq_distances, rtol=1e-4, atol=1e-6
    )


def test_one_compile_per_shape():
  rng = np.random.default_rng(3)
  with count_traces() as c:
    for s in range(3):
      neighbors.knn(rng.normal(size=(40, 3)).astype(np.float32) + s, 4, row_block=16)
  assert c["knn_core"] == 1


def test_bad_input():
  x = jnp.ones((5, 2))
  with pytest.raises(ValueError, match="k must be"):
    neighbors.knn(x, 6)
  with pytest.raises(ValueError, match="k must be"):
    neighbors.knn(x, 5, exclude_self=True)
  with pytest.raises(ValueError, match="same dim"):
    neighbors.knn(x, 2, y=jnp.ones((4, 3)))
  with pytest.raises(ValueError, match="x_groups must have shape"):
    neighbors.knn(x, 2, x_groups=jnp.zeros(4, jnp.int32))
  with pytest.raises(TypeError, match="x_groups must be integers"):
    neighbors.knn(x, 2, x_groups=jnp.zeros(5))
  with pytest.raises(ValueError, match="NaN or inf"):
    neighbors.knn(x.at[1, 1].set(jnp.nan), 2)
  with pytest.raises(TypeError, match="k must be"):
    neighbors.knn(x, 2.0)
  assert neighbors.knn(x, np.int64(2)).indices.shape == (5, 2)  # NumPy ints are ints


@pytest.mark.parametrize("metric", ["cosine", "rbf"])
def test_knn_kernel_is_the_top_k_of_the_dense_kernel(metric):
  rng = np.random.default_rng(4)
  x = jnp.asarray(rng.normal(size=(41, 5)).astype(np.float32))
  dense = sm.similarity_kernel(x, metric=metric)
  v, i = jax.lax.top_k(dense, 7)  # the previous builder: one top_k over each whole row
  sk = sm.knn_kernel(x, 7, metric=metric, chunk_size=6, col_chunk_size=9)
  np.testing.assert_array_equal(sk.indices, i)
  np.testing.assert_allclose(sk.values, v, rtol=1e-6, atol=1e-7)
  np.testing.assert_array_equal(sk.indices[:, 0], np.arange(41))
