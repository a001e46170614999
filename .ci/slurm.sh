#!/usr/bin/env bash
# A one-node Slurm cluster on this machine for the tests marked `slurm`: `.ci/slurm.sh start`, `.ci/slurm.sh stop`.
#
# munged, slurmctld and slurmd, no accounting database; two partitions on the one node, `main` and `second`,
# stand for two machine kinds. Needs root and Debian's slurm-wlm and munge (`start` installs them with apt-get
# when they are missing). The daemons' state and logs live in $KERASMNIST_SLURM_STATE (default
# /tmp/kerasmnist-slurm); the configuration is written to /etc/slurm/slurm.conf, where every Slurm command
# looks, unless a slurm.conf that this script did not write is there already (then `start` refuses).
set -euo pipefail

STATE="${KERASMNIST_SLURM_STATE:-/tmp/kerasmnist-slurm}"
CONF=/etc/slurm/slurm.conf
MARK="# written by kerasmnist .ci/slurm.sh"

log() { echo "slurm.sh: $*" >&2; }

install_packages() {
  command -v slurmctld >/dev/null && command -v munged >/dev/null && return
  if ! command -v apt-get >/dev/null || [ "$(id -u)" != 0 ]; then
    log "slurm-wlm and munge are not installed, and this is not a root Debian machine to install them on"
    return 1
  fi
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null
}

write_conf() {
  if [ -f "$CONF" ] && ! ours; then
    log "$CONF exists and was not written by this script: leaving this machine's Slurm alone"
    return 1
  fi
  local node cpus memory
  node="$(hostname -s)"
  cpus="$(nproc)"
  memory="$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 * 9 / 10 ))"
  mkdir -p "$(dirname "$CONF")" "$STATE/ctld" "$STATE/d"
  cat >"$CONF" <<EOF
$MARK
ClusterName=kerasmnist-ci
SlurmctldHost=$node(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/d
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/slurmctld.log
SlurmdLogFile=$STATE/slurmd.log
# No cgroups (a container may not have them): processes are tracked by parent, resources are not fenced.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
ReturnToService=2
KillWait=10
MinJobAge=600
NodeName=$node NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$memory State=UNKNOWN
PartitionName=main Nodes=$node Default=YES MaxTime=INFINITE State=UP
PartitionName=second Nodes=$node MaxTime=INFINITE State=UP
EOF
}

start_munge() {
  if [ -S /run/munge/munge.socket.2 ] && munge -n >/dev/null 2>&1; then
    return
  fi
  mkdir -p /run/munge /var/log/munge /var/lib/munge
  if [ ! -s /etc/munge/munge.key ]; then
    dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key status=none
  fi
  chown munge:munge /etc/munge /etc/munge/munge.key /run/munge /var/log/munge /var/lib/munge
  chmod 700 /etc/munge /var/log/munge
  chmod 400 /etc/munge/munge.key
  runuser -u munge -- /usr/sbin/munged
  touch "$STATE/munged.ours"
}

ours() { [ -f "$CONF" ] && grep -qF "$MARK" "$CONF"; }

start() {
  if ours && sinfo >/dev/null 2>&1; then
    log "already up"
    return
  fi
  install_packages
  write_conf
  start_munge
  slurmctld -c  # -c: no jobs or nodes restored from an earlier cluster's state
  slurmd
  # Up within seconds: the node answers once slurmd has registered with slurmctld.
  for _ in $(seq 1 60); do
    if sinfo --noheader --states=idle,mixed,allocated --format=%N 2>/dev/null | grep -q .; then
      log "up: $(sinfo --noheader --format='%P %a %D %t' | tr '\n' ';')"
      return
    fi
    sleep 0.5
  done
  log "the node did not come up; slurmd's log ends:"
  tail -n 20 "$STATE/slurmd.log" "$STATE/slurmctld.log" >&2 || true
  return 1
}

stop_pid_file() {
  local file="$1"
  [ -f "$file" ] || return 0
  local pid
  pid="$(cat "$file")"
  if kill "$pid" 2>/dev/null; then
    for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
  fi
  rm -f "$file"
}

stop() {
  if ! ours; then
    log "no cluster of this script's here: nothing to stop"
    return
  fi
  # Jobs first, so no job of the tests outlives the cluster; then the daemons this script started.
  scancel --full --user="$(id -un)" 2>/dev/null || true
  stop_pid_file "$STATE/slurmd.pid"
  stop_pid_file "$STATE/slurmctld.pid"
  if [ -f "$STATE/munged.ours" ]; then
    stop_pid_file /run/munge/munged.pid
    rm -f "$STATE/munged.ours"
  fi
  rm -f "$CONF"
  log "stopped"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
