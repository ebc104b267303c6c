"""The stateless active-learning loop.

An immutable :class:`ALState` is threaded through pure functions:

    state = loop.init(key, num_points, num_initial=20)
    for _ in range(rounds):
      train_state = loop.fit(k, train_state, x, y, state.labeled_mask)
      state, idx = loop.acquire(state, strategy, model, params, x, budget)

or, in one call per round, ``loop.run_round``. ``label`` validates every
index before it builds a new state, so a bad batch never half-updates anything.
"""

from __future__ import annotations

import functools
from typing import Any
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax.training import train_state as train_state_lib
from jax.typing import ArrayLike

from jaxal._src import checks
from jaxal._src import ensembles
from jaxal._src import models as models_lib
from jaxal._src.strategies.base import Strategy

TrainState = train_state_lib.TrainState


class ALState(NamedTuple):
  """The whole bookkeeping of an active-learning run.

  Attributes:
    labeled_mask: ``[num_points]`` bool, True where the pool point is labeled.
    round: ``[]`` int32, how many acquisition rounds have been applied.
    key: the run's key; round ``r`` uses ``jax.random.fold_in(key, r)``.
    history: the indices labeled at each step, each ``[batch]`` int32: ``history[0]`` is the
      initial set, ``history[r]`` what round ``r`` acquired, in selection order.
  """

  labeled_mask: jax.Array  # shape=[num_points], dtype=bool
  round: jax.Array  # shape=(), dtype=int32
  key: jax.Array  # shape=(), dtype=key
  history: tuple[jax.Array, ...]  # each shape=[batch], dtype=int32

  @property
  def num_labeled(self) -> int:
    return int(jnp.sum(self.labeled_mask))

  @property
  def labeled_indices(self) -> jax.Array:
    """Every labeled index in the order it was labeled: ``[num_labeled]`` int32."""
    if not self.history:
      return jnp.zeros((0,), jnp.int32)
    return jnp.concatenate(self.history)


def init(
  key: jax.Array, num_points: int, *, num_initial: int = 0, initial_indices: ArrayLike | None = None
) -> ALState:
  """A fresh state over a pool of ``num_points``.

  Args:
    key: a ``jax.random.key``; the run's randomness all derives from it.
    num_points: the pool size ``N``.
    num_initial: draw this many initial labeled points uniformly at random
      (from ``fold_in(key, -1)``, so acquisitions never reuse that draw).
    initial_indices: or give the initial labeled indices explicitly, ``[num_initial]`` int.

  Returns:
    An :class:`ALState` at round 0.
  """
  checks.check_key(key)
  num_points = checks.check_positive_int(num_points, "num_points", what="the pool size")
  num_initial = checks.check_nonnegative_int(num_initial, "num_initial")
  empty = ALState(jnp.zeros((num_points,), bool), jnp.zeros((), jnp.int32), key, ())
  if initial_indices is not None:
    if num_initial:
      raise ValueError("give either num_initial or initial_indices, not both")
    return _label(empty, initial_indices, advance=False)
  if num_initial > num_points:
    raise ValueError(f"num_initial={num_initial} is larger than the pool of {num_points} points")
  if num_initial == 0:
    return empty
  from jaxal._src.selection import random as random_selection

  idx = random_selection.random(jax.random.fold_in(key, 2**31 - 1), num_points, int(num_initial))
  return _label(empty, idx, advance=False)


def _check_state(state: Any) -> None:
  if not isinstance(state, ALState):
    raise TypeError(f"state must be an ALState, got {type(state).__name__}")


def _check_strategy(strategy: Any) -> None:
  if not isinstance(strategy, Strategy):
    raise TypeError(f"strategy must be a jaxal Strategy, got {type(strategy).__name__}")


def _label(state: ALState, idx: ArrayLike, *, advance: bool) -> ALState:
  n = state.labeled_mask.shape[0]
  if not hasattr(idx, "shape") and not isinstance(idx, (list, tuple)):
    raise TypeError(f"idx must be an integer array of shape [batch], got {type(idx).__name__}")
  host = np.asarray(jax.device_get(idx))
  if host.ndim != 1:
    raise ValueError(f"idx must have shape [batch], got shape {host.shape}")
  if host.size and not np.issubdtype(host.dtype, np.integer):
    raise TypeError(f"idx must hold integers, got dtype {host.dtype}")
  host = host.astype(np.int64)
  if host.size and (host.min() < 0 or host.max() >= n):
    bad = host[(host < 0) | (host >= n)]
    raise ValueError(f"idx holds indices outside the pool of {n} points: {bad[:10].tolist()}")
  uniq, counts = np.unique(host, return_counts=True)
  if (counts > 1).any():
    raise ValueError(f"idx holds duplicate indices: {uniq[counts > 1][:10].tolist()}")
  mask = np.asarray(jax.device_get(state.labeled_mask))
  if mask[host].any():
    raise ValueError(f"idx holds already-labeled indices: {host[mask[host]][:10].tolist()}")
  idx32 = jnp.asarray(host, jnp.int32)
  return ALState(
    labeled_mask=state.labeled_mask.at[idx32].set(True),
    round=state.round + (1 if advance else 0),
    key=state.key,
    history=state.history + (idx32,),
  )


def label(state: ALState, idx: ArrayLike) -> ALState:
  """A new state with ``idx`` labeled and the round advanced by one.

  Every index is checked first (integer, in range, unique, not yet labeled);
  on any problem a ``ValueError`` is raised and nothing changes.

  Args:
    state: the current state.
    idx: ``[batch]`` integer indices into the pool.
  """
  _check_state(state)
  return _label(state, idx, advance=True)


def round_keys(state: ALState) -> tuple[jax.Array, jax.Array]:
  """``(train_key, acquire_key)`` for the state's current round.

  Args:
    state: the current state; its ``key`` folded with its ``round`` gives the two keys.

  Returns:
    ``(train_key, acquire_key)``, two ``[]`` typed keys.
  """
  return tuple(jax.random.split(jax.random.fold_in(state.key, state.round)))  # type: ignore[return-value]


def acquire(
  state: ALState,
  strategy: Strategy,
  model: models_lib.Model,
  params: Any,
  pool: ArrayLike,
  budget: int,
) -> tuple[ALState, jax.Array]:
  """One acquisition round: select ``budget`` points with ``strategy``, then label them.

  The strategy's ``acquire`` validates ``budget`` (and the key, pool and
  mask it is given) at its entry, so they are not checked here again; this
  checks what only the loop knows (the state, and that ``pool`` has as many
  points as ``state.labeled_mask``), and every acquired index before the new
  state is built.

  Args:
    state: the current state.
    strategy: a :class:`jaxal.strategies.Strategy`.
    model: the :class:`jaxal.models.Model` the strategy scores with.
    params: its parameters.
    pool: ``[num_points, ...]`` model input.
    budget: how many points to acquire.

  Returns:
    ``(new_state, idx)`` with ``idx`` the ``[budget]`` int32 indices acquired.
  """
  _check_state(state)
  _check_strategy(strategy)
  checks.check_same_n("pool", pool, "state.labeled_mask", state.labeled_mask)
  return _acquire(state, strategy, model, params, pool, budget)


def _acquire(
  state: ALState,
  strategy: Strategy,
  model: models_lib.Model,
  params: Any,
  pool: ArrayLike,
  budget: int,
) -> tuple[ALState, jax.Array]:
  """:func:`acquire` once ``state``, ``strategy`` and the pool's size are checked."""
  _, key = round_keys(state)
  idx = strategy.acquire(key, model, params, pool, state.labeled_mask, budget)
  return _label(state, idx, advance=True), idx


# ---------------------------------------------------------------------------
# Default training: cross-entropy, Adam, minibatches sampled from the labeled set.


def create_train_state(
  key: jax.Array,
  module: nn.Module,
  example_x: ArrayLike,
  *,
  tx: optax.GradientTransformation | None = None,
  learning_rate: float = 1e-3,
  num_members: int | None = None,
) -> TrainState:
  """A linen ``TrainState`` with freshly initialised params and Adam (or ``tx``).

  Args:
    key: a ``jax.random.key`` for the parameters' initialisation.
    module: the linen module whose ``apply`` the state holds.
    example_x: ``[batch, ...]`` example model input (its shape and dtype initialise the
      parameters).
    tx: the optimiser; None for ``optax.adam(learning_rate)``.
    learning_rate: Adam's learning rate when ``tx`` is None.
    num_members: None for one model; ``M >= 2`` for a deep ensemble whose members start
      from ``jax.random.split(key, M)`` and train in one vmapped step (``models.ensemble``).

  Returns:
    A ``TrainState`` at step 0.
  """
  if num_members is not None:  # a deep ensemble: every leaf stacked [M, ...]
    tx = optax.adam(learning_rate) if tx is None else tx
    return ensembles.create_train_state(key, module, example_x, num_members, tx)
  params = models_lib.init_params(key, module, example_x)
  return TrainState.create(
    apply_fn=module.apply, params=params, tx=optax.adam(learning_rate) if tx is None else tx
  )


def reinit(key: jax.Array, state: TrainState, example_x: ArrayLike) -> TrainState:
  """The same module and optimiser with new parameters and a fresh optimiser state.

  Args:
    key: a ``jax.random.key`` for the new parameters.
    state: a linen ``TrainState`` (see :func:`create_train_state`).
    example_x: ``[batch, ...]`` example model input.

  Returns:
    A ``TrainState`` at step 0 with the same ``apply_fn`` and ``tx``.
  """
  module = state.apply_fn.__self__
  params = models_lib.init_params(key, module, example_x)
  return TrainState.create(apply_fn=state.apply_fn, params=params, tx=state.tx)


def loss_fn(
  params: Any,
  model: models_lib.Model,
  x: jax.Array,
  y: jax.Array,
  weights: jax.Array,
  dropout_key: jax.Array | None,
) -> jax.Array:
  """Weighted mean softmax cross-entropy.

  Args:
    params: the model's parameters.
    model: the :class:`jaxal.models.Model` to apply.
    x: ``[batch, ...]`` model input.
    y: ``[batch]`` integer labels.
    weights: ``[batch]`` float weight of each example.
    dropout_key: a ``jax.random.key`` for dropout, or None for the deterministic forward.

  Returns:
    ``[]`` float32, ``sum(weights * cross_entropy) / max(sum(weights), 1)``.
  """
  logits, _ = models_lib.apply(model, params, x, dropout_key)
  losses = optax.softmax_cross_entropy_with_integer_labels(logits, y)
  return jnp.sum(losses * weights) / jnp.maximum(jnp.sum(weights), 1.0)


def train_step(
  state: TrainState,
  batch: tuple[jax.Array, jax.Array, jax.Array],
  dropout_key: jax.Array | None = None,
) -> tuple[TrainState, dict[str, jax.Array]]:
  """One Adam step on ``batch = (x [B, ...], y [B] int, weights [B])``.

  Args:
    state: a linen ``TrainState`` (see :func:`create_train_state`).
    batch: ``(x, y, weights)``: ``[B, ...]`` model input, ``[B]`` integer labels and ``[B]``
      float weights (see :func:`loss_fn`).
    dropout_key: a ``jax.random.key`` for dropout, or None for the deterministic forward.

  Returns:
    ``(new_state, metrics)``: the state after one optimiser step and ``{"loss": [] float32}``,
    the loss before the step.
  """
  model, _ = models_lib.from_train_state(state)
  x, y, w = batch
  loss, grads = jax.value_and_grad(loss_fn)(state.params, model, x, y, w, dropout_key)
  return state.apply_gradients(grads=grads), {"loss": loss}


@functools.partial(jax.jit, static_argnames=("num_steps", "batch_size"))
def _fit(key, state, x, y, labeled_mask, num_steps, batch_size):
  p = labeled_mask.astype(jnp.float32)
  p = p / jnp.sum(p)

  def body(i, st):
    k_batch, k_drop = jax.random.split(jax.random.fold_in(key, i))
    idx = jax.random.choice(k_batch, x.shape[0], (batch_size,), replace=True, p=p)
    batch = (x[idx], y[idx], jnp.ones((batch_size,), jnp.float32))
    st, _ = train_step(st, batch, k_drop)
    return st

  return jax.lax.fori_loop(0, num_steps, body, state)


def fit(
  key: jax.Array,
  state: TrainState,
  x: ArrayLike,
  y: ArrayLike,
  labeled_mask: ArrayLike,
  *,
  num_steps: int = 300,
  batch_size: int = 32,
  reinitialize: bool = True,
) -> TrainState:
  """Trains on the labeled points of the pool.

  Each of ``num_steps`` Adam steps uses a minibatch drawn uniformly (with
  replacement) from the labeled points, all inside one jitted
  ``jax.lax.fori_loop``: the shapes never depend on how many points are
  labeled, so one compile serves every round.

  Args:
    key: a ``jax.random.key`` (initialisation, minibatches, dropout).
    state: a linen ``TrainState`` (see :func:`create_train_state`).
    x: ``[num_points, ...]`` pool inputs.
    y: ``[num_points]`` integer labels (only labeled entries are read).
    labeled_mask: ``[num_points]`` bool.
    num_steps: optimisation steps.
    batch_size: minibatch size.
    reinitialize: start from fresh parameters (the protocol of Ash et al.
      2020 and DISTIL) rather than warm-starting from ``state``.
  """
  checks.check_key(key)
  x, y = _check_xy(x, y)
  mask = checks.check_labeled_mask(labeled_mask, x.shape[0])
  num_steps, batch_size, reinitialize = _check_fit_options(num_steps, batch_size, reinitialize)
  return _fit_checked(key, state, x, y, mask, num_steps, batch_size, reinitialize)


def _check_xy(x: Any, y: Any) -> tuple[jax.Array, jax.Array]:
  """The pool and its labels as arrays with as many points; ``y`` integer."""
  x = jnp.asarray(x)
  y = jnp.asarray(y)
  checks.check_same_n("x", x, "y", y)
  if not jnp.issubdtype(y.dtype, jnp.integer):
    raise TypeError(f"y must hold integer class labels, got dtype {y.dtype} and shape {y.shape}")
  return x, y


def _check_fit_options(num_steps: Any, batch_size: Any, reinitialize: Any) -> tuple[int, int, bool]:
  return (
    checks.check_nonnegative_int(num_steps, "num_steps"),
    checks.check_positive_int(batch_size, "batch_size"),
    checks.check_bool(reinitialize, "reinitialize"),
  )


def _fit_checked(
  key: jax.Array,
  state: TrainState,
  x: jax.Array,
  y: jax.Array,
  mask: jax.Array,
  num_steps: int,
  batch_size: int,
  reinitialize: bool,
) -> TrainState:
  """:func:`fit` on validated arguments (``mask`` a ``[num_points]`` bool array)."""
  if isinstance(state, ensembles.EnsembleTrainState):  # all members in one vmapped fit
    return ensembles.fit(key, state, x, y, mask, num_steps, batch_size, reinitialize)
  if not bool(jnp.any(mask)):
    raise ValueError("fit needs at least one labeled point; labeled_mask is all False")
  k_init, k_fit = jax.random.split(key)
  if reinitialize:
    state = reinit(k_init, state, x)
  # optax's Adam mixes Python floats with int32 step counts, which a caller's
  # strict dtype-promotion setting would reject: trace under standard rules.
  with jax.numpy_dtype_promotion("standard"):
    return _fit(k_fit, state, x, y.astype(jnp.int32), mask, num_steps, batch_size)


def accuracy(
  model: models_lib.Model, params: Any, x: ArrayLike, y: ArrayLike, *, batch_size: int = 512
) -> float:
  """Top-1 accuracy of the deterministic forward on ``(x, y)``.

  Args:
    model: the :class:`jaxal.models.Model` to evaluate.
    params: its parameters.
    x: ``[num_points, ...]`` model input.
    y: ``[num_points]`` integer labels.
    batch_size: points per forward pass.

  Returns:
    The fraction of points whose arg-max logit is their label, a Python float.
  """
  logits = models_lib.predict(model, params, x, batch_size=batch_size, features=False).logits
  return float(jnp.mean(jnp.argmax(logits, -1) == jnp.asarray(y)))


def run_round(
  state: ALState,
  train_state: TrainState,
  *,
  strategy: Strategy,
  x: ArrayLike,
  y: ArrayLike,
  budget: int,
  num_steps: int = 300,
  batch_size: int = 32,
  reinitialize: bool = True,
) -> tuple[ALState, TrainState, jax.Array]:
  """Train on the labeled set, acquire ``budget`` points, label them.

  ``y`` holds the oracle's labels; only labeled entries are ever read. Each
  argument is validated once: the loop's own here, ``budget`` by the
  strategy's ``acquire`` at its entry.

  Args:
    state: the current state.
    train_state: a linen ``TrainState`` (see :func:`create_train_state`).
    strategy: a :class:`jaxal.strategies.Strategy`.
    x: ``[num_points, ...]`` pool inputs.
    y: ``[num_points]`` integer labels (only labeled entries are read).
    budget: how many points to acquire.
    num_steps: optimisation steps, as :func:`fit`.
    batch_size: minibatch size, as :func:`fit`.
    reinitialize: as :func:`fit`.

  Returns:
    ``(new_state, trained_state, idx)``: the state with the acquired points labeled, the
    ``TrainState`` after training, and the ``[budget]`` int32 indices acquired.
  """
  _check_state(state)
  _check_strategy(strategy)
  x, y = _check_xy(x, y)
  checks.check_same_n("x", x, "state.labeled_mask", state.labeled_mask)
  num_steps, batch_size, reinitialize = _check_fit_options(num_steps, batch_size, reinitialize)
  # The state's key and mask are the loop's own (valid by construction); the
  # strategy validates budget at its entry.
  k_train, _ = round_keys(state)
  train_state = _fit_checked(
    k_train, train_state, x, y, state.labeled_mask, num_steps, batch_size, reinitialize
  )
  model, params = models_lib.from_train_state(train_state)
  new_state, idx = _acquire(state, strategy, model, params, x, budget)
  return new_state, train_state, idx
