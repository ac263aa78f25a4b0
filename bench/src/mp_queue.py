"""mp_queue.py N — items/s of an N-item pipeline between two processes
through multiprocessing.Queue(64): a producer process puts 0..N-1, a
consumer process takes them; timed from the consumer's first take to its
last (the peer of bench_peers pipe)."""
import multiprocessing as mp
import sys
import time


def produce(q, n):
    for i in range(n):
        q.put(i)


def consume(q, n, out):
    q.get()
    t0 = time.perf_counter()
    for _ in range(n - 1):
        q.get()
    out.put(time.perf_counter() - t0)


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100000
    q, out = mp.Queue(64), mp.Queue()
    c = mp.Process(target=consume, args=(q, n, out))
    p = mp.Process(target=produce, args=(q, n))
    c.start()
    p.start()
    took = out.get()
    p.join()
    c.join()
    print("%.0f" % ((n - 1) / took))


if __name__ == "__main__":
    main()
