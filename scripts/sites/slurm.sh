#!/bin/bash
# A real single-node Slurm cluster (slurm-wlm + munge from Debian) for the factory's tests,
# the benchmarks and anyone who wants to try the slurm entry type.
#
#   scripts/sites/slurm.sh install  # the Debian packages only (a host with no network later)
#   scripts/sites/slurm.sh start    # install if needed (root), write the config, start the daemons
#   scripts/sites/slurm.sh stop     # stop exactly what start started (by pid file)
#   scripts/sites/slurm.sh status
#   scripts/sites/slurm.sh running  # exit 0 when this cluster's daemons are alive (by pid file, at once)
#   scripts/sites/slurm.sh env      # prints SLURM_CONF=... for the shell or the tests
#
# No systemd and no cgroups here: proctrack/linuxproc and task/none.  munged refuses to
# run as root, so it runs as the munge user; it is one per machine (its socket is a file), so
# a second cluster (UPDRAFT_SLURM_DIR, e.g. inside a network namespace) reuses it and only
# the cluster that started it stops it.  batch_sched_delay=0, or every sbatch waits
# for the next scheduling pass (about 3 s).  docs/sites.md has the reasons.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
BASE=${UPDRAFT_SLURM_DIR:-/tmp/updraft-slurm}
CONF=$BASE/slurm.conf
MUNGE_RUN=/run/munge

install_packages() {
    install_missing slurm-wlm slurm-wlm munge
    if [ ! -s /etc/munge/munge.key ]; then
        mkdir -p /etc/munge
        if command -v mungekey >/dev/null; then mungekey --create --force; else dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null; fi
        chown munge:munge /etc/munge/munge.key
        chmod 0400 /etc/munge/munge.key
    fi
}

write_config() {
    local host cpus memory
    host=$(hostname -s)
    cpus=$(nproc)
    memory=$(awk '/MemTotal/ {printf "%d", $2 / 1024 * 0.8}' /proc/meminfo)
    mkdir -p "$BASE/state" "$BASE/spool"
    cat > "$CONF" <<EOF
# written by scripts/sites/slurm.sh: one node, no cgroups, no accounting database
ClusterName=updraft
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=6817
SlurmdPort=6818
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation=$BASE/state
SlurmdSpoolDir=$BASE/spool
SlurmctldPidFile=$BASE/slurmctld.pid
SlurmdPidFile=$BASE/slurmd.pid
SlurmctldLogFile=$BASE/slurmctld.log
SlurmdLogFile=$BASE/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$BASE/jobcomp.txt
MinJobAge=300
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0,sched_min_interval=0
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
MpiDefault=none
SwitchType=switch/none
KillWait=5
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$memory State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
}

stop() {
    stop_pids 5 leave "$BASE/slurmd.pid" "$BASE/slurmctld.pid"
    # munged is the machine's (one socket for every cluster here): stopped only by whoever started it
    [ -f "$BASE/started-munged" ] && stop_pids 5 leave "$MUNGE_RUN/munged.pid"
    rm -f "$BASE/started-munged"
}

start() {
    need_root "Slurm (slurmd starts jobs as their users)"
    install_packages
    stop
    write_config
    if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
        mkdir -p "$MUNGE_RUN"
        chown munge:munge "$MUNGE_RUN"
        chmod 0755 "$MUNGE_RUN"
        runuser -u munge -- /usr/sbin/munged --pid-file="$MUNGE_RUN/munged.pid" --force
        touch "$BASE/started-munged"
        for _ in $(seq 1 50); do munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.1; done
    fi
    export SLURM_CONF=$CONF
    # a fresh state: jobs of an earlier run must not come back
    rm -rf "$BASE/state"/* "$BASE/spool"/*
    slurmctld -f "$CONF"
    slurmd -f "$CONF"
    for _ in $(seq 1 100); do
        if sinfo -h -o "%T" 2>/dev/null | grep -q -E "^idle"; then
            echo "slurm.sh: Slurm is up" >&2
            echo "SLURM_CONF=$CONF"
            return 0
        fi
        sleep 0.2
    done
    echo "slurm.sh: the node did not become idle; logs in $BASE" >&2
    tail -20 "$BASE/slurmctld.log" "$BASE/slurmd.log" >&2 || true
    exit 1
}

case "${1:-}" in
    install) need_root "installing packages"; install_packages ;;  # the packages only (before entering a namespace with no way out)
    start) start ;;
    stop) stop ;;
    status) SLURM_CONF=$CONF sinfo ;;
    # not sinfo: asked of a cluster that is down, it retries the controller for about a minute
    running) alive "$(cat "$BASE/slurmctld.pid" 2>/dev/null)" && alive "$(cat "$BASE/slurmd.pid" 2>/dev/null)" ;;
    env) echo "SLURM_CONF=$CONF" ;;
    *) echo "usage: $0 install|start|stop|status|running|env" >&2; exit 2 ;;
esac
