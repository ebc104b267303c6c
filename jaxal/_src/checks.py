"""Argument validation shared by every public entry point.

Shape and dtype checks run in Python at trace time and never touch array values,
so they are free inside ``jax.jit``. Value checks (finiteness, budget against the
unlabeled count) need concrete arrays: they run only when the argument is not a
tracer, which is the case at the strategy and loop level.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


def is_concrete(x: Any) -> bool:
  """True when ``x`` holds values we may inspect (not a tracer)."""
  return not isinstance(x, jax.core.Tracer)


def shape_of(x: Any) -> tuple[int, ...]:
  return tuple(getattr(x, "shape", np.shape(x)))


def check_key(key: Any, name: str = "key") -> jax.Array:
  """Accepts only new-style typed keys from ``jax.random.key``."""
  dtype = getattr(key, "dtype", None)
  if dtype is None or not jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key):
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
  x = jnp.asarray(x)
  ndims = (ndim,) if isinstance(ndim, int) else ndim
  if x.ndim not in ndims:
    raise ValueError(f"{name} must have shape {dims}, got shape {x.shape} (rank {x.ndim})")
  if not jnp.issubdtype(x.dtype, jnp.floating):
    raise TypeError(f"{name} must be a floating-point array of shape {dims}, got dtype {x.dtype}")
  return x


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


@jax.jit
def _logits_ok(x):
  x = x.astype(jnp.float32)
  no_bad = ~jnp.any(jnp.isnan(x) | (x == jnp.inf))
  return no_bad & jnp.all(jnp.any(jnp.isfinite(x), axis=-1))


def check_finite_logits(logits: Any, name: str = "logits") -> None:
  """Value check: NaN or +inf anywhere, or a row with no finite entry, is an error.

  ``-inf`` is allowed: it is how masked classes are written.
  """
  if not is_concrete(logits):
    return
  if bool(_logits_ok(logits)):  # one fused device reduction; the host copy only on error
    return
  x = np.asarray(jax.device_get(logits)).astype(np.float32)
  bad = np.isnan(x) | (x == np.inf)
  if bad.any():
    where = np.argwhere(bad)[0]
    raise ValueError(
        f"{name} of shape {x.shape} holds {int(bad.sum())} NaN or +inf values "
        f"(first at index {tuple(int(i) for i in where)}); -inf is allowed for masked classes"
    )
  empty = ~np.isfinite(x).any(axis=-1)
  if empty.any():
    where = np.argwhere(empty)[0]
    raise ValueError(
        f"{name} of shape {x.shape} has a row where every class is -inf "
        f"(first at index {tuple(int(i) for i in where)})"
    )


def check_labeled_mask(labeled_mask: Any, num_points: int, name: str = "labeled_mask") -> jax.Array:
  """A boolean ``[num_points]`` mask, or None for an empty labeled set."""
  if labeled_mask is None:
    return jnp.zeros((num_points,), bool)
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
  return jnp.asarray(labeled_mask)


def check_budget(k: Any, num_points: int, labeled_mask: Any = None, name: str = "k") -> int:
  """A positive Python int no larger than the unlabeled count (when it is known)."""
  if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
    raise TypeError(f"{name} must be a Python int (it fixes the output shape), got {type(k).__name__}")
  k = int(k)
  if k <= 0:
    raise ValueError(f"{name} must be positive, got {k}")
  if k > num_points:
    raise ValueError(f"{name}={k} is larger than the pool of {num_points} points")
  if labeled_mask is not None and is_concrete(labeled_mask):
    # A device reduction, not a host copy: the mask may be a global array
    # spanning several hosts.
    unlabeled = num_points - int(jnp.sum(labeled_mask, dtype=jnp.int32))
    if k > unlabeled:
      raise ValueError(
          f"{name}={k} is larger than the {unlabeled} unlabeled points left "
          f"in the pool of {num_points} (labeled_mask has {num_points - unlabeled} True)"
      )
  return k


def check_same_n(name_a: str, a: Any, name_b: str, b: Any, axis_a: int = 0, axis_b: int = 0) -> None:
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
        f"{(1, *shape[1:])} failed with {type(e).__name__}: {e})") from e
  out_shape = tuple(getattr(out, "shape", ()))
  if len(out_shape) != 2 or out_shape[0] != 1:
    raise ValueError(
        f"the model must map {name} inputs of shape [batch, *{shape[1:]}] to logits "
        f"[batch, num_classes], got logits of shape {out_shape} for a batch of 1")
