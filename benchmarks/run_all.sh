#!/usr/bin/env bash
# Runs every benchmark script in benchmarks/ at the sizes that fit the device found:
#
#   bash benchmarks/run_all.sh          # cpu presets, or gpu presets when JAX sees a GPU
#   bash benchmarks/run_all.sh quick    # every script's smoke-test size
#   bash benchmarks/run_all.sh gpu      # force a mode (cpu, gpu, quick)
#
# Scripts are discovered (benchmarks/*.py, not _*.py); each says its arguments per mode with
# `# run_all[MODE]: ARGS` comment lines, or gets defaults (benchmarks/_common.py, `preset`).
# Each writes benchmarks/results/<name>.md and .json; results/run_all.md lists what ran, with
# the machine, versions and load. Set PYTHON to choose the interpreter.
set -u
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
py="${PYTHON:-python}"
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}"
mode="${1:-}"
if [ -z "$mode" ]; then
  backend="$("$py" -c 'import jax; print(jax.default_backend())' 2>/dev/null || echo cpu)"
  if [ "$backend" = "gpu" ] || [ "$backend" = "cuda" ] || [ "$backend" = "rocm" ]; then
    mode=gpu
  else
    mode=cpu
  fi
fi
case "$mode" in cpu | gpu | quick) ;; *) echo "mode must be cpu, gpu or quick, got $mode" >&2; exit 2 ;; esac
# Smoke tests write <name>_quick.* pages (_common.write), also for scripts whose quick preset
# is one of their recorded sizes: a quick run never overwrites a recorded result.
if [ "$mode" = quick ]; then export JAXAL_BENCHMARK_QUICK=1; fi
log="$(mktemp)"
status=0
cd "$root" || exit 1
for script in "$here"/*.py; do
  name="$(basename "$script" .py)"
  case "$name" in _*) continue ;; esac
  args="$("$py" "$here/_common.py" preset "$script" "$mode")" || { status=1; continue; }
  if [ "$args" = "SKIP" ]; then
    printf '%s\t\tskipped\t0\n' "$name" >>"$log"
    continue
  fi
  echo "== $name $args"
  start=$(date +%s)
  # shellcheck disable=SC2086  # the preset is a word list
  "$py" "$script" $args
  rc=$?
  [ $rc -eq 0 ] || status=1
  printf '%s\t%s\t%s\t%s\n' "$name" "$args" "$rc" "$(($(date +%s) - start))" >>"$log"
done
"$py" "$here/_common.py" summary "$mode" "$log"
rm -f "$log"
exit $status
