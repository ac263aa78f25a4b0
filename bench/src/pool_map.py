"""pool_map.py — the peer of bench_pmap: multiprocessing.Pool(2).map
throughput in items/s, the median of RUNS maps of N int items after one
warm-up map (the pool is started before timing, as distc's workers are).
  batch1: f(x) = x, chunksize=1
  auto:   f(x) = x + 1, Pool.map's default chunks
usage: python3 pool_map.py batch1|auto N [RUNS]"""
import multiprocessing
import statistics
import sys
import time


def noop(x):
    return x


def inc(x):
    return x + 1


def main():
    mode, n = sys.argv[1], int(sys.argv[2])
    runs = int(sys.argv[3]) if len(sys.argv) > 3 else 5
    fn, kw = (noop, {"chunksize": 1}) if mode == "batch1" else (inc, {})
    items = list(range(n))
    rates = []
    with multiprocessing.Pool(2) as pool:
        for r in range(-1, runs):
            t0 = time.perf_counter()
            out = pool.map(fn, items, **kw)
            t = time.perf_counter() - t0
            if len(out) != n or out[-1] != fn(n - 1):
                sys.exit("pool_map: wrong results")
            if r >= 0:
                rates.append(n / t)
    print(f"{statistics.median(rates):.0f}")


if __name__ == "__main__":
    main()
