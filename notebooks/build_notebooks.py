"""Writes the notebooks of this folder from the cell sources below, executed at a small size.

Edit the cells here, then run ``python notebooks/build_notebooks.py`` (add ``--data-dir DIR``
where MNIST is prepared so that ``02_badge_mnist`` shows MNIST): each notebook is executed in a
fresh kernel with ``JAXAL_NOTEBOOK_SMALL=1`` and written with its outputs, so a reader sees
results on GitHub. The test suite (tests/test_notebooks.py) checks that the stored cells are the
ones below and executes every notebook again.
"""

from __future__ import annotations

import argparse
import os
import tempfile

import nbformat
from nbformat import v4

REPO = "https://github.com/jaxal/jaxal"
HERE = os.path.dirname(os.path.abspath(__file__))


def install_cell(extras: str) -> str:
  return f"""# On Colab (or anywhere jaxal is missing) install it first; skipped when jaxal is importable.
import importlib.util
if importlib.util.find_spec("jaxal") is None:
  get_ipython().run_line_magic("pip", 'install -q "jaxal[{extras}] @ git+{REPO}"')"""


def badge(name: str) -> str:
  return (
    f"[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]"
    f"(https://colab.research.google.com/github/jaxal/jaxal/blob/main/notebooks/{name}.ipynb)"
  )


def accelerator_cell() -> str:
  return """# The device. On Colab: Runtime → Change runtime type → GPU (or TPU); the code is unchanged.
import time
import jax
from jaxal import embeddings, selection

print("devices:", jax.devices())

def seeding_seconds(device):
  \"\"\"Seconds for k-means++ seeding of 100 BADGE centres on 20,000 points, compiled.\"\"\"
  with jax.default_device(device):
    k1, k2 = jax.random.split(jax.random.key(0))
    g = embeddings.closed_form_gradient_embedding(
      jax.random.normal(k1, (20_000, 10)), jax.random.normal(k2, (20_000, 128))
    )
    selection.kmeans_pp(k1, g, 100).block_until_ready()  # compiles
    start = time.perf_counter()
    selection.kmeans_pp(k1, g, 100).block_until_ready()
    return time.perf_counter() - start

accelerators = [d for d in jax.devices() if d.platform != "cpu"]
if accelerators:
  cpu, acc = seeding_seconds(jax.devices("cpu")[0]), seeding_seconds(accelerators[0])
  print(f"BADGE seeding, 20,000 points: CPU {cpu:.3f} s, {accelerators[0].platform} {acc:.4f} s "
        f"({cpu / acc:.0f}x faster)")
else:
  print("no GPU or TPU attached: everything below runs on the CPU")"""


PARAMS_NOTE = (
  "# Parameters. The test suite runs every notebook with JAXAL_NOTEBOOK_SMALL=1 (a few seconds)."
)

NOTEBOOKS = {}

NOTEBOOKS["01_quickstart"] = [
  (
    "md",
    f"""# jaxal quickstart: score → select → loop

{badge("01_quickstart")}

Active learning chooses which unlabeled examples to label next. jaxal writes every piece as a
pure JAX function: **scores** turn logits into informativeness, **selection** turns scores (or
embeddings) into a batch of indices, a **strategy** composes the two, and the **loop** threads an
immutable state through train → acquire → label. This notebook runs on the UCI digits bundled
with the package: no download.""",
  ),
  ("code", install_cell("plot")),
  ("code", accelerator_cell()),
  (
    "code",
    f"""{PARAMS_NOTE}
import os
SMALL = os.environ.get("JAXAL_NOTEBOOK_SMALL") == "1"
ROUNDS = 2 if SMALL else 10     # acquisition rounds
BUDGET = 20                     # labels bought per round
STEPS = 30 if SMALL else 300    # training steps per round""",
  ),
  (
    "md",
    """## 1. Scores: logits `[N, K]` → `[N]`, higher = more informative

Every score is computed in log space: a saturated logit (`1e4`) gives a finite score, never NaN.""",
  ),
  (
    "code",
    """import jax
import jax.numpy as jnp
import numpy as np
from jaxal import datasets, loop, models, scores, selection, strategies

logits = jnp.array([[4.0, 0.0, 0.0],    # confident
                    [1.0, 1.0, 0.0],    # torn between classes 0 and 1
                    [1e4, -1e4, 0.0]])  # saturated
for name in ["least_confidence", "margin", "entropy", "ratio"]:
  print(f"{name:>16}: {getattr(scores, name)(logits)}")""",
  ),
  ("md", """## 2. Selection: scores → `[k]` int32 indices, unique, never already labeled"""),
  (
    "code",
    """u = scores.entropy(logits)
print("top-1:", selection.top_k(u, 1))
labeled = jnp.array([False, True, False])            # point 1 is labeled already
print("top-1 among unlabeled:", selection.top_k(u, 1, labeled_mask=labeled))
print("2 at random:", selection.random(jax.random.key(0), 3, 2, labeled_mask=labeled))""",
  ),
  (
    "md",
    """## 3. The loop on the bundled digits

`loop.init` draws the initial labeled set; each `loop.run_round` trains a fresh model on the
labeled points (Adam, one jitted `fori_loop`), asks the strategy for `BUDGET` new points, and
labels them. The state is an immutable value: nothing is hidden in objects.""",
  ),
  (
    "code",
    """ds = datasets.load_digits()
x, y = ds.x_train, ds.y_train
print("pool", x.shape, "test", ds.x_test.shape)

def learning_curve(strategy, seed=0):
  key = jax.random.key(seed)
  state = loop.init(key, len(x), num_initial=BUDGET)
  train_state = loop.create_train_state(key, models.MLP(num_classes=10), x)
  acc = []
  for _ in range(ROUNDS):
    state, train_state, picked = loop.run_round(state, train_state, strategy=strategy, x=x, y=y,
                                                budget=BUDGET, num_steps=STEPS)
    model, params = models.from_train_state(train_state)
    acc.append(loop.accuracy(model, params, ds.x_test, ds.y_test))
  return state, acc

curves = {}
for name in ["random", "entropy", "margin"]:
  state, curves[name] = learning_curve(strategies.get(name))
  print(f"{name:>8}: {state.num_labeled} labels, accuracy per round {np.round(curves[name], 3)}")""",
  ),
  (
    "code",
    """import matplotlib.pyplot as plt

labels = [BUDGET * (r + 1) for r in range(ROUNDS)]  # labels the model of round r was trained on
for name, acc in curves.items():
  plt.plot(labels, acc, marker="o", label=name)
plt.xlabel("labeled examples"); plt.ylabel("test accuracy"); plt.legend(); plt.grid(alpha=0.3)
plt.show()""",
  ),
  (
    "md",
    """## 4. Whole experiments

`jaxal run` (or `jaxal.experiment.run`) runs strategies × seeds × rounds, checkpoints every round
(kill it and run the same command again: it resumes), and writes `results.json` and learning
curves; `jaxal report` turns a results folder into a Markdown table and plots:

```bash
jaxal run --strategies random,entropy,badge --seeds 3 --rounds 10 --out runs/digits
jaxal report runs/digits
```""",
  ),
  (
    "code",
    """import tempfile
from jaxal import experiment

cfg = experiment.Config(strategies=("random", "entropy"), rounds=ROUNDS, budget=BUDGET, seeds=2,
                        num_steps=STEPS)
out = tempfile.mkdtemp()
payload = experiment.run(cfg, out, progress=False)
print(experiment.report(out, log=lambda s: None))""",
  ),
]

NOTEBOOKS["02_badge_mnist"] = [
  (
    "md",
    f"""# BADGE on MNIST: exact against closed-form gradient embeddings

{badge("02_badge_mnist")}

BADGE (Ash et al., ICLR 2020) embeds every unlabeled point as the gradient of the loss at the
model's own prediction with respect to the last layer, then picks a batch by k-means++ seeding
in that space: large gradients are uncertain points, spread-out gradients are diverse ones.

For a Dense head `logits = z W + b` that gradient has a closed form, `(p − onehot(ŷ)) ⊗ z`,
which jaxal keeps **factorised**: `O(N (K + d))` memory instead of the `N × K·d` matrix. This
notebook checks it against the exact `jax.vmap(jax.grad(...))` embedding, then runs BADGE against
random and entropy sampling. It reads MNIST through tensorflow-datasets (falling back to the
bundled digits when MNIST is not available).""",
  ),
  ("code", install_cell("plot,datasets")),
  ("code", accelerator_cell()),
  (
    "code",
    f"""{PARAMS_NOTE}
import os
SMALL = os.environ.get("JAXAL_NOTEBOOK_SMALL") == "1"
DATASET = os.environ.get("JAXAL_NOTEBOOK_DATASET", "mnist")
DATA_DIR = os.environ.get("JAXAL_DATA_DIR")      # None: TFDS's default (~/tensorflow_datasets)
MANUAL_DIR = os.environ.get("JAXAL_MANUAL_DIR")  # a folder with the original files, if offline
POOL = 1000 if SMALL else 20000   # pool subsample
INITIAL = 100
BUDGET = 50 if SMALL else 100
ROUNDS = 2 if SMALL else 8
STEPS = 50 if SMALL else 500
COMPARE = 200 if SMALL else 2000  # points on which exact and closed form are compared""",
  ),
  (
    "code",
    """import time
import jax
import jax.numpy as jnp
import numpy as np
from jaxal import datasets, embeddings, loop, models, strategies

try:
  ds = datasets.load_dataset(DATASET, data_dir=DATA_DIR, manual_dir=MANUAL_DIR, download=not SMALL)
except (ImportError, datasets.DatasetUnavailableError) as e:
  print(f"{DATASET} is not available here ({type(e).__name__}); using the bundled digits instead.")
  ds = datasets.load_digits()
rng = np.random.default_rng(0)
sub = np.sort(rng.choice(len(ds.x_train), min(POOL, len(ds.x_train)), replace=False))
x, y = ds.x_train[sub], ds.y_train[sub]
INITIAL, BUDGET = min(INITIAL, len(x) // 10), min(BUDGET, len(x) // 10)
print(f"dataset: {ds.name}, pool {x.shape}, test {ds.x_test.shape}")""",
  ),
  ("md", """## 1. One model, two embeddings"""),
  (
    "code",
    """key = jax.random.key(0)
state = loop.init(key, len(x), num_initial=INITIAL)
train_state = loop.create_train_state(key, models.MLP(num_classes=ds.num_classes, hidden=(128,)), x)
train_state = loop.fit(jax.random.key(1), train_state, x, y, state.labeled_mask, num_steps=STEPS)
model, params = models.from_train_state(train_state)
xc = x[:COMPARE]

t0 = time.perf_counter()
exact = embeddings.gradient_embedding(model, params, xc)          # vmap(grad): [N, K·(d+1)]
exact.block_until_ready(); t_exact = time.perf_counter() - t0

t0 = time.perf_counter()
logits, features = models.predict(model, params, xc)
closed = embeddings.closed_form_gradient_embedding(logits, features)  # factorised (a [N,K], z [N,d+1])
closed.a.block_until_ready(); t_closed = time.perf_counter() - t0

dense = closed.dense()
err = float(jnp.max(jnp.abs(dense - exact)))
scale = float(jnp.max(jnp.abs(exact)))
print(f"exact {exact.shape}: {t_exact:.3f} s (first call includes compilation)")
print(f"closed form a {closed.a.shape} ⊗ z {closed.z.shape}: {t_closed:.3f} s")
print(f"max |closed − exact| = {err:.2e} (largest entry {scale:.2e})")
print(f"memory per point: dense {exact.shape[1]} floats, factorised {closed.a.shape[1] + closed.z.shape[1]}")
np.testing.assert_allclose(dense, exact, rtol=1e-4, atol=1e-5 * max(scale, 1.0))""",
  ),
  (
    "md",
    """The two agree to float32 rounding. The squared norms, which drive k-means++ seeding,
never need the dense matrix: `‖a ⊗ z‖² = ‖a‖² ‖z‖²`.""",
  ),
  (
    "code",
    """np.testing.assert_allclose(closed.sq_norms(), jnp.sum(exact * exact, -1), rtol=1e-4, atol=1e-6)
k = min(BUDGET, COMPARE // 2)
mask = jnp.zeros(COMPARE, bool)
pick_closed = strategies.badge().acquire(jax.random.key(2), model, params, xc, mask, k)
pick_exact = strategies.badge(exact=True).acquire(jax.random.key(2), model, params, xc, mask, k)
overlap = len(set(np.asarray(pick_closed).tolist()) & set(np.asarray(pick_exact).tolist()))
print(f"BADGE picks, closed form vs exact embedding: {overlap} of {k} in common")""",
  ),
  ("md", """## 2. BADGE against random and entropy"""),
  (
    "code",
    """def learning_curve(strategy, seed=0):
  key = jax.random.key(seed)
  st = loop.init(key, len(x), num_initial=INITIAL)
  ts = loop.create_train_state(key, models.MLP(num_classes=ds.num_classes, hidden=(128,)), x)
  acc, seconds = [], []
  for r in range(ROUNDS + 1):
    ts = loop.fit(loop.round_keys(st)[0], ts, x, y, st.labeled_mask, num_steps=STEPS)
    m, p = models.from_train_state(ts)
    acc.append(loop.accuracy(m, p, ds.x_test, ds.y_test))
    if r < ROUNDS:
      t0 = time.perf_counter()
      st, _ = loop.acquire(st, strategy, m, p, x, BUDGET)
      seconds.append(time.perf_counter() - t0)
  return acc, seconds

curves = {}
for name in ["random", "entropy", "badge"]:
  curves[name], secs = learning_curve(strategies.get(name))
  print(f"{name:>8}: accuracy {np.round(curves[name], 3)}, acquisition {np.mean(secs):.2f} s/round")""",
  ),
  (
    "code",
    """import matplotlib.pyplot as plt

labels = [INITIAL + r * BUDGET for r in range(ROUNDS + 1)]
for name, acc in curves.items():
  plt.plot(labels, acc, marker="o", label=name)
plt.xlabel("labeled examples"); plt.ylabel("test accuracy"); plt.title(ds.name)
plt.legend(); plt.grid(alpha=0.3); plt.show()""",
  ),
  (
    "md",
    """One seed is an anecdote: `benchmarks/quality.py` runs every strategy on MNIST and
Fashion-MNIST over 3 seeds (`jaxal run` underneath), and `benchmarks/results/` holds the
tables and curves.""",
  ),
]

NOTEBOOKS["03_bald_batchbald"] = [
  (
    "md",
    f"""# BALD and BatchBALD with MC dropout

{badge("03_bald_batchbald")}

BALD (Houlsby et al. 2011; Gal et al. 2017) scores a point by the mutual information between
its label and the model's weights, estimated with MC-dropout samples: high when the sampled
networks are each confident but disagree. Taking the top-k BALD scores picks the same kind of
point k times over; BatchBALD (Kirsch et al., NeurIPS 2019) scores the batch jointly and avoids
that. The classic demonstration: a pool in which every image appears three times.""",
  ),
  ("code", install_cell("plot")),
  ("code", accelerator_cell()),
  (
    "code",
    f"""{PARAMS_NOTE}
import os
SMALL = os.environ.get("JAXAL_NOTEBOOK_SMALL") == "1"
NUM_SAMPLES = 8 if SMALL else 20   # MC-dropout passes
POOL = 200 if SMALL else 1347      # distinct pool images (each repeated 3 times)
K = 5 if SMALL else 10             # batch size
STEPS = 100 if SMALL else 300
ROUNDS = 2 if SMALL else 8""",
  ),
  (
    "code",
    """import jax
import jax.numpy as jnp
import numpy as np
from jaxal import bayes, datasets, loop, models, scores, selection, strategies

ds = datasets.load_digits()
x, y = ds.x_train[:POOL], ds.y_train[:POOL]
key = jax.random.key(0)
state = loop.init(key, len(x), num_initial=30)
train_state = loop.create_train_state(key, models.MLP(num_classes=10), x)
train_state = loop.fit(jax.random.key(1), train_state, x, y, state.labeled_mask, num_steps=STEPS)
model, params = models.from_train_state(train_state)
print("accuracy with 30 labels:", loop.accuracy(model, params, ds.x_test, ds.y_test))""",
  ),
  (
    "md",
    """## 1. MC-dropout samples and BALD scores

`models.predict_mc` runs `NUM_SAMPLES` stochastic passes (vmapped over split keys). With
`consistent=True` each pass uses one dropout mask for the whole pool: one sampled network per
pass, which BatchBALD's joint predictive needs.""",
  ),
  (
    "code",
    """x_rep = np.concatenate([x, x, x])                   # every image three times
mask_rep = jnp.concatenate([state.labeled_mask] * 3)
mc = models.predict_mc(jax.random.key(3), model, params, x_rep, num_samples=NUM_SAMPLES, consistent=True)
print("MC logits", mc.shape)                         # [S, N, K]
u = scores.bald(mc)
print("BALD: min %.3f, max %.3f, never NaN: %s" % (float(u.min()), float(u.max()), bool(jnp.all(jnp.isfinite(u)))))""",
  ),
  (
    "md",
    """## 2. Top-k BALD against BatchBALD on the repeated pool

Top-k BALD takes each of its favourite images three times. BatchBALD counts what a batch
already knows, so it usually spreads the batch over more distinct images (with the full-size
parameters, typically 6-7 distinct images in 10 picks against BALD's 4). With few MC samples
and a barely trained model (the small test size) the two can coincide: a duplicate's
conditional information is then almost as large as a new image's.""",
  ),
  (
    "code",
    """top = np.asarray(selection.top_k(u, K, labeled_mask=mask_rep))
joint = np.asarray(bayes.batchbald(jax.random.key(4), mc, K, labeled_mask=mask_rep))
print("top-k BALD picks  ", top, "->", len(set(top % POOL)), "distinct images")
print("BatchBALD picks   ", joint, "->", len(set(joint % POOL)), "distinct images")""",
  ),
  (
    "md",
    """## 3. Learning curves

The strategies `bald` and `batchbald` do the same inside the loop (MC passes, then selection).""",
  ),
  (
    "code",
    """def learning_curve(strategy, seed=0):
  k0 = jax.random.key(seed)
  st = loop.init(k0, len(x_rep), num_initial=30)
  ts = loop.create_train_state(k0, models.MLP(num_classes=10), x_rep)
  y_rep = np.concatenate([y, y, y])
  acc = []
  for _ in range(ROUNDS):
    st, ts, _ = loop.run_round(st, ts, strategy=strategy, x=x_rep, y=y_rep, budget=K, num_steps=STEPS)
    m, p = models.from_train_state(ts)
    acc.append(loop.accuracy(m, p, ds.x_test, ds.y_test))
  return acc

curves = {
    "random": learning_curve(strategies.random()),
    "bald": learning_curve(strategies.bald(num_samples=NUM_SAMPLES)),
    "batchbald": learning_curve(strategies.batchbald(num_samples=NUM_SAMPLES)),
}
for name, acc in curves.items():
  print(f"{name:>9}: {np.round(acc, 3)}")""",
  ),
  (
    "code",
    """import matplotlib.pyplot as plt

labels = [30 + K * (r + 1) for r in range(ROUNDS)]
for name, acc in curves.items():
  plt.plot(labels, acc, marker="o", label=name)
plt.xlabel("labeled examples (repeated pool)"); plt.ylabel("test accuracy")
plt.legend(); plt.grid(alpha=0.3); plt.show()""",
  ),
]

NOTEBOOKS["04_custom_strategy"] = [
  (
    "md",
    f"""# Writing your own strategy

{badge("04_custom_strategy")}

A jaxal `Strategy` is a name and one pure function,

```python
acquire(key, model, params, pool, labeled_mask, budget) -> [budget] int32
```

returning unique, in-range, never-labeled indices. It holds no data and no model: a factory
closes over hyperparameters and returns the value, like an optax `GradientTransformation`.
This notebook writes two: one from a score, one that combines uncertainty with diversity.""",
  ),
  ("code", install_cell("plot")),
  ("code", accelerator_cell()),
  (
    "code",
    f"""{PARAMS_NOTE}
import os
SMALL = os.environ.get("JAXAL_NOTEBOOK_SMALL") == "1"
ROUNDS = 2 if SMALL else 8
BUDGET = 20
STEPS = 30 if SMALL else 300""",
  ),
  (
    "md",
    """## 1. From a score: `strategies.score_strategy`

Any function `logits [N, K] -> [N]` (higher = pick first) becomes a strategy that runs the model
over the pool in fixed-size batches and takes the top `budget` unlabeled points.""",
  ),
  (
    "code",
    """import jax
import jax.numpy as jnp
import numpy as np
from jaxal import datasets, loop, models, scores, selection, strategies
from jaxal.strategies import Strategy

def gini(logits):
  \"\"\"Gini impurity 1 − Σ p², computed from log-softmax.\"\"\"
  p = jnp.exp(jax.nn.log_softmax(logits, -1))
  return 1.0 - jnp.sum(p * p, -1)

gini_strategy = strategies.score_strategy("gini", gini)
print(gini_strategy.name, gini(jnp.array([[0.0, 0.0], [10.0, 0.0]])))""",
  ),
  (
    "md",
    """## 2. Uncertain *and* diverse: margin candidates, then k-center greedy

Take the `factor × budget` unlabeled points with the smallest margin, then pick `budget` of them
by farthest-first traversal of the model's penultimate features, so the batch does not spend
its labels on near-duplicates. Everything is a jitted library call: no Python loop over points.""",
  ),
  (
    "code",
    """def margin_then_diverse(*, factor: int = 5, batch_size: int = 256) -> Strategy:
  def acquire(key, model, params, pool, labeled_mask, budget):
    logits, features = models.predict(model, params, pool, batch_size=batch_size)
    unlabeled = int(pool.shape[0] - jnp.sum(labeled_mask))
    m = min(factor * budget, unlabeled)
    candidates = selection.top_k(scores.margin(logits), m, labeled_mask=labeled_mask)  # [m]
    picked = selection.k_center_greedy(key, features[candidates], budget)  # [budget] into candidates
    return candidates[picked]
  return Strategy("margin_then_diverse", acquire)

ds = datasets.load_digits()
x, y = ds.x_train, ds.y_train
key = jax.random.key(0)
state = loop.init(key, len(x), num_initial=BUDGET)
ts = loop.create_train_state(key, models.MLP(num_classes=10), x)
ts = loop.fit(jax.random.key(1), ts, x, y, state.labeled_mask, num_steps=STEPS)
model, params = models.from_train_state(ts)
idx = margin_then_diverse().acquire(jax.random.key(2), model, params, x, state.labeled_mask, BUDGET)
print(idx)""",
  ),
  (
    "md",
    """## 3. Check the contract

Whatever a strategy does inside, its output must be `[budget]` int32, unique, in range and never
labeled; `loop.label` checks all of it and refuses a bad batch without changing the state.""",
  ),
  (
    "code",
    """idx = np.asarray(idx)
assert idx.shape == (BUDGET,) and idx.dtype == np.int32
assert len(set(idx.tolist())) == BUDGET and idx.min() >= 0 and idx.max() < len(x)
assert not np.asarray(state.labeled_mask)[idx].any()
try:
  loop.label(state, np.concatenate([idx[:1], idx[:1]]))   # a duplicate
except ValueError as e:
  print("refused:", e)""",
  ),
  ("md", """## 4. In the loop, against the built-ins"""),
  (
    "code",
    """def learning_curve(strategy, seed=0):
  k0 = jax.random.key(seed)
  st = loop.init(k0, len(x), num_initial=BUDGET)
  t = loop.create_train_state(k0, models.MLP(num_classes=10), x)
  acc = []
  for _ in range(ROUNDS):
    st, t, _ = loop.run_round(st, t, strategy=strategy, x=x, y=y, budget=BUDGET, num_steps=STEPS)
    m, p = models.from_train_state(t)
    acc.append(loop.accuracy(m, p, ds.x_test, ds.y_test))
  return acc

curves = {s.name: learning_curve(s) for s in
          [strategies.random(), strategies.margin(), gini_strategy, margin_then_diverse()]}
for name, acc in curves.items():
  print(f"{name:>20}: {np.round(acc, 3)}")""",
  ),
  (
    "code",
    """import matplotlib.pyplot as plt

labels = [BUDGET * (r + 2) for r in range(ROUNDS)]
for name, acc in curves.items():
  plt.plot(labels, acc, marker="o", label=name)
plt.xlabel("labeled examples"); plt.ylabel("test accuracy"); plt.legend(); plt.grid(alpha=0.3)
plt.show()""",
  ),
  (
    "md",
    """## 5. Through the experiment runner

`strategies.register` gives the factory a name, so the runner (and `jaxal run` in the same
process) takes it beside the built-ins, with settings in the strategy string, and writes the
same checkpoints, `results.json` and report as for any strategy.""",
  ),
  (
    "code",
    """import tempfile
from jaxal import experiment

strategies.register("margin_then_diverse", margin_then_diverse, overwrite=True)
cfg = experiment.Config(
  strategies=("random", "margin_then_diverse(factor=3)"),
  rounds=ROUNDS, seeds=1, budget=BUDGET, initial=BUDGET, num_steps=STEPS,
)
out = tempfile.mkdtemp()
payload = experiment.run(cfg, out, progress=False)
print(sorted(payload["results"]))""",
  ),
]


def build(name: str, cells: list[tuple[str, str]]) -> nbformat.NotebookNode:
  nb = v4.new_notebook()
  nb.metadata = {
    "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
    "language_info": {"name": "python"},
    "colab": {"name": f"{name}.ipynb", "provenance": []},
  }
  nb.cells = [
    v4.new_markdown_cell(src) if kind == "md" else v4.new_code_cell(src) for kind, src in cells
  ]
  for i, cell in enumerate(nb.cells):
    cell["id"] = f"{name[:2]}-{i:02d}"
  nbformat.validate(nb)
  return nb


def execute(nb: nbformat.NotebookNode, data_dir: str | None = None) -> nbformat.NotebookNode:
  """Runs ``nb`` at the small size in a fresh kernel and keeps its outputs."""
  from nbclient import NotebookClient

  env = {"JAXAL_NOTEBOOK_SMALL": "1", "MPLBACKEND": "Agg"}
  if data_dir:
    env["JAXAL_DATA_DIR"] = data_dir
  saved = {k: os.environ.get(k) for k in env}
  os.environ.update(env)
  try:
    with tempfile.TemporaryDirectory() as tmp:
      NotebookClient(
        nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": tmp}}
      ).execute()
  finally:
    for k, v in saved.items():
      if v is None:
        os.environ.pop(k, None)
      else:
        os.environ[k] = v
  for cell in nb.cells:  # wall-clock stamps would change every build
    cell.metadata.pop("execution", None)
  nb.metadata.pop("widgets", None)
  return nb


def main(argv: list[str] | None = None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("names", nargs="*", help="notebooks to build (default: all)")
  parser.add_argument(
    "--stripped", action="store_true", help="write the cells without executing them"
  )
  parser.add_argument(
    "--data-dir",
    default=None,
    help="a TFDS data_dir where MNIST is prepared, for 02_badge_mnist (else: digits)",
  )
  args = parser.parse_args(argv)
  for name in args.names or list(NOTEBOOKS):
    nb = build(name, NOTEBOOKS[name])
    if not args.stripped:
      nb = execute(nb, args.data_dir)
    nbformat.write(nb, os.path.join(HERE, f"{name}.ipynb"))
    print("wrote", f"{name}.ipynb", "(stripped)" if args.stripped else "(with outputs)")


if __name__ == "__main__":
  main()
