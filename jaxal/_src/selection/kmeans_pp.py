"""k-means++ seeding (D² sampling) over dense or factorised point sets.

k-means++ picks a first centre, then repeatedly picks the next centre with
probability proportional to :math:`D^2(x)`, the squared distance from ``x`` to
its nearest centre so far. BADGE runs it on gradient embeddings.

**How it stays exact and fast.** The textbook loop reads the whole pool once
per centre to update :math:`D^2`; on a CPU that is memory-bandwidth bound
(``k`` passes over ``N * dim`` floats). Here the pool is read once per *batch*
of up to ``_PENDING`` new centres, and the centres in between are drawn by
rejection sampling, which keeps the D² law exact:

* After a refresh pass, ``m_s(i)`` is the exact min-D² of every point to the
  centres folded in so far. Later centres ("pending", not yet folded in) can
  only lower it: the current min-D² is
  ``m_t(i) = min(m_s(i), min_{pending c} D²(x_i, c)) <= m_s(i)``.
* A candidate ``i`` is proposed with probability ``m_s(i) / sum(m_s)`` and
  accepted with probability ``m_t(i) / m_s(i)``, which costs one distance per
  pending centre. An accepted candidate is distributed exactly as
  ``m_t(i) / sum(m_t)``: the D² law. Rejected proposals are simply redrawn.
* When ``_PENDING`` centres are pending, or ``_MAX_REJECTS`` proposals in a row
  were rejected (the pending centres have eaten much of the potential), one
  fused pass over the pool folds all pending centres into ``m`` with a small
  matrix product ``[chunk, dim] x [dim, _PENDING]``.

Proposals use two-level Gumbel-max sampling over the weights fixed at the
last pass: a block of ``B ≈ sqrt(N)`` points with probability ∝ its sum of
weights, then a point within the block ∝ its weight, so each proposal costs
``O(N / B + B)`` random numbers (counter-mode threefry keyed by the proposal
number) and no pass over the pool. Gumbel-max keeps the law exact to float32
rounding of ``log D²`` even for tiny weights, where an inverse CDF over float32
prefix sums would not. Randomness never depends on the chunking, so the same
key gives the same centres for every ``chunk_size`` (up to float rounding of
the distances themselves).

Ties and zeros. A point's weight is its min-D², clamped at 0 (the factorised
identity can round slightly below 0). Chosen centres and labeled points are
excluded explicitly (never by relying on a distance of exactly 0), so no index
is ever picked twice. When every remaining point has D² = 0 (all duplicates of
centres, or an all-zero pool) the next centre is uniform over the remaining
unlabeled points, as is the first centre for ``first="random"``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.extend import random as jax_random_ext
from jax.typing import ArrayLike

from jaxal._src import checks
from jaxal._src import distances
from jaxal._src import executables
from jaxal._src import sharding
from jaxal._src.selection import afk_mc2

# Centres drawn by rejection between two passes over the pool.
_PENDING = 32
# Rejections in a row that trigger a pass over the pool.
_MAX_REJECTS = 64
FIRST = ("max_norm", "random")  # how the first centre is chosen
CHUNK_SIZE = 2048  # default rows of the pool per step of a pass
METHODS = ("exact", "mcmc")


def _block_size(n: int) -> int:
  """Points per sampling block: a power of two near sqrt(n), so a proposal
  costs about 2 sqrt(n) random numbers. A function of n only, never of chunk_size."""
  b = 64
  while b * b < n and b < 4096:
    b *= 2
  return b


def _rows(x: distances.Points, start: jax.Array, size: int) -> distances.Points:
  return jax.tree.map(lambda t: jax.lax.dynamic_slice_in_dim(t, start, size, axis=0), x)


def _set_row(buf: distances.Points, row: distances.Points, j: jax.Array) -> distances.Points:
  return jax.tree.map(lambda b, r: jax.lax.dynamic_update_index_in_dim(b, r, j, axis=0), buf, row)


def _uniforms(seed: jax.Array, p: jax.Array, size: int) -> jax.Array:
  """``[size]`` float32 uniforms in the open interval (0, 1) for proposal ``p``.

  Counter-mode threefry: the 64-bit counters ``(p, j)`` are hashed under the
  ``seed`` key pair, so each proposal gets fresh, independent numbers from one
  small hash call (cheap to compile, unlike a ``fold_in`` plus ``bits`` per step).
  """
  half = size // 2
  counts = jnp.concatenate([jnp.full((half,), p, jnp.uint32), jnp.arange(half, dtype=jnp.uint32)])
  bits = jax_random_ext.threefry_2x32(seed, counts)
  return (bits >> 8).astype(jnp.float32) * (2.0**-24) + 2.0**-25


@executables.jit(static_argnames=("k", "first", "chunk_size", "ps"))
def kmeans_pp_exact(key, x, k, labeled_mask, first, chunk_size, ps=None):
  """Exact k-means++ on validated points: ``(centres [k] int32, passes over the pool, proposals)``.

  ``ps`` (a pool sharded along N): rows, weights and weight blocks are fetched
  with :mod:`jaxal._src.sharding` (no gather of the pool), a pass is one
  unchunked fused sweep (each device holds its own rows), and block sums are a
  segment sum (partial sums per device, then one all-reduce).
  """
  x = distances.rescale(x)[0]  # entries in [-1, 1]: no finite input overflows a distance
  n = distances.num_points(x)
  chunk = n if ps is not None else min(chunk_size, n)
  num_chunks = -(-n // chunk)
  block = _block_size(n)
  num_blocks = -(-n // block)
  num_gumbels = num_blocks + block
  num_uniforms = num_gumbels + 1 + (num_gumbels + 1) % 2  # even, for counter pairs
  tiny = jnp.finfo(jnp.float32).tiny
  sqn = distances.sq_norms(x)  # [n]
  seed = jax.random.bits(key, (2,), jnp.uint32)

  # mind2: exact min-D² to the centres folded in so far; +inf before any
  # centre, -1 for excluded (labeled or already chosen) points.
  mind2 = jnp.where(labeled_mask, -1.0, jnp.inf).astype(jnp.float32)
  centres = jnp.full((k,), -1, jnp.int32)
  pend_idx = jnp.full((_PENDING,), n, jnp.int32)  # n marks an empty slot
  pend = jax.tree.map(lambda t: jnp.zeros((_PENDING, *t.shape[1:]), t.dtype), x)
  pend_sqn = jnp.zeros((_PENDING,), jnp.float32)
  if first == "max_norm":
    c0 = jnp.argmax(jnp.where(labeled_mask, -jnp.inf, sqn)).astype(jnp.int32)
    centres = centres.at[0].set(c0)
    pend_idx = pend_idx.at[0].set(c0)
    pend = _set_row(pend, distances.take(x, c0, ps), 0)
    pend_sqn = pend_sqn.at[0].set(distances.take(sqn, c0, ps))
    t0 = 1
  else:  # the first centre is the first (uniform) proposal
    t0 = 0

  def refresh(mind2, pend, pend_sqn, num_pend):
    """One fused pass: fold the pending centres into mind2, chunk by chunk."""
    valid = jnp.arange(_PENDING) < num_pend

    def body(c, mind2):
      # The last chunk is shifted back to stay in bounds (no padded copy of the
      # pool); rows it revisits get the same minimum again.
      start = jnp.minimum(c * chunk, n - chunk)
      d = distances.sq_dist(
        _rows(x, start, chunk), pend, jax.lax.dynamic_slice_in_dim(sqn, start, chunk), pend_sqn
      )
      dmin = jnp.min(jnp.where(valid[None, :], d, jnp.inf), axis=1)
      m = jax.lax.dynamic_slice_in_dim(mind2, start, chunk)
      m = jnp.where(m < 0, m, jnp.minimum(m, dmin))
      return jax.lax.dynamic_update_slice_in_dim(mind2, m, start, axis=0)

    return jax.lax.fori_loop(0, num_chunks, body, mind2)

  def make_inner(w, log_block_sums, uniform, t_limit):

    def cond(s):
      t, num_pend, rejects = s[0], s[1], s[2]
      return (t < t_limit) & (num_pend < _PENDING) & (rejects < _MAX_REJECTS)

    def body(s):
      t, num_pend, rejects, p, centres, pend_idx, pend, pend_sqn = s
      r = _uniforms(seed, p, num_uniforms)
      gumbel = -jnp.log(-jnp.log(r[:num_gumbels]))
      u = r[num_gumbels]  # decides acceptance
      # Two-level Gumbel-max: a block ∝ its weight sum, then a point ∝ its weight.
      b = jnp.argmax(log_block_sums + gumbel[:num_blocks])
      wb = sharding.take_range(w, (b * block).astype(jnp.int32), block, ps)
      i = jnp.minimum(b * block + jnp.argmax(jnp.log(wb) + gumbel[num_blocks:]), n - 1)
      i = i.astype(jnp.int32)
      m_s = distances.take(w, i, ps)
      xi = distances.take(x, i, ps)
      sqn_i = distances.take(sqn, i, ps)
      # Accept with probability m_t / m_s, m_t the D² including pending centres.
      d = distances.sq_dist(pend, xi, pend_sqn, sqn_i)  # [_PENDING]
      d = jnp.where(jnp.arange(_PENDING) < num_pend, d, jnp.inf)
      m_t = jnp.where(uniform, m_s, jnp.minimum(m_s, jnp.min(d)))
      m_t = jnp.where(jnp.any(pend_idx == i), 0.0, m_t)
      accept = (m_t > 0) & ((m_t >= m_s) | (u * m_s < m_t))
      # Write into the next free slots either way: the counters move only on
      # acceptance, so a rejected candidate is overwritten later.
      centres = centres.at[t].set(jnp.where(accept, i, -1))
      pend_idx = pend_idx.at[num_pend].set(jnp.where(accept, i, n))
      pend = _set_row(pend, xi, num_pend)
      pend_sqn = pend_sqn.at[num_pend].set(sqn_i)
      step = accept.astype(jnp.int32)
      return (
        t + step,
        num_pend + step,
        jnp.where(accept, 0, rejects + 1),
        p + 1,
        centres,
        pend_idx,
        pend,
        pend_sqn,
      )

    return cond, body

  def outer_cond(s):
    t, stuck = s[0], s[4]
    return (t < k) & ~stuck

  def outer_body(s):
    t, num_pend, p, passes, _, mind2, centres, pend_idx, pend, pend_sqn = s
    mind2 = refresh(mind2, pend, pend_sqn, num_pend)
    mind2 = mind2.at[pend_idx].set(-1.0, mode="drop")  # chosen centres leave the pool
    remaining = mind2 >= 0
    w = jnp.where(remaining & (mind2 >= tiny), mind2, 0.0)
    # No centre yet, or every remaining D² is 0: uniform over the remaining points.
    uniform = (t == 0) | ~(jnp.sum(w) > 0)
    w = jnp.where(uniform, remaining.astype(jnp.float32), w)
    if ps is None:
      w = jnp.pad(w, (0, num_blocks * block - n))  # whole blocks for take_range
      block_sums = jnp.sum(w.reshape(num_blocks, block), axis=1)
    else:
      block_sums = jax.ops.segment_sum(w, jnp.arange(n, dtype=jnp.int32) // block, num_blocks)
    log_block_sums = jnp.log(block_sums)
    t_limit = jnp.where(t == 0, 1, k)  # a uniform first centre comes alone
    cond, body = make_inner(w, log_block_sums, uniform, t_limit)
    inner = (
      t,
      jnp.int32(0),
      jnp.int32(0),
      p,
      centres,
      jnp.full((_PENDING,), n, jnp.int32),
      pend,
      pend_sqn,
    )
    t, num_pend, _, p, centres, pend_idx, pend, pend_sqn = jax.lax.while_loop(cond, body, inner)
    # The first proposal after a pass is always accepted while points remain, so
    # no acceptance means nothing is left (k above the unlabeled count under a
    # trace, where it cannot be checked): stop, leaving -1 in the missing slots.
    stuck = num_pend == 0
    passes = passes + 1
    return t, num_pend, p, passes, stuck, mind2, centres, pend_idx, pend, pend_sqn

  init = (
    jnp.int32(t0),
    jnp.int32(t0),
    jnp.uint32(0),
    jnp.int32(0),
    jnp.bool_(False),
    mind2,
    centres,
    pend_idx,
    pend,
    pend_sqn,
  )
  out = jax.lax.while_loop(outer_cond, outer_body, init)
  return out[6], out[3], out[2]


def kmeans_pp(
  key: jax.Array,
  x: distances.Points | ArrayLike,
  k: int,
  *,
  labeled_mask: ArrayLike | None = None,
  first: str = "max_norm",
  chunk_size: int = CHUNK_SIZE,
  method: str = "exact",
  chain_length: int = 200,
  check_finite: bool = True,
) -> jax.Array:
  r"""k-means++ seeding: ``k`` distinct unlabeled points drawn by D² sampling.

  The first centre is the unlabeled point of largest norm (``first="max_norm"``,
  as in the BADGE reference code) or uniform over the unlabeled points
  (``first="random"``). Every later centre is drawn with probability

  .. math::
    P(x_i) = \frac{D^2(x_i)}{\sum_j D^2(x_j)}, \qquad
    D^2(x_i) = \min_{c \in \text{centres}} \|x_i - c\|^2,

  over the unlabeled points not yet chosen; when all of those have
  :math:`D^2 = 0` it is uniform over them. Labeled points are never centres and
  do not count as centres either (as in BADGE and DISTIL, which seed on the
  unlabeled embeddings only).

  For a :class:`GradEmbedding` distances come from the factorised identity
  ``‖a⊗z − b⊗w‖² = ‖a‖²‖z‖² + ‖b‖²‖w‖² − 2(a·b)(z·w)``, clamped at 0, so the
  ``[N, K·d]`` matrix is never built. The draw is exact in law (see the module
  docstring: the pool is read once per batch of up to 32 centres, those in
  between are drawn by rejection), and depends only on ``key``, not on
  ``chunk_size``. Work runs in one ``jax.lax.while_loop`` with no host round
  trip; memory beyond ``x`` is ``O(N + chunk_size * (32 + dim))``, so a pool
  of 10^6 points runs in bounded memory.

  Args:
    key: a ``jax.random.key``.
    x: ``[num_points, dim]`` points, or a :class:`GradEmbedding` with ``a``
      ``[num_points, num_classes]`` and ``z`` ``[num_points, feat_dim]``.
    k: number of centres, ``1 <= k <=`` the number of unlabeled points.
    labeled_mask: optional ``[num_points]`` bool, True where already labeled.
    first: ``"max_norm"`` (default) or ``"random"``.
    chunk_size: rows of the pool processed at once in each pass over it.
      Memory and speed only (a few MB per chunk keeps the working set in
      cache); the centres do not depend on it.
    method: ``"exact"`` (the D² law above) or ``"mcmc"``: the AFK-MC²
      approximation (Bachem et al., NeurIPS 2016), which reads the pool once
      to build a proposal and then runs a Metropolis chain of
      ``chain_length`` steps per centre, ``O(N·dim + k²·chain_length·dim)``
      work instead of ``O(k·N·dim)``: for the largest pools.
    chain_length: the chain length ``m`` of ``method="mcmc"`` (200 in the paper).
    check_finite: NaN or inf in ``x`` is an error (flags fused into the compiled call);
      False for callers that checked already (non-finite points then give
      unspecified centres). Every finite ``x`` is valid, up to the largest
      float32: distances are computed on ``x`` divided by its largest
      magnitude (the D² law does not change).

  Returns:
    ``[k]`` int32 indices in the order they were chosen: unique, in range,
    never labeled. (Only when ``k`` exceeds the unlabeled count inside a
    trace, where that cannot be checked, the missing trailing entries are -1.)

  Raises:
    ValueError: ``k`` larger than the unlabeled count, non-finite ``x``,
      mismatched shapes, unknown ``first``.

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> from jaxal import selection
    >>> x = jnp.array([[0.0, 0.0], [0.1, 0.0], [5.0, 5.0], [5.0, 5.1]])
    >>> idx = selection.kmeans_pp(jax.random.key(0), x, 2)
    >>> int(idx[0])  # the largest norm first
    3

  References:
    Arthur & Vassilvitskii, k-means++: the advantages of careful seeding, SODA 2007.
    Ash et al., Deep Batch Active Learning by Diverse, Uncertain Gradient Lower
    Bounds (BADGE), ICLR 2020.
    Bachem, Lucic, Hassani & Krause, Fast and Provably Good Seedings for
    k-Means, NeurIPS 2016 (``method="mcmc"``).
  """
  checks.check_key(key)
  x, labeled_mask, k = distances.check_selection(x, k, labeled_mask)
  checks.check_one_of(first, FIRST, "first")
  chunk_size = min(checks.check_positive_int(chunk_size, "chunk_size"), distances.num_points(x))
  checks.check_one_of(method, METHODS, "method")
  chain_length = checks.check_positive_int(chain_length, "chain_length")
  return select_kmeans_pp(
    key,
    x,
    k,
    labeled_mask,
    first=first,
    chunk_size=chunk_size,
    method=method,
    chain_length=chain_length,
    check_finite=checks.check_bool(check_finite, "check_finite"),
  )


def select_kmeans_pp(
  key: jax.Array,
  x: distances.Points,
  k: int,
  labeled_mask: jax.Array,
  *,
  first: str = "max_norm",
  chunk_size: int = CHUNK_SIZE,
  method: str = "exact",
  chain_length: int = 200,
  check_finite: bool = True,
) -> jax.Array:
  """:func:`kmeans_pp` on arguments a caller has validated, except ``x``'s values.

  The caller (a strategy, once, at its entry) has checked ``key``,
  ``labeled_mask``, ``k`` and the options; ``x`` is checked for finiteness
  here, since the caller computed it.

  Args:
    key: a typed key of shape ``()``.
    x: ``[num_points, dim]`` float points, or a :class:`GradEmbedding`.
    k: a Python int, ``1 <= k <=`` the number of unlabeled points.
    labeled_mask: ``[num_points]`` bool.
    first: one of :data:`FIRST`.
    chunk_size: a positive int, at most ``num_points``.
    method: one of :data:`METHODS`.
    chain_length: a positive int (``method="mcmc"``).
    check_finite: a bool; False skips the finiteness check of ``x``.

  Returns:
    ``[k]`` int32 centres, in the order they were drawn.
  """
  original = x
  chunk_size = min(chunk_size, distances.num_points(x))
  x, labeled_mask = sharding.single_device((x, labeled_mask))
  ps = sharding.pool_sharding((x, labeled_mask), "x and labeled_mask")
  x, labeled_mask = sharding.place(x, ps), sharding.place(labeled_mask, ps)
  args = (key, x, k, labeled_mask, first, chunk_size, method, chain_length, ps)
  if not check_finite:
    return kmeans_pp_core(*args)
  # The finiteness flags come from the same compiled call: no separate pass over the pool.
  idx, ok = kmeans_pp_core(*args, flagged=True)
  checks.check_finite(original, "x", purpose="selection needs finite points", ok=ok)
  return idx


@executables.jit(
  static_argnames=("k", "first", "chunk_size", "method", "chain_length", "ps", "flagged")
)
def kmeans_pp_core(
  key,
  x,
  k,
  labeled_mask,
  first="max_norm",
  chunk_size=2048,
  method="exact",
  chain_length=200,
  ps=None,
  flagged=False,
):
  """:func:`kmeans_pp` on validated, placed points: the ``[k]`` int32 centres.

  ``flagged``: return ``(centres, ok)``, ``ok`` the finiteness flags of ``x``'s leaves computed
  in the same compiled call (non-finite points give unspecified centres, so the caller raises).
  """
  if method == "mcmc":
    idx = afk_mc2.afk_mc2(key, x, k, labeled_mask, chain_length, first)
  else:
    idx = kmeans_pp_exact(key, x, k, labeled_mask, first, chunk_size, ps)[0]
  return (idx, checks.all_finite(x)) if flagged else idx
