"""Load with wrk (HTTP/1.1) and h2load (HTTP/2), and the proxy's own CPU
during the measured window, per 100,000 requests completed."""

import re
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from .system import BenchError, cpu_seconds

H1_CONNECTIONS = 64
H2_CONNECTIONS, H2_STREAMS = 32, 10


@dataclass
class Scenario:
    """What is measured: a target (its running instance), a path and the
    credentials the requests carry."""
    key: str
    label: str
    instance: object
    path: str = "/"
    headers: dict = field(default_factory=dict)
    protocols: tuple = ("h1", "h2")
    # The gateway origin to log in at before loading (session-cookie route).
    login: str = ""

    @property
    def port(self):
        return self.instance.port

    @property
    def url(self):
        return f"https://127.0.0.1:{self.port}{self.path}"


def _duration_seconds(text):
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if not match:
        raise BenchError(f"cannot read duration {text!r}")
    scale = {"us": 1e-6, "ms": 1e-3, "s": 1, "m": 60}[match.group(2)]
    return float(match.group(1)) * scale


def parse_wrk(out):
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    p99 = re.search(r"^\s+99%\s+(\S+)", out, re.M)
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "requests": requests,
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "p99_ms": _duration_seconds(p99.group(1)) * 1000 if p99 else None,
        "errors": sum(map(int, socket_errors.groups())) if socket_errors else 0,
        "non_2xx": int(non_2xx.group(1)) if non_2xx else 0,
    }


def parse_h2load(out, log_file):
    counts = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, "
                       r"(\d+) failed, (\d+) errored, (\d+) timeout", out)
    statuses = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", out)
    if not counts or not statuses:
        raise BenchError(f"cannot read h2load's output:\n{out}")
    done = int(counts.group(3))
    # h2load prints no percentiles; its per-request log has each duration.
    durations = sorted(int(line.split()[2]) for line in Path(log_file).read_text().splitlines()
                       if line.strip())
    p99 = durations[min(len(durations) - 1, int(len(durations) * 0.99))] / 1000 if durations else None
    return {
        "requests": done,
        "rps": float(re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", out).group(1)),
        "p99_ms": p99,
        # "failed" also counts non-2xx answers, reported on their own.
        "errors": int(counts.group(6)) + int(counts.group(7)),
        "non_2xx": sum(int(statuses.group(i)) for i in (2, 3, 4)),
    }


def client_command(scenario, protocol, seconds, log_file=None):
    if protocol == "h1":
        args = ["wrk", "-t1", f"-c{H1_CONNECTIONS}", f"-d{seconds}s", "--latency"]
        for name, value in scenario.headers.items():
            args += ["-H", f"{name}: {value}"]
        return [*args, scenario.url]
    args = ["h2load", "-t1", f"-c{H2_CONNECTIONS}", f"-m{H2_STREAMS}", f"-D{seconds}"]
    if log_file:
        args.append(f"--log-file={log_file}")
    for name, value in scenario.headers.items():
        args += ["-H", f"{name}: {value}"]
    return [*args, scenario.url]


def _run_client(args):
    done = subprocess.run(args, capture_output=True, text=True)
    if done.returncode != 0:
        raise BenchError(f"{' '.join(args)} exited {done.returncode}: {done.stderr.strip()}")
    return done.stdout


def measure(scenario, protocol, seconds, warmup_seconds):
    """Warm-up, then one measured run: rps, p99, errors, non-2xx and the
    proxy's CPU seconds per 100k requests over the measured window."""
    _run_client(client_command(scenario, protocol, warmup_seconds))
    with tempfile.TemporaryDirectory() as tmp:
        log_file = Path(tmp) / "h2load.log"
        pids = scenario.instance.pids()
        before = cpu_seconds(pids)
        out = _run_client(client_command(scenario, protocol, seconds, log_file))
        cpu = cpu_seconds(pids) - before
        result = parse_wrk(out) if protocol == "h1" else parse_h2load(out, log_file)
    if result["requests"] == 0:
        raise BenchError(f"{scenario.label} {protocol}: no request completed")
    result["cpu_s"] = round(cpu, 3)
    result["cpu_s_per_100k"] = round(cpu / result["requests"] * 100_000, 4)
    return result
