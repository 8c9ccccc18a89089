#!/usr/bin/env python3
"""Readings and report of bench/profile: where the CPU time of one request goes.

bench/profile starts the processes, drives the load and takes readings into
one directory per phase; this file turns them into the Markdown report, so
that the attribution can be tested on fixed inputs (bench/test_profile.py).

  profile.py pids STACK_PIDS_FILE
      "PID KIND" lines on stdout for every process of the run: tally alone
      and the replicas (from STACK_PIDS_FILE's "KIND PID" lines), NGINX and
      its workers, PostgreSQL's postmaster, its backends (serving tally)
      and its other processes, and Redis
  profile.py ticks PIDS_FILE     "PID TICKS" (user + system CPU ticks so far)
                                 for each PID of PIDS_FILE
  profile.py fold STACKS PIDS_FILE
      the samples of `perf script --no-inline -F comm,pid,tid,ip,sym,dso`
      (STACKS), as "KIND<TAB>BUCKET<TAB>SAMPLES" lines
  profile.py report WORK         the Markdown report from WORK/facts and
                                 WORK/<phase>/

A phase directory holds: meta (KEY=VALUE: name, title, target), wrk.out
(bench/wrk.lua's BENCH line), pids and pids1 ("PID KIND" before and after
the run), ticks0, ticks1 (per PID, before and after the run), machine (busy ticks of the machine and of
wrk, before and after), pss.tsv (pg_stat_statements after the run:
calls, total exec ms, rows, WAL bytes, query), batch ("hits commits" made
during the run) and folded (the `fold` of a second run under perf).
"""

import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from report import _read as read  # noqa: E402
from report import parse_bench_line  # noqa: E402
from report import parse_facts as kv  # noqa: E402

# ---------------------------------------------------------------------------
# processes


def kind_of_cmdline(cmdline, comm):
    """The kind of a child of the postmaster or of NGINX's master."""
    if cmdline.startswith("postgres: ") or comm == "postgres":
        # "postgres: tally linode 127.0.0.1(40000) idle" serves a client;
        # the others are "postgres: walwriter", "postgres: checkpointer"...
        return "pg-backend" if re.match(r"postgres: \S+ \S+ \S+\(\d+\)", cmdline) else "pg-other"
    if cmdline.startswith("nginx"):
        return "nginx"
    return "other"


def _proc(pid, name):
    try:
        with open("/proc/%s/%s" % (pid, name), "rb") as f:
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


def children(pid):
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = _proc(entry, "stat")
            fields = stat[stat.rfind(")") + 2 :].split()
            if len(fields) > 1 and fields[1] == str(pid):
                out.append(entry)
    return out


def pids_of_run(roots):
    """[(pid, kind)] from the "KIND PID" roots: tally-*, nginx, postgres, redis."""
    out = []
    for kind, pid in roots:
        if kind in ("nginx", "postgres"):
            out.append((pid, "nginx" if kind == "nginx" else "pg-other"))
            for child in children(pid):
                cmd = _proc(child, "cmdline").replace("\0", " ").strip()
                out.append((child, kind_of_cmdline(cmd, _proc(child, "comm").strip())))
        else:
            out.append((pid, kind))
    return out


def ticks(pid):
    stat = _proc(pid, "stat")
    if not stat:
        return 0
    fields = stat[stat.rfind(")") + 2 :].split()
    return int(fields[11]) + int(fields[12])


# ---------------------------------------------------------------------------
# perf samples into buckets
#
# Each sample's stack is walked from the leaf towards the root. A RULE
# whose pattern matches any frame of the stack decides at once (checked
# before anything else, in order); otherwise the innermost frame that some
# LAYER pattern matches decides. Frames of the standard library, the
# allocator, libc, the kernel and generic crates match nothing and so go
# to whoever called them.

TALLY_RULES = [
    # Both stores' commits, wherever they are called from.
    ("SQLite commit (pager commit, WAL write, fsync)", r"sqlite3PagerCommitPhase|sqlite3WalFrames|unixSync|sqlite3BtreeCommitPhase"),
]
TALLY_LAYERS = [
    ("cache (Redis or in-process: uniques, publish)", r"^<?tally::cache|^<?redis::|^redis::"),
    ("SQLite statements", r"sqlite3|rusqlite|tally::store::sqlite"),
    ("SQL client (tokio-postgres: encode, decode, pool)", r"tokio_postgres|postgres_protocol|postgres_types|deadpool|tally::store::postgres|tally::store::"),
    ("writer (batching, commit loop)", r"tally::counting::writer"),
    ("queueing (channels, oneshots, wake-ups)", r"^<?tokio::sync|futures_channel|tokio::runtime::task::waker|wake_by_ref|wake_by_val"),
    ("counting (handler: site, page, limits)", r"tally::counting|tally::limiter|tally::bots|tally::http::seed|tally::http::client|tally::domain"),
    ("metrics", r"tally::metrics|prometheus_client"),
    ("logging (tracing)", r"^<?tracing"),
    ("HTTP (hyper, axum, tower, sockets, code inlined into them)", r"hyper|axum|^<?tower|^<?http::|httparse|tally::http|tally::server|tally::listener|tokio::net|^<?mio::"),
    ("tokio runtime (scheduling, timers, I/O driver)", r"^<?tokio::"),
]

PG_RULES = [
    ("commit: WAL flush (XLogFlush, fdatasync)", r"^XLogFlush$|^XLogWrite$|^issue_xlog_fsync$"),
    ("commit: the rest (CommitTransactionCommand)", r"^CommitTransactionCommand$"),
    ("ON CONFLICT (conflict check, row lock)", r"^ExecCheckIndexConstraints$|^check_exclusion_or_unique_constraint$|^heap_lock_tuple$"),
    ("parse, analyse, plan, bind", r"^(pg_parse_query|raw_parser|parse_analyze\w*|pg_analyze_and_rewrite\w*|pg_rewrite_query|pg_plan_quer\w+|planner|standard_planner|GetCachedPlan|BuildCachedPlan|RevalidateCachedQuery|CreateCachedPlan|CompleteCachedPlan)$"),
]
PG_LAYERS = [
    ("pg_stat_statements (profiling only)", r"^pgss_|pg_stat_statements"),
    ("WAL records (XLogInsert)", r"^XLog(Insert|InsertRecord|RecordAssemble|Register\w*|BeginInsert)$"),
    ("locks", r"^(LockAcquire\w*|LockRelease\w*|LWLock\w+|XactLockTableWait|ProcSleep|LockTuple|ConditionalLockTuple)$"),
    ("statements: B-tree indexes", r"^(_bt_\w+|bt\w+|index_\w+|ExecInsertIndexTuples)$"),
    ("statements: heap rows", r"^(heap_\w+|heapam_\w+|simple_heap_\w+)$"),
    ("statements: executor", r"^(Exec\w+|standard_Exec\w+|Executor\w+|Portal\w+|ExecProcNode\w*)$"),
    ("client protocol, sockets", r"^(pq_\w+|secure_read|secure_write|WaitEventSetWait|WaitLatchOrSocket|__libc_recv|__libc_send|recv|send)$"),
    ("backend main loop (unresolved)", r"^PostgresMain$"),
]

# A phase with more other load than this (% of one core) is marked.
DISTURBED = 25


def parse_perf_script(text):
    """[(pid, [(symbol, dso), ...] leaf first)] from `perf script` output."""
    samples = []
    for block in text.split("\n\n"):
        lines = [line for line in block.splitlines() if line.strip()]
        if not lines:
            continue
        m = re.match(r"^\S.*?\s(\d+)/\d+\s*", lines[0])
        if not m:
            continue
        frames = []
        for line in lines[1:]:
            fm = re.match(r"^\s*[0-9a-f]+ (.*) \((.*)\)$", line)
            if fm:
                frames.append((fm.group(1), fm.group(2)))
        samples.append((m.group(1), frames))
    return samples


def _compile(table):
    return [(name, re.compile(pattern)) for name, pattern in table]


RULES = {"tally": (_compile(TALLY_RULES), _compile(TALLY_LAYERS)), "pg": (_compile(PG_RULES), _compile(PG_LAYERS))}


def bucket(family, frames):
    rules, layers = RULES[family]
    for name, pattern in rules:
        for sym, dso in frames:
            if pattern.search(sym):
                return name
    for sym, dso in frames:
        for name, pattern in layers:
            if pattern.search(sym) or (family == "pg" and pattern.search(os.path.basename(dso))):
                return name
    if frames and frames[0][1].startswith("[kernel"):
        return "kernel, callers unresolved"
    return "other (allocator, libc, unresolved)"


def family_of(kind):
    if kind.startswith("tally"):
        return "tally"
    if kind == "pg-backend":
        return "pg"
    return None


def fold(samples, kinds):
    """{(kind, bucket): samples} for the PIDs of KINDS (pid -> kind)."""
    out = {}
    for pid, frames in samples:
        kind = kinds.get(pid)
        if kind is None:
            continue
        family = family_of(kind)
        name = bucket(family, frames) if family else "all"
        key = (kind, name)
        out[key] = out.get(key, 0) + 1
    return out


# ---------------------------------------------------------------------------
# the report


def pairs(text):
    out = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 2:
            out[parts[0]] = parts[1]
    return out


class Phase:
    """One phase's readings: requests, CPU per process kind, samples, statements."""

    def __init__(self, directory):
        self.meta = kv(read(os.path.join(directory, "meta")))
        self.name = self.meta.get("name", os.path.basename(directory))
        wrk = parse_bench_line(read(os.path.join(directory, "wrk.out"))) or {}
        self.requests = int(wrk.get("requests", 0) or 0)
        self.bad = int(wrk.get("non2xx", 0) or 0) + sum(int(wrk.get(k, 0) or 0) for k in ("connect", "read", "write", "timeout"))
        self.seconds = float(wrk.get("duration_us", 0) or 0) / 1e6
        self.p99_us = wrk.get("p99_us", "")
        kinds = pairs(read(os.path.join(directory, "pids")))
        kinds.update(pairs(read(os.path.join(directory, "pids1"))))
        t0 = pairs(read(os.path.join(directory, "ticks0")))
        t1 = pairs(read(os.path.join(directory, "ticks1")))
        self.ticks = {}
        for pid, kind in kinds.items():
            d = int(t1.get(pid, 0)) - int(t0.get(pid, 0))
            self.ticks[kind] = self.ticks.get(kind, 0) + max(d, 0)
        machine = kv(read(os.path.join(directory, "machine")))
        self.ticks["wrk"] = int(machine.get("wrk1", 0)) - int(machine.get("wrk0", 0))
        busy = int(machine.get("busy1", 0)) - int(machine.get("busy0", 0))
        self.ticks["other (not this run)"] = max(busy - sum(self.ticks.values()), 0)
        self.hz = int(machine.get("hz", 100))
        self.folded = {}
        for line in read(os.path.join(directory, "folded")).splitlines():
            kind, name, n = line.split("\t")
            self.folded[(kind, name)] = self.folded.get((kind, name), 0) + int(n)
        self.statements = []
        for line in read(os.path.join(directory, "pss.tsv")).splitlines():
            f = line.split("\t")
            if len(f) >= 5:
                self.statements.append(
                    {"calls": int(f[0]), "ms": float(f[1]), "rows": int(f[2]), "wal": int(f[3] or 0), "query": f[4]}
                )
        b = read(os.path.join(directory, "batch")).split()
        self.batch = (int(b[0]), int(b[1])) if len(b) == 2 else None

    def other_pct(self):
        """Load that is not this run's, in % of one core."""
        t = self.ticks["other (not this run)"]
        return t / self.hz / self.seconds * 100 if self.seconds else 0.0

    def busy_pct(self, mine=False):
        """CPU in use during the clean run, in % of one core: this run's
        processes (mine) or the whole machine."""
        t = sum(v for k, v in self.ticks.items() if not (mine and k == "other (not this run)"))
        return t / self.hz / self.seconds * 100 if self.seconds else 0.0

    def title(self):
        mark = " †" if self.other_pct() > DISTURBED else ""
        return self.meta.get("title", self.name) + mark

    def rps(self):
        return self.requests / self.seconds if self.seconds else 0.0

    def us(self, ticks):
        """CPU ticks as µs per request."""
        return ticks / self.hz * 1e6 / self.requests if self.requests else 0.0

    def kind_us(self, prefix):
        return self.us(sum(t for k, t in self.ticks.items() if k.startswith(prefix)))

    def split(self, family_prefix):
        """{bucket: µs per request} of the kinds starting with FAMILY_PREFIX:
        the kinds' CPU ticks in the clean run, shared out by the buckets'
        samples in the run under perf."""
        total_us = self.kind_us(family_prefix)
        samples = {k: n for k, n in self.folded.items() if k[0].startswith(family_prefix)}
        n = sum(samples.values())
        out = {}
        for (kind, name), count in samples.items():
            out[name] = out.get(name, 0.0) + total_us * count / n
        return out, n


def NPROC(facts):
    return int(facts.get("NPROC", "2") or 2)


def fmt_us(x):
    if x is None:
        return ""
    return "%.1f" % x if abs(x) < 100 else "%.0f" % x


def statement_label(q, width=60):
    """What a statement writes (its UPDATE, INSERT and DELETE targets, in
    order) and how it starts: tally's counting statements all start alike."""
    q = re.sub(r"\s+", " ", q).strip()
    writes = []
    for verb, name in re.findall(r"\b(UPDATE|INSERT INTO|DELETE FROM) (?!SET\b)(\w+)", q, re.IGNORECASE):
        w = "%s %s" % (verb.upper(), name)
        if w not in writes:
            writes.append(w)
    start = q if len(q) <= width else q[: width - 1] + "…"
    return ("%s: %s" % (", ".join(writes), start)) if writes else start


KIND_TITLES = [
    ("wrk", "wrk (the load generator)"),
    ("tally-1", "tally replica 1"),
    ("tally-2", "tally replica 2"),
    ("tally-3", "tally replica 3"),
    ("tally-alone", "tally alone (SQLite)"),
    ("nginx", "NGINX"),
    ("pg-backend", "PostgreSQL backends"),
    ("pg-other", "PostgreSQL other (WAL writer, checkpointer, postmaster, …)"),
    ("redis", "Redis"),
    ("other (not this run)", "other load on the machine (not this run)"),
]


def budget_rows(phases, family, order):
    """Rows (bucket, [µs per phase]) of FAMILY's split, in ORDER then the rest."""
    splits = [p.split(family)[0] for p in phases]
    names = [n for n, _ in order]
    seen = set().union(*[set(s) for s in splits]) if splits else set()
    extra = sorted(seen - set(names))
    rows = []
    for name in names + extra:
        if any(name in s for s in splits):
            rows.append((name, [s.get(name) for s in splits]))
    return rows


def table(say, header, rows):
    say("| " + " | ".join(header) + " |")
    say("|---|" + "--:|" * (len(header) - 1))
    for r in rows:
        say("| " + " | ".join(r) + " |")


def diff(a, b):
    if a is None and b is None:
        return None
    return (a or 0.0) - (b or 0.0)


def profile_report(facts, phases):
    out = []
    say = out.append
    by = {p.name: p for p in phases}
    say("# tally per-request CPU profile, %s" % facts.get("STARTED_AT", "?"))
    say("")
    say("| | |")
    say("|---|---|")
    say("| tally | commit `%s` |" % facts.get("COMMIT", "?"))
    say("| Machine | %s cores; %s |" % (facts.get("NPROC", "?"), facts.get("SOFTWARE", "")))
    say(
        "| Load | wrk %s threads, %s connections, %s s per phase (a clean run, then the same load again under perf) |"
        % (facts.get("THREADS", "?"), facts.get("CONNS", "?"), facts.get("DURATION", "?"))
    )
    say("| perf | `perf record -a -e cpu-clock -F %s --call-graph dwarf`, samples of this run's processes only |" % facts.get("FREQ", "?"))
    say("| Request ids | %s |" % facts.get("IDS_CHECK", "not checked"))
    say("")
    say("Every figure is **µs of CPU per request**: the CPU ticks (user + system,")
    say("from `/proc/PID/stat`) that each process used during the clean run,")
    say("divided by the requests wrk got answered in it. wrk runs on the same")
    say("cores, so its own cost is shown too. Absolute µs depend on the machine")
    say("and on what else runs on it; compare them only with the same run's")
    say("`/healthz`, and read the ratios. A phase whose processes leave the")
    say("machine partly idle (\"machine busy\" well under its cores) is bound by")
    say("waiting (a commit's fsync, a lock), not by CPU.")
    say("")
    say("## Requests and CPU per request, by process")
    say("")
    header = ["µs CPU per request"] + [p.title() for p in phases]
    rows = [
        ["req/s (errors)"] + ["%.0f (%d)" % (p.rps(), p.bad) for p in phases],
        ["p99"] + [("%.2f ms" % (float(p.p99_us) / 1000)) if p.p99_us else "" for p in phases],
        ["machine busy, this run (all of it)"]
        + ["%.0f%% (%.0f%%) of %d00%%" % (p.busy_pct(mine=True), p.busy_pct(), NPROC(facts)) for p in phases],
        ["mean commit batch"] + [("%.1f" % (p.batch[0] / p.batch[1])) if p.batch and p.batch[1] else "-" for p in phases],
    ]
    for kind, title in KIND_TITLES:
        vals = [p.us(p.ticks.get(kind, 0)) for p in phases]
        if any(v > 0 for v in vals):
            rows.append([title] + [fmt_us(v) for v in vals])
    rows.append(
        ["**all of this run**"]
        + ["**%s**" % fmt_us(sum(p.us(t) for k, t in p.ticks.items() if k != "other (not this run)")) for p in phases]
    )
    table(say, header, rows)
    disturbed = [p for p in phases if p.other_pct() > DISTURBED]
    if disturbed:
        say("")
        say(
            "† %d of %d phases shared the machine with more than %d%% of one core of other load (%s):"
            % (len(disturbed), len(phases), DISTURBED, ", ".join("%.0f%%" % p.other_pct() for p in disturbed))
        )
        say("their req/s are low; their µs per request are less disturbed, but contention (locks, smaller")
        say("batches) can raise them too.")

    for family, title, order, note in [
        (
            "tally",
            "tally's CPU per request, by part",
            TALLY_RULES + TALLY_LAYERS,
            "tally's ticks (all replicas of the phase's target) shared out by where perf's samples of tally fell: the innermost frame of tally's own code or of a crate that names the part; the allocator, libc and the kernel go to whoever called them. Frames are functions as compiled (`perf script --no-inline`): code inlined into a hyper or axum function (much of the handlers') counts as HTTP, so the HTTP row of `/` minus that of `/healthz` is handler work.",
        ),
        (
            "pg-backend",
            "PostgreSQL backends' CPU per request, by part",
            PG_RULES + PG_LAYERS,
            "The backends' ticks shared out by perf's samples of them. Debian's `postgres` has no debug symbols here (no `postgresql-15-dbgsym`), only its exported functions: static functions show as their nearest exported caller.",
        ),
    ]:
        say("")
        say("## %s" % title)
        say("")
        say(note)
        say("")
        rows = []
        for name, vals in budget_rows(phases, family, order):
            rows.append([name] + [fmt_us(v) for v in vals])
        rows.append(["(perf samples)"] + ["%d" % p.split(family)[1] for p in phases])
        table(say, ["µs CPU per request"] + [p.title() for p in phases], rows)

    say("")
    say("## Statements (pg_stat_statements, clean run)")
    for p in phases:
        if not p.statements or not p.requests:
            continue
        total_ms = sum(s["ms"] for s in p.statements)
        pg_split, _ = p.split("pg-backend")
        stmt_us = sum(v for k, v in pg_split.items() if k.startswith("statements:") or k.startswith("ON CONFLICT") or k.startswith("WAL records") or k.startswith("locks"))
        say("")
        say("### %s" % p.title())
        say("")
        say(
            "Per request: calls, execution time (wall clock in the executor, lock waits included), WAL bytes; "
            "**CPU µs** shares the backends' statement CPU (executor, heap, indexes, WAL records, locks, ON CONFLICT: "
            "%s µs per request) out by execution time." % fmt_us(stmt_us)
        )
        say("")
        rows = []
        for s in sorted(p.statements, key=lambda s: -s["ms"]):
            if s["ms"] * 1000 / p.requests < 0.05 and s["calls"] < p.requests / 1000:
                continue
            rows.append(
                [
                    "`%s`" % statement_label(s["query"]).replace("|", "\\|"),
                    "%.3f" % (s["calls"] / p.requests),
                    "%.1f" % (s["rows"] / s["calls"] if s["calls"] else 0),
                    fmt_us(s["ms"] * 1000 / p.requests),
                    "%.0f" % (s["wal"] / p.requests),
                    fmt_us(stmt_us * s["ms"] / total_ms if total_ms else None),
                ]
            )
        table(say, ["statement", "calls/req", "rows/call", "exec µs/req", "WAL B/req", "CPU µs/req"], rows)

    # The budget: one counted hit beside one /healthz.
    say("")
    say("## Per-hit budget")
    say("")
    h, c, i = by.get("replica-healthz"), by.get("replica-count"), by.get("replica-countid")
    n, ah, ac = by.get("nginx-count"), by.get("alone-healthz"), by.get("alone-count")
    if not (h and c and i):
        say("(needs the phases replica-healthz, replica-count and replica-countid)")
    else:
        say("Direct to replica 1, µs of CPU per request (all processes of the run but wrk):")
        say("")
        tc, _ = c.split("tally")
        ti, _ = i.split("tally")
        th, _ = h.split("tally")
        pc, _ = c.split("pg-backend")
        pi, _ = i.split("pg-backend")

        def part(split, *prefixes):
            return sum(v for k, v in split.items() if k.startswith(prefixes))

        def all_but_wrk(p):
            return sum(p.us(t) for k, t in p.ticks.items() if k not in ("wrk", "other (not this run)"))

        http = ("HTTP (hyper", "tokio runtime", "logging", "metrics", "kernel", "other (allocator")
        rows = [
            ["HTTP, runtime, allocator (what `/healthz` costs in tally)", fmt_us(part(th, *http)), fmt_us(part(tc, *http)), fmt_us(part(ti, *http))],
            ["counting handler (site, page, limits)", fmt_us(part(th, "counting")), fmt_us(part(tc, "counting")), fmt_us(part(ti, "counting"))],
            ["queueing and the writer", fmt_us(part(th, "queueing", "writer")), fmt_us(part(tc, "queueing", "writer")), fmt_us(part(ti, "queueing", "writer"))],
            ["SQL client in tally (tokio-postgres)", fmt_us(part(th, "SQL client")), fmt_us(part(tc, "SQL client")), fmt_us(part(ti, "SQL client"))],
            ["cache (uniques, publish to Redis)", fmt_us(part(th, "cache")), fmt_us(part(tc, "cache")), fmt_us(part(ti, "cache"))],
            ["Redis server", fmt_us(h.kind_us("redis")), fmt_us(c.kind_us("redis")), fmt_us(i.kind_us("redis"))],
            ["PostgreSQL: statements (executor, heap, indexes, WAL records, locks)", "", fmt_us(part(pc, "statements", "WAL records", "locks")), fmt_us(part(pi, "statements", "WAL records", "locks"))],
            ["PostgreSQL: ON CONFLICT (the series bucket; with ids also the id rows)", "", fmt_us(part(pc, "ON CONFLICT")), fmt_us(part(pi, "ON CONFLICT"))],
            ["PostgreSQL: commit (WAL flush and the rest)", "", fmt_us(part(pc, "commit")), fmt_us(part(pi, "commit"))],
            ["PostgreSQL: parse/plan/bind, protocol, other", "", fmt_us(part(pc, "parse", "client protocol", "backend main", "other", "kernel", "pg_stat")), fmt_us(part(pi, "parse", "client protocol", "backend main", "other", "kernel", "pg_stat"))],
            ["PostgreSQL: WAL writer, checkpointer, …", fmt_us(h.kind_us("pg-other")), fmt_us(c.kind_us("pg-other")), fmt_us(i.kind_us("pg-other"))],
            ["**total (all but wrk)**", "**%s**" % fmt_us(all_but_wrk(h)), "**%s**" % fmt_us(all_but_wrk(c)), "**%s**" % fmt_us(all_but_wrk(i))],
            ["req/s (the last two columns: their ratios)", "%.0f" % h.rps(), "%.0f" % c.rps(), "%.0f" % i.rps()],
        ]
        for r in rows[:-1]:
            a, b, c2 = (float(x.strip("*")) if x.strip("*") else 0.0 for x in r[1:4])
            r += [fmt_us(b - a), fmt_us(c2 - b)]
        rows[-1] += ["%.2f" % (c.rps() / h.rps()), "%.2f" % (i.rps() / c.rps())]
        header = ["µs CPU per request", "`/healthz`", "`/` without ids", "`/` with a new id each"]
        table(say, header + ["`/` without ids − `/healthz`", "with ids − without"], rows)
        say("")
        say(
            "- A counted hit without an id costs %.1f× the CPU of a `/healthz` (%s vs %s µs); with a new id, %.1f× (%s µs)."
            % (all_but_wrk(c) / all_but_wrk(h), fmt_us(all_but_wrk(c)), fmt_us(all_but_wrk(h)), all_but_wrk(i) / all_but_wrk(h), fmt_us(all_but_wrk(i)))
        )
        say(
            "- The request-id record (with ids minus without): %s µs per hit, of which tally %s, PostgreSQL backends %s, the rest %s."
            % (
                fmt_us(all_but_wrk(i) - all_but_wrk(c)),
                fmt_us(i.kind_us("tally") - c.kind_us("tally")),
                fmt_us(i.kind_us("pg-backend") - c.kind_us("pg-backend")),
                fmt_us((all_but_wrk(i) - i.kind_us("tally") - i.kind_us("pg-backend")) - (all_but_wrk(c) - c.kind_us("tally") - c.kind_us("pg-backend"))),
            )
        )
        say("- Same-run throughput: `/` without ids / `/healthz` = %.2f; with ids / without = %.2f." % (c.rps() / h.rps(), i.rps() / c.rps()))
    if n and by.get("nginx-healthz"):
        nh = by["nginx-healthz"]
        say("- Through NGINX: `/` / `/healthz` = %.2f (%.0f vs %.0f req/s)." % (n.rps() / nh.rps(), n.rps(), nh.rps()))
    if ah and ac:
        say(
            "- tally alone (SQLite): `/` / `/healthz` = %.2f; tally's CPU per request %s vs %s µs."
            % (ac.rps() / ah.rps(), fmt_us(ac.kind_us("tally")), fmt_us(ah.kind_us("tally")))
        )
    say("")
    say("## What this could not attribute")
    say("")
    say("- The series bucket and the visitors update are one statement (`hour_bucket!`):")
    say("  pg_stat_statements cannot split them. The ON CONFLICT row above (conflict check and row")
    say("  lock of an upsert) is the bucket's own part in `/` without ids; the rest of the bucket's")
    say("  work is inside the statement rows. The bucket is written once per batch and site, not")
    say("  per hit.")
    say("- Statement CPU is shared out by pg_stat_statements execution time, which includes waits")
    say("  for row locks; a statement that waits long gets more than its CPU.")
    say("- PostgreSQL's static functions have no symbols here: their samples go to the nearest")
    say("  exported caller (`PostgresMain` for the protocol loop).")
    say("- perf's own overhead slows the run under perf; only the shares of its samples are used,")
    say("  the µs come from the clean run. wrk is not profiled.")
    return "\n".join(out) + "\n"


def main(argv):
    if not argv:
        sys.stderr.write(__doc__)
        return 2
    cmd, args = argv[0], argv[1:]
    if cmd == "pids":
        roots = [tuple(line.split()[:2]) for line in read(args[0]).splitlines() if len(line.split()) >= 2]
        for pid, kind in pids_of_run(roots):
            print("%s %s" % (pid, kind))
        return 0
    if cmd == "ticks":
        for pid in pairs(read(args[0])):
            print("%s %d" % (pid, ticks(pid)))
        return 0
    if cmd == "fold":
        kinds = pairs(read(args[1]))
        folded = fold(parse_perf_script(read(args[0])), kinds)
        for (kind, name), n in sorted(folded.items()):
            print("%s\t%s\t%d" % (kind, name, n))
        return 0
    if cmd == "report":
        work = args[0]
        facts = kv(read(os.path.join(work, "facts")))
        names = facts.get("PHASES", "").split()
        phases = [Phase(os.path.join(work, name)) for name in names if os.path.isdir(os.path.join(work, name))]
        sys.stdout.write(profile_report(facts, phases))
        return 0
    sys.stderr.write("profile.py: unknown command %r\n%s" % (cmd, __doc__))
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
