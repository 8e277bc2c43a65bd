#!/bin/sh
# The Debian packages `make test` needs, found or installed before any test starts:
#   bubblewrap  - the grading sandbox (bwrap)
#   chromium    - the browser the site tests drive (through Playwright; no browser download)
#   postgresql  - the PostgreSQL gradebook test starts its own throw-away server (initdb, pg_ctl)
# As root with apt-get, missing ones are installed quietly, once. Otherwise this stops at once
# with the one command to run. It prints what it found, so a CI log says why a run went red.
set -eu

PACKAGES="bubblewrap chromium postgresql"

has() {
    case "$1" in
        bubblewrap) command -v bwrap >/dev/null 2>&1 ;;
        chromium) [ -x "${CHROMIUM:-/usr/bin/chromium}" ] ;;
        postgresql) ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 ;;
    esac
}

version() {
    dpkg-query -W -f='${Version}' "$1" 2>/dev/null || echo "version unknown"
}

missing=""
for package in $PACKAGES; do
    has "$package" || missing="$missing $package"
done
missing="${missing# }"

if [ -n "$missing" ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "system packages: installing $missing (apt-get, once)"
        log=$(mktemp)
        if ! { apt-get update -qq -o DPkg::Lock::Timeout=600 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o DPkg::Lock::Timeout=600 $missing; } >"$log" 2>&1; then
            tail -n 20 "$log" >&2
            rm -f "$log"
            echo "make test: installing the system packages failed (above). Run: apt-get install -y $missing" >&2
            exit 1
        fi
        rm -f "$log"
    elif command -v apt-get >/dev/null 2>&1; then
        echo "make test: missing system packages: $missing. Run: sudo apt-get install -y $missing" >&2
        exit 1
    else
        echo "make test: missing system packages: $missing (Debian names). Install them with your system's package manager, then run make test again." >&2
        exit 1
    fi
fi

for package in $PACKAGES; do
    if ! has "$package"; then
        echo "make test: $package is still missing after installing it. Run: apt-get install -y $package" >&2
        exit 1
    fi
    case " $missing " in *" $package "*) how="installed" ;; *) how="found" ;; esac
    echo "system packages: $package $(version "$package") ($how)"
done
