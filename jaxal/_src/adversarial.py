"""Adversarial distances to the decision boundary: DeepFool and BIM.

Both run one ``jax.lax.while_loop`` over a fixed-size, zero-padded batch of the
pool (a finished example's state is frozen while the others go on), so one
compile serves every round and every pool size; once few rows of a batch are
still iterating, they are gathered into a smaller batch. Per-example gradients come from
backward passes of the whole batch (the gradient of the batch's summed logit
``k`` is each example's own): a model's inference-mode forward must treat the
examples of a batch independently, as every standard network does. Inputs may have any shape the model accepts
(flat features or images); norms are over all input dimensions.

A point whose prediction never flips within ``max_iter`` iterations gets
distance ``+inf``: acquisition takes the smallest distances, so such points
rank last.
"""

from __future__ import annotations

import math
from typing import Any
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from jaxal._src import checks
from jaxal._src import executables
from jaxal._src import models as models_lib


class Attack(NamedTuple):
  """Per-example result of an attack on a pool.

  Attributes:
    distance: ``[num_points]`` float32, squared L2 norm of the perturbation that flips the
      model's prediction; ``+inf`` where it did not flip within ``max_iter``.
    perturbation: ``[num_points, ...]`` float32 (the input's shape), the final perturbation
      (added to the input).
    num_iter: ``[num_points]`` int32, iterations run.
    flipped: ``[num_points]`` bool, whether the prediction at ``x + perturbation`` differs
      from the prediction at ``x``.
  """

  distance: jax.Array  # shape=[num_points], float32
  perturbation: jax.Array  # shape=[num_points, ...], float32
  num_iter: jax.Array  # shape=[num_points], int32
  flipped: jax.Array  # shape=[num_points], bool


def _batch_logits_fn(model, params):
  def f(xb):  # a batch [B, ...] -> logits [B, K]
    return models_lib.apply(model, params, xb)[0]

  return f


def _rows(mask: jax.Array, like: jax.Array) -> jax.Array:
  """``[B]`` bool broadcastable against ``like`` ``[B, ...]``."""
  return mask.reshape(mask.shape + (1,) * (like.ndim - 1))


def _batch_jacobian(f, xb):
  """``(jac [B, K, ...], logits [B, K])`` of a batch forward, by ``K`` backward passes.

  A model's forward in inference mode treats the examples of a batch independently, so the
  gradient of ``sum_b f(x)_{b,k}`` with respect to ``x_b`` is example ``b``'s gradient of its
  ``k``-th logit: one backward pass of the whole batch per class (batched convolutions, not
  per-example ones, which is what makes convolutional models fast).
  """
  logits, vjp = jax.vjp(f, xb)
  eye = jnp.eye(logits.shape[-1], dtype=logits.dtype)
  jac = jax.vmap(lambda e: vjp(jnp.broadcast_to(e, logits.shape))[0])(eye)  # [K, B, ...]
  return jnp.moveaxis(jac, 0, 1), logits


def _deepfool_step(r_tot, jac, logits, label):
  """One DeepFool step for one example from its logits ``[K]`` and Jacobian ``[K, ...]``."""
  num_classes = logits.shape[0]
  others = jnp.arange(num_classes) != label
  jac = jac.reshape(num_classes, -1)
  w = jac - jac[label][None, :]  # [K, D]: ∇(f_k - f_label)
  fk = logits - logits[label]
  norm = jnp.sqrt(jnp.sum(w * w, axis=-1))
  pert = jnp.where(others & (norm > 0), jnp.abs(fk) / jnp.where(norm > 0, norm, 1.0), jnp.inf)
  j = jnp.argmin(pert)
  step = jnp.where(
    jnp.isfinite(pert[j]), (pert[j] + 1e-4) / jnp.where(norm[j] > 0, norm[j], 1.0), 0.0
  )
  return r_tot + (step * w[j]).reshape(r_tot.shape)


def _until_done(active, body, inputs, state):
  """Runs ``body`` on a batch until ``active`` is False everywhere, compacting stragglers.

  ``inputs`` and ``state`` are pytrees of ``[B, ...]`` arrays (``inputs["valid"]`` the
  ``[B]`` rows to work on), ``active(inputs, state) -> [B] bool`` and
  ``body(inputs, state, on) -> state`` (changing rows where ``on`` only); each row's result
  depends on that row alone. The whole batch iterates while more than ``B / 8`` of its rows
  are active; the rest are then gathered ``B / 8`` at a time and finished in that smaller
  batch, so a few slow rows do not make every row pay their iterations.
  """
  b = inputs["valid"].shape[0]
  m = max(1, min(b, b // 8))

  def step(inp, st):
    return body(inp, st, active(inp, st))

  state = jax.lax.while_loop(
    lambda st: jnp.sum(active(inputs, st)) > m, lambda st: step(inputs, st), state
  )
  take = lambda idx: lambda a: a[idx]

  def chunk(st):
    on = active(inputs, st)
    idx = jnp.argsort(~on, stable=True)[:m]  # up to m active rows, the lowest indices first
    sub_in = jax.tree.map(take(idx), inputs)
    sub_in["valid"] = on[idx]
    sub = jax.lax.while_loop(
      lambda t: jnp.any(active(sub_in, t)), lambda t: step(sub_in, t), jax.tree.map(take(idx), st)
    )
    chosen = on[idx]
    return jax.tree.map(lambda a, v: a.at[idx].set(jnp.where(_rows(chosen, v), v, a[idx])), st, sub)

  return jax.lax.while_loop(lambda st: jnp.any(active(inputs, st)), chunk, state)


@executables.jit(
  static_argnames=("model", "max_iter"), compiler_options=executables.ELEMENTAL_EMITTERS
)
def _deepfool_batch(model, params, xb, valid, overshoot, max_iter):
  f = _batch_logits_fn(model, params)
  if max_iter == 0:
    b = xb.shape[0]
    return jnp.zeros_like(xb), jnp.zeros((b,), jnp.int32), jnp.zeros((b,), bool)
  step = jax.vmap(_deepfool_step)
  # The first iteration is peeled off the loop: most points flip in one step.
  jac0, logits0 = _batch_jacobian(f, xb)
  label = jnp.argmax(logits0, axis=-1)
  r_tot = jnp.where(_rows(valid, xb), step(jnp.zeros_like(xb), jac0, logits0, label), 0.0)
  flipped = valid & (jnp.argmax(f(xb + (1.0 + overshoot) * r_tot), axis=-1) != label)
  state = (r_tot, valid.astype(jnp.int32), flipped)

  def active(inp, state):
    _, i, flipped = state
    return inp["valid"] & ~flipped & (i < max_iter)

  def body(inp, state, on):
    r_tot, i, flipped = state
    x0 = inp["x"]
    jac, logits = _batch_jacobian(f, x0 + (1.0 + overshoot) * r_tot)
    r_tot = jnp.where(_rows(on, x0), step(r_tot, jac, logits, inp["label"]), r_tot)
    now = jnp.argmax(f(x0 + (1.0 + overshoot) * r_tot), axis=-1) != inp["label"]
    return r_tot, i + on.astype(jnp.int32), jnp.where(on, now, flipped)

  inputs = {"x": xb, "valid": valid, "label": label}
  r_tot, i, flipped = _until_done(active, body, inputs, state)
  return (1.0 + overshoot) * r_tot, i, flipped


@executables.jit(
  static_argnames=("model", "max_iter"), compiler_options=executables.ELEMENTAL_EMITTERS
)
def _bim_batch(model, params, xb, valid, step, eps, max_iter):
  f = _batch_logits_fn(model, params)
  label = jnp.argmax(f(xb), axis=-1)

  def grad_fn(x0, eta, lab):  # the batch's summed cross-entropy: per-example gradients
    def loss(eta):
      logits = f(x0 + eta)
      picked = jnp.take_along_axis(logits, lab[:, None], axis=-1)[:, 0]
      return jnp.sum(jax.nn.logsumexp(logits, axis=-1) - picked), logits

    return jax.grad(loss, has_aux=True)(eta)

  def active(inp, state):
    _, i, flipped, _ = state
    return inp["valid"] & ~flipped & (i < max_iter)

  def body(inp, state, on):
    eta, i, flipped, g = state
    rows = _rows(on, eta)
    eta = jnp.where(rows, jnp.clip(eta + step * jnp.sign(g), -eps, eps), eta)
    g_new, logits = grad_fn(inp["x"], eta, inp["label"])
    now = jnp.argmax(logits, axis=-1) != inp["label"]
    return eta, i + on.astype(jnp.int32), jnp.where(on, now, flipped), jnp.where(rows, g_new, g)

  eta0 = jnp.zeros_like(xb)
  g0, _ = grad_fn(xb, eta0, label)
  b = xb.shape[0]
  state = (eta0, jnp.zeros((b,), jnp.int32), jnp.zeros((b,), bool), g0)
  inputs = {"x": xb, "valid": valid, "label": label}
  eta, i, flipped, _ = _until_done(active, body, inputs, state)
  return eta, i, flipped


def _run(batch_fn, x, batch_size) -> Attack:
  """``batch_fn`` over ``x`` in zero-padded batches of ``batch_size`` rows, one compiled call
  per batch; the batches are cut and the results joined by cached programs (no eager op)."""
  if not isinstance(x, jax.Array):
    x = jax.device_put(x)  # once, not with every batch
  n = x.shape[0]
  outs = [batch_fn(*_batch(x, start, batch_size)) for start in range(0, n, batch_size)]
  return Attack(*_joined(outs, n))


@executables.jit(static_argnames=("batch_size",))
def _batch(x, start, batch_size):
  """``(xb [batch_size, ...], valid [batch_size])``: rows ``start:start + batch_size`` of ``x``
  in the float dtype the loops carry (float32 at least), zero rows past the end."""
  x = jnp.asarray(x)
  if not jnp.issubdtype(x.dtype, jnp.floating) or jnp.finfo(x.dtype).bits < 32:
    x = x.astype(jnp.float32)  # float16 / bfloat16 / ints: the loops carry float32
  rows = start + jnp.arange(batch_size, dtype=jnp.int32)
  valid = rows < x.shape[0]
  xb = jnp.take(x, jnp.minimum(rows, x.shape[0] - 1), axis=0)
  return jnp.where(valid.reshape((-1,) + (1,) * (x.ndim - 1)), xb, jnp.zeros((), x.dtype)), valid


@executables.jit(static_argnames=("n",))
def _joined(outs, n):
  """The batches' ``(pert, iterations, flipped)`` joined and cut to ``n`` rows, with the
  flipped points' squared distances: the fields of an :class:`Attack`."""
  pert = jnp.concatenate([o[0] for o in outs])[:n].astype(jnp.float32)
  it = jnp.concatenate([o[1] for o in outs])[:n]
  flipped = jnp.concatenate([o[2] for o in outs])[:n]
  return _flipped_sq_norm(pert, flipped), pert, it, flipped


@executables.jit
def _flipped_sq_norm(pert: jax.Array, flipped: jax.Array) -> jax.Array:
  """``||pert||²`` per row where flipped, ``+inf`` elsewhere; finite for every flipped row.

  Computed on ``pert / max|pert|`` (no overflow of the squares) and clipped to
  the largest float32, so a flipped point never ranks with the unflipped ones.
  """
  flat = pert.reshape(pert.shape[0], -1)
  top = jnp.max(jnp.abs(flat), axis=-1)
  top = jnp.where(jnp.isfinite(top) & (top > 0), top, 1.0)
  norm = top * jnp.sqrt(jnp.sum(jnp.square(flat / top[:, None]), axis=-1))
  biggest = jnp.finfo(jnp.float32).max
  sq = jnp.minimum(jnp.square(jnp.minimum(norm, jnp.sqrt(biggest))), biggest)
  return jnp.where(flipped, jnp.where(jnp.isnan(sq), biggest, sq), jnp.inf)


def check_attack_args(model: Any, params: Any, x: Any) -> None:
  """The model, and that it accepts inputs shaped as ``x`` (abstractly: no FLOPs)."""
  if not isinstance(model, models_lib.Model):
    raise TypeError(f"model must be a jaxal.models.Model, got {type(model).__name__}")
  if not hasattr(x, "shape"):
    raise TypeError(f"x must be an array of shape [num_points, ...], got {type(x).__name__}")
  checks.check_model_input(lambda xb: models_lib.apply(model, params, xb)[0], x, "x")


def check_deepfool_options(
  max_iter: Any, overshoot: Any, batch_size: Any
) -> tuple[int, float, int]:
  """:func:`deepfool`'s options validated: ``(max_iter, overshoot, batch_size)``.

  Internal API (a strategy validates them here when it is built).

  Raises:
    TypeError: a non-number (a bool, a float ``max_iter``).
    ValueError: ``max_iter < 0``, ``overshoot`` negative or not finite, ``batch_size < 1``.
  """
  return (
    checks.check_nonnegative_int(max_iter, "max_iter"),
    checks.check_float(overshoot, "overshoot", low=0),
    checks.check_positive_int(batch_size, "batch_size"),
  )


def check_bim_options(
  step: Any, eps: Any, max_iter: Any, batch_size: Any
) -> tuple[float, float, int, int]:
  """:func:`bim`'s options validated: ``(step, eps, max_iter, batch_size)``.

  Internal API (a strategy validates them here when it is built).

  Raises:
    TypeError: a non-number (a bool, a float ``max_iter``).
    ValueError: ``step`` not positive and finite, ``eps`` not positive (``inf``
      allowed), ``max_iter < 0``, ``batch_size < 1``.
  """
  return (
    checks.check_float(step, "step", low=0, low_open=True),
    checks.check_float(eps, "eps", low=0, low_open=True, allow_inf=True),
    checks.check_nonnegative_int(max_iter, "max_iter"),
    checks.check_positive_int(batch_size, "batch_size"),
  )


def deepfool_core(
  model: models_lib.Model,
  params: Any,
  x: ArrayLike,
  max_iter: int,
  overshoot: float,
  batch_size: int,
) -> Attack:
  """:func:`deepfool` on arguments already validated (:func:`check_attack_args`,
  :func:`check_deepfool_options`): no checks, same result. Internal API."""
  fn = lambda xb, v: _deepfool_batch(model, params, xb, v, jnp.float32(overshoot), max_iter)
  return _run(fn, x, batch_size)


def bim_core(
  model: models_lib.Model,
  params: Any,
  x: ArrayLike,
  step: float,
  eps: float,
  max_iter: int,
  batch_size: int,
) -> Attack:
  """:func:`bim` on arguments already validated (:func:`check_attack_args`,
  :func:`check_bim_options`): no checks, same result. Internal API."""
  fn = lambda xb, v: _bim_batch(model, params, xb, v, jnp.float32(step), jnp.float32(eps), max_iter)
  return _run(fn, x, batch_size)


def deepfool(
  model: models_lib.Model,
  params: Any,
  x: ArrayLike,
  *,
  max_iter: int = 50,
  overshoot: float = 0.02,
  batch_size: int = 256,
) -> Attack:
  r"""DeepFool's smallest L2 perturbation that flips each prediction.

  From :math:`x_0 = x` with prediction :math:`\hat k`, each iteration
  linearises the logits at :math:`x_i = x + (1 + \text{overshoot})\, r`:

  .. math::
    j = \arg\min_{k \ne \hat k} \frac{|f_k - f_{\hat k}|}{\|w_k\|}, \quad
    w_k = \nabla f_k - \nabla f_{\hat k}, \qquad
    r \mathrel{+}= \Big(\frac{|f_j - f_{\hat k}|}{\|w_j\|} + 10^{-4}\Big) \frac{w_j}{\|w_j\|},

  until :math:`\arg\max f(x_i) \ne \hat k` or ``max_iter`` iterations. The
  returned perturbation is :math:`(1 + \text{overshoot})\, r`. For a linear
  classifier one iteration reaches the nearest boundary:
  :math:`\|\cdot\|^2 = (1 + \text{overshoot})^2 (\min_k |f_k - f_{\hat k}| / \|w_k - w_{\hat k}\| + 10^{-4})^2`.

  Each iteration costs one Jacobian of the logits (``K`` backward passes).

  Args:
    model: a :class:`jaxal.models.Model` (only logits are used).
    params: its parameters.
    x: ``[num_points, ...]`` inputs.
    max_iter: iteration cap (static); unflipped points get distance ``+inf``.
    overshoot: the step beyond the linearised boundary.
    batch_size: examples per batch (the last is zero-padded).

  Returns:
    An :class:`Attack`; ``distance`` is the DeepFool score (smaller = closer
    to the boundary = pick first).

  References:
    Moosavi-Dezfooli, Fawzi & Frossard, DeepFool: a simple and accurate
    method to fool deep neural networks, CVPR 2016; Ducoffe & Precioso,
    Adversarial Active Learning for Deep Networks: a Margin Based Approach, 2018.
  """
  max_iter, overshoot, batch_size = check_deepfool_options(max_iter, overshoot, batch_size)
  check_attack_args(model, params, x)
  return deepfool_core(model, params, x, max_iter, overshoot, batch_size)


def bim(
  model: models_lib.Model,
  params: Any,
  x: ArrayLike,
  *,
  step: float = 0.05,
  eps: float = math.inf,
  max_iter: int = 100,
  batch_size: int = 256,
) -> Attack:
  r"""The Basic Iterative Method's perturbation that flips each prediction.

  .. math::
    \eta_0 = 0, \qquad
    \eta_{i+1} = \mathrm{clip}_{[-\epsilon, \epsilon]}\big(\eta_i + \text{step}\cdot
      \mathrm{sign}\, \nabla_\eta \mathrm{CE}(f(x + \eta_i), \hat k)\big),

  :math:`\hat k` the prediction at :math:`x`, until the prediction at
  :math:`x + \eta` differs from :math:`\hat k` or ``max_iter`` iterations.
  ``eps = inf`` (the default) leaves the perturbation unbounded, as DISTIL's
  ``AdversarialBIM`` does (whose ``eps`` is our ``step``); inputs are not
  clipped to a data range. One gradient per iteration.

  Args:
    model: a :class:`jaxal.models.Model` (only logits are used).
    params: its parameters.
    x: ``[num_points, ...]`` inputs.
    step: the per-iteration L∞ step.
    eps: the L∞ radius the perturbation is clipped to (``inf``: none).
    max_iter: iteration cap (static); unflipped points get distance ``+inf``.
    batch_size: examples per batch (the last is zero-padded).

  Returns:
    An :class:`Attack`; ``distance`` = :math:`\|\eta\|_2^2` (smaller = pick first).

  References:
    Kurakin, Goodfellow & Bengio, Adversarial examples in the physical world,
    ICLR-W 2017; Ducoffe & Precioso 2018.
  """
  step, eps, max_iter, batch_size = check_bim_options(step, eps, max_iter, batch_size)
  check_attack_args(model, params, x)
  return bim_core(model, params, x, step, eps, max_iter, batch_size)
