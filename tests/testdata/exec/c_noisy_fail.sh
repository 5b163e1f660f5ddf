#!/usr/bin/env bash
# Chaos test mapper: writes ${C_NOISE_BYTES:-10485760} bytes to stderr, ends
# stderr with its reason, and exits 1.
set -Eeuo pipefail
cat > /dev/null
head -c "${C_NOISE_BYTES:-10485760}" /dev/zero | tr '\0' 'e' >&2
echo >&2
echo "c_noisy_fail: the real reason is at the end" >&2
exit 1
