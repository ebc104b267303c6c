"""The ``jaxal`` command line: ``jaxal run`` (resumable experiments) and ``jaxal report``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def _csv(text: str) -> tuple[str, ...]:
  return tuple(s.strip() for s in text.split(",") if s.strip())


# Configuration-file keys that name a Config field rather than the option.
_FIELD_ALIASES = {"num_steps": "steps", "learning_rate": "lr", "dataset_name": "dataset"}


def load_config_file(path: str) -> dict[str, object]:
  """The options in a TOML (``tomllib``) or JSON file, as a flat ``{option: value}`` dict.

  Args:
    path: ``*.toml`` or ``*.json``; keys are ``jaxal run`` options (``batch-size`` or
      ``batch_size``) or configuration fields (``num_steps``, ``learning_rate``).

  Raises:
    ValueError: the file cannot be read or parsed, or is not a flat table.
  """
  import json

  try:
    if path.lower().endswith(".toml"):
      try:
        import tomllib
      except ImportError:  # Python 3.10
        import tomli as tomllib
      with open(path, "rb") as f:
        data = tomllib.load(f)
    else:
      with open(path) as f:
        data = json.load(f)
  except (OSError, ValueError) as e:
    raise ValueError(f"configuration file {path!r} cannot be read ({type(e).__name__}: {e})") from e
  if not isinstance(data, dict):
    raise ValueError(f"configuration file {path!r} must hold a table of options, got {data!r}")
  if isinstance(data.get("run"), dict):  # a [run] table
    data = {**{k: v for k, v in data.items() if k != "run"}, **data["run"]}
  return data


def _file_defaults(parser: argparse.ArgumentParser, data: dict[str, object], path: str) -> dict:
  actions = {a.dest: a for a in parser._actions if a.dest not in ("help", "config")}
  out = {}
  for key, value in data.items():
    dest = _FIELD_ALIASES.get(key, key).replace("-", "_")
    if dest not in actions:
      raise ValueError(
        f"configuration file {path!r}: unknown option {key!r}; accepted: "
        f"{', '.join(sorted(d.replace('_', '-') for d in actions))}"
      )
    action = actions[dest]
    if dest == "strategies" and isinstance(value, list):
      value = ",".join(str(v) for v in value)
    if isinstance(action, argparse._StoreTrueAction):
      if not isinstance(value, bool):
        raise ValueError(f"configuration file {path!r}: {key!r} must be true or false")
    elif isinstance(value, str) and action.type is not None:
      try:
        value = action.type(value)
      except (TypeError, ValueError) as e:
        raise ValueError(f"configuration file {path!r}: {key!r} = {value!r}: {e}") from e
    if action.choices is not None and value not in action.choices:
      raise ValueError(
        f"configuration file {path!r}: {key!r} = {value!r} is not one of "
        f"{', '.join(map(str, action.choices))}"
      )
    out[dest] = value
  return out


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
    "--config",
    default=None,
    metavar="FILE",
    help="a TOML or JSON file of these options (keys as the options' names); options given "
    "on the command line override it",
  )
  run.add_argument(
    "--strategies",
    default=",".join(d.strategies),
    help="comma-separated strategies (see jaxal.strategies.names()), each optionally with "
    "settings as Python literals: 'bald(num_samples=50),badge(exact=True),random'",
  )
  run.add_argument(
    "--dataset",
    default=d.dataset,
    help="digits (bundled), mnist, fashion_mnist, kmnist, cifar10, cifar100, "
    "svhn_cropped, tfds:NAME[:CONFIG] for another TFDS builder (images or a feature "
    "vector), or a file: FILE.npz (x_train, y_train[, x_test, y_test]) or FILE.csv / FILE.tsv",
  )
  run.add_argument(
    "--label-column",
    default=None,
    help="the label column of a CSV/TSV dataset, by header name or 0-based index "
    "(default: the last column)",
  )
  run.add_argument(
    "--test-fraction",
    type=float,
    default=d.test_fraction,
    help="test share of a seeded, stratified split for data without a test set",
  )
  run.add_argument(
    "--model",
    default=d.model,
    help="mlp, cnn, or package.module:factory (factory(num_classes, example_x) returns a "
    "Flax module)",
  )
  run.add_argument(
    "--protocol",
    default=d.protocol,
    choices=config.PROTOCOLS,
    help="training per round: fixed (--steps steps), or the badge / distil protocol",
  )
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
  run.add_argument(
    "--recompute-damaged",
    action="store_true",
    help="recompute the runs whose checkpoints are damaged (kept as *.damaged) instead of "
    "stopping with their names",
  )
  run.add_argument("--format", default="png", help="plot formats, comma-separated: png, pdf, svg")
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
    "report.md, curves.png and curves_vs_random.png there. Several folders (settings: "
    "datasets, budgets, models) also give the pairwise-penalty matrix of Ash et al. (2020).",
  )
  rep.add_argument(
    "results_dirs", metavar="RESULTS_DIR", nargs="+", help="folders written by jaxal run"
  )
  rep.add_argument(
    "--out", default=None, help="folder for penalty.md when several folders are given"
  )
  rep.add_argument("--format", default="png", help="plot formats, comma-separated: png, pdf, svg")
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
  run_parser = parser._subparsers._group_actions[0].choices["run"]
  if args.command == "run":
    if not args.no_compile_cache:
      from jaxal._src import compile_cache

      compile_cache.enable_compilation_cache(args.compile_cache)
    if args.config is not None:
      try:
        run_parser.set_defaults(
          **_file_defaults(run_parser, load_config_file(args.config), args.config)
        )
      except ValueError as e:
        run_parser.error(str(e))
      args = parser.parse_args(argv)  # the command line overrides the file
    label_column = args.label_column
    if isinstance(label_column, str) and label_column.lstrip("-").isdigit():
      label_column = int(label_column)
    strategies = (
      config.split_specs(args.strategies)
      if isinstance(args.strategies, str)
      else tuple(args.strategies)
    )
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
      protocol=args.protocol,
      label_column=label_column,
      test_fraction=args.test_fraction,
    )
    try:
      cfg = cfg.validate()
      formats = report.check_formats(args.format)
    except (ValueError, TypeError) as e:
      run_parser.error(str(e))
    try:
      runner.run(
        cfg,
        args.out,
        data_dir=args.data_dir,
        manual_dir=args.manual_dir,
        download=not args.no_download,
        recompute_damaged=args.recompute_damaged,
        formats=formats,
        progress=not args.no_progress,
      )
    except (*expected, ValueError, TypeError) as e:
      return _fail(str(e))
    return 0
  if args.command == "report":
    try:
      if len(args.results_dirs) == 1 and args.out is None:
        report.report(args.results_dirs[0], target=args.target, formats=args.format)
      else:
        report.report_many(args.results_dirs, out=args.out, target=args.target, formats=args.format)
    except (*expected, ValueError) as e:
      return _fail(str(e))
    return 0
  parser.print_help()  # pragma: no cover - argparse rejects unknown commands
  return 2


if __name__ == "__main__":
  sys.exit(main())
