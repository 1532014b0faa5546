"""`bench/compare --idle-connections N`: each proxy's RSS (all its
processes) before and after N idle TLS connections (handshake done, one
request answered, then held open), as KiB per connection."""

import asyncio
import json
import ssl
import subprocess
import time
from pathlib import Path

from . import lineup, system, targets
from .system import REPO, BenchError, log

# Handshakes in flight at once: enough to open 10k in seconds, few enough
# not to trip a listen backlog.
CONCURRENT_OPENS = 100
SETTLE_SECONDS = 3
IDLE_FAMILIES = ["nginx", "haproxy", "caddy", "pingora", "gatehouse"]


async def _open_one(port, context, gate, held):
    async with gate:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context,
                                                       server_hostname="localhost")
        writer.write(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 200"):
            raise BenchError(f"an idle connection's request got {head[:40]!r}")
        length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length:"))
        await reader.readexactly(length)
        held.append(writer)


async def _hold(instance, count, cacert):
    context = ssl.create_default_context(cafile=str(cacert))
    context.set_alpn_protocols(["http/1.1"])
    gate, held = asyncio.Semaphore(CONCURRENT_OPENS), []
    pids = instance.pids()
    before = system.rss_kib(pids)
    started = time.monotonic()
    await asyncio.gather(*(_open_one(instance.port, context, gate, held) for _ in range(count)))
    opened_in = time.monotonic() - started
    await asyncio.sleep(SETTLE_SECONDS)
    established = _established(instance.port)
    after = system.rss_kib(instance.pids())
    # Still open at the end of the measurement, as seen from the server.
    if established < count:
        raise BenchError(f"{instance.label} holds {established} of {count} connections")
    for writer in held:
        writer.close()
    return {"target": instance.key, "label": instance.label, "connections": count,
            "established": established, "rss_before_kib": before, "rss_after_kib": after,
            "kib_per_connection": round((after - before) / count, 2),
            "open_seconds": round(opened_in, 1)}


def _established(port):
    out = subprocess.run(["ss", "-Htn", "state", "established", f"( sport = :{port} )"],
                         capture_output=True, text=True, check=True).stdout
    return sum(1 for line in out.splitlines() if line.strip())


def run_idle(args, work, binaries, certs):
    families = args.families & set(IDLE_FAMILIES)
    if "haproxy" in families and args.idle_connections > targets.haproxy_maxconn():
        log(f"   HAProxy skipped: its maxconn under this open-file limit is {targets.haproxy_maxconn()}")
        families.discard("haproxy")
    upstream = targets.upstream_instance(work).start()
    results = []
    try:
        instances, _ = lineup.build(work, certs, binaries, families, args.gatehouse_bin, idle=True)
        for instance in instances:
            instance.start()
            try:
                log(f"== {instance.label}: {args.idle_connections} idle TLS connections")
                result = asyncio.run(_hold(instance, args.idle_connections, certs / "ca.pem"))
                log(f"   RSS {result['rss_before_kib']} KiB → {result['rss_after_kib']} KiB, "
                    f"{result['kib_per_connection']} KiB per connection "
                    f"({result['established']} established)")
                results.append(result)
            finally:
                instance.stop()
    finally:
        upstream.stop()
    _publish(args, results, binaries)


def _publish(args, results, binaries):
    lines = [f"RSS (sum over the proxy's processes) before and after {args.idle_connections} idle "
             "TLS connections (HTTP/1.1, one request each, then held open).", "",
             "| target | RSS before | RSS after | KiB per connection |", "|---|---:|---:|---:|"]
    for r in results:
        lines.append(f"| {r['label']} | {r['rss_before_kib'] / 1024:.1f} MiB | "
                     f"{r['rss_after_kib'] / 1024:.1f} MiB | {r['kib_per_connection']:.1f} |")
    table = "\n".join(lines) + "\n"
    print(table)
    prefix = REPO / "bench/results/idle-memory" if not args.out else Path(args.out)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    prefix.with_suffix(".md").write_text(table)
    prefix.with_suffix(".json").write_text(json.dumps(
        {"machine": system.machine(binaries), "connections": args.idle_connections,
         "results": results}, indent=2) + "\n")
    log(f"written: {prefix}.md, .json")
