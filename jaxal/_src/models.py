"""The model interface: logits, features and MC-dropout passes from any Flax model.

A :class:`Model` is a small immutable value holding one pure function,
``apply(params, x, dropout_key) -> (logits, features)``, and the parameter
path of the last layer. It is built from a linen module or ``TrainState``
(:func:`from_linen`, :func:`from_train_state`), an NNX module through
``nnx.split`` (:func:`from_nnx`), or any function (:func:`from_apply_fn`).
Linen modules may take ``train=`` or Flax's ``deterministic=`` (read off the
signature) and carry non-param collections such as ``batch_stats``; every
pass runs in evaluation mode (running averages, nothing updated), and an
MC-dropout pass turns on the dropout layers only. :func:`load_factory` loads
a user's ``package.module:factory`` returning a linen or NNX module.
Models return either logits ``[B, K]`` or a pair ``(logits [B, K], features
[B, d])``; features are the penultimate activations (the last layer's input).

:func:`predict` and :func:`predict_mc` run a model over a whole pool in
fixed-size padded batches with one jitted step, so one compile serves every
round and every pool size.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import inspect
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

from jaxal._src import cached_ops
from jaxal._src import checks
from jaxal._src import executables
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


AUTO = "auto"
"""The default of :func:`from_linen`'s ``train_kwarg`` / ``deterministic_kwarg``: read the
module's ``__call__`` signature to tell which keyword switches training mode."""


def _mc_dropout(counter: list, next_fun, args, kwargs, context):
  """A linen method interceptor: every ``nn.Dropout`` draws its mask, whatever its flag.

  The rest of the module runs as called (evaluation mode: BatchNorm on its running
  averages); ``counter`` records each active dropout layer, so a pass without one can be
  refused instead of returning deterministic "samples". The mask is drawn exactly as
  ``nn.Dropout`` draws it (same rng stream, same Bernoulli call).
  """
  module = context.module
  if not isinstance(module, nn.Dropout) or context.method_name != "__call__":
    return next_fun(*args, **kwargs)
  inputs = args[0] if args else kwargs["inputs"]
  rng = kwargs.get("rng", args[2] if len(args) > 2 else None)
  if module.rate == 0.0:
    return inputs
  counter.append(module.rate)
  if module.rate == 1.0:
    return jnp.zeros_like(inputs)
  keep = 1.0 - module.rate
  if rng is None:
    rng = module.make_rng(module.rng_collection)
  shape = list(inputs.shape)
  for dim in module.broadcast_dims:
    shape[dim] = 1
  mask = jnp.broadcast_to(jax.random.bernoulli(rng, p=keep, shape=shape), inputs.shape)
  return jax.lax.select(mask, inputs / keep, jnp.zeros_like(inputs))


def _no_dropout_error(kind: str) -> ValueError:
  return ValueError(
    f"MC dropout needs a dropout layer, but this {kind} model ran none with a rate above 0: "
    "every 'sample' would be the same deterministic forward. Add a dropout layer "
    f"({'nn.Dropout' if kind == 'linen' else 'nnx.Dropout(rate, rngs=rngs)'}) or use a "
    "deterministic strategy"
  )


@dataclasses.dataclass(frozen=True)
class _LinenApply:
  module: nn.Module
  flag: str | None  # the keyword that switches training mode, or None
  flag_trains: bool  # flag=True trains (`train=`) or flag=False trains (`deterministic=`)
  collection: str
  collections: tuple[str, ...] = ()  # non-param collections: params is then the whole dict

  def _flag(self, training: bool) -> dict[str, bool]:
    if self.flag is None:
      return {}
    return {self.flag: training if self.flag_trains else not training}

  def variables(self, params: Any, model_state: Any = None) -> dict[str, Any]:
    if model_state is not None:
      return {"params": params, **model_state}
    return params if self.collections else {"params": params}

  def __call__(self, params, x, dropout_key=None):
    # Evaluation mode for every pass: running averages, no collection updated. MC passes
    # turn each nn.Dropout on through an interceptor, so that dropout is the only
    # randomness, whichever flag (if any) the module takes.
    variables = self.variables(params)
    if dropout_key is None:
      return self.module.apply(variables, x, **self._flag(False))
    counter: list = []
    with nn.intercept_methods(functools.partial(_mc_dropout, counter)):
      out = self.module.apply(
        variables, x, rngs={self.collection: dropout_key}, **self._flag(False)
      )
    if not counter:
      raise _no_dropout_error("linen")
    return out

  def train_forward(self, params, model_state, x, dropout_key):
    """Training mode: ``(output, new_model_state)``, the non-param collections updated."""
    variables = self.variables(params, model_state)
    rngs = {self.collection: dropout_key}
    if not model_state:
      return self.module.apply(variables, x, rngs=rngs, **self._flag(True)), model_state
    out, updates = self.module.apply(
      variables, x, rngs=rngs, mutable=list(model_state), **self._flag(True)
    )
    return out, {**model_state, **updates}


def _reseed(state: Any, key: jax.Array) -> Any:
  """Every rng key held in ``state`` replaced by a distinct fold-in of ``key``."""
  leaves, treedef = jax.tree.flatten(state)
  leaves = [
    jax.random.fold_in(key, i)
    if jax.dtypes.issubdtype(getattr(leaf, "dtype", None), jax.dtypes.prng_key)
    else leaf
    for i, leaf in enumerate(leaves)
  ]
  return jax.tree.unflatten(treedef, leaves)


@dataclasses.dataclass(frozen=True)
class _NNXApply:
  graphdef: Any
  # For training states only: a function of ``rngs`` that builds a fresh module (None: the
  # state came from a module instance and cannot be re-initialised). Not part of equality,
  # so that the models of two train states of one network compare equal.
  init_fn: Any = dataclasses.field(default=None, compare=False)

  def __call__(self, state, x, dropout_key=None):
    if dropout_key is not None:
      # Reseed functionally, before merging: every rng key held in the state
      # (the Rngs streams its Dropout layers draw from) becomes a distinct
      # fold-in of `dropout_key`. Mutating a merged model (nnx.reseed) would
      # fail under vmap, whose trace differs from the state's.
      state = _reseed(state, dropout_key)
    model = nnx.merge(self.graphdef, state)
    model.eval()  # running averages for BatchNorm; the merged copy is discarded
    if dropout_key is not None:
      active = [m for _, m in nnx.iter_modules(model) if isinstance(m, nnx.Dropout) and m.rate > 0]
      if not active:
        raise _no_dropout_error("NNX")
      for m in active:
        m.deterministic = False
    return model(x)

  def train_forward(self, params, model_state, x, dropout_key):
    """Training mode: ``(output, new_model_state)`` (BatchNorm statistics, rng counts)."""
    model = nnx.merge(self.graphdef, params, _reseed(model_state, dropout_key))
    model.train()
    out = model(x)
    _, _, new_state = nnx.split(model, nnx.Param, ...)
    return out, new_state


def head_path(head: str | Sequence[str] | None) -> tuple[str, ...] | None:
  """A parameter path as a tuple of names: ``"a/b"`` -> ``("a", "b")``; None stays None.

  Args:
    head: a ``"/"``-separated path, a sequence of names, or None.

  Returns:
    The path as a tuple of names, or None.

  Example:
    >>> from jaxal._src import models
    >>> models.head_path("block/head")
    ('block', 'head')
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

  Returns:
    A :class:`Model`.

  Raises:
    TypeError: ``apply_fn`` is not callable.
  """
  if not callable(apply_fn):
    raise TypeError(f"apply_fn must be callable, got {type(apply_fn).__name__}")
  return Model(apply_fn, head_path(head))


def _call_parameters(module: nn.Module) -> tuple[set[str], bool]:
  """The keyword names ``module.__call__`` accepts, and whether it takes ``**kwargs``."""
  return _signature_names(module.__call__)


def _signature_names(fn: Any) -> tuple[set[str], bool]:
  """The keyword names ``fn`` accepts, and whether it takes ``**kwargs``."""
  try:
    sig = inspect.signature(fn)
  except (TypeError, ValueError):  # a builtin or an odd wrapper: nothing to read
    return set(), True
  names = {
    name
    for name, p in sig.parameters.items()
    if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
  }
  var_kw = any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values())
  return names, var_kw


def dropout_flag(
  module: nn.Module, train_kwarg: Any = AUTO, deterministic_kwarg: Any = AUTO
) -> tuple[str | None, bool]:
  """Which keyword of ``module.__call__`` switches training mode, and in which sense.

  ``train_kwarg`` names a flag that is True in training (``train=True``), ``deterministic_kwarg``
  one that is False in training (Flax's ``deterministic=False``). Either left at ``"auto"`` is
  read from the signature of ``module.__call__``: a ``train`` parameter, else a
  ``deterministic`` one; None says the module takes no such flag.

  Args:
    module: a linen module.
    train_kwarg: a keyword name, None, or ``"auto"``.
    deterministic_kwarg: a keyword name, None, or ``"auto"``.

  Returns:
    ``(name, trains)``: the keyword (None when the module takes none) and True when
    ``name=True`` means training, False when ``name=False`` does.

  Raises:
    TypeError: an option is neither a string nor None.
    ValueError: both options name a keyword; ``train_kwarg="deterministic"`` (whose
      meaning is the opposite); a named keyword the module does not take; or ``"auto"``
      cannot tell (the signature takes both ``train`` and ``deterministic``, or only
      ``**kwargs``).

  Example:
    >>> import flax.linen as nn
    >>> from jaxal._src import models
    >>> class Net(nn.Module):
    ...   @nn.compact
    ...   def __call__(self, x, deterministic: bool = True):
    ...     return nn.Dropout(0.5)(nn.Dense(2)(x), deterministic=deterministic)
    >>> models.dropout_flag(Net())
    ('deterministic', False)
  """
  for name, value in (("train_kwarg", train_kwarg), ("deterministic_kwarg", deterministic_kwarg)):
    if value is not None and not isinstance(value, str):
      raise TypeError(f"{name} must be a keyword name, None or 'auto', got {value!r}")
  if train_kwarg == "deterministic":
    raise ValueError(
      "train_kwarg='deterministic' would pass deterministic=True in training: Flax's "
      "`deterministic` means the opposite of `train`. Pass deterministic_kwarg='deterministic' "
      "(or leave both options unset to read it from the module's __call__)"
    )
  names, var_kw = _call_parameters(module)
  explicit = [
    (value, trains, opt)
    for value, trains, opt in (
      (train_kwarg, True, "train_kwarg"),
      (deterministic_kwarg, False, "deterministic_kwarg"),
    )
    if value not in (AUTO, None)
  ]
  if len(explicit) == 2:
    raise ValueError(
      f"give train_kwarg ({train_kwarg!r}) or deterministic_kwarg ({deterministic_kwarg!r}), "
      "not both: one keyword switches training mode"
    )
  where = f"{type(module).__name__}.__call__ takes ({', '.join(sorted(names)) or 'no keywords'})"
  if explicit:
    value, trains, opt = explicit[0]
    if value not in names and not var_kw:
      raise ValueError(f"{opt}={value!r} is not a parameter of the module: {where}")
    return value, trains
  candidates = [
    (kw, trains)
    for kw, trains, opt_value in (
      ("train", True, train_kwarg),
      ("deterministic", False, deterministic_kwarg),
    )
    if opt_value == AUTO and kw in names
  ]
  if len(candidates) == 2:
    raise ValueError(
      f"cannot tell which flag switches training mode: {where}, both `train` and "
      "`deterministic`; pass train_kwarg='train' or deterministic_kwarg='deterministic'"
    )
  if candidates:
    return candidates[0]
  if var_kw and AUTO in (train_kwarg, deterministic_kwarg):
    raise ValueError(
      f"cannot tell from the signature which flag switches training mode: {where} and "
      "**kwargs; pass train_kwarg='<name>' (True in training), "
      "deterministic_kwarg='<name>' (False in training), or train_kwarg=None, "
      "deterministic_kwarg=None when it takes neither"
    )
  return None, True


def from_linen(
  module: nn.Module,
  *,
  train_kwarg: str | None = AUTO,
  deterministic_kwarg: str | None = AUTO,
  dropout_collection: str = "dropout",
  collections: Sequence[str] = (),
  head: str | Sequence[str] | None = None,
) -> Model:
  """A model from a linen module.

  Every pass runs the module in evaluation mode (``train=False`` or ``deterministic=True``:
  BatchNorm on its running averages, nothing mutated); a pass given a dropout key turns each
  ``nn.Dropout`` on (the MC-dropout forward) and nothing else, and raises when the module ran
  no dropout layer, so MC samples can never silently be deterministic.

  Args:
    module: the linen module; ``module.apply(variables, x, ...)`` returns logits
      ``[B, K]`` or ``(logits [B, K], features [B, d])``.
    train_kwarg: the keyword that is True in training (``train=``); ``"auto"`` reads it
      from ``module.__call__``'s signature; None when the module takes no such flag.
    deterministic_kwarg: the keyword that is False in training (Flax's
      ``deterministic=``); ``"auto"``, a name or None, as ``train_kwarg``.
    dropout_collection: the rng collection its ``nn.Dropout`` layers draw from.
    collections: the non-param variable collections the module reads, such as
      ``("batch_stats",)``; ``params`` is then the whole variables dict
      ``{"params": ..., "batch_stats": ...}`` (empty: ``params`` is the ``"params"``
      collection itself).
    head: parameter path of the last layer within the ``"params"`` collection, such as
      ``"head"``; None picks the final Dense.

  Returns:
    A :class:`Model`.

  Raises:
    TypeError: ``module`` is not a linen module.
    ValueError: the training flag cannot be told or is contradictory (see
      :func:`dropout_flag`).

  Example:
    >>> import jax, jax.numpy as jnp
    >>> import flax.linen as nn
    >>> from jaxal import models
    >>> class Net(nn.Module):  # Flax's own convention: deterministic=
    ...   @nn.compact
    ...   def __call__(self, x, deterministic: bool = True):
    ...     z = nn.relu(nn.Dense(8)(x))
    ...     return nn.Dense(3)(nn.Dropout(0.5)(z, deterministic=deterministic)), z
    >>> x = jnp.ones((5, 4))
    >>> params = Net().init(jax.random.key(0), x)["params"]
    >>> model = models.from_linen(Net())  # reads `deterministic` off the signature
    >>> models.predict(model, params, x).logits.shape
    (5, 3)
    >>> models.predict_mc(jax.random.key(1), model, params, x, num_samples=4).shape
    (4, 5, 3)
  """
  if not isinstance(module, nn.Module):
    raise TypeError(f"module must be a flax.linen.Module, got {type(module).__name__}")
  flag, trains = dropout_flag(module, train_kwarg, deterministic_kwarg)
  collections = tuple(collections)
  path = head_path(head)
  if collections and path is not None:
    path = ("params", *path)
  return Model(_LinenApply(module, flag, trains, dropout_collection, collections), path)


def nnx_parts(module: nnx.Module, init_fn: Any = None) -> tuple[Any, Any, Any]:
  """``(apply object, params, rest)`` of an NNX module for a train state.

  Args:
    module: the NNX module.
    init_fn: a function of ``rngs`` that builds a fresh module of the same graph (kept for
      re-initialisation), or None.

  Returns:
    ``(apply_fn, params, rest)``: ``params`` the ``nnx.Param`` state, ``rest`` the remaining
    state (BatchNorm statistics, rng streams).
  """
  graphdef, params, rest = nnx.split(module, nnx.Param, ...)
  return _NNXApply(graphdef, init_fn), params, rest


def is_nnx_apply(apply_fn: Any) -> bool:
  """True when ``apply_fn`` is the NNX apply object of a train state (see :func:`nnx_parts`).

  Args:
    apply_fn: a train state's ``apply_fn``.
  """
  return isinstance(apply_fn, _NNXApply)


def train_state_parts(state: Any) -> tuple[Any, Any, Any]:
  """``(apply object, params, model_state)`` of a linen or NNX train state.

  ``model_state`` is the non-param state: the state's ``model_state`` field (a jaxal
  :class:`~jaxal.loop.TrainState`), a ``batch_stats`` field (the Flax tutorial's
  ``TrainState`` subclass, as ``{"batch_stats": ...}``), or ``{}``.

  Args:
    state: a ``TrainState`` whose ``apply_fn`` is a linen module's ``apply`` or an NNX graph.

  Returns:
    ``(apply_fn, params, model_state)``.

  Raises:
    TypeError: ``state.apply_fn`` is neither.
  """
  apply_fn = getattr(state, "apply_fn", None)
  if isinstance(apply_fn, _NNXApply):
    return apply_fn, state.params, state.model_state
  module = getattr(apply_fn, "__self__", None)
  if not isinstance(module, nn.Module):
    raise TypeError(
      "state.apply_fn must be a linen module's bound `apply` (TrainState.create("
      "apply_fn=module.apply, ...)) or come from jaxal.loop.create_train_state; for any "
      "other function use jaxal.models.from_apply_fn(fn) with state.params"
    )
  model_state = getattr(state, "model_state", None)
  if model_state is None:
    stats = getattr(state, "batch_stats", None)
    model_state = {} if stats is None else {"batch_stats": stats}
  return apply_fn, state.params, dict(model_state)


def from_train_state(state: Any, **kwargs) -> tuple[Model, Any]:
  """``(model, params)`` from a train state: linen (with its BatchNorm statistics) or NNX.

  A linen ``TrainState`` (``apply_fn=module.apply``) gives :func:`from_linen`'s model; its
  non-param collections (a jaxal :class:`~jaxal.loop.TrainState`'s ``model_state``, or the
  ``batch_stats`` field of the Flax tutorial's ``TrainState``) are carried: ``params`` is then
  the variables dict ``{"params": ..., "batch_stats": ...}``, read in evaluation mode (running
  averages) and never updated by prediction or acquisition. An NNX train state (from
  :func:`jaxal.loop.create_train_state`) gives :func:`from_nnx`'s model and the merged state.

  Args:
    state: the train state.
    **kwargs: keyword arguments of :func:`from_linen` (``train_kwarg``,
      ``deterministic_kwarg``, ``dropout_collection``, ``head``) or of :func:`from_nnx`
      (``head``).

  Returns:
    ``(model, params)`` for :func:`predict`, :func:`predict_mc` and every strategy.

  Raises:
    TypeError: ``state.apply_fn`` is not a linen module's bound ``apply`` nor an NNX graph.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from jaxal import loop, models
    >>> ts = loop.create_train_state(jax.random.key(0), models.MLP(num_classes=3), jnp.ones((4, 5)))
    >>> model, params = models.from_train_state(ts)
    >>> models.predict(model, params, jnp.ones((4, 5))).logits.shape
    (4, 3)
  """
  if hasattr(state, "ensemble_model"):  # models.ensemble's train state: members stacked
    return state.ensemble_model()
  return model_from_parts(state, **kwargs)


def model_from_parts(state: Any, **kwargs) -> tuple[Model, Any]:
  """:func:`from_train_state` of one model: the state's parts, never an ensemble's model.

  An ensemble's train state (leaves stacked ``[M, ...]``) gives its member's model and the
  stacked params, which the ensemble's forward vmaps over.

  Args:
    state: a linen or NNX train state (see :func:`train_state_parts`).
    **kwargs: as :func:`from_train_state`.

  Returns:
    ``(model, params)``.
  """
  apply_fn, params, model_state = train_state_parts(state)
  if isinstance(apply_fn, _NNXApply):
    return Model(_NNXApply(apply_fn.graphdef), head_path(kwargs.pop("head", None))), (
      nnx.merge_state(params, model_state)
    )
  model = from_linen(apply_fn.__self__, collections=tuple(sorted(model_state)), **kwargs)
  return model, ({"params": params, **model_state} if model_state else params)


def from_nnx(module: nnx.Module, *, head: str | Sequence[str] | None = None) -> tuple[Model, Any]:
  """``(model, state)`` from an NNX module, through ``nnx.split``.

  The module's ``__call__(x)`` returns logits or ``(logits, features)``. Every pass runs
  the merged module in evaluation mode (``model.eval()``: BatchNorm on its running
  averages; the state is never updated). For MC dropout its ``nnx.Dropout`` layers must
  hold their ``nnx.Rngs`` stream (``nnx.Dropout(rate, rngs=rngs)``): each pass replaces
  every rng key in the state by a distinct fold-in of the given key and turns only the
  dropout layers on; a module with no dropout layer is refused.

  Args:
    module: the NNX module.
    head: parameter path of the last layer; None picks the final Dense.

  Returns:
    ``(model, state)``: a :class:`Model` and the module's whole ``nnx.State``.

  Raises:
    TypeError: ``module`` is not an NNX module.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from flax import nnx
    >>> from jaxal import models
    >>> class Net(nnx.Module):
    ...   def __init__(self, rngs):
    ...     self.body = nnx.Linear(4, 8, rngs=rngs)
    ...     self.drop = nnx.Dropout(0.5, rngs=rngs)
    ...     self.head = nnx.Linear(8, 3, rngs=rngs)
    ...   def __call__(self, x):
    ...     z = jax.nn.relu(self.body(x))
    ...     return self.head(self.drop(z)), z
    >>> model, state = models.from_nnx(Net(nnx.Rngs(0)))
    >>> models.predict_mc(jax.random.key(1), model, state, jnp.ones((5, 4)), num_samples=2).shape
    (2, 5, 3)
  """
  if not isinstance(module, nnx.Module):
    raise TypeError(f"module must be a flax.nnx.Module, got {type(module).__name__}")
  graphdef, state = nnx.split(module)
  return Model(_NNXApply(graphdef), head_path(head)), state


@dataclasses.dataclass(frozen=True)
class _Factory:
  spec: str
  fn: Any

  def __call__(self, num_classes, example_x, *, rngs=None):
    kwargs = {}
    if rngs is not None:
      names, var_kw = _signature_names(self.fn)
      if "rngs" in names or var_kw:
        kwargs["rngs"] = rngs
    module = self.fn(num_classes, example_x, **kwargs)
    if not isinstance(module, (nn.Module, nnx.Module)):
      raise TypeError(
        f"the model factory {self.spec!r} must return a flax.linen.Module or a "
        f"flax.nnx.Module, got {type(module).__name__}"
      )
    return module


def load_factory(spec: str) -> Callable[[int, Any], nn.Module | nnx.Module]:
  """The model factory named ``"package.module:factory"``, checked.

  The factory is a callable ``factory(num_classes, example_x)`` (``example_x`` a
  ``[batch, ...]`` array of model inputs) that returns a linen or an NNX module (what
  ``jaxal run --model package.module:factory`` trains). The function returned calls it and
  refuses anything but a module. An NNX factory that also takes ``rngs=`` gets the
  ``nnx.Rngs`` that ``build(num_classes, example_x, rngs=...)`` is given, so that
  ``loop.create_train_state(key, functools.partial(build, num_classes, x), x)`` draws fresh
  weights at every re-initialisation.

  Args:
    spec: ``"<importable module>:<attribute>"``; the attribute may be dotted
      (``"pkg.nets:Zoo.small"``).

  Returns:
    ``build(num_classes, example_x, *, rngs=None)`` returning the factory's module.

  Raises:
    TypeError: ``spec`` is not a string, the attribute is not callable, or (when ``build``
      is called) the factory returns something other than a linen or NNX module.
    ValueError: ``spec`` is not of the form ``module:attribute``, the module cannot be
      imported or lacks the attribute.

  Example:
    >>> import jax.numpy as jnp
    >>> from jaxal import models
    >>> import sys, types
    >>> nets = types.ModuleType("my_nets")  # usually a file of your own: my_nets.py
    >>> nets.mlp = lambda num_classes, example_x: models.MLP(num_classes=num_classes)
    >>> sys.modules["my_nets"] = nets
    >>> build = models.load_factory("my_nets:mlp")
    >>> build(10, jnp.ones((1, 8, 8))).num_classes
    10
  """
  if not isinstance(spec, str):
    raise TypeError(f"spec must be a string 'package.module:factory', got {checks.describe(spec)}")
  mod_name, sep, attr = spec.partition(":")
  if not sep or not mod_name or not attr:
    raise ValueError(f"spec must have the form 'package.module:factory', got {spec!r}")
  try:
    obj = importlib.import_module(mod_name)
  except ImportError as e:
    raise ValueError(f"cannot import {mod_name!r} for the model factory {spec!r}: {e}") from e
  for part in attr.split("."):
    if not hasattr(obj, part):
      raise ValueError(f"{mod_name!r} has no attribute {attr!r} (the model factory {spec!r})")
    obj = getattr(obj, part)
  if not callable(obj):
    raise TypeError(f"the model factory {spec!r} must be callable, got {type(obj).__name__}")
  return _Factory(spec, obj)


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
  return canonical_output(model.apply(params, x, dropout_key))


def canonical_output(out: Any) -> tuple[jax.Array, jax.Array | None]:
  """A model's raw output as ``(logits [B, K] float32, features [B, d] float32 | None)``.

  Args:
    out: logits ``[B, K]`` or ``(logits [B, K], features [B, ...])``.

  Returns:
    ``(logits, features)``, the features flattened, None when the output has none.

  Raises:
    ValueError: the output is not logits or a pair, or the logits are not ``[B, K]``.
  """
  logits, features = _split_output(out)
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


@executables.jit(static_argnames=("model", "with_features"))
def _forward_batch(model, params, xb, with_features):
  logits, features = apply(model, params, xb)
  if with_features and features is None:
    raise ValueError(
      "features were requested, but the model returns only logits; return "
      "(logits, features) from the model, features being the last layer's input"
    )
  return logits, (features if with_features else None)


@executables.jit(static_argnames=("model",))
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
  x = checks.as_array(x)
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
    batch_size: the fixed batch size; the last batch is zero-padded. The whole pool is
      one compiled call (a ``lax.map`` over the batches), compiled once per pool shape.
    features: also return the penultimate features (the model must return them).

  Returns:
    :class:`Predictions` with logits ``[num_points, K]`` and features
    ``[num_points, d]`` (or None when ``features=False``).
  """
  return predict_flagged(model, params, x, batch_size=batch_size, features=features)[0]


def predict_flagged(
  model: Model, params: Any, x: ArrayLike, *, batch_size: int = 256, features: bool = True
) -> tuple[Predictions, jax.Array | None, jax.Array | None]:
  """:func:`predict` and its outputs' finiteness flags, computed in the same compiled call.

  Internal API: a strategy passes the flags to ``checks.check_finite_logits(..., ok=)`` and
  ``checks.check_finite(..., ok=)``, so that checking the model's outputs costs no extra pass
  over the pool and no extra compile.

  Returns:
    ``(predictions, logits_ok, features_ok)``: the flags as :func:`jaxal._src.checks.logits_ok`
    and :func:`jaxal._src.checks.all_finite` compute them (``features_ok`` None without
    features); both None for a pool sharded over several devices (then checked apart).
  """
  x, batch_size = check_pool(x, batch_size)
  if sharding.pool_sharding(x, "x") is None:
    logits, feats, ok_l, ok_f = _predict_pool(model, params, x, batch_size, features)
    return Predictions(logits, feats), ok_l, ok_f
  # A pool sharded along N: batched under GSPMD, one compiled forward for every batch.
  outs_l, outs_f = [], []
  for _, b, xb in batches(x, batch_size):
    logits, feats = _forward_batch(model, params, xb, features)
    outs_l.append(logits[:b])
    if features:
      outs_f.append(feats[:b])
  logits = jnp.concatenate(outs_l)
  return Predictions(logits, jnp.concatenate(outs_f) if features else None), None, None


def _whole_batches(x: jax.Array, batch_size: int) -> jax.Array:
  """``x [N, ...]`` zero-padded to whole batches: ``[ceil(N / batch_size), batch_size, ...]``."""
  n = x.shape[0]
  num_batches = -(-n // batch_size)
  pad = num_batches * batch_size - n
  if pad:
    x = jnp.concatenate([x, jnp.zeros((pad, *x.shape[1:]), x.dtype)])
  return x.reshape(num_batches, batch_size, *x.shape[1:])


def predict_pool_core(
  model: Model, params: Any, x: jax.Array, batch_size: int
) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
  """Internal API: ``(logits, features, logits_ok, features_ok)`` of an unsharded, checked pool.

  What :func:`predict_flagged` computes for such a pool (:func:`check_pool`'s output), for a
  caller that runs it inside its own jitted program, so that the forward and what follows it
  are one compile.
  """
  return _predict_pool(model, params, x, batch_size, True)


@executables.jit(
  static_argnames=("model", "batch_size", "with_features"),
  compiler_options=executables.ELEMENTAL_EMITTERS,
)
def _predict_pool(model, params, x, batch_size, with_features):
  # The whole pool in one compiled call: zero-padded to whole batches, a lax.map of the batch
  # forward, the outputs' finiteness flags fused into the same pass.
  n = x.shape[0]
  xb = _whole_batches(x, batch_size)
  num_batches = xb.shape[0]
  logits, feats = jax.lax.map(lambda b: _forward_batch(model, params, b, with_features), xb)
  logits = logits.reshape(num_batches * batch_size, -1)[:n]
  ok_l = checks.logits_ok(logits)
  if not with_features:
    return logits, None, ok_l, None
  feats = feats.reshape(num_batches * batch_size, -1)[:n]
  return logits, feats, ok_l, checks.all_finite(feats)[0]


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
  return predict_mc_flagged(
    key, model, params, x, num_samples=num_samples, batch_size=batch_size, consistent=consistent
  )[0]


def predict_mc_flagged(
  key: jax.Array,
  model: Model,
  params: Any,
  x: ArrayLike,
  *,
  num_samples: int,
  batch_size: int = 256,
  consistent: bool = False,
) -> tuple[jax.Array, jax.Array | None]:
  """:func:`predict_mc` and its logits' finiteness flag, computed in the same compiled call.

  Internal API: a strategy passes the flag to ``checks.check_finite_logits(..., ok=)``.

  Returns:
    ``(logits [S, N, K], ok)``, ``ok`` as :func:`jaxal._src.checks.logits_ok` computes it over
    the ``[S * N, K]`` rows; None for an ensemble or a pool sharded over several devices
    (then checked apart).
  """
  checks.check_key(key)
  num_samples = checks.check_positive_int(num_samples, "num_samples")
  predict_members = getattr(model.apply, "predict_members", None)  # an ensemble's members
  if predict_members is not None:
    return predict_members(params, x, batch_size), None
  x, batch_size = check_pool(x, batch_size)
  sample_keys = cached_ops.split_array(key, num_samples)
  if sharding.pool_sharding(x, "x") is None:
    return _predict_mc_pool(model, params, x, sample_keys, batch_size, bool(consistent))
  outs = []  # a pool sharded along N: batched under GSPMD, one compiled step for every batch
  for start, b, xb in batches(x, batch_size):
    idx = jnp.arange(start, start + batch_size, dtype=jnp.int32)
    if consistent:
      idx = jnp.zeros_like(idx)  # fold_in(key, 0) for all: one mask per sample
    outs.append(_forward_batch_mc(model, params, xb, idx, sample_keys)[:, :b])
  return jnp.concatenate(outs, axis=1), None


@executables.jit(
  static_argnames=("model", "batch_size", "consistent"),
  compiler_options=executables.ELEMENTAL_EMITTERS,
)
def _predict_mc_pool(model, params, x, sample_keys, batch_size, consistent):
  # The whole pool in one compiled call, as _predict_pool: zero-padded whole batches, a lax.map
  # of the vmapped sample forward; example i folds in its global index (0 when consistent).
  n = x.shape[0]
  xb = _whole_batches(x, batch_size)
  num_batches = xb.shape[0]
  idx = jnp.arange(num_batches * batch_size, dtype=jnp.int32).reshape(num_batches, batch_size)
  if consistent:
    idx = jnp.zeros_like(idx)  # fold_in(key, 0) for all: one mask per sample

  def step(b):
    return _forward_batch_mc(model, params, b[0], b[1], sample_keys)  # [S, B, K]

  out = jax.lax.map(step, (xb, idx))  # [num_batches, S, B, K]
  s, k = out.shape[1], out.shape[-1]
  logits = jnp.moveaxis(out, 1, 0).reshape(s, num_batches * batch_size, k)[:, :n]
  return logits, checks.logits_ok(logits)


def _key_order(tree: Any) -> Any:
  """The nested dicts of ``tree`` with their keys in insertion order (leaves as None)."""
  if isinstance(tree, dict):
    return {k: _key_order(v) for k, v in tree.items()}
  return None


def _in_order(tree: Any, order: Any) -> Any:
  """``tree``'s dicts rebuilt in the key order of ``order`` (from :func:`_key_order`)."""
  if isinstance(order, dict):
    return type(tree)((k, _in_order(tree[k], v)) for k, v in order.items())
  return tree


# The key order of each traced initialisation's output, by module, options and input
# structure (jax.jit's outputs come back with sorted keys).
_INIT_ORDERS: dict = {}


def _init_key(module: nn.Module, options: tuple, rngs: Any, x: Any) -> tuple:
  leaves, treedef = jax.tree.flatten((rngs, x))
  return (module, options, treedef, tuple((np.shape(a), str(jnp.result_type(a))) for a in leaves))


@functools.partial(jax.jit, static_argnums=(0, 1))
def _init_jit(module: nn.Module, options: tuple, rngs: Any, x: Any) -> dict:
  variables = module.init(rngs, x, **dict(options))
  _INIT_ORDERS[_init_key(module, options, rngs, x)] = _key_order(variables)
  return variables


def init_variables(module: nn.Module, rngs: Any, x: Any, **kwargs) -> dict:
  """``module.init(rngs, x, **kwargs)`` as one compiled program, its collections in the order
  ``init`` built them.

  Run eagerly, every layer's initialiser and forward operation is a program of its own (a
  few tens of milliseconds each in a fresh process). The program is traced once per module
  (linen modules hash by their fields), options and input shapes. ``jax.jit`` returns dicts
  with sorted keys; linen's params are in definition order, which the default embedding head
  relies on, so they are put back in it. A module that does not hash is initialised eagerly.
  """
  options = tuple(sorted(kwargs.items()))
  try:
    hash((module, options))
  except TypeError:
    return module.init(rngs, x, **kwargs)
  variables = _init_jit(module, options, rngs, x)
  order = _INIT_ORDERS.get(_init_key(module, options, rngs, x))
  return variables if order is None else _in_order(variables, order)


def init_params(key: jax.Array, module: nn.Module, example_x: ArrayLike) -> Any:
  """The ``"params"`` collection of ``module`` initialised on ``example_x[:1]``.

  Args:
    key: a ``jax.random.key``.
    module: a linen module.
    example_x: ``[num_points, ...]`` inputs; only the first row is used.
  """
  checks.check_key(key)
  return init_variables(module, {"params": key}, np.asarray(example_x[:1]))["params"]
