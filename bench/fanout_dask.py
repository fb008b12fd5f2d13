"""Dask distributed, the peer of bench/fanout.ts: a LocalCluster of 2 worker
processes of one thread each, every task running PROGRAM as a subprocess.

    /usr/bin/python3 bench/fanout_dask.py PROGRAM [ARG...]

Prints {"ready": true} once the cluster is up; then, for each line N read
from stdin, runs N tasks and prints {"wall": s, "cpu": s}: the wall time from
the first submit to the last result, and the CPU time of the client (with
its scheduler), the nannies, the workers and the subprocesses they ran.
"""
import json
import logging
import subprocess
import sys
import time

import psutil
from distributed import Client, LocalCluster


def run(index, argv):
    subprocess.run(argv, check=True)
    return index


def tree_cpu():
    """CPU seconds of this process, its descendants and their waited-for children."""
    total = 0.0
    me = psutil.Process()
    for p in [me, *me.children(recursive=True)]:
        try:
            t = p.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += t.user + t.system + t.children_user + t.children_system
    return total


def main():
    argv = sys.argv[1:]
    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None, silence_logs=logging.ERROR
    ) as cluster, Client(cluster) as client:
        print(json.dumps({"ready": True}), flush=True)
        for line in sys.stdin:
            n = int(line)
            cpu0 = tree_cpu()
            t0 = time.perf_counter()
            futures = client.map(run, range(n), argv=argv, pure=False)
            client.gather(futures)
            wall = time.perf_counter() - t0
            del futures
            print(json.dumps({"wall": wall, "cpu": tree_cpu() - cpu0}), flush=True)


if __name__ == "__main__":
    main()
