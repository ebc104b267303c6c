"""Targeted selection by submodular information measures: SMI, SCG and SCMI (SIMILAR).

Each strategy runs one deterministic forward pass over the pool for logits
and penultimate features, embeds the pool and its query / private sets
(``embedding="features"``, or the closed-form last-layer gradient embedding
``(p − onehot(y)) ⊗ [z, 1]`` with ``"gradients"``, as DISTIL offers), builds
the similarity blocks a measure reads (:func:`jaxal.submodular.information_kernels`)
and maximises the measure over the unlabeled pool
(:func:`jaxal.submodular.maximize`).

A query or private set is given as one of

* **indices into the pool** (a 1-D integer array or list, or a ``[N]`` bool
  mask): unlabeled pool points that stand for what to find (or avoid); they
  are excluded from the selection. Labeled indices are refused, with the
  indices named: a labeled example belongs in the set through its class.
* **extra inputs** (an array of model input ``[M, ...]``): embedded by the
  same forward pass, at the model's predictions.
* **classes** (``query_classes=[3, 7]``, ``private_classes=...``): the
  *labeled* points of those classes ("the classes I care about"), read from
  ``labels`` (the pool's oracle labels; only labeled entries are read) or,
  without them, from the model's predictions on the labeled points. With
  ``labels``, gradient embeddings of these points are taken at their labels.
* a name: ``"labeled"`` (every labeled point), ``"rarest"`` (the labeled
  points of the class with the fewest labeled points: the default query, so
  that the registry's plain ``strategies.get("smi")`` targets the rarest
  class) or, for a private set beside a query, ``"others"`` (the labeled
  points outside the query: SCMI's default).

Sets that change size from round to round (classes, names) are padded to a
power of two under a mask, so a run compiles once per size bucket.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxal._src import cached_ops
from jaxal._src import checks
from jaxal._src import models as models_lib
from jaxal._src.embeddings import gradients
from jaxal._src.embeddings.grad_embedding import GradEmbedding
from jaxal._src.strategies.base import Strategy
from jaxal._src.strategies.base import check_acquire_args
from jaxal._src.strategies.base import predict_checked
from jaxal._src.submodular import information
from jaxal._src.submodular import kernels as kernels_lib
from jaxal._src.submodular import maximizers

EMBEDDINGS = ("features", "gradients")
SET_NAMES = ("labeled", "others", "rarest")
_MIN_BUCKET = 8


class _SetSpec(NamedTuple):
  kind: str  # "indices" | "mask" | "inputs" | "classes" | "name"
  value: Any


def _spec(value: Any, classes: Any, name: str, names: tuple[str, ...]) -> _SetSpec | None:
  """The query / private argument, checked as far as it can be without the pool."""
  cname = f"{name}_classes"
  if classes is not None:
    if value is not None:
      raise ValueError(f"give {name}= or {cname}=, not both (got {name}={value!r})")
    cls = np.asarray(classes)
    if cls.ndim == 0:
      cls = cls[None]
    if cls.ndim != 1 or cls.size == 0 or not np.issubdtype(cls.dtype, np.integer):
      raise ValueError(
        f"{cname} must be a non-empty list of int class labels, got {classes!r} "
        f"(shape {cls.shape}, dtype {cls.dtype})"
      )
    if (cls < 0).any():
      raise ValueError(f"{cname} must be class labels >= 0, got {cls.tolist()}")
    return _SetSpec("classes", np.unique(cls))
  if value is None:
    return None
  if isinstance(value, str):
    checks.check_one_of(value, names, f"{name} set name")
    return _SetSpec("name", value)
  if isinstance(value, (list, tuple)):
    value = np.asarray(value)
    if value.size == 0:
      raise ValueError(f"{name} is empty (shape {value.shape}); give at least one index")
    if not np.issubdtype(value.dtype, np.integer):
      raise TypeError(
        f"{name} as a list must hold int indices into the pool, got dtype {value.dtype}; "
        "pass model inputs as an array"
      )
  if not hasattr(value, "shape") or not hasattr(value, "dtype"):
    raise TypeError(
      f"{name} must be indices into the pool, a [N] bool mask, an array of model inputs "
      f"[M, ...] or a name in {names}, got {type(value).__name__}"
    )
  shape = tuple(value.shape)
  if len(shape) == 0 or shape[0] == 0:
    raise ValueError(f"{name} is empty: got shape {shape}; give at least one point")
  if len(shape) == 1 and value.dtype == np.bool_:
    if not np.asarray(value).any():
      raise ValueError(f"{name} mask of shape {shape} selects no point: the set is empty")
    return _SetSpec("mask", np.asarray(value))
  if len(shape) == 1 and np.issubdtype(value.dtype, np.integer):
    idx = np.asarray(value).astype(np.int64)
    if len(np.unique(idx)) != len(idx):
      uniq, counts = np.unique(idx, return_counts=True)
      raise ValueError(f"{name} indices repeat: {uniq[counts > 1].tolist()} (shape {shape})")
    return _SetSpec("indices", idx)
  return _SetSpec("inputs", value)


def _given(value: Any, default: str, classes: Any) -> Any:
  """``value``, or None when it is the default and classes replace it."""
  if classes is not None and isinstance(value, str) and value == default:
    return None
  return value


def _check_labels(labels: Any) -> Any:
  if labels is None:
    return None
  if not hasattr(labels, "shape") or not hasattr(labels, "dtype"):
    labels = np.asarray(labels)
  if len(labels.shape) != 1 or not jnp.issubdtype(labels.dtype, jnp.integer):
    raise ValueError(
      f"labels must be int class labels of shape [num_points], got {checks.describe(labels)}"
    )
  return labels


def _bucket(count: int) -> int:
  return max(_MIN_BUCKET, 1 << (count - 1).bit_length())


class _Resolved(NamedTuple):
  emb: Any  # [M, dim] array or GradEmbedding
  mask: jax.Array | None  # [M] bool, or None (all present)
  exclude: np.ndarray | None  # pool indices excluded from the selection


class _Context(NamedTuple):
  n: int
  labeled: np.ndarray  # [N] bool, host copy
  classes_of: np.ndarray | None  # [N] class of each pool point (labels, else predictions)
  logits: jax.Array
  feats: jax.Array
  emb: Any  # the pool's embedding
  true_labels: bool  # classes_of holds oracle labels


def _embed(logits, feats, embedding, labels=None):
  if embedding == "features":
    return feats
  if labels is None:
    return gradients.closed_form_gradient_embedding(logits, feats)
  return gradients.closed_form_at(logits, feats, jnp.asarray(labels, jnp.int32), True)


def _take(emb: Any, idx: jax.Array) -> Any:
  if isinstance(emb, GradEmbedding):
    return GradEmbedding(cached_ops.take(emb.a, idx), cached_ops.take(emb.z, idx))
  return cached_ops.take(emb, idx)


def _pool_subset(ctx: _Context, member: np.ndarray, embedding: str) -> _Resolved:
  """The pool points ``member [N]`` (labeled), padded to a size bucket under a mask."""
  count = int(member.sum())
  size = _bucket(count)
  idx = np.zeros((size,), np.int32)
  idx[:count] = np.flatnonzero(member)
  idx_j = jax.device_put(idx)
  if embedding == "gradients" and ctx.true_labels:
    emb = _embed(
      cached_ops.take(ctx.logits, idx_j),
      cached_ops.take(ctx.feats, idx_j),
      embedding,
      ctx.classes_of[idx].astype(np.int32),
    )
  else:
    emb = _take(ctx.emb, idx_j)
  return _Resolved(emb, jax.device_put(np.arange(size) < count), None)


def _class_members(ctx: _Context, classes: np.ndarray, name: str) -> np.ndarray:
  member = ctx.labeled & np.isin(ctx.classes_of, classes)
  if not member.any():
    source = "labels" if ctx.true_labels else "the model's predictions (no labels= given)"
    raise ValueError(
      f"{name}_classes={classes.tolist()} match none of the {int(ctx.labeled.sum())} labeled "
      f"points (classes read from {source}): the {name} set is empty"
    )
  return member


def _rarest(ctx: _Context, name: str) -> np.ndarray:
  if not ctx.labeled.any():
    raise ValueError(
      f"{name}='rarest' needs labeled points, and labeled_mask has none; give {name}= "
      "indices, inputs or classes"
    )
  cls = ctx.classes_of[ctx.labeled]
  values, counts = np.unique(cls, return_counts=True)
  return ctx.labeled & (ctx.classes_of == values[np.argmin(counts)])


def _resolve(
  spec: _SetSpec, name: str, ctx: _Context, embedding: str, model, params, batch_size, other=None
) -> tuple[_Resolved, np.ndarray | None]:
  """The set's embedding and mask, and its pool membership ``[N]`` (None for extra inputs)."""
  n = ctx.n
  if spec.kind in ("indices", "mask"):
    if spec.kind == "mask":
      if spec.value.shape != (n,):
        raise ValueError(
          f"{name} as a bool mask must have shape ({n},) to match the pool, got {spec.value.shape}"
        )
      idx = np.flatnonzero(spec.value)
    else:
      idx = spec.value
      out = (idx < 0) | (idx >= n)
      if out.any():
        raise ValueError(
          f"{name} indices must lie in [0, {n}) (the pool has {n} points), got "
          f"{idx[out].tolist()[:10]} in {name} of shape {idx.shape}"
        )
    lab = idx[ctx.labeled[idx]]
    if lab.size:
      raise ValueError(
        f"{name} indices {lab.tolist()[:10]} are labeled (labeled_mask is True there): a "
        f"{name} given as indices names unlabeled pool points, which are then never "
        f"selected; for labeled examples give {name}_classes= (with labels=) or "
        f"{name}='labeled', or pass their inputs pool[idx]"
      )
    member = np.zeros((n,), bool)
    member[idx] = True
    return _Resolved(_take(ctx.emb, jnp.asarray(idx, jnp.int32)), None, idx), member
  if spec.kind == "inputs":
    x = spec.value
    forward = lambda xb: models_lib.apply(model, params, xb)[0]  # noqa: E731
    checks.check_model_input(forward, x, name)
    pred = predict_checked(model, params, x, batch_size, features=True, on=name)
    if pred.features.shape[1] != ctx.feats.shape[1]:
      raise ValueError(
        f"{name} inputs of shape {tuple(x.shape)} give features of dimension "
        f"{pred.features.shape[1]}, the pool's have dimension {ctx.feats.shape[1]}"
      )
    return _Resolved(_embed(pred.logits, pred.features, embedding), None, None), None
  if spec.kind == "classes":
    member = _class_members(ctx, spec.value, name)
  elif spec.value == "labeled":
    if not ctx.labeled.any():
      raise ValueError(f"{name}='labeled' needs labeled points, and labeled_mask has none")
    member = ctx.labeled
  elif spec.value == "rarest":
    member = _rarest(ctx, name)
  else:  # "others": labeled points outside the other set
    member = ctx.labeled & ~(other if other is not None else np.zeros((n,), bool))
    if not member.any():
      raise ValueError(
        f"{name}='others' is empty: every labeled point is in the query; give {name}= "
        "indices, inputs or classes"
      )
  return _pool_subset(ctx, member, embedding), member


def _common_options(
  function, valid, kind, eta, nu, lam, metric, gamma, embedding, optimizer, epsilon
):
  checks.check_one_of(function, valid, f"{kind} function")
  checks.check_float(eta, "eta", low=0.0)
  checks.check_float(nu, "nu", low=0.0)
  if lam is not None:
    high = 1.0 if function == "gccg" else None
    checks.check_float(lam, "lam", low=0.0, high=high)
  kernels_lib.check_metric(metric, gamma)
  checks.check_one_of(embedding, EMBEDDINGS, "embedding")
  checks.check_one_of(optimizer, maximizers.OPTIMIZERS, "optimizer")
  checks.check_float(epsilon, "epsilon", low=0.0, high=1.0, low_open=True, high_open=True)


def _targeted(
  name: str,
  function: str,
  query: _SetSpec | None,
  private: _SetSpec | None,
  labels: Any,
  *,
  eta: float,
  nu: float,
  lam: float | None,
  metric: str,
  gamma: float | None,
  embedding: str,
  optimizer: str,
  epsilon: float,
  batch_size: int,
) -> Strategy:
  def acquire(key, model, params, pool, labeled_mask, budget):
    mask, budget = check_acquire_args(key, pool, labeled_mask, budget)
    n = pool.shape[0]
    if labels is not None and tuple(labels.shape) != (n,):
      raise ValueError(
        f"labels must have shape ({n},) to match the pool of {n} points, got {tuple(labels.shape)}"
      )
    preds = predict_checked(model, params, pool, batch_size, features=True)
    labeled = np.asarray(mask)
    if labels is not None:
      classes_of = np.asarray(labels)
    else:
      classes_of = np.argmax(np.asarray(jax.device_get(preds.logits)), axis=-1)
    ctx = _Context(n, labeled, classes_of, preds.logits, preds.features, None, labels is not None)
    ctx = ctx._replace(emb=_embed(preds.logits, preds.features, embedding))
    q = p = None
    q_member = None
    if query is not None:
      q, q_member = _resolve(query, "query", ctx, embedding, model, params, batch_size)
    if private is not None:
      p, _ = _resolve(private, "private", ctx, embedding, model, params, batch_size, q_member)
    exclude = np.zeros((n,), bool)
    for s in (q, p):
      if s is not None and s.exclude is not None:
        exclude[s.exclude] = True
    ground = ~labeled & ~exclude
    free = int(ground.sum())
    if budget > free:
      raise ValueError(
        f"budget={budget} is larger than the {free} unlabeled points left outside the query "
        f"and private indices ({int(exclude.sum())} excluded, {int(labeled.sum())} labeled)"
      )
    ks = information.information_kernels(
      ctx.emb,
      query=None if q is None else q.emb,
      private=None if p is None else p.emb,
      function=function,
      metric=metric,
      gamma=gamma,
    )
    opts = dict(eta=eta, nu=nu, lam=lam, ground_mask=jax.device_put(ground))
    if q is not None:
      opts["query_mask"] = q.mask
    if p is not None:
      opts["private_mask"] = p.mask
    if function.startswith("logdet"):
      opts["max_size"] = budget
    fn = information.make_information(function, ks, **opts)
    sel = maximizers.maximize(fn, budget, optimizer=optimizer, key=key, epsilon=epsilon)
    if function.startswith("logdet"):
      information.check_logdet_selection(fn, sel.indices, lam=1.0 if lam is None else lam)
    return sel.indices

  return Strategy(name, acquire)


def smi(
  query: Any = "rarest",
  function: str = "flqmi",
  *,
  query_classes: Sequence[int] | None = None,
  labels: Any = None,
  eta: float = 1.0,
  lam: float | None = None,
  metric: str = "cosine",
  gamma: float | None = None,
  embedding: str = "features",
  optimizer: str = "greedy",
  epsilon: float = 0.01,
  batch_size: int = 256,
) -> Strategy:
  """SMI: the unlabeled batch of largest submodular mutual information with a query set.

  Finds more points like the query (query relevance) while covering all of
  it (query coverage) and staying diverse, as ``function`` trades them off
  (:data:`jaxal.submodular.SMI_FUNCTIONS`; see
  :mod:`jaxal.submodular` for the definitions): ``"flqmi"`` (coverage of
  each query point plus relevance, ``O(N Q)`` memory), ``"flvmi"`` (the pool
  covered up to its similarity to the query), ``"gcmi"`` (pure relevance) or
  ``"logdetmi"`` (relevance and diversity by volume).

  Args:
    query: the query set: indices into the pool (unlabeled points, never
      selected), a ``[N]`` bool mask, model inputs ``[M, ...]``, or
      ``"rarest"`` / ``"labeled"`` (module docstring). Ignored when
      ``query_classes`` is given.
    function: one of :data:`jaxal.submodular.SMI_FUNCTIONS`.
    query_classes: the labeled points of these classes are the query.
    labels: optional ``[N]`` int oracle labels of the pool (only labeled entries are read).
    eta: η >= 0, the query relevance.
    lam: the measure's λ (GCMI's scale, the LogDet ridge), or None for its default.
    metric: ``"cosine"`` or ``"rbf"``.
    gamma: the RBF bandwidth, or None for the pool's default.
    embedding: ``"features"`` (penultimate) or ``"gradients"`` (last-layer, closed form).
    optimizer: ``"greedy"``, ``"lazy"`` or ``"stochastic"``.
    epsilon: stochastic greedy's ε.
    batch_size: forward batch size.

  Returns:
    The :class:`Strategy` ``"smi"``.

  Raises:
    ValueError: an empty query, indices outside the pool or labeled (at
      acquire), inputs whose features have another dimension, bad options.

  Example:
    >>> import jax
    >>> from jaxal import datasets, loop, models, strategies
    >>> ds = datasets.load_digits()
    >>> x, y = ds.x_train[:200], ds.y_train[:200]
    >>> state = loop.init(jax.random.key(0), len(x), num_initial=30)
    >>> ts = loop.create_train_state(jax.random.key(0), models.MLP(num_classes=10), x)
    >>> s = strategies.smi(query_classes=[3], labels=y)  # find more 3s
    >>> state, ts, picked = loop.run_round(state, ts, strategy=s, x=x, y=y, budget=10)
    >>> picked.shape
    (10,)

  References:
    Kothawade et al., SIMILAR: Submodular Information Measures Based Active
    Learning in Realistic Scenarios, NeurIPS 2021; DISTIL's SMI.
  """
  q = _spec(_given(query, "rarest", query_classes), query_classes, "query", ("labeled", "rarest"))
  _common_options(function, information.SMI_FUNCTIONS, "SMI", eta, 1.0, lam, metric, gamma,
                  embedding, optimizer, epsilon)  # fmt: skip
  return _targeted(
    "smi", function, q, None, _check_labels(labels), eta=eta, nu=1.0, lam=lam, metric=metric,
    gamma=gamma, embedding=embedding, optimizer=optimizer, epsilon=epsilon,
    batch_size=checks.check_positive_int(batch_size, "batch_size"),
  )  # fmt: skip


def scg(
  private: Any = "labeled",
  function: str = "flcg",
  *,
  private_classes: Sequence[int] | None = None,
  labels: Any = None,
  nu: float = 1.0,
  lam: float | None = None,
  metric: str = "cosine",
  gamma: float | None = None,
  embedding: str = "features",
  optimizer: str = "greedy",
  epsilon: float = 0.01,
  batch_size: int = 256,
) -> Strategy:
  """SCG: the unlabeled batch of largest submodular conditional gain given a private set.

  Representative and diverse points *unlike* the private set (classes to
  avoid, or by default the labeled set itself: what the model already has):
  ``"flcg"``, ``"gccg"`` or ``"logdetcg"`` (:data:`jaxal.submodular.CG_FUNCTIONS`).

  Args:
    private: the private set: indices into the pool (unlabeled points, never
      selected), a ``[N]`` bool mask, model inputs ``[M, ...]``, or
      ``"labeled"`` / ``"rarest"``. Ignored when ``private_classes`` is given.
    function: one of :data:`jaxal.submodular.CG_FUNCTIONS`.
    private_classes: the labeled points of these classes are the private set.
    labels: optional ``[N]`` int oracle labels of the pool (only labeled entries are read).
    nu: ν >= 0, the privacy hardness.
    lam: the measure's λ (GCCG's trade-off in [0, 1], the LogDet ridge), or None (1).
    metric: ``"cosine"`` or ``"rbf"``.
    gamma: the RBF bandwidth, or None for the pool's default.
    embedding: ``"features"`` or ``"gradients"``.
    optimizer: ``"greedy"``, ``"lazy"`` or ``"stochastic"``.
    epsilon: stochastic greedy's ε.
    batch_size: forward batch size.

  Returns:
    The :class:`Strategy` ``"scg"``.

  Raises:
    ValueError: an empty private set, indices outside the pool or labeled,
      inputs whose features have another dimension, bad options.

  Example:
    >>> import jax
    >>> from jaxal import datasets, loop, models, strategies
    >>> ds = datasets.load_digits()
    >>> x, y = ds.x_train[:200], ds.y_train[:200]
    >>> state = loop.init(jax.random.key(0), len(x), num_initial=30)
    >>> ts = loop.create_train_state(jax.random.key(0), models.MLP(num_classes=10), x)
    >>> s = strategies.scg(private_classes=[0, 1], labels=y)  # stay away from 0s and 1s
    >>> state, ts, picked = loop.run_round(state, ts, strategy=s, x=x, y=y, budget=10)
    >>> picked.shape
    (10,)

  References:
    Kothawade et al., SIMILAR, NeurIPS 2021; DISTIL's SCG.
  """
  p = _spec(
    _given(private, "labeled", private_classes), private_classes, "private", ("labeled", "rarest")
  )
  _common_options(function, information.CG_FUNCTIONS, "SCG", 1.0, nu, lam, metric, gamma,
                  embedding, optimizer, epsilon)  # fmt: skip
  return _targeted(
    "scg", function, None, p, _check_labels(labels), eta=1.0, nu=nu, lam=lam, metric=metric,
    gamma=gamma, embedding=embedding, optimizer=optimizer, epsilon=epsilon,
    batch_size=checks.check_positive_int(batch_size, "batch_size"),
  )  # fmt: skip


def scmi(
  query: Any = "rarest",
  private: Any = "others",
  function: str = "flcmi",
  *,
  query_classes: Sequence[int] | None = None,
  private_classes: Sequence[int] | None = None,
  labels: Any = None,
  eta: float = 1.0,
  nu: float = 1.0,
  lam: float | None = None,
  metric: str = "cosine",
  gamma: float | None = None,
  embedding: str = "features",
  optimizer: str = "greedy",
  epsilon: float = 0.01,
  batch_size: int = 256,
) -> Strategy:
  """SCMI: the unlabeled batch of largest conditional mutual information with a query, given a private set.

  Points like the query and unlike the private set: ``"flcmi"`` or
  ``"logdetcmi"`` (:data:`jaxal.submodular.CMI_FUNCTIONS`). By default the
  query is the labeled points of the rarest labeled class and the private
  set the other labeled points: find more of the rare class, not of the rest.

  Args:
    query: the query set, as in :func:`smi`.
    private: the private set, as in :func:`scg`, or ``"others"`` (the labeled
      points outside the query).
    function: one of :data:`jaxal.submodular.CMI_FUNCTIONS`.
    query_classes: the labeled points of these classes are the query.
    private_classes: the labeled points of these classes are the private set.
    labels: optional ``[N]`` int oracle labels of the pool (only labeled entries are read).
    eta: η >= 0, the query relevance.
    nu: ν >= 0, the privacy hardness.
    lam: the LogDet ridge, or None (1).
    metric: ``"cosine"`` or ``"rbf"``.
    gamma: the RBF bandwidth, or None for the pool's default.
    embedding: ``"features"`` or ``"gradients"``.
    optimizer: ``"greedy"``, ``"lazy"`` or ``"stochastic"``.
    epsilon: stochastic greedy's ε.
    batch_size: forward batch size.

  Returns:
    The :class:`Strategy` ``"scmi"``.

  Raises:
    ValueError: an empty set, indices outside the pool or labeled, inputs
      whose features have another dimension, bad options.

  Example:
    >>> import jax
    >>> from jaxal import datasets, loop, models, strategies
    >>> ds = datasets.load_digits()
    >>> x, y = ds.x_train[:200], ds.y_train[:200]
    >>> state = loop.init(jax.random.key(0), len(x), num_initial=30)
    >>> ts = loop.create_train_state(jax.random.key(0), models.MLP(num_classes=10), x)
    >>> s = strategies.scmi(query_classes=[3], private_classes=[8], labels=y)
    >>> state, ts, picked = loop.run_round(state, ts, strategy=s, x=x, y=y, budget=10)
    >>> picked.shape
    (10,)

  References:
    Kothawade et al., SIMILAR, NeurIPS 2021; DISTIL's SCMI.
  """
  q = _spec(_given(query, "rarest", query_classes), query_classes, "query", ("labeled", "rarest"))
  p = _spec(_given(private, "others", private_classes), private_classes, "private", SET_NAMES)
  _common_options(function, information.CMI_FUNCTIONS, "SCMI", eta, nu, lam, metric, gamma,
                  embedding, optimizer, epsilon)  # fmt: skip
  return _targeted(
    "scmi", function, q, p, _check_labels(labels), eta=eta, nu=nu, lam=lam, metric=metric,
    gamma=gamma, embedding=embedding, optimizer=optimizer, epsilon=epsilon,
    batch_size=checks.check_positive_int(batch_size, "batch_size"),
  )  # fmt: skip
