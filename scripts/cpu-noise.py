#!/usr/bin/env python3
"""How steady this machine's cores are: one busy loop pinned to each core, counting its iterations per 50 ms window.

    scripts/cpu-noise.py [SECONDS]      (default 30)

Prints, per core, the 1-second and 10-second windows' speed relative to the median 50-ms window, and the ratio of
the two cores' 2-second windows. On a quiet dedicated machine every figure is 1.00 ± 0.01; docs/step-time.md
("Noise") has what this VM gave and why it bounds any step-time validation on it.
"""
import os, statistics, sys, time
from multiprocessing import Process, Queue

def spin(core, seconds, out):
    os.sched_setaffinity(0, {core})
    counts, end = [], time.monotonic() + seconds
    while time.monotonic() < end:
        n, stop = 0, time.monotonic() + 0.05
        while time.monotonic() < stop:
            x = 0
            for i in range(200): x += i * i
            n += 1
        counts.append(n)
    out.put((core, counts))

def windows(r, n): return [statistics.mean(r[i:i + n]) for i in range(0, len(r) - n + 1, n)]

if __name__ == "__main__":
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 30
    cores = sorted(os.sched_getaffinity(0))[:2]
    q = Queue()
    ps = [Process(target=spin, args=(c, seconds, q)) for c in cores]
    for p in ps: p.start()
    got = dict(q.get() for _ in ps)
    for p in ps: p.join()
    med = statistics.median([x for c in cores for x in got[c]])
    rel = {c: [x / med for x in got[c]] for c in cores}
    print(f"cpu-noise: {len(cores)} cores, {seconds:.0f} s, 50-ms windows; speed ÷ the median window")
    for c in cores:
        w1, w10 = windows(rel[c], 20), windows(rel[c], 200)
        print(f"core {c}: 1-s windows {min(w1):.2f}–{max(w1):.2f}; 10-s windows " + " ".join(f"{x:.2f}" for x in w10))
    if len(cores) == 2:
        a, b = windows(rel[cores[0]], 40), windows(rel[cores[1]], 40)
        ratios = [x / y for x, y in zip(a, b)]
        print(f"core {cores[0]} ÷ core {cores[1]}, 2-s windows: {min(ratios):.2f}–{max(ratios):.2f}")
