#!/usr/bin/env bash
# Test executable: copies the first line of stdin and exits 0 at once.
set -Eeuo pipefail
head -n 1
