#!/usr/bin/env python3
"""Turns the raw outputs of one bench/run into a Markdown report.

Input: results.tsv (one line per target and case, written by lib/targets.sh) and
meta.tsv (machine and versions). For each case: throughput, latency percentiles, proxy
CPU per request (per proxy and for the pair), peak RSS per proxy, and the ratios to the
direct run and to the peer proxies.
"""

import argparse
import json
import re
import sys

TARGETS = [
    "direct", "skiff", "haproxy", "envoy", "skiff-mtls", "haproxy-tls", "envoy-mtls",
    "skiff-nometrics", "skiff-mtls-nometrics",
]
LABELS = {
    "direct": "direct (no proxy)",
    "skiff": "skiff",
    "haproxy": "HAProxy",
    "envoy": "Envoy",
    "skiff-mtls": "skiff mTLS",
    "haproxy-tls": "HAProxy TLS",
    "envoy-mtls": "Envoy mTLS",
    "skiff-nometrics": "skiff, metrics off",
    "skiff-mtls-nometrics": "skiff mTLS, metrics off",
}
PEERS = ["haproxy", "envoy"]
# The targets with TLS between the two proxies: each is compared with the TLS pair of
# the peer, never with a plain-text one.
TLS_TARGETS = {"skiff-mtls", "haproxy-tls", "envoy-mtls", "skiff-mtls-nometrics"}
TLS_PEER = {"haproxy": "haproxy-tls", "envoy": "envoy-mtls"}
# skiff's own rows, each with the peers it is compared with in the summary.
SKIFF_ROWS = ["skiff", "skiff-mtls"]
# skiff with its metrics on (the default) and off: the ratio is what the metrics cost.
METRICS_PAIRS = [("skiff", "skiff-nometrics"), ("skiff-mtls", "skiff-mtls-nometrics")]


def peer_of(target, peer):
    """The peer target `target` is compared with: `peer`, or its TLS pair for a TLS target."""
    return TLS_PEER[peer] if target in TLS_TARGETS else peer

UNIT_US = {"us": 1.0, "ms": 1000.0, "s": 1_000_000.0, "m": 60_000_000.0}


def parse_wrk(text):
    """Requests, seconds, percentiles (µs) and error count from `wrk --latency` output."""
    m = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m),", text)
    if not m:
        raise ValueError("no request count in wrk output:\n" + text)
    requests = int(m.group(1))
    seconds = float(m.group(2)) * UNIT_US[m.group(3)] / 1_000_000.0
    pct = {}
    for p, value, unit in re.findall(r"^\s+(50|75|90|99)%\s+([\d.]+)(us|ms|s|m)\s*$", text, re.M):
        pct[int(p)] = float(value) * UNIT_US[unit]
    errors = 0
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    if m:
        errors += int(m.group(1))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if m:
        errors += sum(int(g) for g in m.groups())
    return {"requests": requests, "seconds": seconds, "pct": pct, "errors": errors}


def parse_oha(text):
    """The same figures from `oha --output-format json`."""
    data = json.loads(text)
    statuses = {int(k): v for k, v in data.get("statusCodeDistribution", {}).items()}
    requests = sum(statuses.values())
    ok = sum(v for k, v in statuses.items() if 200 <= k < 400)
    errors = (requests - ok) + sum(data.get("errorDistribution", {}).values())
    pct = {}
    for p in (50, 75, 90, 99):
        value = data.get("latencyPercentiles", {}).get(f"p{p}")
        if value is not None:
            pct[p] = value * 1_000_000.0
    return {"requests": requests, "seconds": data["summary"]["total"], "pct": pct, "errors": errors}


def load(results_path, clk_tck):
    rows = []
    with open(results_path) as f:
        for line in f:
            line = line.rstrip("\n")
            if not line:
                continue
            target, case, tool, conns, rate, body, raw, wall, proxies = (line.split("\t") + [""])[:9]
            with open(raw) as r:
                text = r.read()
            figures = parse_wrk(text) if tool == "wrk" else parse_oha(text)
            row = {
                "target": target,
                "case": case,
                "tool": tool,
                "conns": int(conns),
                "rate": int(rate),
                "body": int(body),
                **figures,
                "proxies": {},
            }
            for entry in filter(None, proxies.split(",")):
                role, ticks, hwm = entry.split(":")
                row["proxies"][role] = {
                    "cpu_s": int(ticks) / clk_tck,
                    "hwm_mib": int(hwm) / 1024.0,
                }
            rows.append(row)
    return rows


def per_request_us(row, role=None):
    if row["requests"] == 0:
        return None
    roles = [role] if role else list(row["proxies"])
    if not roles or any(r not in row["proxies"] for r in roles):
        return None
    cpu = sum(row["proxies"][r]["cpu_s"] for r in roles)
    return cpu * 1_000_000.0 / row["requests"]


def fmt(value, digits=0, suffix=""):
    if value is None:
        return "–"
    return f"{value:,.{digits}f}{suffix}"


def ratio(a, b):
    if a is None or b is None or b == 0:
        return "–"
    return f"{a / b:.2f}×"


def describe(row):
    body = "47 B" if row["body"] == 47 else f"{row['body']} B"
    conns = f"{row['conns']} connection" + ("s" if row["conns"] != 1 else "")
    if row["rate"]:
        load = f"fixed rate {row['rate']} req/s over {conns} (oha, latency-corrected)"
    else:
        load = f"{conns}, closed loop (wrk)"
    return f"HTTP/1.1, {body} response, {load}"


def render(rows, meta):
    out = []
    title = "skiff proxy benchmark" + (" (smoke run: figures mean nothing)" if meta.get("mode") == "smoke" else "")
    out.append(f"# {title}\n")
    out.append(f"- date: {meta.get('date')}; machine: {meta.get('cores')} × {meta.get('cpu')}, Linux {meta.get('kernel')}, load average before: {meta.get('load_before')}")
    out.append(f"- each case: {meta.get('warmup')} s warm-up, then {meta.get('duration')} s measured; every proxy runs {meta.get('threads')} worker thread(s); fresh proxies per case")
    out.append(f"- skiff: {meta.get('skiff')}; {meta.get('haproxy')}; Envoy {meta.get('envoy')}; {meta.get('nginx')}")
    out.append(f"- load: {meta.get('wrk')}; oha: {meta.get('oha')}")
    if meta.get("skiff_proxy") != "yes":
        out.append("- **skiff rows missing: this build has no `skiff proxy`**")
    out.append("- CPU µs/req: (utime + stime) of the proxy process during the measured run ÷ completed requests; pair = client side + server side. RSS: peak (VmHWM).")
    out.append("")

    cases = []
    for row in rows:
        if row["case"] not in cases:
            cases.append(row["case"])
    by = {(r["target"], r["case"]): r for r in rows}
    targets = [t for t in TARGETS if any(r["target"] == t for r in rows)]
    proxied = [t for t in targets if t != "direct"]

    # Summary: the steady figure first.
    out.append("## Proxy-pair CPU per request (µs; lower is better)\n")
    comparisons = [
        (s, peer_of(s, p)) for s in SKIFF_ROWS if s in proxied for p in PEERS if peer_of(s, p) in proxied
    ]
    mtls_cost = "skiff" in proxied and "skiff-mtls" in proxied
    header = "| case | " + " | ".join(LABELS[t] for t in proxied)
    header += "".join(f" | {LABELS[s]} ÷ {LABELS[p]}" for s, p in comparisons)
    if mtls_cost:
        header += " | mTLS adds to skiff"
    header += "".join(f" | {LABELS[on]} ÷ metrics off" for on, off in METRICS_PAIRS if on in proxied and off in proxied)
    out.append(header + " |")
    out.append("|" + "---|" * (header.count("|")))
    for case in cases:
        cells = [case]
        for t in proxied:
            cells.append(fmt(per_request_us(by[(t, case)]) if (t, case) in by else None, 1))
        for s, p in comparisons:
            skiff, peer = by.get((s, case)), by.get((p, case))
            cells.append(ratio(per_request_us(skiff) if skiff else None, per_request_us(peer) if peer else None))
        if mtls_cost:
            plain, tls = by.get(("skiff", case)), by.get(("skiff-mtls", case))
            plain_us = per_request_us(plain) if plain else None
            tls_us = per_request_us(tls) if tls else None
            cells.append(fmt(tls_us - plain_us, 1) if plain_us is not None and tls_us is not None else "–")
        for on, off in METRICS_PAIRS:
            if on in proxied and off in proxied:
                with_m, without = by.get((on, case)), by.get((off, case))
                cells.append(ratio(per_request_us(with_m) if with_m else None, per_request_us(without) if without else None))
        out.append("| " + " | ".join(cells) + " |")
    out.append("")
    if any(t in TLS_TARGETS for t in proxied):
        out.append("TLS targets (mutual TLS 1.3 between the two proxies) are compared with the peer's TLS pair: pair ÷ HAProxy means ÷ HAProxy TLS for them, pair ÷ Envoy ÷ Envoy mTLS.\n")

    warnings = []
    for case in cases:
        first = next(r for r in rows if r["case"] == case)
        out.append(f"## {case}: {describe(first)}\n")
        out.append("| target | req/s | ÷ direct | p50 µs | p90 µs | p99 µs | p50 added µs | CPU µs/req client | server | pair | pair ÷ HAProxy | pair ÷ Envoy | peak RSS MiB client / server | errors |")
        out.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        direct = by.get(("direct", case))
        direct_rps = direct["requests"] / direct["seconds"] if direct else None
        for t in targets:
            row = by.get((t, case))
            if row is None:
                continue
            rps = row["requests"] / row["seconds"] if row["seconds"] else None
            pair = per_request_us(row)
            added = None
            if direct and t != "direct" and 50 in row["pct"] and 50 in direct["pct"]:
                added = row["pct"][50] - direct["pct"][50]
            peer_ratio = {}
            for p in PEERS:
                peer = by.get((peer_of(t, p), case))
                peer_ratio[p] = ratio(pair, per_request_us(peer)) if peer and t != "direct" else "–"
            rss = "–"
            if row["proxies"]:
                rss = " / ".join(fmt(row["proxies"].get(r, {}).get("hwm_mib"), 1) for r in ("client", "server"))
            out.append(
                "| "
                + " | ".join(
                    [
                        LABELS[t],
                        fmt(rps),
                        ratio(rps, direct_rps) if t != "direct" else "1.00×",
                        fmt(row["pct"].get(50)),
                        fmt(row["pct"].get(90)),
                        fmt(row["pct"].get(99)),
                        fmt(added),
                        fmt(per_request_us(row, "client"), 1),
                        fmt(per_request_us(row, "server"), 1),
                        fmt(pair, 1),
                        peer_ratio["haproxy"],
                        peer_ratio["envoy"],
                        rss,
                        str(row["errors"]),
                    ]
                )
                + " |"
            )
            if row["errors"]:
                warnings.append(f"{LABELS[t]} / {case}: {row['errors']} failed requests")
            for role, p in row["proxies"].items():
                if p["cpu_s"] == 0 and row["requests"] > 1000:
                    warnings.append(f"{LABELS[t]} / {case}: the {role} proxy used no CPU: is traffic going through it?")
        out.append("")
    if warnings:
        out.append("## Warnings\n")
        out.extend(f"- {w}" for w in warnings)
        out.append("")
    return "\n".join(out), warnings


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--results", required=True)
    ap.add_argument("--meta", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    meta = {}
    with open(args.meta) as f:
        for line in f:
            key, _, value = line.rstrip("\n").partition("\t")
            meta[key] = value
    rows = load(args.results, float(meta.get("clk_tck", "100")))
    if not rows:
        print("report.py: no results", file=sys.stderr)
        return 1
    text, warnings = render(rows, meta)
    with open(args.out, "w") as f:
        f.write(text)
    for w in warnings:
        print(f"!! {w}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
