#!/usr/bin/env bash
# Chaos test reducer: leaves a marker in $C_MARKER_DIR, waits (at most 30 s)
# until the test creates $C_MARKER_DIR/go, then runs the word count.
set -Eeuo pipefail
touch "$C_MARKER_DIR/reduce-started-$$"
for _ in $(seq 600); do
  [[ -e "$C_MARKER_DIR/go" ]] && break
  sleep 0.05
done
exec "$(dirname "$0")/wc_reduce.sh"
