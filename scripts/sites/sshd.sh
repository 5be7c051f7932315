#!/bin/bash
# A login host for remote batch sites (Debian's openssh-server): a private sshd with its own
# host key, one account ("glidein") that logs in with a key only, and the files a factory
# needs to reach it (its private key, a known_hosts line for the host key).
#
#   scripts/sites/sshd.sh install  # the Debian packages only (a host with no network later)
#   scripts/sites/sshd.sh start    # install if needed (root), keys, config, start sshd
#   scripts/sites/sshd.sh stop     # the sshd this script started, by pid file
#   scripts/sites/sshd.sh env      # KEY=VALUE lines: SSH_TARGET, SSH_PORT, SSH_KEY, SSH_KNOWN_HOSTS
#
# Settings (environment): UPDRAFT_SSHD_DIR (default /var/lib/updraft-sshd), UPDRAFT_SSHD_LISTEN
# (127.0.0.1), UPDRAFT_SSHD_PORT (2222), UPDRAFT_SSHD_NAME (the host name clients use, in the
# known_hosts line; default the listen address), UPDRAFT_SSHD_USER (glidein).
#
# What docs/sites.md explains: the package's own sshd is never started (policy-rc.d during the
# install), since it would listen on every interface; StrictModes refuses key files under a
# world-writable directory such as /tmp, so the keys live under /var/lib; with UsePAM off, sshd
# refuses an account whose password is locked ("!"), so the account's password is "*" (no
# password, not locked).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
BASE=${UPDRAFT_SSHD_DIR:-/var/lib/updraft-sshd}
LISTEN=${UPDRAFT_SSHD_LISTEN:-127.0.0.1}
PORT=${UPDRAFT_SSHD_PORT:-2222}
NAME=${UPDRAFT_SSHD_NAME:-$LISTEN}
ACCOUNT=${UPDRAFT_SSHD_USER:-glidein}

install_packages() {
    dpkg-query -W -f='${Status}' openssh-server 2>/dev/null | grep -q 'ok installed' && return 0
    local made=""
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        made=yes
    fi
    install_missing openssh-server openssh-server openssh-client iproute2
    [ -n "$made" ] && rm -f /usr/sbin/policy-rc.d
    return 0
}

keys() {
    mkdir -p "$BASE/client"
    chmod 755 "$BASE"
    chmod 700 "$BASE/client"
    [ -s "$BASE/host_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -C "updraft test login host" -f "$BASE/host_ed25519"
    [ -s "$BASE/client/id_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -C "updraft factory" -f "$BASE/client/id_ed25519"
    cp "$BASE/client/id_ed25519.pub" "$BASE/authorized_keys"
    chmod 644 "$BASE/authorized_keys"
    local host=$NAME
    [ "$PORT" = 22 ] || host="[$NAME]:$PORT"
    echo "$host $(cut -d' ' -f1,2 "$BASE/host_ed25519.pub")" > "$BASE/client/known_hosts"
}

account() {
    id "$ACCOUNT" >/dev/null 2>&1 || useradd -m -s /bin/bash "$ACCOUNT"
    # not locked: sshd without PAM refuses a locked account even for keys
    case "$(getent shadow "$ACCOUNT" | cut -d: -f2)" in '!'*) usermod -p '*' "$ACCOUNT" ;; esac
}

configure() {
    mkdir -p /run/sshd
    chmod 755 /run/sshd
    cat > "$BASE/sshd_config" <<EOF
# written by scripts/sites/sshd.sh
Port $PORT
ListenAddress $LISTEN
HostKey $BASE/host_ed25519
PidFile $BASE/sshd.pid
AuthorizedKeysFile $BASE/authorized_keys
AllowUsers $ACCOUNT
PermitRootLogin no
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes yes
X11Forwarding no
AllowTcpForwarding no
AllowAgentForwarding no
PermitTunnel no
PrintMotd no
MaxStartups 100:30:200
MaxSessions 32
LogLevel INFO
EOF
    /usr/sbin/sshd -t -f "$BASE/sshd_config"
}

stop() {
    stop_pids 5 leave "$BASE/sshd.pid"
}

env_lines() {
    echo "SSH_TARGET=$ACCOUNT@$NAME"
    echo "SSH_PORT=$PORT"
    echo "SSH_KEY=$BASE/client/id_ed25519"
    echo "SSH_KNOWN_HOSTS=$BASE/client/known_hosts"
    echo "SSH_ACCOUNT=$ACCOUNT"
}

start() {
    need_root "sshd (it logs accounts in)"
    install_packages
    stop
    keys
    account
    configure
    /usr/sbin/sshd -f "$BASE/sshd_config" -E "$BASE/sshd.log"
    for _ in $(seq 1 50); do ss -Hltn "sport = :$PORT" | grep -q . && break; sleep 0.1; done
    if ! ss -Hltn "sport = :$PORT" | grep -q .; then
        echo "sshd.sh: sshd did not start listening on $LISTEN:$PORT" >&2
        tail -20 "$BASE/sshd.log" >&2 || true
        exit 1
    fi
    echo "sshd.sh: sshd up at $ACCOUNT@$LISTEN:$PORT" >&2
    env_lines
}

case "${1:-}" in
    install) need_root "installing packages"; install_packages ;;  # the packages only (before entering a namespace with no way out)
    start) start ;;
    stop) stop ;;
    env) env_lines ;;
    *) echo "usage: $0 install|start|stop|env" >&2; exit 2 ;;
esac
