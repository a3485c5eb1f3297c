#!/usr/bin/env bash
# Wall times of one experiment on the three engines, and a check that they store the same result.
#
#   scripts/time_engines.sh [--profile cpu] [--experiment fang_independent_runs] [--jobs 2]
#
# Runs `polcore run EXPERIMENT --profile P` serially, with `--jobs N` (joblib processes) and with
# `--dask local` (a LocalCluster of N workers started by the command), each into a fresh
# POLCORE_RESULTS directory, checks that the three stored results have identical claims and
# arrays (bitwise; timings live in the data, not compared), and prints the three wall times.
# Run it on an idle machine: the times are only comparable when nothing else competes for cores.
set -euo pipefail

profile=cpu
experiment=fang_independent_runs
jobs=2
while [[ $# -gt 0 ]]; do
    case $1 in
        --profile) profile=$2; shift 2 ;;
        --experiment) experiment=$2; shift 2 ;;
        --jobs) jobs=$2; shift 2 ;;
        *) echo "usage: $0 [--profile P] [--experiment NAME] [--jobs N]" >&2; exit 2 ;;
    esac
done

cd "$(dirname "$0")/.."
py=${PYTHON:-.venv/bin/python}
[[ $py = /* ]] || py=$PWD/$py  # absolute, symlink kept (a venv's python is a link to the base one)
work=$(mktemp -d /tmp/polcore-engines.XXXXXX)
trap 'rm -rf "$work"' EXIT
# the three runs (and their workers) import one copy of polcore, taken now: an edit to the tree
# while they run would otherwise give the workers other code than the client (and stop the run)
mkdir -p "$work/src" && cp -r polcore "$work/src/" && find "$work/src" -name __pycache__ -prune -exec rm -rf {} +
export PYTHONPATH="$work/src${PYTHONPATH:+:$PYTHONPATH}"

declare -A seconds
for engine in serial jobs dask; do
    case $engine in
        serial) args=() ;;
        jobs) args=(--jobs "$jobs") ;;
        dask) args=(--dask local --jobs "$jobs") ;;
    esac
    echo "==> $experiment at profile $profile: $engine ${args[*]:-}" >&2
    start=$EPOCHREALTIME
    # run from $work: `python -m` puts the working directory first on sys.path, ahead of the copy
    (cd "$work" && POLCORE_RESULTS="$work/$engine" "$py" -m polcore run "$experiment" --profile "$profile" \
        "${args[@]}" >&2)
    end=$EPOCHREALTIME
    seconds[$engine]=$(awk "BEGIN{printf \"%.1f\", $end - $start}")
done

"$py" - "$work" "$profile" "$experiment" <<'EOF'
import json
import sys
from pathlib import Path

import numpy as np

work, profile, experiment = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
stored = {}
for engine in ("serial", "jobs", "dask"):
    base = work / engine / profile / experiment
    claims = json.loads(base.with_suffix(".json").read_text())["claims"]
    with np.load(base.with_suffix(".npz"), allow_pickle=False) as npz:
        arrays = {k: (npz[k].dtype.str, npz[k].shape, npz[k].tobytes()) for k in npz.files}
    stored[engine] = (claims, arrays)
serial = stored["serial"]
for engine in ("jobs", "dask"):
    if stored[engine][0] != serial[0]:
        sys.exit(f"{engine}: claims differ from the serial run's")
    if stored[engine][1] != serial[1]:
        differ = sorted(k for k in set(serial[1]) | set(stored[engine][1])
                        if serial[1].get(k) != stored[engine][1].get(k))
        sys.exit(f"{engine}: arrays differ from the serial run's: {', '.join(differ)}")
print(f"identical claims and {len(serial[1])} arrays across serial, --jobs and --dask local")
EOF

echo "$experiment at profile $profile, wall times (whole command, start-up included):"
echo "  serial:            ${seconds[serial]} s"
echo "  --jobs $jobs:           ${seconds[jobs]} s"
echo "  --dask local ($jobs w): ${seconds[dask]} s"
