"""The machine: packages from apt, the release build, processes' CPU and
memory from /proc, and the versions recorded with every result."""

import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CLK_TCK = os.sysconf("SC_CLK_TCK")

# Command → Debian package that provides it.
PACKAGES = {
    "nginx": "nginx",
    "haproxy": "haproxy",
    "redis-server": "redis-server",
    "caddy": "caddy",
    "wrk": "wrk",
    "h2load": "nghttp2-client",
    "curl": "curl",
    "openssl": "openssl",
    "ss": "iproute2",
    # The session-cookie route logs in at the test OpenID provider.
    "node": "nodejs",
    "npm": "npm",
}
# Services Debian starts on install; the benchmark runs its own instances.
SERVICES = ["nginx", "haproxy", "caddy", "redis-server"]


class BenchError(Exception):
    """A failed step or check: the run stops and says why."""


def die(message):
    print(f"bench: {message}", file=sys.stderr)
    sys.exit(1)


def log(message):
    print(message, file=sys.stderr, flush=True)


def have_matplotlib():
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def install_packages(need_chart=True):
    """apt-get installs whatever is missing, then stops the services the
    packages started (their ports and CPU would disturb the run)."""
    missing = sorted({pkg for cmd, pkg in PACKAGES.items() if not shutil.which(cmd)})
    if need_chart and not have_matplotlib():
        missing.append("python3-matplotlib")
    if missing:
        if os.geteuid() != 0:
            raise BenchError(f"missing packages {missing}; run as root or install them")
        log(f"== apt-get install {' '.join(missing)}")
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        for args in (["apt-get", "update"], ["apt-get", "install", "-y", *missing]):
            if subprocess.run(args, env=env).returncode != 0:
                raise BenchError(f"{' '.join(args)} failed")
        still = [c for c, p in PACKAGES.items() if not shutil.which(c)]
        if still or (need_chart and not have_matplotlib()):
            raise BenchError(f"still missing after apt-get: {still or ['matplotlib']}")
    stop_services()


def stop_services():
    for service in SERVICES:
        if shutil.which("systemctl") and Path("/run/systemd/system").is_dir():
            subprocess.run(["systemctl", "stop", service], capture_output=True)
        elif shutil.which("service"):
            subprocess.run(["service", service, "stop"], capture_output=True)


def target_dir():
    return Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target")).resolve() / "release"


def build_release():
    log("== cargo build --release (gatehouse-gateway, pingora-baseline)")
    args = ["cargo", "build", "--release", "--locked",
            "-p", "gatehouse-gateway", "-p", "pingora-baseline"]
    if subprocess.run(args, cwd=REPO).returncode != 0:
        raise BenchError("cargo build failed")
    return target_dir()


def run(args, **kwargs):
    """Runs a command to completion and returns its stdout; fails loudly."""
    done = subprocess.run(args, capture_output=True, text=True, **kwargs)
    if done.returncode != 0:
        raise BenchError(f"{' '.join(map(str, args))} exited {done.returncode}: {done.stderr.strip()}")
    return done.stdout


def _all_stats():
    """pid → (ppid, utime+stime ticks) of every process."""
    stats = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            text = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # The command name may hold spaces: fields start after its ')'.
        fields = text[text.rindex(")") + 2:].split()
        stats[int(entry)] = (int(fields[1]), int(fields[11]) + int(fields[12]))
    return stats


def process_tree(root):
    """root and all its descendants (nginx's master and workers)."""
    stats = _all_stats()
    tree, frontier = {root}, [root]
    while frontier:
        parent = frontier.pop()
        children = [p for p, (ppid, _) in stats.items() if ppid == parent]
        tree.update(children)
        frontier.extend(children)
    return sorted(p for p in tree if p in stats)


def cpu_seconds(pids):
    """User+system CPU of these processes, all their threads included."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / CLK_TCK


def rss_kib(pids):
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total


def _first_line(args):
    try:
        done = subprocess.run(args, capture_output=True, text=True)
    except OSError:
        return None
    text = (done.stdout + done.stderr).strip()
    return text.splitlines()[0] if text else None


def machine(binaries):
    return {
        "nproc": os.cpu_count(),
        "kernel": platform.release(),
        "cpu": next((line.split(":", 1)[1].strip()
                     for line in Path("/proc/cpuinfo").read_text().splitlines()
                     if line.startswith("model name")), None),
        "versions": {
            "nginx": _first_line(["nginx", "-v"]),
            "haproxy": _first_line(["haproxy", "-v"]),
            "caddy": _first_line(["caddy", "version"]),
            "gatehouse": _first_line([str(binaries / "gatehouse-gateway"), "--version"]),
            "gatehouse_commit": _first_line(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"]),
            "wrk": _first_line(["wrk", "-v"]),
            "h2load": _first_line(["h2load", "--version"]),
        },
    }


def raise_fd_limit(wanted=65536):
    """As high as allowed (up to wanted); the servers started after inherit
    it. Returns the soft limit now in force."""
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(wanted, hard), max(wanted, hard)))
    except (ValueError, OSError):
        # A container may forbid raising the hard limit: take what it allows.
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]
