"""Ingestion: speed against a plain dpkt loop and nfstream, --jobs 1 vs 2, peak memory per million packets.

    python benchmarks/ingest.py [--packets 1000000] [--real DIR] [--skip-nfstream] [--repeat 2]
                                [--jobs-packets 2000000] [--jobs-files 8] [--jobs-large 32x8000000]
                                [--memory-packets 2000000]
                                [--only readers,jobs,memory]

readers: (a) the real Ethernet pcap captures of DIR (default ../shared/data/ndpi/pcap) concatenated
    into one temporary capture; (b) a synthetic Ethernet/IPv4 TCP+UDP capture of --packets packets.
    Prints packets/s of each reader and the ratios to the dpkt loop. Every reader keeps the first 10
    packet sizes per biflow, so they do comparable work.
jobs: read_pcaps over a folder of --jobs-files synthetic captures (--jobs-packets in all) with
    jobs=1, jobs=2 (this process + one worker, its start included; forked on Linux) and jobs=2
    with a spawned worker (what a parent running threads gets): packets/s (best wall of --repeat),
    the ratio, the CPU seconds of each process and the CPU overhead over jobs=1, beside the
    machine's load. On a shared machine the measured ratio says little; the busier process's CPU
    time estimates the wall time on idle cores. --jobs-large FILESxPACKETS adds a larger folder.
    Where the CPU time goes, part by part: benchmarks/ingest_profile.py.
compare (--only compare --compare-root OLD): every capture of DIR, the shipped nDPI captures and
    ../shared/data/bad through the reader in OLD/trafficgen (an earlier commit) and through this one
    with several window sizes; prints the number of differing results (columns, dtypes, meta,
    warnings, errors).
memory: peak RSS of read_pcap on one synthetic capture of --memory-packets packets, in a fresh
    interpreter (a grandchild: ru_maxrss survives exec), and of the interpreter with the reader
    imported, so the per-million-packet figure is the reader's own.

Synthetic captures come from tests/data/flows/synthetic_capture.py (dpkt templates stamped with
numpy: flows of 2..40 packets, interleaved, payloads 1..1400 bytes).
"""
from __future__ import annotations

import argparse
import os
import resource
import struct
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

N_FIRST = 10
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # tests.data.flows.synthetic_capture


def dpkt_loop(path: str) -> int:
    """The baseline: dpkt.pcap.Reader + dpkt.ethernet.Ethernet + a per-packet dict of flows."""
    import dpkt

    flows: dict = {}
    with open(path, "rb") as fh:
        for _ts, buf in dpkt.pcap.Reader(fh):
            try:
                ip = dpkt.ethernet.Ethernet(buf).data
            except (dpkt.UnpackError, dpkt.NeedData):
                continue
            if not isinstance(ip, (dpkt.ip.IP, dpkt.ip6.IP6)):
                continue
            l4 = ip.data
            if not isinstance(l4, (dpkt.tcp.TCP, dpkt.udp.UDP)):
                continue
            a, b = (ip.src, l4.sport), (ip.dst, l4.dport)
            key = (ip.p, a, b) if a <= b else (ip.p, b, a)
            size = len(l4.data)
            if size == 0:
                continue
            f = flows.get(key)
            if f is None:
                flows[key] = f = [a, []]
            if len(f[1]) < N_FIRST:
                f[1].append(size if a == f[0] else -size)
    return len(flows)


def trafficgen_read(path: str) -> int:
    from trafficgen.data.flows.pcap import read_pcap

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return len(read_pcap(path, max_packets=N_FIRST))


def nfstream_read(path: str) -> int:
    import nfstream

    df = nfstream.NFStreamer(source=path, n_dissections=0, statistical_analysis=False,
                             splt_analysis=N_FIRST, n_meters=1).to_pandas()
    return len(df)


def concat_real(src_dir: Path, out: str) -> int:
    """Concatenate the little-endian microsecond Ethernet pcaps of src_dir (records copied as is)."""
    n = 0
    with open(out, "wb") as fo:
        fo.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1))
        for f in sorted(src_dir.glob("*.pcap")):
            data = f.read_bytes()
            if len(data) < 24 or data[:4] != b"\xd4\xc3\xb2\xa1" or struct.unpack_from("<I", data, 20)[0] != 1:
                continue
            pos, end, start = 24, len(data), 24
            ok = True
            while pos + 16 <= end:
                cap = struct.unpack_from("<I", data, pos + 8)[0]
                if cap > 262144 or pos + 16 + cap > end:
                    ok = False
                    break
                pos += 16 + cap
                n += 1
            if ok or pos > start:
                fo.write(data[start:pos])
    return n


def synthetic(out: str, n_packets: int, seed: int = 0) -> int:
    """TCP+UDP biflows of 2..40 packets (tests/data/flows/synthetic_capture.py)."""
    from tests.data.flows.synthetic_capture import write_synthetic_capture

    write_synthetic_capture(out, n_packets, seed=seed)
    return n_packets


def bench(label: str, path: str, n_packets: int, readers, repeat: int) -> None:
    print(f"\n{label}: {n_packets:,} packets, {os.path.getsize(path) / 1e6:.1f} MB (best of {repeat})")
    rates = {}
    for name, fn in readers:
        dt = float("inf")
        for _ in range(repeat):
            t0 = time.perf_counter()
            flows = fn(path)
            dt = min(dt, time.perf_counter() - t0)
        rates[name] = n_packets / dt
        print(f"  {name:12s} {dt:8.2f} s  {rates[name]:>12,.0f} packets/s  {flows:>8,} flows")
    base = rates.get("dpkt loop")
    for name, r in rates.items():
        if name != "dpkt loop" and base:
            print(f"  {name} / dpkt loop = {r / base:.1f}x")
    if "trafficgen" in rates and "nfstream" in rates:
        print(f"  trafficgen / nfstream = {rates['trafficgen'] / rates['nfstream']:.1f}x")


def machine_state() -> str:
    """Load average and CPU pressure: how contended the machine is right now."""
    load = os.getloadavg()
    text = f"load average {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f} on {os.cpu_count()} cores"
    try:
        some = open("/proc/pressure/cpu").readline().split()[1]  # some avg10=..
        text += f", CPU pressure {some.replace('avg10=', '')} % (10 s)"
    except (OSError, IndexError):
        pass
    contended = load[0] > 0.75 * (os.cpu_count() or 1)
    return text + (" -> CONTENDED (other processes compete for the cores)" if contended else " -> quiet")


def _cpu(who) -> float:
    r = resource.getrusage(who)
    return r.ru_utime + r.ru_stime


def warm_page_cache(folder: Path) -> float:
    """Read every file of ``folder`` through once (untimed by the caller) so the page cache holds
    it; returns the read speed in GB/s: ~20 on a cached file here, 3-4 from this VM's disk."""
    buf = bytearray(8 << 20)
    t0, n = time.perf_counter(), 0
    for f in sorted(folder.iterdir()):
        with open(f, "rb", buffering=0) as fh:
            while k := fh.readinto(buf):
                n += k
    return n / max(time.perf_counter() - t0, 1e-9) / 1e9


def bench_jobs(folder: Path, n_packets: int, repeat: int, label: str = "(c)", page_cache: str = "warm") -> None:
    """read_pcaps(folder) with jobs=1, jobs=2 and jobs=2 with spawned workers (what a parent that
    runs threads gets): wall (best of ``repeat``) and CPU seconds per process (the run with the
    least busy busiest process), the CPU overhead over jobs=1, and the 2-idle-core estimate.
    ``page_cache="warm"``: every run starts right after :func:`warm_page_cache` (this VM evicts
    files idle for ~20 s from the page cache, so without it a run partly measures the disk);
    ``"as-is"``: whatever the cache holds."""
    from trafficgen.data.flows import batch
    from trafficgen.data.flows.pcap import read_pcaps

    size = sum(f.stat().st_size for f in folder.iterdir())
    n_files = len(list(folder.iterdir()))
    print(f"\n{label} read_pcaps over {n_files} captures, {n_packets:,} packets, {size / 1e6:.0f} MB (best of {repeat}; "
          f"page cache {page_cache}{': every run right after reading the captures once' if page_cache == 'warm' else ''})")
    print(f"  before: {machine_state()}")
    warm_speeds: list[float] = []
    natural = batch.start_method() if hasattr(batch, "start_method") else "spawn"  # (older checkouts: spawn)
    rows = [("1", 1, None), ("2", 2, natural)] + ([("2 spawn", 2, "spawn")] if natural != "spawn" else [])
    runs: dict = {name: [] for name, _, _ in rows}
    results = {}
    orig = getattr(batch, "start_method", None)
    for _ in range(repeat):  # the rows interleaved: each repeat sees about the same contention
        for name, jobs, method in rows:
            if method is not None and orig is not None:
                batch.start_method = lambda m=method: m
            if page_cache == "warm":
                warm_speeds.append(warm_page_cache(folder))
            try:
                t0, s0, c0 = time.perf_counter(), _cpu(resource.RUSAGE_SELF), _cpu(resource.RUSAGE_CHILDREN)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    results[name] = read_pcaps(folder, progress=False, max_packets=N_FIRST, jobs=jobs)
                runs[name].append((time.perf_counter() - t0, _cpu(resource.RUSAGE_SELF) - s0,
                                   _cpu(resource.RUSAGE_CHILDREN) - c0))
            finally:
                if orig is not None:
                    batch.start_method = orig
    walls = {name: min(r[0] for r in rs) for name, rs in runs.items()}
    cpus = {name: min(rs, key=lambda r: max(r[1:]))[1:] for name, rs in runs.items()}
    for name, _, method in rows:
        how = "" if method is None else f", worker started by {method}"
        print(f"  --jobs {name:8s} {walls[name]:6.2f} s  {n_packets / walls[name]:>12,.0f} packets/s  "
              f"{len(results[name]):>8,} flows  (CPU: this process {cpus[name][0]:.2f} s, worker {cpus[name][1]:.2f} s{how})")
    base = sum(cpus["1"])
    state = "quiet" if machine_state().endswith("quiet") else "contended"
    for name, _, _method in rows[1:]:
        same = results[name] == results["1"] and results[name].meta == results["1"].meta
        over = sum(cpus[name]) - base
        idle = base / max(cpus[name])  # with two idle cores the wall time is the busier process's CPU time
        # paired by repeat (run k of --jobs 1 next to run k of this row: the same contention)
        paired = sorted(sum(a[1:]) / max(b[1:]) for a, b in zip(runs["1"], runs[name], strict=True))
        overs = sorted(sum(b[1:]) - sum(a[1:]) for a, b in zip(runs["1"], runs[name], strict=True))
        print(f"  --jobs {name} / --jobs 1 = {walls['1'] / walls[name]:.2f}x measured ({state} machine); "
              f"on 2 idle cores about {idle:.2f}x (goal 1.7x {'met' if idle >= 1.7 else 'MISSED'})\n"
              f"      = {base:.2f} s CPU of --jobs 1 / {max(cpus[name]):.2f} s of the busier process; "
              f"CPU overhead over --jobs 1: {over:+.2f} s; same FlowSet and meta: {same}\n"
              f"      paired by repeat: {', '.join(f'{x:.2f}x' for x in paired)} on 2 idle cores "
              f"(median {paired[len(paired) // 2]:.2f}x), CPU overhead {', '.join(f'{x:+.2f}' for x in overs)} s")
    if warm_speeds:
        print(f"  warm-up reads before the runs: {min(warm_speeds):.1f}-{max(warm_speeds):.1f} GB/s "
              f"(~20: the captures were still cached; 3-4: read back from the disk)")
    print(f"  after:  {machine_state()}")


RSS_READ = """
import resource, sys, warnings
from trafficgen.data.flows.pcap import read_pcap
warnings.simplefilter("ignore")
if sys.argv[1] != "-":
    fs = read_pcap(sys.argv[1], max_packets=int(sys.argv[2]))
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (2**20 if sys.platform == "darwin" else 2**10)
print(peak)
"""
LAUNCHER = "import subprocess, sys; subprocess.run([sys.executable, '-c', *sys.argv[1:]], check=True)"


def peak_rss_mb(path: str, max_packets: int = N_FIRST) -> float:
    """Peak RSS (MB) of read_pcap(path) in a fresh interpreter ("-": only the import)."""
    out = subprocess.run([sys.executable, "-c", LAUNCHER, RSS_READ, path, str(max_packets)], capture_output=True,
                         text=True, check=True, cwd=REPO).stdout
    return float(out.split()[-1])


def bench_memory(path: str, n_packets: int) -> None:
    size = os.path.getsize(path)
    base = peak_rss_mb("-")
    peak = peak_rss_mb(path)
    print(f"\n(d) peak RSS of read_pcap on one capture of {n_packets:,} packets, {size / 1e6:.0f} MB (max_packets=10)")
    print(f"  interpreter + reader imported: {base:6.0f} MB")
    print(f"  after reading:                 {peak:6.0f} MB  (goal < 600 MB: {'met' if peak < 600 else 'MISSED'})")
    print(f"  per million packets: {peak / (n_packets / 1e6):.0f} MB peak, {(peak - base) / (n_packets / 1e6):.0f} MB "
          f"above the interpreter (the flow table; the file itself is {size / n_packets * 1e6 / 1e6:.0f} MB per million)")


DIGESTS = """
import hashlib, json, sys, warnings
from pathlib import Path
sys.path.insert(0, sys.argv[1])
import numpy as np
import trafficgen.data.flows.pcap as P
import trafficgen.data.flows.pcap_format as F
assert P.__file__.startswith(sys.argv[1]), P.__file__
if int(sys.argv[2]) >= 0:
    F.CHUNK_BYTES = int(sys.argv[2])
OPTS = {"default": dict(max_packets=10), "fin_zero32": dict(max_packets=32, split_on_fin=True, keep_zero_payload=True),
        "idle1_min2": dict(max_packets=5, idle_timeout=1.0, min_packets=2),
        "w1_idle001_fin": dict(max_packets=1, idle_timeout=0.01, split_on_fin=True), "strict": dict(max_packets=10, strict=True)}
def digest(fs):
    h = hashlib.sha256()
    for k, v in sorted(fs._columns().items()):
        v = np.asarray(v) if v is not None else None
        h.update(k.encode() + (b"None" if v is None else str(v.dtype).encode() + str(v.shape).encode() + (
            "\\0".join(map(str, v.tolist())).encode() if v.dtype == object else v.tobytes())))
    h.update(json.dumps(fs.meta, sort_keys=True, default=str).encode())
    return h.hexdigest()
res = {}
for f in sorted(p for d in sys.argv[3:] for p in Path(d).iterdir() if p.is_file()):
    for name, o in OPTS.items():
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            try:
                r = digest(P.read_pcap(f, **o))
            except Exception as exc:
                r = f"{type(exc).__name__}: {exc} @ {getattr(exc, 'offset', None)}"
        res[f"{f}|{name}"] = [r, [str(x.message) for x in w]]
for d in sys.argv[3:]:
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        fs = P.read_pcaps(d, progress=False, on_error="skip", max_packets=10)
    res[f"{d}|read_pcaps"] = [digest(fs), [str(x.message) for x in w]]
print(json.dumps(res))
"""


def compare(old_root: Path, dirs: list[Path], windows: list[int]) -> None:
    """Every capture of ``dirs`` through the reader of ``old_root`` (a checkout of an earlier commit:
    ``git archive REV trafficgen | tar -x -C OLD``) and through this one with each window size."""
    import json

    def digests(root: Path, window: int) -> dict:
        out = subprocess.run([sys.executable, "-c", DIGESTS, str(root), str(window), *map(str, dirs)],
                             capture_output=True, text=True, check=True, cwd="/").stdout
        return json.loads(out)

    print(f"\n(e) every capture of {', '.join(map(str, dirs))} x 5 option sets + read_pcaps per folder:"
          f" {old_root} vs this checkout")
    old = digests(old_root, -1)
    for window in windows:
        new = digests(REPO, window)
        diff = sorted(k for k in old if old[k] != new.get(k))
        print(f"  window {window if window else 'whole file':>10}: {len(old)} digests, {len(diff)} differences"
              + "".join(f"\n    {k}" for k in diff[:10]))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--packets", type=int, default=1_000_000)
    ap.add_argument("--real", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data" / "ndpi" / "pcap")
    ap.add_argument("--skip-nfstream", action="store_true")
    ap.add_argument("--repeat", type=int, default=2, help="best of N runs per reader")
    ap.add_argument("--jobs-packets", type=int, default=2_000_000, help="packets in the folder for (c)")
    ap.add_argument("--jobs-files", type=int, default=8, help="captures in the folder for (c)")
    ap.add_argument("--jobs-large", default="", metavar="FILESxPACKETS", help="also (c') on a larger folder, "
                    "e.g. 32x8000000 (32 captures, 8M packets in all, ~6 GB in the temporary folder)")
    ap.add_argument("--page-cache", choices=("warm", "as-is"), default="warm",
                    help="jobs: read the captures once before every timed run (warm, default) or not")
    ap.add_argument("--memory-packets", type=int, default=2_000_000, help="packets of the capture for (d)")
    ap.add_argument("--only", default="readers,jobs,memory", help="comma-separated parts to run "
                    "(readers, jobs, memory, compare)")
    ap.add_argument("--compare-root", type=Path, help="compare: folder holding an earlier trafficgen/ package")
    ap.add_argument("--compare-windows", default="8388608,1024", help="compare: window sizes in bytes (0: whole file)")
    args = ap.parse_args(argv)
    parts = set(args.only.split(","))
    print(machine_state())
    with tempfile.TemporaryDirectory() as tmp:
        if "readers" in parts:
            bench_readers(args, tmp)
        if "jobs" in parts:
            folder = Path(tmp) / "folder"
            folder.mkdir()
            per = args.jobs_packets // args.jobs_files
            for k in range(args.jobs_files):
                synthetic(str(folder / f"c{k:02d}.pcap"), per, seed=100 + k)
            bench_jobs(folder, per * args.jobs_files, args.repeat, page_cache=args.page_cache)
            for f in folder.iterdir():
                f.unlink()
            if args.jobs_large:
                files, packets = (int(x) for x in args.jobs_large.split("x"))
                for k in range(files):
                    synthetic(str(folder / f"c{k:02d}.pcap"), packets // files, seed=100 + k)
                bench_jobs(folder, packets // files * files, args.repeat,
                           label="(c') LARGER CONFIGURATION (not the default workload):", page_cache=args.page_cache)
                for f in folder.iterdir():
                    f.unlink()
        if "memory" in parts:
            big = os.path.join(tmp, "big.pcap")
            synthetic(big, args.memory_packets, seed=7)
            bench_memory(big, args.memory_packets)
    if "compare" in parts:
        if args.compare_root is None:
            raise SystemExit("compare needs --compare-root OLD (git archive REV trafficgen | tar -x -C OLD)")
        dirs = [args.real, REPO / "trafficgen" / "datasets" / "ndpi" / "pcap", args.real.parents[1] / "bad"]
        compare(args.compare_root.resolve(), [d for d in dirs if d.exists()],
                [int(w) for w in args.compare_windows.split(",")])


def bench_readers(args, tmp: str) -> None:
    readers = [("trafficgen", trafficgen_read), ("dpkt loop", dpkt_loop)]
    try:
        import nfstream  # noqa: F401

        if not args.skip_nfstream:
            readers.append(("nfstream", nfstream_read))
    except ImportError:
        print("nfstream not installed: skipped (pip install trafficgen[pcap])")
    if args.real.exists():
        real = os.path.join(tmp, "real.pcap")
        n = concat_real(args.real, real)
        bench(f"(a) real Ethernet captures of {args.real}", real, n, readers, args.repeat)
    else:
        print(f"(a) skipped: {args.real} not found")
    syn = os.path.join(tmp, "synthetic.pcap")
    t0 = time.perf_counter()
    n = synthetic(syn, args.packets)
    print(f"\n(synthetic capture written in {time.perf_counter() - t0:.1f} s)")
    bench("(b) synthetic Ethernet/IPv4 TCP+UDP", syn, n, readers, args.repeat)
    os.unlink(syn)


if __name__ == "__main__":
    sys.exit(main())
