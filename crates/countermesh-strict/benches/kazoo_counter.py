#!/usr/bin/env python3
"""Baseline for the strict-mode benchmark: kazoo's Counter recipe.

Usage: kazoo_counter.py HOSTS PATH THREADS OPS_PER_THREAD

Each thread increments the same kazoo Counter (a read, then a versioned set_data,
retried on BadVersion) OPS_PER_THREAD times through one shared KazooClient. Prints one
JSON line: {"ops": total, "secs": elapsed, "value": final counter value}.
"""
import json
import sys
import threading
import time

from kazoo.client import KazooClient


def main():
    hosts, path, threads, per_thread = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    zk = KazooClient(hosts=hosts, timeout=10.0)
    zk.start(timeout=30)
    counter = zk.Counter(path, default=0)
    counter.value  # creates the znode before the clock starts

    def work():
        c = zk.Counter(path, default=0)
        for _ in range(per_thread):
            c += 1

    workers = [threading.Thread(target=work) for _ in range(threads)]
    start = time.monotonic()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    secs = time.monotonic() - start
    print(json.dumps({"ops": threads * per_thread, "secs": secs, "value": counter.value}))
    zk.stop()
    zk.close()


if __name__ == "__main__":
    main()
