"""GLISTER-active: greedy one-step bilevel selection on the last layer.

GLISTER picks the batch whose one gradient step most reduces a validation
loss. With the one-step approximation on the last layer
``W' = W - η Σ_{i ∈ L ∪ S} g_i`` (bias included), the gain of a candidate is the
inner product of its last-layer gradient with the validation gradient at the
current ``W'``, and ``W'`` takes the step after every pick. Last-layer
gradients of the cross-entropy have the closed form
``g = (softmax(f) - onehot(y)) ⊗ [z, 1]`` (``z`` the penultimate features;
the candidates' come from :func:`jaxal.embeddings.closed_form_gradient_embedding`),
so everything stays factorised: a pick costs ``O((N + M) · K · d)``.
"""

from __future__ import annotations

import math
from typing import Any
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from jaxal._src import checks
from jaxal._src import distances
from jaxal._src import executables
from jaxal._src.embeddings import gradients

REGULARIZERS = ("random", "facility_location", "diversity")


class Validation(NamedTuple):
  """The model's view of a labeled validation set.

  Attributes:
    logits: ``[num_val, num_classes]`` logits of the model on it.
    features: ``[num_val, feat_dim]`` penultimate features (the last layer's input).
    labels: ``[num_val]`` integer labels in ``[0, num_classes)``.
  """

  logits: jax.Array  # shape=[num_val, num_classes], float
  features: jax.Array  # shape=[num_val, feat_dim], float
  labels: jax.Array  # shape=[num_val], int


def _augment(features: jax.Array, bias: bool) -> jax.Array:
  """``[z, 1]`` (bias gradient included) or ``z``."""
  if not bias:
    return features
  return jnp.concatenate([features, jnp.ones((features.shape[0], 1), features.dtype)], axis=1)


@executables.jit
def _hypothesised(logits: jax.Array) -> jax.Array:
  """``argmax`` of the log-softmax, as :func:`jaxal.embeddings.closed_form_gradient_embedding`."""
  return jnp.argmax(jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1), axis=-1).astype(
    jnp.int32
  )


@executables.jit(static_argnames=("k", "num_greedy", "regularizer", "bias"))
def _glister(
  key,
  logits,
  features,
  labeled_mask,
  train_labels,
  val_logits,
  val_features,
  val_labels,
  learning_rate,
  lam,
  k,
  num_greedy,
  regularizer,
  bias,
):
  n, num_classes = logits.shape
  # The pool's finiteness flags, from this compiled pass (checked by the caller after it).
  ok = (checks.logits_ok(logits), checks.all_finite(features)[0])
  lr = learning_rate.astype(jnp.float32)
  lam = lam.astype(jnp.float32)
  # The candidates' gradients at their hypothesised labels.
  cand = gradients.closed_form_at(logits, features, _hypothesised(logits), bias)
  a, zh = cand.a, cand.z
  # One step on the labeled set first (DISTIL's `prev_grads_sum`): W' = W - η Σ_L g_i.
  lab = gradients.closed_form_at(logits, features, train_labels, bias)
  g_labeled = (lab.a * labeled_mask[:, None].astype(jnp.float32)).T @ lab.z  # [K, D]
  zh_val = _augment(val_features, bias)
  out0 = val_logits - lr * (zh_val @ g_labeled.T)  # [M, K] validation logits at W'
  onehot_val = jax.nn.one_hot(val_labels, num_classes, dtype=jnp.float32)
  num_val = jnp.float32(val_logits.shape[0])
  unlabeled = ~labeled_mask
  lowest = jnp.finfo(jnp.float32).min

  if regularizer == "facility_location":
    dist = distances.sq_dist(cand, cand)  # [N, N]
    pair = unlabeled[:, None] & unlabeled[None, :]
    const = jnp.max(jnp.where(pair, dist, 0.0))
    reg0 = jnp.full((n,), const, jnp.float32)  # distance of each point to its nearest pick
  else:
    dist = None
    reg0 = jnp.zeros((n,), jnp.float32)  # diversity: similarity to the picks so far

  def body(t, carry):
    idx, taken, out, reg = carry
    g_val = (jax.nn.softmax(out, axis=-1) - onehot_val).T @ zh_val / num_val  # [K, D]
    gain = jnp.sum(a * (zh @ g_val.T), axis=-1)  # <g_i, g_val>
    if regularizer == "facility_location":
      cover = jnp.where(unlabeled[None, :], jnp.maximum(reg[None, :] - dist, 0.0), 0.0)
      gain = gain + lam * jnp.sum(cover, axis=1)
    elif regularizer == "diversity":
      gain = gain - lam * reg
    gain = jnp.where(jnp.isnan(gain), lowest, gain)
    gain = jnp.where(taken | labeled_mask, -jnp.inf, gain)
    best = jnp.argmax(gain).astype(jnp.int32)
    # W' -= η g_best, so every validation logit moves by -η (zh_m · zh_best) a_best.
    out = out - lr * (zh_val @ zh[best])[:, None] * a[best][None, :]
    if regularizer == "facility_location":
      reg = jnp.minimum(reg, dist[best])
    elif regularizer == "diversity":
      reg = reg + jnp.exp(-0.5 * distances.sq_dist(cand, distances.take(cand, best)))
    return idx.at[t].set(best), taken.at[best].set(True), out, reg

  carry = (jnp.zeros((k,), jnp.int32), jnp.zeros((n,), bool), out0, reg0)
  idx, taken, _, _ = jax.lax.fori_loop(0, num_greedy, body, carry)
  if num_greedy < k:  # "random": the rest uniformly from what is left
    g = jax.random.gumbel(key, (n,), jnp.float32)
    g = jnp.where(taken | labeled_mask, -jnp.inf, g)
    rest = jax.lax.top_k(g, k - num_greedy)[1].astype(jnp.int32)
    idx = jax.lax.dynamic_update_slice(idx, rest, (num_greedy,))
  return idx, ok


def _check_labels(
  labels: Any, n: int, num_classes: int, name: str, only: jax.Array | None = None
) -> jax.Array:
  if not hasattr(labels, "shape") and not isinstance(labels, (list, tuple)):
    raise TypeError(f"{name} must be an integer array of shape ({n},), got {type(labels).__name__}")
  labels = jnp.asarray(labels)
  if labels.shape != (n,):
    raise ValueError(f"{name} must have shape ({n},), got shape {labels.shape}")
  if not jnp.issubdtype(labels.dtype, jnp.integer):
    raise TypeError(f"{name} must hold integer class labels, got dtype {labels.dtype}")
  if checks.is_concrete(labels) and (only is None or checks.is_concrete(only)):
    host = np.asarray(jax.device_get(labels))
    if only is not None:
      host = host[np.asarray(jax.device_get(only))]
    bad = (host < 0) | (host >= num_classes)
    if bad.any():
      raise ValueError(
        f"{name} must lie in [0, {num_classes}) to match the {num_classes} classes of the "
        f"logits, got {host[bad][:5].tolist()}"
      )
  return labels.astype(jnp.int32)


def check_validation(validation: Any, num_classes: int, feat_dim: int) -> Validation:
  """A :class:`Validation` (or a 3-tuple) consistent with the pool's classes and features."""
  if not isinstance(validation, tuple) or len(validation) != 3:
    raise TypeError(
      "validation must be a jaxal.glister.Validation(logits, features, labels) or a 3-tuple, "
      f"got {type(validation).__name__}"
    )
  logits = checks.check_logits(validation[0], "validation.logits")
  feats = checks.check_float_array(validation[1], "validation.features", 2, "[num_val, feat_dim]")
  checks.check_same_n("validation.logits", logits, "validation.features", feats)
  if logits.shape[1] != num_classes:
    raise ValueError(
      f"validation.logits has {logits.shape[1]} classes (shape {logits.shape}) but the pool's "
      f"logits have {num_classes}: the validation set must be scored by the same model"
    )
  if feats.shape[1] != feat_dim:
    raise ValueError(
      f"validation.features has dimension {feats.shape[1]} (shape {feats.shape}) but the "
      f"pool's features have dimension {feat_dim}"
    )
  if logits.shape[0] == 0:
    raise ValueError("validation must hold at least one point")
  labels = _check_labels(validation[2], logits.shape[0], num_classes, "validation.labels")
  return Validation(logits, feats, labels)


def num_greedy_picks(k: int, regularizer: str | None, lam: float | None) -> int:
  """Greedy picks of a batch of ``k``: ``k - floor(λ k)`` for ``"random"``, else ``k``."""
  if regularizer != "random":
    return k
  return k - int(math.floor(float(lam) * k + 1e-9))


def check_hyper(learning_rate: Any, regularizer: str | None, lam: Any) -> tuple[float, float]:
  """GLISTER's hyperparameters validated: ``(learning_rate, lam)`` as Python floats.

  Internal API (a strategy validates them here when it is built). ``lam`` is
  0.0 without a regulariser.

  Raises:
    TypeError: a non-number (a bool, a str).
    ValueError: ``learning_rate`` negative or not finite; an unknown
      regulariser; a regulariser without ``lam``; ``lam`` negative, not finite,
      or (for ``"random"``, a fraction) above 1.
  """
  learning_rate = checks.check_float(learning_rate, "learning_rate", low=0)
  if regularizer is None:
    return learning_rate, 0.0
  checks.check_one_of(regularizer, REGULARIZERS, "regularizer")
  if lam is None:
    raise ValueError(f"regularizer={regularizer!r} needs a finite number lam, got None")
  if regularizer == "random":
    return learning_rate, checks.check_float(
      lam, "lam (the fraction of random picks of regularizer='random')", low=0, high=1
    )
  return learning_rate, checks.check_float(lam, "lam", low=0)


def glister(
  key: jax.Array,
  logits: ArrayLike,
  features: ArrayLike,
  k: int,
  *,
  labeled_mask: ArrayLike | None = None,
  labels: ArrayLike | None = None,
  validation: Validation | tuple | None = None,
  learning_rate: float = 1e-3,
  regularizer: str | None = None,
  lam: float | None = None,
  bias: bool = True,
  check_finite: bool = True,
) -> jax.Array:
  r"""GLISTER-active with the one-step last-layer approximation.

  GLISTER solves
  :math:`\min_{S} L_V(\theta - \eta \nabla_\theta L_T(\theta, L \cup S))`
  greedily. With :math:`g_i = (p_i - e_{y_i}) \otimes [z_i, 1]` the
  last-layer gradient of example :math:`i` (candidates at their hypothesised
  labels :math:`\hat y_i = \arg\max p_i`), the validation logits start at
  :math:`f_m - \eta\, G_L [z_m, 1]`, :math:`G_L = \sum_{i \in L} g_i`, and
  each step

  1. forms the validation gradient
     :math:`g_V = \frac1M \sum_m (\mathrm{softmax}(f_m) - e_{y_m}) \otimes [z_m, 1]`,
  2. picks the unlabeled :math:`c` maximising
     :math:`\langle g_c, g_V \rangle + \lambda R(c)`,
  3. takes the step: :math:`f_m \leftarrow f_m - \eta\, ([z_m,1] \cdot [z_c,1])\,(p_c - e_{\hat y_c})`.

  Regularisers (DISTIL's ``typeOf``):

  * ``"random"``: ``k - floor(λ k)`` greedy picks, the rest uniformly at
    random from the remaining unlabeled points (``0 <= λ <= 1``).
  * ``"facility_location"``: :math:`R(c) = \sum_{j \in U} \max(0, m_j - d_{cj})`,
    the drop in the sum over unlabeled :math:`j` of the squared gradient
    distance :math:`m_j` to the nearest pick (:math:`m_j` starts at the
    largest pairwise distance). Holds an ``[N, N]`` distance matrix.
  * ``"diversity"``: :math:`R(c) = -\sum_{s \in S} \exp(-d_{cs} / 2)`.

  Args:
    key: a ``jax.random.key`` (used by ``"random"`` only).
    logits: ``[num_points, num_classes]`` logits of the pool.
    features: ``[num_points, feat_dim]`` penultimate features of the pool.
    k: batch size (static), ``1 <= k <=`` the number of unlabeled points.
    labeled_mask: optional ``[num_points]`` bool, True where labeled.
    labels: optional ``[num_points]`` integer labels; only labeled entries are
      read. Labeled points without them are taken at their hypothesised labels.
    validation: a :class:`Validation` (or ``(logits, features, labels)``); by
      default the whole pool: labeled points at ``labels``, unlabeled points
      at hypothesised labels.
    learning_rate: :math:`\eta`, the step size of the one-step update (use
      the training learning rate).
    regularizer: None, ``"random"``, ``"facility_location"`` or ``"diversity"``.
    lam: :math:`\lambda`; required with a regulariser.
    bias: include the bias gradient (the trailing 1 in :math:`[z, 1]`).
    check_finite: NaN or ``+inf`` logits and NaN or inf features are an error
      naming the first offending row (flags from the compiled selection itself);
      False for callers that checked already.

  Returns:
    ``[k]`` int32 indices, greedy picks first: unique, unlabeled.

  References:
    Killamsetty, Sivasubramanian, Ramakrishnan & Iyer, GLISTER:
    Generalization based Data Subset Selection for Efficient and Robust
    Learning, AAAI 2021; DISTIL's ``GLISTER`` strategy (decile-team/distil).
  """
  checks.check_key(key)
  logits = checks.check_logits(logits)
  features = checks.check_float_array(features, "features", 2, "[num_points, feat_dim]")
  checks.check_same_n("logits", logits, "features", features)
  n, num_classes = logits.shape
  labeled_mask = checks.check_labeled_mask(labeled_mask, n)
  k = checks.check_budget(k, n, labeled_mask)
  bias = checks.check_bool(bias, "bias")
  learning_rate, lam = check_hyper(learning_rate, regularizer, lam)
  # Gradient embeddings need finite values (the candidates' are formed in _glister).
  check_finite = checks.check_bool(check_finite, "check_finite")
  return glister_core(
    key,
    logits,
    features,
    k,
    labeled_mask,
    labels=labels,
    validation=validation,
    learning_rate=learning_rate,
    regularizer=regularizer,
    lam=lam,
    bias=bias,
    check_finite=check_finite,
  )


def glister_core(
  key: jax.Array,
  logits: jax.Array,
  features: jax.Array,
  k: int,
  labeled_mask: jax.Array,
  *,
  labels: ArrayLike | None,
  validation: Validation | tuple | None,
  learning_rate: float,
  regularizer: str | None,
  lam: float,
  bias: bool,
  check_finite: bool = False,
) -> jax.Array:
  """:func:`glister` on validated pool arguments; ``labels`` and ``validation`` are checked here.

  Internal API for callers that validated ``key``, ``labeled_mask`` and ``k``
  at their own entry, the hyperparameters with :func:`check_hyper`, and the
  pool's logits and features (shapes and finiteness), so nothing is
  validated twice.

  Args:
    key: a typed key of shape ``()``.
    logits: ``[num_points, num_classes]`` float, finite.
    features: ``[num_points, feat_dim]`` float, finite.
    k: a Python int, ``1 <= k <=`` the number of unlabeled points.
    labeled_mask: ``[num_points]`` bool.
    labels: as :func:`glister` takes them (checked here).
    validation: as :func:`glister` takes it (checked here).
    learning_rate: as :func:`check_hyper` returns it.
    regularizer: None or one of :data:`REGULARIZERS`.
    lam: as :func:`check_hyper` returns it.
    bias: a Python bool.
    check_finite: check the pool's logits and features for NaN or inf, with flags
      from the compiled selection (for callers that did not check them).

  Returns:
    ``[k]`` int32 indices, greedy picks first.
  """
  n, num_classes = logits.shape
  hyp = _hypothesised(logits)
  if labels is None:
    train_labels = hyp
  else:
    train_labels = _check_labels(labels, n, num_classes, "labels", only=labeled_mask)
    train_labels = jnp.where(labeled_mask, train_labels, hyp)
  if validation is None:
    validation = Validation(logits, features, train_labels)
  else:
    validation = check_validation(validation, num_classes, features.shape[1])
  idx, (logits_ok, features_ok) = _glister(
    key,
    logits.astype(jnp.float32),
    features.astype(jnp.float32),
    labeled_mask,
    train_labels,
    validation.logits.astype(jnp.float32),
    validation.features.astype(jnp.float32),
    validation.labels,
    jnp.float32(learning_rate),
    jnp.float32(lam),
    k,
    num_greedy_picks(k, regularizer, lam),
    regularizer,
    bias,
  )
  if check_finite:  # gradient embeddings need finite values
    checks.check_finite_logits(logits, ok=logits_ok)
    checks.check_finite(
      features, "features", purpose="gradient embeddings need finite values", ok=features_ok
    )
  return idx
