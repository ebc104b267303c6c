"""Non-negative orthogonal matching pursuit (GradMatch's solver) on dense or factorised points.

Given points ``g_1, ..., g_N`` (rows of a dense ``[N, D]`` matrix, or a
:class:`~jaxal.embeddings.GradEmbedding` ``a ⊗ z``) and a target ``b`` ``[D]``,
orthogonal matching pursuit (Pati et al., 1993; Tropp, 2004) picks ``k`` of them
one at a time: the unlabeled, not yet chosen point most correlated with the
residual, ``j = argmax_j g_j · (b − Σ_{s∈S} w_s g_s)``, then refits the weights
of every chosen point by non-negative ridge least squares

.. math::
  w = \\arg\\min_{w \\ge 0} \\Big\\|\\sum_{s \\in S} w_s g_s - b\\Big\\|^2 + \\lambda \\|w\\|^2 .

The refit is Lawson and Hanson's active-set NNLS on the ``|S| × |S|`` Gram
matrix, warm-started from the previous weights. Everything runs in one
``jax.lax.fori_loop`` over the picks: the correlations are updated from one Gram
column per pick, ``(a·a_s)(z·z_s)`` in the factorised form, so the ``N × K·d``
matrix is never built.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from jaxal._src import checks
from jaxal._src import distances
from jaxal._src import executables
from jaxal._src import sharding
from jaxal._src.embeddings.grad_embedding import GradEmbedding

# A ridge of _JITTER × the largest chosen squared norm keeps the Gram solves
# regular when chosen points are collinear and lam = 0.
_JITTER = 1e-6


class OMPResult(NamedTuple):
  """The points orthogonal matching pursuit chose and their non-negative weights.

  Attributes:
    indices: ``[k]`` int32 pool indices, in the order they were picked: unique,
      in range, never labeled.
    weights: ``[k]`` float32 non-negative weights of those points (the refit
      after the last pick); a point picked after the target was already matched
      may carry weight 0.
  """

  indices: jax.Array  # shape=[k], dtype=int32
  weights: jax.Array  # shape=[k], dtype=float32


def _target_correlations(x, target):
  """``[N]`` inner products ``g_j · b`` (``b`` class-major ``[K·d]`` for a GradEmbedding)."""
  if isinstance(x, GradEmbedding):
    b = target.reshape(x.a.shape[-1], x.z.shape[-1])
    return jnp.sum(jnp.matmul(x.a, b) * x.z, axis=-1)
  return jnp.matmul(x, target)


def _solve_on(q, c, passive):
  """The unconstrained minimiser of ``½ wᵀQw − cᵀw`` on the passive set, 0 elsewhere."""
  both = passive[:, None] & passive[None, :]
  m = jnp.where(both, q, 0.0) + jnp.diag(jnp.where(passive, 0.0, 1.0))
  s = jnp.linalg.solve(m, jnp.where(passive, c, 0.0))
  return jnp.where(passive, s, 0.0)


def nnls_gram(q, c, active, w0, *, max_iter):
  """Lawson–Hanson NNLS on a Gram system: ``argmin_{w ≥ 0} ½ wᵀQw − cᵀw`` over ``active``.

  ``q`` ``[m, m]`` symmetric positive definite on ``active`` ``[m]`` bool,
  ``c`` ``[m]``; ``w0`` ``[m]`` a feasible start that is optimal on its own
  support (the previous refit). Coordinates outside ``active`` stay 0. At most
  ``max_iter`` outer iterations, each with at most ``m`` inner ones.
  """
  m = c.shape[0]
  scale = jnp.max(jnp.abs(jnp.where(active, c, 0.0)))
  tol = 10.0 * m * jnp.finfo(jnp.float32).eps * (scale + jnp.finfo(jnp.float32).tiny)

  def grad(w):
    return jnp.where(active, c - q @ w, 0.0)

  def outer_cond(carry):
    w, passive, it = carry
    g = jnp.where(active & ~passive, grad(w), -jnp.inf)
    return (it < max_iter) & (jnp.max(g) > tol)

  def outer_body(carry):
    w, passive, it = carry
    g = jnp.where(active & ~passive, grad(w), -jnp.inf)
    passive = passive.at[jnp.argmax(g)].set(True)

    def inner_cond(inner):
      w, passive, s, jt = inner
      return (jt < m) & jnp.any(passive & (s <= 0.0))

    def inner_body(inner):
      w, passive, s, jt = inner
      neg = passive & (s <= 0.0)
      step = jnp.where(neg, w / jnp.maximum(w - s, jnp.finfo(jnp.float32).tiny), jnp.inf)
      alpha = jnp.clip(jnp.min(step), 0.0, 1.0)
      w = jnp.maximum(w + alpha * (s - w), 0.0)
      passive = passive & (w > 0.0) & ~(neg & (step <= alpha))
      w = jnp.where(passive, w, 0.0)
      return w, passive, _solve_on(q, c, passive), jt + 1

    s = _solve_on(q, c, passive)
    w, passive, s, _ = jax.lax.while_loop(inner_cond, inner_body, (w, passive, s, 0))
    s = jnp.maximum(s, 0.0)
    return s, passive & (s > 0.0), it + 1

  passive0 = active & (w0 > 0.0)
  w, _, _ = jax.lax.while_loop(outer_cond, outer_body, (w0, passive0, 0))
  return w


@executables.jit(static_argnames=("k", "ps", "flagged"))
def omp_core(x, target, k, labeled_mask, lam, ps=None, flagged=False):
  """:func:`omp` on validated, placed points; ``target`` ``[dim]``: ``(indices, weights)``.

  ``flagged``: return ``(indices, weights, ok)``, ``ok`` the finiteness flags of ``x``'s
  leaves and of ``target`` (:func:`jaxal._src.checks.all_finite`, target last) computed in
  the same compiled call, for the caller to raise on (non-finite values give unspecified
  picks; every loop is bounded, so the call still ends).
  """
  ok = checks.all_finite((x, target)) if flagged else None
  x = jax.tree.map(lambda t: t.astype(jnp.float32), x)
  target = target.astype(jnp.float32)
  n = distances.num_points(x)
  c = _target_correlations(x, target)  # [N] g_j · b
  sq = distances.sq_norms(x)
  lam = jnp.asarray(lam, jnp.float32)
  rng = jnp.arange(k)

  def body(t, carry):
    idx, chosen, cols, w = carry
    proj = c - cols @ w  # [N] g_j · residual
    proj = jnp.where(labeled_mask | chosen, -jnp.inf, proj)
    j = jnp.argmax(proj).astype(jnp.int32)
    idx = idx.at[t].set(j)
    chosen = chosen.at[j].set(True)
    cols = cols.at[:, t].set(distances.inner(x, distances.take(x, j, ps)))  # [N] g_j · g_new
    active = rng <= t
    # The chosen rows of the Gram columns, target correlations and norms: k values each.
    gram = jnp.where(active[:, None] & active[None, :], sharding.take(cols, idx, ps), 0.0)
    ridge = lam + _JITTER * jnp.max(jnp.where(active, sharding.take(sq, idx, ps), 0.0))
    q = gram + ridge * jnp.eye(k, dtype=jnp.float32)
    c_s = jnp.where(active, sharding.take(c, idx, ps), 0.0)
    w = nnls_gram(q, c_s, active, w, max_iter=3 * k)
    return idx, chosen, cols, w

  init = (
    jnp.zeros((k,), jnp.int32),
    jnp.zeros((n,), bool),
    jnp.zeros((n, k), jnp.float32),
    jnp.zeros((k,), jnp.float32),
  )
  idx, _, _, w = jax.lax.fori_loop(0, k, body, init)
  return (idx, w, ok) if flagged else (idx, w)


def check_lam(lam) -> float:
  """``lam``: a finite number ``>= 0`` (the ridge weight of the refit)."""
  return checks.check_float(lam, "lam", low=0.0)


def check_target(target, dim: int, name: str = "target") -> jax.Array:
  """A float ``[dim]`` target (its values are checked with the points', in the same call)."""
  target = checks.check_float_array(target, name, 1, "[dim]")
  if target.shape != (dim,):
    raise ValueError(
      f"{name} must have shape ({dim},) to match points of dimension {dim}, got shape "
      f"{target.shape}"
    )
  return target


def _raise_non_finite(x, target, ok, purpose: str) -> None:
  """Raises for non-finite ``x`` (first) or ``target`` (None: the default, not checked)."""
  checks.check_finite(x, "x", purpose=purpose, ok=ok[:-1])
  if target is not None:
    checks.check_finite(target, "target", purpose=purpose, ok=ok[-1])


@executables.jit
def mean_unlabeled(x, labeled_mask: jax.Array) -> jax.Array:
  """``[dim]`` mean of the unlabeled points (class-major for a GradEmbedding)."""
  w = (~labeled_mask).astype(jnp.float32)
  w = w / jnp.maximum(jnp.sum(w), 1.0)
  if isinstance(x, GradEmbedding):
    return jnp.matmul((x.a * w[:, None]).T, x.z).reshape(-1)
  return jnp.matmul(w, x)


@checks.spelled_as("omp(x, k, *, target=None, labeled_mask=None, lam=0.0, check_finite=True)")
def omp(
  x: ArrayLike | GradEmbedding,
  k: int,
  *,
  target: ArrayLike | None = None,
  labeled_mask: ArrayLike | None = None,
  lam: float = 0.0,
  check_finite: bool = True,
) -> OMPResult:
  """Non-negative orthogonal matching pursuit: ``k`` points whose weighted sum matches a target.

  Picks ``j = argmax g_j · r`` over the unlabeled, unchosen points, where
  ``r = b − Σ_{s∈S} w_s g_s`` is the residual, then refits every weight by
  ``argmin_{w ≥ 0} ‖Σ_s w_s g_s − b‖² + lam ‖w‖²`` (Lawson–Hanson NNLS, exact up
  to a ridge of 1e-6 × the largest chosen squared norm). Deterministic: ties go to
  the lower index. This is the solver of GradMatch (Killamsetty et al., 2021) on
  gradient embeddings; DISTIL stops when a point is picked twice and fills the
  batch at random with weight 1, here the pursuit goes on over the unchosen
  points so the batch is always ``k`` greedy picks (late ones may weigh 0).
  DISTIL's refit runs ``scipy.optimize.nnls`` on the normal equations
  ``(G_Sᵀ G_S + lam I) w ≈ G_Sᵀ b``; it equals this refit whenever the
  unconstrained minimiser is non-negative, and differs only when a weight is
  clipped to 0.

  Args:
    x: ``[num_points, dim]`` points, or a ``GradEmbedding`` ``a [num_points,
      num_classes] ⊗ z [num_points, feat_dim]`` (``dim = num_classes * feat_dim``,
      class-major), never densified.
    k: how many points, ``1 <= k <=`` the number of unlabeled points.
    target: ``[dim]`` vector to match; by default the mean of the unlabeled points.
    labeled_mask: optional ``[num_points]`` bool, True where already labeled.
    lam: ridge weight ``>= 0`` on the weights (DISTIL's ``omp_reg``).
    check_finite: NaN or inf in ``x`` or ``target`` is an error (flags fused into the
      compiled call); False for callers that checked already (non-finite values then
      give unspecified picks).

  ``x`` (and the mask) may be sharded along N over a 1-D mesh: the same picks,
  with one row fetched per pick and ``k`` values per refit crossing devices.

  Returns:
    ``OMPResult(indices [k] int32, weights [k] float32)``, in pick order.

  Raises:
    TypeError: a non-float ``x``, a non-bool mask, a non-number ``lam``.
    ValueError: bad shapes, ``k`` above the unlabeled count, non-finite points or
      target, ``lam < 0``.

  Examples:
    >>> import jax.numpy as jnp
    >>> from jaxal import selection
    >>> x = jnp.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [-1.0, 0.0]])
    >>> res = selection.omp(x, 2, target=jnp.array([2.0, 1.0]))
    >>> res.indices, res.weights.round(3)
    (Array([2, 0], dtype=int32), Array([1., 1.], dtype=float32))

  References:
    Killamsetty et al., GRAD-MATCH: Gradient Matching based Data Subset Selection
    for Efficient Deep Model Training, ICML 2021. Lawson and Hanson, Solving Least
    Squares Problems, 1974 (NNLS).
  """
  x, labeled_mask, k = distances.check_selection(x, k, labeled_mask)
  lam = check_lam(lam)
  check_finite = checks.check_bool(check_finite, "check_finite")
  dim = x.dim if isinstance(x, GradEmbedding) else x.shape[1]
  target = None if target is None else check_target(target, dim)
  idx, w = select_omp(x, k, labeled_mask, lam=lam, target=target, check_finite=check_finite)
  return OMPResult(idx, w)


def select_omp(
  x,
  k: int,
  labeled_mask: jax.Array,
  *,
  lam: float,
  target: jax.Array | None = None,
  check_finite: bool = False,
) -> tuple[jax.Array, jax.Array]:
  """:func:`omp` on validated arguments (a strategy's entry): ``(indices, weights)``.

  A pool sharded along N over a 1-D mesh stays sharded: one row is fetched per
  pick and ``k`` values per refit, never the pool. ``check_finite``: raise for
  non-finite ``x`` or ``target``, with flags from the same compiled call
  (a strategy that checked its embedding already leaves it False).
  """
  original, given = x, target
  ps = sharding.pool_sharding((x, labeled_mask), "x and labeled_mask")
  x, labeled_mask = sharding.place(x, ps), sharding.place(labeled_mask, ps)
  if target is None:
    target = mean_unlabeled(x, labeled_mask)
  if not check_finite:
    return omp_core(x, target, k, labeled_mask, lam, ps)
  idx, w, ok = omp_core(x, target, k, labeled_mask, lam, ps, flagged=True)
  _raise_non_finite(original, given, ok, "matching pursuit needs finite values")
  return idx, w


def select_fixed_weight(
  x,
  k: int,
  labeled_mask: jax.Array,
  *,
  target: jax.Array | None = None,
  check_finite: bool = False,
) -> jax.Array:
  """:func:`fixed_weight_matching` on validated arguments: ``[k]`` int32 indices.

  ``check_finite`` as in :func:`select_omp`.
  """
  original, given = x, target
  ps = sharding.pool_sharding((x, labeled_mask), "x and labeled_mask")
  x, labeled_mask = sharding.place(x, ps), sharding.place(labeled_mask, ps)
  if target is None:
    target = mean_unlabeled(x, labeled_mask)
  if not check_finite:
    return fixed_weight_core(x, target, k, labeled_mask, ps)
  idx, ok = fixed_weight_core(x, target, k, labeled_mask, ps, flagged=True)
  _raise_non_finite(original, given, ok, "gradient matching needs finite values")
  return idx


@executables.jit(static_argnames=("k", "ps", "flagged"))
def fixed_weight_core(x, target, k, labeled_mask, ps=None, flagged=False):
  """:func:`fixed_weight_matching` on validated, placed points; ``target`` ``[dim]``.

  ``flagged``: return ``(indices, ok)`` as :func:`omp_core` does.
  """
  ok = checks.all_finite((x, target)) if flagged else None
  x = jax.tree.map(lambda t: t.astype(jnp.float32), x)
  target = target.astype(jnp.float32)
  n = distances.num_points(x)
  c = _target_correlations(x, target)  # [N] g_j · b
  sq = distances.sq_norms(x)

  def body(t, carry):
    idx, chosen, acc = carry
    # ‖Σ_S g + g_j − k b‖² − ‖Σ_S g − k b‖² = 2 g_j · (Σ_S g − k b) + ‖g_j‖²
    gain = 2.0 * (acc - k * c) + sq
    j = jnp.argmin(jnp.where(labeled_mask | chosen, jnp.inf, gain)).astype(jnp.int32)
    acc = acc + distances.inner(x, distances.take(x, j, ps))  # [N] g_j · Σ_S g
    return idx.at[t].set(j), chosen.at[j].set(True), acc

  init = (jnp.zeros((k,), jnp.int32), jnp.zeros((n,), bool), jnp.zeros((n,), jnp.float32))
  idx = jax.lax.fori_loop(0, k, body, init)[0]
  return (idx, ok) if flagged else idx


@checks.spelled_as(
  "fixed_weight_matching(x, k, *, target=None, labeled_mask=None, check_finite=True)"
)
def fixed_weight_matching(
  x: ArrayLike | GradEmbedding,
  k: int,
  *,
  target: ArrayLike | None = None,
  labeled_mask: ArrayLike | None = None,
  check_finite: bool = True,
) -> jax.Array:
  """Greedy fixed-weight gradient matching: ``k`` points whose mean matches a target.

  GradMatch's unweighted variant (DISTIL's default ``GradMatchActive.select``):
  each step adds the unlabeled, unchosen point ``j`` minimising
  ``‖Σ_{s∈S} g_s + g_j − k b‖``, so that the batch's mean ``(1/k) Σ_S g_s``
  approaches ``b``. In the factorised form the step costs one Gram column,
  ``O(N (K + d))``. Deterministic: ties go to the lower index. (DISTIL's code
  scales the target by the candidate count rather than by ``k``, unlike its own
  docstring; this follows the docstring's ``k/N ∇L``.)

  Args:
    x: ``[num_points, dim]`` points, or a ``GradEmbedding`` ``a [num_points,
      num_classes] ⊗ z [num_points, feat_dim]`` (never densified).
    k: how many points, ``1 <= k <=`` the number of unlabeled points.
    target: ``[dim]`` vector the batch mean should match; by default the mean of
      the unlabeled points.
    labeled_mask: optional ``[num_points]`` bool, True where already labeled.
    check_finite: NaN or inf in ``x`` or ``target`` is an error (flags fused into the
      compiled call); False for callers that checked already.

  ``x`` (and the mask) may be sharded along N over a 1-D mesh, as for :func:`omp`.

  Returns:
    ``[k]`` int32 indices, in pick order: unique, in range, never labeled.

  Raises:
    TypeError: a non-float ``x``, a non-bool mask.
    ValueError: bad shapes, ``k`` above the unlabeled count, non-finite points or target.

  Examples:
    >>> import jax.numpy as jnp
    >>> from jaxal import selection
    >>> x = jnp.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [3.0, 3.0]])
    >>> selection.fixed_weight_matching(x, 2, target=jnp.array([0.5, 0.5]))
    Array([2, 0], dtype=int32)

  References:
    Killamsetty et al., GRAD-MATCH, ICML 2021 (DISTIL's ``fixed_weight_greedy_parallel``).
  """
  x, labeled_mask, k = distances.check_selection(x, k, labeled_mask)
  check_finite = checks.check_bool(check_finite, "check_finite")
  dim = x.dim if isinstance(x, GradEmbedding) else x.shape[1]
  target = None if target is None else check_target(target, dim)
  return select_fixed_weight(x, k, labeled_mask, target=target, check_finite=check_finite)
