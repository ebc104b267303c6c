r"""Greedy, lazy greedy and stochastic greedy maximisation of any :class:`SetFunction`.

Maximisers (:func:`greedy`, :func:`lazy_greedy`, :func:`stochastic_greedy`)
return ``k`` elements of ``candidates`` (default: the ground set) in the order
picked, with their marginal gains, from one ``jax.lax`` loop each. They call
only a function's ``init`` / ``gains`` / ``update`` (and :func:`value` /
:func:`marginal_gains` its ``value`` / ``from_mask``): nothing here knows which
function it maximises.

Sharded ground sets: a ground set sharded along N over a 1-D device mesh means
the function's per-candidate rows are sharded: the kernel's *rows* (``[N, N]``
with ``PartitionSpec(axis, None)``, or a ``SparseKernel`` whose ``values`` and
``indices`` are sharded along N), or the features ``[N, F]``. Row ``j`` is what
candidate ``j`` covers, so every device computes the gains of the candidates
it holds against a replicated state, and each pick moves one row (``N``
floats; ``num_neighbors`` for a sparse kernel): never the kernel.
:func:`greedy` picks the same indices as on one device. :func:`lazy_greedy`
and :func:`stochastic_greedy` are not sharding-aware (they run under GSPMD,
which may gather).
"""

from __future__ import annotations

import math
from typing import Any
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from jaxal._src import cached_ops
from jaxal._src import checks
from jaxal._src import executables
from jaxal._src import sharding
from jaxal._src.submodular.functions import SetFunction

OPTIMIZERS = ("greedy", "lazy", "stochastic")


class Selection(NamedTuple):
  """What a maximiser returns.

  Attributes:
    indices: ``[k]`` int32, the selected points in the order picked.
    gains: ``[k]`` float32, the marginal gain of each pick when it was added.
    evaluations: ``[]`` int32, how many single-element marginal gains were computed.
  """

  indices: jax.Array  # shape=[k], int32: in the order picked
  gains: jax.Array  # shape=[k], float32: marginal gain of each pick when it was added
  evaluations: jax.Array  # shape=(), int32: single-element marginal gains computed


def _check_fn(fn: Any) -> SetFunction:
  if not isinstance(fn, SetFunction):
    raise TypeError(
      f"fn must be a SetFunction (from jaxal.submodular.facility_location, ...), "
      f"got {type(fn).__name__}"
    )
  return fn


def place(fn: SetFunction, ps: sharding.PoolSharding | None) -> SetFunction:
  """``fn`` with its arrays laid out for a ground set sharded as ``ps``.

  By the :class:`SetFunction` convention, arrays of rank >= 2 with ``N`` rows
  (kernel rows, features) are sharded along N and every other array is
  replicated. An array the function's fields share is placed once.

  Args:
    fn: a :class:`SetFunction`.
    ps: the pool sharding, or None (``fn`` is returned as it is).

  Returns:
    The same function over the placed arrays.
  """
  if ps is None:
    return fn
  n = fn.num_points
  placed: dict[int, jax.Array] = {}

  def put(x):
    if not hasattr(x, "shape"):
      return x  # a Python hyperparameter: a replicated scalar under jit
    if id(x) not in placed:
      rows = x.ndim >= 2 and x.shape[0] == n
      placed[id(x)] = sharding.place(x, ps) if rows else sharding.replicate(x, ps)
    return placed[id(x)]

  return fn._replace(**{f: jax.tree.map(put, getattr(fn, f)) for f in fn._fields if f != "name"})


# ---------------------------------------------------------------------------
# Evaluation.


def _as_mask(fn: SetFunction, selected, name: str = "selected") -> jax.Array:
  n = fn.num_points
  if not hasattr(selected, "shape"):
    selected = jnp.asarray(selected)
  if getattr(selected, "dtype", None) == jnp.bool_:
    return checks.check_labeled_mask(selected, n, name=name)
  idx = checks.as_array(selected)
  if idx.ndim != 1 or not jnp.issubdtype(idx.dtype, jnp.integer):
    raise ValueError(
      f"{name} must be a [{n}] bool mask or a 1-D array of int indices, got "
      f"shape {idx.shape} and dtype {idx.dtype}"
    )
  if checks.is_concrete(idx) and idx.size:
    host = np.asarray(idx)
    if host.min() < 0 or host.max() >= n:
      raise ValueError(f"{name} indices must lie in [0, {n})")
  return cached_ops.set_true(np.zeros(n, bool), idx)


@executables.jit
def _value(value_fn, scale, mask):
  return value_fn(mask) * scale


def _finite_gains(g: jax.Array) -> jax.Array:
  """NaN or -inf gains (never from finite input; a user function's) rank below every real gain.

  ``-inf`` is kept for the elements that may not be picked, so the picks stay distinct.
  """
  return jnp.where(jnp.isnan(g) | jnp.isneginf(g), jnp.finfo(jnp.float32).min, g)


@executables.jit
def _times(gains: jax.Array, scale: Any) -> jax.Array:
  return gains * jnp.asarray(scale, jnp.float32)


def _in_units(sel: Selection, fn: SetFunction) -> Selection:
  """The gains of ``sel`` multiplied back by ``fn.scale`` (see :class:`SetFunction`)."""
  return sel._replace(gains=_times(sel.gains, fn.scale))


def value(fn: SetFunction, selected: ArrayLike) -> jax.Array:
  """``f(A)`` straight from the definition.

  Args:
    fn: a :class:`SetFunction`.
    selected: the set ``A``: a ``[N]`` bool mask or a 1-D array of indices.

  Returns:
    ``[]`` float32, the value ``f(A)``.
  """
  fn = _check_fn(fn)
  return _value(fn.value, fn.scale, _as_mask(fn, selected))


@executables.jit
def _marginal_gains(from_mask, gains, scale, mask):
  return jnp.where(mask, 0.0, gains(from_mask(mask)) * scale)


def marginal_gains(fn: SetFunction, selected: ArrayLike) -> jax.Array:
  """Every marginal gain ``f(j | A) = f(A ∪ {j}) − f(A)`` at once, vectorised.

  Args:
    fn: a :class:`SetFunction`.
    selected: the set ``A``: a ``[N]`` bool mask or a 1-D array of indices.

  Returns:
    ``[N]`` float32; 0 for ``j`` in ``A``.
  """
  fn = _check_fn(fn)
  return _marginal_gains(fn.from_mask, fn.gains, fn.scale, _as_mask(fn, selected))


# ---------------------------------------------------------------------------
# Maximisers.


@executables.jit(static_argnames=("k", "ps"))
def greedy_core(
  init: Any,
  gains: Any,
  update: Any,
  candidates: jax.Array,
  k: int,
  ps: sharding.PoolSharding | None = None,
) -> Selection:
  """The jitted loop of :func:`greedy` (arguments checked and placed).

  Args:
    init, gains, update: the :class:`SetFunction`'s fields (pytrees, traced).
    candidates: ``[N]`` bool, replicated.
    k: how many to pick (static).
    ps: the ground set's sharding along N (kernel rows or features), or None.

  Returns:
    :class:`Selection`.
  """

  def body(t, s):
    state, avail, out, picked = s
    g = jnp.where(avail, _finite_gains(gains(state)), -jnp.inf)
    j = jnp.argmax(g).astype(jnp.int32)  # ties: the lower index
    gj = g[j] if ps is None else sharding.take(g, j, ps)
    return (update(state, j, ps), avail.at[j].set(False), out.at[t].set(j), picked.at[t].set(gj))

  carry = (init(), candidates, jnp.zeros((k,), jnp.int32), jnp.zeros((k,), jnp.float32))
  _, _, out, picked = jax.lax.fori_loop(0, k, body, carry)
  evaluations = jnp.sum(candidates, dtype=jnp.int32) * k - k * (k - 1) // 2
  return Selection(out, picked, evaluations)


@executables.jit(static_argnames=("k", "batch_size"))
def _lazy_greedy(init, gains_fn, update, candidates, k, batch_size):
  state0 = init()
  bound = jnp.where(candidates, _finite_gains(gains_fn(state0)), -jnp.inf)  # exact at A = ∅
  n = candidates.shape[0]
  batch = min(batch_size, n)
  # Each refresh makes `batch` stale bounds fresh, so after this many every
  # bound is fresh: the inner loop can never run longer, whatever the gains.
  max_refresh = -(-n // batch) + 1

  def step(t, s):
    state, bound, fresh, out, gains, evals = s

    def stale(c):
      bound, fresh, _, it = c
      return ~fresh[jnp.argmax(bound)] & (it < max_refresh)

    def refresh(c):
      # Re-evaluate the `batch` largest stale bounds (the largest of all is among
      # them, since the top bound is stale): one row read each, vectorised.
      bound, fresh, evals, it = c
      stale_bound = jnp.where(fresh, -jnp.inf, bound)
      top, idx = jax.lax.top_k(stale_bound, batch)
      ok = ~fresh[idx] & ~jnp.isneginf(top)
      g = _finite_gains(gains_fn(state, idx))
      bound = bound.at[idx].set(jnp.where(ok, g, bound[idx]))
      fresh = fresh.at[idx].set(fresh[idx] | ok)
      return bound, fresh, evals + jnp.sum(ok, dtype=jnp.int32), it + 1

    bound, fresh, evals, _ = jax.lax.while_loop(stale, refresh, (bound, fresh, evals, jnp.int32(0)))
    j = jnp.argmax(bound).astype(jnp.int32)  # fresh, so its bound is its gain; ties: lower index
    out, gains = out.at[t].set(j), gains.at[t].set(bound[j])
    bound = bound.at[j].set(-jnp.inf)
    # Every bound is now stale; unavailable entries stay "fresh" at -inf.
    fresh = jnp.isneginf(bound)
    return update(state, j), bound, fresh, out, gains, evals

  fresh0 = jnp.ones_like(candidates)
  init = (
    state0,
    bound,
    fresh0,
    jnp.zeros((k,), jnp.int32),
    jnp.zeros((k,), jnp.float32),
    jnp.sum(candidates, dtype=jnp.int32),
  )
  _, _, _, out, gains, evals = jax.lax.fori_loop(0, k, step, init)
  return Selection(out, gains, evals)


@executables.jit(static_argnames=("k", "sample_size"))
def _stochastic_greedy(key, init, gains_fn, update, candidates, k, sample_size):

  def body(t, s):
    state, avail, out, gains = s
    gumbel = jax.random.gumbel(jax.random.fold_in(key, t), avail.shape, jnp.float32)
    sample = jax.lax.top_k(jnp.where(avail, gumbel, -jnp.inf), sample_size)[1]
    g = jnp.where(avail[sample], _finite_gains(gains_fn(state, sample)), -jnp.inf)
    i = jnp.argmax(g)
    j = sample[i].astype(jnp.int32)
    return update(state, j), avail.at[j].set(False), out.at[t].set(j), gains.at[t].set(g[i])

  carry = (init(), candidates, jnp.zeros((k,), jnp.int32), jnp.zeros((k,), jnp.float32))
  _, _, out, gains = jax.lax.fori_loop(0, k, body, carry)
  return Selection(out, gains, jnp.int32(k * sample_size))


def _check_candidates(fn: SetFunction, k, candidates) -> tuple[jax.Array, int]:
  """The ``[N]`` bool elements that may be picked, and ``k`` (no more than there are)."""
  n = fn.num_points
  if candidates is None:
    cand, which = fn.ground_mask, "ground_mask"
  else:
    cand = checks.check_labeled_mask(candidates, n, name="candidates") & fn.ground_mask
    which = "candidates & ground_mask"
  k = checks.check_budget(k, n)
  if checks.is_concrete(cand):
    m = cached_ops.count_int(cand)  # a device reduction: cand may span hosts
    if k > m:
      raise ValueError(
        f"k={k} is larger than the {m} candidates ({which} selects {m} of the {n} points)"
      )
  return cand, k


def greedy(fn: SetFunction, k: int, *, candidates: ArrayLike | None = None) -> Selection:
  """Greedy maximisation under ``|A| <= k``: each step adds the element of largest gain.

  All ``N`` marginal gains are computed at once (vectorised) at every step, in
  a ``jax.lax.fori_loop``: ``O(k * N²)`` work for a dense kernel, ``O(k * N *
  num_neighbors)`` for a sparse one, ``O(k * N * F)`` for feature based. Ties
  go to the lower index. Exactly ``k`` elements are picked, even when gains
  turn negative (non-monotone functions).

  Args:
    fn: a :class:`SetFunction`.
    k: how many to pick, ``1 <= k <=`` the number of candidates.
    candidates: optional ``[N]`` bool, the elements that may be picked
      (intersected with the ground set).

  Returns:
    :class:`Selection`: ``indices [k]`` int32 in the order picked, their gains.

  Examples:
    >>> import jax.numpy as jnp
    >>> from jaxal import submodular
    >>> x = jnp.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    >>> fn = submodular.facility_location(submodular.similarity_kernel(x))
    >>> submodular.greedy(fn, 2).indices  # one point from each direction
    Array([1, 2], dtype=int32)

  References:
    Nemhauser, Wolsey & Fisher, An analysis of approximations for maximizing
    submodular set functions, 1978.
  """
  fn = _check_fn(fn)
  cand, k = _check_candidates(fn, k, candidates)
  ps = sharding.pool_sharding(
    (fn, cand), "fn (kernel rows or features), ground_mask and candidates"
  )
  fn, cand = place(fn, ps), sharding.replicate(cand, ps)
  return _in_units(greedy_core(fn.init, fn.gains, fn.update, cand, k=k, ps=ps), fn)


def lazy_greedy(
  fn: SetFunction, k: int, *, candidates: ArrayLike | None = None, batch_size: int = 32
) -> Selection:
  """Lazy (accelerated) greedy: the same picks as :func:`greedy`, far fewer gain evaluations.

  Keeps a priority array of upper bounds on every candidate's gain (by
  submodularity a gain only shrinks as ``A`` grows; at ``A = ∅`` the bounds
  are the exact singleton gains). Each step re-evaluates the largest stale
  bounds until the largest bound of all is fresh (evaluated at this step),
  then takes that candidate; ties go to the lower index, as in
  :func:`greedy`, so the picks are identical (up to float32 rounding of gains
  that agree to ~1e-7).

  ``batch_size`` stale bounds are re-evaluated per inner iteration (the
  ``batch_size`` largest, found with ``lax.top_k``): ``batch_size=1`` is
  Minoux's algorithm exactly, one evaluation per iteration; a larger batch
  may evaluate a few candidates that the one-at-a-time algorithm would have
  skipped, but runs far fewer sequential iterations.

  How the cost differs from greedy: greedy computes all ``N`` gains per step
  in one vectorised pass over the whole kernel (``O(N²)`` per step, dense).
  Lazy greedy reads only the kernel rows it re-evaluates (``O(N)`` each dense,
  ``O(num_neighbors)`` sparse) plus an ``O(N)`` top-k over the bounds per inner
  iteration, inside a ``jax.lax.while_loop`` nested in the ``fori_loop`` over
  picks. It wins when a step needs far fewer than ~``N`` re-evaluations (the
  usual case, and always for large ``N`` or sparse kernels); when many gains
  are nearly tied, or on an accelerator where greedy's one wide pass is cheap
  and the sequential inner loop is latency-bound, greedy can be faster.
  ``Selection.evaluations`` counts the single-element evaluations (``N`` for
  the first step, where the bounds are computed exactly).

  Args:
    fn: a :class:`SetFunction`.
    k: how many to pick.
    candidates: optional ``[N]`` bool, the elements that may be picked.
    batch_size: stale bounds re-evaluated per inner iteration, ``>= 1``.

  Returns:
    :class:`Selection`, with the same indices and gains as :func:`greedy`.

  References:
    Minoux, Accelerated greedy algorithms for maximizing submodular set
    functions, 1978.
  """
  fn = _check_fn(fn)
  cand, k = _check_candidates(fn, k, candidates)
  batch_size = checks.check_positive_int(batch_size, "batch_size")
  sel = _lazy_greedy(fn.init, fn.gains, fn.update, cand, k=k, batch_size=batch_size)
  return _in_units(sel, fn)


def stochastic_greedy(
  key: jax.Array,
  fn: SetFunction,
  k: int,
  *,
  epsilon: float = 0.01,
  candidates: ArrayLike | None = None,
) -> Selection:
  r"""Stochastic greedy: each step takes the best of a random sample of candidates.

  The sample holds :math:`s = \lceil (n / k) \log(1/\epsilon) \rceil` distinct
  remaining candidates (``n`` the number of candidates, capped at ``n``),
  drawn with ``jax.random.fold_in(key, step)`` (Gumbel top-s). In expectation
  the result is within :math:`1 - 1/e - \epsilon` of the optimum for monotone
  submodular functions, with ``O(n log(1/ε))`` gain evaluations in all
  instead of ``O(n k)``: for a dense kernel each step reads only ``s``
  columns.

  Args:
    key: a ``jax.random.key``.
    fn: a :class:`SetFunction`.
    k: how many to pick.
    epsilon: ε in ``(0, 1)``.
    candidates: optional ``[N]`` bool, the elements that may be picked.

  Returns:
    :class:`Selection`.

  References:
    Mirzasoleiman et al., Lazier Than Lazy Greedy, AAAI 2015.
  """
  checks.check_key(key)
  fn = _check_fn(fn)
  eps = checks.check_float(epsilon, "epsilon", low=0.0, high=1.0, low_open=True, high_open=True)
  cand, k = _check_candidates(fn, k, candidates)
  n = cached_ops.count_int(cand) if checks.is_concrete(cand) else fn.num_points
  sample_size = max(1, min(n, math.ceil(n / k * math.log(1.0 / eps))))
  sel = _stochastic_greedy(key, fn.init, fn.gains, fn.update, cand, k=k, sample_size=sample_size)
  return _in_units(sel, fn)


def maximize(
  fn: SetFunction,
  k: int,
  *,
  optimizer: str = "greedy",
  key: jax.Array | None = None,
  epsilon: float = 0.01,
  candidates: ArrayLike | None = None,
) -> Selection:
  """Dispatch to :func:`greedy`, :func:`lazy_greedy` or :func:`stochastic_greedy` by name.

  Args:
    fn: a :class:`SetFunction`.
    k: how many to pick.
    optimizer: one of :data:`OPTIMIZERS`.
    key: a ``jax.random.key`` (``optimizer="stochastic"`` only).
    epsilon: stochastic greedy's ε.
    candidates: optional ``[N]`` bool, the elements that may be picked.

  Returns:
    :class:`Selection`.
  """
  checks.check_one_of(optimizer, OPTIMIZERS, "optimizer")
  if optimizer == "greedy":
    return greedy(fn, k, candidates=candidates)
  if optimizer == "lazy":
    return lazy_greedy(fn, k, candidates=candidates)
  if key is None:
    raise ValueError("optimizer='stochastic' needs key=jax.random.key(seed)")
  return stochastic_greedy(key, fn, k, epsilon=epsilon, candidates=candidates)
