"""The small array operations strategies do between their compiled cores, as cached programs.

A strategy's acquisition is one or two compiled cores (:mod:`jaxal._src.executables` keeps
them whole on disk) and some glue: splitting a key, counting a mask, gathering rows. Written as
eager ``jax.numpy`` calls, each piece of glue is a program of its own that JAX lowers in every
fresh process; the first lowering of a process also sets MLIR up (about 0.1 s on a CPU), so a
warm process whose cores all load from disk still pays it for one ``jax.random.split``. The
functions here are that glue declared with :func:`executables.jit`: a later process loads
them with the cores and lowers nothing.

Each takes arrays (jax or NumPy) and returns what the eager expression in its docstring
returns; a function whose name ends in ``_int`` or ``_bool`` returns a Python value (one
device-to-host read of a scalar).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxal._src import executables


@executables.jit(static_argnames=("num",))
def split(key: jax.Array, num: int) -> tuple[jax.Array, ...]:
  """``tuple(jax.random.split(key, num))``: ``num`` keys of shape ``()``."""
  return tuple(jax.random.split(key, num))


@executables.jit(static_argnames=("num",))
def split_array(key: jax.Array, num: int) -> jax.Array:
  """``jax.random.split(key, num)``: a ``[num]`` key array."""
  return jax.random.split(key, num)


@executables.jit
def fold_in(key: jax.Array, data: Any) -> jax.Array:
  """``jax.random.fold_in(key, data)``."""
  return jax.random.fold_in(key, data)


@executables.jit(static_argnames=("n",))
def permutation(key: jax.Array, n: int) -> jax.Array:
  """``jax.random.permutation(key, n)``: ``[n]`` int32, a uniformly random order of
  ``range(n)``."""
  return jax.random.permutation(key, n).astype(jnp.int32)


@executables.jit
def _count(mask: jax.Array) -> jax.Array:
  return jnp.sum(mask, dtype=jnp.int32)


def count_int(mask: Any) -> int:
  """``int(jnp.sum(mask))`` for a boolean ``mask`` of any shape.

  A mask held whole by this process (a NumPy array, or a JAX array on one device) is counted
  on the host: its bytes copied, and no program at all, even in a fresh process. A mask spread
  over several devices, possibly on several hosts, is reduced where it lives.
  """
  if _spread(mask):
    return int(_count(mask))
  return int(np.count_nonzero(np.asarray(mask)))


@executables.jit
def _any(mask: jax.Array) -> jax.Array:
  return jnp.any(mask)


def any_bool(mask: Any) -> bool:
  """``bool(jnp.any(mask))`` for a boolean ``mask`` of any shape (on the host or where it
  lives, as :func:`count_int`)."""
  if _spread(mask):
    return bool(_any(mask))
  return bool(np.any(np.asarray(mask)))


def _spread(x: Any) -> bool:
  """``x`` is a JAX array not held whole by one device of this process."""
  return isinstance(x, jax.Array) and (not x.is_fully_addressable or len(x.sharding.device_set) > 1)


@executables.jit
def invert(mask: jax.Array) -> jax.Array:
  """``~mask`` (a boolean array)."""
  return ~jnp.asarray(mask)


@executables.jit
def take(x: Any, idx: Any) -> Any:
  """``x[idx]`` along the first axis, leaf by leaf for a pytree ``x``; ``idx`` an integer
  array (NumPy's semantics of ``x[idx]``: negative entries count from the end)."""
  return jax.tree.map(lambda leaf: jnp.asarray(leaf)[idx], x)


@executables.jit
def as_float32(x: Any) -> jax.Array:
  """``jnp.asarray(x).astype(jnp.float32)``."""
  return jnp.asarray(x).astype(jnp.float32)


@executables.jit
def set_true(mask: jax.Array, idx: Any) -> jax.Array:
  """``mask.at[idx].set(True)`` (a boolean ``mask``, an integer ``idx``): one program, where
  the eager expression is several (the index normalisation, the scatter) per shape."""
  return jnp.asarray(mask).at[idx].set(True)
