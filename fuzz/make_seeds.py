#!/usr/bin/env python3
"""Writes the seed corpus under fuzz/corpus/. Run by hand when seeds change;
tests/fuzz only replays what is committed. Needs Python's `cryptography`
for the session seeds (sealed like gateway/src/identity/session.rs:
HKDF-SHA256 then AES-256-GCM, the cookie name as AAD).

Each seed is a small, meaningful input: real attack strings, the repo's
example policies, real cookies and tokens. Reproducers of findings are
added by hand as `<target>/crash-<what>` and documented in fuzz/README.md.
"""
import base64
import json
import os
import pathlib

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

FUZZ = pathlib.Path(__file__).resolve().parent
REPO = FUZZ.parent
CORPUS = FUZZ / "corpus"

# Must match TEST_KEY in fuzz_targets/session.rs.
SESSION_KEY = b"gatehouse-fuzz-session-key-0123456789"
SESSION_COOKIE = b"__Host-gatehouse"
FLOW_COOKIE = b"__Host-gatehouse-flow"


def write(target, name, data):
    d = CORPUS / target
    d.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    (d / name).write_bytes(data)


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


PATHS = {
    "root": "/",
    "query": "/api/users?id=1&sort=name",
    "dots": "/a/./b/../c",
    "encoded-dots": "/%2e%2e/etc/passwd",
    "mixed-dots": "/.%2e/admin",
    "encoded-slash": "/..%2f..%2fetc/passwd",
    "encoded-slash-admin": "/public%2f..%2fadmin",
    "tomcat-params": "/admin;jsessionid=x/secret",
    "tomcat-dotdot": "/public/..;/admin",
    "encoded-backslash": "/a%5c..%5cadmin",
    "backslash": "/public\\..\\admin",
    "double-encoded": "/%252e%252e/admin",
    "double-encoded-split": "/%25%32%65%25%32%65/admin",
    "overlong-dot": "/%C0%AE%C0%AE/admin",
    "fullwidth-dot": "/public/%EF%BC%8E%EF%BC%8E/admin",
    "nul": "/admin%00.html",
    "upper": "/ADMIN",
    "mixed-case": "/Admin/x",
    "encoded-letter": "/%61dmin",
    "empty-segments": "//admin//x",
    "trailing-dot": "/admin/.",
    "trailing-encoded-dot": "/admin/%2E",
    "utf8": "/caf%C3%A9",
    "c1-control": "/a%C2%85b",
    "fragment": "/a#frag",
    "query-escapes": "/a?x=%2F&y=1",
    "absolute-form": "http://evil.example/admin",
    "asterisk": "*",
    "iis-unicode": "/%u002e%u002e/admin",
    "climb": "/a/../../b",
    "windows-trailing": "/admin.",
    "space": "/admin%20",
}

HEADS = {
    "get": "GET / HTTP/1.1\r\nHost: a.test\r\n\r\n",
    "post-length": "POST /api HTTP/1.1\r\nHost: a.test\r\nContent-Length: 5\r\n\r\n",
    "chunked": "POST /api HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n",
    "cl-te": "POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n",
    "te-cl": "POST / HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
    "te-obfuscated": "POST / HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: xchunked\r\n\r\n",
    "te-list": "POST / HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
    "te-twice": "POST / HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n",
    "te-tab": "POST / HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding:\tchunked\r\n\r\n",
    "te-upper": "POST / HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: CHUNKED\r\n\r\n",
    "cl-twice": "POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
    "cl-list": "POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 1, 1\r\n\r\n",
    "cl-plus": "POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: +5\r\n\r\n",
    "cl-huge": "POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 99999999999999999999\r\n\r\n",
    "host-twice": "GET / HTTP/1.1\r\nHost: a.test\r\nHost: b.test\r\n\r\n",
    "no-host": "GET / HTTP/1.1\r\n\r\n",
    "http10": "GET / HTTP/1.0\r\n\r\n",
    "lf-only": "POST / HTTP/1.1\nHost: a.test\nContent-Length: 1\nTransfer-Encoding: chunked\n\n",
    "connect": "CONNECT internal.test:443 HTTP/1.1\r\nHost: internal.test:443\r\n\r\n",
    "trace": "TRACE / HTTP/1.1\r\nHost: a.test\r\n\r\n",
    "lowercase-method": "post /admin HTTP/1.1\r\nHost: a.test\r\n\r\n",
    "h2c": "GET / HTTP/1.1\r\nHost: a.test\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n",
    "websocket": "GET /ws HTTP/1.1\r\nHost: a.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    "hop-by-hop": "GET / HTTP/1.1\r\nHost: a.test\r\nConnection: close, X-Gatehouse-User\r\nX-Gatehouse-User: admin\r\n\r\n",
}

CLIENT_IP = {
    "untrusted-peer": "header x-forwarded-for\npeer 203.0.113.9\ntrust 10.0.0.0/8\nattacker 1.2.3.4\n",
    "xff-chain": "header x-forwarded-for\npeer 10.0.0.1\ntrust 10.0.0.0/8\nattacker 6.6.6.6, 10.0.0.99\njoin\nclient 203.0.113.7\nhop 10.0.0.3\n",
    "xff-lines": "header x-forwarded-for\npeer 10.0.0.1\ntrust 10.0.0.0/8\nattacker 6.6.6.6\nattacker unknown, 10.1.2.3\nclient 198.51.100.4 port\n",
    "xff-unknown": "header x-forwarded-for\npeer 10.0.0.1\ntrust 10.0.0.0/8\nattacker 6.6.6.6\nclient unknown\nhop 10.0.0.7\n",
    "forwarded-v6": "header forwarded\npeer 10.0.0.1\ntrust 10.0.0.0/8\nattacker for=10.0.0.5;proto=https, for=\"[2001:db8::66]:1\"\njoin\nclient 2001:db8::1 port\nhop 10.0.0.3\n",
    "forwarded-obfuscated": "header forwarded\npeer 10.0.0.1\ntrust 10.0.0.0/8\nattacker for=\"_gazonk\", For=\"[2001:db8:cafe::17]:4711\"\nclient _hidden\nhop 10.0.0.2 port\n",
    "forwarded-quoted-comma": "header forwarded\npeer 10.0.0.1\ntrust 10.0.0.0/8\nattacker for=\"6.6.6.6, for=7.7.7.7\nattacker by=10.0.0.1;for=\"[::ffff:10.0.0.9]\";host=a\njoin\nclient 192.0.2.60\n",
    "mapped-peer": "header x-forwarded-for\npeer ::ffff:10.0.0.1\ntrust 10.0.0.0/8\ntrust 2001:db8:ffff::/48\nattacker 6.6.6.6\nclient 192.0.2.43\nhop 2001:db8:ffff::1\n",
    "obs-text": "header x-forwarded-for\npeer 10.0.0.1\ntrust 10.0.0.0/8\nattacker 6.6.6.6 \xff\njoin\nclient 192.0.2.1\n",
}

CRON = [
    ("every-5-min", "*/5 * * * *", "UTC", 1750000000),
    ("berlin-gap", "30 2 * * *", "Europe/Berlin", 1743249600),
    ("new-york-gap", "0,30 2,3 * * *", "America/New_York", 1741500000),
    ("berlin-fold", "30 2 * * *", "Europe/Berlin", 1761393600),
    ("new-york-fold", "*/15 * * * *", "America/New_York", 1762063800),
    ("dom-or-dow", "0 0 13 * FRI", "UTC", 1748736000),
    ("dom-step-and-dow", "0 0 */2 * FRI", "UTC", 1748736000),
    ("last-feb", "0 0 L FEB *", "UTC", 1704067200),
    ("weekday-nearest", "0 9 15W * *", "UTC", 1748736000),
    ("nth-weekday", "0 9 * * MON#2", "Asia/Kolkata", 1748736000),
    ("last-friday", "0 9 * * FRIL", "Australia/Lord_Howe", 1748736000),
    ("seconds", "*/20 * * * * *", "Pacific/Chatham", 1748736000),
    ("macro", "@weekly", "America/St_Johns", 1748736000),
    ("never", "0 0 30 2 *", "UTC", 1748736000),
    ("quartz", "0 0 12 ? * MON-FRI", "Europe/Dublin", 1748736000),
    ("names", "0 9,17 * JAN-MAR 1", "Antarctica/Troll", 1748736000),
    ("reboot", "@reboot", "UTC", 0),
    ("bad-zone", "* * * * *", "Mars/Olympus", 0),
    ("samoa-skipped-day", "0 12 * * *", "Pacific/Apia", 1325160000),
]


def seal(plain, cookie=SESSION_COOKIE, key=SESSION_KEY):
    okm = HKDF(algorithm=hashes.SHA256(), length=32, salt=b"gatehouse-session-v1",
               info=b"aes-256-gcm").derive(key)
    nonce = os.urandom(12)
    return b64(nonce + AESGCM(okm).encrypt(nonce, plain, cookie))


def sessions():
    data = {"sub": "alice", "email": "alice@example.test", "roles": ["runner"],
            "idp": "dex", "iat": 1750000000, "seen": 1750000100}
    full = json.dumps(data, separators=(",", ":")).encode()
    write("session", "session", seal(full))
    write("session", "session-with-id-token",
          seal(json.dumps({**data, "idt": "eyJhbGciOiJSUzI1NiJ9.e30.sig"}).encode()))
    write("session", "empty-plaintext", seal(b""))
    write("session", "not-json", seal(b"\x00\xff not json"))
    write("session", "flow-cookie", seal(b'{"state":"s","nonce":"n"}', cookie=FLOW_COOKIE))
    write("session", "other-key", seal(full, key=b"another-key-another-key-another-key!"))
    good = seal(full)
    write("session", "tampered", good[:-2] + ("A" if good[-2] != "A" else "B") + good[-1])
    write("session", "truncated", good[:20])
    write("session", "padded", good + "==")
    write("session", "standard-alphabet", good.replace("-", "+").replace("_", "/"))
    write("session", "oversized", seal(b"x" * 3000))


def jwt(header, payload, sig="c2ln"):
    enc = lambda v: b64(json.dumps(v, separators=(",", ":")).encode()) if not isinstance(v, str) else v
    return f"{enc(header)}.{enc(payload)}.{sig}"


def tokens():
    claims = {"iss": "https://idp.example.test", "sub": "alice", "aud": "gatehouse",
              "exp": 1900000000, "nbf": 1700000000}
    cases = {
        "rs256": ({"alg": "RS256", "typ": "JWT", "kid": "k1"}, claims),
        "es256": ({"alg": "ES256", "kid": "ec"}, claims),
        "eddsa": ({"alg": "EdDSA"}, claims),
        "ps256": ({"alg": "PS256", "typ": "at+jwt"}, claims),
        "alg-none": ({"alg": "none", "typ": "JWT"}, claims),
        "alg-none-case": ({"alg": "nOnE"}, claims),
        "hs256-confusion": ({"alg": "HS256", "kid": "rsa-key"}, claims),
        "unknown-alg": ({"alg": "HS1"}, claims),
        "kid-traversal": ({"alg": "HS256", "kid": "../../../../dev/null"}, claims),
        "kid-sql": ({"alg": "RS256", "kid": "x' UNION SELECT 'key"}, claims),
        "jku": ({"alg": "RS256", "jku": "https://evil.example/jwks.json", "kid": "k1"}, claims),
        "x5u": ({"alg": "RS256", "x5u": "https://evil.example/cert.pem"}, claims),
        "embedded-jwk": ({"alg": "RS256", "jwk": {"kty": "RSA", "n": "0vx7agoebGc", "e": "AQAB"}}, claims),
        "crit": ({"alg": "RS256", "crit": ["exp"], "exp": 1}, claims),
        "crit-b64": ({"alg": "RS256", "crit": ["b64"], "b64": False}, claims),
        "no-iss": ({"alg": "RS256"}, {"sub": "alice"}),
        "iss-not-string": ({"alg": "RS256"}, {"iss": ["a", "b"], "sub": "x"}),
        "duplicate-alg": ('{"alg":"RS256","alg":"none"}', claims),
    }
    for name, (header, payload) in cases.items():
        if isinstance(header, str):
            header = b64(header.encode())
        write("jwt_header", name, jwt(header, payload))
    write("jwt_header", "two-segments", jwt({"alg": "RS256"}, claims).rsplit(".", 1)[0])
    write("jwt_header", "jwe", "eyJhbGciOiJSU0EtT0FFUCIsImVuYyI6IkEyNTZHQ00ifQ.a.b.c.d")
    write("jwt_header", "padded", b64(b'{"alg":"RS256"}') + "==.e30.c2ln")


def policies():
    for path in [*sorted((REPO / "policies" / "examples").glob("*.toml")), REPO / "policies" / "quickstart.toml"]:
        write("policy", path.stem, path.read_bytes())
    write("policy", "syntax-error", "[listen\nhttps = \"127.0.0.1:8443\"\n")
    write("policy", "unknown-key", "[listen]\nhttps = \"127.0.0.1:8443\"\nhtps = 1\n")
    write("policy", "multibyte-near-error", "# Zürich ☃\n[listen]\nhttps = \"☃\"\npublic_origin = 5\n")
    write("policy", "env-secret",
          "[identity.session]\nkeys = [\"${GATEHOUSE_FUZZ_KEY}\", \"${MISSING}\"]\n")
    write("policy", "empty", "")


def main():
    for name, path in PATHS.items():
        write("path", name, path)
    for name, head in HEADS.items():
        write("framing", name, head)
    for name, text in CLIENT_IP.items():
        write("client_ip", name, text.encode("latin-1"))
    for name, expr, tz, start in CRON:
        write("cron", name, f"{expr}\n{tz}\n{start}")
    sessions()
    tokens()
    policies()


if __name__ == "__main__":
    main()
