r"""Submodular information measures: mutual information, conditional gain, conditional MI.

The measures of SIMILAR (Kothawade et al., 2021), as :class:`SetFunction`
values that the maximisers of :mod:`jaxal._src.submodular.maximizers` run
unchanged. Each is defined over a ground set :math:`V` (the unlabeled pool,
its ``ground_mask``), a *query* set :math:`Q` (what to find more of) and a
*private* set :math:`P` (what to stay away from), through similarity blocks:

=====================  ==============  ===========================================
argument               shape           block
=====================  ==============  ===========================================
``kernel``             ``[N, N]``      :math:`S_{VV}`, pool to pool (symmetric)
``query``              ``[N, Q]``      :math:`S_{VQ}`, pool to query
``query_query``        ``[Q, Q]``      :math:`S_{QQ}` (LogDet only)
``private``            ``[N, P]``      :math:`S_{VP}`, pool to private
``private_private``    ``[P, P]``      :math:`S_{PP}` (LogDet only)
``query_private``      ``[Q, P]``      :math:`S_{QP}` (LogDet CMI only)
=====================  ==============  ===========================================

With :math:`A \subseteq V` the selected set, :math:`s_{ij}` the similarities
and :math:`\eta` (query relevance), :math:`\nu` (privacy hardness), :math:`\lambda`:

=========  =====================================================================================
FLVMI      :math:`\sum_{i \in V} \min(\max_{j \in A} s_{ij}, \; \eta \max_{q \in Q} s_{iq})`
FLQMI      :math:`\sum_{q \in Q} \max_{j \in A} s_{jq} + \eta \sum_{j \in A} \max_{q \in Q} s_{jq}`
GCMI       :math:`2 \lambda \sum_{j \in A} \sum_{q \in Q} s_{jq}`
LogDetMI   :math:`\log\det(S_A) - \log\det(S_A - \eta^2 S_{AQ} S_Q^{-1} S_{AQ}^\top)`
FLCG       :math:`\sum_{i \in V} \max(\max_{j \in A} s_{ij} - \nu \max_{p \in P} s_{ip}, \; 0)`
GCCG       :math:`\sum_{j \in A, i \in V} s_{ij} - \lambda \sum_{i, j \in A} s_{ij} - 2 \lambda \nu \sum_{j \in A, p \in P} s_{jp}`
LogDetCG   :math:`\log\det(S_A - \nu^2 S_{AP} S_P^{-1} S_{AP}^\top)`
FLCMI      :math:`\sum_{i \in V} \max(\min(\max_{j \in A} s_{ij}, \eta \max_{q} s_{iq}) - \nu \max_{p} s_{ip}, \; 0)`
LogDetCMI  :math:`\log \det(I - S_P^{-1} S_{PQ} S_Q^{-1} S_{PQ}^\top) - \log\det(I - S_{AP}^{-1} S_{AP,Q} S_Q^{-1} S_{AP,Q}^\top)`
=========  =====================================================================================

(the facility-location maxima start from 0, as submodlib's memoised
versions do). The LogDet measures are those of :math:`f(X) = \log\det(L_X +
\lambda I)` over the joint kernel :math:`L` of :math:`V \cup Q \cup P` whose
pool-to-query block is scaled by :math:`\eta` and pool-to-private block by
:math:`\nu` (:math:`\lambda`, the ridge, keeps it positive definite):
:math:`I(A; Q) = f(A) + f(Q) - f(A \cup Q)`, :math:`f(A \mid P) = f(A \cup P) -
f(P)` and :math:`I(A; Q \mid P) = f(A \cup P) + f(Q \cup P) - f(A \cup Q \cup P) -
f(P)`, exactly submodlib's construction. Their marginal gains are log
residual variances, :math:`f(B \cup A \cup \{j\}) - f(B \cup A) = \log d_j`,
kept for every candidate by incremental Cholesky updates (one ``[N]`` column
per pick, Chen et al. 2018's fast greedy MAP): no refactorisation per pick.

Names follow the SIMILAR paper. submodlib's class names for the two
facility-location MI are the other way round: its
``FacilityLocationMutualInformation`` is FLVMI here (DISTIL's ``fl1mi``) and
its ``FacilityLocationVariantMutualInformation`` is FLQMI (DISTIL's
``fl2mi``). GCMI's :math:`\lambda = 1/2` is submodlib's (its gains are the
plain sums).

FLVMI, FLQMI, GCMI, FLCG and FLCMI are monotone submodular for non-negative
kernels; GCCG is submodular, and LogDetCG submodular for a positive
semi-definite kernel (monotone too when ``lam >= 1``, which keeps every
residual variance, and so every gain's argument, at least 1); LogDetMI and LogDetCMI are monotone but not submodular in general (SIMILAR,
Sec. 3), so :func:`lazy_greedy` may then pick differently from
:func:`greedy`. A LogDet measure's ``value`` is computed from the definition
by Cholesky factorisations of the joint kernel, ``O((N + Q + P)^3)``: it is
for checking; the maximisers use the trackers only.

The query and private sets may carry a mask (``query_mask [Q]``,
``private_mask [P]`` bool): masked-out columns do not exist, so a set can be
padded to a fixed size and one compilation serves every round.
"""

from __future__ import annotations

from typing import Any
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.tree_util import Partial
from jax.typing import ArrayLike

from jaxal._src import cached_ops
from jaxal._src import checks
from jaxal._src import distances
from jaxal._src import executables
from jaxal._src.embeddings.grad_embedding import GradEmbedding
from jaxal._src.submodular import kernels as kernels_lib
from jaxal._src.submodular.functions import SetFunction

SMI_FUNCTIONS = ("flqmi", "flvmi", "gcmi", "logdetmi")
CG_FUNCTIONS = ("flcg", "gccg", "logdetcg")
CMI_FUNCTIONS = ("flcmi", "logdetcmi")
MEASURES = SMI_FUNCTIONS + CG_FUNCTIONS + CMI_FUNCTIONS

_TINY = float(jnp.finfo(jnp.float32).tiny)


# ---------------------------------------------------------------------------
# Kernels between two sets.


def _default_gamma(x: jax.Array) -> jax.Array:
  mean_sq = 2.0 * (jnp.mean(jnp.sum(x * x, axis=1)) - jnp.sum(jnp.mean(x, axis=0) ** 2))
  return jnp.where(mean_sq > 0, 1.0 / jnp.maximum(mean_sq, 1e-30), 1.0).astype(jnp.float32)


@executables.jit(static_argnames=("metric",))
def _cross_dense(x, y, metric, gamma):
  x, y = x.astype(jnp.float32), y.astype(jnp.float32)
  if metric == "cosine":
    xn = x / jnp.maximum(jnp.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    yn = y / jnp.maximum(jnp.linalg.norm(y, axis=1, keepdims=True), 1e-12)
    return (1.0 + jnp.clip(xn @ yn.T, -1.0, 1.0)) * 0.5
  return jnp.exp(-gamma * distances.sq_dist(x, y))


@executables.jit(static_argnames=("metric",))
def _cross_factored(x, y, metric, gamma):
  inner = x.inner(y)
  nx, ny = x.sq_norms(), y.sq_norms()
  if metric == "cosine":
    den = jnp.sqrt(jnp.maximum(nx, 1e-24))[:, None] * jnp.sqrt(jnp.maximum(ny, 1e-24))[None, :]
    return (1.0 + jnp.clip(inner / den, -1.0, 1.0)) * 0.5
  d2 = jnp.maximum(nx[:, None] + ny[None, :] - 2.0 * inner, 0.0)
  return jnp.exp(-gamma * d2)


def _check_embedding(x: Any, name: str) -> Any:
  if isinstance(x, GradEmbedding):
    a = checks.check_float_array(x.a, f"{name}.a", 2, "[num_points, num_classes]")
    z = checks.check_float_array(x.z, f"{name}.z", 2, "[num_points, feat_dim]")
    checks.check_same_n(f"{name}.a", a, f"{name}.z", z)
    return GradEmbedding(a.astype(jnp.float32), z.astype(jnp.float32))
  return checks.check_float_array(x, name, 2, "[num_points, dim]").astype(jnp.float32)


def _dim(x: Any) -> Any:
  return (x.a.shape[1], x.z.shape[1]) if isinstance(x, GradEmbedding) else x.shape[1]


def cross_kernel(
  x: ArrayLike | GradEmbedding,
  y: ArrayLike | GradEmbedding,
  *,
  metric: str = "cosine",
  gamma: float | None = None,
) -> jax.Array:
  r"""The ``[N, M]`` similarities between two sets of points, as :func:`similarity_kernel` has them.

  * ``"cosine"``: :math:`(1 + \cos(x_i, y_j)) / 2 \in [0, 1]`.
  * ``"rbf"``: :math:`\exp(-\gamma \|x_i - y_j\|^2)`, ``gamma`` by default
    ``1 / mean ‖x_i − x_k‖²`` over ``x`` (the pool's bandwidth, so that every
    block of one problem shares it).

  Both are positive semi-definite kernels (``cosine``: the inner product of
  ``[1, x/‖x‖] / √2``), so the LogDet measures' joint kernels are too.
  Gradient embeddings (:class:`~jaxal.embeddings.GradEmbedding`) are read in
  their factorised form, ``(a·b)(z·w)``: the dense embedding is never built.

  Args:
    x: ``[N, dim]`` features, or a ``GradEmbedding`` of ``N`` points.
    y: ``[M, dim]`` features (or a ``GradEmbedding``) of the same dimension.
    metric: ``"cosine"`` or ``"rbf"``.
    gamma: the RBF bandwidth (``metric="rbf"`` only), or None for the default.

  Returns:
    ``[N, M]`` float32 similarities.

  Raises:
    ValueError: ``x`` and ``y`` of different dimensions, an unknown metric.

  Example:
    >>> import jax.numpy as jnp
    >>> from jaxal import submodular
    >>> x = jnp.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    >>> submodular.cross_kernel(x, x[:1])[:, 0]
    Array([1. , 0.5, 0. ], dtype=float32)
  """
  gamma = kernels_lib.check_metric(metric, gamma)
  x, y = _check_embedding(x, "x"), _check_embedding(y, "y")
  if isinstance(x, GradEmbedding) != isinstance(y, GradEmbedding) or _dim(x) != _dim(y):
    raise ValueError(
      f"x and y must be points of the same dimension, got x of dimension {_dim(x)} and y "
      f"of dimension {_dim(y)}"
    )
  if isinstance(x, GradEmbedding):
    if gamma is None:
      gamma = _default_gamma_factored(x) if metric == "rbf" else 0.0
    return _cross_factored(x, y, metric, jnp.float32(gamma))
  if gamma is None:
    gamma = _default_gamma(x) if metric == "rbf" else 0.0
  return _cross_dense(x, y, metric, jnp.float32(gamma))


@executables.jit
def _default_gamma_factored(g):
  # mean_{i,k} ‖g_i − g_k‖² = 2 (mean ‖g_i‖² − ‖mean g‖²), with ‖mean g‖² from the factors.
  n = g.a.shape[0]
  mean_norm = jnp.mean(g.sq_norms())
  mean_sq = jnp.sum((g.a.T @ g.z) ** 2) / (n * n)  # ‖mean_i a_i ⊗ z_i‖², Σ a_i ⊗ z_i = Aᵀ Z
  ms = 2.0 * (mean_norm - mean_sq)
  return jnp.where(ms > 0, 1.0 / jnp.maximum(ms, 1e-30), 1.0).astype(jnp.float32)


class InformationKernels(NamedTuple):
  """The similarity blocks of one pool / query / private problem (see the module table).

  Built by :func:`information_kernels`; a block the problem does not need is None.
  The fields are in the order of :func:`logdetcmi`'s arguments.

  Attributes:
    kernel: ``[N, N]`` pool-to-pool similarities, or None.
    query: ``[N, Q]`` pool-to-query similarities, or None.
    query_query: ``[Q, Q]`` query-to-query similarities, or None.
    private: ``[N, P]`` pool-to-private similarities, or None.
    private_private: ``[P, P]`` private-to-private similarities, or None.
    query_private: ``[Q, P]`` query-to-private similarities, or None.

  Example:
    >>> import jax.numpy as jnp
    >>> from jaxal import submodular
    >>> ks = submodular.information_kernels(jnp.eye(3), query=jnp.eye(3)[:1])
    >>> ks.query.shape, ks.private is None
    ((3, 1), True)
  """

  kernel: jax.Array | None  # shape=[N, N]
  query: jax.Array | None  # shape=[N, Q]
  query_query: jax.Array | None  # shape=[Q, Q]
  private: jax.Array | None  # shape=[N, P]
  private_private: jax.Array | None  # shape=[P, P]
  query_private: jax.Array | None  # shape=[Q, P]


# Which blocks each measure reads.
_BLOCKS = {
  "flvmi": ("kernel", "query"),
  "flqmi": ("query",),
  "gcmi": ("query",),
  "logdetmi": ("kernel", "query", "query_query"),
  "flcg": ("kernel", "private"),
  "gccg": ("kernel", "private"),
  "logdetcg": ("kernel", "private", "private_private"),
  "flcmi": ("kernel", "query", "private"),
  "logdetcmi": ("kernel", "query", "query_query", "private", "private_private", "query_private"),
}


def information_kernels(
  x: ArrayLike | GradEmbedding,
  *,
  query: ArrayLike | GradEmbedding | None = None,
  private: ArrayLike | GradEmbedding | None = None,
  function: str | None = None,
  metric: str = "cosine",
  gamma: float | None = None,
) -> InformationKernels:
  """Every similarity block of a problem (or only those ``function`` reads), one bandwidth.

  The pool-to-pool block has an exact unit diagonal, like
  :func:`similarity_kernel`. With ``metric="rbf"`` and no ``gamma`` every
  block uses the pool's default bandwidth.

  Args:
    x: ``[N, dim]`` pool features (or a ``GradEmbedding``).
    query: ``[Q, dim]`` query features, or None.
    private: ``[P, dim]`` private features, or None.
    function: one of :data:`MEASURES` to build only its blocks, or None for all that the
      given sets allow.
    metric: ``"cosine"`` or ``"rbf"``.
    gamma: the RBF bandwidth, or None.

  Returns:
    :class:`InformationKernels`.

  Raises:
    ValueError: sets of different dimensions, an unknown function or metric.

  Example:
    >>> import jax.numpy as jnp
    >>> from jaxal import submodular
    >>> x = jnp.eye(4)
    >>> ks = submodular.information_kernels(x, query=x[:1], function="flqmi")
    >>> ks.query.shape, ks.kernel is None
    ((4, 1), True)
  """
  gamma = kernels_lib.check_metric(metric, gamma)
  x = _check_embedding(x, "x")
  if function is not None:
    checks.check_one_of(function, MEASURES, "information measure")
  want = set(_BLOCKS[function]) if function is not None else set(InformationKernels._fields)
  if metric == "rbf" and gamma is None:
    gamma = float(_default_gamma_factored(x) if isinstance(x, GradEmbedding) else _default_gamma(x))
  sets = {"x": x}
  for name, s in (("query", query), ("private", private)):
    if s is not None:
      s = _check_embedding(s, name)
      if isinstance(s, GradEmbedding) != isinstance(x, GradEmbedding) or _dim(s) != _dim(x):
        raise ValueError(
          f"{name} must have the pool's dimension {_dim(x)}, got {name} of dimension {_dim(s)}"
        )
      sets[name] = s
  pairs = {
    "kernel": ("x", "x"),
    "query": ("x", "query"),
    "query_query": ("query", "query"),
    "private": ("x", "private"),
    "private_private": ("private", "private"),
    "query_private": ("query", "private"),
  }
  out = {}
  for block, (a, b) in pairs.items():
    if block in want and a in sets and b in sets:
      k = cross_kernel(sets[a], sets[b], metric=metric, gamma=gamma)
      if a == b:
        k = _unit_diagonal(k)
      out[block] = k
    else:
      out[block] = None
  return InformationKernels(**out)


@executables.jit
def _unit_diagonal(k):
  n = k.shape[0]
  return jnp.where(jnp.eye(n, dtype=bool), 1.0, k)


# ---------------------------------------------------------------------------
# Checks.


def _block(x: Any, name: str, rows: int | None, dims: str) -> jax.Array:
  """A 2-D float block of the given rows, at least one column (its values are checked later)."""
  s = checks.check_float_array(x, name, 2, dims)
  if rows is not None and s.shape[0] != rows:
    raise ValueError(f"{name} must have shape {dims} with {rows} rows, got shape {s.shape}")
  if s.shape[1] == 0:
    raise ValueError(f"{name} must have at least one column (the set is empty), got {s.shape}")
  return s


def _pool_kernel(kernel: Any, name: str = "kernel") -> tuple[jax.Array, int]:
  if isinstance(kernel, kernels_lib.SparseKernel):
    raise TypeError(f"{name} must be a dense [num_points, num_points] array for this measure")
  s = checks.check_float_array(kernel, name, 2, "[num_points, num_points]")
  if s.shape[0] != s.shape[1]:
    raise ValueError(
      f"{name} must be a square [num_points, num_points] similarity matrix, got shape {s.shape}"
    )
  return s, s.shape[0]


@executables.jit(static_argnames=("scaled", "symmetric"))
def _prepare_jit(blocks, scaled, symmetric):
  flags = [checks.all_finite(b)[0] for b in blocks]
  blocks = [b.astype(jnp.float32) for b in blocks]
  # Symmetry of the square blocks (LogDet): max |S - S^T| and max |S|, from the same pass.
  asym = [
    (jnp.max(jnp.abs(b - b.T)), jnp.max(jnp.abs(b))) if sym else None
    for b, sym in zip(blocks, symmetric)
  ]
  if not scaled:
    return blocks, jnp.float32(1.0), flags, asym
  # One power of two for every block: the division is exact, so the picks are unchanged, and
  # every entry lies in (-2, 2), so no finite input overflows a gain or a state.
  m = jnp.max(jnp.stack([jnp.max(jnp.abs(b), initial=0.0) for b in blocks]))
  good = jnp.isfinite(m) & (m > 0)
  e = jnp.where(good, jnp.frexp(jnp.where(good, m, 1.0))[1], 1)
  blocks = [jnp.ldexp(b, 1 - e) for b in blocks]
  return blocks, jnp.ldexp(jnp.float32(1.0), e - 1), flags, asym


def _prepare(
  blocks: dict[str, jax.Array],
  check_finite: bool,
  *,
  scaled: bool = False,
  symmetric: tuple[str, ...] = (),
) -> tuple[list[jax.Array], Any]:
  """The blocks as float32 (scaled by one power of two with ``scaled``) and their scale.

  One compiled pass reads every block once: the cast, the scale, the finiteness
  flags (checked unless ``check_finite`` is False: the message names the block
  and its first offending row) and, for the ``symmetric`` blocks, the symmetry
  check of the LogDet measures.
  """
  check_finite = checks.check_bool(check_finite, "check_finite")
  names = tuple(blocks)
  sym = tuple(n in symmetric for n in names)
  out, scale, flags, asym = _prepare_jit([blocks[n] for n in names], scaled, sym)
  if check_finite:
    for n, flag in zip(names, flags):
      checks.check_finite(blocks[n], n, ok=flag)
  for n, a in zip(names, asym):
    if a is not None and checks.is_concrete(a[0]):
      _check_symmetric(blocks[n], n, *map(float, a))
  return out, scale


def _set_mask(mask: Any, m: int, name: str, block: str) -> jax.Array:
  if mask is None:
    return jax.device_put(np.ones((m,), bool))
  mask = checks.check_labeled_mask(mask, m, name=name)
  if checks.is_concrete(mask) and not cached_ops.any_bool(mask):
    raise ValueError(f"{name} of shape {mask.shape} selects no column of {block}: the set is empty")
  return mask


def _ground(ground_mask: Any, n: int) -> jax.Array:
  if ground_mask is None:
    return jax.device_put(np.ones((n,), bool))
  mask = checks.check_labeled_mask(ground_mask, n, name="ground_mask")
  if checks.is_concrete(mask) and not cached_ops.any_bool(mask):
    raise ValueError(f"ground_mask of shape {mask.shape} selects no element")
  return mask


def _nonneg(value: Any, name: str) -> float:
  return checks.check_float(value, name, low=0.0)


@executables.jit
def _masked_max(block: jax.Array, mask: jax.Array, scale: Any) -> jax.Array:
  """``scale * max(0, max_{c in mask} block[:, c])`` per row."""
  return scale * jnp.maximum(jnp.max(jnp.where(mask[None, :], block, -jnp.inf), axis=1), 0.0)


@executables.jit
def _masked_max_signed(block: jax.Array, mask: jax.Array, scale: Any) -> jax.Array:
  """``scale * max_{c in mask} block[:, c]`` per row (negative maxima kept)."""
  return scale * jnp.max(jnp.where(mask[None, :], block, -jnp.inf), axis=1)


# ---------------------------------------------------------------------------
# Facility-location and graph-cut measures. States:
#   FLVMI, FLCG, FLCMI  c_i = max(0, max_{a in A} S_ai)      [N]
#   FLQMI               m_q = max(0, max_{a in A} S_aq)      [Q]
#   GCCG                r_j = Σ_{a in A} (S_aj + S_ja)       [N]
#   GCMI                a scalar (its gains are modular)


def _zeros(n):
  return jnp.zeros((n,), jnp.float32)


def _zeros_like(v):
  return jnp.zeros(v.shape, jnp.float32)


def _rows(kernel, idx):
  return kernel if idx is None else kernel[idx]


def _fl_state(kernel, mask):
  return jnp.maximum(jnp.max(jnp.where(mask[:, None], kernel, -jnp.inf), axis=0), 0.0)


def _fl_update(kernel, c, j, ps=None):
  del ps
  return jnp.maximum(c, jax.lax.dynamic_index_in_dim(kernel, j, axis=0, keepdims=False))


# FLVMI: Σ_i w_i min(c_i, cap_i), cap_i = η max_q S_iq. Gains reduce with a weighted sum (one
# fused pass over the rows), not a matmul, which would materialise the [rows, N] differences.
def _flvmi_gains(kernel, w, cap, c, idx=None):
  new = jnp.minimum(jnp.maximum(c[None, :], _rows(kernel, idx)), cap[None, :])
  return jnp.sum((new - jnp.minimum(c, cap)[None, :]) * w[None, :], axis=1)


def _flvmi_value(kernel, w, cap, mask):
  return jnp.sum(w * jnp.minimum(_fl_state(kernel, mask), cap))


# FLQMI: Σ_q wq_q m_q + Σ_{j in A} mod_j, mod_j = η max_q S_jq.
def _flqmi_gains(query, wq, modular, m, idx=None):
  rows = _rows(query, idx)
  mod = modular if idx is None else modular[idx]
  return jnp.sum(jnp.maximum(rows - m[None, :], 0.0) * wq[None, :], axis=1) + mod


def _flqmi_update(query, m, j, ps=None):
  del ps
  return jnp.maximum(m, jax.lax.dynamic_index_in_dim(query, j, axis=0, keepdims=False))


def _flqmi_from_mask(query, mask):
  return _fl_state(query, mask)


def _flqmi_value(query, wq, modular, mask):
  return jnp.sum(wq * _fl_state(query, mask)) + jnp.sum(jnp.where(mask, modular, 0.0))


# GCMI and any modular function: gains are constants.
def _modular_init():
  return jnp.zeros((), jnp.float32)


def _modular_gains(modular, s, idx=None):
  del s
  return modular if idx is None else modular[idx]


def _modular_update(s, j, ps=None):
  del j, ps
  return s


def _modular_from_mask(mask):
  del mask
  return jnp.zeros((), jnp.float32)


def _modular_value(modular, mask):
  return jnp.sum(jnp.where(mask, modular, 0.0))


# FLCG: Σ_i w_i max(c_i − p_i, 0), p_i = max(0, ν max_p S_ip).
def _flcg_gains(kernel, w, pcap, c, idx=None):
  new = jnp.maximum(jnp.maximum(c[None, :], _rows(kernel, idx)), pcap[None, :])
  return jnp.sum((new - jnp.maximum(c, pcap)[None, :]) * w[None, :], axis=1)


def _flcg_value(kernel, w, pcap, mask):
  return jnp.sum(w * jnp.maximum(_fl_state(kernel, mask) - pcap, 0.0))


# FLCMI: Σ_i w_i max(min(c_i, q_i) − p_i, 0) = Σ_i w_i (max(min(c_i, q_i), p_i) − p_i).
def _flcmi_gains(kernel, w, qcap, pcap, c, idx=None):
  new = jnp.minimum(jnp.maximum(c[None, :], _rows(kernel, idx)), qcap[None, :])
  new = jnp.maximum(new, pcap[None, :])
  return jnp.sum((new - jnp.maximum(jnp.minimum(c, qcap), pcap)[None, :]) * w[None, :], axis=1)


def _flcmi_value(kernel, w, qcap, pcap, mask):
  return jnp.sum(w * jnp.maximum(jnp.minimum(_fl_state(kernel, mask), qcap) - pcap, 0.0))


# GCCG: Σ_{j in A} (mod_j − 2λν psum_j) − λ Σ_{i,j in A} S_ij.
def _gccg_gains(modular, diag, lam, r, idx=None):
  if idx is not None:
    modular, diag, r = modular[idx], diag[idx], r[idx]
  return modular - lam * (r + diag)


def _gccg_update(kernel, r, j, ps=None):
  del ps
  row = jax.lax.dynamic_index_in_dim(kernel, j, axis=0, keepdims=False)
  col = jax.lax.dynamic_index_in_dim(kernel, j, axis=1, keepdims=False)
  return r + row + col


def _gccg_from_mask(kernel, mask):
  a = mask.astype(jnp.float32)
  return a @ kernel + kernel @ a


def _gccg_value(kernel, modular, lam, mask):
  a = mask.astype(jnp.float32)
  return jnp.sum(a * modular) - lam * jnp.sum(a * (kernel @ a))


# ---------------------------------------------------------------------------
# LogDet measures: residual trackers.
#
# A tracker conditions on a fixed base set B (∅, Q, P or Q ∪ P) of the joint
# kernel M = L + λI. Its constants are c0 [N, b] = M_VB L_B^{-T} (L_B the
# Cholesky factor of M_BB) and the ground block M_VV; its state after picks
# a_1..a_t is (C [N, cap], d [N], t): C's column s is the s-th Cholesky column
# of M_{V | B} over the picks, d_j = M_jj − ‖c0_j‖² − ‖C_j‖² the residual
# variance of j given B ∪ A, so f(B ∪ A ∪ {j}) − f(B ∪ A) = log d_j.


class _Tracker(NamedTuple):
  c: jax.Array  # shape=[N, cap], float32
  d: jax.Array  # shape=[N], float32
  t: jax.Array  # shape=(), int32


def _tracker_init(d0, c_init):
  return _Tracker(c_init, d0, jnp.zeros((), jnp.int32))


def _tracker_update(kernel, c0, st, j):
  kj = jax.lax.dynamic_index_in_dim(kernel, j, axis=0, keepdims=False)  # M_VV[j, :], sym.
  cross = kj - c0 @ c0[j] - st.c @ st.c[j]  # M_{V j | B ∪ A}
  dj = jnp.maximum(st.d[j], _TINY)
  e = cross / jnp.sqrt(dj)
  c = jax.lax.dynamic_update_index_in_dim(st.c, e, st.t, axis=1)
  return _Tracker(c, st.d - e * e, st.t + 1)


def _log_resid(d, idx=None):
  d = d if idx is None else d[idx]
  return jnp.log(jnp.maximum(d, _TINY))


def _ld_init(d0s, c_init):
  return tuple(_tracker_init(d0, c_init) for d0 in d0s)


def _ld_update(kernel, c0s, state, j, ps=None):
  del ps
  return tuple(_tracker_update(kernel, c0, st, j) for c0, st in zip(c0s, state))


def _ld_gains(signs, state, idx=None):
  out = signs[0] * _log_resid(state[0].d, idx)
  for s, st in zip(signs[1:], state[1:]):
    out = out + s * _log_resid(st.d, idx)
  return out


def _ld_from_mask(kernel, c0s, d0s, c_init, mask):
  """The trackers after adding the elements of ``mask`` in index order (at most ``cap``)."""
  cap = c_init.shape[1]
  idx = jnp.nonzero(mask, size=cap, fill_value=0)[0].astype(jnp.int32)
  count = jnp.minimum(jnp.sum(mask, dtype=jnp.int32), cap)

  def body(t, state):
    return _ld_update(kernel, c0s, state, idx[t])

  return jax.lax.fori_loop(0, count, body, _ld_init(d0s, c_init))


def _logdet_masked(m, mask):
  """``log det m[mask][:, mask]`` (0 for an empty mask), by a masked Cholesky."""
  eye = jnp.eye(m.shape[0], dtype=bool)
  both = mask[:, None] & mask[None, :]
  mm = jnp.where(both, m, jnp.where(eye, 1.0, 0.0))
  return 2.0 * jnp.sum(jnp.log(jnp.diagonal(jnp.linalg.cholesky(mm))))


def _ld_value(joint, terms, mask):
  """``Σ_s sign_s log det(joint[X_s])`` with X_s = A (if it has the pool) ∪ the fixed part."""
  out = jnp.zeros((), jnp.float32)
  for sign, with_pool, fixed in terms:
    pool = mask & with_pool  # with_pool: a bool scalar (a pytree leaf, so not static)
    out = out + sign * _logdet_masked(joint, jnp.concatenate([pool, fixed]))
  return out


def _joint(blocks):
  """The joint ``[n + Q + P]²`` kernel from its row blocks ``[[VV, VQ, VP], [QV, ...], ...]``."""
  return jnp.concatenate([jnp.concatenate(row, axis=1) for row in blocks], axis=0)


@executables.jit
def _base(m_bb, m_vb, diag_vv):
  """``c0 = M_VB L_B^{-T}``, the residuals ``d0`` and ``L_B``'s diagonal."""
  chol = jnp.linalg.cholesky(m_bb)
  c0 = jax.scipy.linalg.solve_triangular(chol, m_vb.T, lower=True).T
  return c0, diag_vv - jnp.sum(c0 * c0, axis=1), jnp.diagonal(chol)


def _check_pd(chol_diag, d0, ground, what: str, lam: float) -> None:
  """Raises unless ``L_B``'s diagonal is positive and every ground element's residual ``d0``
  is; read on the host (no program), skipped while tracing."""
  if not checks.is_concrete(d0):
    return
  hint = (
    f"; raise lam (the ridge added to the diagonal, now {lam}) or use a positive "
    "semi-definite kernel (similarity_kernel's cosine and rbf are)"
  )
  if chol_diag is not None:
    diag = np.asarray(chol_diag)
    if not np.all(np.isfinite(diag) & (diag > 0)):
      raise ValueError(f"{what} + lam * I is not positive definite{hint}")
  d0 = np.asarray(d0)
  bad = np.asarray(ground) & ~(d0 > 0)
  if bad.any():
    j = int(np.argmax(bad))
    given = f" given {what}" if what else ""
    raise ValueError(
      f"kernel + lam * I is not positive definite{' with ' + what if what else ''}: the "
      f"residual variance of ground element {j}{given} is {float(d0[j]):.3g} <= 0{hint}"
    )


def _check_symmetric(kernel: jax.Array, name: str, asym: float, biggest: float) -> None:
  """``asym = max |S - S^T|`` and ``biggest = max |S|``, computed with the finiteness flags."""
  if asym > 1e-5 * max(1.0, biggest):
    raise ValueError(
      f"{name} of shape {kernel.shape} must be symmetric for a LogDet measure "
      f"(max |S - S.T| = {asym:.3g})"
    )


def _capacity(max_size: Any, n: int) -> int:
  if max_size is None:
    return n
  return checks.check_positive_int(max_size, "max_size", high=n, what="the trackers' columns")


# Per LogDet measure: what each conditioning block is called in a message ("" for the pool's
# own diagonal), the signs of its trackers' log residuals, and the signs of the log
# determinants of its exact value.
_LOGDET_BLOCKS = {
  "logdetmi": ("", "query_query"),
  "logdetcg": ("private_private",),
  "logdetcmi": ("private_private", "the query and private blocks"),
}
_LOGDET_SIGNS = {"logdetmi": (1.0, -1.0), "logdetcg": (1.0,), "logdetcmi": (1.0, -1.0)}
_LOGDET_TERMS = {
  "logdetmi": (1.0, 1.0, -1.0),
  "logdetcg": (1.0, -1.0),
  "logdetcmi": (1.0, 1.0, -1.0, -1.0),
}


@executables.jit(static_argnames=("name", "cap"))
def _logdet_arrays(name, kernel, lam, cap, blocks, eta, nu):
  """A LogDet measure's arrays, in one program: ``(m_vv, c0s, d0s, c_init, joint, terms,
  bases)``.

  ``blocks``: ``(query, query_query, query_mask)`` and ``(private, private_private,
  private_mask)`` (``None`` for a measure without them) and the ``[Q, P]`` query-private
  block. ``terms``: ``(with_pool, fixed)`` of each log determinant of the exact value (their
  signs in :data:`_LOGDET_TERMS`). ``bases``: ``(L_B diagonal or None, d0)`` per entry of
  :data:`_LOGDET_BLOCKS`, for :func:`_check_pd`.
  """
  (query, qq, qmask), (private, pp, pmask), qp = blocks
  n = kernel.shape[0]
  m_vv = kernel + lam * jnp.eye(n, dtype=jnp.float32)
  diag_vv = jnp.diagonal(m_vv)
  qn = 0 if query is None else query.shape[1]
  pn = 0 if private is None else private.shape[1]
  # Masked-out query / private columns: identity rows, no cross similarity.
  if query is not None:
    vq = eta * jnp.where(qmask[None, :], query, 0.0)
    m_qq = jnp.where(
      qmask[:, None] & qmask[None, :], qq + lam * jnp.eye(qn), jnp.eye(qn, dtype=jnp.float32)
    )
  if private is not None:
    vp = nu * jnp.where(pmask[None, :], private, 0.0)
    m_pp = jnp.where(
      pmask[:, None] & pmask[None, :], pp + lam * jnp.eye(pn), jnp.eye(pn, dtype=jnp.float32)
    )
  if query is not None and private is not None:
    m_qp = jnp.where(qmask[:, None] & pmask[None, :], qp, 0.0)

  if name == "logdetmi":
    c0q, d0q, lq = _base(m_qq, vq, diag_vv)
    c0s, d0s = (jnp.zeros((n, 0), jnp.float32), c0q), (diag_vv, d0q)
    bases = ((None, diag_vv), (lq, d0q))
  elif name == "logdetcg":
    c0p, d0p, lp = _base(m_pp, vp, diag_vv)
    c0s, d0s, bases = (c0p,), (d0p,), ((lp, d0p),)
  else:  # logdetcmi
    c0p, d0p, lp = _base(m_pp, vp, diag_vv)
    m_bb = jnp.concatenate(
      [jnp.concatenate([m_qq, m_qp], 1), jnp.concatenate([m_qp.T, m_pp], 1)], 0
    )
    c0qp, d0qp, lqp = _base(m_bb, jnp.concatenate([vq, vp], 1), diag_vv)
    c0s, d0s, bases = (c0p, c0qp), (d0p, d0qp), ((lp, d0p), (lqp, d0qp))

  # The exact value, from the definition, on the joint kernel over V ∪ Q ∪ P.
  yes, no = jnp.ones((), bool), jnp.zeros((), bool)
  if name == "logdetmi":
    joint = _joint([[m_vv, vq], [vq.T, m_qq]])
    fv = jnp.zeros((qn,), bool)
    terms = ((yes, fv), (no, qmask), (yes, qmask))
  elif name == "logdetcg":
    joint = _joint([[m_vv, vp], [vp.T, m_pp]])
    terms = ((yes, pmask), (no, pmask))
  else:
    joint = _joint([[m_vv, vq, vp], [vq.T, m_qq, m_qp], [vp.T, m_qp.T, m_pp]])
    p_only = jnp.concatenate([jnp.zeros((qn,), bool), pmask])
    qp_all = jnp.concatenate([qmask, pmask])
    terms = ((yes, p_only), (no, qp_all), (yes, qp_all), (no, p_only))
  return m_vv, c0s, d0s, jnp.zeros((n, cap), jnp.float32), joint, terms, bases


def _logdet_function(
  name, kernel, lam, ground, cap, *, query=None, qq=None, qmask=None, private=None, pp=None,
  pmask=None, qp=None, eta=1.0, nu=1.0,
):  # fmt: skip
  """A LogDet measure from its blocks (checked): the trackers, gains and the exact value."""
  blocks = ((query, qq, qmask), (private, pp, pmask), qp)
  m_vv, c0s, d0s, c_init, joint, terms, bases = _logdet_arrays(
    name, kernel, np.float32(lam), cap, blocks, np.float32(eta), np.float32(nu)
  )
  for (chol_diag, d0), what in zip(bases, _LOGDET_BLOCKS[name]):
    _check_pd(chol_diag, d0, ground, what, lam)
  terms = tuple((sign, *term) for sign, term in zip(_LOGDET_TERMS[name], terms))
  return SetFunction(
    name,
    ground,
    init=Partial(_ld_init, d0s, c_init),
    gains=Partial(_ld_gains, _LOGDET_SIGNS[name]),
    update=Partial(_ld_update, m_vv, c0s),
    from_mask=Partial(_ld_from_mask, m_vv, c0s, d0s, c_init),
    value=Partial(_ld_value, joint, terms),
  )


@executables.jit
def _replay_residuals(init, update, idx):
  def body(state, j):
    d = jnp.min(jnp.stack([st.d[j] for st in state]))
    return update(state, j), d

  return jax.lax.scan(body, init(), idx)[1]


def check_logdet_selection(fn: SetFunction, indices: jax.Array, *, lam: float) -> None:
  """Raises when a LogDet measure's picks met a residual variance <= 0 (not positive definite).

  The factories check the query / private blocks and every singleton; a
  joint kernel that is not positive definite on larger sets shows only in
  the residuals of the picks (clamped in the gains, so that nothing is NaN).
  This replays the ``k`` tracker updates of ``indices`` (``O(k N (k + b))``)
  and reads each pick's residual variances.

  Args:
    fn: a LogDet measure from :func:`logdetmi`, :func:`logdetcg` or :func:`logdetcmi`.
    indices: ``[k]`` int32 picks, in order.
    lam: the ridge the measure was built with (for the message).

  Raises:
    ValueError: a pick's residual variance is not positive.
  """
  d = np.asarray(_replay_residuals(fn.init, fn.update, jnp.asarray(indices, jnp.int32)))
  bad = np.flatnonzero(~(d > 0))
  if bad.size:
    t = int(bad[0])
    raise ValueError(
      f"{fn.name}: the joint kernel is not positive definite on the selected points (the "
      f"residual variance of pick {t}, pool index {int(indices[t])}, is {float(d[t]):.3g} <= 0); "
      f"raise lam (the ridge added to the diagonal, now {lam}), lower eta / nu, or use a "
      "positive semi-definite kernel"
    )


# ---------------------------------------------------------------------------
# Factories.


def flvmi(
  kernel: ArrayLike,
  query: ArrayLike,
  *,
  eta: float = 1.0,
  query_mask: ArrayLike | None = None,
  ground_mask: ArrayLike | None = None,
  check_finite: bool = True,
) -> SetFunction:
  r"""FLVMI, :math:`I(A; Q) = \sum_{i \in V} \min(\max_{j \in A} s_{ij}, \eta \max_{q \in Q} s_{iq})`.

  Facility-location mutual information summed over the pool: each pool
  element counts as covered by ``A`` only up to how well the query covers
  it, so ``A`` covers the pool's query-like region (query relevance and
  diversity). Monotone submodular for non-negative similarities.
  submodlib's ``FacilityLocationMutualInformation``, DISTIL's ``fl1mi``.

  Args:
    kernel: ``[N, N]`` pool similarities :math:`S_{VV}`.
    query: ``[N, Q]`` pool-to-query similarities :math:`S_{VQ}`.
    eta: :math:`\eta \ge 0`, the query relevance (larger: more query-like picks).
    query_mask: optional ``[Q]`` bool, the query columns that exist (default: all).
    ground_mask: optional ``[N]`` bool ground set ``V`` (default: all).
    check_finite: NaN or inf similarities are an error, naming the block and its
      first offending row (flags from the compiled pass that casts and scales the
      blocks); False for callers that checked already.

  Returns:
    The :class:`SetFunction`.

  Raises:
    ValueError: blocks of mismatched shapes, NaN or inf, an empty query, ``eta < 0``.

  Example:
    >>> import jax.numpy as jnp
    >>> from jaxal import submodular
    >>> x = jnp.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    >>> ks = submodular.information_kernels(x, query=x[2:3])
    >>> fn = submodular.flvmi(ks.kernel, ks.query)
    >>> submodular.greedy(fn, 1).indices  # the pool point nearest the query
    Array([2], dtype=int32)

  References:
    Kothawade et al., SIMILAR: Submodular Information Measures Based Active
    Learning in Realistic Scenarios, NeurIPS 2021.
  """
  kernel, n = _pool_kernel(kernel)
  query = _block(query, "query", n, "[num_points, num_queries]")
  eta = _nonneg(eta, "eta")
  qmask = _set_mask(query_mask, query.shape[1], "query_mask", "query")
  ground = _ground(ground_mask, n)
  (kernel, query), scale = _prepare({"kernel": kernel, "query": query}, check_finite, scaled=True)
  w = cached_ops.as_float32(ground)
  cap = _masked_max(query, qmask, eta)
  return SetFunction(
    "flvmi",
    ground,
    init=Partial(_zeros_like, w),
    gains=Partial(_flvmi_gains, kernel, w, cap),
    update=Partial(_fl_update, kernel),
    from_mask=Partial(_fl_state, kernel),
    value=Partial(_flvmi_value, kernel, w, cap),
    scale=scale,
  )


def flqmi(
  query: ArrayLike,
  *,
  eta: float = 1.0,
  query_mask: ArrayLike | None = None,
  ground_mask: ArrayLike | None = None,
  check_finite: bool = True,
) -> SetFunction:
  r"""FLQMI, :math:`I(A; Q) = \sum_{q \in Q} \max_{j \in A} s_{jq} + \eta \sum_{j \in A} \max_{q \in Q} s_{jq}`.

  Facility-location mutual information summed over the query: the first
  term covers every query point once (query coverage), the second rewards
  each pick's best query similarity (query relevance, weighted by ``eta``).
  Only the ``[N, Q]`` block is read: ``O(N Q)`` memory, no pool kernel.
  Monotone submodular for non-negative similarities. submodlib's
  ``FacilityLocationVariantMutualInformation``, DISTIL's ``fl2mi``.

  Args:
    query: ``[N, Q]`` pool-to-query similarities :math:`S_{VQ}`.
    eta: :math:`\eta \ge 0`, the query relevance.
    query_mask: optional ``[Q]`` bool, the query columns that exist.
    ground_mask: optional ``[N]`` bool ground set ``V``.
    check_finite: NaN or inf similarities are an error, naming the block and its
      first offending row (flags from the compiled pass that casts and scales the
      blocks); False for callers that checked already.

  Returns:
    The :class:`SetFunction`.

  Raises:
    ValueError: a wrong shape, NaN or inf, an empty query, ``eta < 0``.

  Example:
    >>> import jax.numpy as jnp
    >>> from jaxal import submodular
    >>> x = jnp.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    >>> q = jnp.array([[1.0, 0.05], [0.05, 1.0]])  # one query point per direction
    >>> fn = submodular.flqmi(submodular.cross_kernel(x, q))
    >>> submodular.greedy(fn, 2).indices  # one pick near each query point
    Array([1, 2], dtype=int32)

  References:
    Kothawade et al., SIMILAR, NeurIPS 2021.
  """
  query = _block(query, "query", None, "[num_points, num_queries]")
  n = query.shape[0]
  eta = _nonneg(eta, "eta")
  qmask = _set_mask(query_mask, query.shape[1], "query_mask", "query")
  ground = _ground(ground_mask, n)
  (query,), scale = _prepare({"query": query}, check_finite, scaled=True)
  wq = cached_ops.as_float32(qmask)
  modular = _masked_max_signed(query, qmask, eta)
  return SetFunction(
    "flqmi",
    ground,
    init=Partial(_zeros_like, wq),
    gains=Partial(_flqmi_gains, query, wq, modular),
    update=Partial(_flqmi_update, query),
    from_mask=Partial(_flqmi_from_mask, query),
    value=Partial(_flqmi_value, query, wq, modular),
    scale=scale,
  )


def gcmi(
  query: ArrayLike,
  *,
  lam: float = 0.5,
  query_mask: ArrayLike | None = None,
  ground_mask: ArrayLike | None = None,
  check_finite: bool = True,
) -> SetFunction:
  r"""GCMI, :math:`I(A; Q) = 2 \lambda \sum_{j \in A} \sum_{q \in Q} s_{jq}`.

  Graph-cut mutual information: modular, so greedy takes the points of
  largest total similarity to the query (pure query relevance, no
  diversity). ``lam = 0.5`` is submodlib's (plain sums); ``lam`` only scales
  the values, never the picks.

  Args:
    query: ``[N, Q]`` pool-to-query similarities.
    lam: :math:`\lambda \ge 0`.
    query_mask: optional ``[Q]`` bool, the query columns that exist.
    ground_mask: optional ``[N]`` bool ground set ``V``.
    check_finite: NaN or inf similarities are an error, naming the block and its
      first offending row (flags from the compiled pass that casts and scales the
      blocks); False for callers that checked already.

  Returns:
    The :class:`SetFunction`.

  Raises:
    ValueError: a wrong shape, NaN or inf, an empty query, ``lam < 0``.

  Example:
    >>> import jax.numpy as jnp
    >>> from jaxal import submodular
    >>> s = jnp.array([[0.9, 0.8], [0.2, 0.1], [0.7, 0.7]])
    >>> submodular.greedy(submodular.gcmi(s), 2).indices
    Array([0, 2], dtype=int32)

  References:
    Kothawade et al., SIMILAR, NeurIPS 2021.
  """
  query = _block(query, "query", None, "[num_points, num_queries]")
  lam = _nonneg(lam, "lam")
  qmask = _set_mask(query_mask, query.shape[1], "query_mask", "query")
  ground = _ground(ground_mask, query.shape[0])
  (query,), scale = _prepare({"query": query}, check_finite, scaled=True)
  modular = 2.0 * lam * (query @ qmask.astype(jnp.float32))
  return SetFunction(
    "gcmi",
    ground,
    init=Partial(_modular_init),
    gains=Partial(_modular_gains, modular),
    update=Partial(_modular_update),
    from_mask=Partial(_modular_from_mask),
    value=Partial(_modular_value, modular),
    scale=scale,
  )


def logdetmi(
  kernel: ArrayLike,
  query: ArrayLike,
  query_query: ArrayLike,
  *,
  eta: float = 1.0,
  lam: float = 1.0,
  query_mask: ArrayLike | None = None,
  ground_mask: ArrayLike | None = None,
  max_size: int | None = None,
  check_finite: bool = True,
) -> SetFunction:
  r"""LogDetMI, :math:`I(A; Q) = \log\det(S_A) - \log\det(S_A - \eta^2 S_{AQ} S_Q^{-1} S_{AQ}^\top)`.

  Log-determinant mutual information, with :math:`S` the joint kernel plus
  the ridge :math:`\lambda I`. Gain of ``j``: :math:`\log d_j(A) - \log
  d_j(A \cup Q)`, the log residual variances of ``j`` given ``A`` and given
  ``A ∪ Q``, both tracked by incremental Cholesky updates: ``O(N (|A| + Q))``
  per pick, memory ``O(N max_size)``.

  Args:
    kernel: ``[N, N]`` symmetric positive semi-definite pool similarities.
    query: ``[N, Q]`` pool-to-query similarities.
    query_query: ``[Q, Q]`` query-to-query similarities.
    eta: :math:`\eta \ge 0`, scales the pool-to-query block (query relevance).
    lam: :math:`\lambda \ge 0`, the ridge added to every diagonal entry.
    query_mask: optional ``[Q]`` bool, the query points that exist.
    ground_mask: optional ``[N]`` bool ground set ``V``.
    max_size: the largest set the trackers hold (a maximiser's ``k``; default ``N``).
    check_finite: NaN or inf similarities are an error, naming the block and its
      first offending row (flags from the compiled pass that casts the blocks
      and checks their symmetry); False for callers that checked already.

  Returns:
    The :class:`SetFunction`.

  Raises:
    ValueError: mismatched shapes, a non-symmetric kernel, an empty query, or
      a kernel that is not positive definite with the ridge ``lam`` (the
      message says to raise ``lam``).

  Example:
    >>> import jax.numpy as jnp
    >>> from jaxal import submodular
    >>> x = jnp.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    >>> ks = submodular.information_kernels(x, query=x[:1], function="logdetmi")
    >>> fn = submodular.logdetmi(ks.kernel, ks.query, ks.query_query, max_size=2)
    >>> submodular.greedy(fn, 1).indices
    Array([0], dtype=int32)

  References:
    Kothawade et al., SIMILAR, NeurIPS 2021; Chen, Zhang & Zhou, Fast Greedy
    MAP Inference for Determinantal Point Process, NeurIPS 2018.
  """
  kernel, n = _pool_kernel(kernel)
  query = _block(query, "query", n, "[num_points, num_queries]")
  qq = _block(query_query, "query_query", query.shape[1], "[num_queries, num_queries]")
  (kernel, query, qq), _ = _prepare(
    {"kernel": kernel, "query": query, "query_query": qq},
    check_finite,
    symmetric=("kernel", "query_query"),
  )
  eta, lam = _nonneg(eta, "eta"), _nonneg(lam, "lam")
  qmask = _set_mask(query_mask, query.shape[1], "query_mask", "query")
  ground = _ground(ground_mask, n)
  cap = _capacity(max_size, n)
  return _logdet_function(
    "logdetmi", kernel, lam, ground, cap, query=query, qq=qq, qmask=qmask, eta=eta
  )


def flcg(
  kernel: ArrayLike,
  private: ArrayLike,
  *,
  nu: float = 1.0,
  private_mask: ArrayLike | None = None,
  ground_mask: ArrayLike | None = None,
  check_finite: bool = True,
) -> SetFunction:
  r"""FLCG, :math:`f(A \mid P) = \sum_{i \in V} \max(\max_{j \in A} s_{ij} - \nu \max_{p \in P} s_{ip}, 0)`.

  Facility-location conditional gain: facility location over the pool,
  where an element already represented by the private set counts only for
  what ``A`` adds beyond it. Monotone submodular.

  Args:
    kernel: ``[N, N]`` pool similarities.
    private: ``[N, P]`` pool-to-private similarities.
    nu: :math:`\nu \ge 0`, the privacy hardness.
    private_mask: optional ``[P]`` bool, the private columns that exist.
    ground_mask: optional ``[N]`` bool ground set ``V``.
    check_finite: NaN or inf similarities are an error, naming the block and its
      first offending row (flags from the compiled pass that casts and scales the
      blocks); False for callers that checked already.

  Returns:
    The :class:`SetFunction`.

  Raises:
    ValueError: mismatched shapes, NaN or inf, an empty private set, ``nu < 0``.

  Example:
    >>> import jax.numpy as jnp
    >>> from jaxal import submodular
    >>> x = jnp.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    >>> ks = submodular.information_kernels(x, private=x[:1])
    >>> submodular.greedy(submodular.flcg(ks.kernel, ks.private), 1).indices
    Array([2], dtype=int32)

  References:
    Kothawade et al., SIMILAR, NeurIPS 2021.
  """
  kernel, n = _pool_kernel(kernel)
  private = _block(private, "private", n, "[num_points, num_private]")
  nu = _nonneg(nu, "nu")
  pmask = _set_mask(private_mask, private.shape[1], "private_mask", "private")
  ground = _ground(ground_mask, n)
  (kernel, private), scale = _prepare(
    {"kernel": kernel, "private": private}, check_finite, scaled=True
  )
  w = cached_ops.as_float32(ground)
  pcap = _masked_max(private, pmask, nu)
  return SetFunction(
    "flcg",
    ground,
    init=Partial(_zeros_like, w),
    gains=Partial(_flcg_gains, kernel, w, pcap),
    update=Partial(_fl_update, kernel),
    from_mask=Partial(_fl_state, kernel),
    value=Partial(_flcg_value, kernel, w, pcap),
    scale=scale,
  )


def gccg(
  kernel: ArrayLike,
  private: ArrayLike,
  *,
  lam: float = 1.0,
  nu: float = 1.0,
  private_mask: ArrayLike | None = None,
  ground_mask: ArrayLike | None = None,
  check_finite: bool = True,
) -> SetFunction:
  r"""GCCG, :math:`f(A \mid P) = \sum_{j \in A, i \in V} s_{ij} - \lambda \sum_{i, j \in A} s_{ij} - 2 \lambda \nu \sum_{j \in A, p \in P} s_{jp}`.

  Graph-cut conditional gain: graph cut (representation minus redundancy,
  traded off by ``lam``) less each pick's similarity to the private set.
  Submodular for non-negative similarities; monotone only for small ``lam``.

  Args:
    kernel: ``[N, N]`` pool similarities.
    private: ``[N, P]`` pool-to-private similarities.
    lam: :math:`\lambda \in [0, 1]` (DISTIL's default 1).
    nu: :math:`\nu \ge 0`, the privacy hardness.
    private_mask: optional ``[P]`` bool, the private columns that exist.
    ground_mask: optional ``[N]`` bool ground set ``V``.
    check_finite: NaN or inf similarities are an error, naming the block and its
      first offending row (flags from the compiled pass that casts and scales the
      blocks); False for callers that checked already.

  Returns:
    The :class:`SetFunction`.

  Raises:
    ValueError: mismatched shapes, NaN or inf, an empty private set, a parameter out of range.

  Example:
    >>> import jax.numpy as jnp
    >>> from jaxal import submodular
    >>> x = jnp.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    >>> ks = submodular.information_kernels(x, private=x[:1])
    >>> submodular.greedy(submodular.gccg(ks.kernel, ks.private, lam=0.5), 1).indices
    Array([3], dtype=int32)

  References:
    Kothawade et al., SIMILAR, NeurIPS 2021.
  """
  kernel, n = _pool_kernel(kernel)
  private = _block(private, "private", n, "[num_points, num_private]")
  lam = checks.check_float(lam, "lam", low=0.0, high=1.0)
  nu = _nonneg(nu, "nu")
  pmask = _set_mask(private_mask, private.shape[1], "private_mask", "private")
  ground = _ground(ground_mask, n)
  (kernel, private), scale = _prepare(
    {"kernel": kernel, "private": private}, check_finite, scaled=True
  )
  w = cached_ops.as_float32(ground)
  modular = kernel @ w - 2.0 * lam * nu * (private @ pmask.astype(jnp.float32))
  return SetFunction(
    "gccg",
    ground,
    init=Partial(_zeros_like, w),
    gains=Partial(_gccg_gains, modular, jnp.diagonal(kernel), lam),
    update=Partial(_gccg_update, kernel),
    from_mask=Partial(_gccg_from_mask, kernel),
    value=Partial(_gccg_value, kernel, modular, lam),
    scale=scale,
  )


def logdetcg(
  kernel: ArrayLike,
  private: ArrayLike,
  private_private: ArrayLike,
  *,
  nu: float = 1.0,
  lam: float = 1.0,
  private_mask: ArrayLike | None = None,
  ground_mask: ArrayLike | None = None,
  max_size: int | None = None,
  check_finite: bool = True,
) -> SetFunction:
  r"""LogDetCG, :math:`f(A \mid P) = \log\det(S_A - \nu^2 S_{AP} S_P^{-1} S_{AP}^\top)`.

  Log-determinant conditional gain (joint kernel plus the ridge
  :math:`\lambda I`): the volume ``A`` spans beyond the private set. Gain of
  ``j``: :math:`\log d_j(A \cup P)`, tracked by incremental Cholesky updates.

  Args:
    kernel: ``[N, N]`` symmetric positive semi-definite pool similarities.
    private: ``[N, P]`` pool-to-private similarities.
    private_private: ``[P, P]`` private-to-private similarities.
    nu: :math:`\nu \ge 0`, scales the pool-to-private block (privacy hardness).
    lam: :math:`\lambda \ge 0`, the ridge added to every diagonal entry.
    private_mask: optional ``[P]`` bool, the private points that exist.
    ground_mask: optional ``[N]`` bool ground set ``V``.
    max_size: the largest set the trackers hold (default ``N``).
    check_finite: NaN or inf similarities are an error, naming the block and its
      first offending row (flags from the compiled pass that casts the blocks
      and checks their symmetry); False for callers that checked already.

  Returns:
    The :class:`SetFunction`.

  Raises:
    ValueError: mismatched shapes, a non-symmetric kernel, an empty private
      set, or a kernel that is not positive definite with the ridge ``lam``.

  Example:
    >>> import jax.numpy as jnp
    >>> from jaxal import submodular
    >>> x = jnp.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    >>> ks = submodular.information_kernels(x, private=x[:1], function="logdetcg")
    >>> fn = submodular.logdetcg(ks.kernel, ks.private, ks.private_private, max_size=2)
    >>> submodular.greedy(fn, 1).indices
    Array([2], dtype=int32)

  References:
    Kothawade et al., SIMILAR, NeurIPS 2021.
  """
  kernel, n = _pool_kernel(kernel)
  private = _block(private, "private", n, "[num_points, num_private]")
  pp = _block(private_private, "private_private", private.shape[1], "[num_private, num_private]")
  (kernel, private, pp), _ = _prepare(
    {"kernel": kernel, "private": private, "private_private": pp},
    check_finite,
    symmetric=("kernel", "private_private"),
  )
  nu, lam = _nonneg(nu, "nu"), _nonneg(lam, "lam")
  pmask = _set_mask(private_mask, private.shape[1], "private_mask", "private")
  ground = _ground(ground_mask, n)
  cap = _capacity(max_size, n)
  return _logdet_function(
    "logdetcg", kernel, lam, ground, cap, private=private, pp=pp, pmask=pmask, nu=nu
  )


def flcmi(
  kernel: ArrayLike,
  query: ArrayLike,
  private: ArrayLike,
  *,
  eta: float = 1.0,
  nu: float = 1.0,
  query_mask: ArrayLike | None = None,
  private_mask: ArrayLike | None = None,
  ground_mask: ArrayLike | None = None,
  check_finite: bool = True,
) -> SetFunction:
  r"""FLCMI, :math:`I(A; Q \mid P) = \sum_{i \in V} \max(\min(\max_{j \in A} s_{ij}, \eta \max_q s_{iq}) - \nu \max_p s_{ip}, 0)`.

  Facility-location conditional mutual information: FLVMI's query-capped
  coverage, less what the private set already covers. Monotone submodular.

  Args:
    kernel: ``[N, N]`` pool similarities.
    query: ``[N, Q]`` pool-to-query similarities.
    private: ``[N, P]`` pool-to-private similarities.
    eta: :math:`\eta \ge 0`, the query relevance.
    nu: :math:`\nu \ge 0`, the privacy hardness.
    query_mask: optional ``[Q]`` bool, the query columns that exist.
    private_mask: optional ``[P]`` bool, the private columns that exist.
    ground_mask: optional ``[N]`` bool ground set ``V``.
    check_finite: NaN or inf similarities are an error, naming the block and its
      first offending row (flags from the compiled pass that casts and scales the
      blocks); False for callers that checked already.

  Returns:
    The :class:`SetFunction`.

  Raises:
    ValueError: mismatched shapes, NaN or inf, an empty set, a negative parameter.

  Example:
    >>> import jax.numpy as jnp
    >>> from jaxal import submodular
    >>> x = jnp.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    >>> ks = submodular.information_kernels(x, query=x[2:], private=x[3:])
    >>> fn = submodular.flcmi(ks.kernel, ks.query, ks.private)
    >>> submodular.greedy(fn, 1).indices
    Array([2], dtype=int32)

  References:
    Kothawade et al., SIMILAR, NeurIPS 2021.
  """
  kernel, n = _pool_kernel(kernel)
  query = _block(query, "query", n, "[num_points, num_queries]")
  private = _block(private, "private", n, "[num_points, num_private]")
  eta, nu = _nonneg(eta, "eta"), _nonneg(nu, "nu")
  qmask = _set_mask(query_mask, query.shape[1], "query_mask", "query")
  pmask = _set_mask(private_mask, private.shape[1], "private_mask", "private")
  ground = _ground(ground_mask, n)
  (kernel, query, private), scale = _prepare(
    {"kernel": kernel, "query": query, "private": private}, check_finite, scaled=True
  )
  w = cached_ops.as_float32(ground)
  qcap = _masked_max(query, qmask, eta)
  pcap = _masked_max(private, pmask, nu)
  return SetFunction(
    "flcmi",
    ground,
    init=Partial(_zeros_like, w),
    gains=Partial(_flcmi_gains, kernel, w, qcap, pcap),
    update=Partial(_fl_update, kernel),
    from_mask=Partial(_fl_state, kernel),
    value=Partial(_flcmi_value, kernel, w, qcap, pcap),
    scale=scale,
  )


def logdetcmi(
  kernel: ArrayLike,
  query: ArrayLike,
  query_query: ArrayLike,
  private: ArrayLike,
  private_private: ArrayLike,
  query_private: ArrayLike,
  *,
  eta: float = 1.0,
  nu: float = 1.0,
  lam: float = 1.0,
  query_mask: ArrayLike | None = None,
  private_mask: ArrayLike | None = None,
  ground_mask: ArrayLike | None = None,
  max_size: int | None = None,
  check_finite: bool = True,
) -> SetFunction:
  r"""LogDetCMI, :math:`I(A; Q \mid P) = f(A \cup P) + f(Q \cup P) - f(A \cup Q \cup P) - f(P)`.

  With :math:`f(X) = \log\det(S_X + \lambda I)` on the joint kernel whose
  pool-to-query block is scaled by :math:`\eta` and pool-to-private block by
  :math:`\nu`; equal to :math:`\log \det(I - S_P^{-1} S_{PQ} S_Q^{-1}
  S_{PQ}^\top) / \det(I - S_{AP}^{-1} S_{AP,Q} S_Q^{-1} S_{AP,Q}^\top)`. Gain
  of ``j``: :math:`\log d_j(A \cup P) - \log d_j(A \cup Q \cup P)`, both by
  incremental Cholesky updates.

  Args:
    kernel: ``[N, N]`` symmetric positive semi-definite pool similarities.
    query: ``[N, Q]`` pool-to-query similarities.
    query_query: ``[Q, Q]`` query-to-query similarities.
    private: ``[N, P]`` pool-to-private similarities.
    private_private: ``[P, P]`` private-to-private similarities.
    query_private: ``[Q, P]`` query-to-private similarities.
    eta: :math:`\eta \ge 0`, the query relevance.
    nu: :math:`\nu \ge 0`, the privacy hardness.
    lam: :math:`\lambda \ge 0`, the ridge added to every diagonal entry.
    query_mask: optional ``[Q]`` bool, the query points that exist.
    private_mask: optional ``[P]`` bool, the private points that exist.
    ground_mask: optional ``[N]`` bool ground set ``V``.
    max_size: the largest set the trackers hold (default ``N``).
    check_finite: NaN or inf similarities are an error, naming the block and its
      first offending row (flags from the compiled pass that casts the blocks
      and checks their symmetry); False for callers that checked already.

  Returns:
    The :class:`SetFunction`.

  Raises:
    ValueError: mismatched shapes, a non-symmetric kernel, an empty set, or a
      kernel that is not positive definite with the ridge ``lam``.

  Example:
    >>> import jax.numpy as jnp
    >>> from jaxal import submodular
    >>> x = jnp.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    >>> ks = submodular.information_kernels(x, query=x[2:3], private=x[:1])
    >>> fn = submodular.logdetcmi(*ks, max_size=2)
    >>> submodular.greedy(fn, 1).indices
    Array([2], dtype=int32)

  References:
    Kothawade et al., SIMILAR, NeurIPS 2021.
  """
  kernel, n = _pool_kernel(kernel)
  query = _block(query, "query", n, "[num_points, num_queries]")
  private = _block(private, "private", n, "[num_points, num_private]")
  qn, pn = query.shape[1], private.shape[1]
  qq = _block(query_query, "query_query", qn, "[num_queries, num_queries]")
  pp = _block(private_private, "private_private", pn, "[num_private, num_private]")
  qp = _block(query_private, "query_private", qn, "[num_queries, num_private]")
  if qp.shape[1] != pn:
    raise ValueError(
      f"query_private must have shape [num_queries, num_private] = ({qn}, {pn}), got {qp.shape}"
    )
  (kernel, query, private, qq, pp, qp), _ = _prepare(
    {
      "kernel": kernel,
      "query": query,
      "private": private,
      "query_query": qq,
      "private_private": pp,
      "query_private": qp,
    },
    check_finite,
    symmetric=("kernel", "query_query", "private_private"),
  )
  eta, nu, lam = _nonneg(eta, "eta"), _nonneg(nu, "nu"), _nonneg(lam, "lam")
  qmask = _set_mask(query_mask, qn, "query_mask", "query")
  pmask = _set_mask(private_mask, pn, "private_mask", "private")
  ground = _ground(ground_mask, n)
  cap = _capacity(max_size, n)
  return _logdet_function(
    "logdetcmi", kernel, lam, ground, cap, query=query, qq=qq, qmask=qmask, private=private,
    pp=pp, pmask=pmask, qp=qp, eta=eta, nu=nu,
  )  # fmt: skip


_FACTORIES = {
  "flvmi": flvmi,
  "flqmi": flqmi,
  "gcmi": gcmi,
  "logdetmi": logdetmi,
  "flcg": flcg,
  "gccg": gccg,
  "logdetcg": logdetcg,
  "flcmi": flcmi,
  "logdetcmi": logdetcmi,
}


def make_information(
  name: str,
  kernels: InformationKernels,
  *,
  eta: float = 1.0,
  nu: float = 1.0,
  lam: float | None = None,
  query_mask: ArrayLike | None = None,
  private_mask: ArrayLike | None = None,
  ground_mask: ArrayLike | None = None,
  max_size: int | None = None,
  check_finite: bool = True,
) -> SetFunction:
  """The information measure ``name`` (one of :data:`MEASURES`) over the blocks it reads.

  Options a measure does not take are ignored. ``lam`` is the measure's own
  λ: GCMI's scale (default 0.5), GCCG's trade-off (default 1) or the LogDet
  ridge (default 1).

  Args:
    name: one of :data:`MEASURES`.
    kernels: :class:`InformationKernels` holding at least the blocks ``name`` reads.
    eta: η, the query relevance.
    nu: ν, the privacy hardness.
    lam: λ, or None for the measure's default.
    query_mask: optional ``[Q]`` bool, the query points that exist.
    private_mask: optional ``[P]`` bool, the private points that exist.
    ground_mask: optional ``[N]`` bool ground set.
    max_size: LogDet trackers' capacity (default ``N``).
    check_finite: NaN or inf in a block is an error (flags fused into the measure's
      compiled pass over its blocks); False for callers that checked already.

  Returns:
    The :class:`SetFunction`.

  Raises:
    ValueError: an unknown name, or a block the measure needs is None.

  Example:
    >>> import jax.numpy as jnp
    >>> from jaxal import submodular
    >>> x = jnp.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    >>> ks = submodular.information_kernels(x, query=x[:1])
    >>> fn = submodular.make_information("flqmi", ks, eta=1.0)
    >>> submodular.greedy(fn, 1).indices
    Array([0], dtype=int32)
  """
  checks.check_one_of(name, MEASURES, "information measure")
  if not isinstance(kernels, InformationKernels):
    raise TypeError(
      f"kernels must be an InformationKernels (from information_kernels), got "
      f"{type(kernels).__name__}"
    )
  blocks = _BLOCKS[name]
  missing = [b for b in blocks if getattr(kernels, b) is None]
  if missing:
    raise ValueError(f"{name} needs the kernel blocks {blocks}; kernels.{missing[0]} is None")
  args = [getattr(kernels, b) for b in blocks]
  opts: dict[str, Any] = {"ground_mask": ground_mask, "check_finite": check_finite}
  if "query" in blocks:
    opts["query_mask"] = query_mask
  if "private" in blocks:
    opts["private_mask"] = private_mask
  if name in ("flvmi", "flqmi", "logdetmi", "flcmi", "logdetcmi"):
    opts["eta"] = eta
  if name in ("flcg", "gccg", "logdetcg", "flcmi", "logdetcmi"):
    opts["nu"] = nu
  if name == "gcmi":
    opts["lam"] = 0.5 if lam is None else lam
  if name == "gccg" or name.startswith("logdet"):
    opts["lam"] = 1.0 if lam is None else lam
  if name.startswith("logdet"):
    opts["max_size"] = max_size
  return _FACTORIES[name](*args, **opts)
