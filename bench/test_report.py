"""bench/report.py on fixed inputs from bench/testdata/.

  python3 -m unittest discover -s bench -p 'test_*.py'

testdata/bench-report.md is the report that bench/run wrote from
testdata/rows.tsv, testdata/phases.tsv and testdata/facts, with the Machine
table of testdata's machine below; a change to the report's content or
format shows up as a difference from it.
"""

import os
import subprocess
import sys
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import report  # noqa: E402

DATA = os.path.join(HERE, "testdata")


def data(name):
    with open(os.path.join(DATA, name)) as f:
        return f.read()


MACHINE = {
    "cpu": "AMD EPYC (family 25 model 1, KVM guest)",
    "nproc": 2,
    "memory": "23.5 GiB",
    "kernel": "Linux 6.18.44",
    "os": "Debian GNU/Linux 12 (bookworm)",
    "software": "wrk debian/4.1.0-3+b2, nginx/1.22.1, PostgreSQL 15.20, Redis 7.0.15",
}


class Formatting(unittest.TestCase):
    def test_ms(self):
        self.assertEqual(report.ms(""), "-")
        self.assertEqual(report.ms("2397"), "2.40 ms")
        self.assertEqual(report.ms("9999"), "10.00 ms")
        self.assertEqual(report.ms("10000"), "10.0 ms")
        self.assertEqual(report.ms("65036"), "65.0 ms")

    def test_mb(self):
        self.assertEqual(report.mb(""), "-")
        self.assertEqual(report.mb("16892"), "17.3")
        self.assertEqual(report.mb("8000"), "8.2")

    def test_ratio(self):
        self.assertEqual(report.ratio("7900", "24600"), "0.32")
        self.assertEqual(report.ratio("", "24600"), "n/a")
        self.assertEqual(report.ratio("7900", ""), "n/a")
        self.assertEqual(report.ratio("7900", "0"), "n/a")


class Readings(unittest.TestCase):
    def test_bench_line(self):
        r = report.parse_bench_line(data("wrk.out"))
        self.assertEqual(r["requests"], "1020")
        self.assertEqual(r["duration_us"], "1016112")
        self.assertEqual(r["non2xx"], "1020")
        self.assertEqual(r["p50_us"], "2397")
        self.assertEqual(r["p99_us"], "65036")
        self.assertEqual(r["mean_us"], "8812")
        self.assertIsNone(report.parse_bench_line("unable to connect to 127.0.0.1:9 Connection refused\n"))

    def test_wrk_row(self):
        row, progress, ok = report.wrk_row("ceiling", "static", "4", data("wrk.out"), 0, 100, [50, 20, 0, 0, 100], "-")
        self.assertTrue(ok)
        self.assertEqual(row, "ceiling\tstatic\t4\tok\t1020\t1016112\t1020\t0\t2397\t65036\t49\t20\t0\t0\t30\t-")
        self.assertEqual(progress, "ceiling  static   c=4        1004 req/s  p50 2.40 ms  p99 65.0 ms  errors 1020")

    def test_wrk_row_other_load_is_never_negative(self):
        row, _, _ = report.wrk_row("nginx", "count", "64", data("wrk.out"), 0, 100, [50, 60, 0, 0, 100], "9.8 / 9.9")
        self.assertEqual(row.split("\t")[10:], ["49", "59", "0", "0", "0", "9.8 / 9.9"])

    def test_wrk_row_failed(self):
        row, progress, ok = report.wrk_row("alone", "read", "16", data("wrk.out"), 1, 100, [0] * 5, "9.8")
        self.assertFalse(ok)
        self.assertIsNone(progress)
        self.assertEqual(row, "alone\tread\t16\tfail" + "\t" * 12 + "9.8")
        row, _, ok = report.wrk_row("alone", "read", "16", "unable to connect\n", 0, 100, [0] * 5, "9.8")
        self.assertFalse(ok)
        self.assertEqual(row.split("\t")[3], "fail")

    def test_vmrss(self):
        self.assertEqual(report.vmrss_kb(data("proc-status.txt")), "16892")
        self.assertEqual(report.vmrss_kb("Name:\tkthreadd\n"), "")
        self.assertEqual(report.rss_kb(""), "")

    def test_metrics_sum(self):
        names = ["tally_commit_batch_size_sum", "tally_commit_batch_size_count", "tally_absent"]
        self.assertEqual(report.metrics_sum(data("metrics.txt") * 2, names), [1224.0, 80.0, 0.0])

    def test_row_rate(self):
        rows = data("rows.tsv")
        # replica / count / 64: 378623 responses in 5000000 us.
        self.assertEqual(report.row_rate(rows, ("replica", "count", "64")), "75725")
        self.assertEqual(report.row_rate(rows, ("replica", "read", "256")), "")
        last = rows.splitlines()[-1].split("\t")
        self.assertEqual(report.row_rate(rows), "%.0f" % (int(last[4]) / (int(last[5]) / 1e6)))
        self.assertEqual(report.row_rate(""), "")

    def test_machine(self):
        self.assertEqual(
            report.cpu_model(data("cpuinfo.txt"), data("lscpu.txt")),
            "AMD EPYC 7713 64-Core Processor (family 25 model 1, KVM guest)",
        )
        self.assertEqual(report.cpu_model("cpu family\t: 6\nmodel\t\t: 207\n", "Model name:   Xeon\n"), "Xeon (family 6 model 207)")
        self.assertEqual(report.mem_total("MemTotal:       24641232 kB\nMemFree: 1 kB\n"), "23.5 GiB")
        self.assertEqual(report.os_pretty_name(data("os-release.txt")), "Debian GNU/Linux 12 (bookworm)")
        self.assertEqual(
            report.versions(data("wrk-v.txt"), data("nginx-v.txt"), data("postgres-version.txt"), data("redis-version.txt")),
            "wrk debian/4.1.0-3+b2, nginx/1.22.1, PostgreSQL 15.20, Redis 7.0.15",
        )
        self.assertEqual(report.versions("", "", "", ""), "wrk ?, nginx ?, PostgreSQL ?, Redis ?")


class BenchReport(unittest.TestCase):
    def build(self, facts=None):
        f = report.parse_facts(data("facts"))
        f.update(facts or {})
        return report.bench_report(f, data("rows.tsv"), data("phases.tsv"), MACHINE)

    def test_report_as_bench_run_writes_it(self):
        self.assertEqual(self.build(), data("bench-report.md"))

    def test_disk_row_and_the_p99_note(self):
        line = report.fsync_summary([150, 120, 900, 25000, 162000] + [130] * 95, 50)
        self.assertEqual(
            line,
            "FSYNC n=100 interval_ms=50 median_us=130 p99_us=162000 max_us=162000 over20ms=2 over100ms=1",
        )
        text = self.build({"FSYNC": line})
        self.assertIn(
            "| Disk | fdatasync of a 4 KiB write every 50 ms through the whole run (100 of them): "
            "median 0.13 ms, p99 162.0 ms, **max 162.0 ms**; 2 over 20 ms, 1 over 100 ms |\n",
            text,
        )
        self.assertIn("stall of S ms adds about S x req/s / 1000 late samples", text)
        self.assertNotIn("| Disk |", self.build())

    def test_fsync_probe_until_sigterm(self):
        import tempfile

        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "probe")
            p = subprocess.Popen(
                [sys.executable, os.path.join(HERE, "report.py"), "fsync-probe", path, "10"],
                stdout=subprocess.PIPE,
                text=True,
            )
            deadline = time.time() + 10
            while not os.path.exists(path) and time.time() < deadline:
                time.sleep(0.01)
            time.sleep(0.3)
            p.terminate()
            out, _ = p.communicate(timeout=10)
            self.assertEqual(p.returncode, 0)
            fields = report.parse_cold(out.strip())
            self.assertTrue(out.startswith("FSYNC n="), out)
            self.assertGreaterEqual(int(fields["n"]), 2)
            self.assertEqual(fields["interval_ms"], "10")
            self.assertFalse(os.path.exists(path), "the probe removes its file")

    def test_batch(self):
        self.assertEqual(report.batch("123456 20001"), "6.2 (20001)")
        self.assertEqual(report.batch("0 0"), "-")
        self.assertEqual(report.batch(None), "-")

    def test_short_memory_check_is_not_measured(self):
        text = self.build({"DRIVEN": "4000"})
        self.assertIn(
            "| <= 30 MB RSS per replica after a million hits | 17.6 MB after 4000 hits (only 4000 hits within 300s) | not measured |",
            text,
        )

    def test_without_the_key_connection_count(self):
        text = self.build({"KEY_CONNS": "32"})
        self.assertIn("| counting `/` / `/healthz`, through NGINX | n/a |", text)
        self.assertIn(
            "| counted hits through NGINX >= 80% of `/healthz` through NGINX (32 conns) | ? vs ? req/s = n/a | not measured |",
            text,
        )
        self.assertIn("| p99 <= 5 ms at 32 connections direct | worst - (?); counting: replica -, alone - | not measured |", text)
        self.assertIn(
            "| counted hits of tally alone (SQLite) >= 80% of its `/healthz` (32 conns) | ? vs ? req/s = n/a | not measured |",
            text,
        )
        self.assertIn(
            "| p99 of counted `/` direct to replica 1 <= 5 ms (32 conns) | without ids -, with a new id each - | not measured |",
            text,
        )
        self.assertIn("| counting `/` with a new id each / without ids, direct to replica 1 | n/a |", text)

    def test_request_ids_not_recorded(self):
        text = self.build({"IDS_HONOURED": "0"})
        self.assertIn(
            "**One request sent twice with the same `X-Request-Id` did not add exactly one hit:"
            " replica 1 did not record the ids, and the rows with ids measure no id records.**\n",
            text,
        )
        facts = report.parse_facts(data("facts"))
        del facts["IDS_HONOURED"]
        text = report.bench_report(facts, data("rows.tsv"), data("phases.tsv"), MACHINE)
        self.assertIn("\nWhether replica 1 records request ids was not checked.\n", text)

    def test_counted_p99_goal_needs_both_rows(self):
        rows = "".join(
            line + "\n" for line in data("rows.tsv").splitlines() if not line.startswith("replica\tcountid\t64\t")
        )
        text = report.bench_report(report.parse_facts(data("facts")), rows, data("phases.tsv"), MACHINE)
        self.assertIn(
            "| p99 of counted `/` direct to replica 1 <= 5 ms (64 conns) | without ids 16.7 ms, with a new id each - | not measured |",
            text,
        )

    def test_command_line(self):
        out = subprocess.run(
            [sys.executable, os.path.join(HERE, "report.py"), "metrics-sum", "tally_commit_batch_size_sum", "tally_hits_total"],
            input=data("metrics.txt"),
            capture_output=True,
            text=True,
            check=True,
        )
        self.assertEqual(out.stdout, "612 612\n")


class Stack(unittest.TestCase):
    def test_summary_names_the_ceiling_only_when_rendered(self):
        env = report.parse_env(data("stack-env"))
        env["NGINX_BENCH_CEILING"] = "1"
        self.assertIn(
            "  nginx     http://127.0.0.1:18180/   (static ceiling: /__ceiling)\n",
            report.stack_summary(env),
        )

    def test_summary(self):
        self.assertEqual(
            report.stack_summary(report.parse_env(data("stack-env"))),
            "tally stack is up (state: /tmp/tally-bench.Ab12/stack)\n"
            "  nginx     http://127.0.0.1:18180/\n"
            "  replicas  http://127.0.0.1:18001 http://127.0.0.1:18002 http://127.0.0.1:18003 \n"
            "  postgres  127.0.0.1:15432  database linode, user tally\n"
            "  redis     127.0.0.1:16379\n"
            "  admin     Authorization: Bearer $(cat /tmp/tally-bench.Ab12/stack/secrets/admin_token)\n"
            "  env       source /tmp/tally-bench.Ab12/stack/env\n"
            "  logs      /tmp/tally-bench.Ab12/stack/*.log\n",
        )

    def test_env_quoting(self):
        self.assertEqual(report.parse_env(data("stack-env"))["ADMIN_TOKEN"], "it's")

    def test_status(self):
        text, up = report.stack_status(
            "postgres ready 101 127.0.0.1:15432\n"
            "redis ready 102 127.0.0.1:16379\n"
            "tally-1 running 103 127.0.0.1:18001/readyz\n"
            "nginx stopped\n"
        )
        self.assertFalse(up)
        self.assertEqual(
            text,
            "postgres   running  pid 101      127.0.0.1:15432 ok\n"
            "redis      running  pid 102      127.0.0.1:16379 ok\n"
            "tally-1    running  pid 103      127.0.0.1:18001/readyz NOT ready\n"
            "nginx      stopped\n",
        )
        text, up = report.stack_status("nginx ready 7 127.0.0.1:18080\n")
        self.assertTrue(up)
        self.assertEqual(report.stack_status(""), ("", False))

    def test_status_exit_code(self):
        for lines, code in [("nginx ready 7 127.0.0.1:18080\n", 0), ("nginx stopped\n", 1)]:
            out = subprocess.run(
                [sys.executable, os.path.join(HERE, "report.py"), "stack-status"], input=lines, capture_output=True, text=True
            )
            self.assertEqual(out.returncode, code)


if __name__ == "__main__":
    unittest.main()
