"""Experiments: resumable checkpoints (kill -9 a real process), refusals, reports."""

from __future__ import annotations

import dataclasses
import glob
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

import jax.numpy as jnp
import numpy as np
import pytest

from jaxal import datasets
from jaxal import experiment
from jaxal import selection
from jaxal import strategies
from jaxal._src.experiment import checkpoint

# Every test uses the same pool, budget and step count, so one compile serves them all.
SMALL = experiment.Config(
  strategies=("random", "margin"), rounds=3, budget=5, initial=10, seeds=2, num_steps=20
)


def _args(cfg: experiment.Config) -> list[str]:
  return [
    "run",
    "--strategies",
    ",".join(cfg.strategies),
    "--rounds",
    str(cfg.rounds),
    "--budget",
    str(cfg.budget),
    "--initial",
    str(cfg.initial),
    "--seeds",
    str(cfg.seeds),
    "--steps",
    str(cfg.num_steps),
    "--retrain",
    cfg.retrain,
    "--no-progress",
  ]


def _quiet(*_):
  pass


def _same_results(a: dict, b: dict) -> None:
  """Accuracies, labels used and labeled indices equal bit for bit (JSON floats round-trip exactly)."""
  a, b = json.loads(json.dumps(a)), json.loads(json.dumps(b))
  assert a["config"] == b["config"] and a["labels"] == b["labels"]
  assert set(a["results"]) == set(b["results"])
  for name in a["results"]:
    for k in ("accuracy", "labels", "labeled_indices"):
      assert a["results"][name][k] == b["results"][name][k], (name, k)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
  """SMALL run uninterrupted, once for the module."""
  out = tmp_path_factory.mktemp("reference")
  payload = experiment.run(SMALL, str(out), progress=False, log=_quiet)
  return out, payload


def test_results_hold_per_round_metrics(reference):
  out, payload = reference
  assert payload["complete"] and payload["labels"] == [10, 15, 20, 25]
  for name in SMALL.strategies:
    res = payload["results"][name]
    assert len(res["accuracy"]) == SMALL.seeds
    for s in range(SMALL.seeds):
      assert res["labels"][s] == [10, 15, 20, 25]
      assert len(res["train_seconds"][s]) == 4 and len(res["acquire_seconds"][s]) == 3
      hist = res["labeled_indices"][s]
      assert [len(h) for h in hist] == [10, 5, 5, 5]
      flat = [i for h in hist for i in h]
      assert len(set(flat)) == 25 and all(0 <= i < 1347 for i in flat)
  # Same seed, same initial set and first model, whatever the strategy.
  assert (
    payload["results"]["random"]["labeled_indices"][0][0]
    == payload["results"]["margin"]["labeled_indices"][0][0]
  )
  assert (
    payload["results"]["random"]["accuracy"][1][0] == payload["results"]["margin"]["accuracy"][1][0]
  )
  files = sorted(
    os.path.relpath(p, out) for p in glob.glob(str(out / "checkpoints" / "*" / "*.npz"))
  )
  assert files == [
    "checkpoints/margin/seed_0.npz",
    "checkpoints/margin/seed_1.npz",
    "checkpoints/random/seed_0.npz",
    "checkpoints/random/seed_1.npz",
  ]
  assert json.loads((out / "results.json").read_text()) == json.loads(json.dumps(payload))


def test_kill_minus_9_then_rerun_equals_uninterrupted(reference, tmp_path):
  _, ref = reference
  out = tmp_path / "killed"
  cmd = [sys.executable, "-m", "jaxal._src.cli", *_args(SMALL), "--out", str(out)]
  log = tmp_path / "killed.log"
  with open(log, "wb") as f:
    proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT)
    try:
      deadline = time.monotonic() + 600
      while not glob.glob(str(out / "checkpoints" / "*" / "*.npz")):
        assert proc.poll() is None, log.read_text()[-3000:]
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.005)
      proc.kill()  # SIGKILL: no cleanup of any kind
    finally:
      proc.wait()
  assert proc.returncode == -9, "the run finished before it could be killed"
  before = (
    json.loads((out / "results.json").read_text()) if (out / "results.json").exists() else None
  )
  assert before is None or not before["complete"]
  rerun = subprocess.run(cmd, capture_output=True, text=True)
  assert rerun.returncode == 0, rerun.stderr[-3000:]
  assert "resuming random seed 0 at round" in rerun.stdout
  after = json.loads((out / "results.json").read_text())
  assert after["complete"]
  _same_results(after, ref)


class _Interrupt(Exception):
  pass


def test_interrupted_warm_start_resumes_identically(tmp_path):
  cfg = dataclasses.replace(SMALL, retrain="warm", seeds=1)
  ref = experiment.run(cfg, str(tmp_path / "ref"), progress=False, log=_quiet)

  def crash(name, seed, r):
    if (name, seed, r) == ("margin", 0, 1):
      raise _Interrupt

  out = str(tmp_path / "run")
  with pytest.raises(_Interrupt):
    experiment.run(cfg, out, progress=False, log=_quiet, on_round=crash)
  messages = []
  rounds_run = []
  resumed = experiment.run(
    cfg,
    out,
    progress=False,
    log=messages.append,
    on_round=lambda name, seed, r: rounds_run.append((name, r)),
  )
  assert any("resuming margin seed 0 at round 2 of 3" in m for m in messages)
  assert rounds_run == [("margin", 2), ("margin", 3)]  # nothing recomputed
  _same_results(resumed, ref)


def test_rerun_of_finished_experiment_recomputes_nothing(reference):
  out, ref = reference
  rounds_run = []
  again = experiment.run(
    SMALL, str(out), progress=False, log=_quiet, on_round=lambda *a: rounds_run.append(a)
  )
  assert rounds_run == []
  _same_results(again, ref)


def test_changed_configuration_is_refused(reference):
  out, _ = reference
  before = (out / "results.json").read_bytes()
  with pytest.raises(
    experiment.ConfigMismatchError,
    match=r"another configuration \(budget: 5 in the folder, 7 now\)",
  ):
    experiment.run(
      dataclasses.replace(SMALL, budget=7, seeds=3), str(out), progress=False, log=_quiet
    )
  assert (out / "results.json").read_bytes() == before


def test_other_data_is_refused(tmp_path):
  cfg = dataclasses.replace(SMALL, strategies=("random",), seeds=1, rounds=1)
  out = tmp_path / "run"
  experiment.run(cfg, str(out), progress=False, log=_quiet)
  record = json.loads((out / "config.json").read_text())
  record["dataset_sha256"] = "0" * 64
  (out / "config.json").write_text(json.dumps(record))
  with pytest.raises(experiment.ConfigMismatchError, match="ran on other data"):
    experiment.run(cfg, str(out), progress=False, log=_quiet)


@pytest.mark.parametrize(
  "damage, message",
  [
    ("flip", r"(fails its sha256 checksum|is unreadable)"),
    ("truncate", "is unreadable"),
    ("empty", "is unreadable"),
  ],
)
def test_corrupt_checkpoint_is_refused_never_restarted(damage, message, tmp_path):
  cfg = dataclasses.replace(SMALL, strategies=("random",), seeds=1, rounds=1)
  out = tmp_path / "run"
  experiment.run(cfg, str(out), progress=False, log=_quiet)
  path = out / "checkpoints" / "random" / "seed_0.npz"
  data = bytearray(path.read_bytes())
  if damage == "flip":
    data[len(data) // 2] ^= 0xFF
  elif damage == "truncate":
    data = data[: len(data) // 2]
  else:
    data = bytearray()
  path.write_bytes(bytes(data))
  results = (out / "results.json").read_bytes()
  with pytest.raises(checkpoint.CheckpointError, match=message + ".*Delete it to recompute"):
    experiment.run(cfg, str(out), progress=False, log=_quiet)
  assert path.read_bytes() == bytes(data)  # left as it was, for the user to inspect
  assert (out / "results.json").read_bytes() == results  # never rewritten with partial results


def test_checkpoint_of_another_run_is_refused(tmp_path):
  cfg = dataclasses.replace(SMALL, strategies=("random",), rounds=1)
  out = tmp_path / "run"
  experiment.run(cfg, str(out), progress=False, log=_quiet)
  seed0 = out / "checkpoints" / "random" / "seed_0.npz"
  (out / "checkpoints" / "random" / "seed_1.npz").write_bytes(seed0.read_bytes())
  with pytest.raises(checkpoint.CheckpointError, match="belongs to another run"):
    experiment.run(cfg, str(out), progress=False, log=_quiet)


def test_checkpoint_store(tmp_path):
  path = str(tmp_path / "c.npz")
  arrays = {
    "a": np.arange(5, dtype=np.int32),
    "b": np.zeros((2, 3), np.float64),
    "e": np.zeros((0,)),
  }
  checkpoint.save(path, arrays, {"round": 3})
  got, meta = checkpoint.load(path)
  assert meta == {"format": checkpoint.FORMAT, "round": 3}
  assert set(got) == set(arrays)
  for k, v in arrays.items():
    np.testing.assert_array_equal(got[k], v)
    assert got[k].dtype == v.dtype
  assert os.listdir(tmp_path) == ["c.npz"]  # no temporary left behind
  umask = os.umask(0)
  os.umask(umask)
  assert os.stat(path).st_mode & 0o777 == 0o666 & ~umask  # as open() would make it
  stale = tmp_path / ("c.npz.x" + checkpoint.TMP_SUFFIX)
  stale.write_bytes(b"partial")
  (tmp_path / "sub").mkdir()
  deep = tmp_path / "sub" / ("d.npz.y" + checkpoint.TMP_SUFFIX)
  deep.write_bytes(b"partial")
  assert checkpoint.remove_stale_temporaries(str(tmp_path), recursive=False) == [str(stale)]
  assert checkpoint.remove_stale_temporaries(str(tmp_path)) == [str(deep)]
  with pytest.raises(ValueError, match="reserved"):
    checkpoint.save(path, {"__meta__": np.zeros(1)}, {})
  with pytest.raises(checkpoint.CheckpointError, match="unreadable"):
    checkpoint.load(str(tmp_path / "missing.npz"))
  np.savez(str(tmp_path / "foreign.npz"), a=np.zeros(2))
  with pytest.raises(checkpoint.CheckpointError, match="lacks its metadata or checksum"):
    checkpoint.load(str(tmp_path / "foreign.npz"))


def test_output_folder_that_cannot_be_written(tmp_path):
  blocker = tmp_path / "file"
  blocker.write_text("not a folder")
  with pytest.raises(PermissionError, match="cannot be created or written"):
    experiment.run(SMALL, str(blocker / "out"), progress=False, log=_quiet)


def test_learning_curve_measures():
  labels = [10, 20, 30, 40]
  acc = [0.5, 0.6, 0.7, 0.9]
  # Trapezoid / (40 - 10): (0.55 + 0.65 + 0.8) * 10 / 30.
  assert experiment.area_under_curve(labels, acc) == pytest.approx(2.0 / 3.0, abs=1e-12)
  assert experiment.labels_to_reach(labels, acc, 0.7) == 30
  assert experiment.labels_to_reach(labels, acc, 0.65) == 30
  assert experiment.labels_to_reach(labels, acc, 0.5) == 10
  assert experiment.labels_to_reach(labels, acc, 0.95) is None


def test_report(reference):
  out, payload = reference
  summary = experiment.summarize(SMALL, payload["results"])
  # A target both strategies reach (on a 3-decimal grid, as the table prints it).
  target = np.floor(min(max(s["mean"]) for s in summary.values()) * 1000) / 1000
  md = experiment.report(str(out), target=target, log=_quiet)
  assert (out / "report.md").read_text() == md
  for png in ("curves.png", "curves_vs_random.png"):
    data = (out / png).read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
  assert "| random (n=2) | margin (n=2) |" in md and "| **AUC** |" in md
  assert "95% t-interval" in md and "ddof=1" in md and "Paired difference to random" in md
  assert f"labels to reach {target:.3f}" in md and "saved vs random" in md
  row = next(line for line in md.splitlines() if line.startswith("| margin | 2 |"))
  n_random = experiment.labels_to_reach(payload["labels"], summary["random"]["mean"], target)
  n_margin = experiment.labels_to_reach(payload["labels"], summary["margin"]["mean"], target)
  assert f"| {n_margin} | {n_random - n_margin:+d} |" in row
  # Default target: random's final mean accuracy.
  md = experiment.report(str(out), log=_quiet)
  assert f"Target accuracy {summary['random']['mean'][-1]:.3f} (random's final mean accuracy)" in md
  with pytest.raises(ValueError, match=r"target must be a finite number in \[0.0, 1.0\]"):
    experiment.report(str(out), target=90.0, log=_quiet)


def test_report_of_missing_or_partial_results(tmp_path):
  with pytest.raises(FileNotFoundError, match="no results.json in"):
    experiment.report(str(tmp_path), log=_quiet)
  cfg = dataclasses.replace(SMALL, strategies=("random", "margin"), seeds=1, rounds=1)

  def crash(name, seed, r):
    if name == "margin":
      raise _Interrupt

  with pytest.raises(_Interrupt):
    experiment.run(cfg, str(tmp_path), progress=False, log=_quiet, on_round=crash)
  md = experiment.report(str(tmp_path), log=_quiet)  # random finished, margin did not
  assert "status: in progress" in md and "| random (n=1) |" in md and "margin" not in md


# ---------------------------------------------------------------------------
# One's own data, strategy settings, a registered strategy, merging folders.

OWN = experiment.Config(
  strategies=("random", "bald(num_samples=3)", "first_unlabeled"),
  rounds=1,
  budget=4,
  initial=6,
  seeds=1,
  num_steps=5,
  batch_size=8,
  hidden=8,
)


def _own_data(shift: float = 0.0):
  rng = np.random.default_rng(0)
  y = np.arange(60) % 2
  x = rng.normal(size=(60, 4)) + 2.0 * y[:, None] + shift
  return datasets.from_arrays(x, y, name="blobs")


def _first_unlabeled():
  def acquire(key, model, params, pool, labeled_mask, budget):
    n = labeled_mask.shape[0]
    return selection.top_k(-jnp.arange(n, dtype=jnp.float32), budget, labeled_mask=labeled_mask)

  return strategies.Strategy("first_unlabeled", acquire)


strategies.register("first_unlabeled", _first_unlabeled, overwrite=True)


@pytest.fixture(scope="module")
def own(tmp_path_factory):
  out = tmp_path_factory.mktemp("own")
  payload = experiment.run(OWN, str(out), data=_own_data(), progress=False, log=_quiet)
  return out, payload


def test_own_data_with_settings_and_a_registered_strategy(own):
  out, payload = own
  assert payload["config"]["dataset"] == "blobs" and payload["pool_size"] == 48
  assert list(payload["results"]) == ["random", "bald(num_samples=3)", "first_unlabeled"]
  hist = payload["results"]["first_unlabeled"]["labeled_indices"][0]
  unlabeled = sorted(set(range(48)) - set(hist[0]))
  assert hist[1] == unlabeled[:4]  # the registered strategy ran through the runner
  assert (out / "checkpoints" / "first_unlabeled" / "seed_0.npz").exists()
  with pytest.raises(ValueError, match="built-in"):
    strategies.register("random", _first_unlabeled)
  with pytest.raises(ValueError, match="identifier"):
    strategies.register("my strategy", _first_unlabeled)


def test_new_strategy_and_seed_merge_into_the_folder(own, tmp_path):
  src, before = own
  out = tmp_path / "merged"
  shutil.copytree(src, out)
  ran = []
  cfg = dataclasses.replace(OWN, strategies=("margin",), seeds=2)
  payload = experiment.run(
    cfg, str(out), data=_own_data(), progress=False, log=_quiet, on_round=lambda *a: ran.append(a)
  )
  assert sorted({(s, seed) for s, seed, _ in ran}) == [("margin", 0), ("margin", 1)]
  res = payload["results"]
  assert list(res) == [*OWN.strategies, "margin"]
  assert res["margin"]["seeds"] == [0, 1] and res["random"]["seeds"] == [0]
  assert res["random"]["accuracy"] == before["results"]["random"]["accuracy"]
  assert payload["config"]["seeds"] == 2
  # Another configuration, or other data, is refused and names what differs.
  with pytest.raises(experiment.ConfigMismatchError, match=r"budget: 4 in the folder, 5 now"):
    experiment.run(
      dataclasses.replace(cfg, budget=5), str(out), data=_own_data(), progress=False, log=_quiet
    )
  with pytest.raises(experiment.ConfigMismatchError, match="ran on other data"):
    experiment.run(cfg, str(out), data=_own_data(1.0), progress=False, log=_quiet)


def test_edited_or_damaged_finished_checkpoint_keeps_results(own, tmp_path):
  src, before = own
  out = tmp_path / "edited"
  shutil.copytree(src, out)
  path = out / "checkpoints" / "random" / "seed_0.npz"
  arrays, meta = checkpoint.load(str(path))
  arrays["labeled"] = arrays["labeled"].copy()
  arrays["labeled"][0] = 10_000  # outside the pool, with a recomputed checksum
  checkpoint.save(str(path), arrays, {k: v for k, v in meta.items() if k != "format"})
  results = (out / "results.json").read_bytes()
  with pytest.raises(
    checkpoint.CheckpointError, match=r"Recompute random seed 0 with --recompute-damaged.*outside"
  ):
    experiment.run(OWN, str(out), data=_own_data(), progress=False, log=_quiet)
  assert (out / "results.json").read_bytes() == results
  again = experiment.run(
    OWN, str(out), data=_own_data(), recompute_damaged=True, progress=False, log=_quiet
  )
  assert (out / "checkpoints" / "random" / "seed_0.npz.damaged").exists()
  _same_results(again, before)


@pytest.mark.parametrize(
  "change, message",
  [
    ({"learning_rate": float("inf")}, "learning_rate must be a finite number"),
    ({"initial": 100}, "larger than the pool of 48"),
    ({"strategies": ("bald(num_sample=3)",)}, "no setting 'num_sample'; it accepts: num_samples"),
    ({"strategies": ("bald(num_samples=x)",)}, "not a Python literal"),
    ({"model": "numpy:pi"}, "must be callable"),
    ({"model": "no_such_module_x:f"}, "cannot import 'no_such_module_x'"),
    ({"protocol": "nope"}, "protocol"),
  ],
)
def test_bad_input_is_refused_before_anything_is_written(change, message, tmp_path):
  out = tmp_path / "never"
  with pytest.raises((ValueError, TypeError), match=message):
    experiment.run(
      dataclasses.replace(OWN, **change), str(out), data=_own_data(), progress=False, log=_quiet
    )
  assert not out.exists()


def test_model_factory_spec(tmp_path, monkeypatch):
  (tmp_path / "my_models.py").write_text(
    "from jaxal import networks\n\n"
    "def tiny(num_classes, example_x):\n"
    "  assert example_x.shape == (1, 4)\n"
    "  return networks.MLP(num_classes=num_classes, hidden=(4,))\n"
  )
  monkeypatch.syspath_prepend(str(tmp_path))
  cfg = dataclasses.replace(OWN, strategies=("random",), model="my_models:tiny")
  payload = experiment.run(cfg, str(tmp_path / "out"), data=_own_data(), progress=False, log=_quiet)
  assert payload["config"]["model"] == "my_models:tiny"
  assert len(payload["results"]["random"]["accuracy"][0]) == 2


def test_nnx_batchnorm_factory_under_the_badge_protocol(tmp_path, monkeypatch):
  """A user's NNX model with BatchNorm, trained each round until 99% training accuracy."""
  (tmp_path / "my_nnx.py").write_text(
    "from flax import nnx\n\n"
    "class Net(nnx.Module):\n"
    "  def __init__(self, din, k, *, rngs):\n"
    "    self.body = nnx.Linear(din, 16, rngs=rngs)\n"
    "    self.bn = nnx.BatchNorm(16, rngs=rngs)\n"
    "    self.head = nnx.Linear(16, k, rngs=rngs)\n"
    "  def __call__(self, x):\n"
    "    return self.head(nnx.relu(self.bn(self.body(x.reshape(x.shape[0], -1)))))\n\n"
    "def net(num_classes, example_x, *, rngs=None):\n"
    "  return Net(example_x[0].size, num_classes, rngs=rngs or nnx.Rngs(0))\n"
  )
  monkeypatch.syspath_prepend(str(tmp_path))
  cfg = dataclasses.replace(OWN, strategies=("entropy",), model="my_nnx:net", protocol="badge")
  out = tmp_path / "out"
  payload = experiment.run(cfg, str(out), data=_own_data(), progress=False, log=_quiet)
  acc = payload["results"]["entropy"]["accuracy"][0]
  assert len(acc) == 2 and all(0.0 <= a <= 1.0 for a in acc)
  experiment.report(str(out), log=_quiet)
  text = (out / "report.md").read_text()
  assert "until 99% training accuracy" in text and "protocol: badge" in text


# ---------------------------------------------------------------------------
# Report statistics against NumPy / statistics references.


def test_interval_and_paired_difference_against_references():
  acc = np.asarray([[0.5, 0.6, 0.8], [0.55, 0.7, 0.85], [0.45, 0.62, 0.9]])
  got = experiment.interval(acc)
  for r in range(3):
    col = acc[:, r].tolist()
    assert got["std"][r] == pytest.approx(statistics.stdev(col), rel=1e-12)
    assert got["ci"][r] == pytest.approx(4.302652729911275 * statistics.stdev(col) / 3**0.5)
  assert experiment.t_critical(2) == pytest.approx(12.706204736, rel=1e-8)
  assert experiment.t_critical(5) == pytest.approx(2.776445105, rel=1e-8)
  one = experiment.interval(acc[:1])
  assert one["std"] is None and one["ci"] is None
  cfg = experiment.Config(rounds=2, budget=10, initial=10)
  rnd = acc - 0.1 + np.asarray([[0.01], [-0.02], [0.0]])
  results = {
    "random": {
      "seeds": [0, 1, 2],
      "accuracy": rnd.tolist(),
      "acquire_seconds": [[0]] * 3,
      "train_seconds": [[0]] * 3,
    },
    "x": {
      "seeds": [0, 1, 2],
      "accuracy": acc.tolist(),
      "acquire_seconds": [[0]] * 3,
      "train_seconds": [[0]] * 3,
    },
  }
  s = experiment.summarize(cfg, results)
  d = acc - rnd
  np.testing.assert_allclose(s["x"]["vs_random"]["mean"], d.mean(0), atol=1e-12)
  np.testing.assert_allclose(s["x"]["vs_random"]["std"], d.std(0, ddof=1), atol=1e-12)
  assert "0.100 ±" not in experiment.format_table(cfg, s).split("\n")[0]
  one_seed = {k: {**v, "seeds": [0], "accuracy": v["accuracy"][:1]} for k, v in results.items()}
  table = experiment.format_table(cfg, experiment.summarize(cfg, one_seed))
  assert "n=1, no interval" in table and "± 0.000" not in table


def test_pairwise_penalty_matrix():
  labels = [10, 20]
  a = {0: [0.9, 0.9], 1: [0.91, 0.92], 2: [0.89, 0.9]}
  b = {0: [0.5, 0.9], 1: [0.52, 0.91], 2: [0.51, 0.89]}
  settings = [
    {"labels": labels, "accuracy": {"a": a, "b": b}},
    {"labels": labels, "accuracy": {"a": a, "b": b}},
  ]
  names, c = experiment.pairwise_penalty(settings)
  # a beats b at the first size only (t ≈ 60 > 4.30), in both settings: 2 × 1/2.
  d = np.asarray([a[s][1] - b[s][1] for s in range(3)])
  assert abs(np.sqrt(3) * d.mean() / d.std(ddof=1)) < experiment.t_critical(3)
  assert names == ["a", "b"]
  np.testing.assert_allclose(c, [[0.0, 1.0], [0.0, 0.0]])
  assert "column mean" in experiment.format_penalty(names, c, ["one", "two"])


def test_plots_return_figures_and_leave_the_backend_alone(own, tmp_path):
  import matplotlib

  out, payload = own
  backend = matplotlib.get_backend()
  cfg = experiment.Config.from_dict(payload["config"])
  fig = experiment.plot_curves(cfg, payload["summary"], relative_to="random")
  assert type(fig).__name__ == "Figure"
  paths = experiment.save_figure(fig, str(tmp_path / "c"), ("png", "pdf", "svg"))
  assert [os.path.basename(p) for p in paths] == ["c.png", "c.pdf", "c.svg"]
  assert (tmp_path / "c.pdf").read_bytes()[:4] == b"%PDF"
  assert matplotlib.get_backend() == backend
