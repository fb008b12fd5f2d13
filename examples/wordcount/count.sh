#!/bin/sh
# Instance N counts the words of the N-th file of the corpus.
set -e
file=$(ls "$PARALLELIC_DATA_CORPUS" | sort | sed -n "$((PARALLELIC_INSTANCE + 1))p")
tr -cs 'A-Za-z' '\n' < "$PARALLELIC_DATA_CORPUS/$file" | tr 'A-Z' 'a-z' | grep . | sort | uniq -c \
  > "$PARALLELIC_OUTPUT/counts.txt"
echo "$file: $(wc -l < "$PARALLELIC_OUTPUT/counts.txt") distinct words"
