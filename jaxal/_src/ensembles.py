"""Deep ensembles as a posterior: members' params stacked along a leading axis, forward vmapped."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax.training import train_state as train_state_lib

from jaxal._src import checks
from jaxal._src import models as models_lib


def _member_logits(member_apply, params, x):
  return jax.vmap(lambda p: models_lib.apply(models_lib.Model(member_apply), p, x)[0])(params)


@dataclasses.dataclass(frozen=True)
class EnsembleApply:
  """The apply function of an ensemble ``Model`` (hashable: one compile per shape).

  ``self(params, x, dropout_key)`` returns the log of the members' mean predictive
  ``[B, K]`` (deterministic: every member runs without dropout); ``predict_members``
  gives the members' own logits ``[M, N, K]``, what ``models.predict_mc`` returns.
  """

  member_apply: Any
  num_members: int

  def __call__(self, params, x, dropout_key=None):
    del dropout_key  # the members are the posterior samples: no dropout
    logp = jax.nn.log_softmax(_member_logits(self.member_apply, params, x).astype(jnp.float32))
    return jax.nn.logsumexp(logp, axis=0) - jnp.log(float(self.num_members))

  def predict_members(self, params, x, batch_size):
    x, batch_size = models_lib.check_pool(x, batch_size)
    outs = []
    for _, b, xb in models_lib.batches(x, batch_size):
      outs.append(_members_batch(self.member_apply, params, xb)[:, :b])
    return jnp.concatenate(outs, axis=1)


@functools.partial(jax.jit, static_argnums=0)
def _members_batch(member_apply, params, xb):
  return _member_logits(member_apply, params, xb).astype(jnp.float32)


def ensemble(
  key: jax.Array,
  model: models_lib.Model,
  init_fn: Callable[[jax.Array], Any],
  num_members: int,
) -> tuple[models_lib.Model, Any]:
  """A deep ensemble of ``num_members`` copies of ``model``, each from its own key.

  Member ``m`` is initialised by ``init_fn(jax.random.split(key, num_members)[m])``; the
  members' params are stacked along a new leading axis (every leaf ``[M, ...]``) by
  ``jax.vmap(init_fn)``. The returned model's forward vmaps ``model.apply`` over the members:
  its deterministic pass (``models.predict``, ``loop.accuracy``) gives the log of the
  members' mean predictive ``[N, K]``, and ``models.predict_mc`` gives the members' logits
  ``[M, N, K]`` — deterministic, the key, ``num_samples`` and ``consistent`` ignored — so every
  score of MC samples (BALD, BatchBALD, mean std, variation ratio, EPIG) and every MC strategy
  takes the ensemble as its posterior samples. Features are not returned.

  Args:
    key: a ``jax.random.key``, split into one key per member.
    model: one member's :class:`jaxal.models.Model`.
    init_fn: ``init_fn(key) -> params`` of one member, a pytree of arrays (each leaf
      ``[...]``, stacked to ``[M, ...]``); traceable, since it is vmapped.
    num_members: ``M >= 2``.

  Returns:
    ``(ensemble_model, params)``: a :class:`jaxal.models.Model` and the stacked params.

  Raises:
    TypeError: a legacy key, a non-Model ``model``, a non-callable ``init_fn``, a non-int
      ``num_members``.
    ValueError: ``num_members < 2`` (an ensemble of one member is not a posterior).

  Example:
    >>> import jax
    >>> from jaxal import models, networks
    >>> x = jax.random.normal(jax.random.key(0), (6, 4))
    >>> module = networks.MLP(num_classes=3, hidden=(8,))
    >>> model, params = models.ensemble(
    ...   jax.random.key(1),
    ...   models.from_linen(module),
    ...   lambda k: models.init_params(k, module, x),
    ...   5,
    ... )
    >>> models.predict_mc(jax.random.key(2), model, params, x, num_samples=5).shape
    (5, 6, 3)

  References:
    Lakshminarayanan, Pritzel & Blundell, Simple and Scalable Predictive Uncertainty
    Estimation using Deep Ensembles, NeurIPS 2017; Beluch et al., The power of ensembles for
    active learning in image classification, CVPR 2018.
  """
  checks.check_key(key)
  if not isinstance(model, models_lib.Model):
    raise TypeError(f"model must be a jaxal.models.Model, got {type(model).__name__}")
  if not callable(init_fn):
    raise TypeError(f"init_fn must be a function key -> params, got {type(init_fn).__name__}")
  num_members = checks.check_int(
    num_members, "num_members", low=2, what="an ensemble of one member is not a posterior"
  )
  params = jax.vmap(init_fn)(jax.random.split(key, num_members))
  return models_lib.Model(EnsembleApply(model.apply, num_members), model.head), params


class EnsembleTrainState(train_state_lib.TrainState):
  """A linen ``TrainState`` of ``num_members`` members, every array leaf stacked ``[M, ...]``.

  Built by ``loop.create_train_state(..., num_members=M)``; ``loop.fit`` and
  ``loop.run_round`` train all members in one vmapped step, and
  ``models.from_train_state`` gives the ensemble model (see :func:`ensemble`).

  Attributes:
    num_members: ``M``, the number of members (static).
  """

  num_members: int = flax.struct.field(pytree_node=False, default=2)

  def ensemble_model(self) -> tuple[models_lib.Model, Any]:
    """``(ensemble model, stacked params [M, ...])``, as :func:`ensemble` returns."""
    member = models_lib.from_linen(self.apply_fn.__self__)
    return models_lib.Model(EnsembleApply(member.apply, self.num_members), member.head), self.params


def _member_state(key, module, example_x, tx):
  params = module.init({"params": key}, example_x[:1])["params"]
  return train_state_lib.TrainState.create(apply_fn=module.apply, params=params, tx=tx)


def create_train_state(
  key: jax.Array, module: Any, example_x: Any, num_members: Any, tx: Any
) -> EnsembleTrainState:
  """Member ``m`` initialised from ``jax.random.split(key, num_members)[m]``, stacked."""
  checks.check_key(key)
  num_members = checks.check_int(
    num_members, "num_members", low=2, what="an ensemble of one member is not a posterior"
  )
  x1 = jnp.asarray(np.asarray(example_x[:1]))
  states = jax.vmap(lambda k: _member_state(k, module, x1, tx))(jax.random.split(key, num_members))
  return EnsembleTrainState(
    step=states.step,
    apply_fn=states.apply_fn,
    params=states.params,
    tx=states.tx,
    opt_state=states.opt_state,
    num_members=num_members,
  )


def _member_fit(key, state, module, x, y, labeled_mask, num_steps, batch_size, reinitialize):
  # The same procedure as ``loop.fit`` on one member: a fresh init from the first half of the
  # key, then ``num_steps`` Adam steps on minibatches drawn from the labeled points.
  k_init, k_fit = jax.random.split(key)
  if reinitialize:
    state = _member_state(k_init, module, x, state.tx)
  model = models_lib.from_linen(module)
  p = labeled_mask.astype(jnp.float32)
  p = p / jnp.sum(p)

  def loss(params, xb, yb, k_drop):
    logits, _ = models_lib.apply(model, params, xb, k_drop)
    return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, yb))

  def body(i, st):
    k_batch, k_drop = jax.random.split(jax.random.fold_in(k_fit, i))
    idx = jax.random.choice(k_batch, x.shape[0], (batch_size,), replace=True, p=p)
    grads = jax.grad(loss)(st.params, x[idx], y[idx], k_drop)
    return st.apply_gradients(grads=grads)

  return jax.lax.fori_loop(0, num_steps, body, state)


@functools.partial(jax.jit, static_argnames=("num_steps", "batch_size", "reinitialize"))
def _fit(key, state, x, y, labeled_mask, num_steps, batch_size, reinitialize):
  module = state.apply_fn.__self__
  member = train_state_lib.TrainState(
    step=state.step,
    apply_fn=state.apply_fn,
    params=state.params,
    tx=state.tx,
    opt_state=state.opt_state,
  )
  keys = jax.random.split(key, state.num_members)
  fitted = jax.vmap(
    lambda k, st: _member_fit(
      k, st, module, x, y, labeled_mask, num_steps, batch_size, reinitialize
    )
  )(keys, member)
  return state.replace(step=fitted.step, params=fitted.params, opt_state=fitted.opt_state)


def fit(key, state, x, y, labeled_mask, num_steps, batch_size, reinitialize):
  """``loop.fit`` on an :class:`EnsembleTrainState` (validated arguments): one vmapped fit.

  Member ``m`` is fitted with ``jax.random.split(key, M)[m]`` exactly as ``loop.fit`` fits a
  single model with that key, all members in one jitted, vmapped ``fori_loop``.
  """
  if not bool(jnp.any(labeled_mask)):
    raise ValueError("fit needs at least one labeled point; labeled_mask is all False")
  with jax.numpy_dtype_promotion("standard"):
    return _fit(
      key, state, x, y.astype(jnp.int32), labeled_mask, num_steps, batch_size, reinitialize
    )
