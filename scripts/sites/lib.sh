# Shared by scripts/sites/*.sh: root checks, pids, and installing Debian packages on demand.

need_root() {  # what-needs-it
    if [ "$(id -u)" != 0 ]; then
        echo "$(basename "$0"): $1 needs root" >&2
        exit 77
    fi
}

alive() { [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null; }

stop_pids() {  # seconds kill|leave pidfile...: every daemon told at once, then waited for together
    local seconds=$1 then=$2 f p pids="" left
    shift 2
    for f in "$@"; do
        if [ -f "$f" ] && p=$(cat "$f") && alive "$p"; then
            kill "$p" 2>/dev/null && pids="$pids $p"
        fi
        rm -f "$f"
    done
    for _ in $(seq 1 $((seconds * 10))); do
        left=""
        for p in $pids; do alive "$p" && left="$left $p"; done
        pids=$left
        [ -z "$pids" ] && return 0
        sleep 0.1
    done
    if [ "$then" = kill ]; then
        for p in $pids; do kill -9 "$p" 2>/dev/null || true; done
    fi
}

install_missing() {  # probe-package package...
    local probe=$1 missing="" p
    shift
    for p in "$@"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing="$missing $p"; done
    [ -z "$missing" ] && return 0
    echo "$(basename "$0"): installing$missing" >&2
    if ! apt-cache policy "$probe" 2>/dev/null | grep -q 'Candidate: [0-9]'; then
        apt-get -o DPkg::Lock::Timeout=600 update -q >/dev/null
    fi
    # shellcheck disable=SC2086
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends $missing >/dev/null
}
