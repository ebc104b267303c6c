"""k-center greedy, k-means and k-means sampling against NumPy references."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import check_invariants
from conftest import count_traces

from jaxal import selection
from jaxal._src import distances
from jaxal._src.selection import k_center
from jaxal._src.selection import kmeans
from jaxal.embeddings import GradEmbedding

# ---------------------------------------------------------------------------
# NumPy references, written from the papers' definitions (float64, direct
# differences rather than the ‖a‖² + ‖b‖² − 2a·b expansion).


def ref_sq_dist(x, y):
  x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
  return ((x[:, None, :] - y[None, :, :]) ** 2).sum(-1)


def ref_k_center(x, k, labeled, first=None):
  """Farthest-first traversal (Sener & Savarese 2018), ties to the lower index."""
  x = np.asarray(x, np.float64)
  n = len(x)
  md = ref_sq_dist(x, x[labeled]).min(1) if labeled.any() else np.full(n, np.inf)
  taken = labeled.copy()
  out = []
  for t in range(k):
    j = first if (t == 0 and not labeled.any()) else int(np.argmax(np.where(taken, -np.inf, md)))
    out.append(j)
    taken[j] = True
    md = np.minimum(md, ((x - x[j]) ** 2).sum(-1))
  return np.array(out)


def ref_lloyd(x, active, centres, max_iter, tol):
  """Lloyd's iterations with jaxal's empty-cluster rule (r-th empty ← r-th farthest point)."""
  x = np.asarray(x, np.float64)
  c = np.asarray(centres, np.float64).copy()
  k = len(c)
  it = 0
  shift = np.inf
  while it < max_iter and shift > tol:
    d = ref_sq_dist(x, c)
    a = d.argmin(1)
    dmin = d[np.arange(len(x)), a]
    new = c.copy()
    far = np.argsort(-np.where(active, dmin, -np.inf), kind="stable")
    r = 0
    for j in range(k):
      members = active & (a == j)
      if members.any():
        new[j] = x[members].mean(0)
      else:
        new[j] = x[far[r]]
        r += 1
    shift = ((new - c) ** 2).sum()
    c = new
    it += 1
  d = ref_sq_dist(x, c)
  a = d.argmin(1)
  return c, np.where(active, a, -1), float(d[np.arange(len(x)), a][active].sum()), it


def ref_match(x, available, centres):
  """Greedy by distance: closest (centre, free point) pair first; ties to lower indices."""
  d = ref_sq_dist(centres, x)
  d[:, ~available] = np.inf
  k = len(centres)
  out = np.zeros(k, int)
  resolved = np.zeros(k, bool)
  for _ in range(k):
    best = np.where(resolved, np.inf, d.min(1))
    j = int(np.argmin(best))
    p = int(np.argmin(d[j]))
    out[j] = p
    resolved[j] = True
    d[:, p] = np.inf
  return out


def _points(seed, n=120, d=6):
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(n, d)).astype(np.float32)
  x[7] = x[3]  # exact duplicates: equal distances, ties go to the lower index
  x[n // 2] = x[3]
  return x


# ---------------------------------------------------------------------------
# distances.min_sq_dist_masked


@pytest.mark.parametrize("chunk_size,row_chunk_size", [(1024, 8192), (7, 16)])
def test_min_sq_dist_masked_matches_brute_force(chunk_size, row_chunk_size):
  rng = np.random.default_rng(0)
  x = rng.normal(size=(45, 5)).astype(np.float32)
  y = rng.normal(size=(30, 5)).astype(np.float32)
  y[11] = y[4]
  mask = rng.random(30) < 0.5
  mask[[4, 11]] = True
  d, i = distances.min_sq_dist_masked(
    jnp.asarray(x),
    jnp.asarray(y),
    jnp.asarray(mask),
    chunk_size=chunk_size,
    row_chunk_size=row_chunk_size,
  )
  ref = np.where(mask[None, :], ref_sq_dist(x, y), np.inf)
  np.testing.assert_array_equal(i, ref.argmin(1))
  np.testing.assert_allclose(d, ref.min(1), rtol=1e-5, atol=1e-5)
  assert 11 not in np.asarray(i)  # duplicate of 4: the lower index wins


def test_min_sq_dist_masked_empty_mask_and_factorised():
  rng = np.random.default_rng(1)
  a, z = rng.normal(size=(20, 3)).astype(np.float32), rng.normal(size=(20, 4)).astype(np.float32)
  g = GradEmbedding(jnp.asarray(a), jnp.asarray(z))
  dense = g.dense()
  mask = jnp.asarray(rng.random(20) < 0.4)
  d1, i1 = distances.min_sq_dist_masked(g, g, mask, chunk_size=3, row_chunk_size=8)
  d2, i2 = distances.min_sq_dist_masked(dense, dense, mask, chunk_size=3, row_chunk_size=8)
  np.testing.assert_array_equal(i1, i2)
  np.testing.assert_allclose(d1, d2, rtol=1e-4, atol=1e-4)
  d, i = distances.min_sq_dist_masked(dense, dense, jnp.zeros(20, bool))
  assert np.isinf(np.asarray(d)).all() and (np.asarray(i) == 0).all()


# ---------------------------------------------------------------------------
# k-center greedy


@pytest.mark.parametrize("seed", range(3))
def test_k_center_matches_reference_from_labeled_set(seed):
  x = _points(seed)
  rng = np.random.default_rng(seed + 10)
  labeled = rng.random(len(x)) < 0.15
  labeled[3] = seed == 0  # with seed 0 the duplicates sit on a labeled point
  got = selection.k_center_greedy(None, jnp.asarray(x), 40, labeled_mask=jnp.asarray(labeled))
  np.testing.assert_array_equal(got, ref_k_center(x, 40, labeled))
  check_invariants(got, len(x), 40, labeled)


def test_k_center_chunking_does_not_change_the_order():
  x = _points(3)
  labeled = np.zeros(len(x), bool)
  labeled[::9] = True
  # 40 picks on 120 points, as above: the unchunked run reuses that compiled loop.
  a = selection.k_center_greedy(None, jnp.asarray(x), 40, labeled_mask=jnp.asarray(labeled))
  b = selection.k_center_greedy(
    None, jnp.asarray(x), 40, labeled_mask=jnp.asarray(labeled), chunk_size=4, row_chunk_size=32
  )
  np.testing.assert_array_equal(a, b)


def test_k_center_empty_labeled_set_starts_from_keyed_random_point(getkey):
  x = _points(4)
  n = len(x)
  key = getkey()
  got = selection.k_center_greedy(key, jnp.asarray(x), 25)
  np.testing.assert_array_equal(got, ref_k_center(x, 25, np.zeros(n, bool), first=int(got[0])))
  np.testing.assert_array_equal(got, selection.k_center_greedy(key, jnp.asarray(x), 25))
  # The same budget for every key: one compiled loop.
  firsts = {int(selection.k_center_greedy(getkey(), jnp.asarray(x), 25)[0]) for _ in range(6)}
  assert len(firsts) > 1  # the first pick does depend on the key
  check_invariants(got, n, 25, np.zeros(n, bool))


def test_k_center_budget_equal_to_unlabeled_count_and_all_duplicates():
  x = np.zeros((10, 3), np.float32)  # every distance is 0
  labeled = np.zeros(10, bool)
  labeled[[0, 4]] = True
  got = selection.k_center_greedy(None, jnp.asarray(x), 8, labeled_mask=jnp.asarray(labeled))
  np.testing.assert_array_equal(got, [1, 2, 3, 5, 6, 7, 8, 9])


def test_k_center_factorised_equals_dense():
  rng = np.random.default_rng(5)
  g = GradEmbedding(
    jnp.asarray(rng.normal(size=(60, 3)), jnp.float32),
    jnp.asarray(rng.normal(size=(60, 4)), jnp.float32),
  )
  labeled = jnp.asarray(rng.random(60) < 0.2)
  a = selection.k_center_greedy(None, g, 15, labeled_mask=labeled)
  b = selection.k_center_greedy(None, g.dense(), 15, labeled_mask=labeled)
  np.testing.assert_array_equal(a, b)
  np.testing.assert_array_equal(a, ref_k_center(np.asarray(g.dense()), 15, np.asarray(labeled)))


@jax.jit
def _full_pass_k_center(x, labeled, first):
  """The one-pass farthest-first loop (every row read at every pick), float32 as jaxal computes."""
  xn = jnp.sum(x * x, -1)
  md, _ = distances.min_sq_dist_masked(x, x, labeled, chunk_size=16, row_chunk_size=64)

  def body(t, carry):
    md, taken, out = carry
    j = jnp.argmax(jnp.where(taken, -jnp.inf, md)).astype(jnp.int32)
    j = jnp.where((t == 0) & ~jnp.any(labeled), first, j)
    d = jnp.maximum(xn + xn[j] - 2.0 * (x @ x[j]), 0.0)
    return jnp.minimum(md, d), taken.at[j].set(True), out.at[t].set(j)

  return jax.lax.fori_loop(0, 40, body, (md, labeled, jnp.zeros((40,), jnp.int32)))[2]


def _pool(kind, seed, n=240, d=6):
  rng = np.random.default_rng(seed)
  if kind == "random":
    return rng.normal(size=(n, d)).astype(np.float32)
  if kind == "clustered":  # 12 tight, far-apart clusters: most rows are skipped
    centres = 8.0 * rng.normal(size=(12, d))
    return (centres[rng.integers(0, 12, n)] + rng.normal(size=(n, d))).astype(np.float32)
  if kind == "spread":  # 64 dimensions: the bound rules out almost nothing, picks go unbounded
    return rng.normal(size=(n, 64)).astype(np.float32)
  if kind == "grid":  # small integers: exact distances, many ties
    return rng.integers(0, 3, size=(n, d)).astype(np.float32)
  return rng.normal(size=(n // 8, d)).astype(np.float32)[rng.integers(0, n // 8, n)]  # duplicates


@pytest.mark.parametrize("kind", ["random", "clustered", "spread", "grid", "duplicates"])
@pytest.mark.parametrize("num_labeled", [0, 20])
def test_k_center_pruned_picks_equal_the_full_pass(kind, num_labeled):
  """Triangle-inequality skipping, and picks made without the bound after one it left a
  whole pass, change which rows are read, never a pick or its order."""
  x = _pool(kind, num_labeled)
  rng = np.random.default_rng(7)
  labeled = np.zeros(len(x), bool)
  labeled[rng.choice(len(x), num_labeled, replace=False)] = True
  first = k_center.first_pick(jax.random.key(3), jnp.zeros(len(x), bool))
  got, reads = k_center._k_center(first, jnp.asarray(x), 40, jnp.asarray(labeled), 16, 64)
  want = _full_pass_k_center(jnp.asarray(x), jnp.asarray(labeled), first)
  np.testing.assert_array_equal(got, want)
  check_invariants(got, len(x), 40, labeled)
  if kind == "clustered" and num_labeled:
    assert float(reads) < 0.5 * 40 * len(x)  # rows read (centres included), against 40 passes
  if kind == "spread":  # 40 full passes, and the centres read by a few of the picks only
    centre_rows = sum(num_labeled + t for t in range(40))
    assert 40 * len(x) <= float(reads) < 40 * len(x) + 0.5 * centre_rows


def test_k_center_huge_entries_pick_as_unit_scale():
  x = _pool("clustered", 1)
  labeled = jnp.asarray(np.arange(len(x)) % 17 == 0)
  want = selection.k_center_greedy(None, jnp.asarray(x), 30, labeled_mask=labeled)
  for scale in (1e20, 1e-20):  # squares overflow / underflow float32
    got = selection.k_center_greedy(None, jnp.asarray(x) * scale, 30, labeled_mask=labeled)
    np.testing.assert_array_equal(got, want)


def test_k_center_one_compile_for_every_round():
  x = jnp.asarray(_points(6, n=77))
  with count_traces() as c:
    for r in range(3):
      selection.k_center_greedy(None, x, 5, labeled_mask=jnp.arange(77) < 10 * (r + 1))
  assert c["k_center_greedy_core"] == 1


def test_k_center_draws_no_random_first_point_when_some_point_is_labeled():
  """The labeled set fixes the first pick: the random draw (a program of its own) is not
  compiled for it, and the key does not change the picks."""
  x = jnp.asarray(_points(8, n=83))
  labeled = jnp.arange(83) < 5
  with count_traces() as c:
    got = selection.k_center_greedy(jax.random.key(0), x, 4, labeled_mask=labeled)
  assert c["_random_index"] == 0
  other = selection.k_center_greedy(jax.random.key(1), x, 4, labeled_mask=labeled)
  np.testing.assert_array_equal(got, other)
  np.testing.assert_array_equal(got, selection.k_center_greedy(None, x, 4, labeled_mask=labeled))
  with count_traces() as c:
    empty = selection.k_center_greedy(jax.random.key(0), x, 4, labeled_mask=jnp.zeros(83, bool))
  assert c["_random_index"] == 1
  assert int(empty[0]) == int(jax.random.randint(jax.random.key(0), (), 0, 83, dtype=jnp.int32))


def test_k_center_memory_is_linear_in_n():
  """N = 10^6 must fit: the compiled loop's scratch memory grows O(N), not O(N * chunk)."""

  def temp_bytes(n):
    lowered = k_center.k_center_greedy_core.lower(
      jnp.int32(0),
      jax.ShapeDtypeStruct((n, 16), jnp.float32),
      k=10,
      labeled_mask=jax.ShapeDtypeStruct((n,), jnp.bool_),
      chunk_size=256,
      row_chunk_size=1024,
    )
    return lowered.compile().memory_analysis().temp_size_in_bytes

  small, big = temp_bytes(20_000), temp_bytes(80_000)
  assert big - small <= 64 * 60_000  # a few [N] vectors, no [N, chunk] block
  assert big <= 64 * 80_000 + 16 * 256 * 1024 * 4


def test_k_center_bad_input(getkey):
  x = jnp.asarray(_points(0, n=10))
  labeled = jnp.arange(10) < 7
  with pytest.raises(ValueError, match="larger than the 3 unlabeled"):
    selection.k_center_greedy(None, x, 4, labeled_mask=labeled)
  with pytest.raises(ValueError, match="key is required"):
    selection.k_center_greedy(None, x, 2)
  with pytest.raises(TypeError, match="jax.random.key"):
    selection.k_center_greedy(jax.random.PRNGKey(0), x, 2)
  with pytest.raises(ValueError, match=r"\[num_points, dim\]"):
    selection.k_center_greedy(getkey(), jnp.zeros(10), 2)
  with pytest.raises(ValueError, match="NaN"):
    selection.k_center_greedy(getkey(), x.at[2, 1].set(jnp.nan), 2)
  with pytest.raises(ValueError, match="chunk_size"):
    selection.k_center_greedy(getkey(), x, 2, chunk_size=0)


def test_k_center_old_spelling_names_the_new_one(getkey):
  x = jnp.asarray(_points(0, n=10))
  labeled = jnp.arange(10) < 3
  usage = r"k_center_greedy\(key, x, k, \*, labeled_mask=None"
  with pytest.raises(TypeError, match=usage):
    selection.k_center_greedy(x, 2, labeled_mask=labeled)
  with pytest.raises(TypeError, match=usage):
    selection.k_center_greedy(x, 2, key=getkey())
  with pytest.raises(TypeError, match=usage):
    selection.k_center_greedy(x, 2, 3)


def test_selectors_accept_numpy_integers(getkey):
  x = jnp.asarray(_points(0, n=10))
  labeled = jnp.arange(10) < 3
  np.testing.assert_array_equal(
    selection.k_center_greedy(None, x, np.int64(4), labeled_mask=labeled, chunk_size=np.int32(2)),
    selection.k_center_greedy(None, x, 4, labeled_mask=labeled),
  )
  key = getkey()
  res = selection.kmeans(key, x, np.int32(3), n_init=np.int64(2), max_iter=np.int64(5))
  assert res.centres.shape == (3, x.shape[1])
  got = selection.kmeans_sampling(key, x, np.int64(3), labeled_mask=labeled, n_init=np.int32(1))
  check_invariants(got, 10, 3, np.asarray(labeled))


# ---------------------------------------------------------------------------
# k-means


@pytest.mark.parametrize("case", ["plain", "empty_cluster", "masked"])
def test_lloyd_matches_reference(case):
  rng = np.random.default_rng(7)
  x = rng.normal(size=(60, 3)).astype(np.float32)
  active = np.ones(60, bool)
  init = x[[0, 1, 2, 3]].copy()
  if case == "empty_cluster":
    init[2] = 100.0  # no point is nearest: re-seeded at the farthest point
  if case == "masked":
    active[::3] = False
  c, a, inertia, it = jax.jit(kmeans.lloyd, static_argnums=(3, 5, 6))(
    jnp.asarray(x), jnp.asarray(active), jnp.asarray(init), 50, jnp.float32(0.0), 1024, 8192
  )
  rc, ra, rinertia, rit = ref_lloyd(x, active, init, 50, 0.0)
  np.testing.assert_array_equal(a, ra)
  np.testing.assert_allclose(c, rc, rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(inertia, rinertia, rtol=1e-4)
  assert int(it) == rit


def test_kmeans_recovers_separated_blobs(getkey):
  rng = np.random.default_rng(8)
  means = np.array([[0, 0], [20, 0], [0, 20], [20, 20]], np.float32)
  labels = np.repeat(np.arange(4), 25)
  x = means[labels] + rng.normal(size=(100, 2)).astype(np.float32)
  res = selection.kmeans(getkey(), jnp.asarray(x), 4, n_init=2)
  a = np.asarray(res.assignments)
  assert a.dtype == np.int32 and res.centres.shape == (4, 2)
  # One cluster per blob.
  for b in range(4):
    assert len(set(a[labels == b].tolist())) == 1
  assert len(set(a.tolist())) == 4
  # Inertia and assignments are consistent with the returned centres.
  d = ref_sq_dist(x, res.centres)
  np.testing.assert_array_equal(a, d.argmin(1))
  np.testing.assert_allclose(res.inertia, d.min(1).sum(), rtol=1e-4)


def test_kmeans_returns_the_best_of_its_vmapped_runs(getkey):
  x = jnp.asarray(np.random.default_rng(9).normal(size=(80, 4)), jnp.float32)
  key = getkey()
  best = selection.kmeans(key, x, 6, n_init=4)
  again = selection.kmeans(key, x, 6, n_init=4)
  np.testing.assert_array_equal(best.assignments, again.assignments)
  runs = jax.jit(kmeans.kmeans_runs, static_argnums=(3, 4, 6, 7))(
    jax.random.split(key, 4), x, jnp.ones(80, bool), 6, 100, jnp.float32(1e-4), 1024, 8192
  )
  i = int(np.argmin(np.asarray(runs.inertia)))
  np.testing.assert_allclose(best.inertia, runs.inertia[i], rtol=1e-6)
  np.testing.assert_array_equal(best.assignments, runs.assignments[i])
  for r in range(4):  # every run is a local optimum: assignments = nearest centre
    np.testing.assert_array_equal(runs.assignments[r], ref_sq_dist(x, runs.centres[r]).argmin(1))


def test_kmeans_bad_input(getkey):
  x = jnp.ones((5, 2))
  with pytest.raises(ValueError, match="larger than the pool"):
    selection.kmeans(getkey(), x, 6)
  with pytest.raises(ValueError, match="n_init"):
    selection.kmeans(getkey(), x, 2, n_init=0)
  with pytest.raises(ValueError, match="tol"):
    selection.kmeans(getkey(), x, 2, tol=-1.0)
  with pytest.raises(TypeError, match="typed key"):
    selection.kmeans(0, x, 2)


# ---------------------------------------------------------------------------
# k-means sampling


def test_match_centres_resolves_collisions_like_reference():
  rng = np.random.default_rng(10)
  x = rng.normal(size=(40, 2)).astype(np.float32)
  available = rng.random(40) < 0.7
  # Several centres share a nearest point: the greedy resolution matters.
  centres = np.concatenate(
    [x[[5, 5, 5]] + 0.01 * rng.normal(size=(3, 2)), rng.normal(size=(4, 2))]
  ).astype(np.float32)
  available[5] = True
  got = jax.jit(kmeans.match_centres, static_argnums=(3, 4))(
    jnp.asarray(x), jnp.asarray(available), jnp.asarray(centres), 1024, 8192
  )
  np.testing.assert_array_equal(got, ref_match(x, available, centres))
  check_invariants(got, 40, 7, ~available)


def test_kmeans_sampling_picks_the_nearest_unlabeled_point_of_each_centre(getkey):
  rng = np.random.default_rng(11)
  x = rng.normal(size=(90, 3)).astype(np.float32)
  x[:10] += 50.0  # a far cluster, all labeled: it must not attract a centre
  labeled = np.zeros(90, bool)
  labeled[:10] = True
  labeled[rng.choice(np.arange(10, 90), 8, replace=False)] = True
  key = getkey()
  got = selection.kmeans_sampling(key, jnp.asarray(x), 6, labeled_mask=jnp.asarray(labeled))
  check_invariants(got, 90, 6, labeled)
  res = kmeans.kmeans_core(
    key, jnp.asarray(x), 6, jnp.asarray(~labeled), 3, 100, jnp.float32(1e-4), 1024, 8192
  )
  assert np.asarray(res.centres).max() < 25.0
  np.testing.assert_array_equal(got, ref_match(x, ~labeled, np.asarray(res.centres)))
  np.testing.assert_array_equal(
    got, selection.kmeans_sampling(key, jnp.asarray(x), 6, labeled_mask=jnp.asarray(labeled))
  )


def test_kmeans_sampling_budget_equal_to_unlabeled_count(getkey):
  x = jnp.asarray(np.random.default_rng(12).normal(size=(12, 2)), jnp.float32)
  labeled = jnp.arange(12) % 3 == 0
  got = selection.kmeans_sampling(getkey(), x, 8, labeled_mask=labeled)
  np.testing.assert_array_equal(np.sort(got), np.nonzero(~np.asarray(labeled))[0])
  with pytest.raises(ValueError, match="larger than the 8 unlabeled"):
    selection.kmeans_sampling(getkey(), x, 9, labeled_mask=labeled)
