#!/usr/bin/env bash
# Chaos test executable: says goodbye on stderr, then kills itself (SIGKILL).
set -Eeuo pipefail
echo "c_kill_self: killing myself" >&2
kill -9 $$
