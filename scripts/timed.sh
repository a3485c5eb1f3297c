#!/usr/bin/env bash
# Run a command and print its wall time: `scripts/timed.sh LABEL CMD...` (used by the Makefile).
set -u
label=$1
shift
start=$EPOCHREALTIME
"$@"
rc=$?
end=$EPOCHREALTIME
printf '==> %s: %.1f s (exit %d)\n' "$label" "$(awk "BEGIN{print $end - $start}")" "$rc"
exit "$rc"
