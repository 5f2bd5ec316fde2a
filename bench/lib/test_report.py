"""Unit tests of the report's parsers and ratios: python3 -m unittest discover -s bench/lib"""

import json
import unittest

import report

WRK_MS = """Running 10s test @ http://127.0.77.1:15001/small
  1 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     2.41ms    1.80ms  30.01ms   80.00%
    Req/Sec    11.92k   800.00    13.00k    70.00%
  Latency Distribution
     50%    1.93ms
     75%    3.10ms
     90%    5.59ms
     99%    1.04s
  118630 requests in 10.00s, 20.02MB read
  Socket errors: connect 0, read 2, write 0, timeout 3
  Non-2xx or 3xx responses: 7
Requests/sec:  11863.00
Transfer/sec:      2.00MB
"""


class ParseTest(unittest.TestCase):
    def test_wrk_units_and_errors(self):
        r = report.parse_wrk(WRK_MS)
        self.assertEqual(r["requests"], 118630)
        self.assertAlmostEqual(r["seconds"], 10.0)
        self.assertAlmostEqual(r["pct"][50], 1930.0)
        self.assertAlmostEqual(r["pct"][90], 5590.0)
        self.assertAlmostEqual(r["pct"][99], 1_040_000.0)
        self.assertEqual(r["errors"], 12)

    def test_wrk_without_requests_is_an_error(self):
        with self.assertRaises(ValueError):
            report.parse_wrk("unable to connect to 127.0.77.1:15001 Connection refused\n")

    def test_oha_json(self):
        data = {
            "summary": {"total": 10.0},
            "latencyPercentiles": {"p50": 0.000255, "p90": 0.001127, "p99": 0.005419},
            "statusCodeDistribution": {"200": 9990, "503": 10},
            "errorDistribution": {"connection closed": 2},
        }
        r = report.parse_oha(json.dumps(data))
        self.assertEqual(r["requests"], 10000)
        self.assertAlmostEqual(r["pct"][50], 255.0)
        self.assertEqual(r["errors"], 12)


class RenderTest(unittest.TestCase):
    def row(self, target, requests, client_s=None, server_s=None):
        proxies = {}
        if client_s is not None:
            proxies = {
                "client": {"cpu_s": client_s, "hwm_mib": 10.0},
                "server": {"cpu_s": server_s, "hwm_mib": 12.0},
            }
        return {
            "target": target, "case": "small-c1", "tool": "wrk", "conns": 1, "rate": 0,
            "body": 47, "requests": requests, "seconds": 10.0, "errors": 0,
            "pct": {50: 100.0, 90: 200.0, 99: 300.0}, "proxies": proxies,
        }

    def test_cpu_per_request_and_ratios(self):
        rows = [
            self.row("direct", 100_000),
            self.row("skiff", 10_000, 0.2, 0.3),     # 50 µs/req for the pair
            self.row("haproxy", 10_000, 0.5, 0.5),   # 100 µs/req
            self.row("envoy", 10_000, 1.0, 1.0),     # 200 µs/req
        ]
        self.assertAlmostEqual(report.per_request_us(rows[1]), 50.0)
        self.assertAlmostEqual(report.per_request_us(rows[1], "client"), 20.0)
        self.assertIsNone(report.per_request_us(rows[0]))
        text, warnings = report.render(rows, {"mode": "full", "skiff_proxy": "yes"})
        self.assertEqual(warnings, [])
        self.assertIn("| small-c1 | 50.0 | 100.0 | 200.0 | 0.50× | 0.25× |", text)
        skiff_line = next(l for l in text.splitlines() if l.startswith("| skiff |"))
        self.assertIn("| 0.10× |", skiff_line)  # throughput vs direct
        self.assertIn("| 10.0 / 12.0 |", skiff_line)

    def test_tls_targets_are_compared_with_the_tls_peers(self):
        rows = [
            self.row("direct", 100_000),
            self.row("skiff", 10_000, 0.2, 0.3),          # 50 µs/req
            self.row("haproxy", 10_000, 0.5, 0.5),        # 100 µs/req
            self.row("skiff-mtls", 10_000, 0.3, 0.3),     # 60 µs/req
            self.row("haproxy-tls", 10_000, 0.6, 0.6),    # 120 µs/req
            self.row("envoy-mtls", 10_000, 1.2, 1.2),     # 240 µs/req
        ]
        text, warnings = report.render(rows, {"mode": "full", "skiff_proxy": "yes"})
        self.assertEqual(warnings, [])
        header = next(l for l in text.splitlines() if l.startswith("| case |"))
        self.assertEqual(
            header,
            "| case | skiff | HAProxy | skiff mTLS | HAProxy TLS | Envoy mTLS"
            " | skiff ÷ HAProxy | skiff mTLS ÷ HAProxy TLS | skiff mTLS ÷ Envoy mTLS"
            " | mTLS adds to skiff |",
        )
        # skiff 50 ÷ HAProxy 100; skiff mTLS 60 ÷ HAProxy TLS 120 and ÷ Envoy mTLS 240;
        # mTLS adds 10 µs to skiff.
        self.assertIn("| small-c1 | 50.0 | 100.0 | 60.0 | 120.0 | 240.0 | 0.50× | 0.50× | 0.25× | 10.0 |", text)
        tls_line = next(l for l in text.splitlines() if l.startswith("| skiff mTLS |"))
        # pair, ÷ HAProxy TLS (not plain HAProxy: that would be 0.60×), ÷ Envoy mTLS.
        self.assertIn("| 60.0 | 0.50× | 0.25× |", tls_line)
        plain_line = next(l for l in text.splitlines() if l.startswith("| skiff |"))
        self.assertIn("| 50.0 | 0.50× | – |", plain_line)  # no plain Envoy in this run

    def test_idle_proxy_is_a_warning(self):
        rows = [self.row("direct", 100_000), self.row("skiff", 10_000, 0.0, 0.3)]
        _, warnings = report.render(rows, {"mode": "full", "skiff_proxy": "yes"})
        self.assertTrue(any("client proxy used no CPU" in w for w in warnings), warnings)


if __name__ == "__main__":
    unittest.main()
