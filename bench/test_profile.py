"""bench/profile.py on fixed inputs from bench/testdata/.

  python3 -m unittest discover -s bench -p 'test_*.py'

testdata/perf-script.txt is `perf script --no-inline` output cut down to
one sample of each kind; testdata/profile/replica-count/ is one phase's
readings as bench/profile writes them.
"""

import os
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import profile as prof  # noqa: E402

DATA = os.path.join(HERE, "testdata")
PHASE = os.path.join(DATA, "profile", "replica-count")


def data(name):
    with open(os.path.join(DATA, name)) as f:
        return f.read()


class Samples(unittest.TestCase):
    def test_fold(self):
        kinds = {"101": "tally-1", "201": "pg-backend", "202": "pg-other"}
        folded = prof.fold(prof.parse_perf_script(data("perf-script.txt")), kinds)
        self.assertEqual(
            folded,
            {
                # hyper's loop polls axum's future: HTTP.
                ("tally-1", "HTTP (hyper, axum, tower, sockets, code inlined into them)"): 1,
                # malloc goes to its caller, the writer.
                ("tally-1", "writer (batching, commit loop)"): 1,
                # A socket write of tokio-postgres's connection, in the writer's task.
                ("tally-1", "SQL client (tokio-postgres: encode, decode, pool)"): 1,
                ("tally-1", "cache (Redis or in-process: uniques, publish)"): 1,
                # fdatasync under XLogFlush under the commit: the WAL flush.
                ("pg-backend", "commit: WAL flush (XLogFlush, fdatasync)"): 1,
                # A B-tree search is ON CONFLICT's when an upsert's check called it...
                ("pg-backend", "ON CONFLICT (conflict check, row lock)"): 1,
                # ...and the statement's own otherwise.
                ("pg-backend", "statements: B-tree indexes"): 1,
                ("pg-backend", "pg_stat_statements (profiling only)"): 1,
                ("pg-other", "all"): 1,
            },
        )

    def test_unresolved(self):
        self.assertEqual(prof.bucket("tally", [("[unknown]", "/tmp/bin/tally")]), "other (allocator, libc, unresolved)")
        self.assertEqual(prof.bucket("pg", [("do_syscall_64", "[kernel.kallsyms]")]), "kernel, callers unresolved")
        self.assertEqual(prof.bucket("tally", []), "other (allocator, libc, unresolved)")

    def test_kinds(self):
        self.assertEqual(prof.kind_of_cmdline("postgres: tally linode 127.0.0.1(40112) idle", "postgres"), "pg-backend")
        self.assertEqual(prof.kind_of_cmdline("postgres: walwriter", "postgres"), "pg-other")
        self.assertEqual(prof.kind_of_cmdline("nginx: worker process", "nginx"), "nginx")
        self.assertEqual(prof.kind_of_cmdline("sh -c true", "sh"), "other")


class Statements(unittest.TestCase):
    def test_label(self):
        self.assertEqual(
            prof.statement_label(
                "WITH counted AS (\n UPDATE visitors SET visitor_count = 1 ), bucket AS ( INSERT INTO hits_hourly "
                "(site_id) VALUES (1) ON CONFLICT (site_id) DO UPDATE SET hits = 1 ) SELECT 1",
                width=20,
            ),
            "UPDATE visitors, INSERT INTO hits_hourly: WITH counted AS ( U…",
        )
        self.assertEqual(prof.statement_label("SELECT 1"), "SELECT 1")


class Phase(unittest.TestCase):
    def test_cpu_per_request(self):
        p = prof.Phase(PHASE)
        self.assertEqual((p.requests, p.bad, p.seconds, p.batch), (200000, 4, 10.0, (200000, 8000)))
        # 400 ticks at 100 Hz over 200000 requests; the backend that started
        # during the run (203) counts from 0.
        self.assertEqual(p.kind_us("tally"), 20.0)
        self.assertEqual(p.kind_us("pg-backend"), 10.4)
        self.assertEqual(p.kind_us("wrk"), 5.0)
        # 900 busy ticks, 710 of them this run's.
        self.assertEqual(p.kind_us("other"), 9.5)
        split, samples = p.split("tally")
        self.assertEqual(samples, 4)
        self.assertEqual(sorted(split.values()), [5.0] * 4)

    def test_report(self):
        text = prof.profile_report({"PHASES": "replica-count", "COMMIT": "abc1234"}, [prof.Phase(PHASE)])
        self.assertIn(
            "| µs CPU per request | `/` direct, no ids |\n"
            "|---|--:|\n"
            "| req/s (errors) | 20000 (4) |\n"
            "| p99 | 2.46 ms |\n"
            # 710 of the machine's 900 busy ticks in 10 s at 100 Hz.
            "| machine busy, this run (all of it) | 71% (90%) of 200% |\n"
            "| mean commit batch | 25.0 |\n"
            "| wrk (the load generator) | 5.0 |\n"
            "| tally replica 1 | 20.0 |\n"
            "| PostgreSQL backends | 10.4 |\n"
            "| PostgreSQL other (WAL writer, checkpointer, postmaster, …) | 0.1 |\n"
            "| other load on the machine (not this run) | 9.5 |\n"
            "| **all of this run** | **35.5** |\n",
            text,
        )
        # 10.4 µs of backend CPU in 4 samples, 2 of them in statements (the
        # WAL flush and pg_stat_statements are not); the one statement that
        # matters gets them all.
        self.assertIn(
            "| `UPDATE visitors, INSERT INTO hits_hourly: WITH counted AS ( UPDATE visitors SET visitor_count = visit…` "
            "| 0.040 | 1.0 | 1.5 | 0 | 5.2 |\n",
            text,
        )
        self.assertNotIn("SELECT 1", text)
        self.assertIn("## Per-hit budget\n\n(needs the phases replica-healthz, replica-count and replica-countid)\n", text)

    def test_disturbed_phase_is_marked(self):
        p = prof.Phase(PHASE)
        self.assertEqual(p.title(), "`/` direct, no ids")
        p.ticks["other (not this run)"] = 400  # 4 s of one core in 10 s
        self.assertEqual(p.title(), "`/` direct, no ids †")
        text = prof.profile_report({}, [p])
        self.assertIn("\n† 1 of 1 phases shared the machine with more than 25% of one core of other load (40%):\n", text)


if __name__ == "__main__":
    unittest.main()
