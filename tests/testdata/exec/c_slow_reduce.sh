#!/usr/bin/env bash
# Chaos test reducer: sleeps 0.05 to 0.19 s, then runs the word count.
set -Eeuo pipefail
sleep "$(printf '0.%02d' $((RANDOM % 15 + 5)))"
exec "$(dirname "$0")/wc_reduce.sh"
