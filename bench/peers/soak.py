"""`bench/soak [DURATION]`: bounded mixed traffic against one gateway, run
as a deployment runs it (access log at info, to a file). Its RSS is sampled
every 10 s and must stay within 5% after the warm-up; every stream's
answers must be the status that stream expects, with no errors."""

import argparse
import asyncio
import json
import ssl
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from . import system, targets
from .load import parse_h2load, parse_wrk
from .system import REPO, BenchError, log

PORT = 28460
SAMPLE_SECONDS = 10
RSS_TOLERANCE = 0.05


def arguments():
    parser = argparse.ArgumentParser(prog="bench/soak", description=__doc__)
    parser.add_argument("duration", nargs="?", default="10m", help="e.g. 10m (default), 120s")
    parser.add_argument("--warmup", type=float, default=60, help="seconds before RSS must hold (60)")
    parser.add_argument("--out", help="JSON path (default bench/results/soak.json)")
    parser.add_argument("--no-install", action="store_true")
    parser.add_argument("--no-build", action="store_true")
    args = parser.parse_args()
    unit = {"s": 1, "m": 60, "h": 3600}.get(args.duration[-1])
    args.seconds = int(float(args.duration[:-1]) * unit) if unit else int(args.duration)
    if args.seconds <= args.warmup + 2 * SAMPLE_SECONDS:
        parser.error("the duration must leave at least two samples after the warm-up")
    return args


def load_streams(seconds, token, key):
    """(name, expected status, argv): wrk and h2load at a few connections each."""
    base = f"https://127.0.0.1:{PORT}"
    wrk = ["wrk", "-t1", f"-d{seconds}s"]
    return [
        ("public h1", 200, [*wrk, "-c8", f"{base}/app/"]),
        ("JWT h1", 200, [*wrk, "-c4", "-H", f"authorization: Bearer {token}", f"{base}/jwt/"]),
        ("API key h1", 200, [*wrk, "-c4", "-H", f"x-api-key: {key}", f"{base}/key/"]),
        ("JWT, route's own assertion key, h1", 200,
         [*wrk, "-c2", "-H", f"authorization: Bearer {token}", f"{base}/jwt-mac/"]),
        ("public h2", 200, ["h2load", "-t1", "-c4", "-m4", f"-D{seconds}", f"{base}/app/"]),
    ]


class Counts:
    def __init__(self):
        self.by_stream = {}

    def add(self, stream, outcome):
        per = self.by_stream.setdefault(stream, {})
        per[outcome] = per.get(outcome, 0) + 1


async def _request_loop(name, path, expected, source, deadline, context, counts):
    """Keep-alive requests one after another; every answer must be `expected`."""
    while time.monotonic() < deadline:
        try:
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", PORT, ssl=context, server_hostname="localhost",
                local_addr=(source, 0))
            while time.monotonic() < deadline:
                writer.write(f"GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
                status = int(head.split(b" ", 2)[1])
                length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), 0)
                await reader.readexactly(length)
                counts.add(name, "expected" if status == expected else f"status {status}")
                if b"connection: close" in head.lower():
                    break
                await asyncio.sleep(0.005)
            writer.close()
        except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError, ValueError) as error:
            counts.add(name, f"error {type(error).__name__}")


async def _slow_client(name, head, trickle, deadline, context, counts):
    """Sends `head`, then `trickle` every 2 s (b"" stalls): the gateway's
    timeouts must cut it off (expected), within 60 s."""
    while time.monotonic() < deadline - 30:
        reader, writer = await asyncio.open_connection("127.0.0.1", PORT, ssl=context,
                                                       server_hostname="localhost")
        writer.write(head)
        started, outcome = time.monotonic(), "not cut off within 60 s"
        try:
            while time.monotonic() - started < 60:
                writer.write(trickle)
                await writer.drain()
                try:
                    data = await asyncio.wait_for(reader.read(4096), 2)
                except asyncio.TimeoutError:
                    continue
                outcome = "cut off" if not data or data.startswith(b"HTTP/1.1 408") \
                    or data.startswith(b"HTTP/1.1 400") else f"answered {data[:12]!r}"
                break
        except OSError:
            outcome = "cut off"
        counts.add(name, "expected" if outcome == "cut off" else outcome)
        writer.close()


async def _python_streams(seconds, cacert, counts):
    context = ssl.create_default_context(cafile=str(cacert))
    deadline = time.monotonic() + seconds
    # The upstream reads a whole body before it answers (upload location).
    body_head = (b"POST /app/upload HTTP/1.1\r\nHost: localhost\r\nContent-Type: text/plain\r\n"
                 b"Content-Length: 100000\r\n\r\n" + b"x" * 10)
    tasks = [
        _request_loop("denied (from 127.0.0.2)", "/app/", 403, "127.0.0.2", deadline, context, counts),
        _request_loop("no route (404)", "/nothing", 404, "127.0.0.1", deadline, context, counts),
        *(_slow_client("slow head", b"GET /app/ HTTP/1.1\r\nHost: localhost\r\n", b"x", deadline,
                       context, counts) for _ in range(2)),
        *(_slow_client("stalled body", body_head, b"", deadline, context, counts) for _ in range(2)),
    ]
    await asyncio.gather(*tasks)


def _run_load(streams):
    """Starts every wrk/h2load stream; returns their processes."""
    return [(name, expected, argv, subprocess.Popen(argv, stdout=subprocess.PIPE,
                                                    stderr=subprocess.PIPE, text=True))
            for name, expected, argv in streams]


def _load_results(processes):
    results, problems = {}, []
    for name, expected, argv, process in processes:
        out, err = process.communicate()
        if process.returncode != 0:
            problems.append(f"{name}: {argv[0]} exited {process.returncode}: {err.strip()}")
            continue
        with tempfile.NamedTemporaryFile("w") as empty:
            figures = parse_wrk(out) if argv[0] == "wrk" else parse_h2load(out, empty.name)
        figures.pop("p99_ms", None)
        results[name] = figures
        if figures["errors"] or figures["non_2xx"]:
            problems.append(f"{name}: {figures['errors']} errors, {figures['non_2xx']} answers "
                            f"other than {expected}")
    return results, problems


def _sample_rss(instance, seconds, samples):
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        samples.append((round(time.monotonic() - started), system.rss_kib(instance.pids())))
        time.sleep(SAMPLE_SECONDS)


def soak(args, work, binaries, certs):
    key, key_hash = targets.api_key()
    token = targets.hs256_jwt()
    upstream = targets.upstream_instance(work).start()
    gateway = targets.gatehouse_instance(work, "gatehouse", "Gatehouse", binaries / "gatehouse-gateway",
                                         PORT, certs, key_hash, "info", public_path="/app/",
                                         extra=targets.MAC_ROUTES)
    counts, samples = Counts(), []
    try:
        gateway.start()
        log(f"== soak: {args.seconds} s of mixed traffic; RSS every {SAMPLE_SECONDS} s")
        sampler = threading.Thread(target=_sample_rss, args=(gateway, args.seconds, samples))
        sampler.start()
        processes = _run_load(load_streams(args.seconds, token, key))
        asyncio.run(_python_streams(args.seconds, certs / "ca.pem", counts))
        load, problems = _load_results(processes)
        sampler.join()
        alive = gateway.process.poll() is None
    finally:
        gateway.stop()
        upstream.stop()
    if not alive:
        problems.append("the gateway exited during the soak")
    return summarize(args, load, counts, samples, problems, binaries)


def summarize(args, load, counts, samples, problems, binaries):
    for stream, outcomes in counts.by_stream.items():
        for outcome, number in outcomes.items():
            if outcome != "expected":
                problems.append(f"{stream}: {number} × {outcome}")
    settled = [rss for at, rss in samples if at >= args.warmup]
    deviation = max(abs(rss - settled[0]) / settled[0] for rss in settled) if settled else None
    if deviation is None or deviation > RSS_TOLERANCE:
        problems.append(f"RSS after the warm-up moved {deviation:.1%} (limit {RSS_TOLERANCE:.0%})"
                        if deviation is not None else "no RSS sample after the warm-up")
    document = {"machine": system.machine(binaries), "duration_s": args.seconds,
                "warmup_s": args.warmup, "load": load, "python_streams": counts.by_stream,
                "rss_samples_kib": samples, "rss_max_deviation_after_warmup": deviation,
                "problems": problems, "passed": not problems}
    out = Path(args.out) if args.out else REPO / "bench/results/soak.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(document, indent=2) + "\n")
    for name, figures in load.items():
        log(f"   {name:24} {figures['requests']:>9} requests, {figures['rps']:>8.0f}/s, "
            f"errors {figures['errors']}, unexpected {figures['non_2xx']}")
    for stream, outcomes in counts.by_stream.items():
        log(f"   {stream:24} {outcomes}")
    log(f"   RSS: {samples[0][1] if samples else 0} KiB at start, "
        f"{min(settled) if settled else 0}–{max(settled) if settled else 0} KiB after the warm-up "
        f"(max deviation {deviation or 0:.2%}); written {out}")
    if problems:
        raise BenchError("soak failed:\n  " + "\n  ".join(problems))
    log("soak passed")


def main():
    args = arguments()
    with tempfile.TemporaryDirectory(prefix="gatehouse-soak-") as tmp:
        work = Path(tmp)
        if not args.no_install:
            system.install_packages(need_chart=False)
        binaries = system.target_dir() if args.no_build else system.build_release()
        targets.FD_LIMIT = system.raise_fd_limit()
        certs = targets.make_certs(binaries, work)
        soak(args, work, binaries, certs)
