"""DeepFool throughput: jaxal's batched while_loop vs one example at a time, in one run.

    python benchmarks/deepfool.py           # writes results/deepfool.md and .json
    python benchmarks/deepfool.py --quick   # a smoke test of the script

Models: the MLP and the CNN of ``jaxal.models``, trained (300 Adam steps) on
200 labeled digits; the pool is the 1,347 digits of ``datasets.load_digits``.

jaxal: ``jaxal.adversarial.deepfool`` over the whole pool (fixed batches of
256, one ``lax.while_loop`` per batch with a done-mask, each Jacobian ``K``
backward passes of the whole batch), compiled; also timed with batches of 16.

Reference: the PyTorch reference's way (DISTIL's ``AdversarialDeepFool``):
a Python loop over the examples; for each, a Python ``while`` loop that calls
a jitted single-example DeepFool iteration (Jacobian of the logits, the
minimal step, the new logits) and reads the flip flag back to the host.
Run on the first ``--ref-points`` examples (time is linear in them) and
reported as examples per second; the ratio is jaxal's throughput over it.
The two distances are compared on those examples.
"""

from __future__ import annotations

import argparse

import _common
import jax
import jax.numpy as jnp
import numpy as np

from jaxal import adversarial
from jaxal import datasets
from jaxal import loop
from jaxal import models

OVERSHOOT, MAX_ITER = 0.02, 50


def make_reference(model, params):
  def f(x1):
    return models.apply(model, params, x1[None])[0][0]

  @jax.jit
  def label_of(x0):
    return jnp.argmax(f(x0))

  @jax.jit
  def step(x0, r_tot, label):
    xp = x0 + (1 + OVERSHOOT) * r_tot
    jac = jax.jacrev(f)(xp).reshape(-1, x0.size)
    logits = f(xp)
    w = jac - jac[label][None, :]
    fk = logits - logits[label]
    norm = jnp.sqrt(jnp.sum(w * w, -1))
    pert = jnp.where(
      (jnp.arange(logits.shape[0]) != label) & (norm > 0), jnp.abs(fk) / norm, jnp.inf
    )
    j = jnp.argmin(pert)
    r_tot = r_tot + ((pert[j] + 1e-4) / norm[j] * w[j]).reshape(x0.shape)
    return r_tot, jnp.argmax(f(x0 + (1 + OVERSHOOT) * r_tot)) != label

  def deepfool_one_at_a_time(x):
    out = []
    for x0 in x:  # one example at a time, as the PyTorch reference does
      label = label_of(x0)
      r_tot = jnp.zeros_like(x0)
      flipped, it = False, 0
      while not flipped and it < MAX_ITER:
        r_tot, flipped_arr = step(x0, r_tot, label)
        flipped = bool(flipped_arr)  # host round trip per iteration
        it += 1
      d = float(jnp.sum(((1 + OVERSHOOT) * r_tot) ** 2))
      out.append(d if flipped else np.inf)
    return np.array(out)

  return deepfool_one_at_a_time


def bench(name, module, ds, ref_points, repeats):
  x, y = ds.x_train, ds.y_train
  key = jax.random.key(0)
  state = loop.init(key, len(x), num_initial=200)
  ts = loop.create_train_state(key, module, x)
  ts = loop.fit(key, ts, x, y, state.labeled_mask, num_steps=300)
  model, params = models.from_train_state(ts)

  def timed(batch_size):
    run = lambda: (
      adversarial.deepfool(
        model, params, x, max_iter=MAX_ITER, overshoot=OVERSHOOT, batch_size=batch_size
      ).distance
    )
    first, best, _, dist = _common.first_and_best(run, repeats)
    return first, best, dist

  first, best, dist = timed(256)
  _, best16, _ = timed(16)

  ref_fn = make_reference(model, params)
  ref_fn(x[:2])  # compile the single-example step outside the timing
  ref_time, ref = _common.once(lambda: ref_fn(x[:ref_points]))

  ours = np.asarray(dist[:ref_points])
  finite = np.isfinite(ref) & np.isfinite(ours)
  row = {
    "model": name,
    "pool": int(len(x)),
    "jaxal_first_s": round(first, 3),
    "jaxal_s": round(best, 4),
    "jaxal_examples_per_s": round(len(x) / best, 1),
    "reference_points": ref_points,
    "reference_s": round(ref_time, 3),
    "reference_examples_per_s": round(ref_points / ref_time, 1),
    "throughput_ratio": round((len(x) / best) / (ref_points / ref_time), 1),
    "jaxal_s_batch16": round(best16, 4),
    "throughput_ratio_batch16": round((len(x) / best16) / (ref_points / ref_time), 1),
    "same_flips": bool(np.array_equal(np.isfinite(ref), np.isfinite(ours))),
    "max_rel_diff": float(
      np.max(np.abs(ours[finite] - ref[finite]) / np.maximum(ref[finite], 1e-12))
    )
    if finite.any()
    else None,
    "mean_iterations": None,
    "never_flipped": int(np.sum(~np.isfinite(np.asarray(dist)))),
  }
  row["mean_iterations"] = round(
    float(
      jnp.mean(
        adversarial.deepfool(model, params, x, max_iter=MAX_ITER, overshoot=OVERSHOOT).num_iter
      )
    ),
    2,
  )
  print(row, flush=True)
  return row


def _sci(v):
  return "—" if v is None else f"{v:.1e}"


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--quick", action="store_true")
  parser.add_argument("--ref-points", type=int, default=200)
  args = parser.parse_args()
  meta = _common.machine()
  ds = datasets.load_digits()
  ref_points = 20 if args.quick else args.ref_points
  repeats = 1 if args.quick else 3
  rows = [bench("MLP(hidden=128)", models.MLP(num_classes=10), ds, ref_points, repeats)]
  if not args.quick:
    rows.append(bench("CNN(16, 32; dense 64)", models.CNN(num_classes=10), ds, ref_points, repeats))
  meta["loadavg_at_end"] = _common.load_now()
  meta["setup"] = f"max_iter={MAX_ITER}, overshoot={OVERSHOOT}, batch_size=256 (and 16)"
  lines = _common.header(
    "DeepFool throughput: batched while_loop vs one example at a time", meta
  ) + [
    f"Setup: {meta['setup']}; models trained 300 steps on 200 labeled digits.",
    "",
    "| model | jaxal, 1,347 points (s) | jaxal examples/s | one-at-a-time examples/s "
    "| throughput ratio | ratio at batch_size=16 | same flips | max rel. diff | mean iterations |",
    "|---|---:|---:|---:|---:|---:|:---:|---:|---:|",
  ]
  for r in rows:
    lines.append(
      f"| {r['model']} | {r['jaxal_s']} (first call {r['jaxal_first_s']}) | "
      f"{r['jaxal_examples_per_s']} | {r['reference_examples_per_s']} "
      f"({r['reference_points']} points) | **{r['throughput_ratio']}×** | "
      f"{r['throughput_ratio_batch16']}× ({r['jaxal_s_batch16']} s) | "
      f"{r['same_flips']} | {_sci(r['max_rel_diff'])} | {r['mean_iterations']} |"
    )
  _common.write("deepfool", {"meta": meta, "rows": rows}, "\n".join(lines), quick=args.quick)


if __name__ == "__main__":
  main()
