#!/usr/bin/env bash
# Word count mapper: print "word<TAB>1" for every word on stdin.
# A word is a run of ASCII letters and digits, lower-cased: the same words
# as wc_map.py finds.
set -Eeuo pipefail
export LC_ALL=C  # bytes: ASCII letters and digits only
tr -cs '[:alnum:]' '\n' | tr '[:upper:]' '[:lower:]' \
  | awk 'NF { print $0 "\t1" }'
