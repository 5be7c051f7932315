#!/bin/bash
# A real Globus GRAM5 site on loopback (Debian's Grid Community Toolkit): a gatekeeper with
# the fork job manager, a throwaway CA, a host certificate for localhost, a user certificate
# and proxy for the factory, and a grid-mapfile mapping it to the local account "glidein".
#
#   scripts/sites/gram.sh start    # install if needed (root), make certificates, start the gatekeeper
#   scripts/sites/gram.sh stop     # the gatekeeper and the job managers, by pid file
#   scripts/sites/gram.sh env      # KEY=VALUE lines: the client environment and the contact
#   scripts/sites/gram.sh proxy    # a fresh proxy for the factory (renewal tests)
#
# What docs/sites.md explains: contacts must say localhost (never 127.0.0.1);
# the gatekeeper hands its environment to the job manager, so it starts under env -i with
# GLOBUS_HOSTNAME set; the job manager outlives the gatekeeper and must be stopped by its own
# pid file; -conf cannot be combined with other options.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
G=${UPDRAFT_GRAM_DIR:-/var/lib/updraft-gram}
PORT=${UPDRAFT_GRAM_PORT:-12119}
ACCOUNT=${UPDRAFT_GRAM_USER:-glidein}
JM_PORTS=40000,40999
CLIENT_PORTS=41000,41999
CA_DN="/O=UpdraftTest/CN=Updraft Test CA"
HOST_DN="/O=UpdraftTest/CN=localhost"
USER_DN="/O=UpdraftTest/OU=People/CN=Updraft Factory"
CERTS=$G/certificates
PROXY=$G/client/x509up
PACKAGES="globus-gatekeeper globus-gram-job-manager globus-gram-job-manager-fork
          globus-gram-job-manager-fork-setup-poll globus-gram-client-tools globus-proxy-utils
          globus-gsi-cert-utils-progs globus-gass-server-ez-progs globus-common-progs
          globus-gss-assist-progs openssl iproute2 procps"

make_proxy() {
    X509_CERT_DIR=$CERTS grid-proxy-init -q -cert "$G/user/usercert.pem" -key "$G/user/userkey.pem" -out "$PROXY" -valid "${1:-48:00}"
}

certificates() {
    mkdir -p "$G"/{ca,user,client,run,log} "$CERTS"
    chmod 755 "$G" "$CERTS"
    if [ ! -s "$G/ca/ca.pem" ]; then
        openssl req -x509 -newkey rsa:2048 -nodes -keyout "$G/ca/ca.key" -out "$G/ca/ca.pem" -days 3650 -subj "$CA_DN" \
            -addext "basicConstraints=critical,CA:true" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
        chmod 400 "$G/ca/ca.key"
    fi
    local hash old
    hash=$(openssl x509 -in "$G/ca/ca.pem" -noout -subject_hash)
    old=$(openssl x509 -in "$G/ca/ca.pem" -noout -subject_hash_old)
    cp "$G/ca/ca.pem" "$CERTS/$hash.0"
    printf "access_id_CA   X509   '%s'\npos_rights     globus CA:sign\ncond_subjects  globus '\"/O=UpdraftTest/*\"'\n" "$CA_DN" > "$CERTS/$hash.signing_policy"
    ln -sf "$hash.0" "$CERTS/$old.0"
    ln -sf "$hash.signing_policy" "$CERTS/$old.signing_policy"
    if ! openssl verify -CApath "$CERTS" "$G/hostcert.pem" >/dev/null 2>&1; then
        printf "basicConstraints=critical,CA:false\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=DNS:localhost,DNS:%s,IP:127.0.0.1\n" "$(hostname)" > "$G/ca/host.ext"
        openssl req -newkey rsa:2048 -nodes -keyout "$G/hostkey.pem" -out "$G/ca/host.csr" -subj "$HOST_DN" 2>/dev/null
        openssl x509 -req -in "$G/ca/host.csr" -CA "$G/ca/ca.pem" -CAkey "$G/ca/ca.key" -CAcreateserial -days 365 \
            -extfile "$G/ca/host.ext" -out "$G/hostcert.pem" 2>/dev/null
    fi
    chmod 400 "$G/hostkey.pem"
    chmod 644 "$G/hostcert.pem"
    if ! openssl verify -CApath "$CERTS" "$G/user/usercert.pem" >/dev/null 2>&1; then
        printf "basicConstraints=critical,CA:false\nkeyUsage=critical,digitalSignature,keyEncipherment,dataEncipherment\nextendedKeyUsage=clientAuth\n" > "$G/ca/user.ext"
        openssl req -newkey rsa:2048 -nodes -keyout "$G/user/userkey.pem" -out "$G/ca/user.csr" -subj "$USER_DN" 2>/dev/null
        openssl x509 -req -in "$G/ca/user.csr" -CA "$G/ca/ca.pem" -CAkey "$G/ca/ca.key" -CAcreateserial -days 365 \
            -extfile "$G/ca/user.ext" -out "$G/user/usercert.pem" 2>/dev/null
    fi
    chmod 400 "$G/user/userkey.pem"
    id "$ACCOUNT" >/dev/null 2>&1 || useradd -m -s /bin/bash "$ACCOUNT"
    printf '"%s" %s\n' "$USER_DN" "$ACCOUNT" > "$G/grid-mapfile"
    if ! X509_CERT_DIR=$CERTS grid-proxy-info -file "$PROXY" -exists -valid 2:00 2>/dev/null; then make_proxy; fi
}

configure() {
    mkdir -p "$G/grid-services" "$G/gram_job_state" "$G/log"
    chmod 1777 "$G/gram_job_state" "$G/log"
    cat > "$G/globus-gram-job-manager.conf" <<EOF
-globus-toolkit-version 6.2
-log-pattern $G/log/gram_\$(LOGNAME).log
-log-levels FATAL|ERROR|WARN|INFO
-state-file-dir $G/gram_job_state
-x509-cert-dir $CERTS
-globus-tcp-port-range $JM_PORTS
EOF
    echo "stderr_log,local_cred - /usr/sbin/globus-job-manager globus-job-manager -conf $G/globus-gram-job-manager.conf -type fork" \
        > "$G/grid-services/jobmanager-fork"
    ln -sfn jobmanager-fork "$G/grid-services/jobmanager"
}

stop() {
    local p f
    if [ -f "$G/run/gatekeeper.pid" ]; then
        p=$(cat "$G/run/gatekeeper.pid")
        alive "$p" && kill "$p"
        rm -f "$G/run/gatekeeper.pid"
    fi
    for f in "$G"/gram_job_state/*/*/*.pid; do
        [ -f "$f" ] || continue
        p=$(cat "$f" 2>/dev/null || true)
        if alive "$p" && grep -q globus-job-manager "/proc/$p/cmdline" 2>/dev/null; then kill "$p"; fi
        rm -f "$f"
    done
}

start() {
    need_root "the gatekeeper (it switches to the mapped account)"
    install_missing globus-gatekeeper $PACKAGES
    certificates
    configure
    stop
    for _ in $(seq 1 50); do ss -Hltn "sport = :$PORT" | grep -q . || break; sleep 0.1; done
    (cd "$G/run" && exec setsid env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 \
        GLOBUS_HOSTNAME=localhost GLOBUS_TCP_PORT_RANGE="$JM_PORTS" \
        /usr/sbin/globus-gatekeeper -f -p "$PORT" -grid_services "$G/grid-services" -gridmap "$G/grid-mapfile" \
        -x509_cert_dir "$CERTS" -x509_user_cert "$G/hostcert.pem" -x509_user_key "$G/hostkey.pem" \
        -l "$G/log/gatekeeper.log" -pidfile "$G/run/gatekeeper.pid" >>"$G/log/gatekeeper.stdout" 2>&1 </dev/null) &
    for _ in $(seq 1 100); do ss -Hltn "sport = :$PORT" | grep -q . && break; sleep 0.1; done
    export X509_CERT_DIR=$CERTS X509_USER_PROXY=$PROXY GLOBUS_HOSTNAME=localhost GLOBUS_TCP_PORT_RANGE=$CLIENT_PORTS
    if ! globusrun -a -r "localhost:$PORT/jobmanager-fork" >/dev/null 2>&1; then
        echo "gram.sh: the gatekeeper does not authenticate us; see $G/log" >&2
        tail -20 "$G/log/gatekeeper.log" >&2 || true
        exit 1
    fi
    echo "gram.sh: GRAM5 gatekeeper up at localhost:$PORT/jobmanager-fork" >&2
    env_lines
}

env_lines() {
    echo "GRAM_CONTACT=localhost:$PORT/jobmanager-fork"
    echo "X509_CERT_DIR=$CERTS"
    echo "X509_USER_PROXY=$PROXY"
    echo "GLOBUS_HOSTNAME=localhost"
    echo "GLOBUS_TCP_PORT_RANGE=$CLIENT_PORTS"
    echo "GRAM_ACCOUNT=$ACCOUNT"
    echo "GRAM_HOME=$G"
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    env) env_lines ;;
    proxy) need_root "a new proxy"; make_proxy "${2:-48:00}"; env_lines ;;
    *) echo "usage: $0 start|stop|env|proxy [HOURS:MINUTES]" >&2; exit 2 ;;
esac
