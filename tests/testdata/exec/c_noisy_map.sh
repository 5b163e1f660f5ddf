#!/usr/bin/env bash
# Chaos test mapper: writes ${C_NOISE_BYTES:-10485760} bytes to stderr, then
# the word count to stdout.
set -Eeuo pipefail
head -c "${C_NOISE_BYTES:-10485760}" /dev/zero | tr '\0' 'e' >&2
echo >&2
exec "$(dirname "$0")/wc_map.sh"
