#!/usr/bin/env bash
# A one-node SLURM "cluster" reached over SSH on this machine, for tests and for trying the production path.
#
#   bash scripts/local-cluster.sh start    # munged, slurmctld, slurmd, and sshd on 127.0.0.1:2222
#   bash scripts/local-cluster.sh status
#   bash scripts/local-cluster.sh stop
#   bash scripts/local-cluster.sh stop-slurmd|start-slurmd|stop-sshd|start-sshd   # failure injection
#
# Root only (it starts daemons as root and as the munge user). Needs Debian's slurm-wlm, munge and openssh-server
# (scripts/install.sh installs them). Everything it writes lives in $QRNN_CLUSTER_DIR (default /tmp/qrnn-cluster),
# except one marked block in ~/.ssh/config that defines the SSH host alias `qrnn-local-slurm` (AiiDA's
# core.ssh_async transport reads host, port, user and key from there) and the munge runtime folders.
set -euo pipefail

STATE=${QRNN_CLUSTER_DIR:-/tmp/qrnn-cluster}
SSH_PORT=${QRNN_CLUSTER_SSH_PORT:-2222}
ALIAS=qrnn-local-slurm
NODE=$(hostname -s)
export SLURM_CONF=$STATE/slurm/slurm.conf

log() { echo ">> $*"; }

start_munge() {
  mkdir -p /run/munge /var/lib/munge /var/log/munge /etc/munge
  chown munge:munge /run/munge /var/lib/munge /var/log/munge
  chmod 0755 /run/munge
  if [ ! -s /etc/munge/munge.key ]; then
    dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key status=none
  fi
  chown munge:munge /etc/munge/munge.key && chmod 0400 /etc/munge/munge.key
  if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    log "starting munged"
    runuser -u munge -- /usr/sbin/munged --force
    for _ in $(seq 50); do munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.1; done
  fi
}

write_slurm_conf() {
  mkdir -p "$STATE/slurm" "$STATE/spool/ctld" "$STATE/spool/d" "$STATE/log"
  local cpus memory
  # Not nproc: it honours OMP_NUM_THREADS, and a CPU count below slurmd's hardware count drains the node.
  cpus=$(getconf _NPROCESSORS_ONLN)
  memory=$(awk '/MemTotal/ {print int($2 / 1024 * 0.9)}' /proc/meminfo)
  cat > "$SLURM_CONF" <<EOF
# Written by scripts/local-cluster.sh: a one-node cluster for tests, accounting off.
ClusterName=qrnn-local
SlurmctldHost=$NODE
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$STATE/spool/ctld
SlurmdSpoolDir=$STATE/spool/d
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
ReturnToService=2
SlurmdTimeout=30
InactiveLimit=0
MinJobAge=300
KillWait=5
NodeName=$NODE CPUs=$cpus RealMemory=$memory State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
}

start_slurm() {
  write_slurm_conf
  if ! pgrep -f "slurmctld.*$STATE" >/dev/null && ! scontrol ping 2>/dev/null | grep -q UP; then
    log "starting slurmctld"
    /usr/sbin/slurmctld -f "$SLURM_CONF"
  fi
  if ! pgrep -x slurmd >/dev/null; then
    log "starting slurmd"
    /usr/sbin/slurmd -f "$SLURM_CONF"
  fi
  for _ in $(seq 100); do
    if sinfo -h -o '%T' 2>/dev/null | grep -qE '^(idle|mixed|allocated)'; then return 0; fi
    scontrol update nodename="$NODE" state=resume >/dev/null 2>&1 || true
    sleep 0.2
  done
  echo "!! SLURM did not come up; see $STATE/log/" >&2
  return 1
}

start_sshd() {
  mkdir -p "$STATE/ssh" /run/sshd ~/.ssh
  chmod 700 ~/.ssh
  [ -f "$STATE/ssh/host_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -f "$STATE/ssh/host_ed25519"
  [ -f "$STATE/ssh/client_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -f "$STATE/ssh/client_ed25519"
  cp "$STATE/ssh/client_ed25519.pub" "$STATE/ssh/authorized_keys"
  cat > "$STATE/ssh/sshd_config" <<EOF
Port $SSH_PORT
ListenAddress 127.0.0.1
HostKey $STATE/ssh/host_ed25519
AuthorizedKeysFile $STATE/ssh/authorized_keys
PidFile $STATE/sshd.pid
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
Subsystem sftp internal-sftp
SetEnv SLURM_CONF=$SLURM_CONF
# sshd's default 10:30:100 drops concurrent handshakes beyond 10: a daemon starting hundreds of jobs at once
# opens more (see docs/production.md, "SQLite + ZeroMQ or PostgreSQL + RabbitMQ?").
MaxStartups 200:30:400
# sshd's default of 10 channels per connection refused channels (asyncssh ChannelOpenError) in the 300-job load
# run: one daemon worker multiplexes its SFTP channel and up to max_io_allowed commands over one connection.
MaxSessions 64
EOF
  if ! { [ -f "$STATE/sshd.pid" ] && kill -0 "$(cat "$STATE/sshd.pid")" 2>/dev/null; }; then
    log "starting sshd on 127.0.0.1:$SSH_PORT"
    /usr/sbin/sshd -f "$STATE/ssh/sshd_config"
  fi
  # The host alias for core.ssh_async, in a block this script owns.
  touch ~/.ssh/config
  sed -i "/^# >>> $ALIAS >>>/,/^# <<< $ALIAS <<</d" ~/.ssh/config
  cat >> ~/.ssh/config <<EOF
# >>> $ALIAS >>> (written by aiida-qrnn scripts/local-cluster.sh)
Host $ALIAS
    HostName 127.0.0.1
    Port $SSH_PORT
    User $(id -un)
    IdentityFile $STATE/ssh/client_ed25519
    IdentitiesOnly yes
    UserKnownHostsFile $STATE/ssh/known_hosts
    StrictHostKeyChecking accept-new
# <<< $ALIAS <<<
EOF
  echo "[127.0.0.1]:$SSH_PORT $(cut -d' ' -f1,2 "$STATE/ssh/host_ed25519.pub")" > "$STATE/ssh/known_hosts"
  for _ in $(seq 50); do ssh -o BatchMode=yes "$ALIAS" true 2>/dev/null && return 0; sleep 0.1; done
  echo "!! cannot ssh to $ALIAS" >&2
  return 1
}

# A compute node going away: slurmd stops; the jobs' slurmstepd processes are left alone, as on a real restart.
stop_slurmd() {
  [ -f "$STATE/slurmd.pid" ] || return 0
  local pid
  pid=$(cat "$STATE/slurmd.pid")
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
}

# An SSH outage: the listening sshd and every session it forked (a stopped server alone keeps open sessions).
stop_sshd() {
  [ -f "$STATE/sshd.pid" ] || return 0
  local master
  master=$(cat "$STATE/sshd.pid")
  for session in $(pgrep -P "$master" || true); do kill "$session" 2>/dev/null || true; done
  kill "$master" 2>/dev/null || true
  rm -f "$STATE/sshd.pid"
}

stop_all() {
  for pidfile in "$STATE/sshd.pid" "$STATE/slurmd.pid" "$STATE/slurmctld.pid"; do
    if [ -f "$pidfile" ]; then kill "$(cat "$pidfile")" 2>/dev/null || true; rm -f "$pidfile"; fi
  done
  if [ -f ~/.ssh/config ]; then sed -i "/^# >>> $ALIAS >>>/,/^# <<< $ALIAS <<</d" ~/.ssh/config; fi
}

case "${1:-start}" in
  start)
    [ "$(id -u)" = 0 ] || { echo "!! run as root" >&2; exit 2; }
    for program in munged slurmctld slurmd sshd; do
      command -v "$program" >/dev/null || [ -x "/usr/sbin/$program" ] || {
        echo "!! $program is missing: apt-get install slurm-wlm munge openssh-server" >&2; exit 2; }
    done
    start_munge; start_slurm; start_sshd
    echo "SLURM_CONF=$SLURM_CONF"
    echo "SSH host alias: $ALIAS (127.0.0.1:$SSH_PORT)"
    ;;
  status)
    sinfo 2>&1 || true
    ssh -o BatchMode=yes "$ALIAS" 'echo ssh ok; squeue' 2>&1 || true
    ;;
  stop) stop_all ;;
  stop-slurmd) stop_slurmd ;;
  start-slurmd) start_slurm ;;
  stop-sshd) stop_sshd ;;
  start-sshd) start_sshd ;;
  *) echo "usage: $0 start|status|stop|stop-slurmd|start-slurmd|stop-sshd|start-sshd" >&2; exit 2 ;;
esac
