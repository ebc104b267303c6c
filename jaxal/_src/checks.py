"""Argument validation shared by every public entry point.

Shape and dtype checks run in Python at trace time and never touch array values,
so they are free inside ``jax.jit``. Value checks (finiteness, budget against the
unlabeled count) need concrete arrays: they run only when the argument is not a
tracer, which is the case at the strategy and loop level.
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Callable
from typing import Any
from typing import TypeVar

import jax
import jax.numpy as jnp
import numpy as np

from jaxal._src import cached_ops
from jaxal._src import executables

F = TypeVar("F", bound=Callable[..., Any])


def is_concrete(x: Any) -> bool:
  """True when ``x`` holds values we may inspect (not a tracer)."""
  return not isinstance(x, jax.core.Tracer)


def as_array(x: Any) -> jax.Array:
  """``jnp.asarray(x)``, with a NumPy array or scalar placed on the default device instead:
  the same array, and no program (``jnp.asarray`` of a NumPy array compiles one per shape
  and dtype, a few tens of milliseconds each in a fresh process)."""
  if isinstance(x, (np.ndarray, np.generic)) and not isinstance(x, np.ma.MaskedArray):
    return jax.device_put(x)
  return jnp.asarray(x)


def shape_of(x: Any) -> tuple[int, ...]:
  return tuple(getattr(x, "shape", np.shape(x)))


def describe(x: Any) -> str:
  """``x`` as a message shows it: arrays by dtype and shape, scalars by repr."""
  if hasattr(x, "shape") and hasattr(x, "dtype") and getattr(x, "ndim", 0) > 0:
    return f"{type(x).__name__} of dtype {x.dtype} and shape {tuple(x.shape)}"
  return repr(x)


def _typed(x: Any) -> str:
  """:func:`describe` plus the Python type for scalars (``1.5 of type float``)."""
  if hasattr(x, "shape") and hasattr(x, "dtype") and getattr(x, "ndim", 0) > 0:
    return describe(x)
  if isinstance(x, (np.integer, np.floating)):
    return f"{x.item()!r} of type numpy.{type(x).__name__}"
  return f"{x!r} of type {type(x).__name__}"


def as_index(i: Any) -> int | tuple[int, ...]:
  """An index (a NumPy or JAX integer, or a tuple of them) as Python ints, never wrapped.

  ``np.uint64(2**64 - 1)`` shows as ``18446744073709551615``, not as ``-1``.
  """
  if isinstance(i, (tuple, list, np.ndarray)) and np.ndim(i) > 0:
    return tuple(int(np.asarray(v).item()) for v in i)
  return int(np.asarray(i).item())


def _is_int(value: Any) -> bool:
  return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _is_real(value: Any) -> bool:
  return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(
    value, (bool, np.bool_)
  )


def check_int(
  value: Any, name: str, *, low: int | None = None, high: int | None = None, what: str = ""
) -> int:
  """A Python or NumPy integer (not a bool) in ``[low, high]``; returns a Python int.

  Args:
    value: the argument as the caller passed it.
    name: the argument's name, as the message shows it.
    low: the smallest value allowed (None: no bound).
    high: the largest value allowed (None: no bound).
    what: what the number means, appended to the message (``"the pool size"``).

  Returns:
    ``int(value)``.

  Raises:
    TypeError: ``value`` is not an integer (a float, a bool, an array).
    ValueError: ``value`` lies outside ``[low, high]``.
  """
  kind = {1: "a positive int", 0: "a non-negative int"}.get(low, "an int")
  bounds = [] if low in (None, 0, 1) else [f">= {low}"]
  if high is not None:
    bounds.append(f"<= {high}")
  want = " ".join([kind, " and ".join(bounds)]).rstrip() + (f" ({what})" if what else "")
  if not _is_int(value):
    raise TypeError(f"{name} must be {want}, got {_typed(value)}")
  value = int(value)
  if (low is not None and value < low) or (high is not None and value > high):
    raise ValueError(f"{name} must be {want}, got {value}")
  return value


def check_positive_int(value: Any, name: str, *, high: int | None = None, what: str = "") -> int:
  """:func:`check_int` with ``low=1``."""
  return check_int(value, name, low=1, high=high, what=what)


def check_nonnegative_int(value: Any, name: str, *, high: int | None = None, what: str = "") -> int:
  """:func:`check_int` with ``low=0``."""
  return check_int(value, name, low=0, high=high, what=what)


def range_text(
  low: float | None, high: float | None, *, low_open: bool = False, high_open: bool = False
) -> str:
  """How every message states a range: ``in (0, 1)``, ``in [0, 1]``, ``> 0``, ``<= 1`` or ``""``."""

  num = str  # as check_float has always written them: [0.0, 1.0]

  if low is not None and high is not None:
    return f"in {'(' if low_open else '['}{num(low)}, {num(high)}{')' if high_open else ']'}"
  if low is not None:
    return f"{'>' if low_open else '>='} {num(low)}"
  if high is not None:
    return f"{'<' if high_open else '<='} {num(high)}"
  return ""


def check_float(
  value: Any,
  name: str,
  *,
  low: float | None = None,
  high: float | None = None,
  low_open: bool = False,
  high_open: bool = False,
  allow_inf: bool = False,
) -> float:
  """A real Python or NumPy scalar (not a bool) in a range; returns a Python float.

  The range is written ``[low, high]`` with ``low_open`` / ``high_open`` making
  either end open. NaN is always refused; ``inf`` only with ``allow_inf`` (and
  then still subject to the bounds).

  Args:
    value: the argument as the caller passed it.
    name: the argument's name, as the message shows it.
    low: the lower bound (None: no bound).
    high: the upper bound (None: no bound).
    low_open: the lower bound itself is excluded.
    high_open: the upper bound itself is excluded.
    allow_inf: ``±inf`` are accepted (within the bounds).

  Returns:
    ``float(value)``.

  Raises:
    TypeError: ``value`` is not a real scalar.
    ValueError: NaN, a disallowed inf, or outside the range.
  """
  span = range_text(low, high, low_open=low_open, high_open=high_open)
  span = f" {span}" if span else ""
  want = f"a {'' if allow_inf else 'finite '}number{span}"
  if not _is_real(value):
    raise TypeError(f"{name} must be {want}, got {_typed(value)}")
  value = float(value)
  ok = not math.isnan(value) and (allow_inf or math.isfinite(value))
  if low is not None:
    ok = ok and (value > low if low_open else value >= low)
  if high is not None:
    ok = ok and (value < high if high_open else value <= high)
  if not ok:
    raise ValueError(f"{name} must be {want}, got {value!r}")
  return value


def check_bool(value: Any, name: str) -> bool:
  """A Python or NumPy bool; returns a Python bool."""
  if not isinstance(value, (bool, np.bool_)):
    raise TypeError(f"{name} must be True or False, got {_typed(value)}")
  return bool(value)


def is_key(key: Any) -> bool:
  """True for a typed key from ``jax.random.key`` (any shape)."""
  dtype = getattr(key, "dtype", None)
  return dtype is not None and jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key)


def spelled_as(usage: str) -> Callable[[F], F]:
  """Decorator: a call in an old spelling fails naming the current one.

  The wrapped function is called unchanged when its arguments bind to its
  signature and, where it has a ``key`` parameter, that parameter holds a typed
  key (or None where None is its default). Otherwise a ``TypeError`` names the
  spelling ``usage`` (keyword-only ``labeled_mask``, key first), instead of
  Python's bare arity error or a confusing failure further in.

  Args:
    usage: the call as the documentation writes it, e.g.
      ``"top_k(scores, k, *, labeled_mask=None)"``.
  """

  def decorate(fn: F) -> F:
    sig = inspect.signature(fn)
    has_key = "key" in sig.parameters
    key_optional = has_key and sig.parameters["key"].default is None

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
      try:
        bound = sig.bind(*args, **kwargs)
      except TypeError as e:
        raise TypeError(f"{fn.__name__}(): {e}; the call is {usage}") from None
      if has_key and "key" in bound.arguments:
        key = bound.arguments["key"]
        if not is_key(key) and not (key is None and key_optional):
          raise TypeError(
            f"{fn.__name__} takes a jax.random.key as its first argument, got "
            f"{_typed(key)}; the call is {usage}"
          )
      return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]

  return decorate


def check_key(key: Any, name: str = "key") -> jax.Array:
  """Accepts only new-style typed keys from ``jax.random.key``, of shape ``()``."""
  dtype = getattr(key, "dtype", None)
  if not is_key(key):
    raise TypeError(
      f"{name} must be a typed key from jax.random.key(seed), got "
      f"{type(key).__name__} with dtype {dtype} and shape {shape_of(key)}. "
      "Legacy uint32 keys (jax.random.PRNGKey) and integer seeds are not "
      "accepted: wrap them with jax.random.wrap_key_data or use jax.random.key."
    )
  if key.shape != ():
    raise ValueError(f"{name} must be a single key of shape (), got shape {key.shape}")
  return key


def check_float_array(x: Any, name: str, ndim: int | tuple[int, ...], dims: str) -> jax.Array:
  """Checks rank and floating dtype; returns ``x`` as a JAX array."""
  if not hasattr(x, "shape") and not isinstance(x, (list, tuple)):
    raise TypeError(f"{name} must be an array of shape {dims}, got {type(x).__name__}")
  if isinstance(x, (list, tuple)):
    x = as_rectangular(x, name, dims)
  # A float64 entry beyond float32's range becomes inf on the device (x64 off); the value
  # checks say so with the original magnitude, so NumPy's cast warning adds nothing.
  with np.errstate(over="ignore"):
    x = as_array(x)
  ndims = (ndim,) if isinstance(ndim, int) else ndim
  if x.ndim not in ndims:
    raise ValueError(f"{name} must have shape {dims}, got shape {x.shape} (rank {x.ndim})")
  if not jnp.issubdtype(x.dtype, jnp.floating):
    raise TypeError(f"{name} must be a floating-point array of shape {dims}, got dtype {x.dtype}")
  return x


def as_rectangular(x: list | tuple, name: str, dims: str) -> np.ndarray:
  """A nested list or tuple of numbers as a NumPy array; a ragged or non-numeric one is an error.

  Raises:
    ValueError: rows of different lengths (a ragged list).
    TypeError: entries that are not numbers.
  """
  try:
    arr = np.asarray(x)
  except ValueError as e:  # NumPy refuses inhomogeneous nesting
    raise ValueError(
      f"{name} must be a rectangular array of shape {dims}; got a ragged {type(x).__name__} "
      f"(rows of different lengths: {e})"
    ) from None
  if arr.dtype == object or not (
    np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.bool_)
  ):
    raise TypeError(
      f"{name} must be an array of numbers of shape {dims}; got a {type(x).__name__} whose "
      f"entries NumPy reads as dtype {arr.dtype}"
    )
  return arr


def check_logits(logits: Any, name: str = "logits") -> jax.Array:
  """``[num_points, num_classes]`` floating logits or log-probabilities."""
  x = check_float_array(logits, name, 2, "[num_points, num_classes]")
  if x.shape[-1] < 2:
    raise ValueError(f"{name} must have at least 2 classes, got shape {x.shape}")
  return x


def check_mc_logits(logits: Any, name: str = "mc_logits", min_samples: int = 1) -> jax.Array:
  """``[num_samples, num_points, num_classes]`` MC-dropout logits or log-probs."""
  x = check_float_array(logits, name, 3, "[num_samples, num_points, num_classes]")
  if x.shape[-1] < 2:
    raise ValueError(f"{name} must have at least 2 classes, got shape {x.shape}")
  if x.shape[0] < min_samples:
    raise ValueError(
      f"{name} must hold at least {min_samples} Monte Carlo samples along axis 0 "
      f"for this score, got shape {x.shape}"
    )
  return x


def logits_ok(x: jax.Array) -> jax.Array:
  """Traceable: True when ``x`` has no NaN or +inf and every row a finite entry.

  For fusing the value check of :func:`check_finite_logits` into a jitted
  computation over the same logits: the caller returns this flag beside its
  result and passes it to :func:`check_finite_logits` (``ok=``).
  """
  x = x.astype(jnp.float32)
  no_bad = ~jnp.any(jnp.isnan(x) | (x == jnp.inf))
  return no_bad & jnp.all(jnp.any(jnp.isfinite(x), axis=-1))


_logits_ok = executables.jit(logits_ok)


def _float64_note(original: Any) -> str:
  """Why a finite float64 input may hold inf once on the device (x64 off), or ``""``."""
  dtype = getattr(original, "dtype", None)
  if dtype is None or np.dtype(dtype).itemsize <= 4 or jax.config.jax_enable_x64:
    return ""
  big = float(np.nanmax(np.abs(np.where(np.isfinite(original), original, 0.0)), initial=0.0))
  if big <= float(np.finfo(np.float32).max):
    return ""
  return (
    f"; the input is {np.dtype(dtype).name} with entries up to {big:.3g}, beyond float32's "
    f"{float(np.finfo(np.float32).max):.3g}, which become inf with jax_enable_x64 off: "
    "rescale them or enable x64"
  )


def _first_row(where: np.ndarray, row_axis: int = 0) -> str:
  idx = tuple(int(i) for i in where)
  if len(idx) <= 1:
    return f"first at index {idx}"
  return f"first at row {idx[row_axis]}, index {idx}"


def check_finite_logits(
  logits: Any, name: str = "logits", *, ok: Any = None, original: Any = None
) -> None:
  """Value check: NaN or +inf anywhere, or a row with no finite entry, is an error.

  ``-inf`` is allowed: it is how masked classes are written. Skipped under a
  trace (the values are unknown there).

  Args:
    logits: ``[..., num_classes]`` logits, as the computation saw them.
    name: the argument's name, as the message shows it.
    ok: the flag :func:`logits_ok` computed inside the caller's jitted
      computation (fused), or None to compute it here (one device reduction).
    original: the array the caller passed, when it differs from ``logits``
      (a float64 NumPy array cast to float32): the message says why it overflowed.

  Raises:
    ValueError: naming the shape, how many entries are bad, the first bad row
      and index, and the largest finite magnitude seen.
  """
  if not is_concrete(logits) or (ok is not None and not is_concrete(ok)):
    return
  if bool(_logits_ok(logits) if ok is None else ok):  # the host copy only on error
    return
  x = np.asarray(jax.device_get(logits)).astype(np.float32)
  note = _float64_note(original) if original is not None else ""
  bad = np.isnan(x) | (x == np.inf)
  if bad.any():
    where = np.argwhere(bad)[0]
    raise ValueError(
      f"{name} of shape {x.shape} holds {int(bad.sum())} NaN or +inf values "
      f"({_first_row(where, 1 if x.ndim == 3 else 0)}: {x[tuple(where)]}); -inf is allowed "
      f"for masked classes{note}"
    )
  empty = ~np.isfinite(x).any(axis=-1)
  if empty.any():
    where = np.argwhere(empty)[0]
    raise ValueError(
      f"{name} of shape {x.shape} has a row where every class is -inf "
      f"(first at row {int(where[-1])}"
      + (f" of sample {int(where[0])}" if len(where) > 1 else "")
      + ")"
    )


def all_finite(tree: Any) -> list[jax.Array]:
  """Traceable: one bool per leaf of ``tree``, True when that leaf holds no NaN or inf.

  For fusing :func:`check_finite` into a jitted computation over the same
  arrays: return these flags beside the result and pass them as ``ok=``.
  """
  return [jnp.all(jnp.isfinite(t)) for t in jax.tree.leaves(tree)]


_all_finite = executables.jit(all_finite)  # fused: no temporary


def check_finite(x: Any, name: str, *, purpose: str = "", ok: Any = None) -> None:
  """Value check (concrete input only): NaN or inf in any leaf is a ``ValueError``.

  One jitted reduction per leaf of ``x`` (an array, or a pytree such as a
  ``GradEmbedding``), or none when the caller computed the flags inside its
  own jitted call (``ok``, from :func:`all_finite`); the host copy happens
  only to report an error, which names the leaf, its shape, how many entries
  are bad, the row and index of the first one and the largest finite
  magnitude seen.

  Args:
    x: an array or a pytree of arrays.
    name: the argument's name, as the message shows it.
    purpose: why finite values are needed, appended to the message.
    ok: optional flags from :func:`all_finite` (a list, one per leaf, or one
      bool for all leaves together), already computed.
  """
  leaves = jax.tree_util.tree_leaves_with_path(x)
  if not all(is_concrete(t) for _, t in leaves):
    return
  if ok is None:
    with jax.ensure_compile_time_eval():  # x may be a constant inside someone's jit
      flags = _all_finite(x)
  else:
    if not all(is_concrete(f) for f in jax.tree.leaves(ok)):
      return
    flags = ok if isinstance(ok, (list, tuple)) else [ok] * len(leaves)
  for (path, t), flag in zip(leaves, flags):
    if not bool(flag):
      a = np.asarray(jax.device_get(t))
      finite = np.isfinite(a)
      bad = np.argwhere(~finite)[0]
      big = float(np.max(np.abs(a[finite]), initial=0.0))
      leaf = jax.tree_util.keystr(path, simple=True, separator=".")
      raise ValueError(
        f"{name}{'.' + leaf if leaf else ''} of shape {t.shape} holds NaN or inf values "
        f"({int((~finite).sum())} of them, {_first_row(bad)}: {a[tuple(bad)]}; "
        f"largest finite magnitude {big:.3g})" + (f"; {purpose}" if purpose else "")
      )


def nonneg_ok(x: jax.Array) -> jax.Array:
  """Traceable: True when ``x`` has no negative entry (NaN is not negative).

  For fusing :func:`check_nonnegative` into a jitted computation over the same
  array: return this flag beside the result and pass it as ``ok=``.
  """
  return jnp.all(~(x < 0))


def check_nonnegative(x: Any, name: str, *, purpose: str = "", ok: Any = None) -> None:
  """Value check (concrete input only): a negative entry is a ``ValueError`` naming the first.

  Args:
    x: an array.
    name: the argument's name, as the message shows it.
    purpose: why non-negative values are needed, appended to the message.
    ok: the flag :func:`nonneg_ok` computed inside the caller's jitted call
      (fused), or None to compute it here (one device reduction).
  """
  if not is_concrete(x) or (ok is not None and not is_concrete(ok)):
    return
  if ok is None:
    with jax.ensure_compile_time_eval():
      fine = bool(_all_nonneg(x))
  else:
    fine = bool(ok)
  if fine:
    return
  a = np.asarray(jax.device_get(x))
  neg = a < 0
  where = np.argwhere(neg)[0]
  raise ValueError(
    f"{name} of shape {a.shape} must be non-negative, got {int(neg.sum())} negative entries "
    f"({_first_row(where)}: {a[tuple(where)]}; min {a.min()})" + (f"; {purpose}" if purpose else "")
  )


@executables.jit
def _all_nonneg(x):
  return jnp.all(x >= 0)


def check_labeled_mask(labeled_mask: Any, num_points: int, name: str = "labeled_mask") -> jax.Array:
  """A boolean ``[num_points]`` mask, or None for an empty labeled set."""
  if labeled_mask is None:
    return jax.device_put(np.zeros(num_points, bool))
  if not hasattr(labeled_mask, "dtype"):
    raise TypeError(
      f"{name} must be a boolean array of shape ({num_points},), got {type(labeled_mask).__name__}"
    )
  if labeled_mask.dtype != jnp.bool_:
    raise TypeError(
      f"{name} must have dtype bool and shape ({num_points},), got dtype {labeled_mask.dtype} "
      f"and shape {shape_of(labeled_mask)}; build it with `mask.astype(bool)` or "
      "`jnp.zeros(n, bool).at[idx].set(True)`"
    )
  if shape_of(labeled_mask) != (num_points,):
    raise ValueError(
      f"{name} must have shape ({num_points},) to match the pool of {num_points} points, "
      f"got shape {shape_of(labeled_mask)}"
    )
  return as_array(labeled_mask)


def check_budget(k: Any, num_points: int, labeled_mask: Any = None, name: str = "k") -> int:
  """A positive Python int no larger than the unlabeled count (when it is known)."""
  k = check_positive_int(k, name, what="it fixes the output shape")
  if k > num_points:
    raise ValueError(f"{name}={k} is larger than the pool of {num_points} points")
  if labeled_mask is not None and is_concrete(labeled_mask):
    unlabeled = num_points - cached_ops.count_int(labeled_mask)
    if k > unlabeled:
      raise ValueError(
        f"{name}={k} is larger than the {unlabeled} unlabeled points left "
        f"in the pool of {num_points} (labeled_mask has {num_points - unlabeled} True)"
      )
  return k


def check_same_n(
  name_a: str, a: Any, name_b: str, b: Any, axis_a: int = 0, axis_b: int = 0
) -> None:
  na, nb = shape_of(a)[axis_a], shape_of(b)[axis_b]
  if na != nb:
    raise ValueError(
      f"{name_a} and {name_b} must have the same number of points, got {name_a} of shape "
      f"{shape_of(a)} and {name_b} of shape {shape_of(b)}"
    )


def check_one_of(value: str, valid: Any, name: str) -> str:
  valid = sorted(valid)
  if value not in valid:
    raise ValueError(f"unknown {name} {value!r}; valid names are: {', '.join(valid)}")
  return value


def check_model_input(forward: Any, x: Any, name: str = "pool") -> None:
  """Runs ``forward(x[:1])`` abstractly (``jax.eval_shape``: no FLOPs, no values).

  ``forward`` maps a batch ``[B, ...]`` to logits ``[B, K]``. Any error the
  model raises on the input's shape becomes a ``ValueError`` naming the shape,
  before anything is computed or changed.
  """
  shape = shape_of(x)
  if len(shape) < 1 or shape[0] == 0:
    raise ValueError(f"{name} must have shape [num_points, ...] with num_points >= 1, got {shape}")
  example = jax.ShapeDtypeStruct((1, *shape[1:]), getattr(x, "dtype", jnp.float32))
  try:
    out = jax.eval_shape(forward, example)
  except Exception as e:  # the model's own error, whatever its type
    raise ValueError(
      f"the model rejects {name} inputs of shape {shape[1:]} (a batch of shape "
      f"{(1, *shape[1:])} failed with {type(e).__name__}: {e})"
    ) from e
  out_shape = tuple(getattr(out, "shape", ()))
  if len(out_shape) != 2 or out_shape[0] != 1:
    raise ValueError(
      f"the model must map {name} inputs of shape [batch, *{shape[1:]}] to logits "
      f"[batch, num_classes], got logits of shape {out_shape} for a batch of 1"
    )


# --- added for selection: a leading key that may be None


def spelled_as_key_or_none(usage: str) -> Callable[[F], F]:
  """:func:`spelled_as` for a function whose leading ``key`` may also be None.

  k-center greedy takes ``(key, x, k, ...)`` but draws only its first point
  from the key, so None is valid there when the labeled set is not empty (the
  function itself checks that). A call whose ``key`` is None runs unchanged;
  any other call is checked exactly as by :func:`spelled_as`.

  Args:
    usage: the call as the documentation writes it.
  """

  def decorate(fn: F) -> F:
    sig = inspect.signature(fn)
    strict = spelled_as(usage)(fn)

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
      try:
        key = sig.bind(*args, **kwargs).arguments.get("key", False)
      except TypeError:
        key = False  # a wrong spelling: spelled_as words the error
      return fn(*args, **kwargs) if key is None else strict(*args, **kwargs)

    return wrapper  # type: ignore[return-value]

  return decorate


def scores_ok(x: jax.Array, allow_posinf: bool = True) -> jax.Array:
  """Traceable: True when ``x`` has no NaN (nor ``+inf`` unless ``allow_posinf``).

  For fusing :func:`check_finite_scores` into a jitted computation over the
  same scores: return this flag beside the result and pass it as ``ok=``.
  """
  bad = jnp.isnan(x) if allow_posinf else jnp.isnan(x) | (x == jnp.inf)
  return ~jnp.any(bad)


_scores_ok = executables.jit(scores_ok, static_argnames=("allow_posinf",))


def check_finite_scores(
  scores: Any,
  name: str = "scores",
  *,
  allow_posinf: bool = True,
  original: Any = None,
  ok: Any = None,
) -> None:
  """Value check (concrete input only) of ``[num_points]`` scores: NaN is an error.

  ``-inf`` is allowed (a point that must come last, such as the negated distance
  of a point that never flips); ``+inf`` too unless ``allow_posinf`` is False
  (a probability law cannot give a point infinite weight). One device reduction
  over ``[num_points]``; the host copy happens only to word the error.

  Args:
    scores: ``[num_points]`` float scores.
    name: the argument's name, as the message shows it.
    allow_posinf: whether ``+inf`` is a valid score.
    original: the array the caller passed, when it differs from ``scores``
      (float64 cast to float32): the message says why it overflowed.
    ok: the flag :func:`scores_ok` computed inside the caller's jitted call
      (fused), or None to compute it here (one device reduction).

  Raises:
    ValueError: naming how many entries are bad and the first one.
  """
  if not is_concrete(scores) or (ok is not None and not is_concrete(ok)):
    return
  if ok is None:
    with jax.ensure_compile_time_eval():
      fine = bool(_scores_ok(scores, allow_posinf))
  else:
    fine = bool(ok)
  if fine:
    return
  a = np.asarray(jax.device_get(scores)).astype(np.float32)
  bad = np.isnan(a) if allow_posinf else np.isnan(a) | (a == np.inf)
  i = int(np.argmax(bad))
  what = "NaN" if allow_posinf else "NaN or +inf"
  note = _float64_note(original) if original is not None else ""
  raise ValueError(
    f"{name} of shape {a.shape} holds {int(bad.sum())} {what} values (first at index {i}: "
    f"{a[i]}); scores must be real numbers (-inf ranks a point last){note}"
  )


# The largest difference between two MC samples' class probabilities below which
# the samples count as identical (float noise of a deterministic forward is ~1e-7).
MC_IDENTICAL_TOL = 1e-5


@executables.jit
def _mc_spread(mc_logits):
  p = jax.nn.softmax(mc_logits.astype(jnp.float32), axis=-1)
  return jnp.max(jnp.abs(p - p[:1]))


def check_mc_varies(
  mc_logits: Any, strategy: str, *, tol: float = MC_IDENTICAL_TOL, name: str = "MC logits"
) -> None:
  """Value check (concrete input only): Monte Carlo samples that are all the same are an error.

  A strategy that compares stochastic forward passes (BALD, BatchBALD,
  variation ratio, mean std, the MC-averaged scores) picks by float noise
  when the model has no active dropout: every sample is then the same
  network. One device reduction over ``[S, N, K]``.

  Args:
    mc_logits: ``[num_samples, num_points, num_classes]`` logits of the MC passes.
    strategy: the strategy's name, as the message shows it.
    tol: samples whose class probabilities all differ from the first sample's
      by at most ``tol`` count as identical.
    name: what ``mc_logits`` are, as the message shows it.

  Raises:
    ValueError: saying what to change (dropout rate, the train keyword, an ensemble).
  """
  if not is_concrete(mc_logits):
    return
  spread = float(_mc_spread(mc_logits))
  if spread <= tol:
    raise ValueError(
      f"strategy {strategy!r} needs stochastic forward passes, but the {shape_of(mc_logits)[0]} "
      f"{name} (shape {shape_of(mc_logits)}) are identical: their class probabilities differ "
      f"by at most {spread:.2g} (tolerance {tol:g}), so the scores would rank float noise. "
      "Give the model a dropout layer with a rate > 0, make sure the model's dropout switch "
      "reaches it (models.from_linen(module, train_kwarg=...) names the keyword that turns "
      "dropout on; it must be the one the module's __call__ takes), or use an ensemble whose "
      "members differ"
    )
