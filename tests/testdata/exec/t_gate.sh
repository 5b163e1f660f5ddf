#!/usr/bin/env bash
# Test executable: waits until the file named by $T_GATE exists, then cats.
set -Eeuo pipefail
while [ ! -e "$T_GATE" ]; do
    sleep 0.05
done
cat
