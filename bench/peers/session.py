"""The session-cookie route: a real OpenID login, then a cookie to load with.

The provider is the test suite's (tests/idp/server.mjs, panva's
oidc-provider on node). The login is walked the way a browser would do it,
with the standard library: the gateway's /.gatehouse/login, the provider's
login and consent forms, the callback; what comes back is the gateway's
session cookie, which the load generators then send on every request."""

import html
import http.client
import json
import re
import ssl
import subprocess
import urllib.parse

from .system import BenchError, REPO
from . import targets

IDP_PORT = 28490
CLIENT_ID, CLIENT_SECRET = "gatehouse-bench", "bench-client-secret"
USER = "bench"
SESSION_KEY = "a-session-key-for-the-benchmark-that-is-long-enough-0123456789"
SESSION_COOKIE = "__Host-gatehouse"


def issuer():
    return f"http://127.0.0.1:{IDP_PORT}"


def policy():
    """The policy lines a session route needs: the session key, the
    provider, and the route itself (role viewer, like the JWT route)."""
    return f"""
[session]
keys = ["{SESSION_KEY}"]
[[oidc]]
name = "bench-idp"
issuer = "{issuer()}"
client_id = "{CLIENT_ID}"
client_secret = "{CLIENT_SECRET}"
scopes = ["openid", "email"]
[oidc.claims]
default_roles = ["viewer"]
[[route]]
name = "session"
path = "/session/"
upstream = "http://127.0.0.1:{targets.UPSTREAM_PORT}"
roles = ["viewer"]
"""


def provider_instance(work, gateway_origins):
    idp = REPO / "tests/idp"
    if not (idp / "node_modules/oidc-provider").is_dir():
        done = subprocess.run(["npm", "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--silent"],
                              cwd=idp)
        if done.returncode != 0:
            raise BenchError("npm ci in tests/idp failed (the session route needs the test provider)")
    clients = [{"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET,
                "redirect_uris": [f"{origin}/.gatehouse/callback" for origin in gateway_origins],
                "post_logout_redirect_uris": [f"{origin}/" for origin in gateway_origins]}]
    users = {USER: {"email": "bench@example.com", "email_verified": True}}
    prefix = work / "idp"
    prefix.mkdir(exist_ok=True)
    env = {"IDP_PORT": str(IDP_PORT), "IDP_CLIENTS": json.dumps(clients), "IDP_USERS": json.dumps(users)}
    return targets.Instance("idp", "OpenID provider (oidc-provider)", IDP_PORT,
                            ["node", str(idp / "server.mjs")], env=env, log_path=prefix / "out.log")


class Browser:
    """Just enough of a browser: one cookie jar per host (paths ignored:
    the provider's cookies are scoped to the interaction being walked),
    no automatic redirects."""

    def __init__(self, ca_file):
        self.tls = ssl.create_default_context(cafile=str(ca_file))
        self.jars = {}

    def request(self, method, url, form=None):
        parts = urllib.parse.urlsplit(url)
        if parts.scheme == "https":
            conn = http.client.HTTPSConnection(parts.hostname, parts.port, context=self.tls, timeout=10)
        else:
            conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
        jar = self.jars.setdefault(parts.netloc, {})
        headers = {"accept": "text/html"}
        if jar:
            headers["cookie"] = "; ".join(f"{k}={v}" for k, v in jar.items())
        body = None
        if form is not None:
            body = urllib.parse.urlencode(form)
            headers["content-type"] = "application/x-www-form-urlencoded"
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        conn.request(method, target, body=body, headers=headers)
        response = conn.getresponse()
        text = response.read().decode(errors="replace")
        for value in response.headers.get_all("set-cookie") or []:
            name, _, rest = value.partition("=")
            jar[name.strip()] = rest.split(";", 1)[0]
        conn.close()
        location = response.headers.get("location")
        return response.status, urllib.parse.urljoin(url, location) if location else None, text


def login(gateway_origin, ca_file):
    """Logs in through the gateway and the provider; returns the Cookie
    header value that carries the session."""
    browser = Browser(ca_file)
    status, url, text = browser.request("GET", f"{gateway_origin}/.gatehouse/login?rd=%2Fsession%2F")
    if status != 302 or not url:
        raise BenchError(f"/.gatehouse/login answered {status}: {text[:200]}")
    for _ in range(12):
        if url.startswith(gateway_origin):
            break
        status, location, text = browser.request("GET", url)
        if location:
            url = location
            continue
        action = re.search(r'<form[^>]*action="([^"]+)"', text)
        if not action:
            raise BenchError(f"the provider's page at {url} has no form: {text[:300]}")
        form = ({"prompt": "login", "login": USER, "password": "any"} if 'name="login"' in text
                else {"prompt": "consent"})
        status, url, text = browser.request("POST", urllib.parse.urljoin(url, html.unescape(action.group(1))), form)
        if not url:
            raise BenchError(f"the provider answered {status} to a form: {text[:300]}")
    else:
        raise BenchError("the provider never redirected back to the gateway")
    status, _, text = browser.request("GET", url)
    session = browser.jars.get(urllib.parse.urlsplit(gateway_origin).netloc, {}).get(SESSION_COOKIE)
    if status != 302 or not session:
        raise BenchError(f"the callback answered {status} without a session cookie: {text[:200]}")
    return f"{SESSION_COOKIE}={session}"
