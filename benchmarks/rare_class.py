"""Targeted selection of rare classes on MNIST (SIMILAR), and the measures' greedy speed.

    JAXAL_SHARED_DATA=../shared/data python benchmarks/rare_class.py           # both parts
    JAXAL_SHARED_DATA=../shared/data python benchmarks/rare_class.py --quick   # smoke test
    python benchmarks/rare_class.py --no-rare                                  # speed only

**Rare classes.** An MNIST pool in which two classes (``--rare``, default 3
and 8) are rare: each common class has ``--per-class`` points, each rare
class 1% of that (``--rare-share``). The initial labeled set is ``--initial``
random points of the common classes plus 5 labeled examples of each rare
class, drawn outside the pool's rare points: the query. Each round a small
MLP is retrained from scratch on the labeled set and ``--budget`` points are
bought; the table counts the rare-class points each strategy found per round
(cumulative), over ``--seeds`` seeds, for SMI (FLQMI, FLVMI) and SCMI
(FLCMI, private set: the labeled common-class points) with the query given
as the rare classes (the labeled points of those classes, so it grows as
they are found), against entropy, BADGE and random. Every strategy sees the
same initial set per seed.

**Speed.** Each measure's greedy (``k`` picks) on a pool of ``--speed-n``
random points (dim 32, 20 query and 20 private points; cosine kernels, the
function's constants and the NumPy reference's set-up built outside the
timing: the greedy loops are compared), against a NumPy greedy of the same algorithm
(memoised state, vectorised gains, float32; LogDet by the same incremental
Cholesky residuals), timed in the same run; the picks are compared.

The default run took 13–17 minutes on 2 CPU cores shared with other jobs (load average 9–15),
most of it in FLVMI's and FLCMI's dense kernels; ``--quick`` takes a few minutes.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import _common
import jax
import jax.numpy as jnp
import numpy as np

from jaxal import datasets
from jaxal import loop
from jaxal import models
from jaxal import strategies
from jaxal import submodular as sm


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--rare", default="3,8")
  p.add_argument("--per-class", type=int, default=1000)
  p.add_argument("--rare-share", type=float, default=0.01)
  p.add_argument("--query-per-class", type=int, default=5)
  p.add_argument("--initial", type=int, default=100)
  p.add_argument("--budget", type=int, default=50)
  p.add_argument("--rounds", type=int, default=4)
  p.add_argument("--seeds", type=int, default=3)
  p.add_argument("--steps", type=int, default=200)
  p.add_argument("--hidden", type=int, default=64)
  p.add_argument("--speed-n", type=int, default=10000)
  p.add_argument("--speed-k", type=int, default=10)
  p.add_argument("--no-rare", action="store_true", help="skip the MNIST part")
  p.add_argument("--no-speed", action="store_true", help="skip the speed part")
  p.add_argument("--quick", action="store_true", help="tiny sizes; writes rare_class_quick.*")
  p.add_argument("--data-dir", default=os.path.join(tempfile.gettempdir(), "jaxal-rare-class-tfds"))
  args = p.parse_args(argv)
  if args.quick:
    args.per_class, args.rounds, args.seeds, args.steps = 200, 2, 1, 50
    args.speed_n, args.speed_k, args.budget = 1000, 5, 20
  return args


def log(msg):
  print(time.strftime("%H:%M:%S"), msg, flush=True)


# ---------------------------------------------------------------------------
# Rare classes on MNIST.


def build_pool(x, y, rare, per_class, share, qpc, initial, rng):
  """Pool indices into (x, y), and the initial labeled positions within the pool."""
  n_rare = max(1, int(round(share * per_class)))
  pool, init = [], []
  for c in range(10):
    idx = rng.permutation(np.flatnonzero(y == c))
    if c in rare:
      pool.append(idx[:n_rare])  # unlabeled rare points
      init.append(idx[n_rare : n_rare + qpc])  # the labeled query examples
    else:
      pool.append(idx[:per_class])
  pool = np.concatenate(pool + init)
  labeled = np.zeros(len(pool), bool)
  labeled[len(pool) - sum(map(len, init)) :] = True
  common = np.flatnonzero(~np.isin(y[pool], rare))
  labeled[rng.choice(common, size=initial, replace=False)] = True
  return pool, labeled, n_rare


def rare_part(args, info):
  root = os.environ.get("JAXAL_SHARED_DATA")
  if not root:
    raise SystemExit("set JAXAL_SHARED_DATA to the shared datasets folder (or pass --no-rare)")
  manual = os.path.join(root, "mnist_idx")
  xtr, ytr = datasets.load("mnist", "train", data_dir=args.data_dir, manual_dir=manual)
  xte, yte = datasets.load("mnist", "test", data_dir=args.data_dir, manual_dir=manual)
  rare = [int(c) for c in args.rare.split(",")]
  specs = {
    "random": lambda y: strategies.random(),
    "entropy": lambda y: strategies.entropy(),
    "badge": lambda y: strategies.badge(),
    "smi_flqmi": lambda y: strategies.smi(query_classes=rare, labels=y, function="flqmi"),
    "smi_flvmi": lambda y: strategies.smi(query_classes=rare, labels=y, function="flvmi"),
    "scmi_flcmi": lambda y: strategies.scmi(
      query_classes=rare, private="others", labels=y, function="flcmi"
    ),
  }
  found = {k: [] for k in specs}  # [seed][round] cumulative rare found
  acc = {k: [] for k in specs}
  rare_acc = {k: [] for k in specs}
  secs = {k: [] for k in specs}
  is_rare_test = np.isin(yte, rare)
  for seed in range(args.seeds):
    rng = np.random.default_rng(seed)
    pool, labeled0, n_rare = build_pool(
      xtr, ytr, rare, args.per_class, args.rare_share, args.query_per_class, args.initial, rng
    )
    x, y = jnp.asarray(xtr[pool]), jnp.asarray(ytr[pool])
    yn = np.asarray(y)
    for name, make in specs.items():
      key = jax.random.key(seed)
      state = loop.init(key, len(pool), initial_indices=np.flatnonzero(labeled0))
      ts = loop.create_train_state(key, models.MLP(num_classes=10, hidden=(args.hidden,)), x)
      strategy = make(y)
      counts, t_acq = [], 0.0
      for _ in range(args.rounds):
        before = np.asarray(state.labeled_mask)
        t = time.perf_counter()
        state, ts, picked = loop.run_round(
          state, ts, strategy=strategy, x=x, y=y, budget=args.budget, num_steps=args.steps
        )
        t_acq += time.perf_counter() - t
        got = np.asarray(state.labeled_mask) & ~before
        counts.append(int(np.isin(yn[got], rare).sum()) + (counts[-1] if counts else 0))
      ts = loop.fit(key, ts, x, y, state.labeled_mask, num_steps=args.steps)
      model, params = models.from_train_state(ts)
      logits = models.predict(model, params, xte, features=False).logits
      pred = np.asarray(jnp.argmax(logits, -1))
      found[name].append(counts)
      acc[name].append(float((pred == yte).mean()))
      rare_acc[name].append(float((pred[is_rare_test] == yte[is_rare_test]).mean()))
      secs[name].append(t_acq)
      log(f"seed {seed} {name}: rare found {counts} of {2 * n_rare}; acc {acc[name][-1]:.3f}")
  return {
    "rare_classes": rare,
    "pool_size": int(len(pool)),
    "rare_in_pool": 2 * n_rare,
    "rare_share_of_unlabeled": 2 * n_rare / int((~labeled0).sum()),
    "found": found,
    "test_accuracy": acc,
    "rare_class_test_accuracy": rare_acc,
    "round_seconds": secs,
  }


def rare_markdown(r, args):
  rounds = args.rounds
  labels = [args.budget * (t + 1) for t in range(rounds)]
  lines = [
    "## Rare classes found",
    "",
    f"Pool of {r['pool_size']} MNIST images; classes {r['rare_classes']} rare: "
    f"{r['rare_in_pool']} unlabeled points of them in all "
    f"({100 * r['rare_share_of_unlabeled']:.2f}% of the unlabeled pool), plus "
    f"{args.query_per_class} labeled examples of each (the query) and {args.initial} random "
    f"labeled points of the other classes. {args.budget} labels per round, MLP "
    f"(hidden {args.hidden}) retrained from scratch for {args.steps} steps, {args.seeds} "
    f"seed{'s' if args.seeds > 1 else ''}. "
    "Cumulative rare-class points bought after each round, mean (min–max over seeds); "
    "random's expectation is the rare share times the labels bought.",
    "",
    "| strategy | " + " | ".join(f"{b} labels" for b in labels) + " | test acc. | rare-class "
    "test acc. | s / round |",
    "|---|" + "---:|" * (rounds + 3),
  ]
  for name, f in r["found"].items():
    a = np.asarray(f)
    cells = [f"{a[:, t].mean():.1f} ({a[:, t].min()}–{a[:, t].max()})" for t in range(rounds)]
    s = np.mean(r["round_seconds"][name]) / rounds
    lines.append(
      f"| {name} | "
      + " | ".join(cells)
      + f" | {np.mean(r['test_accuracy'][name]):.3f} | "
      + f"{np.mean(r['rare_class_test_accuracy'][name]):.3f} | {s:.1f} |"
    )
  lines.append("")
  lines.append("s / round: one round's wall time (training and acquisition) on the loaded machine.")
  return lines + [""]


# ---------------------------------------------------------------------------
# Speed: JAX greedy against a NumPy greedy of the same algorithm.


def _np_fl_like(gain_fn, update, state, n, k):
  return lambda: _np_loop(gain_fn, update, state, n, k)


def _np_loop(gain_fn, update, state, n, k):
  avail = np.ones(n, bool)
  out = []
  for _ in range(k):
    g = gain_fn(state)
    g[~avail] = -np.inf
    j = int(np.argmax(g))
    out.append(j)
    avail[j] = False
    state = update(state, j)
  return out


def numpy_greedy(name, b, k, eta=1.0, nu=1.0, lam=1.0):
  """A NumPy greedy for measure ``name`` on blocks ``b`` (memoised, vectorised, float32).

  The set-up (constants such as the ridged kernel and the query / private Cholesky factors, as
  the factories compute them) happens here; the returned ``run()`` is the greedy loop alone,
  what is timed, like the JAX maximiser on a built function.
  """
  S, SQ, SP = b["kernel"], b["query"], b["private"]
  n = SQ.shape[0]
  if name == "flqmi":
    mod = eta * SQ.max(1)
    return _np_fl_like(
      lambda m: np.maximum(SQ - m[None, :], 0).sum(1) + mod,
      lambda m, j: np.maximum(m, SQ[j]),
      np.zeros(SQ.shape[1], np.float32),
      n,
      k,
    )
  if name == "gcmi":
    mod = SQ.sum(1)
    return _np_fl_like(lambda s: mod.copy(), lambda s, j: s, None, n, k)
  qcap = eta * np.maximum(SQ.max(1), 0)
  pcap = nu * np.maximum(SP.max(1), 0)
  upd = lambda c, j: np.maximum(c, S[j])  # noqa: E731
  c0 = np.zeros(n, np.float32)
  if name == "flvmi":
    g = lambda c: (np.minimum(np.maximum(c[None, :], S), qcap) - np.minimum(c, qcap)).sum(1)  # noqa: E731
    return _np_fl_like(g, upd, c0, n, k)
  if name == "flcg":
    g = lambda c: (np.maximum(np.maximum(c[None, :], S), pcap) - np.maximum(c, pcap)).sum(1)  # noqa: E731
    return _np_fl_like(g, upd, c0, n, k)
  if name == "flcmi":

    def g(c):
      new = np.maximum(np.minimum(np.maximum(c[None, :], S), qcap), pcap)
      return (new - np.maximum(np.minimum(c, qcap), pcap)).sum(1)

    return _np_fl_like(g, upd, c0, n, k)
  if name == "gccg":
    mod = S.sum(1) - 2 * lam * nu * SP.sum(1)
    diag = np.diag(S).copy()
    return _np_fl_like(
      lambda r: mod - lam * (r + diag),
      lambda r, j: r + S[j] + S[:, j],
      np.zeros(n, np.float32),
      n,
      k,
    )
  # LogDet: residual trackers on bases.
  M = S + lam * np.eye(n, dtype=np.float32)

  def base(mbb, mvb):
    L = np.linalg.cholesky(mbb)
    c0 = np.linalg.solve(L, mvb.T).T
    return c0, np.diag(M) - (c0 * c0).sum(1)

  mq = b["query_query"] + lam * np.eye(SQ.shape[1], dtype=np.float32)
  mp = b["private_private"] + lam * np.eye(SP.shape[1], dtype=np.float32)
  vq, vp = eta * SQ, nu * SP
  if name == "logdetmi":
    bases, signs = [(np.zeros((n, 0), np.float32), np.diag(M).copy()), base(mq, vq)], [1, -1]
  elif name == "logdetcg":
    bases, signs = [base(mp, vp)], [1]
  else:
    mqp = b["query_private"]
    mbb = np.block([[mq, mqp], [mqp.T, mp]])
    bases, signs = [base(mp, vp), base(mbb, np.concatenate([vq, vp], 1))], [1, -1]

  def run():
    trackers = [[c0, d, np.zeros((n, k), np.float32)] for c0, d in bases]
    avail = np.ones(n, bool)
    out = []
    for t in range(k):
      g = sum(s * np.log(np.maximum(tr[1], 1e-38)) for s, tr in zip(signs, trackers))
      g[~avail] = -np.inf
      j = int(np.argmax(g))
      out.append(j)
      avail[j] = False
      for tr in trackers:
        c0, d, C = tr
        e = (M[j] - c0 @ c0[j] - C[:, :t] @ C[j, :t]) / np.sqrt(max(d[j], 1e-38))
        C[:, t] = e
        tr[1] = d - e * e
    return out

  return run


def speed_part(args):
  rng = np.random.default_rng(0)
  n, k = args.speed_n, args.speed_k
  x = rng.normal(size=(n, 32)).astype(np.float32)
  q = (x[rng.choice(n, 20, replace=False)] + 0.3 * rng.normal(size=(20, 32))).astype(np.float32)
  p = (x[rng.choice(n, 20, replace=False)] + 0.3 * rng.normal(size=(20, 32))).astype(np.float32)
  ks = _common.block(sm.information_kernels(x, query=q, private=p))
  b = {f: np.asarray(getattr(ks, f)) for f in ks._fields}
  rows = []
  for name in sm.MEASURES:
    fn = sm.make_information(name, ks, max_size=k)
    first, best, median, sel = _common.first_and_best(lambda: sm.greedy(fn, k), repeats=3)
    run = numpy_greedy(name, b, k)
    t = time.perf_counter()
    ref = run()
    t_np = time.perf_counter() - t
    same = sel.indices.tolist() == ref
    agree = sum(a == r for a, r in zip(sel.indices.tolist(), ref))
    rows.append(
      {
        "measure": name,
        "jax_first_s": round(first, 3),
        "jax_best_ms": round(1e3 * best, 2),
        "jax_median_ms": round(1e3 * median, 2),
        "numpy_ms": round(1e3 * t_np, 1),
        "numpy_over_jax": round(t_np / best, 1),
        "same_picks": same,
        "picks_in_agreement": f"{agree}/{k}",
      }
    )
    log(f"speed {name}: jax {best:.3f}s numpy {t_np:.3f}s same picks {same}")
  return {"n": n, "k": k, "rows": rows}


def speed_markdown(s):
  lines = [
    "## Greedy speed",
    "",
    f"N = {s['n']} pool points (dim 32), 20 query and 20 private points, k = {s['k']} greedy "
    "picks; kernels and each function's constants built before timing, so both columns time "
    "the greedy loop alone. JAX: first call (with compilation), then the "
    "best and median of 3 calls; NumPy: one call of the same algorithm (vectorised gains, "
    "float32). The ratio is NumPy's time over JAX's best, both measured in this run.",
    "",
  ]
  lines += _common.table(
    s["rows"],
    [
      "measure",
      "jax_first_s",
      "jax_best_ms",
      "jax_median_ms",
      "numpy_ms",
      "numpy_over_jax",
      "same_picks",
      "picks_in_agreement",
    ],
  )
  return lines + [""]


def main(argv=None):
  args = parse_args(argv)
  info = _common.machine(argv)
  payload = {"meta": info}
  parts = []
  if not args.no_rare:
    r = rare_part(args, info)
    payload["rare"] = r
    parts += rare_markdown(r, args)
  if not args.no_speed:
    s = speed_part(args)
    payload["speed"] = s
    parts += speed_markdown(s)
  info["loadavg_at_end"] = _common.load_now()
  reading = _common.kept_section("rare_class_quick" if args.quick else "rare_class", "## Reading")
  md = _common.header("Targeted selection of rare classes (SIMILAR)", info) + parts
  if reading:
    md.append(reading)
  _common.write("rare_class", payload, "\n".join(md), quick=args.quick)


if __name__ == "__main__":
  main()
