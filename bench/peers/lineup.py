"""Which targets run: the peers, the bare Pingora baseline, and Gatehouse's
scenarios (one binary, or two for an A/B comparison of builds)."""

from pathlib import Path

from . import session, targets
from .load import Scenario

PORTS = {"nginx": 28441, "haproxy": 28442, "caddy": 28443, "pingora": 28444,
         "gatehouse": 28445, "gatehouse-info": 28446, "gatehouse-redis": 28447, "redis": 28448}
# An A/B run's second binary listens 10 ports higher.
B_OFFSET = 10
FAMILIES = ["nginx", "haproxy", "caddy", "pingora", "gatehouse", "gatehouse-info",
            "gatehouse-jwt", "gatehouse-key", "gatehouse-session", "gatehouse-jwt-mac",
            "gatehouse-key-mac", "gatehouse-redis"]
# The routes with their own assertion key (HS256 assertions).
MAC_FAMILIES = {"gatehouse-jwt-mac", "gatehouse-key-mac"}
IDENTITY_FAMILIES = {"gatehouse", "gatehouse-jwt", "gatehouse-key", "gatehouse-session"} | MAC_FAMILIES


def gatehouse_builds(binaries, given):
    """[(suffix, label suffix, binary)]: the built one, or the --gatehouse-bin
    paths (two for A/B)."""
    if not given:
        return [("", "", binaries / "gatehouse-gateway")]
    if len(given) == 1:
        return [("", "", Path(given[0]).resolve())]
    return [(f"-{tag}", f" {tag.upper()}", Path(path).resolve())
            for tag, path in zip("ab", given)]


def build(work, certs, binaries, families, gatehouse_bins, idle=False):
    """(instances to start, scenarios to measure), in table order."""
    instances, scenarios = [], []
    key, key_hash = targets.api_key()
    token = targets.hs256_jwt()
    peers = {
        "nginx": lambda: targets.Instance("nginx", "nginx", PORTS["nginx"], *_nginx(work, certs, idle)),
        "haproxy": lambda: targets.haproxy_instance(work, PORTS["haproxy"], certs, idle),
        "caddy": lambda: targets.caddy_instance(work, PORTS["caddy"], certs, idle),
        "pingora": lambda: targets.pingora_instance(work, PORTS["pingora"], certs, binaries),
    }
    for family, make in peers.items():
        if family in families:
            instance = make()
            instances.append(instance)
            scenarios.append(Scenario(family, instance.label, instance))
    builds = gatehouse_builds(binaries, gatehouse_bins)
    logins = "gatehouse-session" in families
    if logins:
        # Before the gateways: they fetch the provider's discovery document.
        origins = [targets.gatehouse_origin(PORTS["gatehouse"] + (B_OFFSET if suffix == "-b" else 0))
                   for suffix, _, _ in builds]
        instances.append(session.provider_instance(work, origins))
    for suffix, tag, binary in builds:
        offset = B_OFFSET if suffix == "-b" else 0
        if families & IDENTITY_FAMILIES:
            port = PORTS["gatehouse"] + offset
            extra = session.policy() if logins else ""
            # Only when asked for: a build from before `assertion_key`
            # refuses the key, and A/B runs of such builds must still start.
            if families & MAC_FAMILIES:
                extra += targets.MAC_ROUTES
            warn = targets.gatehouse_instance(work, "gatehouse" + suffix, "Gatehouse" + tag, binary,
                                              port, certs, key_hash, "warn", idle, extra=extra)
            instances.append(warn)
            if "gatehouse" in families:
                scenarios.append(Scenario("gatehouse" + suffix,
                                          f"Gatehouse{tag} public, log at warn", warn))
            if "gatehouse-jwt" in families:
                scenarios.append(Scenario("gatehouse-jwt" + suffix, f"Gatehouse{tag} JWT route", warn,
                                          "/jwt/", {"authorization": f"Bearer {token}"}, ("h1",)))
            if "gatehouse-key" in families:
                scenarios.append(Scenario("gatehouse-key" + suffix, f"Gatehouse{tag} API-key route",
                                          warn, "/key/", {"x-api-key": key}, ("h1",)))
            if "gatehouse-jwt-mac" in families:
                scenarios.append(Scenario("gatehouse-jwt-mac" + suffix,
                                          f"Gatehouse{tag} JWT route, HS256 assertion", warn,
                                          "/jwt-mac/", {"authorization": f"Bearer {token}"}, ("h1",)))
            if "gatehouse-key-mac" in families:
                scenarios.append(Scenario("gatehouse-key-mac" + suffix,
                                          f"Gatehouse{tag} API-key route, HS256 assertion", warn,
                                          "/key-mac/", {"x-api-key": key}, ("h1",)))
            if logins:
                # The cookie header is filled in by log_in() once it runs.
                scenarios.append(Scenario("gatehouse-session" + suffix,
                                          f"Gatehouse{tag} session-cookie route", warn, "/session/",
                                          {}, ("h1",), login=targets.gatehouse_origin(port)))
        if "gatehouse-info" in families:
            info = targets.gatehouse_instance(work, "gatehouse-info" + suffix, "Gatehouse" + tag, binary,
                                              PORTS["gatehouse-info"] + offset, certs, key_hash, "info",
                                              idle)
            instances.append(info)
            scenarios.append(Scenario("gatehouse-info" + suffix,
                                      f"Gatehouse{tag} public, access log at info",
                                      info, protocols=("h1",)))
    if "gatehouse-redis" in families:
        redis = targets.redis_instance(work, PORTS["redis"])
        instances.append(redis)
        shared = f'\n[shared_state]\nredis = "redis://127.0.0.1:{PORTS["redis"]}"\n'
        for suffix, tag, binary in builds:
            offset = B_OFFSET if suffix == "-b" else 0
            instance = targets.gatehouse_instance(work, "gatehouse-redis" + suffix, "Gatehouse" + tag,
                                                  binary, PORTS["gatehouse-redis"] + offset, certs,
                                                  key_hash, "warn", idle, extra=shared)
            # Redis's CPU is part of what a shared limit costs.
            instance.helpers = [redis]
            instances.append(instance)
            scenarios.append(Scenario("gatehouse-redis" + suffix,
                                      f"Gatehouse{tag} public, limits shared in Redis (CPU incl. Redis)",
                                      instance))
    return instances, scenarios


def log_in(scenarios, certs):
    """A real OpenID login for each session-cookie scenario, through the
    gateway and the provider; the cookie goes on every request after."""
    for scenario in scenarios:
        if scenario.login:
            scenario.headers["cookie"] = session.login(scenario.login, certs / "ca.pem")


def _nginx(work, certs, idle):
    argv, log_path = targets.nginx_conf(work, "nginx", PORTS["nginx"], certs, idle=idle)
    return argv, None, log_path


def ratio_pairs(scenarios, ab):
    keys = {s.key for s in scenarios}
    if ab:
        pairs = [(f"{family} B / A", f"{family}-b", f"{family}-a") for family in FAMILIES]
    else:
        pairs = [("Gatehouse / bare Pingora", "gatehouse", "pingora"),
                 ("Gatehouse / nginx", "gatehouse", "nginx"),
                 ("Gatehouse / HAProxy", "gatehouse", "haproxy"),
                 ("Gatehouse / Caddy", "gatehouse", "caddy"),
                 ("Gatehouse, access log at info / bare Pingora", "gatehouse-info", "pingora"),
                 ("Gatehouse, access log at info / Gatehouse at warn", "gatehouse-info", "gatehouse"),
                 ("Gatehouse JWT route / public route", "gatehouse-jwt", "gatehouse"),
                 ("Gatehouse API-key route / public route", "gatehouse-key", "gatehouse"),
                 ("Gatehouse session-cookie route / public route", "gatehouse-session", "gatehouse"),
                 ("Gatehouse JWT route, HS256 assertion / public route", "gatehouse-jwt-mac", "gatehouse"),
                 ("Gatehouse API-key route, HS256 assertion / public route", "gatehouse-key-mac",
                  "gatehouse"),
                 ("Gatehouse, limits shared in Redis / public route", "gatehouse-redis", "gatehouse")]
    return [p for p in pairs if p[1] in keys and p[2] in keys]
