#!/usr/bin/env bash
# An inverted index of input/ in five MapReduce stages, written as a madoop
# user writes a pipeline. The same script runs with madoop and on a cluster;
# only the command differs:
#
#   examples/invindex/pipeline.sh                       # madoop
#   examples/invindex/pipeline.sh mapreduce-streaming   # the running cluster
#
# (or MAPREDUCE=mapreduce-streaming in the environment). The index ends up in
# output/, in three segments; output0 ... output3 hold the stages between.
set -Eeuo pipefail
MAPREDUCE=${1:-${MAPREDUCE:-madoop}}
cd "$(dirname "$0")"
rm -rf output0 output1 output2 output3 output

# Stage 0: count the documents (the combiner adds up each map task's ones).
"$MAPREDUCE" -input input -output output0 -numReduceTasks 1 \
  -mapper map0.py -combiner sum_counts.py -reducer sum_counts.py
DOC_COUNT=$(cut -f2 output0/part-00000)
# madoop's programs inherit this shell's environment; a cluster's programs
# run in the Workers' environment and get it from -cmdenv below (a flag
# madoop ignores).
export DOC_COUNT

# Stage 1: how often each term occurs in each document.
"$MAPREDUCE" -input input -output output1 \
  -mapper map1.py -combiner sum_counts.py -reducer sum_counts.py

# Stage 2: in how many documents each term occurs, and its idf.
"$MAPREDUCE" -input output1 -output output2 -cmdenv DOC_COUNT="$DOC_COUNT" \
  -mapper map2.py -reducer reduce2.py

# Stage 3: the normalization factor of each document.
"$MAPREDUCE" -input output2 -output output3 \
  -mapper map3.py -reducer reduce3.py

# Stage 4: the index, in three segments by document id (doc_id mod 3).
# (madoop looks a bare -partitioner name up on PATH only: hence the ./)
"$MAPREDUCE" -input output3 -output output -numReduceTasks 3 \
  -mapper map4.py -reducer reduce4.py -partitioner ./partition.py
