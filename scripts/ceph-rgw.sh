#!/usr/bin/env bash
# A throwaway single-node Ceph cluster with the RADOS Gateway (S3), for the
# S3 tests and benchmarks.  Everything lives in DIR and listens on
# 127.0.0.1 only; no systemd, /etc/ceph or /var/lib/ceph is touched.
#
#   scripts/ceph-rgw.sh start DIR       make (first time) and start mon, osd, rgw;
#                                       create user "mailkeep" and bucket "mailkeep"
#   scripts/ceph-rgw.sh stop DIR        stop the daemons started in DIR, by pid
#   scripts/ceph-rgw.sh stop-rgw DIR    stop only the gateway
#   scripts/ceph-rgw.sh start-rgw DIR   start the gateway again
#   scripts/ceph-rgw.sh env DIR         print S3_ENDPOINT, S3_ACCESS_KEY,
#                                       S3_SECRET_KEY, S3_REGION, S3_BUCKET
#
# The OSD keeps objects in memory (memstore, CEPH_STORE_BYTES, default
# 2 GiB): a cluster is for one test run.  RGW_FRONTEND_EXTRA adds options
# to the beast frontend (e.g. "ssl_endpoint=127.0.0.1:PORT ssl_certificate=F
# ssl_private_key=F"), RGW_CONF_EXTRA adds lines to the gateway's section
# (e.g. "rgw_dns_name = localhost"); both are read when DIR is made.  Needs
# ceph-mon, ceph-osd, radosgw and ceph-common (Debian 12: Ceph 16).
set -euo pipefail

die() {
	echo "ceph-rgw: $*" >&2
	exit 1
}

free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# The pid in DIR/run/NAME.pid if that process runs with DIR's config.
daemon_pid() { # daemon_pid DIR NAME
	local f=$1/run/$2.pid pid
	[ -s "$f" ] || return 1
	pid=$(cat "$f")
	[ -r "/proc/$pid/cmdline" ] || return 1
	tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$1/ceph.conf" || return 1
	echo "$pid"
}

stop_daemon() { # stop_daemon DIR NAME
	local pid i
	pid=$(daemon_pid "$1" "$2") || return 0
	kill -TERM "$pid" 2>/dev/null || return 0
	for i in $(seq 1 300); do
		[ -d "/proc/$pid" ] || return 0
		grep -q '^State:.*Z' "/proc/$pid/status" 2>/dev/null && return 0
		sleep 0.1
	done
	echo "ceph-rgw: $2 ($pid) did not stop, SIGKILL" >&2
	kill -KILL "$pid" 2>/dev/null || true
}

write_conf() { # write_conf DIR MONPORT RGWPORT
	local d=$1
	cat >"$d/ceph.conf" <<EOF
[global]
fsid = $(cat /proc/sys/kernel/random/uuid)
mon_host = [v2:127.0.0.1:$2]
cluster_addr = 127.0.0.1
public_addr = 127.0.0.1
ms_bind_msgr1 = false
auth_cluster_required = none
auth_service_required = none
auth_client_required = none
ms_mon_client_mode = crc
mon_allow_pool_size_one = true
mon_warn_on_pool_no_redundancy = false
mon_warn_on_insecure_global_id_reclaim_allowed = false
mon_data_avail_warn = 2
mon_data_avail_crit = 1
osd_pool_default_size = 1
osd_pool_default_min_size = 1
osd_pool_default_pg_num = 8
osd_pool_default_pgp_num = 8
osd_pool_default_pg_autoscale_mode = off
osd_crush_chooseleaf_type = 0
paxos_propose_interval = 0.05
run_dir = $d/run
pid_file = $d/run/\$name.pid
admin_socket = $d/run/\$name.asok
log_file = $d/log/\$name.log
mon_data = $d/mon/\$name
osd_data = $d/osd/\$name
keyring = $d/keyring
[mon.a]
public_addr = v2:127.0.0.1:$2
[osd]
osd_objectstore = memstore
memstore_device_bytes = ${CEPH_STORE_BYTES:-2147483648}
[client.rgw.a]
rgw_frontends = beast endpoint=127.0.0.1:$3 tcp_nodelay=1${RGW_FRONTEND_EXTRA:+ $RGW_FRONTEND_EXTRA}
rgw_data = $d/rgw
rgw_thread_pool_size = 64
${RGW_CONF_EXTRA:-}
EOF
	echo "$3" >"$d/rgw.port"
}

start_rgw() { # start_rgw DIR
	local d=$1 port i
	daemon_pid "$d" client.rgw.a >/dev/null && return 0
	port=$(cat "$d/rgw.port")
	radosgw -c "$d/ceph.conf" -n client.rgw.a
	for i in $(seq 1 300); do
		if python3 - "$port" <<'EOF' 2>/dev/null; then return 0; fi
import sys, urllib.request, urllib.error
try:
    urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/", timeout=1)
except urllib.error.HTTPError:
    pass
EOF
		sleep 0.1
	done
	die "radosgw did not answer on 127.0.0.1:$port (see $d/log/client.rgw.a.log)"
}

cmd_start() { # cmd_start DIR
	local d=$1 c monport uuid
	[ -n "$d" ] || die "start: no DIR"
	mkdir -p "$d"
	d=$(cd "$d" && pwd)
	c=(-c "$d/ceph.conf")
	if daemon_pid "$d" mon.a >/dev/null; then
		start_rgw "$d"
		return 0
	fi
	# A memstore cluster keeps nothing across a stop: always made anew.
	rm -rf "${d:?}"/{mon,osd,run,log,rgw,keyring,monmap,ceph.conf}
	mkdir -p "$d"/{mon/mon.a,osd/osd.0,run,log,rgw}
	monport=$(free_port)
	write_conf "$d" "$monport" "$(free_port)"
	: >"$d/keyring"
	monmaptool --create --fsid "$(sed -n 's/^fsid = //p' "$d/ceph.conf")" \
	    --addv a "[v2:127.0.0.1:$monport]" "$d/monmap" >/dev/null
	ceph-mon "${c[@]}" --mkfs -i a --monmap "$d/monmap"
	ceph-mon "${c[@]}" -i a 2>>"$d/log/start.log"
	uuid=$(cat /proc/sys/kernel/random/uuid)
	ceph "${c[@]}" osd new "$uuid" >/dev/null
	ceph-osd "${c[@]}" -i 0 --mkfs --osd-uuid "$uuid" 2>>"$d/log/mkfs.log"
	ceph-osd "${c[@]}" -i 0 2>>"$d/log/start.log"
	# The gateway's pools, made at once rather than on the first request.
	{
		for p in .rgw.root default.rgw.log default.rgw.control \
		    default.rgw.meta default.rgw.buckets.index \
		    default.rgw.buckets.data default.rgw.buckets.non-ec; do
			echo "osd pool create $p 8 8"
			echo "osd pool application enable $p rgw"
		done
	} | ceph "${c[@]}" >/dev/null 2>&1
	start_rgw "$d"
	local ak sk
	ak=$(od -An -N10 -tx1 /dev/urandom | tr -d ' \n')
	sk=$(od -An -N20 -tx1 /dev/urandom | tr -d ' \n')
	radosgw-admin "${c[@]}" user create --uid=mailkeep \
	    --display-name=mailkeep --access-key="$ak" --secret-key="$sk" \
	    >/dev/null
	umask 077
	cat >"$d/s3.env" <<EOF
S3_ENDPOINT=http://127.0.0.1:$(cat "$d/rgw.port")
S3_ACCESS_KEY=$ak
S3_SECRET_KEY=$sk
S3_REGION=us-east-1
S3_BUCKET=mailkeep
EOF
	python3 "$(dirname "$0")/../tests/integration/s3client.py" \
	    --env "$d/s3.env" mb mailkeep
}

cmd_stop() { # cmd_stop DIR
	local d
	d=$(cd "$1" && pwd) || return 0
	stop_daemon "$d" client.rgw.a
	stop_daemon "$d" osd.0
	stop_daemon "$d" mon.a
}

case "${1:-}" in
start) cmd_start "${2:-}" ;;
stop) cmd_stop "${2:?DIR}" ;;
stop-rgw) stop_daemon "$(cd "${2:?DIR}" && pwd)" client.rgw.a ;;
start-rgw) start_rgw "$(cd "${2:?DIR}" && pwd)" ;;
env) cat "${2:?DIR}/s3.env" ;;
*)
	echo "usage: $0 start|stop|stop-rgw|start-rgw|env DIR" >&2
	exit 2
	;;
esac
