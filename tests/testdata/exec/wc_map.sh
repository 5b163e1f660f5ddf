#!/usr/bin/env bash
# Word count mapper: one "word<TAB>1" line for every word on stdin.
set -Eeuo pipefail
tr -s '[:space:]' '\n' | awk 'NF { print $0 "\t1" }'
