"""The checks every target passes before it is measured, on every run: a
403 with the security headers from a denied address, a 200 with exactly
the expected headers and body from an allowed one, h2 chosen by ALPN,
TLS 1.2 accepted and TLS 1.1 refused. Any failure stops the run."""

import subprocess
import tempfile
from pathlib import Path

from .system import BenchError, log
from .targets import BODY, SECURITY_HEADERS, Instance, nginx_conf

DENIED_SOURCE = "127.0.0.2"  # Outside every target's 127.0.0.1/32 allowlist.
TLS11_CONTROL_PORT = 28499


def curl(url, cacert, headers=None, source=None, http2=False):
    """(status, {lower-case name: [values]}, body, http_version)."""
    with tempfile.TemporaryDirectory() as tmp:
        head, body = Path(tmp) / "head", Path(tmp) / "body"
        args = ["curl", "-s", "--max-time", "10", "--cacert", str(cacert), "-D", str(head),
                "-o", str(body), "-w", "%{http_code} %{http_version}",
                "--http2" if http2 else "--http1.1"]
        if source:
            args += ["--interface", source]
        for name, value in (headers or {}).items():
            args += ["-H", f"{name}: {value}"]
        done = subprocess.run([*args, url], capture_output=True, text=True)
        if done.returncode != 0:
            raise BenchError(f"curl {url} failed ({done.returncode}): {done.stderr.strip()}")
        status, version = done.stdout.split()
        fields = {}
        for line in head.read_text(errors="replace").splitlines()[1:]:
            if ":" in line:
                name, value = line.split(":", 1)
                fields.setdefault(name.strip().lower(), []).append(value.strip())
        return int(status), fields, body.read_bytes(), version


def _security_header_problems(fields):
    problems = []
    for name, value in SECURITY_HEADERS.items():
        if fields.get(name) != [value]:
            problems.append(f"{name}: {fields.get(name)!r}, expected [{value!r}]")
    return problems


def tls_handshake(port, option):
    """Whether `openssl s_client` completes a handshake with this option.
    SECLEVEL=0: Debian's OpenSSL otherwise refuses to offer TLS 1.1 itself,
    and the check could not fail."""
    done = subprocess.run(
        ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", option,
         "-cipher", "DEFAULT@SECLEVEL=0", "-servername", "localhost"],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=15)
    negotiated = "Cipher is (NONE)" not in done.stdout and "New, (NONE)" not in done.stdout
    return done.returncode == 0 and negotiated and "BEGIN CERTIFICATE" in done.stdout


def prove_tls11_probe_can_fail(work, certs):
    """The TLS 1.1 probe against an nginx that allows only TLS 1.1 must
    succeed; otherwise "refused" would mean nothing."""
    argv, log_path = nginx_conf(work, "tls11-control", TLS11_CONTROL_PORT, certs, workers=1,
                                tls_protocols="TLSv1.1", ciphers="DEFAULT@SECLEVEL=0")
    control = Instance("tls11-control", "nginx allowing TLS 1.1", TLS11_CONTROL_PORT, argv,
                       log_path=log_path).start()
    try:
        if not tls_handshake(TLS11_CONTROL_PORT, "-tls1_1"):
            raise BenchError("the TLS 1.1 probe fails even against a server that allows TLS 1.1")
    finally:
        control.stop()
    log("   TLS 1.1 probe: completes against an nginx allowing TLS 1.1 (control)")


def verify_scenario(scenario, cacert):
    """Checks one scenario (a target and its path and credentials)."""
    url = f"https://127.0.0.1:{scenario.port}{scenario.path}"
    problems = []
    status, fields, _, _ = curl(url, cacert, scenario.headers, source=DENIED_SOURCE)
    if status != 403:
        problems.append(f"from {DENIED_SOURCE}: status {status}, expected 403")
    problems += [f"403: {p}" for p in _security_header_problems(fields)]

    status, fields, body, _ = curl(url, cacert, scenario.headers)
    if status != 200:
        problems.append(f"allowed: status {status}, expected 200")
    problems += [f"200: {p}" for p in _security_header_problems(fields)]
    if body != BODY:
        problems.append(f"200: body {body[:120]!r}, expected the upstream's 100 bytes")
    if fields.get("content-type") != ["text/plain"]:
        problems.append(f"200: content-type {fields.get('content-type')}")

    if scenario.headers:
        status, _, _, _ = curl(url, cacert)
        if status != 401:
            problems.append(f"without credentials: status {status}, expected 401")

    status, _, body, version = curl(url, cacert, scenario.headers, http2=True)
    if version != "2" or status != 200 or body != BODY:
        problems.append(f"h2: HTTP/{version} status {status}, expected h2 by ALPN and 200")
    if not tls_handshake(scenario.port, "-tls1_2"):
        problems.append("TLS 1.2 refused")
    if tls_handshake(scenario.port, "-tls1_1"):
        problems.append("TLS 1.1 accepted")
    if problems:
        raise BenchError(f"{scenario.label} fails verification:\n  " + "\n  ".join(problems))
    log(f"   {scenario.label}: 403 from {DENIED_SOURCE}, 200 with exact headers and body, "
        "h2 by ALPN, TLS 1.2 accepted, TLS 1.1 refused")
