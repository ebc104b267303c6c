"""Gradient embeddings: exact vmap(grad) against the closed form and a per-example loop."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import count_traces
from flax import nnx
from jax.flatten_util import ravel_pytree

from jaxal import embeddings
from jaxal import models
from jaxal.embeddings import GradEmbedding

RTOL = 1e-5


def assert_close(got, want, rtol=RTOL):
  got, want = np.asarray(got), np.asarray(want)
  assert got.shape == want.shape
  np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol * np.abs(want).max())


def ref_closed_form(logits, features, bias):
  """(p − onehot(ŷ)) ⊗ [z, 1], class-major, from the definition in float64."""
  logits = np.asarray(logits, np.float64)
  p = np.exp(logits - logits.max(1, keepdims=True))
  p /= p.sum(1, keepdims=True)
  a = p - np.eye(p.shape[1])[p.argmax(1)]
  z = np.asarray(features, np.float64)
  if bias:
    z = np.concatenate([z, np.ones((len(z), 1))], 1)
  return (a[:, :, None] * z[:, None, :]).reshape(len(a), -1)


def linen_case(name):
  key = jax.random.key(0)
  if name == "mlp":
    module = models.MLP(num_classes=4, hidden=(16, 8))
    x = jax.random.normal(key, (11, 5))
  else:
    module = models.CNN(num_classes=3, channels=(4,), dense=6)
    x = jax.random.normal(key, (7, 6, 6))
  params = models.init_params(jax.random.key(1), module, x)
  return models.from_linen(module), params, x


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("name", ["mlp", "cnn"])
def test_exact_equals_closed_form(name, bias):
  model, params, x = linen_case(name)
  exact = embeddings.gradient_embedding(model, params, x, bias=bias, batch_size=4)
  logits, features = models.predict(model, params, x)
  closed = embeddings.closed_form_gradient_embedding(logits, features, bias=bias)
  assert isinstance(closed, GradEmbedding)
  assert_close(exact, closed.dense())
  assert_close(closed.dense(), ref_closed_form(logits, features, bias))
  k, d = logits.shape[1], features.shape[1]
  assert exact.shape == (len(x), k * (d + bias))


class TwoLayerHead(nn.Module):
  """Not a Dense head: a hidden layer, then a Dense scaled by a learned temperature."""

  num_classes: int

  @nn.compact
  def __call__(self, f):
    h = jnp.tanh(nn.Dense(6, name="hidden")(f))
    log_t = self.param("log_temperature", nn.initializers.constant(0.3), ())
    return nn.Dense(self.num_classes, name="out")(h) * jnp.exp(-log_t)


class Net(nn.Module):
  @nn.compact
  def __call__(self, x, train: bool = False):
    f = nn.relu(nn.Dense(8, name="body")(x))
    return TwoLayerHead(3, name="head")(f), f


def test_exact_matches_per_example_grad_loop_on_non_dense_head():
  x = jax.random.normal(jax.random.key(2), (6, 4))
  module = Net()
  params = models.init_params(jax.random.key(3), module, x)
  model = models.from_linen(module)
  got = embeddings.gradient_embedding(model, params, x, head="head", batch_size=4)

  def loss(head_params, x1):
    logits, _ = module.apply({"params": {**params, "head": head_params}}, x1[None])
    logp = jax.nn.log_softmax(logits[0])
    return -logp[jnp.argmax(logp)]

  grad_one = jax.jit(jax.grad(loss))  # one example at a time, in a Python loop
  rows = [ravel_pytree(grad_one(params["head"], x[i]))[0] for i in range(len(x))]
  assert_close(got, np.stack(rows))
  # bias=False drops the parameters named "bias" (hidden/bias [6] and out/bias [3]).
  assert embeddings.gradient_embedding(model, params, x, head="head", bias=False).shape == (
    6,
    got.shape[1] - 9,
  )
  # The closed form does not apply to this head: it must differ.
  logits, features = models.predict(model, params, x)
  assert embeddings.closed_form_gradient_embedding(logits, features).dense().shape != got.shape


class NNXNet(nnx.Module):
  def __init__(self, rngs):
    self.body = nnx.Linear(5, 7, rngs=rngs)
    self.drop = nnx.Dropout(0.3, rngs=rngs)
    self.classifier = nnx.Linear(7, 4, rngs=rngs)

  def __call__(self, x):
    f = nnx.relu(self.body(x))
    return self.classifier(self.drop(f)), f


@pytest.mark.parametrize("head", [None, "classifier"])
def test_nnx_exact_equals_closed_form(head):
  model, state = models.from_nnx(NNXNet(nnx.Rngs(0, dropout=1)))
  x = jax.random.normal(jax.random.key(4), (9, 5))
  assert embeddings.resolve_head(model, state, x) == ("classifier",)
  exact = embeddings.gradient_embedding(model, state, x, head=head, batch_size=4)
  logits, features = models.predict(model, state, x)
  assert_close(exact, embeddings.closed_form_gradient_embedding(logits, features).dense())


class Deep(nn.Module):
  """Twelve identical Dense layers: the default head must be the last defined, Dense_11."""

  @nn.compact
  def __call__(self, x, train: bool = False):
    for _ in range(11):
      x = jnp.tanh(nn.Dense(4)(x))
    return nn.Dense(4)(x), x


def test_default_head_is_the_last_dense_in_definition_order():
  x = jax.random.normal(jax.random.key(5), (3, 4))
  params = models.init_params(jax.random.key(6), Deep(), x)
  model = models.from_linen(Deep())
  assert embeddings.resolve_head(model, params, x) == ("Dense_11",)
  logits, features = models.predict(model, params, x)
  assert_close(
    embeddings.gradient_embedding(model, params, x),
    embeddings.closed_form_gradient_embedding(logits, features).dense(),
  )


def test_closed_form_saturated_logits_are_finite_and_accurate():
  logits = jnp.array([[1e4, -1e4, 0.0], [30.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
  features = jnp.array([[1.0, 2.0], [1.0, -1.0], [0.5, 0.5]])
  g = embeddings.closed_form_gradient_embedding(logits, features)
  assert np.isfinite(np.asarray(g.a)).all() and np.isfinite(np.asarray(g.dense())).all()
  # p_ŷ − 1 = −2 e^{−30} / (1 + 2 e^{−30}), far below float32's resolution of 1.
  np.testing.assert_allclose(g.a[1, 0], -2 * np.exp(-30.0), rtol=1e-5)
  np.testing.assert_allclose(g.a[0], [0.0, 0.0, 0.0], atol=1e-30)
  np.testing.assert_allclose(g.a[2], [-2 / 3, 1 / 3, 1 / 3], rtol=1e-6)


def test_one_compile_per_batch_shape():
  model, params, x = linen_case("mlp")
  with count_traces() as c:
    embeddings.gradient_embedding(model, params, x, batch_size=3)  # 4 batches, one padded
    embeddings.gradient_embedding(model, params, x[:5], batch_size=3)
  assert c["_grad_embedding_batch"] == 1


def test_bad_input():
  model, params, x = linen_case("mlp")
  with pytest.raises(
    ValueError, match=r"'nope/kernel' is not a parameter path.*dense_0, dense_1, head"
  ):
    embeddings.gradient_embedding(model, params, x, head="nope/kernel")
  with pytest.raises(TypeError, match="jaxal.models.Model"):
    embeddings.gradient_embedding(lambda p, x: x, params, x)
  logits, features = models.predict(model, params, x)
  with pytest.raises(
    ValueError, match=r"logits of shape \(11, 4\) and features of shape \(10, 8\)"
  ):
    embeddings.closed_form_gradient_embedding(logits, features[:10])
  with pytest.raises(ValueError, match="features of shape .* NaN or inf"):
    embeddings.closed_form_gradient_embedding(logits, features.at[3, 2].set(jnp.inf))
  with pytest.raises(ValueError, match="NaN or \\+inf"):
    embeddings.closed_form_gradient_embedding(logits.at[0, 0].set(jnp.nan), features)
  with pytest.raises(ValueError, match=r"features must have shape \[num_points, feat_dim\]"):
    embeddings.closed_form_gradient_embedding(logits, features[:, 0])
  bad_params = jax.tree.map(lambda t: t, params)
  bad_params["head"]["kernel"] = bad_params["head"]["kernel"].at[0, 0].set(jnp.nan)
  with pytest.raises(ValueError, match="gradient embedding of shape .* NaN or inf"):
    embeddings.gradient_embedding(model, bad_params, x)
