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
import os
import shutil
import uuid
from typing import Any
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from flax import struct
from flax.training import train_state as train_state_lib
from jax.typing import ArrayLike

from jaxal._src import cached_ops
from jaxal._src import checks
from jaxal._src import ensembles
from jaxal._src import models as models_lib
from jaxal._src.strategies.base import Strategy


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
    return cached_ops.count_int(self.labeled_mask)

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
  # Placed from the host: no program to compile for either (an eager jnp.zeros compiles one
  # per pool size).
  empty = ALState(jax.device_put(np.zeros(num_points, bool)), jax.device_put(np.int32(0)), key, ())
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
  idx32 = jax.device_put(host.astype(np.int32))
  return ALState(
    labeled_mask=cached_ops.set_true(state.labeled_mask, idx32),
    round=state.round + 1 if advance else state.round,
    key=state.key,
    history=state.history + (idx32,),
  )


def label(state: ALState, idx: ArrayLike) -> ALState:
  """A new state with ``idx`` labeled and the round advanced by one.

  Every index is checked first (integer, in range, unique, not yet labeled);
  on any problem a ``ValueError`` is raised and nothing changes.

  Args:
    state: the current state.
    idx: ``[batch]`` integer indices into the pool, ``batch >= 1``.

  Returns:
    The new :class:`ALState`.

  Raises:
    TypeError: ``state`` is not an ``ALState``, or ``idx`` is not integer.
    ValueError: ``idx`` is empty, not ``[batch]``, out of range, duplicated or already
      labeled.
  """
  _check_state(state)
  if (hasattr(idx, "shape") or isinstance(idx, (list, tuple))) and np.size(idx) == 0:
    raise ValueError(
      f"idx is empty ({checks.describe(idx)}): a round must label at least one point"
    )
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
# Default training: cross-entropy, Adam, minibatches drawn from the labeled set only.


class TrainState(train_state_lib.TrainState):
  """Flax's ``TrainState`` with the model's non-param state beside its parameters.

  Built by :func:`create_train_state` from a linen module (``apply_fn`` is its ``apply``;
  ``model_state`` its non-param collections, e.g. ``{"batch_stats": ...}``) or an NNX module
  (``apply_fn`` holds its graph; ``params`` its ``nnx.Param`` state, ``model_state`` the rest:
  BatchNorm statistics, rng streams). :func:`fit` updates ``model_state`` in training mode;
  :func:`jaxal.models.from_train_state` reads it in evaluation mode.

  Attributes:
    step: ``[]`` int, optimiser steps taken.
    apply_fn: the linen module's ``apply``, or the NNX graph's apply object (static).
    params: the trained parameters (a pytree).
    tx: the optax optimiser (static).
    opt_state: its state.
    model_state: the non-param state (``{}`` when the model has none).
  """

  model_state: Any = struct.field(default_factory=dict)


class FitInfo(NamedTuple):
  """What :func:`fit` did (``fit(..., with_info=True)``).

  For a deep ensemble (``create_train_state(..., num_members=M)``) every field is ``[M]``,
  member ``m``'s own count or accuracy.

  Attributes:
    steps: ``[]`` int32, optimiser steps taken (``[M]`` for an ensemble).
    epochs: ``[]`` int32, passes over the labeled set (0 for the fixed-steps protocol).
    train_accuracy: ``[]`` float32, the running training accuracy of the last epoch (the
      minibatches' predictions before each step, as DISTIL and BADGE measure it); -1 for
      the fixed-steps protocol.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from jaxal import loop, models
    >>> x, y = jnp.ones((6, 5)), jnp.array([0, 1, 2, 0, 1, 2])
    >>> ts = loop.create_train_state(jax.random.key(0), models.MLP(num_classes=3), x)
    >>> _, info = loop.fit(jax.random.key(1), ts, x, y, jnp.ones(6, bool), epochs=2,
    ...                    batch_size=4, with_info=True)
    >>> int(info.epochs), int(info.steps)
    (2, 4)
  """

  steps: jax.Array  # shape=(), dtype=int32
  epochs: jax.Array  # shape=(), dtype=int32
  train_accuracy: jax.Array  # shape=(), dtype=float32


class Protocol(NamedTuple):
  """A published training protocol: :func:`fit`'s options and the optimiser's learning rate.

  ``loop.fit(key, state, x, y, mask, **protocol.fit_kwargs())`` trains as the protocol does,
  on a state made with ``create_train_state(..., tx=protocol.make_tx())``.

  Attributes:
    name: the protocol's name (a key of :data:`PROTOCOLS`).
    epochs: the most passes over the labeled set, or None (fixed steps, or no bound).
    until_train_accuracy: stop once the epoch's training accuracy reaches this, or None.
    num_steps: optimiser steps of the fixed protocol (None for an epoch protocol).
    max_steps: the bound on optimiser steps of an epoch protocol.
    batch_size: minibatch size.
    learning_rate: the optimiser's learning rate.
    source: where the settings come from.
    optimizer: ``"adam"`` (no weight decay) or ``"sgd"`` (momentum 0.9, weight decay 5e-4,
      DISTIL's default; without DISTIL's cosine schedule); :meth:`make_tx` builds it.

  Example:
    >>> from jaxal import loop
    >>> badge = loop.PROTOCOLS["badge"]
    >>> badge.learning_rate, badge.fit_kwargs()["until_train_accuracy"]
    (0.0001, 0.99)
  """

  name: str
  epochs: int | None
  until_train_accuracy: float | None
  num_steps: int | None
  max_steps: int
  batch_size: int
  learning_rate: float
  source: str
  optimizer: str = "adam"

  def make_tx(self) -> optax.GradientTransformation:
    """The protocol's optimiser, for :func:`create_train_state` (``tx=``).

    Returns:
      ``optax.adam(learning_rate)``, or SGD with momentum 0.9 and weight decay 5e-4.
    """
    if self.optimizer == "sgd":
      return optax.chain(
        optax.add_decayed_weights(5e-4), optax.sgd(self.learning_rate, momentum=0.9)
      )
    return optax.adam(self.learning_rate)

  def fit_kwargs(self) -> dict[str, Any]:
    """The keyword arguments of :func:`fit` (and :func:`run_round`) for this protocol.

    Returns:
      ``{"batch_size", ...}`` plus ``num_steps`` (fixed) or ``epochs``,
      ``until_train_accuracy`` and ``max_steps`` (epoch protocols).
    """
    if self.num_steps is not None:
      return {"num_steps": self.num_steps, "batch_size": self.batch_size}
    return {
      "epochs": self.epochs,
      "until_train_accuracy": self.until_train_accuracy,
      "max_steps": self.max_steps,
      "batch_size": self.batch_size,
    }


DEFAULT_MAX_STEPS = 10_000

PROTOCOLS: dict[str, Protocol] = {
  # Ash et al. (2020), github.com/JordanAsh/badge: query_strategies/strategy.py trains with
  # Adam (run.py: --lr 1e-4, MNIST loader batch 64) `while accCurrent < 0.99`, accCurrent
  # the running training accuracy of the epoch; re-initialised every round.
  "badge": Protocol(
    "badge", None, 0.99, None, DEFAULT_MAX_STEPS, 64, 1e-4, "Ash et al. 2020 (BADGE), strategy.py"
  ),
  # DISTIL (decile-team/distil), distil/utils/train_helper.py: `while accCurrent <
  # max_accuracy and epoch < n_epoch`, max_accuracy 0.95 and SGD (momentum 0.9, weight decay
  # 5e-4) by default; its MLP example (configs/config_2lnet_*.json): n_epoch 150, batch 32,
  # lr 1e-3.
  "distil": Protocol(
    "distil",
    150,
    0.95,
    None,
    DEFAULT_MAX_STEPS,
    32,
    1e-3,
    "DISTIL train_helper.py, configs/config_2lnet_*.json",
    "sgd",
  ),
  # jaxal's own default: a fixed number of Adam steps whatever the labeled-set size.
  "fixed": Protocol("fixed", None, None, 300, DEFAULT_MAX_STEPS, 32, 1e-3, "jaxal default"),
}
"""Named training protocols for :func:`fit` (``PROTOCOLS[name].fit_kwargs()``)."""


def create_train_state(
  key: jax.Array,
  module: Any,
  example_x: ArrayLike,
  *,
  tx: optax.GradientTransformation | None = None,
  learning_rate: float = 1e-3,
  num_members: int | None = None,
) -> TrainState:
  """A :class:`TrainState` with freshly initialised params and Adam (or ``tx``).

  ``module`` is a linen module (initialised here from ``key``, in evaluation mode; its
  non-param collections such as ``batch_stats`` go to ``model_state``), an NNX module
  instance (its parameters as they are; it cannot be re-initialised, so :func:`fit` then
  needs ``reinitialize=False``), or a function of ``rngs`` building an NNX module
  (``functools.partial(Net, din, dout)``: called as ``fn(rngs=nnx.Rngs(key))`` here and at
  every re-initialisation).

  Args:
    key: a ``jax.random.key`` for the parameters' initialisation.
    module: a linen module, an NNX module, or a function of ``rngs`` returning an NNX module.
    example_x: ``[batch, ...]`` example model input (its shape and dtype initialise the
      parameters).
    tx: the optimiser; None for ``optax.adam(learning_rate)``.
    learning_rate: Adam's learning rate when ``tx`` is None.
    num_members: None for one model; ``M >= 2`` for a deep ensemble: member ``m`` is this
      function's single-model state from ``jax.random.split(key, M)[m]`` (a linen module, or
      a function of ``rngs`` building an NNX module), every leaf stacked ``[M, ...]``;
      :func:`fit` trains all members in one vmapped step and
      :func:`jaxal.models.from_train_state` gives the ensemble model (``models.ensemble``).

  Returns:
    A :class:`TrainState` at step 0.

  Raises:
    TypeError: ``module`` is none of the three, or the function returns no NNX module.
    ValueError: ``num_members < 2``, or ``num_members`` with an NNX module instance (whose
      members could not start from different initialisations).

  Example:
    >>> import functools
    >>> import jax, jax.numpy as jnp
    >>> from flax import nnx
    >>> from jaxal import loop
    >>> class Net(nnx.Module):
    ...   def __init__(self, din, k, *, rngs):
    ...     self.body = nnx.Linear(din, 16, rngs=rngs)
    ...     self.bn = nnx.BatchNorm(16, rngs=rngs)
    ...     self.head = nnx.Linear(16, k, rngs=rngs)
    ...   def __call__(self, x):
    ...     z = jax.nn.relu(self.bn(self.body(x)))
    ...     return self.head(z), z
    >>> ts = loop.create_train_state(jax.random.key(0), functools.partial(Net, 4, 3), jnp.ones((2, 4)))
    >>> sorted(ts.model_state["bn"])
    ['mean', 'var']
  """
  checks.check_key(key)
  tx = optax.adam(checks.check_float(learning_rate, "learning_rate", low=0.0)) if tx is None else tx
  if num_members is not None:  # a deep ensemble: every leaf stacked [M, ...]
    return _create_ensemble(key, module, example_x, num_members, tx)
  if isinstance(module, nn.Module):
    params, model_state = _init_linen(key, module, example_x)
    return TrainState.create(apply_fn=module.apply, params=params, tx=tx, model_state=model_state)
  if isinstance(module, nnx.Module):
    apply_fn, params, rest = models_lib.nnx_parts(module)
  elif callable(module):
    apply_fn, params, rest = models_lib.nnx_parts(_build_nnx(module, key), module)
  else:
    raise TypeError(
      "module must be a flax.linen.Module, a flax.nnx.Module or a function of rngs returning "
      f"an NNX module, got {type(module).__name__}"
    )
  return TrainState.create(apply_fn=apply_fn, params=params, tx=tx, model_state=rest)


def _create_ensemble(
  key: jax.Array, module: Any, example_x: ArrayLike, num_members: Any, tx: Any
) -> ensembles.EnsembleTrainState:
  """Member ``m`` created as one model from ``jax.random.split(key, num_members)[m]``, stacked."""
  num_members = checks.check_int(
    num_members, "num_members", low=2, what="an ensemble of one member is not a posterior"
  )
  if isinstance(module, nnx.Module):
    raise ValueError(
      f"an ensemble of num_members={num_members} needs a fresh initialisation per member, "
      f"which an NNX module instance ({type(module).__name__}) cannot give: pass a function "
      "of rngs building it (functools.partial(Net, ...))"
    )
  x1 = np.asarray(example_x[:1])
  members = jax.vmap(lambda k: create_train_state(k, module, x1, tx=tx))(
    jax.random.split(key, num_members)
  )
  return _ensemble_of(members, num_members)


def _members_of(state: ensembles.EnsembleTrainState) -> TrainState:
  """The members as one :class:`TrainState` whose leaves are stacked ``[M, ...]``."""
  return TrainState(
    step=state.step,
    apply_fn=state.apply_fn,
    params=state.params,
    tx=state.tx,
    opt_state=state.opt_state,
    model_state=state.model_state,
  )


def _ensemble_of(members: TrainState, num_members: int) -> ensembles.EnsembleTrainState:
  """The ensemble state of members stacked ``[M, ...]`` (the inverse of :func:`_members_of`)."""
  return ensembles.EnsembleTrainState(
    step=members.step,
    apply_fn=members.apply_fn,
    params=members.params,
    tx=members.tx,
    opt_state=members.opt_state,
    model_state=members.model_state,
    num_members=num_members,
  )


def _build_nnx(init_fn: Any, key: jax.Array) -> Any:
  module = init_fn(rngs=nnx.Rngs(key))
  if not isinstance(module, nnx.Module):
    raise TypeError(
      f"the module function {init_fn!r} must return a flax.nnx.Module when called as "
      f"fn(rngs=nnx.Rngs(key)), got {type(module).__name__}"
    )
  return module


def _init_linen(key: jax.Array, module: nn.Module, example_x: ArrayLike) -> tuple[Any, dict]:
  """``(params, other collections)`` of ``module`` initialised in evaluation mode."""
  x = np.asarray(example_x[:1])
  flag, trains = models_lib.dropout_flag(module)
  kwargs = {} if flag is None else {flag: not trains}
  variables = dict(models_lib.init_variables(module, {"params": key}, x, **kwargs))
  params = variables.pop("params", {})
  return params, variables


def _with_model_state(state: Any, model_state: Any) -> Any:
  """``state`` holding ``model_state`` in the field its class has for it."""
  if hasattr(state, "model_state"):
    return state.replace(model_state=model_state)
  if not model_state:
    return state
  if hasattr(state, "batch_stats") and set(model_state) == {"batch_stats"}:
    return state.replace(batch_stats=model_state["batch_stats"])
  raise TypeError(
    f"the model has non-param state ({', '.join(sorted(model_state))}) that a "
    f"{type(state).__name__} cannot hold; create the state with jaxal.loop.create_train_state"
  )


def reinit(key: jax.Array, state: Any, example_x: ArrayLike) -> Any:
  """The same model and optimiser with new parameters and a fresh optimiser state.

  For a deep ensemble's state, member ``m`` is re-initialised from
  ``jax.random.split(key, M)[m]`` (vmapped over the members).

  Args:
    key: a ``jax.random.key`` for the new parameters.
    state: a train state (see :func:`create_train_state`; a Flax ``TrainState`` of a linen
      module works too; an ensemble's state).
    example_x: ``[batch, ...]`` example model input.

  Returns:
    The state at step 0 with the same ``apply_fn`` and ``tx``.

  Raises:
    ValueError: an NNX state made from a module instance (no function to rebuild it).

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from jaxal import loop, models
    >>> x = jnp.ones((4, 5))
    >>> ts = loop.create_train_state(jax.random.key(0), models.MLP(num_classes=3), x)
    >>> fresh = loop.reinit(jax.random.key(1), ts, x)
    >>> bool(jnp.any(fresh.params["head"]["kernel"] != ts.params["head"]["kernel"]))
    True
  """
  if isinstance(state, ensembles.EnsembleTrainState):  # member m from split(key, M)[m]
    members = jax.vmap(lambda k, st: reinit(k, st, example_x))(
      jax.random.split(key, state.num_members), _members_of(state)
    )
    return _ensemble_of(members, state.num_members)
  apply_fn, _, _ = models_lib.train_state_parts(state)
  if models_lib.is_nnx_apply(apply_fn):
    if apply_fn.init_fn is None:
      raise ValueError(
        "this NNX train state was created from a module instance, which cannot be "
        "re-initialised: pass a function of rngs (functools.partial(Net, ...)) to "
        "create_train_state, or train with reinitialize=False"
      )
    _, params, model_state = models_lib.nnx_parts(_build_nnx(apply_fn.init_fn, key))
  else:
    params, model_state = _init_linen(key, apply_fn.__self__, example_x)
  state = state.replace(step=0, params=params, opt_state=state.tx.init(params))
  return _with_model_state(state, model_state)


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
  return _weighted_ce(logits, y, weights)


def _weighted_ce(logits: jax.Array, y: jax.Array, weights: jax.Array) -> jax.Array:
  losses = optax.softmax_cross_entropy_with_integer_labels(logits, y)
  return jnp.sum(losses * weights) / jnp.maximum(jnp.sum(weights), 1.0)


def _step(state, x, y, w, dropout_key):
  """One optimiser step in training mode: ``(state, loss, weighted correct count)``."""
  apply_fn, params, model_state = models_lib.train_state_parts(state)
  model, _ = models_lib.from_train_state(state)
  if dropout_key is None:

    def loss(p):
      logits, _ = models_lib.apply(model, _merge(apply_fn, p, model_state), x, None)
      return _weighted_ce(logits, y, w), (logits, model_state)

  else:

    def loss(p):
      out, new_state = model.apply.train_forward(p, model_state, x, dropout_key)
      logits, _ = models_lib.canonical_output(out)
      return _weighted_ce(logits, y, w), (logits, new_state)

  (value, (logits, new_state)), grads = jax.value_and_grad(loss, has_aux=True)(params)
  correct = jnp.sum((jnp.argmax(logits, -1) == y).astype(jnp.float32) * w)
  state = _with_model_state(state.apply_gradients(grads=grads), new_state)
  return state, value, correct


def _merge(apply_fn: Any, params: Any, model_state: Any) -> Any:
  """The ``params`` argument of the evaluation model of a train state's parts."""
  if models_lib.is_nnx_apply(apply_fn):
    return nnx.merge_state(params, model_state)
  return {"params": params, **model_state} if model_state else params


def train_step(
  state: Any,
  batch: tuple[jax.Array, jax.Array, jax.Array],
  dropout_key: jax.Array | None = None,
) -> tuple[Any, dict[str, jax.Array]]:
  """One Adam step on ``batch = (x [B, ...], y [B] int, weights [B])``, in training mode.

  With a dropout key the model runs in training mode (``train=True`` / ``deterministic=False``
  / ``model.train()``; dropout on, BatchNorm on batch statistics, its running averages
  updated in ``model_state``); with None, the deterministic evaluation forward.

  Args:
    state: a train state (see :func:`create_train_state`).
    batch: ``(x, y, weights)``: ``[B, ...]`` model input, ``[B]`` integer labels and ``[B]``
      float weights (see :func:`loss_fn`).
    dropout_key: a ``jax.random.key`` for dropout, or None for the deterministic forward.

  Returns:
    ``(new_state, metrics)``: the state after one optimiser step and ``{"loss": [] float32,
    "accuracy": [] float32}``, the weighted loss and accuracy of the batch before the step.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from jaxal import loop, models
    >>> x, y = jnp.ones((4, 5)), jnp.array([0, 1, 2, 0])
    >>> ts = loop.create_train_state(jax.random.key(0), models.MLP(num_classes=3), x)
    >>> ts, metrics = loop.train_step(ts, (x, y, jnp.ones(4)), jax.random.key(1))
    >>> int(ts.step), sorted(metrics)
    (1, ['accuracy', 'loss'])
  """
  x, y, w = batch
  try:  # the model and the optimiser are the state's static part: jit keys on them
    hash(jax.tree.structure(state))
  except TypeError:
    return _train_step_eager(state, x, y, w, dropout_key)
  return _train_step(state, x, y, w, dropout_key)


def _train_step_eager(state, x, y, w, dropout_key):
  with jax.numpy_dtype_promotion("standard"):  # optax's Adam mixes floats and int32 counts
    state, loss, correct = _step(state, x, y, w, dropout_key)
  return state, {"loss": loss, "accuracy": correct / jnp.maximum(jnp.sum(w), 1.0)}


# One compiled step (traced once per state structure and batch shape); eagerly, each of the
# forward's, the gradient's and Adam's operations is a program and a dispatch of its own
# (benchmarks/results/construction.md, ``train_steps``).
_train_step = jax.jit(_train_step_eager)


@functools.partial(jax.jit, static_argnames=("batch_size", "by_epoch"))
def _fit(key, state, x, y, labeled_mask, limits, batch_size, by_epoch):
  num_steps, epochs, target, max_steps = limits
  if not by_epoch:  # the fixed protocol: num_steps draws with replacement from the labeled set
    p = labeled_mask.astype(jnp.float32)
    p = p / jnp.sum(p)

    def body(i, st):
      k_batch, k_drop = jax.random.split(jax.random.fold_in(key, i))
      idx = jax.random.choice(k_batch, x.shape[0], (batch_size,), replace=True, p=p)
      st, _, _ = _step(st, x[idx], y[idx], jnp.ones((batch_size,), jnp.float32), k_drop)
      return st

    state = jax.lax.fori_loop(0, num_steps, body, state)
    return state, FitInfo(num_steps, jnp.int32(0), jnp.float32(-1.0))

  # Epochs over the labeled points only: each epoch a fresh random order of them (labeled
  # first in a permutation of the pool), ceil(n / batch_size) minibatches; the last one wraps
  # around to the epoch's first points with weight 0, so every row read is labeled.
  n_lab = jnp.sum(labeled_mask, dtype=jnp.int32)
  per_epoch = (n_lab + batch_size - 1) // batch_size
  offsets = jnp.arange(batch_size, dtype=jnp.int32)

  def epoch_cond(carry):
    _, step, epoch, acc = carry
    return (epoch < epochs) & (acc < target) & (step < max_steps)

  def epoch_body(carry):
    st, step, epoch, _ = carry
    k_epoch = jax.random.fold_in(key, epoch)
    u = jax.random.uniform(jax.random.fold_in(k_epoch, 0), labeled_mask.shape)
    order = jnp.argsort(jnp.where(labeled_mask, u, 2.0)).astype(jnp.int32)

    def batch_cond(c):
      b, _, step, _ = c
      return (b < per_epoch) & (step < max_steps)

    def batch_body(c):
      b, st, step, correct = c
      pos = b * batch_size + offsets
      idx = order[pos % n_lab]
      w = (pos < n_lab).astype(jnp.float32)
      k_drop = jax.random.fold_in(jax.random.fold_in(k_epoch, 1), b)
      st, _, corr = _step(st, x[idx], y[idx], w, k_drop)
      return b + 1, st, step + 1, correct + corr

    b, st, step, correct = jax.lax.while_loop(
      batch_cond, batch_body, (jnp.int32(0), st, step, jnp.float32(0.0))
    )
    seen = jnp.minimum(b * batch_size, n_lab)
    return st, step, epoch + 1, correct / jnp.maximum(seen, 1).astype(jnp.float32)

  state, steps, epochs_run, acc = jax.lax.while_loop(
    epoch_cond, epoch_body, (state, jnp.int32(0), jnp.int32(0), jnp.float32(-1.0))
  )
  return state, FitInfo(steps, epochs_run, acc)


def fit(
  key: jax.Array,
  state: Any,
  x: ArrayLike,
  y: ArrayLike,
  labeled_mask: ArrayLike,
  *,
  num_steps: int | None = None,
  batch_size: int = 32,
  reinitialize: bool = True,
  epochs: int | None = None,
  until_train_accuracy: float | None = None,
  max_steps: int = DEFAULT_MAX_STEPS,
  with_info: bool = False,
) -> Any:
  """Trains on the labeled points of the pool; only labeled rows of ``x`` and ``y`` are read.

  Two protocols, each one jitted loop whose shapes never depend on how many points are
  labeled (one compile serves every round):

  - **fixed** (``epochs`` and ``until_train_accuracy`` None): ``num_steps`` (default 300)
    Adam steps, each on a minibatch drawn uniformly with replacement from the labeled points
    (a ``jax.lax.fori_loop``).
  - **epochs** (DISTIL's and BADGE's protocol): passes over the labeled set in a fresh random
    order each epoch, ``ceil(num_labeled / batch_size)`` minibatches per epoch (the last one
    completed with weight-0 labeled points), until the epoch's running training accuracy
    (the minibatches' predictions before each step) reaches ``until_train_accuracy``, or
    ``epochs`` epochs, or ``max_steps`` steps in all, whichever comes first (nested
    ``jax.lax.while_loop`` s).

  The model trains in training mode (dropout on, BatchNorm on batch statistics with its
  running averages updated in the state's ``model_state``).

  A deep ensemble's state (``create_train_state(..., num_members=M)``) trains with any of
  the protocols, all members in one jitted program: member ``m`` goes through exactly what
  this function does to a single model with key ``jax.random.split(key, M)[m]`` (the same
  loop body, ``jax.vmap`` ped over the members' keys and stacked ``[M, ...]`` leaves).
  Under the epoch protocol each member stops on its own condition: the vmapped
  ``while_loop`` runs until every member is done, and a member's state stays as it was from
  the iteration its own condition turned false; :class:`FitInfo`'s fields are then ``[M]``.

  Args:
    key: a ``jax.random.key`` (initialisation, minibatches, dropout).
    state: a train state (see :func:`create_train_state`; linen, linen with BatchNorm, NNX,
      or a deep ensemble of ``M`` members), or a Flax ``TrainState`` of a linen module.
    x: ``[num_points, ...]`` pool inputs.
    y: ``[num_points]`` integer labels (only labeled entries are read).
    labeled_mask: ``[num_points]`` bool.
    num_steps: optimisation steps of the fixed protocol (default 300); not with ``epochs``
      or ``until_train_accuracy``.
    batch_size: minibatch size.
    reinitialize: start from fresh parameters (the protocol of Ash et al.
      2020 and DISTIL) rather than warm-starting from ``state``.
    epochs: the most epochs, or None (no bound but ``max_steps``).
    until_train_accuracy: stop once an epoch's training accuracy is at least this, in
      ``(0, 1]``; None trains ``epochs`` epochs.
    max_steps: the bound on optimisation steps of the epoch protocol.
    with_info: also return a :class:`FitInfo` (steps, epochs, last training accuracy).

  Returns:
    The trained state, or ``(state, FitInfo)`` with ``with_info=True``.

  Raises:
    TypeError: a non-integer count, a non-bool flag, a non-integer ``y``.
    ValueError: ``batch_size < 1``, a bound out of range, ``num_steps`` given with an epoch
      protocol, no labeled point, or mismatched shapes.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from jaxal import datasets, loop, models
    >>> ds = datasets.load_digits()
    >>> x, y = ds.x_train[:200], ds.y_train[:200]
    >>> mask = jnp.zeros(200, bool).at[:50].set(True)
    >>> ts = loop.create_train_state(jax.random.key(0), models.MLP(num_classes=10), x)
    >>> ts, info = loop.fit(jax.random.key(1), ts, x, y, mask, until_train_accuracy=0.99,
    ...                     max_steps=2000, with_info=True, **{"batch_size": 16})
    >>> bool(info.train_accuracy >= 0.99), int(info.steps) == int(info.epochs) * 4
    (True, True)
  """
  checks.check_key(key)
  x, y = _check_xy(x, y)
  mask = checks.check_labeled_mask(labeled_mask, x.shape[0])
  opts = _check_fit_options(
    num_steps, batch_size, reinitialize, epochs, until_train_accuracy, max_steps
  )
  with_info = checks.check_bool(with_info, "with_info")
  state, info = _fit_checked(key, state, x, y, mask, *opts)
  return (state, info) if with_info else state


def _check_xy(x: Any, y: Any) -> tuple[jax.Array, jax.Array]:
  """The pool and its labels as arrays with as many points; ``y`` integer."""
  x = jnp.asarray(x)
  y = jnp.asarray(y)
  checks.check_same_n("x", x, "y", y)
  if not jnp.issubdtype(y.dtype, jnp.integer):
    raise TypeError(f"y must hold integer class labels, got dtype {y.dtype} and shape {y.shape}")
  return x, y


def _check_fit_options(
  num_steps: Any,
  batch_size: Any,
  reinitialize: Any,
  epochs: Any = None,
  until_train_accuracy: Any = None,
  max_steps: Any = DEFAULT_MAX_STEPS,
) -> tuple[bool, tuple, int, bool]:
  """``(by_epoch, limits, batch_size, reinitialize)`` with ``limits`` the loop's bounds."""
  batch_size = checks.check_positive_int(batch_size, "batch_size")
  reinitialize = checks.check_bool(reinitialize, "reinitialize")
  by_epoch = epochs is not None or until_train_accuracy is not None
  if not by_epoch:
    steps = 300 if num_steps is None else checks.check_nonnegative_int(num_steps, "num_steps")
    return (
      False,
      (jnp.int32(steps), jnp.int32(0), jnp.float32(0.0), jnp.int32(0)),
      batch_size,
      (reinitialize),
    )
  if num_steps is not None:
    raise ValueError(
      f"num_steps={num_steps!r} is the fixed protocol's step count; with epochs or "
      "until_train_accuracy, bound the steps with max_steps"
    )
  epochs = np.iinfo(np.int32).max if epochs is None else checks.check_positive_int(epochs, "epochs")
  target = (
    2.0
    if until_train_accuracy is None
    else checks.check_float(
      until_train_accuracy, "until_train_accuracy", low=0.0, high=1.0, low_open=True
    )
  )
  max_steps = checks.check_positive_int(max_steps, "max_steps")
  limits = (jnp.int32(0), jnp.int32(epochs), jnp.float32(target), jnp.int32(max_steps))
  return True, limits, batch_size, reinitialize


def _fit_checked(
  key: jax.Array,
  state: Any,
  x: jax.Array,
  y: jax.Array,
  mask: jax.Array,
  by_epoch: bool,
  limits: tuple,
  batch_size: int,
  reinitialize: bool,
) -> tuple[Any, FitInfo]:
  """:func:`fit` on validated arguments (``mask`` a ``[num_points]`` bool array)."""
  if not cached_ops.any_bool(mask):
    raise ValueError("fit needs at least one labeled point; labeled_mask is all False")
  models_lib.train_state_parts(state)  # a TypeError for a foreign state, before any work
  if isinstance(state, ensembles.EnsembleTrainState):  # all members in one vmapped fit
    return _fit_ensemble(key, state, x, y, mask, by_epoch, limits, batch_size, reinitialize)
  k_init, k_fit = jax.random.split(key)
  if reinitialize:
    state = reinit(k_init, state, x)
  # optax's Adam mixes Python floats with int32 step counts, which a caller's
  # strict dtype-promotion setting would reject: trace under standard rules.
  with jax.numpy_dtype_promotion("standard"):
    return _fit(k_fit, state, x, y.astype(jnp.int32), mask, limits, batch_size, by_epoch)


def _fit_ensemble(
  key: jax.Array,
  state: ensembles.EnsembleTrainState,
  x: jax.Array,
  y: jax.Array,
  mask: jax.Array,
  by_epoch: bool,
  limits: tuple,
  batch_size: int,
  reinitialize: bool,
) -> tuple[ensembles.EnsembleTrainState, FitInfo]:
  """:func:`_fit_checked` of every member at once: member ``m`` with ``split(key, M)[m]``.

  Each member goes through exactly the single model's procedure (re-initialisation from the
  first half of its key, then :func:`_fit` from the second), vmapped over the members.
  """
  keys = jax.vmap(jax.random.split)(jax.random.split(key, state.num_members))  # [M, 2]
  members = _members_of(state)
  if reinitialize:
    members = jax.vmap(lambda k, st: reinit(k, st, x))(keys[:, 0], members)
  with jax.numpy_dtype_promotion("standard"):
    members, info = _fit_members(
      keys[:, 1], members, x, y.astype(jnp.int32), mask, limits, batch_size, by_epoch
    )
  return _ensemble_of(members, state.num_members), info


@functools.partial(jax.jit, static_argnames=("batch_size", "by_epoch"))
def _fit_members(keys, members, x, y, labeled_mask, limits, batch_size, by_epoch):
  # `_fit`'s body on each member, vmapped over the members' keys [M] and leaves [M, ...].
  # The epoch protocol's while_loops have a per-member condition: vmapped, each loop runs
  # until every member's condition is false, and a member's carry is frozen (a select) from
  # the iteration its own condition turns false, so each member stops exactly as it would
  # alone.
  return jax.vmap(lambda k, st: _fit(k, st, x, y, labeled_mask, limits, batch_size, by_epoch))(
    keys, members
  )


# ---------------------------------------------------------------------------
# Checkpoints of train states (orbax-checkpoint, imported on first use: `import jaxal` stays fast).


def _leaves(state: Any) -> list[tuple[str, Any]]:
  return [(jax.tree_util.keystr(p), l) for p, l in jax.tree_util.tree_flatten_with_path(state)[0]]


def _saveable(leaf: Any) -> Any:
  if checks.is_key(leaf):
    return jax.random.key_data(leaf)
  return leaf if isinstance(leaf, jax.Array) else np.asarray(leaf)


def save_train_state(path: str, state: Any, *, overwrite: bool = False) -> str:
  """Writes every array of a train state to the folder ``path`` with orbax-checkpoint, atomically.

  Works for any train state (linen with ``batch_stats``, NNX, parameters sharded over a
  mesh: each process writes its shards). The state is written to a temporary folder beside
  ``path`` and renamed into place, so ``path`` holds either the previous complete checkpoint
  or the new one, never a partial one. Static parts (the module, the optimiser) are not
  written: :func:`restore_train_state` takes them from a template.

  Args:
    path: the checkpoint folder.
    state: a train state (any pytree of arrays: typed rng keys are written as key data).
    overwrite: replace an existing checkpoint at ``path``.

  Returns:
    The absolute path written.

  Raises:
    FileExistsError: ``path`` exists and ``overwrite`` is False.

  Example:
    >>> import os, tempfile
    >>> import jax, jax.numpy as jnp
    >>> from jaxal import loop, models
    >>> ts = loop.create_train_state(jax.random.key(0), models.MLP(num_classes=3), jnp.ones((2, 4)))
    >>> path = loop.save_train_state(os.path.join(tempfile.mkdtemp(), "ckpt"), ts)
    >>> back = loop.restore_train_state(path, ts)
    >>> bool(jnp.all(back.params["head"]["kernel"] == ts.params["head"]["kernel"]))
    True
  """
  import orbax.checkpoint as ocp

  overwrite = checks.check_bool(overwrite, "overwrite")
  path = os.path.abspath(os.fspath(path))
  if os.path.exists(path) and not overwrite:
    raise FileExistsError(f"a checkpoint exists at {path}; pass overwrite=True to replace it")
  tree = {f"{i:05d}": _saveable(leaf) for i, (_, leaf) in enumerate(_leaves(state))}
  parent = os.path.dirname(path)
  os.makedirs(parent, exist_ok=True)
  tmp = os.path.join(parent, f".{os.path.basename(path)}.partial-{uuid.uuid4().hex}")
  with ocp.StandardCheckpointer() as ckptr:
    ckptr.save(tmp, tree)
    ckptr.wait_until_finished()
  if os.path.exists(path):
    old = tmp + ".old"
    os.rename(path, old)
    os.rename(tmp, path)
    shutil.rmtree(old)
  else:
    os.rename(tmp, path)
  return path


def restore_train_state(path: str, like: Any) -> Any:
  """The train state saved at ``path`` by :func:`save_train_state`, shaped as ``like``.

  ``like`` is a train state of the same model (``create_train_state`` with the same module
  and optimiser): its structure, static parts, dtypes and shardings (a parameter sharded
  over a mesh comes back sharded the same way) are those of the result.

  Args:
    path: the checkpoint folder.
    like: the template train state.

  Returns:
    The restored state.

  Raises:
    FileNotFoundError: no checkpoint at ``path``.
    ValueError: the checkpoint does not match ``like`` (another model: leaf count or shapes).

  Example:
    >>> import os, tempfile
    >>> import jax, jax.numpy as jnp
    >>> from jaxal import loop, models
    >>> x = jnp.ones((2, 4))
    >>> ts = loop.create_train_state(jax.random.key(0), models.MLP(num_classes=3), x)
    >>> path = loop.save_train_state(os.path.join(tempfile.mkdtemp(), "ckpt"), ts)
    >>> other = loop.create_train_state(jax.random.key(1), models.MLP(num_classes=3), x)
    >>> int(loop.restore_train_state(path, other).step)
    0
  """
  import orbax.checkpoint as ocp

  path = os.path.abspath(os.fspath(path))
  if not os.path.isdir(path):
    raise FileNotFoundError(f"no train-state checkpoint at {path}")
  leaves = _leaves(like)
  abstract = {}
  for i, (_, leaf) in enumerate(leaves):
    value = _saveable(leaf)
    sharding = getattr(leaf, "sharding", None)
    abstract[f"{i:05d}"] = jax.ShapeDtypeStruct(value.shape, value.dtype, sharding=sharding)
  with ocp.StandardCheckpointer() as ckptr:
    stored = ckptr.metadata(path)
    stored_tree = getattr(stored, "item_metadata", stored)
    if stored_tree is not None and len(stored_tree) != len(abstract):
      raise ValueError(
        f"the checkpoint at {path} holds {len(stored_tree)} arrays, the template "
        f"{len(abstract)}: it was saved from another model"
      )
    try:
      restored = ckptr.restore(path, abstract)
    except (ValueError, KeyError) as e:
      raise ValueError(f"the checkpoint at {path} does not match the template: {e}") from e
  out = []
  for i, (_, leaf) in enumerate(leaves):
    value = restored[f"{i:05d}"]
    if checks.is_key(leaf):
      value = jax.random.wrap_key_data(value, impl=jax.random.key_impl(leaf))
    elif not isinstance(leaf, jax.Array):
      value = type(leaf)(np.asarray(value)) if np.ndim(leaf) == 0 else np.asarray(value)
    out.append(value)
  return jax.tree.unflatten(jax.tree.structure(like), out)


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
  train_state: Any,
  *,
  strategy: Strategy,
  x: ArrayLike,
  y: ArrayLike,
  budget: int,
  num_steps: int | None = None,
  batch_size: int = 32,
  reinitialize: bool = True,
  epochs: int | None = None,
  until_train_accuracy: float | None = None,
  max_steps: int = DEFAULT_MAX_STEPS,
) -> tuple[ALState, Any, jax.Array]:
  """Train on the labeled set, acquire ``budget`` points, label them.

  ``y`` holds the oracle's labels; only labeled entries are ever read. Every argument,
  ``budget`` included, is checked before any training, so a bad call changes nothing and
  costs nothing.

  Args:
    state: the current state.
    train_state: a train state (see :func:`create_train_state`).
    strategy: a :class:`jaxal.strategies.Strategy`.
    x: ``[num_points, ...]`` pool inputs.
    y: ``[num_points]`` integer labels (only labeled entries are read).
    budget: how many points to acquire.
    num_steps: optimisation steps of the fixed protocol, as :func:`fit`.
    batch_size: minibatch size, as :func:`fit`.
    reinitialize: as :func:`fit`.
    epochs: as :func:`fit`.
    until_train_accuracy: as :func:`fit`.
    max_steps: as :func:`fit`.

  Returns:
    ``(new_state, trained_state, idx)``: the state with the acquired points labeled, the
    train state after training, and the ``[budget]`` int32 indices acquired.

  Raises:
    TypeError: a bad state, strategy, count or flag.
    ValueError: a bad budget (not positive, larger than the unlabeled pool), bad training
      options, or mismatched shapes.

  Example:
    >>> import jax
    >>> from jaxal import datasets, loop, models, strategies
    >>> ds = datasets.load_digits()
    >>> x, y = ds.x_train[:200], ds.y_train[:200]
    >>> state = loop.init(jax.random.key(0), len(x), num_initial=20)
    >>> ts = loop.create_train_state(jax.random.key(1), models.MLP(num_classes=10), x)
    >>> state, ts, idx = loop.run_round(
    ...   state, ts, strategy=strategies.margin(), x=x, y=y, budget=10,
    ...   **loop.PROTOCOLS["distil"].fit_kwargs())
    >>> state.num_labeled, idx.shape
    (30, (10,))
  """
  _check_state(state)
  _check_strategy(strategy)
  x, y = _check_xy(x, y)
  checks.check_same_n("x", x, "state.labeled_mask", state.labeled_mask)
  opts = _check_fit_options(
    num_steps, batch_size, reinitialize, epochs, until_train_accuracy, max_steps
  )
  budget = checks.check_budget(budget, x.shape[0], state.labeled_mask, name="budget")
  models_lib.train_state_parts(train_state)  # a foreign state fails before training
  k_train, _ = round_keys(state)
  train_state, _ = _fit_checked(k_train, train_state, x, y, state.labeled_mask, *opts)
  model, params = models_lib.from_train_state(train_state)
  new_state, idx = _acquire(state, strategy, model, params, x, budget)
  return new_state, train_state, idx
