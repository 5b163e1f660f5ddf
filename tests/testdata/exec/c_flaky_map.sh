#!/usr/bin/env bash
# Chaos test mapper: the first run of all fails (it wins the mkdir of a
# marker directory in $C_MARKER_DIR); every later run is the word count.
set -Eeuo pipefail
if mkdir "$C_MARKER_DIR/flaky" 2>/dev/null; then
  echo "c_flaky_map: failing on purpose, the first time only" >&2
  exit 1
fi
exec "$(dirname "$0")/wc_map.sh"
