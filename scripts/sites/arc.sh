#!/bin/bash
# A real NorduGrid ARC CE (A-REX 6.17 from Debian, REST interface) on loopback, with the
# project's single-node Slurm (scripts/sites/slurm.sh) as its batch system.
#
#   scripts/sites/arc.sh install  # the Debian packages only (a host with no network later)
#   scripts/sites/arc.sh start    # install if needed (root), certificates, arc.conf, start A-REX
#   scripts/sites/arc.sh stop     # both arched processes, by pid file; leftover job processes
#   scripts/sites/arc.sh env      # KEY=VALUE lines: ARC_URL, X509_USER_PROXY, ARC_CA, ARC_QUEUE
#   scripts/sites/arc.sh proxy    # a fresh proxy for the factory (renewal tests)
#
# Settings (environment): UPDRAFT_ARC_DIR, UPDRAFT_ARC_PORT (8443), UPDRAFT_ARC_HOST (the name
# in the URL and the host certificate: localhost), UPDRAFT_ARC_LISTEN (127.0.0.1), and
# UPDRAFT_SLURM_DIR for the Slurm it submits to (a second cluster inside a namespace).
#
# What docs/sites.md explains: A-REX is two arched processes and -f writes no
# pid file; tmpdir must be 1777; the stock WS start script binds every interface and leaves
# Nagle on (44 ms per reply): our copy adds Interface 127.0.0.1 and NoDelay; a missing
# dhparam.pem makes it fork `openssl dhparam 4096`; jobs inherit A-REX's environment, so it
# starts under env -i.  Slurm, not fork: a fork kill leaves the payload running.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
HERE=$(cd "$(dirname "$0")" && pwd)
G=${UPDRAFT_ARC_DIR:-/var/lib/updraft-arc}
PORT=${UPDRAFT_ARC_PORT:-8443}
ACCOUNT=${UPDRAFT_ARC_USER:-glidein}
HOST=${UPDRAFT_ARC_HOST:-localhost}  # the name clients use (in the host certificate and the URL)
LISTEN=${UPDRAFT_ARC_LISTEN:-127.0.0.1}
URL=https://$HOST:$PORT/arex
CA_DN="/O=UpdraftTest/CN=Updraft ARC Test CA"
HOST_DN="/O=UpdraftTest/CN=$HOST"
USER_DN="/O=UpdraftTest/OU=People/CN=Updraft Factory"
CERTS=$G/certificates
PROXY=$G/client/x509up
PACKAGES="nordugrid-arc-arex nordugrid-arc-plugins-arcrest nordugrid-arc-plugins-needed nordugrid-arc-client openssl procps iproute2"

sign() {  # dn key cert extensions
    openssl req -newkey rsa:2048 -nodes -keyout "$2" -out "$2.csr" -subj "$1" 2>/dev/null
    printf '%b' "$4" > "$2.ext"
    openssl x509 -req -in "$2.csr" -CA "$G/ca/ca.pem" -CAkey "$G/ca/ca.key" -CAcreateserial -days 365 -extfile "$2.ext" -out "$3" 2>/dev/null
    rm -f "$2.csr" "$2.ext"
    chmod 400 "$2"
    chmod 644 "$3"
}

make_proxy() {
    arcproxy -C "$G/user/usercert.pem" -K "$G/user/userkey.pem" -P "$PROXY" -T "$CERTS" -c validityPeriod="${1:-48h}" >/dev/null
}

certificates() {
    mkdir -p "$G"/{ca,user,client,run,log,bin} "$CERTS"
    chmod 755 "$G" "$CERTS"
    if [ ! -s "$G/ca/ca.pem" ]; then
        openssl req -x509 -newkey rsa:2048 -nodes -keyout "$G/ca/ca.key" -out "$G/ca/ca.pem" -days 3650 -subj "$CA_DN" \
            -addext "basicConstraints=critical,CA:true" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
        chmod 400 "$G/ca/ca.key"
    fi
    local hash
    hash=$(openssl x509 -in "$G/ca/ca.pem" -noout -subject_hash)
    cp "$G/ca/ca.pem" "$CERTS/$hash.0"
    printf "access_id_CA   X509   '%s'\npos_rights     globus CA:sign\ncond_subjects  globus '\"/O=UpdraftTest/*\"'\n" "$CA_DN" > "$CERTS/$hash.signing_policy"
    chmod 644 "$CERTS"/*
    openssl verify -CApath "$CERTS" "$G/hostcert.pem" >/dev/null 2>&1 || sign "$HOST_DN" "$G/hostkey.pem" "$G/hostcert.pem" \
        "basicConstraints=critical,CA:false\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=DNS:$HOST,DNS:localhost,IP:$LISTEN,IP:127.0.0.1\n"
    openssl verify -CApath "$CERTS" "$G/user/usercert.pem" >/dev/null 2>&1 || sign "$USER_DN" "$G/user/userkey.pem" "$G/user/usercert.pem" \
        "basicConstraints=critical,CA:false\nkeyUsage=critical,digitalSignature,keyEncipherment,dataEncipherment\nextendedKeyUsage=clientAuth\n"
    local left
    left=$(arcproxy -i validityLeft -P "$PROXY" 2>/dev/null || true)
    case $left in '' | *[!0-9]*) left=0 ;; esac
    [ "$left" -ge 7200 ] || make_proxy
    id "$ACCOUNT" >/dev/null 2>&1 || useradd -m -s /bin/bash "$ACCOUNT"
}

configure() {
    local slurm_conf=$1
    mkdir -p "$G"/{control,session,tmp,run,log,bin}
    chmod 1777 "$G/tmp"
    chmod 755 "$G/session" "$G/control"
    cat > "$G/arc.conf" <<EOF
# written by scripts/sites/arc.sh (used through ARC_CONFIG; /etc/arc.conf is not touched)
[common]
hostname = $HOST
x509_host_key = $G/hostkey.pem
x509_host_cert = $G/hostcert.pem
x509_cert_dir = $CERTS

[authgroup:factory]
subject = $USER_DN

[mapping]
map_to_user = factory $ACCOUNT:$ACCOUNT
policy_on_nomap = stop

[lrms]
lrms = slurm
slurm_bin_path = /usr/bin
slurm_use_sacct = no
slurm_wakeupperiod = 2

[arex]
loglevel = 3
logfile = $G/log/arex.log
joblog = $G/log/arex-jobs.log
helperlog = $G/log/job.helper.errors
controldir = $G/control
sessiondir = $G/session
tmpdir = $G/tmp
pidfile = $G/run/arched-arex.pid
wakeupperiod = 5

[arex/ws]
wsurl = $URL
logfile = $G/log/ws-interface.log
pidfile = $G/run/arched-arex-ws.pid

[arex/ws/jobs]
allowaccess = factory

[infosys]
logfile = $G/log/infoprovider.log

[infosys/glue2]

[infosys/cluster]

[queue:debug]
EOF
    /usr/lib/arc/arc-config-check --config "$G/arc.conf" --skip-warnings >/dev/null || {
        /usr/lib/arc/arc-config-check --config "$G/arc.conf" --skip-warnings >&2
        exit 1
    }
    sed 's#<tcp:Listen><tcp:Port>\$arex_port</tcp:Port></tcp:Listen>#<tcp:Listen><tcp:Interface>'"$LISTEN"'</tcp:Interface><tcp:Port>$arex_port</tcp:Port><tcp:NoDelay>true</tcp:NoDelay></tcp:Listen>#' \
        /usr/share/arc/arc-arex-ws-start > "$G/bin/arc-arex-ws-start"
    chmod 755 "$G/bin/arc-arex-ws-start"
    if [ "$(grep -c '<tcp:Interface>' "$G/bin/arc-arex-ws-start")" != 2 ]; then
        echo "arc.sh: cannot patch arc-arex-ws-start (the package changed?)" >&2
        exit 1
    fi
    if ! openssl dhparam -in "$G/control/dhparam.pem" -check -noout >/dev/null 2>&1; then
        openssl genpkey -genparam -algorithm DH -pkeyopt group:ffdhe2048 -out "$G/control/dhparam.pem"
        chmod 600 "$G/control/dhparam.pem"
    fi
    echo "$slurm_conf" > "$G/run/slurm_conf"
}

start_arched() {  # name script pidfile slurm_conf
    (cd "$G/run" && exec setsid env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 HOME=/root \
        ARC_CONFIG="$G/arc.conf" SLURM_CONF="$4" "$2" -f >>"$G/log/$1.stdout" 2>&1 </dev/null) &
    echo $! > "$3"
}

stop() {
    stop_pids 15 kill "$G/run/arex-ws.pid" "$G/run/arex-gm.pid"
    local p c
    for p in $(pgrep -u "$ACCOUNT" 2>/dev/null || true); do
        c=$(readlink "/proc/$p/cwd" 2>/dev/null || true)
        case "$c" in "$G/session/"*) kill -9 "$p" 2>/dev/null || true ;; esac
    done
}

start() {
    need_root "A-REX (it runs jobs as the mapped account)"
    install_missing nordugrid-arc-arex $PACKAGES
    local slurm_conf
    slurm_conf=$("$HERE/slurm.sh" env | sed -n 's/^SLURM_CONF=//p')
    "$HERE/slurm.sh" running || "$HERE/slurm.sh" start >/dev/null
    certificates
    configure "$slurm_conf"
    stop
    start_arched arex-gm /usr/share/arc/arc-arex-start "$G/run/arex-gm.pid" "$slurm_conf"
    start_arched arex-ws "$G/bin/arc-arex-ws-start" "$G/run/arex-ws.pid" "$slurm_conf"
    for _ in $(seq 1 150); do ss -Hltn "sport = :$PORT" | grep -q . && break; sleep 0.1; done
    if ! ss -Hltn "sport = :$PORT" | grep -q .; then
        echo "arc.sh: A-REX did not start listening; logs in $G/log" >&2
        tail -20 "$G/log/arex-ws.stdout" >&2 || true
        exit 1
    fi
    sleep 0.3
    if ! alive "$(cat "$G/run/arex-gm.pid")"; then
        echo "arc.sh: the grid manager died" >&2
        tail -20 "$G/log/arex-gm.stdout" >&2 || true
        exit 1
    fi
    echo "arc.sh: A-REX up at $URL (Slurm partition debug)" >&2
    env_lines
}

env_lines() {
    echo "ARC_URL=$URL"
    echo "ARC_CA=$G/ca/ca.pem"
    echo "X509_USER_PROXY=$PROXY"
    echo "X509_CERT_DIR=$CERTS"
    echo "ARC_QUEUE=debug"
    echo "ARC_ACCOUNT=$ACCOUNT"
    echo "ARC_HOME=$G"
}

case "${1:-}" in
    install) need_root "installing packages"; install_missing nordugrid-arc-arex $PACKAGES ;;  # the packages only (before entering a namespace with no way out)
    start) start ;;
    stop) stop ;;
    env) env_lines ;;
    proxy) need_root "a new proxy"; make_proxy "${2:-48h}"; env_lines ;;
    *) echo "usage: $0 install|start|stop|env|proxy [VALIDITY]" >&2; exit 2 ;;
esac
