#!/usr/bin/env python3
"""Tests of tests/bench/figures.py: medians, per-run ratios, failed runs, the README table."""

import os
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import figures  # noqa: E402


class Summarize(unittest.TestCase):
    def test_median_of_values_and_of_per_run_ratios(self):
        lines = figures.summarize(
            [
                "sample throughput_direct 2.0 Gbit/s anchor=wireguard-go:4.0 bare=20\n",
                "sample throughput_direct 3.0 Gbit/s anchor=wireguard-go:3.0 bare=22\n",
                "sample throughput_direct 1.0 Gbit/s anchor=wireguard-go:1.0 bare=24\n",
                "# a comment\n",
            ]
        )
        # Ratios per run 0.5, 1.0, 1.0: their median, not median(values) / median(anchors).
        self.assertEqual(
            lines,
            ["throughput_direct 2 Gbit/s anchor=wireguard-go:3 ratio=1 runs=3 min=1 max=3 bare=22"],
        )

    def test_a_failed_run_counts_as_worse_than_any_number(self):
        lines = figures.summarize(["sample roam_to_traffic %s s\n" % v for v in ("0.4", "fail", "fail")])
        self.assertEqual(lines, ["roam_to_traffic fail s anchor=- ratio=- runs=3 min=0.4 max=fail failed=2"])

    def test_second_anchor_and_design_order(self):
        lines = figures.summarize(
            [
                "sample cdylib_stripped 1.4 MiB\n",
                "sample cpu_per_gb_direct 2.0 s/GB anchor=wireguard-go:2.5 anchor2=boringtun-cli-t1:8.0\n",
                "sample stale_ice_p2p_to_traffic 2.5 s\n",
            ]
        )
        self.assertEqual(
            lines,
            [
                "stale_ice_p2p_to_traffic 2.50 s anchor=- ratio=- runs=1",
                "cpu_per_gb_direct 2 s/GB anchor=wireguard-go:2.50 ratio=0.8 runs=1 anchor2=boringtun-cli-t1:8 ratio2=0.25",
                "cdylib_stripped 1.40 MiB anchor=- ratio=- runs=1",
            ],
        )


class Readme(unittest.TestCase):
    def test_table_between_the_markers_is_replaced_and_the_rest_kept(self):
        with tempfile.TemporaryDirectory() as d:
            readme, out = os.path.join(d, "README.md"), os.path.join(d, "figures.txt")
            with open(readme, "w", encoding="utf-8") as f:
                f.write("before\n%s\nold table\n%s\nafter\n" % (figures.BEGIN, figures.END))
            with open(out, "w", encoding="utf-8") as f:
                f.write("# peerlink figures, header\n")
                f.write("memory_peers_ice 11.5 MiB anchor=- ratio=- runs=1 peers=100\n")
            figures.main(["figures.py", "readme", readme, out])
            with open(readme, encoding="utf-8") as f:
                text = f.read()
        self.assertTrue(text.startswith("before\n" + figures.BEGIN))
        self.assertTrue(text.endswith(figures.END + "\nafter\n"))
        self.assertNotIn("old table", text)
        self.assertIn("| resident memory, one `peerlink up` with 100 connected peers over ICE", text)
        self.assertIn("| 11.5 MiB |", text)
        self.assertIn("Generated 20", text)


if __name__ == "__main__":
    unittest.main()
