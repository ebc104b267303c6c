"""The ``jaxal`` command line: ``jaxal run`` (resumable experiments) and ``jaxal report``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def _csv(text: str) -> tuple[str, ...]:
  return tuple(s.strip() for s in text.split(",") if s.strip())


def build_parser() -> argparse.ArgumentParser:
  """The ``jaxal`` parser: ``run`` (defaults from :class:`Config`) and ``report``."""
  from jaxal._src.experiment import config

  d = config.Config()
  fmt = argparse.ArgumentDefaultsHelpFormatter
  parser = argparse.ArgumentParser(prog="jaxal", description="Active learning in JAX.")
  sub = parser.add_subparsers(dest="command")
  run = sub.add_parser(
    "run",
    formatter_class=fmt,
    help="run (or resume) an active-learning experiment and plot learning curves",
    description="Runs strategies × seeds × rounds and writes results.json and curves.png to "
    "--out. Every round is checkpointed: run the same command again after an interruption "
    "and it continues from the last completed round.",
  )
  run.add_argument(
    "--strategies",
    type=_csv,
    default=",".join(d.strategies),
    help="comma-separated strategy names (see jaxal.strategies.names())",
  )
  run.add_argument(
    "--dataset",
    default=d.dataset,
    help="digits (bundled), mnist, fashion_mnist, kmnist, cifar10, cifar100, "
    "svhn_cropped, or tfds:NAME for another TFDS image builder",
  )
  run.add_argument("--model", default=d.model, help="mlp or cnn")
  run.add_argument("--rounds", type=int, default=d.rounds, help="acquisition rounds")
  run.add_argument("--budget", type=int, default=d.budget, help="points acquired per round")
  run.add_argument("--initial", type=int, default=d.initial, help="initial random labeled points")
  run.add_argument("--seeds", type=int, default=d.seeds, help="number of seeds (0..seeds-1)")
  run.add_argument("--steps", type=int, default=d.num_steps, help="training steps per round")
  run.add_argument("--batch-size", type=int, default=d.batch_size, help="training minibatch size")
  run.add_argument("--lr", type=float, default=d.learning_rate, help="Adam learning rate")
  run.add_argument(
    "--hidden", type=int, default=d.hidden, help="hidden units (mlp) or dense units (cnn)"
  )
  run.add_argument(
    "--retrain",
    default=d.retrain,
    choices=("scratch", "warm"),
    help="re-initialise the model each round, or warm-start",
  )
  run.add_argument(
    "--pool-subsample",
    type=int,
    default=d.pool_subsample,
    help="use this many training points as the pool (0: all), the same for every strategy and seed",
  )
  run.add_argument(
    "--data-dir",
    default=None,
    help="where TFDS datasets are prepared (default: $TFDS_DATA_DIR or ~/tensorflow_datasets)",
  )
  run.add_argument(
    "--manual-dir",
    default=None,
    help="folder with the dataset's original files, used instead of downloading",
  )
  run.add_argument(
    "--no-download",
    action="store_true",
    help="never download: fail at once when the dataset is not prepared",
  )
  run.add_argument("--out", default="jaxal-results", help="output folder")
  run.add_argument("--no-progress", action="store_true", help="hide the progress bar")
  run.add_argument(
    "--compile-cache",
    metavar="DIR",
    default=None,
    help="JAX's persistent compilation cache folder (default: $JAXAL_COMPILATION_CACHE, "
    "else $XDG_CACHE_HOME/jaxal/jax)",
  )
  run.add_argument(
    "--no-compile-cache", action="store_true", help="compile afresh: no persistent cache"
  )
  rep = sub.add_parser(
    "report",
    formatter_class=fmt,
    help="Markdown table and learning-curve plots of an experiment folder",
    description="Reads RESULTS_DIR/results.json (finished or running experiment) and writes "
    "report.md, curves.png and curves_vs_random.png there.",
  )
  rep.add_argument("results_dir", metavar="RESULTS_DIR", help="a folder written by jaxal run")
  rep.add_argument(
    "--target",
    type=float,
    default=None,
    help="accuracy for 'labels to reach' (default: random's final mean accuracy)",
  )
  return parser


def _fail(message: str) -> int:
  print(f"jaxal: error: {message}", file=sys.stderr)
  return 1


def main(argv: Sequence[str] | None = None) -> int:
  """Runs ``jaxal`` (the console script); returns the exit status.

  Args:
    argv: the arguments after the program name (None: ``sys.argv[1:]``); none
      at all means ``run`` with every default.

  Returns:
    0 on success, 1 when the experiment or report fails with a message for
    the user, 2 for a usage error (bad arguments exit through argparse with 2).
  """
  argv = list(sys.argv[1:] if argv is None else argv)
  if not argv:
    argv = ["run"]
  parser = build_parser()
  args = parser.parse_args(argv)
  if args.command is None:
    parser.print_help()
    return 2
  from jaxal._src import data
  from jaxal._src.experiment import checkpoint
  from jaxal._src.experiment import config
  from jaxal._src.experiment import report
  from jaxal._src.experiment import runner

  # Errors with a message meant for the user; anything else keeps its traceback.
  expected = (
    config.ExperimentError,
    checkpoint.CheckpointError,
    data.DatasetUnavailableError,
    PermissionError,
    FileNotFoundError,
    ImportError,
  )
  if args.command == "run":
    if not args.no_compile_cache:
      from jaxal._src import compile_cache

      compile_cache.enable_compilation_cache(args.compile_cache)
    strategies = args.strategies if isinstance(args.strategies, tuple) else _csv(args.strategies)
    cfg = config.Config(
      dataset=args.dataset,
      strategies=strategies,
      rounds=args.rounds,
      budget=args.budget,
      initial=args.initial,
      seeds=args.seeds,
      model=args.model,
      num_steps=args.steps,
      batch_size=args.batch_size,
      learning_rate=args.lr,
      hidden=args.hidden,
      retrain=args.retrain,
      pool_subsample=args.pool_subsample,
    )
    try:
      cfg = cfg.validate()
    except (ValueError, TypeError) as e:
      parser.error(str(e))
    try:
      runner.run(
        cfg,
        args.out,
        data_dir=args.data_dir,
        manual_dir=args.manual_dir,
        download=not args.no_download,
        progress=not args.no_progress,
      )
    except expected as e:
      return _fail(str(e))
    return 0
  if args.command == "report":
    try:
      report.report(args.results_dir, target=args.target)
    except (*expected, ValueError) as e:
      return _fail(str(e))
    return 0
  parser.print_help()  # pragma: no cover - argparse rejects unknown commands
  return 2


if __name__ == "__main__":
  sys.exit(main())
