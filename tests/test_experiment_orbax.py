"""The runner's train states in orbax-checkpoint: resumed exactly, checked, never re-trained."""

from __future__ import annotations

import dataclasses
import glob
import json
import os
import pathlib
import shutil

import jax
import numpy as np
import pytest

from jaxal import experiment
from jaxal import loop
from jaxal._src import cli
from jaxal._src.experiment import checkpoint
from jaxal._src.experiment import config as config_lib
from jaxal._src.experiment import store

# A tiny MLP on 200 digits, 2 steps a round: every test shares its shapes and compiles.
TINY = experiment.Config(
  strategies=("random",),
  rounds=4,
  budget=5,
  initial=10,
  seeds=1,
  num_steps=2,
  batch_size=8,
  hidden=8,
  pool_subsample=200,
  retrain="warm",  # the train state carries over from round to round
)

BATCHNORM = """
import flax.linen as nn


class Net(nn.Module):
  num_classes: int

  @nn.compact
  def __call__(self, x, deterministic: bool = True):
    z = nn.Dense(8)(x.reshape(x.shape[0], -1))
    z = nn.relu(nn.BatchNorm(use_running_average=deterministic)(z))
    return nn.Dense(self.num_classes, name="head")(z), z


def net(num_classes, example_x):
  return Net(num_classes)
"""

NNX = """
from flax import nnx


class Net(nnx.Module):
  def __init__(self, din, k, *, rngs):
    self.body = nnx.Linear(din, 8, rngs=rngs)
    self.bn = nnx.BatchNorm(8, rngs=rngs)
    self.head = nnx.Linear(8, k, rngs=rngs)

  def __call__(self, x):
    return self.head(nnx.relu(self.bn(self.body(x.reshape(x.shape[0], -1)))))


def net(num_classes, example_x, *, rngs=None):
  return Net(example_x[0].size, num_classes, rngs=rngs or nnx.Rngs(0))
"""


def _quiet(*_):
  pass


class _Interrupt(Exception):
  pass


def _stop_after(name, seed, round_):
  def hook(n, s, r):
    if (n, s, r) == (name, seed, round_):
      raise _Interrupt

  return hook


def _same_results(a: dict, b: dict) -> None:
  a, b = json.loads(json.dumps(a)), json.loads(json.dumps(b))
  assert a["labels"] == b["labels"] and set(a["results"]) == set(b["results"])
  for name in a["results"]:
    for k in ("seeds", "accuracy", "labels", "labeled_indices"):
      assert a["results"][name][k] == b["results"][name][k], (name, k)


def _host(tree):
  return jax.tree.map(np.asarray, tree)


def _template(cfg: experiment.Config) -> object:
  """A fresh train state of the runs' model and optimiser, as the runner makes it."""
  ds = experiment.load_data(cfg)
  return loop.create_train_state(
    jax.random.key(0),
    config_lib.build_module(cfg, ds.num_classes, ds.x_train[:1]),
    ds.x_train[:1],
    tx=config_lib.optimizer(cfg),
  )


def _final_state(out, cfg: experiment.Config, strategy: str = "random", seed: int = 0):
  """The train state a run's record names, restored and checked against its sha256."""
  path = store.checkpoint_path(str(out), strategy, seed)
  _, meta = checkpoint.load(path)
  return meta, store.restore_train_state(path, meta, _template(cfg))


def _assert_same_states(a, b) -> None:
  """Same leaves at the same paths, bit for bit (each template has its own module object)."""
  la = jax.tree_util.tree_flatten_with_path(a)[0]
  lb = jax.tree_util.tree_flatten_with_path(b)[0]
  assert [p for p, _ in la] == [p for p, _ in lb]
  for (p, x), (_, y) in zip(la, lb):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y), err_msg=jax.tree_util.keystr(p))


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
  """TINY run uninterrupted."""
  out = tmp_path_factory.mktemp("straight")
  return out, experiment.run(TINY, str(out), progress=False, log=_quiet)


def test_two_rounds_then_resumed_to_four_equals_a_straight_run(straight, tmp_path):
  ref_out, ref = straight
  out = tmp_path / "resumed"
  with pytest.raises(_Interrupt):
    experiment.run(TINY, str(out), progress=False, log=_quiet, on_round=_stop_after("random", 0, 1))
  path = store.checkpoint_path(str(out), "random", 0)
  arrays, meta = checkpoint.load(path)
  assert "train_state" not in arrays  # the train state lies in orbax's folder, not the record
  assert meta["next_round"] == 2 and meta["train_state_round"] == 1
  assert os.listdir(store.state_dir(path)) == ["round_1"]  # the previous round's is deleted
  # A writer killed mid-write leaves a partial folder: the next run deletes it.
  leftover = os.path.join(store.state_dir(path), ".round_2.partial-0123abcd")
  os.makedirs(leftover)
  messages, rounds = [], []
  resumed = experiment.run(
    TINY, str(out), progress=False, log=messages.append, on_round=lambda n, s, r: rounds.append(r)
  )
  assert rounds == [2, 3, 4]  # rounds 0 and 1 come from the checkpoint, not re-trained
  assert any("resuming random seed 0 at round 2 of 4" in m for m in messages)
  assert not os.path.exists(leftover)
  assert os.listdir(store.state_dir(path)) == ["round_4"]
  _same_results(resumed, ref)
  got, want = resumed["results"]["random"], ref["results"]["random"]
  np.testing.assert_array_equal(np.asarray(got["accuracy"]), np.asarray(want["accuracy"]))
  np.testing.assert_array_equal(
    np.concatenate(got["labeled_indices"][0]), np.concatenate(want["labeled_indices"][0])
  )
  meta_a, a = _final_state(out, TINY)
  meta_b, b = _final_state(ref_out, TINY)
  assert meta_a["train_state_sha256"] == meta_b["train_state_sha256"]
  _assert_same_states(a, b)
  assert int(a.step) == 5 * TINY.num_steps  # warm: five rounds of training carried over


def test_batchnorm_model_resumes_through_the_command_line(tmp_path, monkeypatch, capsys):
  (tmp_path / "bn_models.py").write_text(BATCHNORM)
  monkeypatch.syspath_prepend(str(tmp_path))
  cfg = dataclasses.replace(TINY, rounds=3, model="bn_models:net")
  args = [
    "run",
    "--dataset",
    "digits",
    "--pool-subsample",
    "200",
    "--model",
    "bn_models:net",
    "--strategies",
    "random",
    "--rounds",
    "3",
    "--budget",
    "5",
    "--initial",
    "10",
    "--seeds",
    "1",
    "--steps",
    "2",
    "--batch-size",
    "8",
    "--hidden",
    "8",
    "--retrain",
    "warm",
    "--no-progress",
  ]
  ref_out, out = tmp_path / "straight", tmp_path / "resumed"
  assert cli.main([*args, "--out", str(ref_out)]) == 0
  with pytest.raises(_Interrupt):
    experiment.run(cfg, str(out), progress=False, log=_quiet, on_round=_stop_after("random", 0, 1))
  # The record's train state holds trained BatchNorm statistics, restored bit for bit.
  _, mid = _final_state(out, cfg)
  fresh = _template(cfg)
  stats = _host(mid.model_state["batch_stats"])
  assert not np.allclose(
    stats["BatchNorm_0"]["mean"], fresh.model_state["batch_stats"]["BatchNorm_0"]["mean"]
  )
  capsys.readouterr()
  assert cli.main([*args, "--out", str(out)]) == 0
  assert "resuming random seed 0 at round 2 of 3" in capsys.readouterr().out
  a = json.loads((out / "results.json").read_text())
  b = json.loads((ref_out / "results.json").read_text())
  _same_results(a, b)
  _, sa = _final_state(out, cfg)
  _, sb = _final_state(ref_out, cfg)
  # Warm-started from the restored statistics: a reset would end elsewhere.
  _assert_same_states(sa.model_state, sb.model_state)
  _assert_same_states(sa, sb)


def test_nnx_model_with_batchnorm_resumes_identically(tmp_path, monkeypatch):
  (tmp_path / "nnx_models.py").write_text(NNX)
  monkeypatch.syspath_prepend(str(tmp_path))
  cfg = dataclasses.replace(TINY, rounds=3, model="nnx_models:net")
  ref = experiment.run(cfg, str(tmp_path / "straight"), progress=False, log=_quiet)
  out = str(tmp_path / "resumed")
  with pytest.raises(_Interrupt):
    experiment.run(cfg, out, progress=False, log=_quiet, on_round=_stop_after("random", 0, 1))
  _, mid = _final_state(out, cfg)
  assert not np.allclose(_host(mid.model_state)["bn"]["mean"], 0.0)
  resumed = experiment.run(cfg, out, progress=False, log=_quiet)
  _same_results(resumed, ref)
  _, a = _final_state(out, cfg)
  _, b = _final_state(tmp_path / "straight", cfg)
  _assert_same_states(a, b)


# ---------------------------------------------------------------------------
# Damaged train states: a clear error, nothing re-trained, results.json intact.

DAMAGE_CFG = dataclasses.replace(TINY, rounds=2, seeds=2)


@pytest.fixture(scope="module")
def half_done(tmp_path_factory):
  """Seed 0 finished (its state: round 2), seed 1 stopped after round 0; and a straight run."""
  ref = experiment.run(DAMAGE_CFG, str(tmp_path_factory.mktemp("ref")), progress=False, log=_quiet)
  out = tmp_path_factory.mktemp("half")
  with pytest.raises(_Interrupt):
    experiment.run(
      DAMAGE_CFG, str(out), progress=False, log=_quiet, on_round=_stop_after("random", 1, 0)
    )
  return out, ref


def _largest_array_file(folder: str) -> str:
  files = glob.glob(os.path.join(folder, "ocdbt.process_0", "d", "*"))
  return max(files, key=os.path.getsize)


def _damage(out, how: str, seed: int) -> None:
  ckpt = out / "checkpoints" / "random"
  own = ckpt / f"seed_{seed}.state"
  (folder,) = own.iterdir()
  if how == "folder deleted":
    shutil.rmtree(own)
  elif how == "file deleted":
    os.remove(_largest_array_file(str(folder)))
  elif how == "metadata deleted":
    os.remove(folder / "_METADATA")
  elif how == "byte flipped":
    target = pathlib.Path(_largest_array_file(str(folder)))
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0xFF
    target.write_bytes(bytes(data))
  elif how in ("record's sha256 edited", "record's round edited"):
    path = str(ckpt / f"seed_{seed}.npz")
    arrays, meta = checkpoint.load(path)  # rewritten with a valid checksum of its own
    meta = {k: v for k, v in meta.items() if k != "format"}
    if how == "record's sha256 edited":
      meta["train_state_sha256"] = "0" * 64
    else:
      meta["train_state_round"] -= 1
    checkpoint.save(path, arrays, meta)
  elif how == "other run's state":
    (other,) = (ckpt / f"seed_{1 - seed}.state").iterdir()
    shutil.rmtree(folder)
    shutil.copytree(other, folder)  # under this run's round name, so only the sha256 tells
  else:
    raise AssertionError(how)


MESSAGES = {
  "folder deleted": "which is missing",
  "file deleted": "lacks 1 of its [0-9]+ files",
  "metadata deleted": "lacks 1 of its [0-9]+ files [(]_METADATA[)]",
  "byte flipped": "fails the sha256 its checkpoint .* holds for ocdbt.process_0/d/",
  # orbax names its data files by content, so another run's are mostly other names.
  "other run's state": "(lacks [0-9]+ of its [0-9]+ files|fails the sha256 its checkpoint)",
  "record's sha256 edited": "fails the sha256 of its arrays",
  "record's round edited": r"is inconsistent \(train state of round",
}


@pytest.mark.parametrize(
  "how, seed",
  [
    ("folder deleted", 0),
    ("file deleted", 1),
    ("metadata deleted", 0),
    ("byte flipped", 1),
    ("byte flipped", 0),
    ("other run's state", 1),
    ("record's sha256 edited", 1),
    ("record's round edited", 0),
  ],
)
def test_damaged_train_state_is_refused_then_recomputed_on_request(half_done, tmp_path, how, seed):
  src, ref = half_done
  out = tmp_path / "run"
  shutil.copytree(src, out)
  _damage(out, how, seed)
  results = (out / "results.json").read_bytes()
  assert not json.loads(results)["complete"] and json.loads(results)["results"]["random"][
    "seeds"
  ] == [0]
  before = sorted(p for p in glob.glob(str(out / "**"), recursive=True))
  rounds = []
  npz = out / "checkpoints" / "random" / f"seed_{seed}.npz"
  state = out / "checkpoints" / "random" / f"seed_{seed}.state"
  pattern = (
    rf"Recompute random seed {seed} with --recompute-damaged.*{MESSAGES[how]}.*"
    rf"delete '{npz}' and '{state}' to recompute that run"
  )
  with pytest.raises(checkpoint.CheckpointError, match=pattern):
    experiment.run(
      DAMAGE_CFG, str(out), progress=False, log=_quiet, on_round=lambda *a: rounds.append(a)
    )
  assert rounds == []  # nothing re-trained in the damaged state's place
  assert (out / "results.json").read_bytes() == results  # the finished run's results are kept
  assert sorted(glob.glob(str(out / "**"), recursive=True)) == before  # nothing moved or deleted
  # Resuming that one run directly refuses it as well.
  if seed == 1:
    ds = experiment.load_data(DAMAGE_CFG)
    record = json.loads((out / "config.json").read_text())
    with pytest.raises(checkpoint.CheckpointError, match=MESSAGES[how]):
      experiment.run_one(
        DAMAGE_CFG, ds, "random", 1, checkpoint=str(npz), config_id=store.config_id(record)
      )
  # On request the run is recomputed from its first round, the damaged files set aside.
  again = experiment.run(DAMAGE_CFG, str(out), recompute_damaged=True, progress=False, log=_quiet)
  assert (out / "checkpoints" / "random" / f"seed_{seed}.npz.damaged").exists()
  assert os.path.exists(str(state) + ".damaged") == (how != "folder deleted")
  _same_results(again, ref)


def test_record_without_an_orbax_state_is_refused(half_done, tmp_path):
  """A record of the older layout (the train state inside the .npz) names no orbax state."""
  src, _ = half_done
  out = tmp_path / "old"
  shutil.copytree(src, out)
  path = str(out / "checkpoints" / "random" / "seed_1.npz")
  arrays, meta = checkpoint.load(path)
  arrays["train_state"] = np.zeros(4, np.uint8)
  meta = {k: v for k, v in meta.items() if not k.startswith(("format", "train_state"))}
  checkpoint.save(path, arrays, meta)
  results = (out / "results.json").read_bytes()
  with pytest.raises(checkpoint.CheckpointError, match="names no orbax train state.*older jaxal"):
    experiment.run(DAMAGE_CFG, str(out), progress=False, log=_quiet)
  assert (out / "results.json").read_bytes() == results


def test_digest_covers_every_leaf_in_the_models_dtypes():
  ts = _template(TINY)
  dtypes = store.leaf_dtypes(ts)
  assert dtypes[0] == (".step", np.dtype(np.asarray(0).dtype))  # a fresh state's Python int
  d = store.train_state_digest(ts, dtypes)
  # The step as a trained state holds it (an int32 array) digests as the restored int does.
  assert store.train_state_digest(ts.replace(step=jax.numpy.int32(0)), dtypes) == d
  for i, leaf in enumerate(jax.tree.leaves(ts)):
    flat, tree = jax.tree.flatten(ts)
    changed = np.asarray(leaf).copy()
    changed.reshape(-1)[0] += 1
    flat[i] = int(changed) if isinstance(leaf, int) else changed
    assert store.train_state_digest(jax.tree.unflatten(tree, flat), dtypes) != d, i
  with pytest.raises(ValueError, match="leaves"):
    store.train_state_digest({"a": np.zeros(2)}, dtypes)


def test_every_byte_of_a_record_is_covered(tmp_path):
  """Any one flipped byte or truncation of a record is refused, zip headers included."""
  path = str(tmp_path / "r.npz")
  checkpoint.save(path, {"a": np.arange(5), "b": np.zeros((2, 3))}, {"round": 1})
  data = pathlib.Path(path).read_bytes()
  accepted = []
  damaged = [data[:i] + bytes([data[i] ^ 0xFF]) + data[i + 1 :] for i in range(len(data))]
  for i, bad in enumerate(damaged + [data[:n] for n in range(len(data))]):
    pathlib.Path(path).write_bytes(bad)
    try:
      checkpoint.load(path)
      accepted.append(i)
    except checkpoint.CheckpointError:
      pass
  assert accepted == []
  pathlib.Path(path).write_bytes(data)
  assert checkpoint.load(path)[1] == {"format": checkpoint.FORMAT, "round": 1}
