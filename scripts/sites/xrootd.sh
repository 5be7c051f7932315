#!/bin/bash
# A real xrootd server (Debian xrootd-server) as a home site's storage, for the overflow tests
# and the demo: overflowed jobs read their input from it with xrdcp, as CMS's AAA did.
#
#   scripts/sites/xrootd.sh start    # install if needed (root), export $DIR/store on port $PORT
#   scripts/sites/xrootd.sh stop
#   scripts/sites/xrootd.sh env      # XROOTD_URL=root://localhost:PORT/ and XROOTD_STORE=<the exported directory>
#
# xrootd refuses to run as root: it runs as the package's xrootd account.  It has no option
# to bind one address, so the server admits only clients from localhost (xrd.allow).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
DIR=${UPDRAFT_XROOTD_DIR:-/tmp/updraft-xrootd}
PORT=${UPDRAFT_XROOTD_PORT:-11094}

stop() {
    local pid
    if [ -f "$DIR/var/run/xrootd.pid" ]; then
        pid=$(cat "$DIR/var/run/xrootd.pid")
        if alive "$pid"; then
            kill "$pid"
            for _ in $(seq 1 50); do alive "$pid" || break; sleep 0.1; done
        fi
    fi
    pkill -u xrootd -f "xrootd -c $DIR/xrootd.cfg" 2>/dev/null || true
}

start() {
    need_root "xrootd (it switches to the xrootd account)"
    install_missing xrootd-server xrootd-server xrootd-client
    stop
    mkdir -p "$DIR/data/store" "$DIR/var/admin" "$DIR/var/run" "$DIR/var/log"
    chmod 755 "$DIR" "$DIR/data" "$DIR/data/store"
    chown -R xrootd:xrootd "$DIR/var"
    cat > "$DIR/xrootd.cfg" <<EOF
# written by scripts/sites/xrootd.sh
all.export /store
oss.localroot $DIR/data
xrd.port $PORT
xrd.network nodnr
xrd.allow host localhost
all.adminpath $DIR/var/admin
all.pidpath $DIR/var/run
EOF
    runuser -u xrootd -- xrootd -b -c "$DIR/xrootd.cfg" -l "$DIR/var/log/xrootd.log" -s "$DIR/var/run/xrootd.pid" >/dev/null 2>&1
    for _ in $(seq 1 50); do ss -Hltn "sport = :$PORT" | grep -q . && break; sleep 0.1; done
    if ! ss -Hltn "sport = :$PORT" | grep -q .; then
        echo "xrootd.sh: the server did not start; see $DIR/var/log" >&2
        exit 1
    fi
    echo "xrootd.sh: xrootd serving $DIR/data/store at root://localhost:$PORT//store" >&2
    env_lines
}

env_lines() {
    echo "XROOTD_URL=root://localhost:$PORT/"
    echo "XROOTD_STORE=$DIR/data/store"
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    env) env_lines ;;
    *) echo "usage: $0 start|stop|env" >&2; exit 2 ;;
esac
