#!/usr/bin/env bash
# A real two-node Slurm cluster on one machine, for the tests (run as root): Debian's slurm-wlm with munge,
# slurmdbd + MariaDB (so sacct works), slurmctld, and two slurmd. Node n1 runs in this network namespace,
# node n2 in its own (netns ftbench-n2, joined by a veth pair), so each node has its own address and a
# 2-node job really crosses nodes: srun, torchrun's c10d rendezvous and gloo all go over the veth.
# Each node advertises FAKE_GPUS gres GPUs backed by character devices, so GPU requests schedule.
#
#   bash tests/slurm/cluster.sh start|stop|env
#
# State, logs and the database live under $BASE. The configuration goes where every Slurm client looks by
# default, /etc/slurm: the jobstep plugin strips SLURM_CONF from a job's environment, so the srun inside a
# job finds only the default path (as on a real cluster). /etc/hosts gets the two node names.
set -euo pipefail

BASE=${FTBENCH_SLURM_BASE:-/tmp/ftbench-slurm}
FAKE_GPUS=${FAKE_GPUS:-8}
NODE_CPUS=${NODE_CPUS:-8}          # advertised, not real: config_overrides lets 8 ranks schedule on 2 cores
NODE_MEM_MB=${NODE_MEM_MB:-10000}
NS=ftbench-n2
N1_ADDR=10.77.0.1 N2_ADDR=10.77.0.2
ETC=/etc/slurm
CONF=$ETC/slurm.conf
log() { echo "[cluster $(date +%T)] $*" >&2; }

alive() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

wait_for() { # description, tries (x0.2 s), command...
  local what=$1 tries=$2
  shift 2
  for ((i = 0; i < tries; i++)); do "$@" >/dev/null 2>&1 && return 0; sleep 0.2; done
  log "timed out waiting for $what"
  return 1
}

stop() {
  local f
  for f in "$BASE"/run/slurmd-n2.pid "$BASE"/run/slurmd-n1.pid "$BASE"/run/slurmctld.pid \
    "$BASE"/run/slurmdbd.pid "$BASE"/run/mariadbd.pid; do
    alive "$f" && kill "$(cat "$f")" 2>/dev/null || true
  done
  sleep 1
  ip netns del "$NS" 2>/dev/null || true
  ip link del ftb0 2>/dev/null || true
  # the configuration this script wrote (clients would otherwise keep probing a controller that is gone)
  if grep -qs '^ClusterName=ftbench$' "$CONF"; then rm -f "$CONF" "$ETC/gres.conf" "$ETC/slurmdbd.conf"; fi
}

install_packages() {
  command -v slurmctld >/dev/null && command -v slurmdbd >/dev/null && command -v mariadbd >/dev/null && return
  log "installing slurm-wlm, munge, MariaDB"
  # keep package scripts from starting services (there is no systemd)
  printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    slurmctld slurmd slurm-client slurmdbd munge mariadb-server iproute2 >/dev/null
  rm -f /usr/sbin/policy-rc.d
}

network() {
  ip netns add "$NS"
  # both ends are called ftb0 (each in its namespace), so GLOO_SOCKET_IFNAME=ftb0 holds on both nodes
  ip link add ftb0 type veth peer name ftb0-n2
  ip link set ftb0-n2 netns "$NS"
  ip netns exec "$NS" ip link set ftb0-n2 name ftb0
  ip addr add "$N1_ADDR/24" dev ftb0 && ip link set ftb0 up
  ip netns exec "$NS" ip addr add "$N2_ADDR/24" dev ftb0
  ip netns exec "$NS" ip link set ftb0 up
  ip netns exec "$NS" ip link set lo up
  # n2 reaches every address of this host (the controller, the database, the submitting host) through n1
  ip netns exec "$NS" ip route add default via "$N1_ADDR"
  sed -i '/# ftbench-slurm$/d' /etc/hosts
  printf '%s n1 # ftbench-slurm\n%s n2 # ftbench-slurm\n' "$N1_ADDR" "$N2_ADDR" >>/etc/hosts
}

configure() {
  mkdir -p "$BASE"/{state/ctld,state/n1,state/n2,log,run,mysql,gpu/n1,gpu/n2} "$ETC"
  : >"$ETC/gres.conf"
  for node in n1 n2; do
    for ((i = 0; i < FAKE_GPUS; i++)); do
      [ -c "$BASE/gpu/$node/nvidia$i" ] || mknod "$BASE/gpu/$node/nvidia$i" c 195 "$i"
    done
    echo "NodeName=$node Name=gpu Type=tesla File=$BASE/gpu/$node/nvidia[0-$((FAKE_GPUS - 1))]" >>"$ETC/gres.conf"
  done
  cat >"$CONF" <<EOF
ClusterName=ftbench
SlurmctldHost=$(hostname -s)($N1_ADDR)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation=$BASE/state/ctld
SlurmdSpoolDir=$BASE/state/%n
SlurmctldPidFile=$BASE/run/slurmctld.pid
SlurmdPidFile=$BASE/run/slurmd-%n.pid
SlurmctldLogFile=$BASE/log/slurmctld.log
SlurmdLogFile=$BASE/log/slurmd-%n.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/linux
# poll memory every 2 s and kill a job past its --mem: Slurm records OUT_OF_MEMORY (no cgroups here)
JobAcctGatherFrequency=2
JobAcctGatherParams=OverMemoryKill
SwitchType=switch/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SlurmdParameters=config_overrides
DefMemPerCPU=500
ReturnToService=2
EnforcePartLimits=ALL
MinJobAge=600
MailProg=/bin/true
GresTypes=gpu
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
JobCompType=jobcomp/none
NodeName=n1 NodeAddr=$N1_ADDR CPUs=$NODE_CPUS RealMemory=$NODE_MEM_MB Gres=gpu:tesla:$FAKE_GPUS State=UNKNOWN
NodeName=n2 NodeAddr=$N2_ADDR CPUs=$NODE_CPUS RealMemory=$NODE_MEM_MB Gres=gpu:tesla:$FAKE_GPUS State=UNKNOWN
PartitionName=debug Nodes=n1,n2 Default=YES MaxTime=INFINITE State=UP
EOF
  cat >"$ETC/slurmdbd.conf" <<EOF
AuthType=auth/munge
DbdHost=localhost
DbdAddr=127.0.0.1
SlurmUser=root
LogFile=$BASE/log/slurmdbd.log
PidFile=$BASE/run/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StorageUser=slurm
StoragePass=slurmpw
StorageLoc=slurm_acct_db
EOF
  chmod 600 "$ETC/slurmdbd.conf"
}

start_munge() {
  [ -s /etc/munge/munge.key ] || { mungekey -c -f -k /etc/munge/munge.key && chown munge:munge /etc/munge/munge.key; }
  mkdir -p /run/munge && chown munge:munge /run/munge
  pgrep -x munged >/dev/null || runuser -u munge -- /usr/sbin/munged
  wait_for munge 50 sh -c 'munge -n | unmunge'
}

start_database() {
  chown mysql:mysql "$BASE/mysql"
  local fresh=0 sock=$BASE/run/mysqld.sock
  if [ ! -d "$BASE/mysql/mysql" ]; then
    mariadb-install-db --user=mysql --datadir="$BASE/mysql" --auth-root-authentication-method=socket \
      --skip-test-db >"$BASE/log/mariadb-install.log" 2>&1
    fresh=1
  fi
  chown mysql:mysql "$BASE/run"
  setsid /usr/sbin/mariadbd --user=mysql --datadir="$BASE/mysql" --socket="$sock" --bind-address=127.0.0.1 \
    --pid-file="$BASE/run/mariadbd.pid" --log-error="$BASE/log/mariadb.err" --innodb-buffer-pool-size=64M \
    --skip-log-bin </dev/null >/dev/null 2>&1 &
  wait_for MariaDB 300 mariadb-admin --socket="$sock" ping
  if [ "$fresh" = 1 ]; then
    mariadb --socket="$sock" -e "CREATE USER 'slurm'@'localhost' IDENTIFIED BY 'slurmpw';
      CREATE USER 'slurm'@'127.0.0.1' IDENTIFIED BY 'slurmpw';
      GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost'; GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';"
  fi
}

node_up() { sinfo -h -n "$1" -o %T | grep -qE '^(idle|mixed|allocated)'; }

start() {
  install_packages
  stop
  [ "${RESET:-1}" = 1 ] && rm -rf "$BASE"
  configure
  network
  export SLURM_CONF=$CONF
  start_munge
  start_database
  slurmdbd
  wait_for slurmdbd 300 bash -c "exec 3<>/dev/tcp/127.0.0.1/6819"
  slurmctld
  wait_for slurmctld 150 scontrol ping
  slurmd -N n1
  # nsenter, not `ip netns exec`: that remounts /sys and slurmd then finds no cgroup filesystem
  nsenter --net="/run/netns/$NS" slurmd -N n2
  wait_for "node n1" 300 node_up n1
  wait_for "node n2" 300 node_up n2
  # slurmctld registers the cluster and slurmdbd the root account: wait until sbatch -A root is accepted
  wait_for "accounting" 150 sh -c "sacctmgr -n -P show assoc where user=root format=account | grep -q ."
  sinfo -N -o "%N %T %c %m %G" >&2
  log "up: SLURM_CONF=$CONF"
}

case "${1:-start}" in
start) start ;;
stop) stop ;;
env) echo "SLURM_CONF=$CONF" ;;
*)
  echo "usage: $0 start|stop|env" >&2
  exit 2
  ;;
esac
