"""The model interface: logits, features and MC-dropout passes from any Flax model.

A :class:`Model` is a small immutable value holding one pure function,
``apply(params, x, dropout_key) -> (logits, features)``, and the parameter
path of the last layer. It is built from a linen module or ``TrainState``
(:func:`from_linen`, :func:`from_train_state`), an NNX module through
``nnx.split`` (:func:`from_nnx`), or any function (:func:`from_apply_fn`).
Models return either logits ``[B, K]`` or a pair ``(logits [B, K], features
[B, d])``; features are the penultimate activations (the last layer's input).

:func:`predict` and :func:`predict_mc` run a model over a whole pool in
fixed-size padded batches with one jitted step, so one compile serves every
round and every pool size.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from collections.abc import Sequence
from typing import Any
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.typing import ArrayLike

from jaxal._src import checks
from jaxal._src import sharding

ApplyFn = Callable[[Any, jax.Array, "jax.Array | None"], Any]


class Model(NamedTuple):
  """A classifier as pure functions of ``(params, x)``.

  Attributes:
    apply: ``apply(params, x [B, ...], dropout_key | None)`` returning logits
      ``[B, K]`` or ``(logits [B, K], features [B, d])``. ``dropout_key=None``
      is the deterministic (evaluation) pass; a key turns dropout on.
    head: parameter path of the last layer, as a tuple of names (for example
      ``("head",)``), or None to let gradient embeddings pick the final Dense.
  """

  apply: ApplyFn
  head: tuple[str, ...] | None = None


class Predictions(NamedTuple):
  """Outputs of :func:`predict` over a pool.

  Attributes:
    logits: ``[num_points, num_classes]`` float32 logits.
    features: ``[num_points, feat_dim]`` float32 features (the last layer's input, flattened),
      or None when they were not requested.
  """

  logits: jax.Array  # shape=[num_points, num_classes], float32
  features: jax.Array | None  # shape=[num_points, feat_dim], float32, or None


# ---------------------------------------------------------------------------
# Constructors. Each builds `apply` from a hashable callable, so two Models made
# from the same module compare equal and share one compiled forward.


@dataclasses.dataclass(frozen=True)
class _LinenApply:
  module: nn.Module
  train_kwarg: str | None
  collection: str

  def __call__(self, params, x, dropout_key=None):
    kwargs = {}
    if self.train_kwarg is not None:
      kwargs[self.train_kwarg] = dropout_key is not None
    rngs = None if dropout_key is None else {self.collection: dropout_key}
    return self.module.apply({"params": params}, x, rngs=rngs, **kwargs)


@dataclasses.dataclass(frozen=True)
class _NNXApply:
  graphdef: Any

  def __call__(self, state, x, dropout_key=None):
    if dropout_key is not None:
      # Reseed functionally, before merging: every rng key held in the state
      # (the Rngs streams its Dropout layers draw from) becomes a distinct
      # fold-in of `dropout_key`. Mutating a merged model (nnx.reseed) would
      # fail under vmap, whose trace differs from the state's.
      leaves, treedef = jax.tree.flatten(state)
      leaves = [
        jax.random.fold_in(dropout_key, i)
        if jax.dtypes.issubdtype(getattr(leaf, "dtype", None), jax.dtypes.prng_key)
        else leaf
        for i, leaf in enumerate(leaves)
      ]
      state = jax.tree.unflatten(treedef, leaves)
    model = nnx.merge(self.graphdef, state)
    if dropout_key is None:
      model.eval()
    else:
      model.train()
    return model(x)


def head_path(head: str | Sequence[str] | None) -> tuple[str, ...] | None:
  """A parameter path as a tuple of names: ``"a/b"`` -> ``("a", "b")``; None stays None.

  Args:
    head: a ``"/"``-separated path, a sequence of names, or None.
  """
  if head is None:
    return None
  if isinstance(head, str):
    return tuple(p for p in head.split("/") if p)
  return tuple(head)


def from_apply_fn(apply_fn: ApplyFn, *, head: str | Sequence[str] | None = None) -> Model:
  """A model from ``apply_fn(params, x, dropout_key) -> logits | (logits, features)``.

  ``apply_fn`` should be a module-level function (or otherwise stable object):
  the compiled forward is cached on it.

  Args:
    apply_fn: ``apply_fn(params, x [B, ...], dropout_key | None)``.
    head: parameter path of the last layer, such as ``"head"``; None picks the
      final Dense.

  Raises:
    TypeError: ``apply_fn`` is not callable.
  """
  if not callable(apply_fn):
    raise TypeError(f"apply_fn must be callable, got {type(apply_fn).__name__}")
  return Model(apply_fn, head_path(head))


def from_linen(
  module: nn.Module,
  *,
  train_kwarg: str | None = "train",
  dropout_collection: str = "dropout",
  head: str | Sequence[str] | None = None,
) -> Model:
  """A model from a linen module; ``params`` is then its ``"params"`` collection.

  Args:
    module: the linen module; ``module.apply({"params": p}, x, train=...)``
      must return logits or ``(logits, features)``.
    train_kwarg: the keyword that switches dropout on (``True`` when a dropout
      key is given), or None when the module takes no such argument.
    dropout_collection: the rng collection its ``nn.Dropout`` layers draw from.
    head: parameter path of the last layer, such as ``"head"`` or
      ``("Dense_1",)``; None picks the final Dense.
  """
  if not isinstance(module, nn.Module):
    raise TypeError(f"module must be a flax.linen.Module, got {type(module).__name__}")
  return Model(_LinenApply(module, train_kwarg, dropout_collection), head_path(head))


def from_train_state(state: Any, **kwargs) -> tuple[Model, Any]:
  """``(model, params)`` from a ``flax.training.train_state.TrainState``.

  The state's ``apply_fn`` must be a linen module's ``apply``; keyword
  arguments are those of :func:`from_linen`.

  Args:
    state: a ``TrainState`` whose ``apply_fn`` is a linen module's ``apply``.
    **kwargs: the keyword arguments of :func:`from_linen`.

  Raises:
    TypeError: ``state.apply_fn`` is not a linen module's bound ``apply``.
  """
  if hasattr(state, "ensemble_model"):  # models.ensemble's train state: members stacked
    return state.ensemble_model()
  apply_fn = getattr(state, "apply_fn", None)
  module = getattr(apply_fn, "__self__", None)
  if not isinstance(module, nn.Module):
    raise TypeError(
      "state.apply_fn must be a linen module's bound `apply` (TrainState.create("
      "apply_fn=module.apply, ...)); for any other function use "
      "jaxal.models.from_apply_fn(fn) with state.params"
    )
  return from_linen(module, **kwargs), state.params


def from_nnx(module: nnx.Module, *, head: str | Sequence[str] | None = None) -> tuple[Model, Any]:
  """``(model, state)`` from an NNX module, through ``nnx.split``.

  The module's ``__call__(x)`` returns logits or ``(logits, features)``. For
  MC dropout its ``nnx.Dropout`` layers must hold their ``nnx.Rngs`` stream
  (``nnx.Dropout(rate, rngs=rngs)``): each pass replaces every rng key in the
  state by a distinct fold-in of the given key, and ``model.eval()`` /
  ``model.train()`` switch dropout off and on.

  Args:
    module: the NNX module.
    head: parameter path of the last layer; None picks the final Dense.
  """
  if not isinstance(module, nnx.Module):
    raise TypeError(f"module must be a flax.nnx.Module, got {type(module).__name__}")
  graphdef, state = nnx.split(module)
  return Model(_NNXApply(graphdef), head_path(head)), state


def _split_output(out: Any) -> tuple[jax.Array, jax.Array | None]:
  if isinstance(out, (tuple, list)):
    if len(out) != 2:
      raise ValueError(
        f"a model must return logits or (logits, features), got a sequence of {len(out)} items"
      )
    return out[0], out[1]
  return out, None


def apply(
  model: Model, params: Any, x: jax.Array, dropout_key: jax.Array | None = None
) -> tuple[jax.Array, jax.Array | None]:
  """One forward pass on a batch: ``(logits [B, K] float32, features [B, d] | None)``.

  Args:
    model: a :class:`Model`.
    params: its parameters.
    x: ``[B, ...]`` inputs.
    dropout_key: None for the deterministic pass; a key turns dropout on.

  Returns:
    ``(logits, features)``: ``[B, K]`` float32 logits and ``[B, d]`` float32 features
    (flattened), or None for the features when the model returns only logits.
  """
  logits, features = _split_output(model.apply(params, x, dropout_key))
  if logits.ndim != 2:
    raise ValueError(
      f"the model must return logits of shape [batch, num_classes], got {logits.shape}"
    )
  logits = logits.astype(jnp.float32)
  if features is not None:
    features = features.reshape(features.shape[0], -1).astype(jnp.float32)
  return logits, features


# ---------------------------------------------------------------------------
# Batched forward passes over a pool.


@functools.partial(jax.jit, static_argnames=("model", "with_features"))
def _forward_batch(model, params, xb, with_features):
  logits, features = apply(model, params, xb)
  if with_features and features is None:
    raise ValueError(
      "features were requested, but the model returns only logits; return "
      "(logits, features) from the model, features being the last layer's input"
    )
  return logits, (features if with_features else None)


@functools.partial(jax.jit, static_argnames=("model",))
def _forward_batch_mc(model, params, xb, idx, sample_keys):
  # One dropout key per (sample, example): fold the example's global index into
  # the sample's key, so the draw does not depend on the batch size or padding.
  def one(key, x1, i):
    logits, _ = apply(model, params, x1[None], jax.random.fold_in(key, i))
    return logits[0]

  per_sample = jax.vmap(one, in_axes=(None, 0, 0))
  return jax.vmap(per_sample, in_axes=(0, None, None))(sample_keys, xb, idx)


def batches(x: jax.Array, batch_size: int):
  """Yields ``(start, size, batch)``: ``x`` in batches of ``batch_size``, the last zero-padded.

  Args:
    x: ``[num_points, ...]`` inputs.
    batch_size: the fixed batch size.
  """
  n = x.shape[0]
  for start in range(0, n, batch_size):
    xb = x[start : start + batch_size]
    b = xb.shape[0]
    if b < batch_size:
      xb = jnp.concatenate([xb, jnp.zeros((batch_size - b, *x.shape[1:]), x.dtype)])
    yield start, b, xb


def check_pool(x: ArrayLike, batch_size: Any) -> tuple[jax.Array, int]:
  """Validates a pool and a batch size for a batched forward.

  Args:
    x: ``[num_points, ...]`` inputs, ``num_points >= 1``.
    batch_size: a positive int.

  Returns:
    ``(x, batch_size)``: ``x`` as a JAX array (placed along N when it is
    sharded) and the batch size as a Python int.

  Raises:
    TypeError: ``x`` has no shape, or ``batch_size`` is not an int.
    ValueError: an empty pool, or ``batch_size < 1``.
  """
  if not hasattr(x, "shape"):
    raise TypeError(f"x must be an array of shape [num_points, ...], got {type(x).__name__}")
  x = jnp.asarray(x)
  if x.ndim < 1 or x.shape[0] == 0:
    raise ValueError(f"x must have shape [num_points, ...] with num_points >= 1, got {x.shape}")
  batch_size = checks.check_positive_int(batch_size, "batch_size")
  # A pool sharded along N (on a mesh with Explicit axes too) is batched under
  # GSPMD; the parameters are never split.
  return sharding.place(x, sharding.pool_sharding(x, "x")), batch_size


def predict(
  model: Model, params: Any, x: ArrayLike, *, batch_size: int = 256, features: bool = True
) -> Predictions:
  """Deterministic forward over a pool in fixed-size padded batches.

  Args:
    model: a :class:`Model`.
    params: its parameters (linen ``params`` collection or NNX state).
    x: ``[num_points, ...]`` inputs.
    batch_size: the fixed batch size; the last batch is zero-padded, so one
      compile serves every pool size.
    features: also return the penultimate features (the model must return them).

  Returns:
    :class:`Predictions` with logits ``[num_points, K]`` and features
    ``[num_points, d]`` (or None when ``features=False``).
  """
  x, batch_size = check_pool(x, batch_size)
  outs_l, outs_f = [], []
  for _, b, xb in batches(x, batch_size):
    logits, feats = _forward_batch(model, params, xb, features)
    outs_l.append(logits[:b])
    if features:
      outs_f.append(feats[:b])
  logits = jnp.concatenate(outs_l)
  return Predictions(logits, jnp.concatenate(outs_f) if features else None)


def predict_mc(
  key: jax.Array,
  model: Model,
  params: Any,
  x: ArrayLike,
  *,
  num_samples: int,
  batch_size: int = 256,
  consistent: bool = False,
) -> jax.Array:
  """MC-dropout forward passes over a pool: ``[num_samples, num_points, K]`` logits.

  Sample ``s`` uses ``jax.random.split(key, num_samples)[s]``; example ``i``
  within it folds in ``i``, so the result is the same for every batch size.
  Samples are vmapped, batches are fixed-size and padded (one compile).

  With ``consistent=True`` every example of sample ``s`` folds in ``0``
  instead of its index: each example runs as a batch of one under the same
  key, so all examples share one dropout mask within a sample, i.e. one
  sampled network per sample, as BatchBALD's joint predictive requires.

  Args:
    key: a ``jax.random.key``.
    model: a :class:`Model` whose ``apply`` turns dropout on when given a key.
    params: its parameters.
    x: ``[num_points, ...]`` inputs.
    num_samples: ``S``, the number of stochastic passes.
    batch_size: examples per jitted step.
    consistent: the same dropout mask for every example within a sample
      (default: an independent mask per example).

  Returns:
    ``[num_samples, num_points, K]`` float32 logits, sample ``s`` first. For an ensemble
    (``models.ensemble``) the members' logits ``[num_members, num_points, K]``, deterministic:
    ``key``, ``num_samples`` and ``consistent`` are validated, then ignored.
  """
  checks.check_key(key)
  num_samples = checks.check_positive_int(num_samples, "num_samples")
  predict_members = getattr(model.apply, "predict_members", None)  # an ensemble's members
  if predict_members is not None:
    return predict_members(params, x, batch_size)
  x, batch_size = check_pool(x, batch_size)
  sample_keys = jax.random.split(key, num_samples)
  outs = []
  for start, b, xb in batches(x, batch_size):
    idx = jnp.arange(start, start + batch_size, dtype=jnp.int32)
    if consistent:
      idx = jnp.zeros_like(idx)  # fold_in(key, 0) for all: one mask per sample
    outs.append(_forward_batch_mc(model, params, xb, idx, sample_keys)[:, :b])
  return jnp.concatenate(outs, axis=1)


def init_params(key: jax.Array, module: nn.Module, example_x: ArrayLike) -> Any:
  """The ``"params"`` collection of ``module`` initialised on ``example_x[:1]``.

  Args:
    key: a ``jax.random.key``.
    module: a linen module.
    example_x: ``[num_points, ...]`` inputs; only the first row is used.
  """
  checks.check_key(key)
  x = jnp.asarray(np.asarray(example_x[:1]))
  return module.init({"params": key}, x)["params"]
