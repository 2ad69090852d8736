#!/usr/bin/env python3
"""Reads an Nsight Systems GPU trace (`nsys stats -r cuda_gpu_trace -f csv`) and says where the GPU's time
went over the captured window: how long the kernels kept the GPU busy (the union over streams), how long the
host-to-device copies kept the link busy, how much of each overlapped, and the compute stream's idle gaps by
length (many short gaps: launch-bound host; few long ones: waits on copies or on the CPU). Then the kernels
by total time, grouped by name.

  bench/nsys_timeline.py trace.csv [--top 25]
"""
import argparse
import csv
import collections
import sys


def column(header, *candidates):
    for wanted in candidates:
        for i, name in enumerate(header):
            if name.strip().lower().startswith(wanted):
                return i
    sys.exit(f"no column among {candidates} in {header}")


def union_seconds(intervals):
    total, end = 0, None
    for start, stop in sorted(intervals):
        if end is None or start > end:
            total += stop - start
            end = stop
        elif stop > end:
            total += stop - end
            end = stop
    return total / 1e9


def merged(intervals):
    out = []
    for start, stop in sorted(intervals):
        if out and start <= out[-1][1]:
            out[-1][1] = max(out[-1][1], stop)
        else:
            out.append([start, stop])
    return out


def overlap_seconds(a, b):
    a, b = merged(a), merged(b)
    i = j = 0
    total = 0
    while i < len(a) and j < len(b):
        lo, hi = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        if hi > lo:
            total += hi - lo
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return total / 1e9


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("trace")
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    with open(args.trace, newline="") as f:
        rows = list(csv.reader(line for line in f if line.strip()))
    # nsys stats may print a title line before the CSV header.
    while rows and not any(c.strip().lower().startswith("start") for c in rows[0]):
        rows.pop(0)
    if not rows:
        sys.exit("no trace rows")
    header, rows = rows[0], rows[1:]
    c_start, c_duration = column(header, "start"), column(header, "duration")
    c_stream, c_name = column(header, "strm", "stream"), column(header, "name")
    kernels, h2d, d2h = [], [], []
    by_stream = collections.defaultdict(list)
    by_name = collections.defaultdict(lambda: [0, 0])
    for row in rows:
        try:
            start, duration = int(float(row[c_start])), int(float(row[c_duration]))
        except ValueError:
            continue
        name = row[c_name]
        interval = (start, start + duration)
        if "[CUDA memcpy" in name or "memcpy" in name.lower():
            (h2d if "Host-to-Device" in name or "HtoD" in name else d2h).append(interval)
            continue
        if "[CUDA memset" in name:
            continue
        kernels.append(interval)
        by_stream[row[c_stream]].append(interval)
        short = name.split("(")[0].split("<")[0][:70]
        by_name[short][0] += duration
        by_name[short][1] += 1
    everything = kernels + h2d + d2h
    window = (max(b for _, b in everything) - min(a for a, _ in everything)) / 1e9
    busy = union_seconds(kernels)
    link = union_seconds(h2d)
    both = overlap_seconds(kernels, h2d)
    print(f"window {window:.3f} s: kernels busy {busy:.3f} s ({busy / window:.0%}), H2D copies busy {link:.3f} s "
          f"({link / window:.0%}), both at once {both:.3f} s, neither {window - busy - link + both:.3f} s; "
          f"D2H busy {union_seconds(d2h):.3f} s")
    for stream, intervals in sorted(by_stream.items(), key=lambda kv: -len(kv[1])):
        spans = merged(intervals)
        gaps = [(b[0] - a[1]) / 1e9 for a, b in zip(spans, spans[1:])]
        bins = [(0, 20e-6), (20e-6, 100e-6), (100e-6, 1e-3), (1e-3, 10e-3), (10e-3, 1e9)]
        cells = []
        for lo, hi in bins:
            chosen = [g for g in gaps if lo <= g < hi]
            cells.append(f"{len(chosen)} gaps {sum(chosen):.3f} s")
        print(f"stream {stream}: {len(intervals)} kernels, busy {union_seconds(intervals):.3f} s; idle gaps "
              f"<20us: {cells[0]}; 20-100us: {cells[1]}; 0.1-1ms: {cells[2]}; 1-10ms: {cells[3]}; >10ms: {cells[4]}")
    total = sum(v[0] for v in by_name.values())
    print(f"kernels by total time (of {total / 1e9:.3f} s):")
    for name, (ns, count) in sorted(by_name.items(), key=lambda kv: -kv[1][0])[: args.top]:
        print(f"  {ns / 1e9:8.3f} s {ns / total:6.1%} {count:7d}x {ns / count / 1e3:9.1f} us  {name}")


if __name__ == "__main__":
    main()
