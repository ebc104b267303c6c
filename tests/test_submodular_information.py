"""Information measures (SIMILAR) against NumPy references written from the paper's definitions.

Each measure's value is checked against its formula in Kothawade et al. (2021), Table 1 (the
LogDet ones in their Schur-complement forms, not through the joint kernel the implementation
uses), its vectorised marginal gains against differences of that reference, its monotonicity and
submodularity on random sets, and its greedy picks against a NumPy greedy on the reference.
"""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import count_traces

from jaxal import submodular as sm

N, Q, P, D = 14, 3, 4, 5
ETA, NU, LAM = 0.8, 0.7, 0.5


def _cos(a, b):
  a = a / np.linalg.norm(a, axis=1, keepdims=True)
  b = b / np.linalg.norm(b, axis=1, keepdims=True)
  return (1.0 + np.clip(a @ b.T, -1, 1)) / 2.0


@pytest.fixture(scope="module")
def problem():
  rng = np.random.default_rng(0)
  x, q, p = (rng.normal(size=(m, D)).astype(np.float32) for m in (N, Q, P))
  s = {
    "kernel": _cos(x, x),
    "query": _cos(x, q),
    "query_query": _cos(q, q),
    "private": _cos(x, p),
    "private_private": _cos(p, p),
    "query_private": _cos(q, p),
  }
  for k in ("kernel", "query_query", "private_private"):
    np.fill_diagonal(s[k], 1.0)
  ks = sm.information_kernels(jnp.asarray(x), query=jnp.asarray(q), private=jnp.asarray(p))
  return s, ks, (x, q, p)


# --- NumPy references, from the definitions (float64). ---------------------------------------


def _logdet(m):
  sign, val = np.linalg.slogdet(m)
  assert sign > 0
  return val


def ref_value(name, s, a, eta=ETA, nu=NU, lam=LAM):
  a = np.asarray(sorted(a), int)
  k, sq, sp = s["kernel"], s["query"], s["private"]
  qmax = np.maximum(sq.max(1), 0)  # max_{q} s_iq, per pool element
  pmax = np.maximum(sp.max(1), 0)
  amax = k[a].max(0) if len(a) else np.zeros(N)  # max_{j in A} s_ji
  amax = np.maximum(amax, 0)
  if name == "flvmi":
    return np.sum(np.minimum(amax, eta * qmax))
  if name == "flqmi":
    if not len(a):
      return 0.0
    return np.sum(sq[a].max(0)) + eta * np.sum(sq[a].max(1))
  if name == "gcmi":
    return 2 * lam * np.sum(sq[a])
  if name == "flcg":
    return np.sum(np.maximum(amax - nu * pmax, 0))
  if name == "gccg":
    return np.sum(k[a]) - lam * np.sum(k[np.ix_(a, a)]) - 2 * lam * nu * np.sum(sp[a])
  if name == "flcmi":
    return np.sum(np.maximum(np.minimum(amax, eta * qmax) - nu * pmax, 0))
  # LogDet: S + λI on every diagonal; cross blocks to the pool scaled by η (query), ν (private).
  ridge = lambda m: m + lam * np.eye(len(m))  # noqa: E731
  mq, mp = ridge(s["query_query"]), ridge(s["private_private"])
  if not len(a):
    return 0.0
  ma = ridge(k[np.ix_(a, a)])
  saq, sap = eta * sq[a], nu * sp[a]
  if name == "logdetmi":
    return _logdet(ma) - _logdet(ma - saq @ np.linalg.solve(mq, saq.T))
  if name == "logdetcg":
    return _logdet(ma - sap @ np.linalg.solve(mp, sap.T))
  if name == "logdetcmi":
    spq = s["query_private"].T  # [P, Q]
    m_ap = np.block([[ma, sap], [sap.T, mp]])  # S_{A ∪ P}
    s_ap_q = np.concatenate([saq, spq])  # S_{A ∪ P, Q}
    inner = lambda m, c: np.eye(len(m)) - np.linalg.solve(m, c @ np.linalg.solve(mq, c.T))  # noqa: E731
    return _logdet(inner(mp, spq)) - _logdet(inner(m_ap, s_ap_q))
  raise AssertionError(name)


def ref_greedy(name, s, k):
  chosen = []
  for _ in range(k):
    base = ref_value(name, s, chosen)
    gains = [-np.inf if j in chosen else ref_value(name, s, chosen + [j]) - base for j in range(N)]
    chosen.append(int(np.argmax(gains)))
  return chosen


def _fn(name, ks, **kw):
  opts = dict(eta=ETA, nu=NU, lam=LAM, max_size=N)
  opts.update(kw)
  return sm.make_information(name, ks, **opts)


RNG_SETS = [
  [],
  [3],
  [0, 5],
  [1, 2, 9],
  [4, 6, 7, 11, 13],
]
MONOTONE = ("flvmi", "flqmi", "gcmi", "logdetmi", "flcg", "flcmi", "logdetcmi")
SUBMODULAR = ("flvmi", "flqmi", "gcmi", "flcg", "gccg", "logdetcg", "flcmi")


@pytest.mark.parametrize("name", sm.MEASURES)
def test_value_matches_definition(problem, name):
  s, ks, _ = problem
  fn = _fn(name, ks)
  for a in RNG_SETS:
    got = float(sm.value(fn, jnp.asarray(a, jnp.int32)))
    np.testing.assert_allclose(got, ref_value(name, s, a), rtol=2e-5, atol=2e-5, err_msg=str(a))


@pytest.mark.parametrize("name", sm.MEASURES)
def test_marginal_gains_match_definition(problem, name):
  s, ks, _ = problem
  fn = _fn(name, ks)
  for a in RNG_SETS[:4]:
    gains = np.asarray(sm.marginal_gains(fn, jnp.asarray(a, jnp.int32)))
    want = [
      0.0 if j in a else ref_value(name, s, a + [j]) - ref_value(name, s, a) for j in range(N)
    ]
    np.testing.assert_allclose(gains, want, rtol=1e-4, atol=2e-5, err_msg=str(a))


@pytest.mark.parametrize("name", sm.MEASURES)
def test_monotone_and_submodular_on_random_sets(problem, name):
  s, ks, _ = problem
  fn = _fn(name, ks)
  rng = np.random.default_rng(1)
  for _ in range(6):
    big = sorted(rng.choice(N, size=6, replace=False).tolist())
    small = big[: rng.integers(0, 4)]
    g_small = np.asarray(sm.marginal_gains(fn, jnp.asarray(small, jnp.int32)))
    g_big = np.asarray(sm.marginal_gains(fn, jnp.asarray(big, jnp.int32)))
    out = np.setdiff1d(np.arange(N), big)
    if name in MONOTONE:
      assert (g_big[out] >= -1e-5).all() and (g_small >= -1e-5).all()
    if name in SUBMODULAR:
      assert (g_small[out] >= g_big[out] - 1e-5).all(), (small, big)


@pytest.mark.parametrize("name", sm.MEASURES)
def test_greedy_matches_numpy_greedy(problem, name):
  s, ks, _ = problem
  fn = _fn(name, ks, max_size=5)
  sel = sm.greedy(fn, 5)
  assert sel.indices.tolist() == ref_greedy(name, s, 5)
  np.testing.assert_allclose(
    float(jnp.sum(sel.gains)), ref_value(name, s, sel.indices.tolist()), rtol=1e-4, atol=1e-4
  )
  assert sm.lazy_greedy(fn, 5).indices.tolist() == sel.indices.tolist()


@pytest.mark.parametrize("name", ("flqmi", "gccg", "logdetcmi"))
def test_padded_sets_equal_the_unpadded_ones(problem, name):
  # Query and private sets padded with junk columns under a mask: the same function.
  _, ks, (x, q, p) = problem
  rng = np.random.default_rng(2)
  junk = rng.normal(size=(2, D)).astype(np.float32)
  kp = sm.information_kernels(x, query=np.concatenate([q, junk]), private=np.concatenate([junk, p]))
  qmask = jnp.arange(Q + 2) < Q
  pmask = jnp.arange(P + 2) >= 2
  padded = _fn(name, kp, query_mask=qmask, private_mask=pmask)
  plain = _fn(name, ks)
  a = jnp.asarray([1, 4, 8], jnp.int32)
  np.testing.assert_allclose(sm.value(padded, a), sm.value(plain, a), rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(
    sm.marginal_gains(padded, a), sm.marginal_gains(plain, a), rtol=1e-4, atol=1e-5
  )
  assert sm.greedy(padded, 4).indices.tolist() == sm.greedy(plain, 4).indices.tolist()


def test_ground_mask_restricts_candidates_and_coverage(problem):
  s, ks, _ = problem
  ground = jnp.arange(N) % 2 == 0
  fn = sm.flvmi(ks.kernel, ks.query, eta=ETA, ground_mask=ground)
  sel = sm.greedy(fn, 3)
  assert all(int(i) % 2 == 0 for i in sel.indices)
  a = [0, 4]
  amax = s["kernel"][a].max(0)
  want = np.sum(np.minimum(amax, ETA * s["query"].max(1))[::2])
  np.testing.assert_allclose(float(sm.value(fn, jnp.asarray(a))), want, rtol=1e-5)


def test_parameters_move_the_picks_as_the_paper_says(problem):
  # η → 0 makes FLQMI pure query coverage; ν → 0 makes FLCG plain facility location.
  s, ks, _ = problem
  fl = sm.greedy(sm.facility_location(ks.kernel), 4).indices.tolist()
  assert sm.greedy(sm.flcg(ks.kernel, ks.private, nu=0.0), 4).indices.tolist() == fl
  cover = sm.greedy(sm.flqmi(ks.query, eta=0.0), Q).indices.tolist()
  # each pick is the best remaining coverage of some query point
  assert len({int(np.argmax(s["query"][j])) for j in cover}) >= 2


def test_logdet_tracker_capacity_and_one_compile(problem):
  _, ks, (x, q, p) = problem
  fn = sm.logdetmi(ks.kernel, ks.query, ks.query_query, max_size=4)
  sel = sm.greedy(fn, 4)
  assert np.isfinite(np.asarray(sel.gains)).all()
  with pytest.raises(ValueError, match="max_size"):
    sm.logdetmi(ks.kernel, ks.query, ks.query_query, max_size=N + 1)
  # New kernels of the same shapes reuse the compiled greedy loop.
  k2 = sm.information_kernels(x[::-1].copy(), query=q, function="logdetmi")
  fn2 = sm.logdetmi(k2.kernel, k2.query, k2.query_query, max_size=4)
  with count_traces() as c:
    sm.greedy(fn2, 4)
  assert c["greedy_core"] == 0


def test_cross_kernel_and_information_kernels(problem):
  s, ks, (x, q, p) = problem
  np.testing.assert_allclose(ks.query, s["query"], atol=1e-6)
  np.testing.assert_allclose(ks.query_private, s["query_private"], atol=1e-6)
  np.testing.assert_allclose(np.diag(np.asarray(ks.kernel)), 1.0)
  only = sm.information_kernels(x, query=q, function="flqmi")
  assert only.kernel is None and only.query is not None and only.private is None
  # RBF: every block shares the pool's bandwidth.
  rb = sm.information_kernels(x, query=q, metric="rbf")
  d2 = ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)
  g = 1.0 / d2.mean()
  want = np.exp(-g * ((x[:, None, :] - q[None, :, :]) ** 2).sum(-1))
  np.testing.assert_allclose(rb.query, want, rtol=1e-4, atol=1e-6)


def test_cross_kernel_on_gradient_embeddings_equals_dense(problem):
  from jaxal import embeddings

  _, _, (x, q, p) = problem
  rng = np.random.default_rng(3)
  logits = jnp.asarray(rng.normal(size=(N, 3)), jnp.float32)
  g = embeddings.closed_form_gradient_embedding(logits, jnp.asarray(x))
  gq = embeddings.closed_form_gradient_embedding(logits[:Q], jnp.asarray(x[:Q]))
  for metric in ("cosine", "rbf"):
    a = sm.cross_kernel(g, gq, metric=metric)
    b = sm.cross_kernel(g.dense(), gq.dense(), metric=metric)
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


# --- bad input ---------------------------------------------------------------------------------


def test_bad_blocks_name_the_argument_and_shape(problem):
  _, ks, _ = problem
  with pytest.raises(
    ValueError, match=r"query must have shape .* with 14 rows, got shape \(13, 3\)"
  ):
    sm.flvmi(ks.kernel, ks.query[:-1])
  with pytest.raises(ValueError, match="query must have at least one column"):
    sm.flqmi(ks.query[:, :0])
  with pytest.raises(ValueError, match="query_mask of shape \\(3,\\) selects no column"):
    sm.gcmi(ks.query, query_mask=jnp.zeros(3, bool))
  with pytest.raises(ValueError, match="private_mask"):
    sm.flcg(ks.kernel, ks.private, private_mask=jnp.zeros(P, bool))
  with pytest.raises(ValueError, match="eta must be a finite number >= 0.0, got -1.0"):
    sm.flqmi(ks.query, eta=-1.0)
  with pytest.raises(ValueError, match="NaN"):
    sm.flqmi(ks.query.at[0, 0].set(jnp.nan))
  with pytest.raises(ValueError, match="square"):
    sm.flcg(ks.query, ks.private)
  with pytest.raises(ValueError, match="query_private must have shape"):
    sm.logdetcmi(*ks._replace(query_private=ks.query_private[:, :2]))
  with pytest.raises(ValueError, match="the pool's dimension 5"):
    sm.information_kernels(jnp.ones((4, 5)), query=jnp.ones((2, 3)))
  with pytest.raises(ValueError, match="kernels.query is None"):
    sm.make_information("flqmi", sm.information_kernels(jnp.ones((4, 5))))
  with pytest.raises(ValueError, match="unknown information measure 'flmi'"):
    sm.make_information("flmi", ks)


def test_logdet_not_positive_definite_suggests_the_ridge(problem):
  _, ks, _ = problem
  # Two identical query points: S_Q is singular without a ridge.
  qq = jnp.ones((2, 2), jnp.float32)
  vq = jnp.concatenate([ks.query[:, :1], ks.query[:, :1]], axis=1)
  with pytest.raises(
    ValueError, match=r"query_query \+ lam \* I is not positive definite.*raise lam"
  ):
    sm.logdetmi(ks.kernel, vq, qq, lam=0.0)
  sm.logdetmi(ks.kernel, vq, qq, lam=0.1)  # the ridge fixes it
  # An indefinite pool kernel.
  bad = ks.kernel - 2.0 * jnp.eye(N)
  with pytest.raises(ValueError, match=r"not positive definite.*ground element 0.*lam"):
    sm.logdetcg(bad, ks.private, ks.private_private, lam=0.0)
  with pytest.raises(ValueError, match="symmetric"):
    sm.logdetmi(ks.kernel.at[0, 1].add(0.5), ks.query, ks.query_query)


def test_no_nan_on_duplicate_points():
  # Duplicated pool points: residuals reach 0 after the first copy; gains stay finite.
  x = jnp.asarray(np.repeat(np.eye(3, dtype=np.float32), 3, axis=0))
  ks = sm.information_kernels(x, query=x[:1], private=x[3:4])
  for name in ("logdetmi", "logdetcg", "logdetcmi"):
    fn = sm.make_information(name, ks, lam=1e-3)
    sel = sm.greedy(fn, 6)
    assert np.isfinite(np.asarray(sel.gains)).all(), name
    assert len(set(sel.indices.tolist())) == 6


def test_all_small_sets_against_the_definition_exhaustively(problem):
  # Every set of size <= 2 of the first 6 elements, for the two LogDet CMI-type measures.
  s, ks, _ = problem
  for name in ("logdetcmi", "flcmi"):
    fn = _fn(name, ks)
    sets = [list(c) for r in range(3) for c in itertools.combinations(range(6), r)]
    got = jax.vmap(fn.value)(jnp.asarray([np.isin(np.arange(N), a) for a in sets]))
    want = [ref_value(name, s, a) for a in sets]
    np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-5)


def test_selection_check_catches_a_kernel_indefinite_on_pairs():
  # Every singleton and the query are fine; the pool kernel is indefinite on {0, 1, 2}.
  from jaxal._src.submodular import information

  k = jnp.asarray([[1.0, 0.9, -0.9], [0.9, 1.0, 0.9], [-0.9, 0.9, 1.0]])
  q = jnp.full((3, 1), 0.1)
  fn = sm.logdetmi(k, q, jnp.ones((1, 1)), lam=0.0)
  sel = sm.greedy(fn, 3)
  assert np.isfinite(np.asarray(sel.gains)).all()  # clamped, never NaN
  with pytest.raises(ValueError, match=r"not positive definite on the selected points.*raise lam"):
    information.check_logdet_selection(fn, sel.indices, lam=0.0)
  ok = sm.logdetmi(k, q, jnp.ones((1, 1)), lam=1.0)
  information.check_logdet_selection(ok, sm.greedy(ok, 3).indices, lam=1.0)


SCALED = ("flvmi", "flqmi", "gcmi", "flcg", "gccg", "flcmi")  # homogeneous: blocks scaled


@pytest.mark.parametrize("name", SCALED)
@pytest.mark.parametrize("mag", [2.0**-100, 3.0, 1e30, float(np.finfo(np.float32).max)])
def test_any_finite_magnitude_same_picks_finite_gains(problem, name, mag):
  """Blocks multiplied by any finite magnitude (up to float32's max): the same picks as the
  unit blocks (the measures are positively homogeneous), no NaN gain, lazy equal to plain."""
  s, ks, _ = problem
  unit = {b: np.asarray(getattr(ks, b)) for b in ks._fields if getattr(ks, b) is not None}
  big = sm.InformationKernels(
    **{
      b: None if b not in unit else jnp.asarray(np.minimum(unit[b] * mag, np.finfo(np.float32).max))
      for b in ks._fields
    }
  )
  want = sm.greedy(_fn(name, ks), 5)
  fn = _fn(name, big)
  for sel in (sm.greedy(fn, 5), sm.lazy_greedy(fn, 5)):
    np.testing.assert_array_equal(sel.indices, want.indices)
    gains = np.asarray(sel.gains, np.float64)
    assert not np.isnan(gains).any(), gains
    # A true gain of N * 3.4e38 exceeds float32 once the scale is multiplied back: inf.
    assert np.isfinite(gains).all() or mag > 1e30, gains
  if mag <= 1e30:
    np.testing.assert_allclose(
      np.asarray(sm.greedy(fn, 5).gains) / mag, want.gains, rtol=1e-5, atol=1e-30
    )


def test_scaling_is_a_power_of_two(problem):
  """The blocks are divided by a power of two (exact), into (-2, 2)."""
  _, ks, _ = problem
  fn = sm.flvmi(ks.kernel * 3.0, ks.query * 3.0)
  assert float(fn.scale) == 2.0  # max 3.0 = 0.75 * 2^2, divided by 2^1
  np.testing.assert_array_equal(fn.gains.args[0], np.asarray(ks.kernel) * 3.0 / 2.0)


@pytest.mark.parametrize("name", ["logdetmi", "logdetcg", "logdetcmi"])
def test_a_logdet_measure_is_built_by_one_program(name):
  """The blocks, the conditioning Cholesky factors, the trackers and the joint kernel come
  from one compiled program (eagerly, logdetcmi's construction was 67 programs), and the
  positive-definiteness checks read its outputs on the host."""
  x = np.random.default_rng(3).normal(size=(11, 3)).astype(np.float32)
  ks = sm.information_kernels(x, query=x[:2], private=x[-2:], function=name)
  blocks = {
    "logdetmi": (ks.kernel, ks.query, ks.query_query),
    "logdetcg": (ks.kernel, ks.private, ks.private_private),
    "logdetcmi": (
      ks.kernel,
      ks.query,
      ks.query_query,
      ks.private,
      ks.private_private,
      ks.query_private,
    ),
  }[name]
  jax.clear_caches()
  with count_traces() as c:
    fn = getattr(sm, name)(*blocks, max_size=4)
    jax.block_until_ready(jax.tree.leaves(fn))
  assert dict(c.counts) == {"_prepare_jit": 1, "_logdet_arrays": 1}, dict(c.counts)
  with count_traces() as c:  # another measure of the same shapes: nothing to trace
    getattr(sm, name)(*blocks, max_size=4, lam=0.5)
  assert not c.counts, dict(c.counts)
