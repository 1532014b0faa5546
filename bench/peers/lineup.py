"""Which targets run: the peers, the bare Pingora baseline, and Gatehouse's
scenarios (one binary, or two for an A/B comparison of builds)."""

from pathlib import Path

from . import targets
from .load import Scenario

PORTS = {"nginx": 28441, "haproxy": 28442, "caddy": 28443, "pingora": 28444,
         "gatehouse": 28445, "gatehouse-info": 28446}
# An A/B run's second binary listens 10 ports higher.
B_OFFSET = 10
FAMILIES = ["nginx", "haproxy", "caddy", "pingora", "gatehouse", "gatehouse-info",
            "gatehouse-jwt", "gatehouse-key"]


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
    for suffix, tag, binary in gatehouse_builds(binaries, gatehouse_bins):
        offset = B_OFFSET if suffix == "-b" else 0
        if families & {"gatehouse", "gatehouse-jwt", "gatehouse-key"}:
            warn = targets.gatehouse_instance(work, "gatehouse" + suffix, "Gatehouse" + tag, binary,
                                              PORTS["gatehouse"] + offset, certs, key_hash, "warn", idle)
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
        if "gatehouse-info" in families:
            info = targets.gatehouse_instance(work, "gatehouse-info" + suffix, "Gatehouse" + tag, binary,
                                              PORTS["gatehouse-info"] + offset, certs, key_hash, "info",
                                              idle)
            instances.append(info)
            scenarios.append(Scenario("gatehouse-info" + suffix,
                                      f"Gatehouse{tag} public, access log at info",
                                      info, protocols=("h1",)))
    return instances, scenarios


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
                 ("Gatehouse API-key route / public route", "gatehouse-key", "gatehouse")]
    return [p for p in pairs if p[1] in keys and p[2] in keys]
