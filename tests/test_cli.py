"""`jaxal run` end to end at a tiny size."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from jaxal._src import cli


def test_jaxal_run_end_to_end(tmp_path, capsys):
  out = tmp_path / "res"
  rc = cli.main(["run", "--strategies", "random,entropy,bald", "--rounds", "2", "--budget", "5",
                 "--initial", "10", "--seeds", "2", "--steps", "20", "--out", str(out), "--no-progress"])
  assert rc == 0
  printed = capsys.readouterr().out
  assert "| labels | random | entropy | bald |" in printed
  assert "| 20 |" in printed and "AUC" in printed
  res = json.loads((out / "results.json").read_text())
  assert res["labels"] == [10, 15, 20]
  assert set(res["summary"]) == {"random", "entropy", "bald"}
  acc = res["results"]["entropy"]["accuracy"]
  assert len(acc) == 2 and all(len(a) == 3 for a in acc)
  assert all(0.0 <= v <= 1.0 for a in acc for v in a)
  assert len(res["results"]["bald"]["acquire_seconds"][0]) == 2
  png = (out / "curves.png").read_bytes()
  assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000


def test_console_script_help():
  proc = subprocess.run([sys.executable, "-m", "jaxal._src.cli", "run", "--help"],
                        capture_output=True, text=True, check=True)
  assert "--strategies" in proc.stdout and "--seeds" in proc.stdout


@pytest.mark.parametrize("args, msg", [
    (["--strategies", "random,nope"], "unknown strategy 'nope'; valid names are"),
    (["--dataset", "imagenet"], "unknown dataset 'imagenet'"),
    (["--budget", "0"], "budget must be positive"),
    (["--seeds", "0"], "seeds must be positive"),
])
def test_bad_arguments_give_clear_errors(args, msg, tmp_path, capsys):
  with pytest.raises(SystemExit) as e:
    cli.main(["run", *args, "--out", str(tmp_path)])
  assert e.value.code == 2
  assert msg in capsys.readouterr().err


def test_pool_too_small_is_refused(tmp_path):
  with pytest.raises(ValueError, match="larger than the pool of 1347 points"):
    cli.main(["run", "--rounds", "100", "--budget", "100", "--seeds", "1", "--out", str(tmp_path),
              "--no-progress"])
  assert not os.path.exists(tmp_path / "results.json")
