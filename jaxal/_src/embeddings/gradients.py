"""Last-layer gradient embeddings (BADGE), exact and closed-form.

BADGE embeds an example ``x`` as the gradient, with respect to the last
layer's parameters, of the cross-entropy loss at the model's own predicted
label :math:`\\hat y = \\arg\\max_c f_c(x)`. For a Dense head ``logits = z W + b``
(``W: [d, K]``, ``b: [K]``) the gradient has the closed form

.. math::
  \\frac{\\partial \\ell}{\\partial W_{:, c}} = (p_c - [\\hat y = c])\\, z, \\qquad
  \\frac{\\partial \\ell}{\\partial b_c} = p_c - [\\hat y = c],

an outer product ``a ⊗ z`` with ``a = p − onehot(ŷ)`` ``[K]``. Two functions:

* :func:`closed_form_gradient_embedding` returns that outer product factorised,
  as a :class:`~jaxal.embeddings.GradEmbedding` ``(a [N, K], z [N, d(+1)])``:
  ``O(N (K + d))`` memory, and every distance works on it directly.
* :func:`gradient_embedding` is the exact per-example gradient,
  ``jax.vmap`` of ``jax.grad`` with respect to the parameters under a chosen
  path of any Flax model (linen params or an NNX state): right also when the
  head is not a plain Dense (a temperature, two small layers, ...).

**Layout.** Both give, for a Dense head, DISTIL's class-major layout: the
gradient of class ``c``'s weights (column ``c`` of ``kernel``, i.e. row ``c``
of ``kernel.T``) followed by the gradient of bias ``c`` when ``bias=True``::

  [∂W[:, 0], ∂b[0], ∂W[:, 1], ∂b[1], ..., ∂W[:, K-1], ∂b[K-1]]   # K * (d + 1)

which is ``GradEmbedding(a, [z, 1]).dense()``, so the exact and the closed
forms agree element by element. (DISTIL's ``bias_linear`` puts the ``K`` bias
entries first instead: a fixed permutation of the coordinates, which changes no
distance.) The sign is that of the true gradient, ``p − onehot(ŷ)``; DISTIL
stores its negative, which again changes no distance.
"""

from __future__ import annotations

import collections.abc
import functools
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.typing import ArrayLike

from jaxal._src import checks
from jaxal._src import executables
from jaxal._src import models as models_lib
from jaxal._src.embeddings.grad_embedding import GradEmbedding

FINITE = "gradient embeddings need finite values"

# ---------------------------------------------------------------------------
# Closed form.


@executables.jit(static_argnames=("bias", "flagged"))
def _closed_form(logits, features, bias, flagged=False):
  y = jnp.argmax(jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1), axis=-1)
  emb = closed_form_at(logits, features, y, bias)
  if not flagged:
    return emb
  return emb, (checks.logits_ok(logits), checks.all_finite(features)[0])


closed_form_core = _closed_form  # internal API: the jitted closed form, on checked arrays


def closed_form_at(
  logits: jax.Array, features: jax.Array, labels: jax.Array, bias: bool
) -> GradEmbedding:
  """``(p − onehot(y)) ⊗ [z, 1]`` at given labels ``y [N]`` (traceable, no checks).

  The gradient of the cross-entropy at ``y`` w.r.t. a Dense head;
  :func:`closed_form_gradient_embedding` is this at ``y = argmax p``.
  """
  logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
  onehot = jax.nn.one_hot(labels, logp.shape[-1], dtype=jnp.bool_)
  # p − onehot; at ŷ, p_ŷ − 1 is computed as −Σ_{c≠ŷ} p_c, accurate when p_ŷ ≈ 1.
  p_other = jnp.where(onehot, 0.0, jnp.exp(logp))
  a = jnp.where(onehot, -jnp.sum(p_other, axis=-1, keepdims=True), p_other)
  z = features.astype(jnp.float32)
  if bias:
    z = jnp.concatenate([z, jnp.ones((z.shape[0], 1), jnp.float32)], axis=-1)
  return GradEmbedding(a, z)


def closed_form_gradient_embedding(
  logits: ArrayLike, features: ArrayLike, *, bias: bool = True
) -> GradEmbedding:
  r"""BADGE's gradient embedding of a Dense head, factorised: ``(p − onehot(ŷ)) ⊗ z``.

  For a final Dense layer ``logits = z W + b``, the gradient of
  :math:`-\log p_{\hat y}` at the predicted label :math:`\hat y = \arg\max p`
  with respect to ``W`` (and ``b``) is :math:`(p - e_{\hat y}) \otimes z`
  (and :math:`p - e_{\hat y}`). It is returned as the factorised
  :class:`GradEmbedding` ``(a, z)``; ``.dense()`` is the ``[N, K·(d+1)]``
  class-major matrix (module docstring), equal to :func:`gradient_embedding`
  on the same model. Computed from log-softmax in float32, so saturated logits
  give no NaN, and ``p_ŷ − 1`` is taken as ``−Σ_{c≠ŷ} p_c`` so that it stays
  accurate (not rounded to 0) when ``p_ŷ`` is within float32 epsilon of 1.

  Args:
    logits: ``[num_points, num_classes]`` logits of the model.
    features: ``[num_points, feat_dim]`` penultimate features (the last
      layer's input).
    bias: include the bias gradient (a trailing 1 on ``z``).

  Returns:
    ``GradEmbedding(a [num_points, num_classes], z [num_points, feat_dim (+1)])``.

  Raises:
    ValueError: mismatched numbers of points, non-finite logits or features.

  Examples:
    >>> import jax.numpy as jnp
    >>> from jaxal import embeddings
    >>> g = embeddings.closed_form_gradient_embedding(
    ...     jnp.array([[2.0, 0.0]]), jnp.array([[1.0, 3.0]]), bias=False)
    >>> g.dense().round(3)  # class 0 is ŷ: (p0 - 1) z, then p1 z
    Array([[-0.119, -0.358,  0.119,  0.358]], dtype=float32)

  References:
    Ash et al., Deep Batch Active Learning by Diverse, Uncertain Gradient Lower
    Bounds (BADGE), ICLR 2020.
  """
  logits = checks.check_logits(logits)
  features = checks.check_float_array(features, "features", 2, "[num_points, feat_dim]")
  checks.check_same_n("logits", logits, "features", features)
  bias = checks.check_bool(bias, "bias")
  emb, (logits_ok, features_ok) = _closed_form(logits, features, bias, True)
  checks.check_finite_logits(logits, ok=logits_ok)
  checks.check_finite(features, "features", purpose=FINITE, ok=features_ok)
  return emb


# ---------------------------------------------------------------------------
# Exact per-example gradients.


def _key_name(entry: Any) -> str:
  for attr in ("key", "name", "idx"):
    if hasattr(entry, attr):
      return str(getattr(entry, attr))
  return str(entry)


def _leaf_paths(params: Any) -> list[tuple[str, ...]]:
  """Every leaf's path as names; an NNX ``Variable``'s trailing ``.value`` is dropped."""
  paths = []
  for path, _ in jax.tree_util.tree_flatten_with_path(params)[0]:
    if path and isinstance(path[-1], jax.tree_util.GetAttrKey) and path[-1].name == "value":
      path = path[:-1]
    paths.append(tuple(_key_name(e) for e in path))
  return paths


def _fmt(path: Sequence[str]) -> str:
  return "/".join(path) if path else "<root>"


def _under(path: tuple[str, ...], head: tuple[str, ...]) -> bool:
  return path[: len(head)] == head


def _is_float(leaf: Any) -> bool:
  return hasattr(leaf, "dtype") and jnp.issubdtype(leaf.dtype, jnp.floating)


def _definition_order(params: Any) -> dict[tuple[str, ...], int]:
  """Position of every mapping path in insertion order (linen keeps definition order)."""
  order: dict[tuple[str, ...], int] = {}

  def walk(node, prefix):
    order.setdefault(prefix, len(order))
    if isinstance(node, collections.abc.Mapping):
      for k, v in node.items():
        walk(v, prefix + (str(k),))

  walk(params, ())
  return order


def _dense_like(params: Any) -> list[tuple[tuple[str, ...], tuple[int, ...]]]:
  """``(path, kernel shape)`` of every {kernel [d, K], optional bias [K]} group,
  in definition order where the tree keeps it."""
  leaves = jax.tree_util.tree_leaves(params)
  groups: dict[tuple[str, ...], dict[str, Any]] = {}
  for path, leaf in zip(_leaf_paths(params), leaves):
    if path:
      groups.setdefault(path[:-1], {})[path[-1]] = leaf
  out = []
  for path, g in groups.items():
    kernel, b = g.get("kernel"), g.get("bias")
    if set(g) - {"kernel", "bias"} or kernel is None or np.ndim(kernel) != 2:
      continue
    if b is not None and np.shape(b) != (np.shape(kernel)[1],):
      continue
    out.append((path, tuple(np.shape(kernel))))
  order = _definition_order(params)
  return sorted(out, key=lambda item: order.get(item[0], len(order)))


def _module_paths(params: Any) -> list[str]:
  seen: dict[str, None] = {}
  for path in _leaf_paths(params):
    seen.setdefault(_fmt(path[:-1]), None)
  return list(seen)


def resolve_head(
  model: models_lib.Model,
  params: Any,
  example_x: jax.Array,
  head: str | Sequence[str] | None = None,
) -> tuple[str, ...]:
  """The parameter path of the layer to differentiate, checked against ``params``.

  ``head`` (or else ``model.head``) must be a prefix of at least one float
  parameter's path. With neither, the final Dense is found from the params:
  among the Dense-like groups ``{kernel [d, K], bias [K]}`` whose kernel maps
  the feature dimension ``d`` (when the model returns features) to the number
  of classes ``K``, the last in parameter order (definition order for linen
  params; NNX states are sorted by name, so there several candidates are an
  error asking for ``head``).

  Args:
    model: the :class:`~jaxal.models.Model` whose parameters ``params`` are.
    params: the model's parameters (a pytree; linen params or an NNX state).
    example_x: ``[num_points, ...]`` inputs of the model (only the first is used, for shapes).
    head: the layer's parameter path, ``"a/b"`` or a sequence of names; None to use
      ``model.head`` or else to find the final Dense layer.

  Returns:
    The parameter path of the head layer, a tuple of names.

  Raises:
    ValueError: the path does not exist (the message lists the available
      module paths), or no / several candidate heads.
  """
  path = models_lib.head_path(head) if head is not None else model.head
  paths = _leaf_paths(params)
  leaves = jax.tree_util.tree_leaves(params)
  available = ", ".join(_module_paths(params))
  if path is not None:
    if not any(_under(p, path) and _is_float(l) for p, l in zip(paths, leaves)):
      raise ValueError(
        f"head {_fmt(path)!r} is not a parameter path of this model (no floating-point "
        f"parameter lies under it); available paths: {available}"
      )
    return path
  logits, features = jax.eval_shape(
    lambda p, x: models_lib.apply(model, p, x), params, example_x[:1]
  )
  num_classes = logits.shape[-1]
  feat_dim = None if features is None else features.shape[-1]
  candidates = [
    p
    for p, shape in _dense_like(params)
    if shape[1] == num_classes and (feat_dim is None or shape[0] == feat_dim)
  ]
  if not candidates:
    raise ValueError(
      f"could not find the final Dense layer (a kernel of shape [{feat_dim or 'd'}, "
      f"{num_classes}] with its bias); pass head= one of the available paths: {available}"
    )
  if len(candidates) > 1 and isinstance(params, nnx.State):
    raise ValueError(
      f"several Dense layers could be the head ({', '.join(map(_fmt, candidates))}) and "
      f"this parameter tree does not keep definition order; pass head= explicitly"
    )
  return candidates[-1]


def _layout(
  grads: list[tuple[tuple[str, ...], jax.Array]], head: tuple[str, ...], bias: bool
) -> jax.Array:
  """``[B, D]`` embedding from per-example gradients ``[(path, [B, ...])]`` under ``head``."""
  rel = {p[len(head) :]: g for p, g in grads}
  if set(rel) <= {("kernel",), ("bias",)} and ("kernel",) in rel and rel[("kernel",)].ndim == 3:
    gk = jnp.swapaxes(rel[("kernel",)], 1, 2)  # [B, K, d]: class-major
    if bias and ("bias",) in rel:
      gk = jnp.concatenate([gk, rel[("bias",)][..., None]], axis=-1)  # [B, K, d + 1]
    return gk.reshape(gk.shape[0], -1)
  kept = [g.reshape(g.shape[0], -1) for p, g in grads if bias or p[-1:] != ("bias",)]
  if not kept:
    raise ValueError(f"head {_fmt(head)!r} holds only bias parameters and bias=False")
  return jnp.concatenate(kept, axis=-1)


@executables.jit(static_argnames=("model", "head", "bias"))
def _grad_embedding_batch(model, params, xb, head, bias, valid):
  """``(rows [B, D], ok)``: the batch's gradient rows and whether its first ``valid`` are finite."""
  leaves, treedef = jax.tree_util.tree_flatten(params)
  paths = _leaf_paths(params)
  sel = [i for i, (p, l) in enumerate(zip(paths, leaves)) if _under(p, head) and _is_float(l)]
  head_leaves = [leaves[i] for i in sel]

  def loss(hl, x1):
    full = list(leaves)
    for i, l in zip(sel, hl):
      full[i] = l
    logits, _ = models_lib.apply(model, jax.tree_util.tree_unflatten(treedef, full), x1[None])
    logp = jax.nn.log_softmax(logits[0], axis=-1)
    y = jnp.argmax(jax.lax.stop_gradient(logp))
    return -logp[y]

  g = jax.vmap(jax.grad(loss), in_axes=(None, 0))(head_leaves, xb)
  rows = _layout([(paths[i], gi.astype(jnp.float32)) for i, gi in zip(sel, g)], head, bias)
  real = jnp.arange(rows.shape[0]) < valid  # padding rows are not the caller's
  return rows, jnp.all(jnp.isfinite(rows) | ~real[:, None])


@functools.partial(jax.jit, donate_argnums=0)
def _write_rows(out, rows, start):
  return jax.lax.dynamic_update_slice_in_dim(out, rows, start, axis=0)


def gradient_embedding(
  model: models_lib.Model,
  params: Any,
  x: ArrayLike,
  *,
  head: str | Sequence[str] | None = None,
  bias: bool = True,
  batch_size: int = 256,
) -> jax.Array:
  r"""The exact per-example gradient embedding of BADGE, by ``vmap(grad)``.

  Row ``n`` is :math:`\nabla_\theta\, [-\log p_{\hat y_n}(x_n; \theta)]`, the
  gradient of the cross-entropy at the model's own prediction
  :math:`\hat y_n = \arg\max_c p_c(x_n)` with respect to the parameters
  :math:`\theta` under the path ``head``, computed with ``jax.vmap`` over a
  per-example ``jax.grad`` in fixed-size batches (one compile of the gradient
  step per batch shape, as :func:`jaxal.models.predict`; the rows are written
  in place into the output, so peak memory is the output plus one batch).
  Works for any head, not only a Dense.

  Layout: when the parameters under ``head`` are exactly a Dense layer's
  ``kernel [d, K]`` (and ``bias [K]``), DISTIL's class-major layout of the
  module docstring, ``K * (d + 1)`` wide (``K * d`` with ``bias=False``), equal
  to ``closed_form_gradient_embedding(...).dense()``. For any other head, the
  flattened gradients of its floating-point parameters concatenated in
  ``jax.tree_util`` leaf order (the order of
  ``jax.flatten_util.ravel_pytree``); ``bias=False`` then drops every
  parameter named ``bias``.

  This materialises ``[num_points, D]``; for a Dense head BADGE uses the
  factorised closed form instead.

  Args:
    model: a :class:`jaxal.models.Model`.
    params: its parameters (linen ``params`` collection or NNX state).
    x: ``[num_points, ...]`` inputs.
    head: parameter path of the layer (a tuple of names or ``"a/b"``), default
      ``model.head``, else the final Dense found from ``params``.
    bias: include the bias gradient.
    batch_size: examples per jitted step.

  Returns:
    ``[num_points, D]`` float32.

  Raises:
    ValueError: a ``head`` path that does not exist (the message lists the
      available paths), non-finite gradients.

  References:
    Ash et al., Deep Batch Active Learning by Diverse, Uncertain Gradient Lower
    Bounds (BADGE), ICLR 2020.
  """
  if not isinstance(model, models_lib.Model):
    raise TypeError(f"model must be a jaxal.models.Model, got {type(model).__name__}")
  bias = checks.check_bool(bias, "bias")
  x, batch_size = models_lib.check_pool(x, batch_size)
  path = resolve_head(model, params, x, head)
  n = x.shape[0]
  if n <= batch_size:  # one zero-padded batch
    xb = jnp.concatenate([x, jnp.zeros((batch_size - n, *x.shape[1:]), x.dtype)])
    emb, ok = _grad_embedding_batch(model, params, xb, path, bias, n)
    emb, flags = emb[:n], [ok]
  else:
    # Rows are written in place into one [n, D] buffer (donated), so peak memory
    # is the output plus one batch, not twice the output. The last batch is
    # shifted back to end at n instead of being padded; the rows it repeats get
    # the same values again.
    starts = list(range(0, n - batch_size, batch_size)) + [n - batch_size]
    emb, flags = None, []
    for start in starts:
      xb = jax.lax.dynamic_slice_in_dim(x, start, batch_size, axis=0)
      rows, ok = _grad_embedding_batch(model, params, xb, path, bias, batch_size)
      flags.append(ok)  # each batch's finiteness, from the compiled batch itself
      if emb is None:
        emb = jnp.zeros((n, rows.shape[1]), rows.dtype)
      emb = _write_rows(emb, rows, start)
  ok = flags[0] if len(flags) == 1 else jnp.all(jnp.stack(flags))
  checks.check_finite(emb, "the gradient embedding", purpose=FINITE, ok=ok)
  return emb
