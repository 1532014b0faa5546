"""The proxies under test and their upstream, each configured the same way:
TLS 1.2/1.3 with h2 ALPN and one ECDSA P-256 certificate, Gatehouse's
default security headers on every response (403s included), an allowlist
of 127.0.0.1/32, a keep-alive upstream, and 2 worker threads or processes."""

import hashlib
import hmac
import base64
import json
import os
import secrets
import socket
import subprocess
import time
from pathlib import Path

from .system import BenchError, process_tree

# Ports away from the ones the older bench scripts and tests use.
UPSTREAM_PORT = 28400
ALLOWED = "127.0.0.1/32"
# Open files a server may have: raise_fd_limit() sets it before they start.
FD_LIMIT = 20000
# 100 bytes, as the upstream sends it.
BODY = b"gatehouse-bench-" * 6 + b"body"
assert len(BODY) == 100

# Gatehouse's defaults (SecurityHeaders::default in policies/src/model.rs);
# every target sends exactly these.
SECURITY_HEADERS = {
    "strict-transport-security": "max-age=31536000; includeSubDomains",
    "content-security-policy": "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'; object-src 'none'",
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "permissions-policy": "camera=(), microphone=(), geolocation=(), payment=(), usb=()",
    "cross-origin-opener-policy": "same-origin",
    "cross-origin-resource-policy": "same-origin",
}
HS256_SECRET = "bench-hs256-secret-of-more-than-32-bytes"


class Instance:
    """One running server: its root process and how it was started."""

    def __init__(self, key, label, port, argv, env=None, log_path=None, stdout_log=False):
        self.key, self.label, self.port = key, label, port
        self.argv, self.env, self.log_path = argv, env, log_path
        self.stdout_log = stdout_log
        self.process = None

    def start(self):
        probe = socket.socket()
        # As the servers do: connections in TIME_WAIT do not hold the port.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", self.port))
        except OSError as error:
            raise BenchError(f"port {self.port} for {self.label} is taken: {error}") from error
        finally:
            probe.close()
        log = open(self.log_path, "ab")
        env = {k: v for k, v in os.environ.items() if k != "GATEHOUSE_LOG"}
        env.update(self.env or {})
        self.process = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, env=env)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise BenchError(f"{self.label} exited at start: {tail(self.log_path)}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                time.sleep(0.3)  # Every worker accepting, not just the first.
                return self
            except OSError:
                time.sleep(0.1)
        raise BenchError(f"{self.label} does not listen on {self.port}: {tail(self.log_path)}")

    def pids(self):
        """Its processes, and those of the helpers it cannot run without
        (Redis for shared limits), whose CPU is part of its cost."""
        own = process_tree(self.process.pid)
        return own + [pid for helper in getattr(self, "helpers", []) for pid in helper.pids()]

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def tail(path, lines=15):
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def make_certs(binaries, work):
    """`gatehouse-gateway certs dev`: rcgen's default key, ECDSA P-256."""
    certs = work / "certs"
    subprocess.run([str(binaries / "gatehouse-gateway"), "certs", "dev", "--out", str(certs),
                    "--host", "localhost", "--host", "127.0.0.1"],
                   check=True, capture_output=True)
    key_text = subprocess.run(["openssl", "pkey", "-in", str(certs / "server-key.pem"), "-text", "-noout"],
                              check=True, capture_output=True, text=True).stdout
    if "prime256v1" not in key_text and "P-256" not in key_text:
        raise BenchError("the dev certificate's key is not ECDSA P-256")
    combined = certs / "server-combined.pem"
    combined.write_text((certs / "server.pem").read_text() + (certs / "server-key.pem").read_text())
    return certs


def _nginx_headers():
    return "\n".join(f"    add_header {name} \"{value}\" always;" for name, value in SECURITY_HEADERS.items())


def _nginx_file(prefix, workers, keepalive_timeout, http_block):
    """An nginx configuration in the foreground, everything under prefix;
    returns the command that runs it."""
    prefix.mkdir(exist_ok=True)
    conf = f"""
worker_processes {workers};
daemon off;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
worker_rlimit_nofile {FD_LIMIT};
events {{ worker_connections {FD_LIMIT - 100}; }}
http {{
  access_log off;
  client_body_temp_path {prefix}; proxy_temp_path {prefix}; fastcgi_temp_path {prefix};
  uwsgi_temp_path {prefix}; scgi_temp_path {prefix};
  keepalive_requests 100000000;
  keepalive_timeout {keepalive_timeout};
{http_block}
}}
"""
    (prefix / "nginx.conf").write_text(conf)
    return ["nginx", "-p", str(prefix), "-c", str(prefix / "nginx.conf")]


def nginx_conf(work, name, port, certs, idle=False, workers=2, tls_protocols="TLSv1.2 TLSv1.3",
               ciphers=None):
    ciphers_line = f"ssl_ciphers {ciphers};" if ciphers else ""
    server = f"""
  upstream backend {{ server 127.0.0.1:{UPSTREAM_PORT}; keepalive 128; }}
  server {{
    listen 127.0.0.1:{port} ssl http2;
    ssl_certificate {certs}/server.pem;
    ssl_certificate_key {certs}/server-key.pem;
    ssl_protocols {tls_protocols};
    {ciphers_line}
    allow {ALLOWED};
    deny all;
{_nginx_headers()}
    location / {{
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_hide_header Server;
    }}
  }}"""
    argv = _nginx_file(work / name, workers, "600s" if idle else "75s", server)
    return argv, work / name / "out.log"


def upstream_instance(work):
    """The keep-alive upstream: its own nginx, one worker, 100-byte body."""
    prefix = work / "upstream"
    server = f"""
  server {{
    listen 127.0.0.1:{UPSTREAM_PORT} backlog=4096;
    location / {{ default_type text/plain; return 200 "{BODY.decode()}"; }}
    # Reads the whole request body before answering (nginx buffers it for
    # proxy_pass): the soak's stalled-body clients need an upstream that waits.
    location ~ /upload$ {{
      rewrite ^ / break;
      proxy_pass http://127.0.0.1:{UPSTREAM_PORT};
    }}
  }}"""
    argv = _nginx_file(prefix, 1, "600s", server)
    return Instance("upstream", "upstream (nginx)", UPSTREAM_PORT, argv, log_path=prefix / "out.log")


def haproxy_maxconn():
    """HAProxy reserves two descriptors per connection (client and server)."""
    return FD_LIMIT // 2 - 100


def haproxy_instance(work, port, certs, idle=False):
    prefix = work / "haproxy"
    prefix.mkdir(exist_ok=True)
    headers = "\n".join(f"  http-after-response set-header {name} \"{value}\""
                        for name, value in SECURITY_HEADERS.items())
    keep = "600s" if idle else "75s"
    conf = f"""
global
  nbthread 2
  maxconn {haproxy_maxconn()}
  ssl-default-bind-options ssl-min-ver TLSv1.2
defaults
  mode http
  timeout connect 5s
  timeout client {keep}
  timeout server 60s
  timeout http-keep-alive {keep}
frontend proxy
  bind 127.0.0.1:{port} ssl crt {certs}/server-combined.pem alpn h2,http/1.1
  http-request deny deny_status 403 unless {{ src {ALLOWED} }}
{headers}
  http-after-response del-header server
  default_backend upstream
backend upstream
  http-reuse always
  server upstream 127.0.0.1:{UPSTREAM_PORT}
"""
    (prefix / "haproxy.cfg").write_text(conf)
    return Instance("haproxy", "HAProxy", port, ["haproxy", "-db", "-f", str(prefix / "haproxy.cfg")],
                    log_path=prefix / "out.log")


def caddy_instance(work, port, certs, idle=False):
    prefix = work / "caddy"
    prefix.mkdir(exist_ok=True)
    headers = "\n".join(f"    {name} \"{value}\"" for name, value in SECURITY_HEADERS.items())
    conf = f"""{{
  admin off
  auto_https off
  servers {{
    protocols h1 h2
    timeouts {{
      idle {"600s" if idle else "75s"}
    }}
  }}
}}
https://127.0.0.1:{port} {{
  bind 127.0.0.1
  tls {certs}/server.pem {certs}/server-key.pem {{
    protocols tls1.2 tls1.3
  }}
  header {{
{headers}
    -server
  }}
  @denied not remote_ip {ALLOWED}
  respond @denied 403
  reverse_proxy 127.0.0.1:{UPSTREAM_PORT}
}}
"""
    (prefix / "Caddyfile").write_text(conf)
    env = {"GOMAXPROCS": "2", "HOME": str(prefix), "XDG_DATA_HOME": str(prefix),
           "XDG_CONFIG_HOME": str(prefix)}
    return Instance("caddy", "Caddy", port,
                    ["caddy", "run", "--adapter", "caddyfile", "--config", str(prefix / "Caddyfile")],
                    env=env, log_path=prefix / "out.log")


def pingora_instance(work, port, certs, binaries):
    prefix = work / "pingora"
    prefix.mkdir(exist_ok=True)
    argv = [str(binaries / "pingora-baseline"), "--listen", f"127.0.0.1:{port}",
            "--cert", str(certs / "server.pem"), "--key", str(certs / "server-key.pem"),
            "--upstream", f"127.0.0.1:{UPSTREAM_PORT}", "--allow", ALLOWED, "--threads", "2"]
    return Instance("pingora", "bare Pingora", port, argv, log_path=prefix / "out.log")


def api_key():
    """A key as `gatehouse-gateway api-key` makes one, and its SHA-256."""
    key = "gh_" + base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()
    return key, hashlib.sha256(key.encode()).hexdigest()


def hs256_jwt(lifetime=30 * 86400):
    def part(value):
        raw = json.dumps(value, separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
    now = int(time.time())
    signing_input = part({"alg": "HS256", "typ": "JWT"}) + "." + part(
        {"iss": "bench-issuer", "aud": "gatehouse", "sub": "bench-user", "iat": now, "exp": now + lifetime})
    signature = hmac.new(HS256_SECRET.encode(), signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + base64.urlsafe_b64encode(signature).rstrip(b"=").decode()


# The JWT and API-key routes again, each with its own assertion key: HS256
# assertions instead of EdDSA (README, "A route's own assertion key").
MAC_ROUTES = f"""
[[route]]
name = "jwt-mac"
path = "/jwt-mac/"
upstream = "http://127.0.0.1:{UPSTREAM_PORT}"
roles = ["viewer"]
assertion_key = "{secrets.token_urlsafe(32)}"
[[route]]
name = "key-mac"
path = "/key-mac/"
upstream = "http://127.0.0.1:{UPSTREAM_PORT}"
roles = ["viewer"]
assertion_key = "{secrets.token_urlsafe(32)}"
"""


def gatehouse_policy(port, certs, api_key_hash, idle=False, public_path="/", extra=""):
    """The public route ("/"), a JWT route ("/jwt/") and an API-key route
    ("/key/"): RBAC role, rate limits checked but lifted, an assertion
    signed for the upstream (the default). `extra` adds tables (the
    session route's)."""
    limits = ('max_connections = 30000\nmax_connections_per_address = 30000\n'
              'client_read_timeout = "600s"\n') if idle else "max_connections = 30000\n"
    return f"""
[listen]
https = "127.0.0.1:{port}"
public_origin = "{gatehouse_origin(port)}"
[[tls.cert]]
hosts = ["localhost", "127.0.0.1"]
cert = "{certs}/server.pem"
key = "{certs}/server-key.pem"
[network]
allow = ["{ALLOWED}"]
[limits]
{limits}
[rate_limit]
client = "1000000/s"
identity = "1000000/s"
[roles]
viewer = ["site:view"]
[[api_key]]
name = "bench"
sha256 = "{api_key_hash}"
roles = ["viewer"]
[[jwt]]
name = "bench"
issuer = "bench-issuer"
audience = ["gatehouse"]
algorithms = ["HS256"]
hs256_secret = "{HS256_SECRET}"
[jwt.claims]
default_roles = ["viewer"]
[[route]]
name = "jwt"
path = "/jwt/"
upstream = "http://127.0.0.1:{UPSTREAM_PORT}"
roles = ["viewer"]
[[route]]
name = "key"
path = "/key/"
upstream = "http://127.0.0.1:{UPSTREAM_PORT}"
roles = ["viewer"]
[[route]]
name = "app"
path = "{public_path}"
upstream = "http://127.0.0.1:{UPSTREAM_PORT}"
public = true
{extra}"""


def gatehouse_origin(port):
    """The policy's public_origin: where logins come back to."""
    return f"https://localhost:{port}"


def gatehouse_instance(work, key, label, binary, port, certs, api_key_hash, log_level="warn", idle=False,
                       public_path="/", extra=""):
    """log_level "info" runs it as a deployment does: the default filter
    (access log at info), its output redirected to a file."""
    prefix = work / key
    prefix.mkdir(exist_ok=True)
    (prefix / "policy.toml").write_text(gatehouse_policy(port, certs, api_key_hash, idle, public_path, extra))
    env = {} if log_level == "info" else {"GATEHOUSE_LOG": log_level}
    argv = [str(binary), "run", "--policy", str(prefix / "policy.toml"), "--threads", "2"]
    return Instance(key, label, port, argv, env=env, log_path=prefix / "out.log")


def redis_instance(work, port):
    """redis-server for the shared-limits scenario: no persistence."""
    prefix = work / "redis"
    prefix.mkdir(exist_ok=True)
    argv = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no", "--dir", str(prefix)]
    return Instance("redis", "Redis", port, argv, log_path=prefix / "out.log")
