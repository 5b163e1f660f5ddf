#!/usr/bin/env bash
# Test executable: kills itself with the signal named in $T_SIGNAL (KILL).
set -Eeuo pipefail
echo "partial output"
kill -s "${T_SIGNAL:-KILL}" $$
