#!/usr/bin/env bash
# A private single-node Slurm cluster in a folder of its own, for the sweep's Slurm test.
#
#   tools/slurm-local.sh install      apt-get install Debian's slurmctld slurmd slurm-client munge
#                                     (only as root; as anyone else it says what is missing)
#   tools/slurm-local.sh start DIR    configure and start munged, slurmctld and slurmd in DIR
#   tools/slurm-local.sh stop DIR     stop the daemons started in DIR (by the pids in DIR)
#
# Everything lives in DIR: slurm.conf (point SLURM_CONF at DIR/slurm.conf to use the cluster),
# the munge key, socket, pid, log and seed files, the state, spool and log folders. The ports
# are free ones picked at start. The daemons run as the invoking user (SlurmUser and SlurmdUser);
# nothing outside DIR is written and no process that DIR's pid files do not name is signalled.
#
# Exit status of start: 0 up; 3 the cluster cannot run here (the reason is the last line of
# stderr, starting "unavailable: "); anything else a failure (the logs are printed).
set -euo pipefail

need=(munged mungekey slurmctld slurmd sbatch sinfo scontrol)

# The path of program $1 (on PATH, else in /usr/sbin, where Debian puts the daemons), or nothing.
bin() {
    local p
    for p in "$(command -v "$1" 2>/dev/null)" "/usr/sbin/$1"; do
        if [ -n "$p" ] && [ -f "$p" ] && [ -x "$p" ]; then
            echo "$p"
            return 0
        fi
    done
    return 1
}

missing() {
    local m=()
    for b in "${need[@]}"; do
        bin "$b" >/dev/null || m+=("$b")
    done
    echo "${m[*]}"
}

unavailable() {
    echo "unavailable: $*" >&2
    exit 3
}

stop() {
    local dir=$1
    # slurmd first (it runs the jobs), then slurmctld, then munged.
    for p in slurmd slurmctld munged; do
        local f="$dir/run/$p.pid"
        [ -s "$f" ] || continue
        local pid
        pid=$(cat "$f")
        case "$pid" in '' | *[!0-9]*) continue ;; esac
        # Only a process of this cluster: its command line names the daemon.
        if [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q "$p"; then
            kill -TERM "$pid" 2>/dev/null || true
            for _ in $(seq 1 50); do
                kill -0 "$pid" 2>/dev/null || break
                sleep 0.1
            done
            kill -KILL "$pid" 2>/dev/null || true
        fi
        rm -f "$f"
    done
}

# A TCP port nothing listens on (a connection to it is refused), not picked before.
used=""
free_port() {
    local p
    for _ in $(seq 1 200); do
        p=$((20000 + RANDOM % 40000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
            case "$used" in *":$p:"*) continue ;; esac
            used="$used:$p:"
            echo "$p"
            return 0
        fi
    done
    echo "slurm-local: no free port found" >&2
    return 1
}

start() {
    local dir
    mkdir -p "$1"
    dir=$(cd "$1" && pwd)
    local m
    m=$(missing)
    if [ -n "$m" ]; then
        if [ "$(id -u)" = 0 ]; then
            unavailable "not installed: $m (run tools/slurm-local.sh install)"
        fi
        unavailable "not installed: $m, and installing needs root (apt-get install slurmctld slurmd slurm-client munge)"
    fi
    local user uid group
    user=$(id -un)
    uid=$(id -u)
    group=$(id -gn)
    mkdir -p "$dir/run" "$dir/log" "$dir/state" "$dir/spool" "$dir/munge" "$dir/tmp"
    chmod 700 "$dir/munge"

    # munge: a key of our own, a socket of our own.
    local key="$dir/munge/munge.key" sock="$dir/munge/munge.socket"
    [ -s "$key" ] || mungekey --create --keyfile="$key" --bits=1024 2>/dev/null ||
        head -c 1024 /dev/urandom >"$key"
    chmod 400 "$key"
    # munged refuses a key or socket folder that others may write; the temporary folders
    # above DIR are sticky and world-writable, which --force accepts.
    "$(bin munged)" --force --socket="$sock" --key-file="$key" --pid-file="$dir/run/munged.pid" \
        --log-file="$dir/log/munged.log" --seed-file="$dir/munge/munged.seed" \
        >>"$dir/log/munged.out" 2>&1 || {
        cat "$dir/log/munged.out" "$dir/log/munged.log" >&2 2>/dev/null || true
        echo "slurm-local: munged did not start" >&2
        return 1
    }

    local host ctld_port d_port cpus
    host=$(hostname -s)
    ctld_port=$(free_port)
    used=":$ctld_port:"
    d_port=$(free_port)
    cpus=$(nproc)
    cat >"$dir/slurm.conf" <<CONF
# A private single-node cluster (tools/slurm-local.sh start $dir).
ClusterName=ndtlocal
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$d_port
AuthType=auth/munge
AuthInfo=socket=$sock,cred_expire=10
CredType=cred/munge
SlurmUser=$user
SlurmdUser=$user
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool/%n
SlurmctldPidFile=$dir/run/slurmctld.pid
SlurmdPidFile=$dir/run/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
TmpFS=$dir/tmp
PlugStackConfig=$dir/plugstack.conf
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SwitchType=switch/none
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
MailProg=/bin/true
MaxArraySize=10001
MinJobAge=600
KillWait=10
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=1000 State=UNKNOWN
PartitionName=local Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF
    : >"$dir/plugstack.conf"
    export SLURM_CONF="$dir/slurm.conf"

    "$(bin slurmctld)" -i >>"$dir/log/slurmctld.out" 2>&1 || true
    "$(bin slurmd)" >>"$dir/log/slurmd.out" 2>&1 || true
    for _ in $(seq 1 60); do
        if "$(bin sinfo)" -h -o %T 2>/dev/null | grep -q -E "idle|mix|alloc"; then
            echo "slurm-local: up in $dir ($host, $cpus CPUs, user $user, ports $ctld_port/$d_port)" >&2
            return 0
        fi
        sleep 1
    done
    echo "slurm-local: the cluster did not come up; logs in $dir/log:" >&2
    tail -n 30 "$dir"/log/*.log "$dir"/log/*.out >&2 2>/dev/null || true
    local why=""
    if [ "$uid" != 0 ] && grep -q -i -E "permission|operation not permitted|must be root|setuid|setgroups" \
        "$dir"/log/slurmd.* 2>/dev/null; then
        why="slurmd needs root here and the user ($user, group $group) is not root"
    fi
    stop "$dir"
    [ -n "$why" ] && unavailable "$why"
    return 1
}

case "${1:-}" in
install)
    m=$(missing)
    if [ -z "$m" ]; then exit 0; fi
    if [ "$(id -u)" != 0 ]; then
        unavailable "not installed: $m, and installing needs root"
    fi
    if ! command -v apt-get >/dev/null; then
        unavailable "not installed: $m, and there is no apt-get"
    fi
    echo "slurm-local: installing slurmctld slurmd slurm-client munge" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq slurmctld slurmd slurm-client munge >/dev/null
    ;;
start)
    [ -n "${2:-}" ] || { echo "usage: $0 start DIR" >&2; exit 1; }
    start "$2"
    ;;
stop)
    [ -n "${2:-}" ] || { echo "usage: $0 stop DIR" >&2; exit 1; }
    [ -d "$2" ] || exit 0
    stop "$2"
    ;;
*)
    echo "usage: $0 install | start DIR | stop DIR" >&2
    exit 1
    ;;
esac
