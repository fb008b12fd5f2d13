#!/bin/sh
# Adds up every instance's counts ($PARALLELIC_WORKSPACE/<index>/counts.txt).
set -e
cat "$PARALLELIC_WORKSPACE"/*/counts.txt \
  | awk '{ n[$2] += $1 } END { for (w in n) print n[w], w }' | sort -rn > "$PARALLELIC_OUTPUT/total.txt"
head -5 "$PARALLELIC_OUTPUT/total.txt"
