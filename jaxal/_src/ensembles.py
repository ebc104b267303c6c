"""Deep ensembles as a posterior: members' params stacked along a leading axis, forward vmapped."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import flax
import jax
import jax.numpy as jnp
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
  """A train state of ``num_members`` members, every array leaf stacked ``[M, ...]``.

  Built by ``loop.create_train_state(..., num_members=M)`` (a linen module, with or without
  BatchNorm, or a function of ``rngs`` building an NNX module); ``loop.fit`` and
  ``loop.run_round`` train all members in one vmapped step with any of ``loop.fit``'s
  protocols, and ``models.from_train_state`` gives the ensemble model (see :func:`ensemble`).

  Attributes:
    model_state: the members' non-param state (BatchNorm statistics, NNX rng streams),
      stacked ``[M, ...]``; ``{}`` when the model has none.
    num_members: ``M``, the number of members (static).
  """

  model_state: Any = flax.struct.field(default_factory=dict)
  num_members: int = flax.struct.field(pytree_node=False, default=2)

  def ensemble_model(self) -> tuple[models_lib.Model, Any]:
    """``(ensemble model, stacked params [M, ...])``, as :func:`ensemble` returns."""
    member, params = models_lib.model_from_parts(self)
    return models_lib.Model(EnsembleApply(member.apply, self.num_members), member.head), params
