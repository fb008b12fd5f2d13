#!/bin/sh
# Sum of k^2 over this instance's slice of 1..$1 (slices are contiguous, one per instance).
n=$1
i=$PARALLELIC_INSTANCE
count=$PARALLELIC_INSTANCES
from=$(( i * n / count + 1 ))
to=$(( (i + 1) * n / count ))
sum=$(awk -v a="$from" -v b="$to" 'BEGIN { s = 0; for (k = a; k <= b; k++) s += k * k; printf "%.0f", s }')
echo "instance $i: sum of squares $from..$to = $sum"
