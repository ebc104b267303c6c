r"""Submodular set functions as values: a :class:`SetFunction` is a NamedTuple of pure functions.

A :class:`SetFunction` over a ground set
:math:`V \subseteq \{0, \dots, N-1\}` (its ``ground_mask``) is built by one
factory per function, which validates its arguments and closes the function's
pure functions over the arrays they read. With :math:`S` the ``[N, N]``
similarity kernel (``S[j, i]``: how well candidate ``j`` represents element
``i``; the kernels built here are symmetric) and :math:`A \subseteq V` the
selected set:

=====================  ==============================================================================
facility location      :math:`f(A) = \sum_{i \in V} \max(0, \max_{j \in A} S_{ji})`
graph cut (λ)          :math:`f(A) = \sum_{j \in A} \sum_{i \in V} S_{ji} - \lambda \sum_{i, j \in A} S_{ji}`
saturated coverage (α) :math:`f(A) = \sum_{i \in V} \min(\sum_{j \in A} S_{ji}, \; \alpha \sum_{j \in V} S_{ji})`
sum redundancy         :math:`f(A) = \sum_{i, j \in V} S_{ji} - \sum_{i, j \in A} S_{ji}`
feature based          :math:`f(A) = \sum_{d} w_d \, g(\sum_{j \in A} X_{jd})`, :math:`g \in` {sqrt, log1p, inverse :math:`x/(1+x)`}
=====================  ==============================================================================

These are the five functions of DISTIL's FASS (through apricot), with
submodlib's graph-cut convention (λ on the redundancy term; apricot's default
is λ = 1). For a non-negative kernel (and non-negative features) all five are
submodular; facility location, saturated coverage, feature based and graph cut
with λ ≤ 1/2 are also monotone, so greedy is within 1 − 1/e of the optimum.
Sum redundancy is not monotone (its gains are ≤ 0): greedy then picks the
least redundant ``k``.

The kernel is dense or a :class:`~jaxal._src.submodular.kernels.SparseKernel`
(see :mod:`jaxal._src.submodular.kernels`). The maximisers
(:mod:`jaxal._src.submodular.maximizers`) only call a function's pure
functions: a new function is a new factory, nothing else changes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.tree_util import Partial
from jax.typing import ArrayLike

from jaxal._src import cached_ops
from jaxal._src import checks
from jaxal._src import executables
from jaxal._src import sharding
from jaxal._src.submodular import kernels
from jaxal._src.submodular.kernels import Kernel

FUNCTIONS = (
  "facility_location",
  "feature_based",
  "graph_cut",
  "saturated_coverage",
  "sum_redundancy",
)
CONCAVE = ("inverse", "log1p", "sqrt")

State = Any  # a pytree of arrays; one [N] (or [F]) float32 vector for the functions here


class SetFunction(NamedTuple):
  """A submodular set function over ``N`` elements: pure functions and the data they read.

  Built by the factories (:func:`facility_location`, :func:`graph_cut`, ...,
  or :func:`make` by name). The maximisers call only the fields below, so a
  new function is a new factory. ``state`` is the pytree of arrays that
  summarises a selected set ``A`` (carried through ``jax.lax`` loops); gains
  are marginal gains ``f(j | A) = f(A ∪ {j}) − f(A)``, vectorised.

  Each function field is a :class:`jax.tree_util.Partial` of a module-level
  pure function over the function's arrays: a pytree whose leaves are those
  arrays and whose static part is the function's identity. Why ``Partial``
  and not plain closures: a jitted maximiser takes ``init``, ``gains`` and
  ``update`` as ordinary pytree arguments, so new arrays of the same shapes
  reuse its compilation (a closure is not a valid ``jit`` argument, and one
  passed as static would retrace for every new kernel), while calling a field
  stays ``fn.gains(state)``.

  Sharded ground sets (a convention every factory keeps): the arrays of rank
  >= 2 whose first axis has ``N`` entries are per-candidate rows (kernel rows,
  features; row ``j`` is what candidate ``j`` covers), sharded along N; every
  other array (masks, per-element ``[N]`` vectors, weights, hyperparameters)
  is replicated, and so is the state. ``update`` fetches row ``j`` with
  :func:`jaxal._src.sharding.take` when given the pool sharding.

  Attributes:
    name: one of :data:`FUNCTIONS` (or a new function's name); for messages only.
    ground_mask: ``[N]`` bool, the ground set ``V``.
    init: ``init() -> state``, the state of ``A = ∅``.
    gains: ``gains(state, idx=None) -> [N]`` float32 gains of every element (or
      ``[m]`` for the ``m`` indices ``idx``), ignoring membership in ``A``.
    update: ``update(state, j, ps=None) -> state`` after adding element ``j``
      (a traced int32 scalar); ``ps`` the rows' pool sharding, or None.
    from_mask: ``from_mask(mask) -> state`` of the set ``mask [N]`` bool.
    value: ``value(mask) -> ()`` float32, ``f(A)`` for ``A = mask [N]`` bool.
    scale: ``[]`` float32 ``> 0``: ``gains`` and ``value`` are in units of
      ``scale`` (the true gain is ``scale * gains(...)``). The factories divide
      the kernel (or the features and weights) by their largest magnitude, so
      that no finite input overflows a row sum or a state; the maximisers,
      :func:`value` and :func:`marginal_gains` multiply back.
  """

  name: str
  ground_mask: jax.Array  # shape=[num_points], bool
  init: Callable[[], State]
  gains: Callable[..., jax.Array]
  update: Callable[..., State]
  from_mask: Callable[[jax.Array], State]
  value: Callable[[jax.Array], jax.Array]
  scale: Any = 1.0  # shape=(), float32: gains and value are in units of scale

  @property
  def num_points(self) -> int:
    """``N``, the number of elements."""
    return self.ground_mask.shape[0]


# ---------------------------------------------------------------------------
# The functions' pure functions. The state after selecting A is one vector:
#   facility location  c_i = max(0, max_{a in A} S_ai)      [N]
#   saturated coverage c_i = Σ_{a in A} S_ai                [N]
#   graph cut, sum red r_j = Σ_{a in A} (S_aj + S_ja)        [N]
#   feature based      m_d = Σ_{a in A} X_ad                [F]
# Constants (ground weights w = 1_V, row sums, caps, the diagonal) are
# computed once by the factory and closed over.


def _zeros_like(v):
  return jnp.zeros(v.shape, jnp.float32)


def _pick(idx, *vs):
  return vs if idx is None else tuple(v[idx] for v in vs)


def _fl_from_mask(kernel, mask):
  n = mask.shape[0]
  if kernels.is_sparse(kernel):
    v = jnp.where(mask[:, None], kernel.values, -jnp.inf)
    best = jax.ops.segment_max(v.ravel(), kernel.indices.ravel(), num_segments=n)
  else:
    best = jnp.max(jnp.where(mask[:, None], kernel, -jnp.inf), axis=0)
  return jnp.maximum(best, 0.0)


def _fl_gains(kernel, w, c, idx=None):
  return kernels.row_reduce(kernel, lambda s, i: w[i] * jnp.maximum(s - c[i], 0.0), idx)


def _fl_update(kernel, c, j, ps=None):
  return jnp.maximum(c, kernels.row(kernel, j, ps))


def _fl_value(kernel, w, mask):
  return jnp.sum(w * _fl_from_mask(kernel, mask))


def _sc_from_mask(kernel, mask):
  return kernels.vecmat(kernel, mask.astype(jnp.float32))


def _sc_gains(kernel, w, cap, c, idx=None):
  base = jnp.minimum(c, cap)
  return kernels.row_reduce(
    kernel, lambda s, i: w[i] * (jnp.minimum(c[i] + s, cap[i]) - base[i]), idx
  )


def _sc_update(kernel, c, j, ps=None):
  return c + kernels.row(kernel, j, ps)


def _sc_value(kernel, w, cap, mask):
  return jnp.sum(w * jnp.minimum(_sc_from_mask(kernel, mask), cap))


def _pair_from_mask(kernel, mask):
  a = mask.astype(jnp.float32)
  return kernels.vecmat(kernel, a) + kernels.matvec(kernel, a)


def _pair_update(kernel, r, j, ps=None):
  return r + kernels.row(kernel, j, ps) + kernels.col(kernel, j)


def _within(kernel, mask):
  a = mask.astype(jnp.float32)
  return jnp.sum(a * kernels.matvec(kernel, a))


def _gc_gains(modular, diag, lam, r, idx=None):
  modular, diag, r = _pick(idx, modular, diag, r)
  return modular - lam * (r + diag)


def _gc_value(kernel, modular, lam, mask):
  return jnp.sum(mask.astype(jnp.float32) * modular) - lam * _within(kernel, mask)


def _sr_gains(diag, r, idx=None):
  diag, r = _pick(idx, diag, r)
  return -(r + diag)


def _sr_value(kernel, total, mask):
  return total - _within(kernel, mask)


# The features are stored divided by c = max X (so the state m = Σ_A X / c never
# overflows); each concave g is evaluated at c * v without forming c * v where
# that could overflow. sqrt is homogeneous, so its factor sqrt(c) goes into the
# function's scale instead (c is then passed as 1).


def _sqrt(c, v):
  return jnp.sqrt(v)


def _log1p(c, v):
  return jnp.logaddexp(0.0, jnp.log(c) + jnp.log(v))  # log(1 + c v); v = 0 → 0


def _inverse(c, v):
  # x / (1 + x) - 1: the constant -1 cancels in every gain, and leaving it out keeps
  # gains of tiny magnitude exact (a difference of two small numbers, not of two ~1s).
  return -1.0 / (1.0 + c * v)  # c v = inf → 0


_CONCAVE_FN = {"inverse": _inverse, "log1p": _log1p, "sqrt": _sqrt}


def _fb_from_mask(features, mask):
  return mask.astype(jnp.float32) @ features


def _fb_gains(features, weights, g, m, idx=None):
  x = features if idx is None else features[idx]
  return (g(m[None, :] + x) - g(m)[None, :]) @ weights


def _fb_update(features, m, j, ps=None):
  return m + (features[j] if ps is None else sharding.take(features, j, ps))


def _fb_value(features, weights, g, mask):
  m = _fb_from_mask(features, mask)
  return jnp.sum(weights * (g(m) - g(jnp.zeros_like(m))))  # g(0) != 0 for the shifted inverse


# ---------------------------------------------------------------------------
# Factories.


def _ground(ground_mask, n: int) -> jax.Array:
  if ground_mask is None:
    return jax.device_put(np.ones((n,), bool))
  mask = checks.check_labeled_mask(ground_mask, n, name="ground_mask")
  if checks.is_concrete(mask) and not cached_ops.any_bool(mask):
    raise ValueError(f"ground_mask of shape {mask.shape} selects no element")
  return mask


def facility_location(
  kernel: Kernel, *, ground_mask: ArrayLike | None = None, check_finite: bool = True
) -> SetFunction:
  r"""Facility location, :math:`f(A) = \sum_{i \in V} \max(0, \max_{j \in A} S_{ji})`.

  Monotone submodular for any kernel (negative similarities count as 0).
  Gains: :math:`f(j \mid A) = \sum_{i \in V} \max(0, S_{ji} - c_i)` with
  :math:`c_i = \max(0, \max_{a \in A} S_{ai})`.

  Args:
    kernel: ``[N, N]`` similarities or a :class:`SparseKernel`.
    ground_mask: optional ``[N]`` bool ground set ``V`` (default: all).
    check_finite: NaN or inf similarities are an error (flag fused into the
      compiled pass that scales the kernel); False for callers that checked already.

  References:
    Mirchandani & Francis, Discrete Location Theory, 1990; Wei et al., 2015.
  """
  kernel, scale, n = _checked_kernel(kernel, check_finite)  # entries in [-1, 1]
  ground = _ground(ground_mask, n)
  w = cached_ops.as_float32(ground)
  return SetFunction(
    "facility_location",
    ground,
    init=Partial(_zeros_like, w),
    gains=Partial(_fl_gains, kernel, w),
    update=Partial(_fl_update, kernel),
    from_mask=Partial(_fl_from_mask, kernel),
    value=Partial(_fl_value, kernel, w),
    scale=scale,
  )


def graph_cut(
  kernel: Kernel,
  *,
  lam: float = 1.0,
  ground_mask: ArrayLike | None = None,
  check_finite: bool = True,
) -> SetFunction:
  r"""Graph cut, :math:`f(A) = \sum_{j \in A, i \in V} S_{ji} - \lambda \sum_{i, j \in A} S_{ji}`.

  Submodular for a non-negative kernel; monotone when ``lam <= 0.5``.
  ``lam = 1`` is apricot's default (used by DISTIL's FASS).

  Args:
    kernel: ``[N, N]`` similarities or a :class:`SparseKernel`.
    lam: λ in ``[0, 1]``.
    ground_mask: optional ``[N]`` bool ground set.
    check_finite: NaN or inf similarities are an error (flag fused into the
      compiled pass that scales the kernel); False for callers that checked already.

  References:
    Lin & Bilmes, A Class of Submodular Functions for Document Summarization, ACL 2011.
  """
  kernel, scale, n = _checked_kernel(kernel, check_finite)  # entries in [-1, 1]
  lam = checks.check_float(lam, "lam", low=0.0, high=1.0)
  ground = _ground(ground_mask, n)
  w = cached_ops.as_float32(ground)
  modular = kernels.matvec(kernel, w)  # Σ_{i in V} S_ji
  return SetFunction(
    "graph_cut",
    ground,
    init=Partial(_zeros_like, w),
    gains=Partial(_gc_gains, modular, kernels.diag(kernel), lam),
    update=Partial(_pair_update, kernel),
    from_mask=Partial(_pair_from_mask, kernel),
    value=Partial(_gc_value, kernel, modular, lam),
    scale=scale,
  )


def saturated_coverage(
  kernel: Kernel,
  *,
  alpha: float = 0.1,
  ground_mask: ArrayLike | None = None,
  check_finite: bool = True,
) -> SetFunction:
  r"""Saturated coverage, :math:`f(A) = \sum_{i \in V} \min(\sum_{j \in A} S_{ji}, \alpha \sum_{j \in V} S_{ji})`.

  Monotone submodular for a non-negative kernel. Each element stops counting
  once an α fraction of its total similarity is covered.

  Args:
    kernel: ``[N, N]`` similarities or a :class:`SparseKernel`.
    alpha: α in ``(0, 1]`` (apricot's default 0.1).
    ground_mask: optional ``[N]`` bool ground set.
    check_finite: NaN or inf similarities are an error (flag fused into the
      compiled pass that scales the kernel); False for callers that checked already.

  References:
    Lin & Bilmes, A Class of Submodular Functions for Document Summarization, ACL 2011.
  """
  kernel, scale, n = _checked_kernel(kernel, check_finite)  # entries in [-1, 1]
  alpha = checks.check_float(alpha, "alpha", low=0.0, high=1.0, low_open=True)
  ground = _ground(ground_mask, n)
  w = cached_ops.as_float32(ground)
  cap = alpha * kernels.vecmat(kernel, w)  # α Σ_{j in V} S_ji
  return SetFunction(
    "saturated_coverage",
    ground,
    init=Partial(_zeros_like, w),
    gains=Partial(_sc_gains, kernel, w, cap),
    update=Partial(_sc_update, kernel),
    from_mask=Partial(_sc_from_mask, kernel),
    value=Partial(_sc_value, kernel, w, cap),
    scale=scale,
  )


def sum_redundancy(
  kernel: Kernel, *, ground_mask: ArrayLike | None = None, check_finite: bool = True
) -> SetFunction:
  r"""Sum redundancy, :math:`f(A) = \sum_{i, j \in V} S_{ji} - \sum_{i, j \in A} S_{ji}`.

  Submodular (not monotone) for a non-negative kernel: greedy picks the set
  with the least total pairwise similarity. As apricot's ``SumRedundancy``
  (the "disparity-sum" idea: reward dissimilar picks).

  Args:
    kernel: ``[N, N]`` similarities or a :class:`SparseKernel`.
    ground_mask: optional ``[N]`` bool ground set.
    check_finite: NaN or inf similarities are an error (flag fused into the
      compiled pass that scales the kernel); False for callers that checked already.
  """
  kernel, scale, n = _checked_kernel(kernel, check_finite)  # entries in [-1, 1]
  ground = _ground(ground_mask, n)
  w = cached_ops.as_float32(ground)
  total = jnp.sum(w * kernels.matvec(kernel, w))  # Σ_{i, j in V} S_ji
  return SetFunction(
    "sum_redundancy",
    ground,
    init=Partial(_zeros_like, w),
    gains=Partial(_sr_gains, kernels.diag(kernel)),
    update=Partial(_pair_update, kernel),
    from_mask=Partial(_pair_from_mask, kernel),
    value=Partial(_sr_value, kernel, total),
    scale=scale,
  )


def feature_based(
  features: ArrayLike,
  *,
  concave: str = "sqrt",
  weights: ArrayLike | None = None,
  ground_mask: ArrayLike | None = None,
  check_finite: bool = True,
) -> SetFunction:
  r"""Feature based, :math:`f(A) = \sum_d w_d \, g(\sum_{j \in A} X_{jd})` with a concave ``g``.

  ``concave`` is ``"sqrt"``, ``"log1p"`` (:math:`\log(1 + x)`) or
  ``"inverse"`` (:math:`x / (1 + x) = 1 - 1/(1 + x)`). Monotone submodular for
  non-negative features and weights (for example ReLU activations).

  Args:
    features: ``[N, F]`` non-negative features.
    concave: the concave function.
    weights: optional ``[F]`` non-negative weights (default: ones).
    ground_mask: optional ``[N]`` bool ground set (only restricts candidates).
    check_finite: NaN or inf features or weights are an error (flags fused into
      the compiled pass that scales them); False for callers that checked already.
      Negative entries are an error either way.

  References:
    Wei, Iyer & Bilmes, Submodularity in Data Subset Selection and Active
    Learning, ICML 2015.
  """
  x = checks.check_float_array(features, "features", 2, "[num_points, num_features]")
  checks.check_one_of(concave, CONCAVE, "concave function")
  check_finite = checks.check_bool(check_finite, "check_finite")
  if weights is None:
    w = jnp.ones((x.shape[1],), jnp.float32)
  else:
    w = checks.check_float_array(weights, "weights", 1, "[num_features]")
    if w.shape[0] != x.shape[1]:
      raise ValueError(
        f"weights must have shape ({x.shape[1]},) to match features of shape "
        f"{x.shape}, got shape {w.shape}"
      )
  # Finiteness and sign flags come from the same compiled pass that scales each array.
  x_unit, c, x_finite, x_nonneg = _unit_max(x)
  w_unit, cw, w_finite, w_nonneg = _unit_max(w)
  if check_finite:
    checks.check_finite(x, "features", ok=x_finite)
  grow = "feature-based functions need f(A) to grow"
  checks.check_nonnegative(x, "features", purpose=f"{grow} with A", ok=x_nonneg)
  if weights is not None:
    if check_finite:
      checks.check_finite(w, "weights", ok=w_finite)
    checks.check_nonnegative(w, "weights", purpose=grow, ok=w_nonneg)
  x, w = x_unit, w_unit
  if concave == "sqrt":
    scale, c = cw * jnp.sqrt(c), jnp.float32(1.0)
  else:
    scale = cw
  g = Partial(_CONCAVE_FN[concave], c)
  return SetFunction(
    "feature_based",
    _ground(ground_mask, x.shape[0]),
    init=Partial(_zeros_like, w),
    gains=Partial(_fb_gains, x, w, g),
    update=Partial(_fb_update, x),
    from_mask=Partial(_fb_from_mask, x),
    value=Partial(_fb_value, x, w, g),
    scale=scale,
  )


@executables.jit
def _unit_max_jit(t):
  finite, nonneg = checks.all_finite(t)[0], checks.nonneg_ok(t)
  t = t.astype(jnp.float32)
  m = jnp.max(jnp.abs(t)) if t.size else jnp.float32(0.0)
  m = jnp.where(m > 0, m, 1.0).astype(jnp.float32)
  return t / m, m, finite, nonneg


def _unit_max(t):
  """``(t / max|t|, max|t|, finite, nonneg)`` in float32 (1 for an all-zero ``t``).

  The entries of ``t / max|t|`` lie in ``[-1, 1]``; ``finite`` and ``nonneg`` are the
  flags of :func:`jaxal._src.checks.all_finite` and :func:`jaxal._src.checks.nonneg_ok`,
  from the same compiled pass (for their checks' ``ok=``).
  """
  return _unit_max_jit(jnp.asarray(t))


def _checked_kernel(kernel, check_finite):
  """``(kernel / max|kernel|, max|kernel|, N)``, the kernel's shapes and values checked.

  Finiteness (unless ``check_finite`` is False) with a flag from the compiled pass that
  scales the kernel: it is read once.
  """
  check_finite = checks.check_bool(check_finite, "check_finite")
  kernel, n = kernels.check_kernel(kernel)
  if kernels.is_sparse(kernel):
    v, m, ok, _ = _unit_max(kernel.values)
    unit = kernel._replace(values=v)
  else:
    unit, m, ok, _ = _unit_max(kernel)
  if check_finite:
    kernels.check_kernel_finite(kernel, ok)
  return unit, m, n


def make(
  name: str,
  *,
  kernel: Kernel | None = None,
  features: ArrayLike | None = None,
  ground_mask: ArrayLike | None = None,
  lam: float = 1.0,
  alpha: float = 0.1,
  concave: str = "sqrt",
  check_finite: bool = True,
) -> SetFunction:
  """The function registered as ``name`` (one of :data:`FUNCTIONS`), from its factory.

  Kernel functions take ``kernel``; ``"feature_based"`` takes ``features``.
  Options a function does not use are ignored.

  Args:
    name: one of :data:`FUNCTIONS`.
    kernel: ``[N, N]`` similarities or a :class:`SparseKernel` (kernel functions).
    features: ``[N, F]`` non-negative features (feature based).
    ground_mask: optional ``[N]`` bool ground set.
    lam: graph cut's λ.
    alpha: saturated coverage's α.
    concave: feature based's concave function, one of :data:`CONCAVE`.
    check_finite: NaN or inf in the kernel or features is an error (flags fused
      into the factory's compiled pass); False for callers that checked already.

  Returns:
    The :class:`SetFunction`.
  """
  checks.check_one_of(name, FUNCTIONS, "submodular function")
  if name == "feature_based":
    if features is None:
      raise ValueError("feature_based needs features=[num_points, num_features]")
    return feature_based(
      features, concave=concave, ground_mask=ground_mask, check_finite=check_finite
    )
  if kernel is None:
    raise ValueError(f"{name} needs kernel=[num_points, num_points] (or a SparseKernel)")
  options = {"graph_cut": {"lam": lam}, "saturated_coverage": {"alpha": alpha}}.get(name, {})
  return _KERNEL_FACTORIES[name](
    kernel, ground_mask=ground_mask, check_finite=check_finite, **options
  )


_KERNEL_FACTORIES = {
  "facility_location": facility_location,
  "graph_cut": graph_cut,
  "saturated_coverage": saturated_coverage,
  "sum_redundancy": sum_redundancy,
}
