#!/usr/bin/env bash
# Chaos test executable: says what went wrong on stderr, then exits 3.
set -Eeuo pipefail
cat > /dev/null
echo "c_exit3: the input made no sense" >&2
exit 3
