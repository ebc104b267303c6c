"""`jaxal run` end to end at a tiny size."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from jaxal import datasets
from jaxal import experiment
from jaxal._src import cli


def test_jaxal_run_end_to_end(tmp_path, capsys):
  out = tmp_path / "res"
  rc = cli.main(
    [
      "run",
      "--strategies",
      "random,entropy,bald",
      "--rounds",
      "2",
      "--budget",
      "5",
      "--initial",
      "10",
      "--seeds",
      "2",
      "--steps",
      "20",
      "--out",
      str(out),
      "--no-progress",
    ]
  )
  assert rc == 0
  printed = capsys.readouterr().out
  assert "| random (n=2) | entropy (n=2) | bald (n=2) |" in printed
  assert "| 20 |" in printed and "AUC" in printed
  res = json.loads((out / "results.json").read_text())
  assert res["labels"] == [10, 15, 20]
  assert set(res["summary"]) == {"random", "entropy", "bald"}
  acc = res["results"]["entropy"]["accuracy"]
  assert len(acc) == 2 and all(len(a) == 3 for a in acc)
  assert all(0.0 <= v <= 1.0 for a in acc for v in a)
  assert len(res["results"]["bald"]["acquire_seconds"][0]) == 2
  assert len(res["results"]["bald"]["train_seconds"][0]) == 3
  assert res["results"]["random"]["labels"] == [[10, 15, 20], [10, 15, 20]]
  assert [len(h) for h in res["results"]["random"]["labeled_indices"][1]] == [10, 5, 5]
  assert res["complete"] and res["pool_size"] == 1347
  png = (out / "curves.png").read_bytes()
  assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000


def test_console_script_help():
  proc = subprocess.run(
    [sys.executable, "-m", "jaxal._src.cli", "run", "--help"],
    capture_output=True,
    text=True,
    check=True,
  )
  assert "--strategies" in proc.stdout and "--seeds" in proc.stdout


@pytest.mark.parametrize(
  "args, msg",
  [
    (["--strategies", "random,nope"], "unknown strategy 'nope'; valid names are"),
    (["--dataset", "imagenet"], "unknown dataset 'imagenet'"),
    (["--budget", "0"], "budget must be a positive int"),
    (["--seeds", "0"], "seeds must be a positive int"),
  ],
)
def test_bad_arguments_give_clear_errors(args, msg, tmp_path, capsys):
  with pytest.raises(SystemExit) as e:
    cli.main(["run", *args, "--out", str(tmp_path)])
  assert e.value.code == 2
  assert msg in capsys.readouterr().err


def test_pool_too_small_is_refused(tmp_path, capsys):
  rc = cli.main(
    [
      "run",
      "--rounds",
      "100",
      "--budget",
      "100",
      "--seeds",
      "1",
      "--out",
      str(tmp_path),
      "--no-progress",
    ]
  )
  assert rc == 1
  assert "larger than the pool of 1347 points" in capsys.readouterr().err
  assert not os.path.exists(tmp_path / "results.json")


def test_unwritable_output_folder(tmp_path, capsys):
  (tmp_path / "file").write_text("x")
  rc = cli.main(
    [
      "run",
      "--seeds",
      "1",
      "--rounds",
      "1",
      "--out",
      str(tmp_path / "file" / "out"),
      "--no-progress",
    ]
  )
  assert rc == 1
  assert "cannot be created or written" in capsys.readouterr().err


def test_tfds_dataset_end_to_end_with_mock_data(tmp_path, capsys):
  import tensorflow_datasets as tfds

  out = tmp_path / "res"
  with tfds.testing.mock_data(num_examples=40):
    rc = cli.main(
      [
        "run",
        "--dataset",
        "mnist",
        "--strategies",
        "random",
        "--rounds",
        "1",
        "--budget",
        "5",
        "--initial",
        "10",
        "--seeds",
        "1",
        "--steps",
        "20",
        "--hidden",
        "16",
        "--data-dir",
        str(tmp_path / "tfds"),
        "--out",
        str(out),
        "--no-progress",
      ]
    )
  assert rc == 0
  res = json.loads((out / "results.json").read_text())
  assert res["config"]["dataset"] == "mnist" and res["config"]["hidden"] == 16
  assert res["pool_size"] == 40 and res["labels"] == [10, 15]
  assert "Test accuracy on mnist" in capsys.readouterr().out


def test_pool_subsample_is_one_fixed_subset():
  cfg = experiment.Config(pool_subsample=300)
  ds = experiment.load_data(cfg)
  full = datasets.load_digits()
  assert ds.x_train.shape == (300, 8, 8) and ds.x_test.shape == full.x_test.shape
  again = experiment.load_data(
    experiment.Config(pool_subsample=300, seeds=1, strategies=("random",))
  )
  np.testing.assert_array_equal(ds.x_train, again.x_train)  # the same for every strategy and seed
  rows = {r.tobytes() for r in full.x_train}
  assert all(r.tobytes() in rows for r in ds.x_train)
  assert experiment.load_data(experiment.Config(pool_subsample=5000)).x_train.shape == (1347, 8, 8)
  with pytest.raises(ValueError, match="larger than the pool of 300 points"):
    experiment.run_one(dataclasses.replace(cfg, rounds=100), ds, "random", 0)


def test_unprepared_dataset_without_download(tmp_path, capsys):
  rc = cli.main(
    [
      "run",
      "--dataset",
      "fashion_mnist",
      "--no-download",
      "--data-dir",
      str(tmp_path / "tfds"),
      "--out",
      str(tmp_path / "res"),
      "--no-progress",
    ]
  )
  assert rc == 1
  err = capsys.readouterr().err
  assert "'fashion_mnist' is not prepared" in err and "--manual-dir FOLDER" in err
  assert not (tmp_path / "res").exists()  # nothing created before the data is there


def test_report_command(tmp_path, capsys):
  out = tmp_path / "res"
  assert (
    cli.main(
      [
        "run",
        "--strategies",
        "random,entropy",
        "--rounds",
        "1",
        "--budget",
        "5",
        "--initial",
        "10",
        "--seeds",
        "1",
        "--steps",
        "20",
        "--out",
        str(out),
        "--no-progress",
      ]
    )
    == 0
  )
  capsys.readouterr()
  assert cli.main(["report", str(out), "--target", "0.2"]) == 0
  printed = capsys.readouterr().out
  assert "labels to reach 0.200" in printed and (out / "report.md").exists()
  assert (out / "curves_vs_random.png").exists()
  assert cli.main(["report", str(tmp_path / "nothing")]) == 1
  assert "no results.json" in capsys.readouterr().err


# ---------------------------------------------------------------------------
# One's own files, a configuration file, strategy settings, validation before writing.

TINY = ["--rounds", "1", "--budget", "4", "--initial", "6", "--steps", "5", "--hidden", "8"]


def _blobs(n: int = 60):
  rng = np.random.default_rng(0)
  y = np.arange(n) % 2
  return rng.normal(size=(n, 4)) + 2.0 * y[:, None], y


def _write_csv(path, rows=None):
  x, y = _blobs()
  lines = ["a,b,c,d,kind"] + [
    ",".join(f"{v:.4f}" for v in xi) + f",{'ab'[yi]}" for xi, yi in zip(x, y)
  ]
  path.write_text("\n".join(rows if rows is not None else lines) + "\n")
  return path


def test_own_csv_and_npz_with_a_config_file_then_report_many(tmp_path, capsys):
  csv_path = _write_csv(tmp_path / "my.csv")
  (tmp_path / "run.toml").write_text(
    'strategies = ["random", "bald(num_samples=3)"]\nseeds = 1\nbatch-size = 8\n'
    'label-column = "kind"\nrounds = 5\n'
  )
  out_csv = tmp_path / "csv"
  args = ["run", "--config", str(tmp_path / "run.toml"), "--dataset", str(csv_path), *TINY]
  rc = cli.main([*args, "--format", "png,svg", "--out", str(out_csv), "--no-progress"])
  assert rc == 0
  res = json.loads((out_csv / "results.json").read_text())
  cfg = res["config"]
  assert cfg["rounds"] == 1 and cfg["batch_size"] == 8 and cfg["label_column"] == "kind"
  assert list(res["results"]) == ["random", "bald(num_samples=3)"] and res["pool_size"] == 48
  assert (out_csv / "curves.svg").exists() and (out_csv / "curves.png").exists()
  x, y = _blobs()
  np.savez(tmp_path / "my.npz", x_train=x[:48], y_train=y[:48], x_test=x[48:], y_test=y[48:])
  out_npz = tmp_path / "npz"
  npz_args = ["run", "--dataset", str(tmp_path / "my.npz"), "--strategies", "random,margin"]
  rc = cli.main([*npz_args, *TINY, "--seeds", "1", "--out", str(out_npz), "--no-progress"])
  assert rc == 0
  assert json.loads((out_npz / "results.json").read_text())["pool_size"] == 48
  capsys.readouterr()
  rc = cli.main(["report", str(out_csv), str(out_npz), "--out", str(tmp_path / "all")])
  assert rc == 0
  md = (tmp_path / "all" / "penalty.md").read_text()
  assert "| row beats column | random | bald(num_samples=3) | margin |" in md
  assert "n=1, no interval" in (out_csv / "report.md").read_text()


@pytest.mark.parametrize(
  "extra, code, message",
  [
    (["--lr", "inf"], 2, "learning_rate must be a finite number"),
    (["--initial", "2000"], 1, "larger than the pool of 1347"),
    (["--pool-subsample", "30"], 1, "larger than the pool of 30"),
    (["--strategies", "bald(num_sample=3)"], 2, "no setting 'num_sample'"),
    (["--protocol", "nope"], 2, "invalid choice"),
    (["--dataset", "{tmp}/missing.npz"], 1, "does not exist"),
    (["--dataset", "{tmp}/bad.npz"], 1, "lacks x_train"),
    (["--dataset", "{tmp}/my.csv", "--label-column", "nope"], 1, "no label column 'nope'"),
    (["--dataset", "{tmp}/text.csv"], 1, "column 'a' (row 3) holds 'x'"),
    (["--config", "{tmp}/bad.toml"], 2, "unknown option 'budgett'"),
  ],
)
def test_bad_input_is_refused_before_anything_is_written(extra, code, message, tmp_path, capsys):
  _write_csv(tmp_path / "my.csv")
  _write_csv(tmp_path / "text.csv", ["a,b,kind", "1,2,x", "x,3,y", "4,5,x"])
  np.savez(tmp_path / "bad.npz", x=np.zeros((4, 2)), y_train=np.zeros(4))
  (tmp_path / "bad.toml").write_text("budgett = 3\n")
  out = tmp_path / "never"
  argv = ["run", *[a.format(tmp=tmp_path) for a in extra], "--out", str(out), "--no-progress"]
  if code == 2:
    with pytest.raises(SystemExit) as e:
      cli.main(argv)
    assert e.value.code == 2
  else:
    assert cli.main(argv) == 1
  assert message in capsys.readouterr().err
  assert not out.exists()
