"""DeepFool and BIM: closed-form distances for linear classifiers, flips, +inf, batching."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import count_traces

from jaxal import adversarial
from jaxal import models


def linear_apply(params, x, dropout_key=None):
  del dropout_key
  return x.reshape(x.shape[0], -1) @ params["w"] + params["b"][None, :]


def constant_apply(params, x, dropout_key=None):
  del dropout_key
  return (
    jnp.broadcast_to(params["b"][None, :], (x.shape[0], params["b"].shape[0]))
    + 0.0 * x.reshape(x.shape[0], -1)[:, :1]
  )


LINEAR = models.from_apply_fn(linear_apply)


def linear_problem(seed, shape, num_classes=4, n=11):
  k1, k2, k3 = jax.random.split(jax.random.key(seed), 3)
  dim = int(np.prod(shape))
  params = {
    "w": jax.random.normal(k1, (dim, num_classes)),
    "b": jax.random.normal(k2, (num_classes,)),
  }
  return params, jax.random.normal(k3, (n, *shape))


def ref_linear_distance(params, x, overshoot):
  """Squared distance DeepFool reports for f(x) = Wx + b.

  The prediction ŷ's cell is ∩_k {f_ŷ ≥ f_k}, so the distance to its boundary is
  min_k |f_k − f_ŷ| / ‖w_k − w_ŷ‖ (w_k the k-th column of W). DeepFool's first
  step r = (that distance + 1e-4) · unit normal reaches it exactly, the scaled
  point x + (1 + overshoot) r lies beyond it, so the prediction flips after one
  iteration and the reported squared norm is ((1 + overshoot)(d + 1e-4))².
  """
  w = np.asarray(params["w"], np.float64)
  b = np.asarray(params["b"], np.float64)
  x = np.asarray(x, np.float64).reshape(len(x), -1)
  f = x @ w + b
  out = []
  for i in range(len(x)):
    y = f[i].argmax()
    d = min(
      abs(f[i, k] - f[i, y]) / np.linalg.norm(w[:, k] - w[:, y])
      for k in range(w.shape[1])
      if k != y
    )
    out.append(((1 + overshoot) * (d + 1e-4)) ** 2)
  return np.array(out)


@pytest.mark.parametrize("shape,overshoot", [((6,), 0.02), ((3, 2, 2), 0.02), ((6,), 0.3)])
def test_deepfool_linear_closed_form(shape, overshoot):
  params, x = linear_problem(0, shape)
  res = adversarial.deepfool(LINEAR, params, x, overshoot=overshoot, batch_size=4)
  np.testing.assert_allclose(
    res.distance, ref_linear_distance(params, x, overshoot), rtol=1e-4, atol=1e-7
  )
  assert res.flipped.all() and (res.num_iter == 1).all()
  assert res.perturbation.shape == x.shape
  before = linear_apply(params, x).argmax(1)
  after = linear_apply(params, x + res.perturbation).argmax(1)
  assert (before != after).all()


@pytest.fixture(scope="module")
def mlp():
  module = models.MLP(num_classes=3, hidden=(16,))
  x = jax.random.uniform(jax.random.key(0), (13, 4, 4))
  params = models.init_params(jax.random.key(1), module, x)
  return models.from_linen(module), params, x


def test_deepfool_flips_an_mlp_and_batching_does_not_matter(mlp):
  model, params, x = mlp
  a = adversarial.deepfool(model, params, x, batch_size=5)
  b = adversarial.deepfool(model, params, x, batch_size=64)
  np.testing.assert_allclose(a.distance, b.distance, rtol=1e-5)
  assert a.flipped.all()
  logits = lambda z: models.apply(model, params, z)[0]
  assert (logits(x).argmax(1) != logits(x + a.perturbation).argmax(1)).all()
  np.testing.assert_allclose(
    a.distance, jnp.sum(a.perturbation.reshape(13, -1) ** 2, -1), rtol=1e-5
  )


def test_bim_flips_the_prediction(mlp):
  model, params, x = mlp
  res = adversarial.bim(model, params, x, step=0.02, max_iter=500, batch_size=8)
  assert res.flipped.all()
  logits = lambda z: models.apply(model, params, z)[0]
  assert (logits(x).argmax(1) != logits(x + res.perturbation).argmax(1)).all()
  # Every coordinate moved by a whole number of steps (sign steps, no clipping).
  steps = np.asarray(res.perturbation) / 0.02
  np.testing.assert_allclose(steps, np.round(steps), atol=1e-3)
  assert (np.abs(steps).max(axis=(1, 2)) <= np.asarray(res.num_iter) + 1e-3).all()


def test_per_example_results_whatever_the_batch(mlp):
  # Rows of one batch iterate together, and stragglers are finished in gathered sub-batches:
  # neither may change any row's result against a batch of one example.
  model, params, x = mlp
  for attack, kw in ((adversarial.deepfool, {}), (adversarial.bim, {"step": 0.02})):
    one = attack(model, params, x, batch_size=1, max_iter=60, **kw)
    whole = attack(model, params, x, batch_size=16, max_iter=60, **kw)
    assert np.asarray(one.num_iter).max() > np.asarray(one.num_iter).min()  # stragglers exist
    np.testing.assert_array_equal(whole.num_iter, one.num_iter)
    np.testing.assert_array_equal(whole.flipped, one.flipped)
    np.testing.assert_allclose(whole.perturbation, one.perturbation, rtol=1e-4, atol=1e-6)


def test_bim_linear_and_eps_ball():
  params, x = linear_problem(1, (5,))
  res = adversarial.bim(LINEAR, params, x, step=0.01, max_iter=1000)
  assert res.flipped.all()
  before = linear_apply(params, x).argmax(1)
  assert (before != linear_apply(params, x + res.perturbation).argmax(1)).all()
  # The L2 distance is at least the distance to the nearest boundary.
  assert (np.asarray(res.distance) >= ref_linear_distance(params, x, 0.0) * (1 - 1e-3) - 1e-6).all()
  tight = adversarial.bim(LINEAR, params, x, step=0.01, eps=0.03, max_iter=50)
  assert float(jnp.max(jnp.abs(tight.perturbation))) <= 0.03 + 1e-6
  assert np.all(np.isinf(np.asarray(tight.distance)) == ~np.asarray(tight.flipped))


def test_never_flipped_points_get_infinite_distance():
  params = {"b": jnp.array([0.0, 1.0, -1.0])}
  model = models.from_apply_fn(constant_apply)  # zero gradient: nothing can flip it
  x = jnp.ones((4, 3))
  for res in (
    adversarial.deepfool(model, params, x, max_iter=5),
    adversarial.bim(model, params, x, max_iter=5),
  ):
    assert np.isinf(np.asarray(res.distance)).all() and not res.flipped.any()
    assert np.isfinite(np.asarray(res.perturbation)).all()
  params, x = linear_problem(2, (6,))
  res = adversarial.deepfool(LINEAR, params, x, max_iter=0)
  assert np.isinf(np.asarray(res.distance)).all() and (res.num_iter == 0).all()


def test_huge_perturbations_of_flipped_points_have_finite_distances(mlp):
  """Squares of 1e30 overflow float32: a flipped point still ranks before every unflipped one."""
  model, params, x = mlp
  for res in (
    adversarial.deepfool(model, params, x * 1e30),
    adversarial.bim(model, params, x, step=1e30, max_iter=3),
  ):
    flipped = np.asarray(res.flipped)
    assert flipped.any()
    d = np.asarray(res.distance)
    assert np.isfinite(d[flipped]).all() and np.isinf(d[~flipped]).all()
    assert not np.isnan(d).any()


def test_bim_and_deepfool_take_float16_input(mlp):
  model, params, x = mlp
  for attack in (adversarial.bim, adversarial.deepfool):
    half = attack(model, params, x.astype(jnp.float16))
    assert half.perturbation.dtype == jnp.float32 and half.distance.dtype == jnp.float32
    full = attack(model, params, x.astype(jnp.float16).astype(jnp.float32))
    np.testing.assert_array_equal(half.flipped, full.flipped)
    np.testing.assert_allclose(half.distance, full.distance, rtol=1e-5)


def test_one_compile_across_pool_sizes():
  params, x = linear_problem(3, (7,), n=30)
  with count_traces() as c:
    for n in (30, 17, 3):
      adversarial.deepfool(LINEAR, params, x[:n], batch_size=8)
      adversarial.bim(LINEAR, params, x[:n], batch_size=8)
  assert c["_deepfool_batch"] == 1 and c["_bim_batch"] == 1


def test_bad_input():
  params, x = linear_problem(4, (6,))
  with pytest.raises(ValueError, match=r"the model rejects x inputs of shape \(5,\)"):
    adversarial.deepfool(LINEAR, params, jnp.zeros((3, 5)))
  with pytest.raises(ValueError, match=r"the model rejects x inputs of shape \(2, 2\)"):
    adversarial.bim(LINEAR, params, jnp.zeros((3, 2, 2)))
  with pytest.raises(ValueError, match="max_iter"):
    adversarial.deepfool(LINEAR, params, x, max_iter=-1)
  with pytest.raises(ValueError, match="step"):
    adversarial.bim(LINEAR, params, x, step=0.0)
  with pytest.raises(ValueError, match="eps"):
    adversarial.bim(LINEAR, params, x, eps=-1.0)
  with pytest.raises(TypeError, match="jaxal.models.Model"):
    adversarial.deepfool(linear_apply, params, x)
  assert math.isinf(adversarial.bim.__kwdefaults__["eps"])


def test_numpy_numbers_accepted_bools_refused():
  params, x = linear_problem(5, (6,), n=9)
  want = adversarial.deepfool(LINEAR, params, x, max_iter=5, batch_size=4)
  got = adversarial.deepfool(
    LINEAR, params, x, max_iter=np.int64(5), batch_size=np.int32(4), overshoot=np.float32(0.02)
  )
  np.testing.assert_array_equal(got.distance, want.distance)
  want = adversarial.bim(LINEAR, params, x, max_iter=7, batch_size=4)
  got = adversarial.bim(
    LINEAR, params, x, max_iter=np.int16(7), batch_size=np.int64(4), step=np.float64(0.05)
  )
  np.testing.assert_array_equal(got.distance, want.distance)
  with pytest.raises(TypeError, match="batch_size must be a positive int, got True of type bool"):
    adversarial.deepfool(LINEAR, params, x, batch_size=True)
  with pytest.raises(TypeError, match="max_iter must be a non-negative int"):
    adversarial.bim(LINEAR, params, x, max_iter=False)
  with pytest.raises(TypeError, match="max_iter must be a non-negative int, got 2.0 of type float"):
    adversarial.deepfool(LINEAR, params, x, max_iter=2.0)
  with pytest.raises(TypeError, match="overshoot must be a finite number"):
    adversarial.deepfool(LINEAR, params, x, overshoot=True)
  with pytest.raises(ValueError, match="overshoot must be a finite number >= 0, got inf"):
    adversarial.deepfool(LINEAR, params, x, overshoot=math.inf)
