#!/usr/bin/env bash
# Word count reducer: input sorted by word; sum the counts of each word.
set -Eeuo pipefail
awk -F '\t' '
  $1 != word { if (NR > 1) print word "\t" total; word = $1; total = 0 }
  { total += $2 }
  END { if (NR > 0) print word "\t" total }
'
