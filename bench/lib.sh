# Shell functions shared by bench/run and bench/profile (sourced, not run):
# Debian tools, free ports, the release build, tally alone and the process
# stack started and stopped, CPU ticks read from /proc.
#
# The script that sources it sets REPO (the repository) and SAY_AS (the
# name its messages start with), then WORK (its temporary directory)
# before building or starting anything. On exit, for any reason, cleanup
# stops what start_alone and start_stack started and removes WORK (kept
# if KEEP_WORK=1 or on failure).

say() { printf '%s: %s\n' "$SAY_AS" "$*" >&2; }
die() { printf '%s: error: %s\n' "$SAY_AS" "$*" >&2; exit 1; }
report() { python3 "$REPO/bench/report.py" "$@"; }

# ---------------------------------------------------------------------------
# cleanup: whatever was started is stopped, whatever happens

WORK=""
ALONE_PID=""
STACK_STARTED=0
KEEP_WORK=0
# Helpers running in the background (a probe), stopped with SIGTERM.
HELPER_PIDS=()

cleanup() {
    local rc=$? pid
    trap - EXIT INT TERM
    for pid in "${HELPER_PIDS[@]}"; do
        { kill -TERM "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; } || true
    done
    if [[ -n "$ALONE_PID" ]] && kill -0 "$ALONE_PID" 2>/dev/null; then
        # SIGTERM, then SIGKILL if it has not exited within its grace.
        kill -TERM "$ALONE_PID" 2>/dev/null || true
        (sleep 15 && kill -KILL "$ALONE_PID" 2>/dev/null) &
        local killer=$!
        wait "$ALONE_PID" 2>/dev/null || true
        kill "$killer" 2>/dev/null || true
        wait "$killer" 2>/dev/null || true
    fi
    if ((STACK_STARTED)); then
        say "stopping the stack"
        TALLY_STACK_DIR="$WORK/stack" "$REPO/scripts/stack" down >/dev/null 2>&1 ||
            say "warning: scripts/stack down failed (state in $WORK/stack)"
    fi
    if [[ -n "$WORK" && -d "$WORK" ]]; then
        if [[ "$KEEP_WORK" == 1 || $rc -ne 0 ]]; then
            say "logs kept in $WORK"
        else
            rm -rf "$WORK"
        fi
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------------------
# tools

# ensure_tools [COMMAND:PACKAGE...]: installs from Debian what is missing of
# wrk, nginx, curl, python3 and the COMMANDs given.
ensure_tools() {
    local need=() pair
    command -v wrk >/dev/null 2>&1 || need+=(wrk)
    command -v nginx >/dev/null 2>&1 || [[ -x /usr/sbin/nginx ]] || need+=(nginx-light)
    command -v curl >/dev/null 2>&1 || need+=(curl)
    command -v python3 >/dev/null 2>&1 || need+=(python3)
    for pair in "$@"; do
        command -v "${pair%%:*}" >/dev/null 2>&1 || need+=("${pair#*:}")
    done
    ((${#need[@]} == 0)) && return 0
    [[ "$(id -u)" -eq 0 ]] || die "missing ${need[*]} (sudo apt-get install -y ${need[*]})"
    say "installing ${need[*]}"
    # Keep the packages' scripts from starting a system NGINX on port 80.
    local policy=/usr/sbin/policy-rc.d made=0 rc=0
    if [[ ! -e "$policy" ]]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy"
        chmod 0755 "$policy"
        made=1
    fi
    { DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=120 update &&
        DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=120 install -y \
            --no-install-recommends "${need[@]}"; } || rc=$?
    ((made)) && rm -f "$policy"
    ((rc == 0)) || die "apt-get install ${need[*]} failed"
}

# True if nothing listens on 127.0.0.1:$1 and we may bind it.
port_free() {
    python3 - "$1" <<'PY'
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
try:
    s.bind(("127.0.0.1", int(sys.argv[1])))
except OSError:
    sys.exit(1)
finally:
    s.close()
PY
}

TAKEN=" "
# free_port START: the first free port from START not handed out yet.
free_port() {
    local p
    for ((p = $1; p < $1 + 200; p++)); do
        [[ "$TAKEN" == *" $p "* ]] && continue
        if port_free "$p"; then
            TAKEN+="$p "
            echo "$p"
            return 0
        fi
    done
    die "no free port from $1"
}

http_code() { curl -s -o /dev/null -m 5 -w '%{http_code}' "$1" || true; }

# The default site's count, read through $1 (a base URL).
read_count() {
    curl -fsS -m 5 "$1/api/v1/sites/default/count" | report json-get count
}

# Group commits, summed over tally base URLs: "hits commits" from /metrics.
commit_totals() {
    local u
    for u in "$@"; do
        curl -s -m 5 "$u/metrics" || true
    done | report metrics-sum tally_commit_batch_size_sum tally_commit_batch_size_count
}

# ---------------------------------------------------------------------------
# process accounting: CPU ticks from /proc/PID/stat, read with builtins
# only (no fork) around each run; RSS is read by bench/report.py

CLK_TCK="$(getconf CLK_TCK)"

# ticks_of PID...: sets TICKS to the summed user+system ticks of the PIDs.
ticks_of() {
    TICKS=0
    local pid line f
    for pid in "$@"; do
        [[ -r "/proc/$pid/stat" ]] || continue
        read -r line <"/proc/$pid/stat" 2>/dev/null || continue
        line="${line##*) }"
        read -r -a f <<<"$line"
        TICKS=$((TICKS + f[11] + f[12]))
    done
}

# self_child_ticks: sets TICKS to the CPU of this shell's waited-for
# children (wrk, between two reads around its run). No fork: builtins only.
self_child_ticks() {
    local line f
    read -r line <"/proc/$$/stat"
    line="${line##*) }"
    read -r -a f <<<"$line"
    TICKS=$((f[13] + f[14]))
}

# machine_busy_ticks: sets TICKS to all CPUs' non-idle ticks so far.
machine_busy_ticks() {
    local u n s irq sirq steal
    # cpu user nice system idle iowait irq softirq steal ...
    read -r _ u n s _ _ irq sirq steal _ </proc/stat
    TICKS=$((u + n + s + irq + sirq + steal))
}

busy_pct() { # CPU in use over one second, in % of one core
    machine_busy_ticks
    local a=$TICKS
    sleep 1
    machine_busy_ticks
    echo $(((TICKS - a) * 100 / CLK_TCK))
}
# wait_quiet: if QUIET_WAIT > 0, wait up to that many seconds for the
# machine to be below QUIET_BELOW % of one core busy; sets BUSY to the last
# reading.
wait_quiet() {
    BUSY="$(busy_pct)"
    ((QUIET_WAIT > 0)) || return 0
    local deadline=$((SECONDS + QUIET_WAIT))
    while ((BUSY > QUIET_BELOW && SECONDS < deadline)); do
        say "machine busy (${BUSY}% of one core); waiting for < ${QUIET_BELOW}%"
        sleep 4
        BUSY="$(busy_pct)"
    done
}

children_of() { ps -o pid= --ppid "$1" 2>/dev/null | tr -s ' \n' ' ' || true; }

# ---------------------------------------------------------------------------
# build and start

# build_release TRIES: `cargo build --release --locked` (unless
# BENCH_SKIP_BUILD=1), retried a minute apart while the tree does not
# compile; then a private copy of the binary in $WORK/bin (a rebuild during
# the run must not change what is measured). Sets BIN and COMMIT.
build_release() {
    local tries="$1" try built=0
    if [[ "${BENCH_SKIP_BUILD:-0}" != 1 ]]; then
        for ((try = 1; try <= tries; try++)); do
            say "cargo build --release --locked (try $try/$tries)"
            if (cd "$REPO" && cargo build --release --locked) >"$WORK/build.log" 2>&1; then
                built=1
                break
            fi
            say "build failed; last lines:"
            tail -n 6 "$WORK/build.log" >&2
            ((try < tries)) && { say "retrying in 60s"; sleep 60; }
        done
        ((built)) || die "cargo build --release --locked failed $tries times (log: $WORK/build.log)"
    fi
    [[ -x "$REPO/target/release/tally" ]] || die "no target/release/tally"
    mkdir -p "$WORK/bin"
    cp "$REPO/target/release/tally" "$WORK/bin/tally"
    BIN="$WORK/bin/tally"
    same_build "$BIN"
    COMMIT="$(git -C "$REPO" rev-parse --short HEAD)"
    if [[ "$BUILD_ID" == *+dirty.* ]]; then
        COMMIT+=" (with uncommitted changes: ${BUILD_ID#*+})"
    fi
}

# same_build BINARY: refuses (exits) unless BINARY was built from this
# checkout as it is now: the commit and the digest of uncommitted changes
# that `BINARY --version` names are scripts/build-id's. A stale
# target/release/tally (BENCH_SKIP_BUILD=1 after a pull or an edit) would
# otherwise be measured as this tree's code. Sets BUILD_ID.
same_build() {
    local binary="$1" version
    BUILD_ID="$("$REPO/scripts/build-id")"
    version="$("$binary" --version)" || die "$binary --version failed"
    if [[ "$version" != *"(commit $BUILD_ID)" ]]; then
        die "$binary is not this checkout's build: it says '$version', the checkout is $BUILD_ID (build it again, without BENCH_SKIP_BUILD=1)"
    fi
    say "measuring $version"
}

# start_alone: tally alone on SQLite in $WORK/alone, on a free port, ready.
# Sets ALONE_PID and ALONE_URL.
start_alone() {
    local port i
    port="$(free_port 18200)"
    mkdir -p "$WORK/alone"
    say "starting tally alone on 127.0.0.1:$port (SQLite)"
    env -i PATH="$PATH" HOME="${HOME:-/root}" \
        TALLY_LISTEN="127.0.0.1:$port" \
        TALLY_DATABASE_URL="sqlite://$WORK/alone/tally.db" \
        TALLY_RATE_LIMIT=0 TALLY_NEW_PAGES_PER_CLIENT=0 TALLY_NEW_PAGES_PER_SITE=0 TALLY_READ_RATE_LIMIT=0 TALLY_LOG=warn \
        "$BIN" serve >"$WORK/alone.log" 2>&1 </dev/null &
    ALONE_PID=$!
    ALONE_URL="http://127.0.0.1:$port"
    for ((i = 0; i < 300; i++)); do
        [[ "$(http_code "$ALONE_URL/readyz")" == 200 ]] && break
        kill -0 "$ALONE_PID" 2>/dev/null || die "tally alone exited: $(tail -n 5 "$WORK/alone.log")"
        sleep 0.1
    done
    [[ "$(http_code "$ALONE_URL/readyz")" == 200 ]] || die "tally alone not ready after 30s"
}

# The replicas' settings, at start and at every restart.
STACK_ENV=(TALLY_RATE_LIMIT=0 TALLY_NEW_PAGES_PER_CLIENT=0 TALLY_NEW_PAGES_PER_SITE=0
    TALLY_READ_RATE_LIMIT=0 TALLY_LOG=warn)

# shellcheck disable=SC1091
stack_var() { (. "$WORK/stack/env" && eval "printf '%s' \"\$$1\""); }

# start_stack [NAME=VALUE...]: scripts/stack up in $WORK/stack (with the
# extra environment given), ready. Sets NGINX_URL, REPLICA_URLS,
# REPLICA_URL (replica 1), REPLICA_PIDS, NGINX_PID, PG_PID, REDIS_PID.
start_stack() {
    local nginx_port
    nginx_port="$(free_port 18180)"
    say "starting the stack (scripts/stack up, state in $WORK/stack)"
    STACK_STARTED=1
    env "$@" TALLY_STACK_DIR="$WORK/stack" TALLY_BIN="$BIN" TALLY_STACK_NGINX_PORT="$nginx_port" \
        "${STACK_ENV[@]}" TALLY_STACK_NGINX_ACCESS_LOG=off \
        "$REPO/scripts/stack" up >"$WORK/stack-up.log" 2>&1 ||
        die "scripts/stack up failed: $(tail -n 20 "$WORK/stack-up.log")"
    NGINX_URL="$(stack_var NGINX_URL)"
    read -r -a REPLICA_URLS <<<"$(stack_var REPLICA_URLS)"
    replica_pids
    NGINX_PID="$(tr -d '[:space:]' <"$(stack_var NGINX_PID_FILE)")"
    PG_PID="$(tr -d '[:space:]' <"$(stack_var PG_PID_FILE)")"
    REDIS_PID="$(tr -d '[:space:]' <"$(stack_var REDIS_PID_FILE)")"
    REPLICA_URL="${REPLICA_URLS[0]}"
    if [[ -n "$ALONE_PID" && "$(readlink "/proc/$ALONE_PID/exe" 2>/dev/null)" != "$BIN" ]]; then
        die "pid $ALONE_PID is not the tally under test"
    fi
    say "stack up: NGINX $NGINX_URL, replicas ${REPLICA_URLS[*]}"
}

# REPLICA_PIDS from the stack's PID files; each must be the tally under test.
replica_pids() {
    local f p
    REPLICA_PIDS=()
    for f in $(stack_var REPLICA_PID_FILES); do REPLICA_PIDS+=("$(tr -d '[:space:]' <"$f")"); done
    for p in "${REPLICA_PIDS[@]}"; do
        [[ "$(readlink "/proc/$p/exe" 2>/dev/null)" == "$BIN" ]] || die "pid $p is not the tally under test"
    done
}

# restart_replicas [NAME=VALUE...]: every replica stopped and started again
# (scripts/stack restart-replica), one after the other, with the stack's
# settings and the extra environment given; REPLICA_PIDS follows.
restart_replicas() {
    local i
    for ((i = 1; i <= ${#REPLICA_URLS[@]}; i++)); do
        env "$@" TALLY_STACK_DIR="$WORK/stack" TALLY_BIN="$BIN" "${STACK_ENV[@]}" \
            "$REPO/scripts/stack" restart-replica "$i" >>"$WORK/stack-restart.log" 2>&1 ||
            die "scripts/stack restart-replica $i failed: $(tail -n 20 "$WORK/stack-restart.log")"
    done
    replica_pids
}
