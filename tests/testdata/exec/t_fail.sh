#!/usr/bin/env bash
# Test executable: reads nothing, complains on stderr, exits with status 3.
set -Eeuo pipefail
echo "t_fail: the first complaint" >&2
echo "t_fail: the last complaint" >&2
exit 3
