#!/usr/bin/env bash
# Word count reducer: the input is "word<TAB>count" lines sorted by word;
# print "word<TAB>total" once per word.
set -Eeuo pipefail
awk -F '\t' '
  NR > 1 && $1 != word { print word "\t" total; total = 0 }
  { word = $1; total += $2 }
  END { if (NR > 0) print word "\t" total }
'
