#!/usr/bin/env python3
"""Measurement parsing and report writing for bench/run and scripts/stack.

bench/run and scripts/stack start processes and take readings; everything
that reads wrk output, /proc, /metrics or JSON and everything that writes a
report is here, so that it can be tested on fixed inputs
(bench/test_report.py).

  report.py wrk-row TARGET ROUTE CONNS WRK_OUT --rc RC --url URL
            --clk-tck HZ --ticks W N T P M [--rss-pids "PID..."]
      One wrk run as a rows.tsv line on stdout and a progress line on
      stderr. TICKS are the CPU ticks used during the run by wrk, NGINX,
      tally, PostgreSQL with Redis, and the whole machine. Exit 1 (after
      writing a "fail" row) if wrk failed.
  report.py rss-kb PID...        VmRSS in kB of each PID, tab-separated
                                 (empty for a process that is gone)
  report.py rss-mb PID...        the same in MB (10^6 bytes), " / "-separated
  report.py metrics-sum NAME...  sums of the unlabelled samples NAME in the
                                 Prometheus text on stdin, space-separated
  report.py json-get KEY         the top-level KEY of the JSON on stdin
  report.py row-rate ROWS [TARGET ROUTE CONNS]
                                 responses per second of that ok row (or of
                                 the last row), nothing if there is none
  report.py bench-report WORK    the Markdown report of a bench/run from
                                 WORK/facts, WORK/rows.tsv, WORK/phases.tsv
                                 and this machine
  report.py fsync-probe FILE MS  until SIGTERM, every MS ms writes 4 KiB to FILE
                                 and times its fdatasync; then prints one
                                 `FSYNC n=... median_us=...` line: how the
                                 disk the stores commit to answered meanwhile
  report.py stack-summary ENV    what `scripts/stack up` prints, from its env
  report.py stack-status         `scripts/stack status` lines from
                                 "NAME STATE PID WHAT" lines on stdin; exit 0
                                 only if every component is up and ready

rows.tsv columns: target route conns status requests duration_us non2xx
socket_errors p50_us p99_us cpu_wrk cpu_nginx cpu_tally cpu_pg cpu_other
rss_mb. phases.tsv: phase name, then the VmRSS in kB of tally alone and of
each replica. facts: KEY=VALUE lines written by bench/run.
"""

import glob
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time

# ---------------------------------------------------------------------------
# formatting


def ms(us):
    """Microseconds as milliseconds: 2 decimals below 10 ms, 1 above."""
    if us == "" or us is None:
        return "-"
    us = float(us)
    if us < 10000:
        return "%.2f ms" % (us / 1000)
    return "%.1f ms" % (us / 1000)


def mb(kb):
    """kB (of 1024 bytes, as /proc counts) as MB of 10^6 bytes."""
    if kb == "" or kb is None:
        return "-"
    return "%.1f" % (float(kb) * 1024 / 1e6)


def ratio(a, b):
    if a == "" or b == "" or a is None or b is None or float(b) == 0:
        return "n/a"
    return "%.2f" % (float(a) / float(b))


def per_second(n, duration_us):
    return "%.0f" % (float(n) / (float(duration_us) / 1e6))


# ---------------------------------------------------------------------------
# readings


def parse_bench_line(text):
    """The last `BENCH k=v ...` line that bench/wrk.lua writes, as a dict."""
    line = None
    for candidate in text.splitlines():
        if candidate.startswith("BENCH "):
            line = candidate
    if line is None:
        return None
    fields = {}
    for kv in line[len("BENCH ") :].split():
        key, _, value = kv.partition("=")
        fields[key] = value
    return fields


def vmrss_kb(status_text):
    for line in status_text.splitlines():
        if line.startswith("VmRSS:"):
            return line.split()[1]
    return ""


def rss_kb(pid):
    if not pid:
        return ""
    try:
        with open("/proc/%s/status" % pid) as f:
            return vmrss_kb(f.read())
    except OSError:
        return ""


def metrics_sum(text, names):
    """Sums of the samples named exactly NAME (no labels) in Prometheus text."""
    sums = {name: 0.0 for name in names}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] in sums:
            sums[parts[0]] += float(parts[1])
    return [sums[name] for name in names]


def cpu_pct(ticks, hz, wall_us):
    """CPU ticks as % of one core over the wall time."""
    return "%.0f" % (ticks / hz / (wall_us / 1e6) * 100)


def wrk_row(target, route, conns, wrk_out, rc, clk_tck, ticks, rss):
    """(row, progress line, ok) for one wrk run.

    ticks: CPU ticks during the run of wrk, NGINX, tally, PostgreSQL with
    Redis, and the machine as a whole; rss: the RSS column.
    """
    r = parse_bench_line(wrk_out)
    if rc != 0 or r is None:
        row = "\t".join([target, route, conns, "fail"] + [""] * 11 + [rss])
        return row, None, False
    num = lambda k: int(r.get(k, "0") or 0)  # noqa: E731
    sock = num("connect") + num("read") + num("write") + num("timeout")
    wall_us = float(r["duration_us"])
    w, n, t, p, m = ticks
    cw, cn, ct, cp = (cpu_pct(x, clk_tck, wall_us) for x in (w, n, t, p))
    co = cpu_pct(m - w - n - t - p, clk_tck, wall_us)
    if int(co) < 0:
        co = "0"
    cols = [target, route, conns, "ok", r["requests"], r["duration_us"], r["non2xx"], str(sock)]
    cols += [r["p50_us"], r["p99_us"], cw, cn, ct, cp, co, rss]
    progress = "%-8s %-8s c=%-4s %8s req/s  p50 %s  p99 %s  errors %d" % (
        target,
        route,
        conns,
        per_second(r["requests"], wall_us),
        ms(r["p50_us"]),
        ms(r["p99_us"]),
        int(r["non2xx"]) + sock,
    )
    return "\t".join(cols), progress, True


# ---------------------------------------------------------------------------
# rows


class Rows:
    """rows.tsv, with the lookups the report makes."""

    def __init__(self, text):
        self.rows = [line.split("\t") for line in text.splitlines() if line]

    def find(self, target, route, conns, ok_only=True):
        for f in self.rows:
            if f[0] == target and f[1] == route and f[2] == str(conns):
                if not ok_only or f[3] == "ok":
                    return f
        return None

    def rps(self, target, route, conns):
        f = self.find(target, route, conns)
        return per_second(f[4], f[5]) if f else ""

    def ok_rps(self, target, route, conns):
        f = self.find(target, route, conns)
        return per_second(int(f[4]) - int(f[6]), f[5]) if f else ""

    def sweep_rows(self):
        """The ok rows of the sweeps (not of the memory check)."""
        return [f for f in self.rows if f[3] == "ok" and f[0] != "million"]

    def million_rows(self):
        return [f for f in self.rows if f[0] == "million" and f[3] == "ok"]


def row_rate(rows_text, key=None):
    rows = Rows(rows_text)
    if key:
        f = rows.find(*key)
    else:
        f = rows.rows[-1] if rows.rows else None
        f = f if f and f[3] == "ok" else None
    if not f:
        return ""
    r = float(f[4]) / (float(f[5]) / 1e6)
    return "%.0f" % (r if r >= 1 else 1)


# ---------------------------------------------------------------------------
# the machine


def cpuinfo_field(text, prefix):
    """The value of the first /proc/cpuinfo line that starts with PREFIX."""
    for line in text.splitlines():
        if line.startswith(prefix):
            return line.split(": ")[1] if ": " in line else ""
    return ""


def lscpu_field(text, name):
    """The value of the first `lscpu` line that names NAME."""
    for line in text.splitlines():
        m = re.search(r"%s: +" % re.escape(name), line)
        if m:
            return re.split(r": +", line[m.end() :])[0]
    return ""


def cpu_model(cpuinfo, lscpu):
    model = cpuinfo_field(cpuinfo, "model name") or lscpu_field(lscpu, "Model name")
    model += " (family %s model %s" % (cpuinfo_field(cpuinfo, "cpu family"), cpuinfo_field(cpuinfo, "model\t"))
    hypervisor = lscpu_field(lscpu, "Hypervisor vendor")
    if hypervisor:
        model += ", %s guest" % hypervisor
    return model + ")"


def mem_total(meminfo):
    for line in meminfo.splitlines():
        if line.startswith("MemTotal:"):
            return "%.1f GiB" % (int(line.split()[1]) / 1048576)
    return ""


def os_pretty_name(os_release):
    for line in os_release.splitlines():
        if line.startswith("PRETTY_NAME="):
            words = shlex.split(line[len("PRETTY_NAME=") :])
            return words[0] if words else "?"
    return "?"


def versions(wrk_v, nginx_v, postgres_v, redis_v):
    """The Software line from each tool's version output."""
    lines = wrk_v.splitlines()
    words = lines[0].split() if lines else []
    w = words[1] if len(words) > 1 else ""
    n = ""
    for line in nginx_v.splitlines():
        if line.startswith("nginx version: "):
            n = line[len("nginx version: ") :]
    words = postgres_v.split()
    p = words[2] if len(words) > 2 else ""
    m = re.search(r"v=(\S*)", redis_v)
    r = m.group(1) if m else ""
    return "wrk %s, %s, PostgreSQL %s, Redis %s" % (w or "?", n or "nginx ?", p or "?", r or "?")


def _read(path):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


def _output(*cmd):
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    except OSError:
        return ""
    return done.stdout + done.stderr


def _version_key(path):
    return [int(x) if x.isdigit() else x for x in re.split(r"(\d+)", path)]


def this_machine():
    """What the report's Machine table says, read from this machine."""
    pg_dirs = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=_version_key)
    pg = pg_dirs[-1] + "/postgres" if pg_dirs else "/usr/lib/postgresql/*/bin/postgres"
    uname = os.uname()
    return {
        "cpu": cpu_model(_read("/proc/cpuinfo"), _output("lscpu")),
        "nproc": len(os.sched_getaffinity(0)),
        "memory": mem_total(_read("/proc/meminfo")),
        "kernel": "%s %s" % (uname.sysname, uname.release),
        "os": os_pretty_name(_read("/etc/os-release")),
        "software": versions(
            _output("wrk", "-v"),
            _output("nginx", "-v"),
            _output(pg, "--version"),
            _output("redis-server", "--version"),
        ),
    }


# ---------------------------------------------------------------------------
# the bench/run report

TARGETS = ["nginx", "breakdowns", "replica", "alone"]
ROUTES = ["count", "read", "badge", "healthz"]
# Direct to replica 1, `/` is also run with a new X-Request-Id on every request.
ROUTES_OF = {
    "replica": ["count", "countid", "read", "badge", "healthz"],
    # Counted `/` with browsers' user agents, referrers and languages,
    # breakdowns on, then off (replicas restarted with TALLY_BREAKDOWNS=false).
    "breakdowns": ["on", "off"],
}
TARGET_TITLE = {
    "ceiling": "NGINX static `/__ceiling` (the ceiling)",
    "nginx": "Through NGINX (3 replicas, PostgreSQL + Redis)",
    "breakdowns": "Breakdowns on and off, through NGINX (browsers' user agents, referrers, languages)",
    "replica": "Direct to replica 1 (PostgreSQL + Redis)",
    "alone": "tally alone (SQLite, in-process cache)",
}
ROUTE_TITLE = {
    "static": "`/__ceiling`",
    "count": "`/` (counts)",
    "countid": "`/` (counts), a new `X-Request-Id` each",
    "read": "`/api/v1/sites/default/count`",
    "badge": "`/badge/default.svg`",
    "healthz": "`/healthz`",
    "on": "`/` (counts), breakdowns on",
    "off": "`/` (counts), breakdowns off",
}


def parse_facts(text):
    facts = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            facts[key] = value
    return facts


def parse_cold(line):
    """`COLD runs_ms=... median_ms=... log_ms=...` from bench/cold-start."""
    cold = {}
    for kv in line.split()[1:]:
        key, _, value = kv.partition("=")
        cold[key] = value
    return cold


def fsync_summary(samples_us, interval_ms):
    """The FSYNC line of a probe's fdatasync times (µs)."""
    xs = sorted(samples_us)
    n = len(xs)

    def at(q):
        return xs[min(n - 1, int(n * q))] if n else 0

    return "FSYNC n=%d interval_ms=%d median_us=%d p99_us=%d max_us=%d over20ms=%d over100ms=%d" % (
        n,
        interval_ms,
        at(0.5),
        at(0.99),
        xs[-1] if n else 0,
        sum(1 for x in xs if x > 20000),
        sum(1 for x in xs if x > 100000),
    )


def fsync_probe(path, interval_ms):
    """Times a 4 KiB write's fdatasync every `interval_ms` until SIGTERM."""
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    block = b"\0" * 4096
    samples = []
    try:
        while not stop:
            os.pwrite(fd, block, 0)
            t0 = time.perf_counter()
            os.fdatasync(fd)
            took = time.perf_counter() - t0
            samples.append(int(took * 1e6))
            time.sleep(max(0.0, interval_ms / 1000 - took))
    finally:
        os.close(fd)
        os.unlink(path)
    return fsync_summary(samples, interval_ms)


def disk_line(line):
    """The Disk row of the Machine table, from an FSYNC line."""
    f = parse_cold(line)
    return (
        "fdatasync of a 4 KiB write every %s ms through the whole run (%s of them): "
        "median %s, p99 %s, **max %s**; %s over 20 ms, %s over 100 ms"
        % (
            f["interval_ms"],
            f["n"],
            ms(f["median_us"]),
            ms(f["p99_us"]),
            ms(f["max_us"]),
            f["over20ms"],
            f["over100ms"],
        )
    )


def batch(hits_commits):
    """ "HITS COMMITS" as the mean hits per commit and the commits."""
    if not hits_commits:
        return "-"
    hits, commits = (int(x) for x in hits_commits.split())
    return "%.1f (%d)" % (hits / commits, commits) if commits > 0 else "-"


# The counting rows whose group commits the report shows.
BATCH_ROWS = [
    ("nginx", "count", "through NGINX (3 replicas)", "`/`"),
    ("breakdowns", "on", "through NGINX, browsers", "`/`, breakdowns on"),
    ("breakdowns", "off", "through NGINX, browsers", "`/`, breakdowns off"),
    ("replica", "count", "direct to replica 1", "`/` without ids"),
    ("replica", "countid", "direct to replica 1", "`/` with a new id each"),
    ("alone", "count", "tally alone (SQLite)", "`/`"),
]


def goal(value, ok):
    """'1', '0' or '?' (not measured) for VALUE (a float or None) meeting OK."""
    return "?" if value is None else ("1" if ok(value) else "0")


def ids_note(flag):
    """What the check that replica 1 records request ids found."""
    if flag == "1":
        return "One request sent twice with the same `X-Request-Id` added one hit: replica 1 records the ids."
    if flag == "0":
        return (
            "**One request sent twice with the same `X-Request-Id` did not add exactly one hit:"
            " replica 1 did not record the ids, and the rows with ids measure no id records.**"
        )
    return "Whether replica 1 records request ids was not checked."


def met(flag):
    return {"1": "met", "0": "**not met**"}.get(flag, "not measured")


def bench_report(facts, rows_text, phases_text, machine):
    rows = Rows(rows_text)
    conns = facts["CONNS"].split()
    k = facts["KEY_CONNS"]
    disturbed = int(facts["DISTURBED"])
    # BENCH_ONLY: the parts this run measured (all, if the fact is missing).
    only = facts.get("ONLY", "cold ceiling nginx breakdowns replica alone million").split()
    cold = parse_cold(facts["COLD"]) if "cold" in only else {}
    out = []
    say = out.append
    say("# tally benchmark, %s" % facts["STARTED_AT"])
    say("")
    say("| Machine | |")
    say("|---|---|")
    say("| CPU | %s, %s cores (`nproc`) |" % (machine["cpu"], machine["nproc"]))
    say("| Memory | %s |" % machine["memory"])
    say("| Kernel | %s, %s |" % (machine["kernel"], machine["os"]))
    say("| tally | commit `%s` |" % facts["COMMIT"])
    say("| Date | %s to %s |" % (facts["STARTED_AT"], facts["FINISHED_AT"]))
    say("| Software | %s |" % machine["software"])
    if facts.get("FSYNC"):
        say("| Disk | %s |" % disk_line(facts["FSYNC"]))
    say(
        "| Load | %s%% of one core busy just before measuring; load average %s before, %s after |"
        % (facts["BUSY_BEFORE"], facts["LOAD_BEFORE"], facts["LOAD_AFTER"])
    )
    say(
        "| Settings | wrk %s threads, %s s per run, connections %s, %s s warm-up per sweep; "
        "TALLY_RATE_LIMIT=0, TALLY_READ_RATE_LIMIT=0, TALLY_NEW_PAGES_PER_CLIENT=0, "
        "TALLY_NEW_PAGES_PER_SITE=0, TALLY_LOG=warn, NGINX access log off |"
        % (facts["THREADS"], facts["DURATION"], " ".join(conns), facts["WARMUP"])
    )
    say("")
    say("wrk runs on the same 2 cores as everything it measures. The CPU")
    say("columns say where the cores went during each run, in % of one core")
    say("(the machine has %d%%): wrk itself, NGINX (master and" % (int(machine["nproc"]) * 100))
    say("workers), all tally processes, PostgreSQL and Redis, and everything")
    say('else on the machine ("other": load that is not this benchmark).')
    say("")
    say("## Cold start")
    say("")
    if "cold" not in only:
        say("Not run (`BENCH_ONLY=%s`)." % " ".join(only))
    else:
        say("Exec of `tally serve` on a fresh SQLite file to the first `/readyz` 200,")
        say(
            "polled every 1 ms: **median %s ms** (runs: %s ms)."
            % (cold.get("median_ms", ""), cold.get("runs_ms", "").replace(",", ", "))
        )
        say("tally's own `ready` log line (migrations done) says %s ms." % cold.get("log_ms", "").replace(",", ", "))
    say("")
    say("## Throughput and latency")
    say("")
    say("req/s counts every response; errors are socket errors (connect, read,")
    say("write, timeout) plus non-2xx responses. RSS is the VmRSS of the tally")
    say("process(es) measured, after the run, in MB (10^6 bytes).")
    if facts.get("FSYNC"):
        say("A counted hit is answered after its batch's fdatasync, so a slow")
        say("one on the disk (the Disk row above) delays every hit of that batch")
        say("and those queued behind it. wrk counts the requests it could not send")
        say("meanwhile as late too (it corrects for coordinated omission), so one")
        say("stall of S ms adds about S x req/s / 1000 late samples: 2 700 for")
        say("100 ms at 27 000 req/s, 2% of a 5 s run, enough to move its p99.")
    sweep = rows.sweep_rows()
    n_dist = sum(1 for f in sweep if float(f[14]) > disturbed)
    if n_dist > 0:
        say("")
        say("† %d of %d runs shared the machine with more than %d%% of one core" % (n_dist, len(sweep), disturbed))
        say('of other load ("other"): their numbers are low and their latencies high.')
    for target in ["ceiling"] + TARGETS:
        say("")
        say("### %s" % TARGET_TITLE[target])
        say("")
        if target not in only:
            say("Not run (`BENCH_ONLY=%s`)." % " ".join(only))
            continue
        say("| Route | Conns | req/s | p50 | p99 | Errors | CPU wrk | nginx | tally | pg+redis | other | RSS MB |")
        say("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
        for route in ["static"] if target == "ceiling" else ROUTES_OF.get(target, ROUTES):
            na = facts.get("NA:%s:%s" % (target, route))
            if na:
                say("| %s | all | %s | | | | | | | | | |" % (ROUTE_TITLE[route], na))
                continue
            for c in conns:
                f = rows.find(target, route, c, ok_only=False)
                if not f or f[3] != "ok":
                    say("| %s | %s | wrk failed | | | | | | | | | |" % (ROUTE_TITLE[route], c))
                    continue
                cpu_tally = "-" if target == "ceiling" else f[12]
                mark = " †" if int(f[14]) > disturbed else ""
                say(
                    "| %s | %s | %s%s | %s | %s | %d | %s | %s | %s | %s | %s | %s |"
                    % (
                        ROUTE_TITLE[route],
                        c,
                        rows.rps(target, route, c),
                        mark,
                        ms(f[8]),
                        ms(f[9]),
                        int(f[6]) + int(f[7]),
                        f[10],
                        f[11],
                        cpu_tally,
                        f[13],
                        f[14],
                        f[15],
                    )
                )
        if target == "replica":
            say("")
            say(ids_note(facts.get("IDS_HONOURED")))
        if target == "breakdowns":
            say("")
            say("Every hit carries one of thousands of browsers' user agents, a language")
            say("and a `Referer` (one of 40 hosts; one hit in five none), which on `/`")
            say("names the page the hit came from, so its referrer counts as `(none)`.")
            say("NGINX sends all of a site's counting to one replica, and these hits are")
            say("all one site's, so one replica counts them. The replicas ran with")
            say("breakdowns on (the default), then were restarted with")
            say("`TALLY_BREAKDOWNS=false` for the off rows, then restarted again with")
            say("them on.")

    n_count = rows.ok_rps("nginx", "count", k)
    n_health = rows.ok_rps("nginx", "healthz", k)
    ceil = rows.ok_rps("ceiling", "static", k)
    r_count, r_health = rows.ok_rps("replica", "count", k), rows.ok_rps("replica", "healthz", k)
    a_count, a_health = rows.ok_rps("alone", "count", k), rows.ok_rps("alone", "healthz", k)
    say("")
    say("## Ratios (%s connections, same run, 2xx responses per second)" % k)
    say("")
    say("| Ratio | Value |")
    say("|---|--:|")
    r_ids = rows.ok_rps("replica", "countid", k)
    say("| counting `/` / `/healthz`, through NGINX | %s |" % ratio(n_count, n_health))
    say("| counting `/` / `/healthz`, tally alone (SQLite) | %s |" % ratio(a_count, a_health))
    say("| counting `/` with a new id each / without ids, direct to replica 1 | %s |" % ratio(r_ids, r_count))
    say("| counting `/` without ids / `/healthz`, direct to replica 1 | %s |" % ratio(r_count, r_health))
    say("| counting `/` with a new id each / `/healthz`, direct to replica 1 | %s |" % ratio(r_ids, r_health))
    b_on, b_off = rows.ok_rps("breakdowns", "on", k), rows.ok_rps("breakdowns", "off", k)
    say("| counting `/` with browsers through NGINX, breakdowns on / off | %s |" % ratio(b_on, b_off))
    say("| counting `/` through NGINX / static ceiling | %s |" % ratio(n_count, ceil))
    say("| `/healthz` through NGINX / static ceiling | %s |" % ratio(n_health, ceil))
    say("| counting `/` tally alone (SQLite) / static ceiling | %s |" % ratio(a_count, ceil))

    say("")
    say("## Group commit")
    say("")
    say("Mean hits per commit (and the number of commits) during each counting")
    say("run, from `tally_commit_batch_size` in `/metrics` before and after the")
    say("run (not its warm-up); through NGINX, summed over the 3 replicas:")
    say("")
    say("| Target | Route |" + "".join(" %s conns |" % c for c in conns))
    say("|---|---|" + "--:|" * len(conns))
    for target, route, t_title, r_title in BATCH_ROWS:
        cells = "".join(" %s |" % batch(facts.get("BATCH:%s:%s:%s" % (target, route, c))) for c in conns)
        say("| %s | %s |%s" % (t_title, r_title, cells))

    million = rows.million_rows()
    m_req = sum(int(f[4]) for f in million)
    m_us = sum(int(f[5]) for f in million)
    m_bad = sum(int(f[6]) + int(f[7]) for f in million)
    m_p50, m_p99 = (million[-1][8], million[-1][9]) if million else ("", "")
    m_rate = "%.0f" % (m_req / (m_us / 1e6)) if m_us > 0 else "-"
    driven, target_hits = int(facts["DRIVEN"]), int(facts["MILLION"])
    after_kb = facts.get("RSS_AFTER_MILLION_KB", "")
    say("")
    say("## Memory")
    say("")
    if "million" not in only:
        say("Memory check not run (`BENCH_ONLY=%s`)." % " ".join(only))
    else:
        say("Memory check: %d counted hits (target %d) sent to replica 1 at" % (driven, target_hits))
        say("%s connections, at %s req/s (p50 %s, p99 %s in the last" % (k, m_rate, ms(m_p50), ms(m_p99)))
        say(
            "stretch, %d errors). Replica 1 RSS: %s MB before, **%s MB after**."
            % (m_bad, mb(facts.get("RSS_BEFORE_MILLION_KB", "")), mb(after_kb))
        )
    say("")
    say("VmRSS (MB) of each tally process after each phase:")
    say("")
    replicas = int(facts["REPLICAS"])
    say("| Phase | alone (SQLite) |" + "".join(" replica %d |" % i for i in range(1, replicas + 1)))
    say("|---|--:|" + "--:|" * replicas)
    for line in phases_text.splitlines():
        if line:
            f = line.split("\t")
            say("| %s |" % f[0] + "".join(" %s |" % mb(kb) for kb in f[1:]))

    say("")
    say("## Goals")
    say("")
    say("| Goal | Measured | |")
    say("|---|---|---|")
    for what, count, health in [
        ("counted hits through NGINX >= 80%% of `/healthz` through NGINX", n_count, n_health),
        ("counted hits of tally alone (SQLite) >= 80%% of its `/healthz`", a_count, a_health),
    ]:
        r = ratio(count, health)
        value = None if r == "n/a" else float(r)
        pct = "n/a" if value is None else "%.0f%%" % (value * 100)
        say(
            ("| " + what + " (%s conns) | %s vs %s req/s = %s | %s |")
            % (k, count or "?", health or "?", pct, met(goal(value, lambda v: v >= 0.80)))
        )
    r = ratio(b_on, b_off)
    value = None if r == "n/a" else float(r)
    say(
        "| counted hits with breakdowns on >= 90%% of them off, through NGINX (%s conns) | %s vs %s req/s = %s | %s |"
        % (
            k,
            b_on or "?",
            b_off or "?",
            "n/a" if value is None else "%.0f%%" % (value * 100),
            met(goal(value, lambda v: v >= 0.90)),
        )
    )
    rc_row, rid_row = rows.find("replica", "count", k), rows.find("replica", "countid", k)
    p99s = [float(f[9]) for f in (rc_row, rid_row) if f]
    say(
        "| p99 of counted `/` direct to replica 1 <= 5 ms (%s conns) | without ids %s, with a new id each %s | %s |"
        % (
            k,
            ms(rc_row[9] if rc_row else ""),
            ms(rid_row[9] if rid_row else ""),
            met(goal(max(p99s) if len(p99s) == 2 else None, lambda v: v <= 5000)),
        )
    )
    # The worst p99 over every direct row (replica 1 and alone, every route).
    worst, w_name = None, ""
    for f in rows.rows:
        if f[0] in ("replica", "alone") and f[2] == k and f[3] == "ok":
            if float(f[9]) > (float(worst) if worst is not None else 0):
                worst, w_name = f[9], "%s %s" % (f[0], f[1])
    ac_row = rows.find("alone", "count", k)
    g2ok = "?" if worst is None else ("1" if float(worst) <= 5000 else "0")
    say(
        "| p99 <= 5 ms at %s connections direct | worst %s (%s); counting: replica %s, alone %s | %s |"
        % (
            k,
            ms(worst if worst is not None else ""),
            w_name or "?",
            ms(rc_row[9] if rc_row else ""),
            ms(ac_row[9] if ac_row else ""),
            met(g2ok),
        )
    )
    if after_kb == "" or "million" not in only or driven < target_hits:
        g3ok = "?"
    else:
        g3ok = "1" if float(after_kb) * 1024 <= 30e6 else "0"
    g3note = " (only %d hits within %ss)" % (driven, facts["MILLION_MAX"]) if driven < target_hits else ""
    if "million" not in only:
        g3note = " (not run)"
    say(
        "| <= 30 MB RSS per replica after a million hits | %s MB after %d hits%s | %s |"
        % (mb(after_kb), driven, g3note, met(g3ok))
    )
    median = cold.get("median_ms", "")
    g4ok = "?" if median == "" else ("1" if float(median) < 100 else "0")
    say("| ready in under 100 ms | median %s ms | %s |" % (median, met(g4ok)))
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------------------
# scripts/stack


def parse_env(text):
    """The KEY='value' lines that `scripts/stack up` writes to its env file."""
    env = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            words = shlex.split(value)
            env[key] = words[0] if words else ""
    return env


def stack_summary(env):
    state = env["TALLY_STACK_DIR"]
    replicas = "".join("%s " % url for url in env["REPLICA_URLS"].split())
    return "\n".join(
        [
            "tally stack is up (state: %s)" % state,
            "  nginx     %s/%s"
            % (
                env["NGINX_URL"],
                "   (static ceiling: /__ceiling)" if env.get("NGINX_BENCH_CEILING") == "1" else "",
            ),
            "  replicas  %s" % replicas,
            "  postgres  127.0.0.1:%s  database linode, user tally" % env["PG_PORT"],
            "  redis     127.0.0.1:%s" % env["REDIS_PORT"],
            "  admin     Authorization: Bearer $(cat %s/secrets/admin_token)" % state,
            "  env       source %s/env" % state,
            "  logs      %s/*.log" % state,
        ]
    ) + "\n"


def stack_status(text):
    """(lines, all up) from "NAME running|ready|stopped PID WHAT" lines."""
    out, ok, bad = [], 0, 0
    for line in text.splitlines():
        parts = line.split(" ", 3)
        if len(parts) < 2:
            continue
        name, state = parts[0], parts[1]
        pid = parts[2] if len(parts) > 2 else ""
        what = parts[3] if len(parts) > 3 else ""
        if state == "ready":
            out.append("%-10s running  pid %-8s %s ok" % (name, pid, what))
            ok += 1
        elif state == "running":
            out.append("%-10s running  pid %-8s %s NOT ready" % (name, pid, what))
            bad += 1
        else:
            out.append("%-10s stopped" % name)
            bad += 1
    return "".join(line + "\n" for line in out), bad == 0 and ok > 0


# ---------------------------------------------------------------------------
# command line


def _opt(args, name, default=None):
    if name in args:
        i = args.index(name)
        return args[i + 1]
    return default


def main(argv):
    if not argv:
        sys.stderr.write(__doc__)
        return 2
    cmd, args = argv[0], argv[1:]
    if cmd == "wrk-row":
        target, route, conns, path = args[:4]
        ticks = [int(x) for x in args[args.index("--ticks") + 1 : args.index("--ticks") + 6]]
        pids = _opt(args, "--rss-pids")
        rss = "-" if pids is None else " / ".join(mb(rss_kb(pid)) for pid in pids.split() or [""])
        text = _read(path)
        rc, hz = int(_opt(args, "--rc")), int(_opt(args, "--clk-tck"))
        row, progress, ok = wrk_row(target, route, conns, text, rc, hz, ticks, rss)
        print(row)
        if not ok:
            tail = " ".join(text.splitlines()[-3:])
            url = _opt(args, "--url")
            sys.stderr.write("bench: wrk failed on %s (%s connections): %s \n" % (url, conns, tail))
            return 1
        sys.stderr.write("bench: %s\n" % progress)
        return 0
    if cmd == "rss-kb":
        print("\t".join(rss_kb(pid) for pid in args))
        return 0
    if cmd == "rss-mb":
        print(" / ".join(mb(rss_kb(pid)) for pid in args))
        return 0
    if cmd == "metrics-sum":
        print(" ".join("%d" % v for v in metrics_sum(sys.stdin.read(), args)))
        return 0
    if cmd == "json-get":
        print(json.load(sys.stdin)[args[0]])
        return 0
    if cmd == "row-rate":
        print(row_rate(_read(args[0]), tuple(args[1:4]) if len(args) >= 4 else None))
        return 0
    if cmd == "bench-report":
        work = args[0]
        facts = parse_facts(_read(os.path.join(work, "facts")))
        rows = _read(os.path.join(work, "rows.tsv"))
        phases = _read(os.path.join(work, "phases.tsv"))
        sys.stdout.write(bench_report(facts, rows, phases, this_machine()))
        return 0
    if cmd == "fsync-probe":
        print(fsync_probe(args[0], int(args[1])))
        return 0
    if cmd == "stack-summary":
        sys.stdout.write(stack_summary(parse_env(_read(args[0]))))
        return 0
    if cmd == "stack-status":
        text, up = stack_status(sys.stdin.read())
        sys.stdout.write(text)
        return 0 if up else 1
    sys.stderr.write("report.py: unknown command %r\n%s" % (cmd, __doc__))
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
