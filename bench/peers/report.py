"""Medians and spreads of the rounds, ratios, the markdown table, the JSON
and the chart."""

import json
import statistics

METRICS = ("rps", "p99_ms", "cpu_s_per_100k")


def summarize(measurements):
    """(scenario key, protocol) → {metric: {median, min, max}}."""
    grouped = {}
    for m in measurements:
        grouped.setdefault((m["scenario"], m["protocol"]), []).append(m)
    summary = {}
    for key, runs in grouped.items():
        summary[key] = {}
        for metric in METRICS:
            values = [r[metric] for r in runs if r[metric] is not None]
            if values:
                summary[key][metric] = {"median": statistics.median(values),
                                        "min": min(values), "max": max(values)}
    return summary


def _cell(summary, key, protocol, metric):
    stats = summary.get((key, protocol), {}).get(metric)
    if not stats:
        return "—"
    if metric == "rps":
        fmt = lambda v: f"{v / 1000:.1f}k"  # noqa: E731
    elif metric == "p99_ms":
        fmt = lambda v: f"{v:.1f} ms"  # noqa: E731
    else:
        fmt = lambda v: f"{v:.2f}"  # noqa: E731
    return f"{fmt(stats['median'])} ({fmt(stats['min'])}–{fmt(stats['max'])})"


def ratio(summary, numerator, denominator, protocol, metric):
    a = summary.get((numerator, protocol), {}).get(metric)
    b = summary.get((denominator, protocol), {}).get(metric)
    if not a or not b or not b["median"]:
        return None
    return round(a["median"] / b["median"], 3)


def ratios(summary, pairs):
    """[(label, numerator key, denominator key)] → rows of CPU and rps
    ratios for h1 and h2."""
    rows = []
    for label, numerator, denominator in pairs:
        row = {"label": label, "numerator": numerator, "denominator": denominator}
        for protocol in ("h1", "h2"):
            for metric in ("cpu_s_per_100k", "rps"):
                row[f"{protocol}_{metric}"] = ratio(summary, numerator, denominator, protocol, metric)
        rows.append(row)
    return rows


def markdown(scenarios, summary, ratio_rows, rounds, seconds, machine):
    lines = [
        f"Medians of {rounds} interleaved rounds of {seconds:g} s each, (min–max) across rounds. "
        f"{machine['nproc']} CPUs, kernel {machine['kernel']}; load generator, proxy and upstream "
        "share them. CPU-s/100k: the proxy's own user+sys CPU per 100,000 requests.",
        "",
        "| target | h1 rps | h1 p99 | h1 CPU-s/100k | h2 rps | h2 p99 | h2 CPU-s/100k |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for s in scenarios:
        cells = [_cell(summary, s.key, p, m) for p in ("h1", "h2") for m in METRICS]
        lines.append(f"| {s.label} | " + " | ".join(cells) + " |")
    if ratio_rows:
        lines += ["", "| ratio (medians) | h1 CPU/100k | h1 rps | h2 CPU/100k | h2 rps |",
                  "|---|---:|---:|---:|---:|"]
        show = lambda v: "—" if v is None else f"{v:.2f}×"  # noqa: E731
        for row in ratio_rows:
            lines.append(f"| {row['label']} | {show(row['h1_cpu_s_per_100k'])} | {show(row['h1_rps'])} | "
                         f"{show(row['h2_cpu_s_per_100k'])} | {show(row['h2_rps'])} |")
    return "\n".join(lines) + "\n"


def write_json(path, scenarios, measurements, summary, ratio_rows, settings, machine):
    document = {
        "machine": machine,
        "settings": settings,
        "scenarios": [{"key": s.key, "label": s.label, "path": s.path,
                       "protocols": list(s.protocols)} for s in scenarios],
        "measurements": measurements,
        "summary": [{"scenario": k, "protocol": p, **v} for (k, p), v in summary.items()],
        "ratios": ratio_rows,
    }
    path.write_text(json.dumps(document, indent=2) + "\n")


def chart(path, scenarios, summary):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(13, 5.5))
    labels = [s.label for s in scenarios]
    width = 0.38
    for axis, metric, title in ((axes[0], "rps", "requests/s (higher is better)"),
                                (axes[1], "cpu_s_per_100k", "proxy CPU-s per 100k requests (lower is better)")):
        for offset, protocol in ((-width / 2, "h1"), (width / 2, "h2")):
            positions, medians, low, high = [], [], [], []
            for i, s in enumerate(scenarios):
                stats = summary.get((s.key, protocol), {}).get(metric)
                if stats:  # Some scenarios are measured over HTTP/1.1 only.
                    positions.append(i + offset)
                    medians.append(stats["median"])
                    low.append(stats["median"] - stats["min"])
                    high.append(stats["max"] - stats["median"])
            axis.bar(positions, medians, width, yerr=[low, high], capsize=3,
                     label="HTTP/1.1 (wrk -c64)" if protocol == "h1" else "HTTP/2 (h2load -c32 -m10)")
        axis.set_title(title)
        axis.set_xticks(range(len(scenarios)))
        axis.set_xticklabels(labels, rotation=30, ha="right", fontsize=8)
        axis.grid(axis="y", alpha=0.3)
        axis.legend(fontsize=8)
    figure.suptitle("Gatehouse and its peers: TLS, h2 ALPN, security headers, allowlist, "
                    "keep-alive upstream (medians, bars: min–max)", fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
