"""Top-k selection from scores.

Returns ``[k]`` int32 indices into the pool: unique, in range, never an
already-labeled point. ``k`` is static (it fixes the output shape); one compile
serves every round of the same pool size.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from jaxal._src import checks
from jaxal._src import executables
from jaxal._src import sharding


@executables.jit(static_argnames=("k", "ps", "flagged"))
def top_k_core(scores, k, labeled_mask, ps=None, flagged=False):
  """:func:`top_k` on validated ``scores [N]``, ``labeled_mask [N]`` bool and a static ``k``.

  With ``flagged``, also the :func:`jaxal._src.checks.scores_ok` flag of ``scores``,
  computed in the same call (for :func:`jaxal._src.checks.check_finite_scores`'s ``ok=``).
  """
  ok = checks.scores_ok(scores) if flagged else None
  # lax.top_k keeps the lower index first among equal values (as DISTIL's
  # torch.sort-based selection does). Unlabeled NaN or -inf scores become the
  # lowest finite float, so that labeled points (-inf) always rank below them.
  scores = scores.astype(jnp.float32)
  lowest = jnp.finfo(jnp.float32).min
  scores = jnp.where(jnp.isnan(scores) | jnp.isneginf(scores), lowest, scores)
  scores = jnp.where(labeled_mask, -jnp.inf, scores)
  idx = sharding.top_k(scores, k, ps)[1]
  return (idx, ok) if flagged else idx


@checks.spelled_as("top_k(scores, k, *, labeled_mask=None, check_finite=True)")
def top_k(
  scores: ArrayLike, k: int, *, labeled_mask: ArrayLike | None = None, check_finite: bool = True
) -> jax.Array:
  """The ``k`` highest-scoring unlabeled points, best first.

  Ties are broken toward the lower index. Labeled points are never chosen.
  ``±inf`` scores are ordered as numbers (``-inf`` last); a NaN score is an
  error, unless ``check_finite=False``, where it ranks below every unlabeled
  real score.

  Args:
    scores: ``[num_points]`` scores, higher = pick first.
    k: how many to pick, ``1 <= k <=`` the number of unlabeled points.
    labeled_mask: optional ``[num_points]`` bool, True where already labeled.
    check_finite: check ``scores`` for NaN (flag from the compiled selection itself).

  ``scores`` (and the mask) may be sharded along N over a 1-D mesh: each device
  then keeps its own top ``k`` and only those candidates are gathered.

  Returns:
    ``[k]`` int32 indices, in descending order of score.

  Raises:
    ValueError: NaN scores (with ``check_finite``), a mask of the wrong shape,
      ``k`` larger than the unlabeled count.
    TypeError: non-float scores, a non-bool mask, a non-integer ``k``.

  Examples:
    >>> import jax.numpy as jnp
    >>> from jaxal import selection
    >>> selection.top_k(jnp.array([0.1, 0.9, 0.9, 0.5]), 2)
    Array([1, 2], dtype=int32)
  """
  original = scores
  scores = checks.check_float_array(scores, "scores", 1, "[num_points]")
  n = scores.shape[0]
  labeled_mask = checks.check_labeled_mask(labeled_mask, n)
  k = checks.check_budget(k, n, labeled_mask)
  if not checks.check_bool(check_finite, "check_finite"):
    return select_top_k(scores, k, labeled_mask)
  idx, ok = select_top_k(scores, k, labeled_mask, flagged=True)
  checks.check_finite_scores(scores, "scores", original=original, ok=ok)
  return idx


def select_top_k(
  scores: jax.Array, k: int, labeled_mask: jax.Array, *, flagged: bool = False
) -> Any:
  """:func:`top_k` on arguments a caller has validated (a strategy, once, at its entry).

  Args:
    scores: ``[num_points]`` float scores.
    k: a Python int, ``1 <= k <=`` the number of unlabeled points.
    labeled_mask: ``[num_points]`` bool.
    flagged: also return the scores' NaN flag, from the same compiled call.

  Returns:
    ``[k]`` int32 indices, in descending order of score (and the flag, with ``flagged``).
  """
  scores, labeled_mask = sharding.single_device((scores, labeled_mask))
  ps = sharding.pool_sharding((scores, labeled_mask), "scores and labeled_mask")
  return top_k_core(scores, k, labeled_mask, ps, flagged)
