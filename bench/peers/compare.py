"""`bench/compare`: Gatehouse against nginx, HAProxy, Caddy and a bare
Pingora proxy, in interleaved rounds, after verifying each of them."""

import argparse
import tempfile
import time
from pathlib import Path

from . import lineup, report, system, targets, verify
from .load import measure
from .system import REPO, BenchError, log


def arguments():
    parser = argparse.ArgumentParser(prog="bench/compare", description=__doc__)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    parser.add_argument("--duration", type=float, default=10, help="seconds per measurement (10)")
    parser.add_argument("--warmup", type=float, default=3, help="seconds of warm-up before each (3)")
    parser.add_argument("--smoke", action="store_true",
                        help="a quick check: 1 round of 2 s, 1 s warm-up, results not kept")
    parser.add_argument("--targets", default=",".join(lineup.FAMILIES),
                        help="comma-separated subset of: " + ", ".join(lineup.FAMILIES))
    parser.add_argument("--protocols", default="h1,h2", help="h1, h2 or both (default)")
    parser.add_argument("--gatehouse-bin", action="append", default=[], metavar="PATH",
                        help="a gatehouse-gateway binary instead of this checkout's release build; "
                             "twice for an A/B comparison of two builds")
    parser.add_argument("--out", help="results prefix (default bench/results/peers for a full "
                                      "run, a temporary directory otherwise)")
    parser.add_argument("--no-install", action="store_true", help="skip apt-get")
    parser.add_argument("--no-build", action="store_true", help="skip cargo build")
    parser.add_argument("--idle-connections", type=int, metavar="N",
                        help="instead of load: RSS per idle TLS connection with N held open")
    args = parser.parse_args()
    if args.smoke:
        args.rounds, args.duration, args.warmup = 1, 2, 1
    if len(args.gatehouse_bin) > 2:
        parser.error("--gatehouse-bin: at most two (A and B)")
    args.families = set(args.targets.split(","))
    unknown = args.families - set(lineup.FAMILIES)
    if unknown:
        parser.error(f"unknown targets {sorted(unknown)}")
    args.protocols = tuple(p for p in ("h1", "h2") if p in args.protocols.split(","))
    return args


def prepare(args, work):
    if not args.no_install:
        system.install_packages(need_chart=True)
    system.stop_services()
    binaries = system.target_dir() if args.no_build else system.build_release()
    targets.FD_LIMIT = system.raise_fd_limit()
    certs = targets.make_certs(binaries, work)
    return binaries, certs


def main():
    args = arguments()
    with tempfile.TemporaryDirectory(prefix="gatehouse-bench-") as tmp:
        work = Path(tmp)
        binaries, certs = prepare(args, work)
        if args.idle_connections:
            from .idle import run_idle
            return run_idle(args, work, binaries, certs)
        instances = []
        try:
            upstream = targets.upstream_instance(work).start()
            instances.append(upstream)
            started, scenarios = lineup.build(work, certs, binaries, args.families, args.gatehouse_bin)
            for instance in started:
                instances.append(instance.start())
            lineup.log_in(scenarios, certs)
            log("== verification")
            verify.prove_tls11_probe_can_fail(work, certs)
            for scenario in scenarios:
                verify.verify_scenario(scenario, certs / "ca.pem")
            measurements, failures = run_rounds(args, scenarios)
            publish(args, scenarios, measurements, failures, binaries)
        finally:
            for instance in reversed(instances):
                instance.stop()
        if failures:
            raise BenchError("errors or non-2xx responses under load:\n  " + "\n  ".join(failures))


def run_rounds(args, scenarios):
    """Every scenario once per round, the order rotated each round so that
    no target always runs first or after the same neighbour."""
    measurements, failures = [], []
    for number in range(args.rounds):
        shift = number % len(scenarios)
        order = scenarios[shift:] + scenarios[:shift]
        log(f"== round {number + 1}/{args.rounds}")
        for scenario in order:
            for protocol in (p for p in scenario.protocols if p in args.protocols):
                result = measure(scenario, protocol, args.duration, args.warmup)
                result.update(round=number + 1, scenario=scenario.key, protocol=protocol,
                              time=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
                measurements.append(result)
                log(f"   {scenario.label:58} {protocol}: {result['rps']:>9.0f} rps  "
                    f"p99 {result['p99_ms'] or 0:6.2f} ms  {result['cpu_s_per_100k']:.3f} CPU-s/100k  "
                    f"errors {result['errors']}  non-2xx {result['non_2xx']}")
                if result["errors"] or result["non_2xx"]:
                    failures.append(f"round {number + 1} {scenario.label} {protocol}: "
                                    f"{result['errors']} errors, {result['non_2xx']} non-2xx")
    return measurements, failures


def publish(args, scenarios, measurements, failures, binaries):
    full = (not args.smoke and not args.gatehouse_bin
            and args.families == set(lineup.FAMILIES) and len(args.protocols) == 2)
    prefix = Path(args.out) if args.out else (
        REPO / "bench/results/peers" if full else Path(tempfile.mkdtemp(prefix="bench-")) / "peers")
    prefix.parent.mkdir(parents=True, exist_ok=True)
    machine = system.machine(binaries)
    summary = report.summarize(measurements)
    ratio_rows = report.ratios(summary, lineup.ratio_pairs(scenarios, len(args.gatehouse_bin) == 2))
    table = report.markdown(scenarios, summary, ratio_rows, args.rounds, args.duration, machine)
    settings = {"rounds": args.rounds, "duration_s": args.duration, "warmup_s": args.warmup,
                "h1_client": "wrk -t1 -c64 --latency", "h2_client": "h2load -t1 -c32 -m10",
                "gatehouse_bins": [str(b) for _, _, b in lineup.gatehouse_builds(binaries, args.gatehouse_bin)],
                "failures": failures}
    print(table)
    prefix.with_suffix(".md").write_text(table)
    report.write_json(prefix.with_suffix(".json"), scenarios, measurements, summary, ratio_rows,
                      settings, machine)
    report.chart(prefix.with_suffix(".png"), scenarios, summary)
    log(f"written: {prefix}.md, .json, .png")
