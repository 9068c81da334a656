#!/usr/bin/env python3
"""Figures from the benchmark scripts: medians of their samples, and the README's table.

Every script under tests/bench prints one `sample` line per measurement:

    sample NAME VALUE UNIT [anchor=LABEL:VALUE] [anchor2=LABEL:VALUE] [KEY=VALUE ...]

VALUE is a number, or `fail` when the run produced none within its bound (it counts as worse
than any number). An anchor is the same thing measured in the same run on something else
(wireguard-go, boringtun-cli): the ratio is taken per run, then its median, so that the
machine's load, which moves both, cancels out.

    figures.py summarize < samples     one line per figure (tests/bench/run.sh prints these):
        NAME VALUE UNIT anchor=LABEL:VALUE ratio=X runs=N [anchor2=… ratio2=…] [min=… max=…] [KEY=…]
    figures.py readme README.md FILE   rewrites the table between the markers in README.md from
                                       FILE (run.sh's output), dated
"""

import datetime
import math
import re
import sys

BEGIN = "<!-- figures:begin (tests/bench/run.sh --readme) -->"
END = "<!-- figures:end -->"

# What each figure is, and DESIGN §9's target for it; figures not listed show their name.
DESCRIPTIONS = {
    "stale_ice_p2p_to_traffic": ("stale ICE P2P path (WireGuard dropped, STUN passing) → traffic flowing again, two NATs, relay on standby", "≤ 5 s"),
    "fault_removed_to_ice_p2p": ("that fault removed → traffic back on ICE P2P", "—"),
    "stale_relay_to_traffic": ("stale relay path (its TCP silently cut), ICE off → traffic flowing again", "≤ 5 s"),
    "remote_restart_to_traffic": ("remote engine killed and restarted with the same key → traffic flowing again", "—"),
    "remote_restart_to_ice_p2p": ("remote engine restarted → back on ICE P2P", "—"),
    "soak_false_verdicts": ("false stale verdicts in the soak: iperf3 at full load, 5 % random loss, relay and signal restarts, two network changes (`tests/bench/soak.sh`)", "0"),
    "soak_throughput": ("the soak's iperf3 throughput through the lossy tunnel", "—"),
    "soak_rss_growth_a": ("the soak: peer A's resident memory, last sample against the warm baseline (before the first event)", "no growth"),
    "soak_rss_growth_b": ("the soak: peer B's resident memory, last sample against the warm baseline", "no growth"),
    "soak_loss_only_false_verdicts": ("false stale verdicts, steady ping over ICE P2P at 5 % loss alone", "0"),
    "start_reply_lan_ice": ("start → first reply, peers on one LAN, ICE only", "≤ 500 ms"),
    "start_reply_nat_ice": ("start → first reply, both peers behind NAT, ICE only", "≤ 1.5 s"),
    "start_reply_relay": ("start → first reply, relay only (ICE off)", "≤ 1 s"),
    "roam_to_traffic": ("network change (moved behind another NAT, SIGUSR1) → traffic flowing again", "≤ 1 s"),
    "roam_to_ice_p2p": ("network change → back on ICE P2P", "—"),
    "throughput_direct": ("throughput, one TCP stream (iperf3), two engines on real tuns in two namespaces, direct path", "≥ 2.5 Gbit/s, ≥ 1.0 × wireguard-go, ≥ 2 × boringtun-cli"),
    "throughput_ice_p2p": ("throughput, the same through two peers behind NAT routers on the ICE P2P path (anchors through a port forward)", "as the direct path"),
    "memory_peers_ice": ("resident memory, one `peerlink up` with N connected peers over ICE through signal", "≤ 12 MiB at 100"),
    "memory_peers_direct": ("resident memory, one engine with N connected peers on direct paths (in-process)", "≤ 12 MiB at 100"),
    "idle_wakeups_ice": ("idle: wake-ups/s with N connected quiet peers over ICE, signal, relay and ICE configured", "≤ 1/s"),
    "idle_wakeups_relay": ("idle: wake-ups/s with N connected quiet peers on the relay (ICE off)", "≤ 1/s"),
    "idle_wakeups_lazy": ("idle: wake-ups/s with N peers idle (lazy connections, after 60 s)", "≤ 1/s"),
    "cpu_per_gb_direct": ("CPU time per GB, both engines, iperf3 paced at 500 Mbit/s, direct path", "≤ 0.5 × boringtun-cli"),
    "cpu_per_gb_ice_p2p": ("CPU time per GB, both engines, paced at 500 Mbit/s, ICE P2P path", "≤ 0.5 × boringtun-cli"),
    "cdylib_stripped": ("release cdylib `libpeerlink_ffi.so`, stripped, x86_64", "≤ 6 MiB"),
}


def describe(name):
    """NAME's description and target; a trailing _N (a peer count) is said in words."""
    if name in DESCRIPTIONS:
        return DESCRIPTIONS[name]
    base, _, n = name.rpartition("_")
    if n.isdigit() and base in DESCRIPTIONS:
        desc, target = DESCRIPTIONS[base]
        return desc.replace("with N ", "with %s " % n), target
    return name, "—"


def order(name):
    """Figures in DESIGN §9's order (DESCRIPTIONS), the others after them."""
    keys = list(DESCRIPTIONS)
    base = name.rpartition("_")[0] if name.rpartition("_")[2].isdigit() else name
    return keys.index(base) if base in keys else len(keys)

FIXED = ("anchor", "ratio", "anchor2", "ratio2", "runs", "min", "max", "failed")


def main(argv):
    if len(argv) == 2 and argv[1] == "summarize":
        for line in summarize(sys.stdin):
            print(line)
        return 0
    if len(argv) == 4 and argv[1] == "readme":
        with open(argv[3], encoding="utf-8") as f:
            figures = [parse_figure(l) for l in f if is_figure(l)]
        rewrite_readme(argv[2], [f for f in figures if f])
        return 0
    print(__doc__, file=sys.stderr)
    return 2


def summarize(lines):
    """The figure lines for the sample lines among LINES, in the order figures first appear."""
    samples = {}
    for line in lines:
        s = parse_sample(line)
        if s:
            samples.setdefault(s["name"], []).append(s)
    return [figure_line(name, samples[name]) for name in sorted(samples, key=order)]


def parse_sample(line):
    fields = line.split()
    if len(fields) < 4 or fields[0] != "sample":
        return None
    s = {"name": fields[1], "value": number(fields[2]), "unit": fields[3], "extra": {}}
    for f in fields[4:]:
        key, _, val = f.partition("=")
        if key in ("anchor", "anchor2"):
            label, _, v = val.rpartition(":")
            s[key] = (label, number(v))
        else:
            s["extra"][key] = val
    return s


def number(text):
    """A sample's value: a float, or +inf for `fail` (no result within the bound)."""
    try:
        return float(text)
    except ValueError:
        return math.inf


def figure_line(name, runs):
    values = [r["value"] for r in runs]
    out = [name, fmt(median(values)), runs[0]["unit"]]
    out += anchor_fields(runs, "anchor", "ratio") or ["anchor=-", "ratio=-"]
    out.append("runs=%d" % len(runs))
    out += anchor_fields(runs, "anchor2", "ratio2")
    if len(runs) > 1:
        out += ["min=" + fmt(min(values)), "max=" + fmt(max(values))]
    failed = sum(1 for v in values if math.isinf(v))
    if failed:
        out.append("failed=%d" % failed)
    extras = {}
    for r in runs:
        for k, v in r["extra"].items():
            extras.setdefault(k, []).append(v)
    for k, vs in extras.items():
        nums = [number(v) for v in vs]
        out.append("%s=%s" % (k, fmt(median(nums)) if all(math.isfinite(n) for n in nums) else vs[-1]))
    return " ".join(out)


def anchor_fields(runs, key, ratio_key):
    """`KEY=LABEL:MEDIAN RATIO_KEY=MEDIAN` over the runs that measured the anchor KEY."""
    anchored = [r for r in runs if key in r]
    if not anchored:
        return []
    label = anchored[0][key][0]
    ratios = [r["value"] / r[key][1] for r in anchored if r[key][1] and math.isfinite(r[key][1])]
    return [
        "%s=%s:%s" % (key, label, fmt(median([r[key][1] for r in anchored]))),
        "%s=%s" % (ratio_key, fmt(median(ratios)) if ratios else "-"),
    ]


def median(values):
    v = sorted(values)
    if not v:
        return math.nan
    mid = len(v) // 2
    if len(v) % 2:
        return v[mid]
    if math.isinf(v[mid]):
        return v[mid]
    return (v[mid - 1] + v[mid]) / 2


def fmt(x):
    """Three significant digits or so: 2.31, 24.5, 943, 0.81."""
    if math.isinf(x):
        return "fail"
    if math.isnan(x):
        return "-"
    if x == int(x):
        return "%d" % x
    if abs(x) >= 100:
        return "%.0f" % x
    if abs(x) >= 10:
        return "%.1f" % x
    if abs(x) >= 1:
        return "%.2f" % x
    return "%.2g" % x


FIGURE = re.compile(r"^[a-z][a-z0-9_]* \S+ \S+ anchor=")


def is_figure(line):
    return bool(FIGURE.match(line))


def parse_figure(line):
    fields = line.split()
    fig = {"name": fields[0], "value": fields[1], "unit": fields[2], "extra": {}}
    for f in fields[3:]:
        key, _, val = f.partition("=")
        if key in FIXED:
            fig[key] = val
        else:
            fig["extra"][key] = val
    return fig


def rewrite_readme(path, figures):
    with open(path, encoding="utf-8") as f:
        text = f.read()
    if BEGIN not in text or END not in text:
        raise SystemExit("%s: markers %r … %r not found" % (path, BEGIN, END))
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    today = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")
    rows = [
        BEGIN,
        "Generated %s by `tests/bench/run.sh --readme` on this 2-core machine, shared with other"
        " builds: absolute numbers are noisy, the ratios to an anchor measured in the same run are"
        " what to compare." % today,
        "",
        "| figure | value | anchor, same run | ratio | runs | target (DESIGN §9) | details |",
        "|---|---|---|---|---|---|---|",
    ]
    for fig in figures:
        desc, target = describe(fig["name"])
        if "peers" in fig["extra"]:
            desc = desc.replace("with N ", "with %s " % fig["extra"].pop("peers"))
        anchors = [fig.get("anchor", "-")] + ([fig["anchor2"]] if "anchor2" in fig else [])
        ratios = [fig.get("ratio", "-")] + ([fig["ratio2"]] if "ratio2" in fig else [])
        anchor_text = " / ".join(a.replace(":", " ") for a in anchors if a != "-") or "—"
        ratio_text = " / ".join(r for r in ratios if r != "-") or "—"
        spread = ""
        if "min" in fig:
            spread = "min %s, max %s" % (fig["min"], fig["max"])
        details = ", ".join([spread] * bool(spread) + ["%s %s" % (k, v) for k, v in fig["extra"].items()])
        if "failed" in fig:
            details = ("%s failed; " % fig["failed"]) + details
        rows.append(
            "| %s | %s %s | %s | %s | %s | %s | %s |"
            % (desc, fig["value"], fig["unit"], anchor_text, ratio_text, fig.get("runs", "?"), target, details or "")
        )
    rows.append(END)
    with open(path, "w", encoding="utf-8") as f:
        f.write(head + "\n".join(rows) + tail)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
