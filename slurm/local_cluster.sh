#!/usr/bin/env bash
# slurm/local_cluster.sh -- a real SLURM cluster on this one machine (Debian 12, root, no systemd), for
# the project's SLURM tests and CI: `snakemake --profile slurm` then submits to it like to any cluster.
#
# Usage:
#   bash slurm/local_cluster.sh start    # apt-install, configure, start the daemons, smoke-test srun/sbatch
#   bash slurm/local_cluster.sh stop     # stop only the daemons this script started (by recorded PID)
#   bash slurm/local_cluster.sh status   # daemon PIDs, sinfo, squeue
#
# Settings (environment variables):
#   SLURM_ACCOUNTING=dbd|none  dbd (default): MariaDB + slurmdbd, so `sacct` works (the executor
#                              plugin's status command). none: no accounting; the profile must then
#                              set `slurm-status-command: squeue`.
#   SLURM_NODES=1              >1 emulates N compute nodes (node1..nodeN), one slurmd each on 127.0.0.1,
#                              for multi-node (srun -N) tests.
#   SLURM_FAKE_GPUS=0          >0 declares that many fake GPUs per node as gres/gpu (symlinks to
#                              /dev/null): jobs get CUDA_VISIBLE_DEVICES, no GPU is behind it; a
#                              partition `gpu` over the same nodes, beside the default `debug`.
#   SLURM_CGROUP=0             1: cgroup v1 plugins so --mem is enforced (needs writable cgroup v1).
# Starting again with the same settings leaves running daemons alone; changed settings rewrite the
# configs and restart the daemons. Adapted from a tested single-host recipe (slurm-wlm 22.05).
set -euo pipefail

ACTION="${1:-start}"
ACCOUNTING="${SLURM_ACCOUNTING:-dbd}"
NODES="${SLURM_NODES:-1}"
FAKE_GPUS="${SLURM_FAKE_GPUS:-0}"
CGROUP="${SLURM_CGROUP:-0}"

STATE=/var/lib/slurm-local          # our own pid files, fake GPU devices, smoke workflow
RUN=/run/slurm-local
CONF=/etc/slurm/slurm.conf
CLUSTER=localcluster
HOST="$(hostname -s)"
DB_PASS=slurm-local-ci              # local socket-only MariaDB, not reachable from outside

log() { printf '[slurm-local %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root"

node_names() {  # prints the NodeName expression and the list, e.g. "node[1-2]"
  if [ "$NODES" -le 1 ]; then echo "$HOST"; else echo "node[1-$NODES]"; fi
}
node_list() { if [ "$NODES" -le 1 ]; then echo "$HOST"; else seq -f 'node%g' 1 "$NODES"; fi; }

alive() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

# start_daemon NAME CMD... : start CMD in its own session (setsid) so that it survives
# the calling shell's job control, record its PID in $RUN/NAME.pid
start_daemon() {
  local name="$1"; shift
  if alive "$RUN/$name.pid"; then log "$name already running (pid $(cat "$RUN/$name.pid"))"; return 0; fi
  setsid "$@" >"/var/log/slurm-local/$name.out" 2>&1 </dev/null &
  echo $! >"$RUN/$name.pid"
  log "started $name (pid $!)"
}

stop_daemon() {  # stop_daemon NAME [DAEMON_OWN_PIDFILE]
  local name="$1" own="${2:-}" pid
  [ -s "$RUN/$name.pid" ] || return 0
  pid="$(cat "$RUN/$name.pid")"
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -0 "$pid" 2>/dev/null && { log "$name (pid $pid) ignored SIGTERM, sending SIGKILL"; kill -9 "$pid" || true; }
    log "stopped $name (pid $pid)"
  fi
  rm -f "$RUN/$name.pid"
  # a stale /run/slurmctld.pid makes Debian's slurmctld prerm run scancel and fail
  # (breaks apt-get remove/upgrade), so drop the daemon's own pid file too
  [ -z "$own" ] || rm -f "$own"
}

wait_for() {  # wait_for SECONDS DESCRIPTION CMD...
  local t="$1" what="$2"; shift 2
  for _ in $(seq 1 $((t * 5))); do "$@" >/dev/null 2>&1 && return 0; sleep 0.2; done
  die "timed out after ${t}s waiting for $what"
}

stop_slurmds() {  # every slurmd this script started, whatever SLURM_NODES was then
  local f
  for f in "$RUN"/slurmd-*.pid; do [ -e "$f" ] && stop_daemon "$(basename "$f" .pid)"; done
  return 0
}

stop_all() {
  stop_slurmds
  stop_daemon slurmctld /run/slurmctld.pid
  stop_daemon slurmdbd /run/slurmdbd.pid
  stop_daemon mariadbd
  # munged daemonizes itself; it records its own pid
  if [ -s /run/munge/munged.pid ] && [ -e "$RUN/munged.started" ]; then
    local pid; pid="$(cat /run/munge/munged.pid)"
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    log "stopped munged (pid $pid)"
    rm -f "$RUN/munged.started"
  fi
}

install_packages() {
  local pkgs="slurmctld slurmd slurm-client munge"
  [ "$ACCOUNTING" = dbd ] && pkgs="$pkgs slurmdbd mariadb-server"
  local missing=""
  for p in $pkgs; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
  if [ -n "$missing" ]; then
    log "apt-get install:$missing"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
  else
    log "packages already installed"
  fi
}

start_munge() {
  [ -s /etc/munge/munge.key ] || { log "creating munge key"; mungekey --create --keyfile=/etc/munge/munge.key; }
  chown munge:munge /etc/munge/munge.key; chmod 0400 /etc/munge/munge.key
  install -d -o munge -g munge -m 0755 /run/munge
  install -d -o munge -g munge -m 0700 /var/lib/munge /var/log/munge
  if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then log "munged already running"; return; fi
  runuser -u munge -- /usr/sbin/munged      # daemonizes; writes /run/munge/munged.pid
  touch "$RUN/munged.started"
  wait_for 10 munged sh -c 'munge -n | unmunge'
  log "started munged (pid $(cat /run/munge/munged.pid))"
}

write_if_changed() {  # write_if_changed FILE OWNER MODE  (content on stdin); returns 0 if changed
  local f="$1" owner="$2" mode="$3" tmp; tmp="$(mktemp)"; cat >"$tmp"
  if [ -f "$f" ] && cmp -s "$tmp" "$f"; then rm -f "$tmp"; return 1; fi
  install -o "${owner%:*}" -g "${owner#*:}" -m "$mode" "$tmp" "$f"; rm -f "$tmp"; return 0
}

CONF_CHANGED=0       # slurm.conf or gres.conf changed: restart slurmctld + slurmd
DBD_CONF_CHANGED=0   # slurmdbd.conf changed: restart slurmdbd
write_configs() {
  local cpus mem_mb per_node_mem nodeexpr gres_node="" gres_types="" gpu_partition=""
  cpus="$(nproc)"
  mem_mb=$(( $(awk '/MemTotal/{print $2}' /proc/meminfo) / 1024 ))
  per_node_mem=$(( mem_mb * 90 / 100 / NODES ))       # a bit below physical
  nodeexpr="$(node_names)"
  mkdir -p /etc/slurm
  if [ "$FAKE_GPUS" -gt 0 ]; then
    mkdir -p "$STATE/fakegpu"
    for i in $(seq 0 $((FAKE_GPUS - 1))); do ln -sfn /dev/null "$STATE/fakegpu/nvidia$i"; done
    # AccountingStorageTRES: allocations (scontrol, sacct AllocTRES) then count the GPUs too
    gres_types="GresTypes=gpu
AccountingStorageTRES=gres/gpu"
    gres_node="Gres=gpu:$FAKE_GPUS"
    # a GPU partition over the same nodes, as sites keep GPU jobs apart (AFT_SLURM_GPU_PARTITION=gpu)
    gpu_partition="PartitionName=gpu Nodes=$nodeexpr MaxTime=INFINITE State=UP"
    # gres/gpu needs File= entries that are character devices: /dev/null symlinks pass
    write_if_changed /etc/slurm/gres.conf root:root 0644 <<EOF && CONF_CHANGED=1 || true
NodeName=$nodeexpr Name=gpu File=$STATE/fakegpu/nvidia[0-$((FAKE_GPUS - 1))]
EOF
  else
    rm -f /etc/slurm/gres.conf
  fi

  local proctrack="proctrack/linuxproc" taskplugin="task/affinity"
  if [ "$CGROUP" = 1 ]; then
    proctrack="proctrack/cgroup"; taskplugin="task/cgroup,task/affinity"
    write_if_changed /etc/slurm/cgroup.conf root:root 0644 <<EOF && CONF_CHANGED=1 || true
CgroupPlugin=cgroup/v1
ConstrainCores=yes
ConstrainRAMSpace=yes
EOF
  else
    rm -f /etc/slurm/cgroup.conf
  fi

  local acct_lines
  if [ "$ACCOUNTING" = dbd ]; then
    # job_comment: sacct shows the rule and wildcards the executor plugin writes in --comment
    acct_lines="AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoreFlags=job_comment
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=30"
  else
    acct_lines="AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none"
  fi

  local node_line spool pidf logf
  if [ "$NODES" -le 1 ]; then
    node_line="NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$cpus Sockets=1 CoresPerSocket=$cpus ThreadsPerCore=1 RealMemory=$per_node_mem $gres_node State=UNKNOWN"
    spool=/var/spool/slurmd; pidf=/run/slurmd.pid; logf=/var/log/slurm/slurmd.log
  else
    # several slurmd on one host: distinct ports, %n-expanded spool/pid/log paths
    node_line="NodeName=$nodeexpr NodeHostname=$HOST NodeAddr=127.0.0.1 Port=17001-$((17000 + NODES)) CPUs=$cpus Sockets=1 CoresPerSocket=$cpus ThreadsPerCore=1 RealMemory=$per_node_mem $gres_node State=UNKNOWN"
    spool=/var/spool/slurmd/%n; pidf=/run/slurmd-%n.pid; logf=/var/log/slurm/slurmd-%n.log
  fi

  write_if_changed "$CONF" root:root 0644 <<EOF && CONF_CHANGED=1 || true
# generated by slurm/local_cluster.sh -- single-host SLURM for tests and CI
ClusterName=$CLUSTER
SlurmctldHost=$HOST(127.0.0.1)
SlurmUser=slurm
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
MailProg=/bin/true
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=$spool
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=$pidf
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=$logf
SlurmctldDebug=info
SlurmdDebug=info
# default: no cgroups (portable); SLURM_CGROUP=1 switches to cgroup v1 plugins
ProctrackType=$proctrack
TaskPlugin=$taskplugin
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1000
ReturnToService=2
$acct_lines
JobCompType=jobcomp/filetxt
JobCompLoc=/var/log/slurm/jobcomp.log
# keep finished jobs visible to squeue for 5 min (plugin's squeue status mode needs >= 3x poll interval)
MinJobAge=300
InactiveLimit=0
KillWait=5
Waittime=0
$gres_types
$node_line
PartitionName=debug Nodes=$nodeexpr Default=YES MaxTime=INFINITE State=UP
$gpu_partition
EOF

  if [ "$ACCOUNTING" = dbd ]; then
    write_if_changed /etc/slurm/slurmdbd.conf slurm:slurm 0600 <<EOF && DBD_CONF_CHANGED=1 || true
AuthType=auth/munge
DbdHost=localhost
DbdPort=6819
SlurmUser=slurm
PidFile=/run/slurmdbd.pid
LogFile=/var/log/slurm/slurmdbd.log
DebugLevel=info
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=slurm
StoragePass=$DB_PASS
StorageLoc=slurm_acct_db
EOF
  fi
}

start_db() {
  install -d -o mysql -g mysql -m 0755 /run/mysqld
  if ! mariadb -e 'select 1' >/dev/null 2>&1; then
    [ -d /var/lib/mysql/mysql ] || { log "initialising MariaDB datadir"; mariadb-install-db --user=mysql --datadir=/var/lib/mysql >/dev/null; }
    # socket only (no TCP port at all)
    start_daemon mariadbd /usr/sbin/mariadbd --user=mysql --skip-networking
    wait_for 60 mariadbd mariadb -e 'select 1'
  else
    log "MariaDB already answering"
  fi
  mariadb -e "CREATE DATABASE IF NOT EXISTS slurm_acct_db;
    CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '$DB_PASS';
    GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost'; FLUSH PRIVILEGES;"
  [ "$DBD_CONF_CHANGED" = 1 ] && stop_daemon slurmdbd
  start_daemon slurmdbd /usr/sbin/slurmdbd -D
  wait_for 60 slurmdbd sacctmgr -n list cluster
}

start_slurm() {
  install -d -o slurm -g slurm -m 0755 /var/spool/slurmctld /var/log/slurm
  local n
  for n in $(node_list); do
    if [ "$NODES" -le 1 ]; then mkdir -p /var/spool/slurmd; else mkdir -p "/var/spool/slurmd/$n"; fi
  done
  if [ "$NODES" -gt 1 ]; then   # make node names resolvable (e.g. torchrun rendezvous host)
    for n in $(node_list); do
      getent hosts "$n" >/dev/null || echo "127.0.0.1 $n   # slurm-local" >>/etc/hosts
    done
  fi
  getent hosts "$HOST" >/dev/null || echo "127.0.0.1 $HOST   # slurm-local" >>/etc/hosts
  if [ "$CONF_CHANGED" = 1 ]; then
    stop_slurmds
    stop_daemon slurmctld
  fi
  start_daemon slurmctld /usr/sbin/slurmctld -D
  wait_for 30 slurmctld scontrol ping
  for n in $(node_list); do
    if [ "$NODES" -le 1 ]; then start_daemon "slurmd-$n" /usr/sbin/slurmd -D
    else start_daemon "slurmd-$n" /usr/sbin/slurmd -D -N "$n"; fi
  done
  # nodes left DRAIN/INVAL by an earlier config must be resumed by hand
  local nodeexpr; nodeexpr="$(node_names)"
  sleep 1
  if sinfo -h -N -o '%T' | grep -Eqi 'drain|down|inval'; then
    scontrol update NodeName="$nodeexpr" State=RESUME 2>/dev/null || true
  fi
  wait_for 60 "nodes idle" sh -c "[ \"\$(sinfo -h -N -o '%T' | grep -c -E '^(idle|mixed|allocated)')\" -ge $NODES ]"
  if [ "$ACCOUNTING" = dbd ]; then
    # slurmctld registers the cluster in slurmdbd itself, with account 'root' and user root
    wait_for 60 "cluster registration" sh -c "sacctmgr -n -P list assoc cluster=$CLUSTER user=root format=account | grep -q root"
  fi
}

smoke_slurm() {
  log "smoke test: srun / sbatch / squeue / sacct"
  srun -N1 -n1 hostname >/dev/null
  local j; j="$(sbatch --parsable --wait -o /dev/null --wrap 'echo ok')"
  squeue -h -j "$j" --states=all -o '%i %T' | grep -q COMPLETED || die "sbatch job $j not COMPLETED in squeue"
  if [ "$ACCOUNTING" = dbd ]; then
    wait_for 30 "sacct record of job $j" sh -c "sacct -n -X -j $j -o State | grep -q COMPLETED"
  fi
  log "smoke test passed (job $j)"
}

mkdir -p "$RUN" "$STATE" /var/log/slurm-local
case "$ACTION" in
  start)
    install_packages
    start_munge
    write_configs
    [ "$ACCOUNTING" = dbd ] && start_db
    start_slurm
    smoke_slurm
    sinfo
    ;;
  stop) stop_all ;;
  status)
    for f in "$RUN"/*.pid; do [ -e "$f" ] && echo "$(basename "$f" .pid): $(cat "$f") $(alive "$f" && echo alive || echo dead)"; done || true
    sinfo 2>&1 || true; squeue 2>&1 || true ;;
  smoke) smoke_slurm ;;
  *) die "unknown action $ACTION (start|stop|status|smoke)" ;;
esac
