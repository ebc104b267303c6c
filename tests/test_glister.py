"""GLISTER-active against a NumPy reference of the same greedy (DISTIL's dense layout)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import count_traces

from jaxal import glister

# ---------------------------------------------------------------------------
# NumPy reference, float64, following DISTIL's GLISTER: dense gradient vectors
# [bias grads (K) | weight grads (K*d), class-major], validation logits updated
# class by class, gains = grads @ grads_val.


def np_softmax(x):
  x = np.asarray(x, np.float64)
  e = np.exp(x - x.max(-1, keepdims=True))
  return e / e.sum(-1, keepdims=True)


def dense_grads(logits, feats, y):
  k = logits.shape[1]
  l0 = np_softmax(logits) - np.eye(k)[y]
  l1 = np.repeat(l0, feats.shape[1], axis=1) * np.tile(feats, (1, k))
  return np.concatenate([l0, l1], axis=1)


def ref_glister(logits, feats, k, labeled, labels, val, lr, reg=None, lam=0.0):
  logits = np.asarray(logits, np.float64)
  feats = np.asarray(feats, np.float64)
  n, num_classes = logits.shape
  d = feats.shape[1]
  hyp = logits.argmax(1)
  grads = dense_grads(logits, feats, hyp)
  train_y = np.where(labeled, labels, hyp)
  prev = dense_grads(logits, feats, train_y)[labeled].sum(0)
  if val is None:
    v_logits, v_feats, v_y = logits, feats, train_y
  else:
    v_logits, v_feats, v_y = (
      np.asarray(val[0], np.float64),
      np.asarray(val[1], np.float64),
      np.asarray(val[2]),
    )
  out = v_logits.copy()
  for j in range(num_classes):
    out[:, j] -= lr * (v_feats @ prev[num_classes + j * d : num_classes + (j + 1) * d] + prev[j])
  unl = np.flatnonzero(~labeled)
  if reg == "facility_location":
    sim = ((grads[:, None, :] - grads[None, :, :]) ** 2).sum(-1)
    min_dist = np.full(n, sim[np.ix_(unl, unl)].max())
  if reg == "diversity":
    sim = np.exp(-((grads[:, None, :] - grads[None, :, :]) ** 2).sum(-1) / 2)
  num_greedy = k - int(np.floor(lam * k + 1e-9)) if reg == "random" else k
  chosen = []
  for _ in range(num_greedy):
    g_val = dense_grads(out, v_feats, v_y).mean(0)
    gains = grads @ g_val
    if reg == "facility_location":
      gains = gains + lam * (
        min_dist[unl][None, :] - np.minimum(min_dist[unl][None, :], sim[:, unl])
      ).sum(1)
    elif reg == "diversity" and chosen:
      gains = gains - lam * sim[:, chosen].sum(1)
    gains[labeled] = -np.inf
    gains[chosen] = -np.inf
    best = int(np.argmax(gains))
    chosen.append(best)
    g = grads[best]
    for j in range(num_classes):
      out[:, j] -= lr * (v_feats @ g[num_classes + j * d : num_classes + (j + 1) * d] + g[j])
    if reg == "facility_location":
      min_dist = np.minimum(min_dist, sim[best])
  return np.array(chosen, np.int64)


def problem(seed, n=24, num_classes=4, d=5):
  k1, k2, k3 = jax.random.split(jax.random.key(seed), 3)
  logits = 2.0 * jax.random.normal(k1, (n, num_classes))
  feats = jax.nn.relu(jax.random.normal(k2, (n, d)))
  labels = jax.random.randint(k3, (n,), 0, num_classes)
  labeled = np.arange(n) % 5 == 0
  return logits, feats, labels, labeled


@pytest.mark.parametrize(
  "reg,lam,lr",
  [(None, None, 0.5), (None, None, 0.0), ("facility_location", 0.05, 0.3), ("diversity", 0.4, 0.3)],
)
def test_glister_matches_reference(reg, lam, lr):
  logits, feats, labels, labeled = problem(0)
  ref = ref_glister(logits, feats, 8, labeled, np.asarray(labels), None, lr, reg, lam or 0.0)
  idx = glister.glister(
    jax.random.key(0),
    logits,
    feats,
    8,
    labeled_mask=jnp.asarray(labeled),
    labels=labels,
    learning_rate=lr,
    regularizer=reg,
    lam=lam,
  )
  np.testing.assert_array_equal(idx, ref)
  assert idx.dtype == jnp.int32


def test_glister_with_validation_set_and_hypothesised_labels():
  logits, feats, _, labeled = problem(1)
  vl, vf, vy, _ = problem(2, n=9)
  val = glister.Validation(vl, vf, vy)
  hyp = np.asarray(logits).argmax(1)  # no labels given: labeled points at their predictions
  ref = ref_glister(logits, feats, 6, labeled, hyp, (vl, vf, vy), 0.7)
  idx = glister.glister(
    jax.random.key(0),
    logits,
    feats,
    6,
    labeled_mask=jnp.asarray(labeled),
    validation=val,
    learning_rate=0.7,
  )
  np.testing.assert_array_equal(idx, ref)


def test_glister_step_changes_the_picks():
  """With a large step the validation gradient moves: the picks differ from the static top-k."""
  logits, feats, labels, labeled = problem(3)
  kw = dict(labeled_mask=jnp.asarray(labeled), labels=labels)
  static = glister.glister(jax.random.key(0), logits, feats, 10, learning_rate=0.0, **kw)
  moving = glister.glister(jax.random.key(0), logits, feats, 10, learning_rate=2.0, **kw)
  assert not np.array_equal(static, moving)
  np.testing.assert_array_equal(
    moving, ref_glister(logits, feats, 10, labeled, np.asarray(labels), None, 2.0)
  )


def test_glister_random_regularizer():
  logits, feats, labels, labeled = problem(4)
  mask = jnp.asarray(labeled)
  idx = glister.glister(
    jax.random.key(3),
    logits,
    feats,
    7,
    labeled_mask=mask,
    labels=labels,
    regularizer="random",
    lam=0.3,
    learning_rate=0.5,
  )
  greedy = ref_glister(logits, feats, 7, labeled, np.asarray(labels), None, 0.5, "random", 0.3)
  assert len(greedy) == 5  # 7 - floor(0.3 * 7)
  np.testing.assert_array_equal(idx[:5], greedy)
  assert len(set(np.asarray(idx).tolist())) == 7 and not labeled[np.asarray(idx)].any()
  all_random = glister.glister(
    jax.random.key(3), logits, feats, 19, labeled_mask=mask, regularizer="random", lam=1.0
  )
  assert sorted(np.asarray(all_random).tolist()) == np.flatnonzero(~labeled).tolist()


def test_glister_invariants_one_compile_and_saturated_logits():
  logits, feats, labels, _ = problem(5, n=31)
  with count_traces() as c:
    for r in range(3):
      mask = jnp.arange(31) < 4 * r
      idx = glister.glister(
        jax.random.key(r),
        1e4 * logits,
        feats,
        31 - 4 * r if r == 2 else 5,
        labeled_mask=mask,
        regularizer="diversity",
        lam=0.1,
      )
      assert len(set(np.asarray(idx).tolist())) == idx.shape[0]
      assert not np.asarray(mask)[np.asarray(idx)].any()
  assert c["_glister"] == 2  # k = 5 twice, then k = 23 (budget == unlabeled count)


def test_glister_bad_input():
  logits, feats, labels, _ = problem(6, n=10)
  key = jax.random.key(0)
  val = glister.Validation(jnp.zeros((4, 3)), jnp.zeros((4, 5)), jnp.zeros(4, jnp.int32))
  with pytest.raises(ValueError, match="validation.logits has 3 classes"):
    glister.glister(key, logits, feats, 2, validation=val)
  val = glister.Validation(jnp.zeros((4, 4)), jnp.zeros((4, 6)), jnp.zeros(4, jnp.int32))
  with pytest.raises(ValueError, match="validation.features has dimension 6"):
    glister.glister(key, logits, feats, 2, validation=val)
  val = glister.Validation(jnp.zeros((4, 4)), jnp.zeros((4, 5)), jnp.array([0, 1, 4, 2]))
  with pytest.raises(ValueError, match=r"validation.labels must lie in \[0, 4\)"):
    glister.glister(key, logits, feats, 2, validation=val)
  with pytest.raises(ValueError, match="needs a finite number lam"):
    glister.glister(key, logits, feats, 2, regularizer="diversity")
  with pytest.raises(ValueError, match=r"in \[0, 1\]"):
    glister.glister(key, logits, feats, 2, regularizer="random", lam=1.5)
  with pytest.raises(ValueError, match="unknown regularizer"):
    glister.glister(key, logits, feats, 2, regularizer="facloc", lam=1.0)
  with pytest.raises(ValueError, match="same number of points"):
    glister.glister(key, logits, feats[:9], 2)
  with pytest.raises(ValueError, match="learning_rate"):
    glister.glister(key, logits, feats, 2, learning_rate=-1.0)
  with pytest.raises(ValueError, match=r"labels must lie in \[0, 4\)"):
    glister.glister(
      key, logits, feats, 2, labeled_mask=jnp.arange(10) < 2, labels=jnp.full(10, 7, jnp.int32)
    )


def test_glister_takes_numpy_numbers_and_refuses_bools():
  logits, feats, _, labeled = problem(7, n=12)
  key, mask = jax.random.key(0), jnp.asarray(labeled)
  want = glister.glister(key, logits, feats, 3, labeled_mask=mask, regularizer="random", lam=0.5)
  got = glister.glister(
    key,
    logits,
    feats,
    np.int64(3),
    labeled_mask=mask,
    regularizer="random",
    lam=np.float32(0.5),
    learning_rate=np.float64(1e-3),
    bias=np.bool_(True),
  )
  np.testing.assert_array_equal(got, want)
  with pytest.raises(TypeError, match="k must be a positive int .* got True of type bool"):
    glister.glister(key, logits, feats, True)
  with pytest.raises(TypeError, match="bias must be True or False, got 1 of type int"):
    glister.glister(key, logits, feats, 2, bias=1)
  with pytest.raises(TypeError, match="learning_rate must be a finite number"):
    glister.glister(key, logits, feats, 2, learning_rate=True)
  with pytest.raises(TypeError, match="lam must be a finite number"):
    glister.glister(key, logits, feats, 2, regularizer="diversity", lam=False)


def test_glister_refuses_non_finite_pool_arrays():
  logits, feats, _, _ = problem(8, n=10)
  key = jax.random.key(0)
  with pytest.raises(ValueError, match=r"logits of shape \(10, 4\) holds 1 NaN or \+inf"):
    glister.glister(key, logits.at[3, 1].set(jnp.nan), feats, 2)
  with pytest.raises(
    ValueError,
    match=r"features of shape \(10, 5\) holds NaN or inf values "
    r"\(1 of them, first at row 2, index \(2, 0\): inf; largest finite magnitude [\d.]+\); "
    r"gradient embeddings need finite values",
  ):
    glister.glister(key, logits, feats.at[2, 0].set(jnp.inf), 2)
