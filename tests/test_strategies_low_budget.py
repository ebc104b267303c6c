"""TypiClust, ProbCover and the δ of ProbCover against NumPy references from the papers."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import check_invariants
from conftest import count_traces

from jaxal import loop
from jaxal import models
from jaxal import scores
from jaxal import selection
from jaxal import strategies
from jaxal._src.strategies import low_budget


def _blobs(n=60, d=3, centres=6, seed=0, spread=0.3):
  rng = np.random.default_rng(seed)
  c = rng.normal(size=(centres, d)) * 4.0
  lab = rng.integers(0, centres, size=n)
  return (c[lab] + rng.normal(size=(n, d)) * spread).astype(np.float32), lab


def _typiclust_ref(x, clusters, labeled, budget, k=20, min_size=5):
  """The paper's procedure as its reference code, with Euclidean mean distances (the paper's
  definition) and each cluster's typicality computed once per round."""
  n = len(x)
  c = clusters.max() + 1
  sizes = np.bincount(clusters, minlength=c)
  existing = np.bincount(clusters[labeled], minlength=c)
  ids = [j for j in range(c) if sizes[j] > min_size]
  ids.sort(key=lambda j: (existing[j], -sizes[j], j))
  typ = np.zeros(n)
  for j in range(c):
    members = np.flatnonzero((clusters == j) & ~labeled)
    if len(members) == 0:
      continue
    kc = max(1, min(k, len(members) // 2))
    f = x[members].astype(np.float64)
    dist = np.sqrt(((f[:, None] - f[None]) ** 2).sum(-1))
    np.fill_diagonal(dist, np.inf)
    nn = np.sort(dist, axis=1)[:, :kc]
    typ[members] = np.where(np.isfinite(nn).all(1), 1.0 / (nn.mean(1) + 1e-5), 0.0)
  picks, taken = [], labeled.copy()
  rounds = 0
  while len(picks) < budget and rounds < n:
    for j in ids:
      members = np.flatnonzero((clusters == j) & ~taken)
      if len(members) and len(picks) < budget:
        best = members[np.argmax(typ[members])]  # ties: the lowest index
        picks.append(best)
        taken[best] = True
    rounds += 1
  return np.array(picks)


@pytest.mark.parametrize("num_labeled,budget", [(0, 5), (4, 6), (3, 12)])
def test_typiclust_matches_the_reference(num_labeled, budget):
  x, _ = _blobs()
  n = len(x)
  labeled = np.zeros(n, bool)
  labeled[np.random.default_rng(1).choice(n, num_labeled, replace=False)] = True
  key = jax.random.key(2)
  num_clusters = min(num_labeled + budget, 500)
  km = selection.kmeans(key, x, num_clusters, n_init=1, chunk_size=min(1024, num_clusters))
  feats = jnp.asarray(x)
  got = low_budget.select_typiclust(key, feats, budget, jnp.asarray(labeled), n_init=1)
  check_invariants(got, n, budget, labeled)
  ref = _typiclust_ref(x, np.asarray(km.assignments), labeled, budget)
  np.testing.assert_array_equal(got, ref)


def test_typiclust_takes_the_densest_point_of_each_blob():
  x, lab = _blobs(n=90, centres=3, spread=0.2, seed=3)
  s = strategies.typiclust(embed=lambda p: p)
  got = np.asarray(s.acquire(jax.random.key(0), None, None, jnp.asarray(x), None, 3))
  assert sorted(lab[got].tolist()) == [0, 1, 2]


def _probcover_ref(x, labeled, budget, delta):
  """The reference code's greedy on the full δ-ball graph (dist < δ), NumPy."""
  d = np.sqrt(((x[:, None].astype(np.float64) - x[None]) ** 2).sum(-1))
  graph = d < delta
  covered = graph[labeled].any(0)
  picks = []
  for _ in range(budget):
    deg = (graph & ~covered[None, :]).sum(1)
    if deg.max() == 0:
      break  # all covered: the rest is random
    cur = int(np.argmax(deg))
    picks.append(cur)
    covered |= graph[cur]
  return np.array(picks, int), covered.mean()


@pytest.mark.parametrize("num_labeled,budget,delta", [(0, 6, 1.0), (5, 8, 1.5), (3, 40, 2.0)])
def test_probcover_matches_the_reference(num_labeled, budget, delta):
  x, _ = _blobs(n=50, spread=0.8, seed=4)
  n = len(x)
  labeled = np.zeros(n, bool)
  labeled[np.random.default_rng(5).choice(n, num_labeled, replace=False)] = True
  got, coverage = low_budget.select_probcover(
    jax.random.key(6), jnp.asarray(x), budget, jnp.asarray(labeled), delta=delta, num_neighbors=n
  )
  check_invariants(got, n, budget, labeled)
  ref, ref_cov = _probcover_ref(x, labeled, budget, delta)
  np.testing.assert_array_equal(np.asarray(got)[: len(ref)], ref)
  np.testing.assert_allclose(float(coverage), 1.0 if len(ref) < budget else ref_cov, rtol=1e-6)
  again, _ = low_budget.select_probcover(
    jax.random.key(6), jnp.asarray(x), budget, jnp.asarray(labeled), delta=delta, num_neighbors=n
  )
  np.testing.assert_array_equal(again, got)  # same key, same batch (the random rest too)


def test_probcover_bad_delta():
  with pytest.raises(ValueError, match="delta must be a finite number > 0"):
    strategies.probcover(delta=0.0)
  with pytest.raises(TypeError, match="delta"):
    strategies.probcover(delta="1")
  x = jnp.asarray(_blobs(n=20)[0])
  s = strategies.probcover(delta=1e4, embed=lambda p: p)
  with pytest.raises(ValueError, match=r"delta=10000.0 is so large .* within [0-9.]+ of all"):
    s.acquire(jax.random.key(0), None, None, x, None, 2)


def _purity_ref(x, labels, delta):
  d = np.sqrt(((x[:, None].astype(np.float64) - x[None]) ** 2).sum(-1))
  ball = d < delta
  pure = ~(ball & (labels[:, None] != labels[None, :])).any(1)
  return pure.mean()


@pytest.mark.parametrize("purity", [0.5, 0.8, 0.95, 1.0])
def test_probcover_delta_is_the_largest_pure_enough_radius(purity):
  x, lab = _blobs(n=40, spread=1.5, seed=7)
  delta = strategies.probcover_delta(jnp.asarray(x), jnp.asarray(lab), purity=purity)
  # δ is a float32 distance: compare a relative 1e-5 inside and 1e-4 outside it.
  assert _purity_ref(x, lab, delta * (1 - 1e-5)) >= purity
  assert _purity_ref(x, lab, delta * (1 + 1e-4)) < purity  # the largest such δ
  # Pseudo-labels: k-means with the key, as the paper.
  key = jax.random.key(8)
  km = selection.kmeans(key, x, 6, n_init=3, chunk_size=6)
  pseudo = strategies.probcover_delta(jnp.asarray(x), key=key, num_classes=6, purity=purity)
  np.testing.assert_allclose(
    pseudo, strategies.probcover_delta(x, km.assignments, purity=purity), rtol=1e-6
  )


def test_probcover_delta_bad_input():
  x = jnp.asarray(_blobs(n=10)[0])
  with pytest.raises(ValueError, match="same label"):
    strategies.probcover_delta(x, jnp.zeros(10, jnp.int32))
  with pytest.raises(ValueError, match="a key and num_classes"):
    strategies.probcover_delta(x)
  with pytest.raises(ValueError, match="purity"):
    strategies.probcover_delta(x, jnp.arange(10) % 2, purity=0.0)
  with pytest.raises(ValueError, match="labels must have shape"):
    strategies.probcover_delta(x, jnp.arange(9) % 2)


@pytest.mark.parametrize("name", ["typiclust", "probcover"])
def test_through_the_loop(trained_digits, name):
  state, model, params, x, _ = trained_digits
  assert name in strategies.names()
  strategy = strategies.get(name)
  new_state, idx = loop.acquire(state, strategy, model, params, x, 8)
  check_invariants(idx, len(x), 8, state.labeled_mask, name)
  assert new_state.num_labeled == state.num_labeled + 8
  again = strategy.acquire(loop.round_keys(state)[1], model, params, x, state.labeled_mask, 8)
  np.testing.assert_array_equal(again, idx)  # same key, same batch
  left = int((~np.asarray(state.labeled_mask)).sum())
  every = strategy.acquire(jax.random.key(3), model, params, x, state.labeled_mask, left)
  check_invariants(every, len(x), left, state.labeled_mask, name)


def test_one_compile_per_round_shape():
  x = jnp.asarray(_blobs(n=40)[0])
  masks = [jnp.zeros(40, bool).at[jnp.arange(s, s + 3)].set(True) for s in (0, 10)]
  with count_traces() as c:
    for i, m in enumerate(masks):
      low_budget.select_typiclust(jax.random.key(i), x, 4, m)
      low_budget.select_probcover(jax.random.key(i), x, 4, m, delta=1.0)
  assert c["typiclust_core"] == 1 and c["probcover_core"] == 1 and c["probcover_graph"] == 1


# ---------------------------------------------------------------------------
# Cluster-Margin.


def _hac_ref(x, graph, threshold):
  """Sequential average linkage from the definition: merge the pair of clusters of smallest
  mean edge distance (edges of ``graph`` between them) while it is <= threshold."""
  d = np.sqrt(((x[:, None].astype(np.float64) - x[None]) ** 2).sum(-1))
  clusters = [[i] for i in range(len(x))]
  while True:
    best = None
    for a in range(len(clusters)):
      for b in range(a + 1, len(clusters)):
        sub = graph[np.ix_(clusters[a], clusters[b])]
        if sub.any():
          link = d[np.ix_(clusters[a], clusters[b])][sub].mean()
          if best is None or link < best[0]:
            best = (link, a, b)
    if best is None or best[0] > threshold:
      break
    _, a, b = best
    clusters[a] = clusters[a] + clusters[b]
    del clusters[b]
  return sorted(sorted(c) for c in clusters)


def _partition(labels):
  labels = np.asarray(labels)
  return sorted(sorted(np.flatnonzero(labels == c).tolist()) for c in np.unique(labels))


@pytest.mark.parametrize("num_neighbors,threshold", [(29, 1.5), (29, 3.0), (4, 1.5), (4, 6.0)])
def test_agglomerative_matches_sequential_average_linkage(num_neighbors, threshold):
  x, _ = _blobs(n=30, d=2, centres=4, spread=0.7, seed=9)
  labels = strategies.cluster_margin_clusters(
    jnp.asarray(x), distance_threshold=threshold, num_neighbors=num_neighbors
  )
  d = ((x[:, None].astype(np.float64) - x[None]) ** 2).sum(-1)
  np.fill_diagonal(d, np.inf)
  knn = np.argsort(d, axis=1, kind="stable")[:, :num_neighbors]
  graph = np.zeros((30, 30), bool)
  graph[np.repeat(np.arange(30), num_neighbors), knn.ravel()] = True
  graph |= graph.T
  assert _partition(labels) == _hac_ref(x, graph, threshold)
  lab = np.asarray(labels)
  assert lab.dtype == np.int32 and lab.min() == 0 and set(lab.tolist()) == set(range(lab.max() + 1))


def _cluster_margin_ref(margins, clusters, labeled, budget, margin_batch):
  """The paper's Algorithm 1 without the random choice inside a cluster: the candidates, and
  how many each cluster must give (round robin, smallest cluster first)."""
  order = np.argsort(-np.where(labeled, -np.inf, margins), kind="stable")[:margin_batch]
  groups = {}
  for i in order:
    groups.setdefault(int(clusters[i]), []).append(int(i))
  ordered = sorted(groups.items(), key=lambda kv: (len(kv[1]), kv[0]))
  take, r = {c: 0 for c in groups}, 0
  while sum(take.values()) < budget:
    for c, members in ordered:
      if len(members) > r and sum(take.values()) < budget:
        take[c] += 1
    r += 1
  return set(order.tolist()), take


@pytest.mark.parametrize("budget,margin_batch", [(4, 12), (9, 9), (10, 30)])
def test_cluster_margin_round_robin_matches_the_paper(budget, margin_batch):
  rng = np.random.default_rng(10)
  n = 60
  logits = rng.normal(size=(n, 4)).astype(np.float32)
  clusters = rng.integers(0, 7, size=n).astype(np.int32)
  labeled = np.zeros(n, bool)
  labeled[rng.choice(n, 8, replace=False)] = True
  model = models.from_apply_fn(_identity)
  s = strategies.cluster_margin(clusters=clusters, margin_batch=margin_batch)
  got = np.asarray(s.acquire(jax.random.key(11), model, None, jnp.asarray(logits), labeled, budget))
  check_invariants(got, n, budget, labeled)
  cand, take = _cluster_margin_ref(
    np.asarray(scores.margin(jnp.asarray(logits))), clusters, labeled, budget, margin_batch
  )
  assert set(got.tolist()) <= cand
  counts = {c: int((clusters[got] == c).sum()) for c in take}
  assert counts == take
  again = s.acquire(jax.random.key(11), model, None, jnp.asarray(logits), labeled, budget)
  np.testing.assert_array_equal(again, got)


def _identity(params, x, key):
  return x, x


def test_cluster_margin_through_the_loop_and_its_cache(trained_digits):
  state, model, params, x, _ = trained_digits
  assert "cluster_margin" in strategies.names()
  strategy = strategies.get("cluster_margin")
  new_state, idx = loop.acquire(state, strategy, model, params, x, 8)
  check_invariants(idx, len(x), 8, state.labeled_mask)
  again = strategy.acquire(loop.round_keys(state)[1], model, params, x, state.labeled_mask, 8)
  np.testing.assert_array_equal(again, idx)
  # Precomputed clusters give the same batch as the cached ones.
  feats = models.predict(model, params, x).features
  clusters = strategies.cluster_margin_clusters(feats)
  fixed = strategies.cluster_margin(clusters=clusters)
  np.testing.assert_array_equal(
    fixed.acquire(loop.round_keys(state)[1], model, params, x, state.labeled_mask, 8), idx
  )
  with pytest.raises(ValueError, match="clusters must have shape"):
    strategies.cluster_margin(clusters=clusters[:5]).acquire(
      jax.random.key(0), model, params, x, state.labeled_mask, 8
    )
  with pytest.raises(ValueError, match="margin_batch must be in"):
    strategies.cluster_margin(margin_batch=3).acquire(
      jax.random.key(0), model, params, x, state.labeled_mask, 8
    )
