#!/usr/bin/env bash
# bench/bench-policy.sh: the Postfix policy service of mailkeepd beside
# Dovecot's quota-status (docs/benchmarks.md, section "Policy"):
#
#   answers per second and latency (p50, p90, p99, p99.9) with 1, 10 and
#   100 concurrent persistent connections, each sending the next request
#   as soon as the answer is in (closed loop, as Postfix's smtpd does),
#   against
#     - mailkeepd on its UNIX socket and on 127.0.0.1:PORT,
#     - Dovecot 2.3's `quota-status -p postfix` service (quota = maildir,
#       passwd-file userdb) on a UNIX socket, in a private Dovecot,
#     - a stub server that answers DUNNO to anything (the ceiling of this
#       machine and of the load generator itself),
#   with the same users (default 1,000; 10% over quota, and 5% of the
#   requests for addresses that do not exist); then how mailkeepd's rate
#   changes over 30 s as reservations pile up, and a profile of mailkeepd
#   (perf stat: CPU, context switches and system calls per answer;
#   callgrind: instructions per request and where they go).
#
#   bench/bench-policy.sh [--build] [--data DIR] [ARGS...]
#
# --build    configure and build build-bp (Release, what is measured) and
#            build-bp-prof (RelWithDebInfo, for callgrind) first
# --data DIR Dovecot, daemon state, the load generator and the results
#            (default ./bench-data/policy)
# ARGS       passed to `bench_policy.py run`, e.g. --seconds 5 --runs 3
#            --users 2000 --no-dovecot --no-profile; see
#            `python3 bench/bench_policy.py run --help`
#
# The load generator is C (written into DIR and compiled here, below):
# a Python client with persistent connections manages only a fraction of
# what the stub server takes, so the client would be what is measured.
# Its own limit is the "stub" row of the results.
#
# The markdown tables go to stdout and DIR/results/policy.md, the raw
# figures to DIR/results/policy.json, progress to stderr.  About 10
# minutes with the defaults.
#
# Needs: root (Dovecot's mail user), python3 (3.9+), a C compiler,
# dovecot-core, dovecot-imapd, dovecot-lmtpd; for the profile perf
# (linux-perf) and valgrind.  Debian:
#   apt-get install python3 gcc dovecot-core dovecot-imapd dovecot-lmtpd \
#       linux-perf valgrind

set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DATA=./bench-data/policy
BUILD=0
ARGS=()

while [ $# -gt 0 ]; do
	case $1 in
	--build) BUILD=1 ;;
	--data) DATA=$2; shift ;;
	-h|--help)
		sed -n '2,/^$/s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"
		exit 0 ;;
	*) ARGS+=("$1") ;;
	esac
	shift
done

log() { printf 'bench-policy: %s\n' "$*" >&2; }

CC=${CC:-cc}
missing=()
command -v python3 >/dev/null || missing+=(python3)
command -v "$CC" >/dev/null || missing+=(gcc)
if [ ${#missing[@]} -gt 0 ]; then
	log "missing: ${missing[*]}; install with: apt-get install ${missing[*]}"
	exit 1
fi

if [ $BUILD = 1 ]; then
	cmake -S "$REPO" -B "$REPO/build-bp" -DCMAKE_BUILD_TYPE=Release >&2
	cmake --build "$REPO/build-bp" -j2 --target mailkeepd >&2
	cmake -S "$REPO" -B "$REPO/build-bp-prof" \
	    -DCMAKE_BUILD_TYPE=RelWithDebInfo >&2
	cmake --build "$REPO/build-bp-prof" -j2 --target mailkeepd >&2
fi
if [ ! -x "$REPO/build-bp/mailkeepd" ]; then
	log "build-bp/mailkeepd not found: run with --build, or
  cmake -S . -B build-bp -DCMAKE_BUILD_TYPE=Release && cmake --build build-bp -j2"
	exit 1
fi

mkdir -p "$DATA"
DATA=$(cd "$DATA" && pwd)

# The load generator.
cat >"$DATA/policy-load.c" <<'CSOURCE'
/*
 * policy-load: a closed-loop load generator for Postfix policy services
 * (the smtpd_access_policy protocol).  C connections stay open; each
 * sends one request, waits for the whole answer ("...\n\n"), records the
 * round trip, sends the next.  Written for bench/bench-policy.sh.
 *
 *   policy-load (-u PATH | -t HOST:PORT) -r RCPTFILE [-c CONNS] [-d SECONDS]
 *               [-w WARMUP] [-n REQUESTS] [-s SIZE] [-i unique|none]
 *   policy-load -L PATH        a stub server answering DUNNO to anything
 *
 * RCPTFILE: one "address expected" per line; expected is the start of
 * the action ("DUNNO", "552"); an answer that does not start so counts
 * as a mismatch.  -i unique gives every request its own instance= (as
 * Postfix does per transaction), -i none sends it empty.  Latencies go
 * into 1 us buckets; answers in the warmup are not counted.  Output:
 * one JSON object on stdout.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define HIST_US 1000000 /* 1 us buckets up to 1 s */
#define MAXSEC 3600

struct rcpt {
	char *address;
	char *expect;
};

struct conn {
	int fd;
	size_t next; /* recipient index */
	uint64_t seq;
	int64_t sent_ns;
	char out[1024];
	size_t outlen, outoff;
	char in[512];
	size_t inlen;
};

static struct rcpt *rcpts;
static size_t nrcpts;
static uint32_t *hist;
static uint64_t over_hist, mismatches, measured;
static uint64_t per_sec[MAXSEC];
static const char *instance_mode = "unique";
static unsigned long long size_attr;

static int64_t
now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void
die(const char *what)
{
	perror(what);
	exit(2);
}

static void
load_rcpts(const char *path)
{
	FILE *fp = fopen(path, "r");
	char line[1024];
	size_t cap = 0;

	if (fp == NULL)
		die(path);
	while (fgets(line, sizeof(line), fp) != NULL) {
		char *a = strtok(line, " \t\n"), *e = strtok(NULL, " \t\n");

		if (a == NULL)
			continue;
		if (nrcpts == cap) {
			cap = cap ? cap * 2 : 1024;
			rcpts = realloc(rcpts, cap * sizeof(*rcpts));
		}
		rcpts[nrcpts].address = strdup(a);
		rcpts[nrcpts].expect = strdup(e != NULL ? e : "");
		nrcpts++;
	}
	fclose(fp);
	if (nrcpts == 0) {
		fprintf(stderr, "%s: no recipients\n", path);
		exit(2);
	}
}

static int
connect_to(const char *unix_path, const struct sockaddr_in *sin)
{
	int fd, one = 1;

	if (unix_path != NULL) {
		struct sockaddr_un sun;

		memset(&sun, 0, sizeof(sun));
		sun.sun_family = AF_UNIX;
		snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", unix_path);
		if ((fd = socket(AF_UNIX, SOCK_STREAM, 0)) < 0)
			die("socket");
		if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0)
			die(unix_path);
	} else {
		if ((fd = socket(AF_INET, SOCK_STREAM, 0)) < 0)
			die("socket");
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		if (connect(fd, (const struct sockaddr *)sin, sizeof(*sin)) < 0)
			die("connect");
	}
	return fd;
}

/* The request Postfix 3.7's smtpd sends at RCPT. */
static void
make_request(struct conn *c, int id)
{
	const struct rcpt *r = &rcpts[c->next];
	char inst[64] = "";

	if (strcmp(instance_mode, "unique") == 0)
		snprintf(inst, sizeof(inst), "%x.%llx.%x.0", id,
		    (unsigned long long)c->seq, 7);
	c->outlen = (size_t)snprintf(c->out, sizeof(c->out),
	    "request=smtpd_access_policy\nprotocol_state=RCPT\n"
	    "protocol_name=ESMTP\nclient_address=127.0.0.1\n"
	    "client_name=localhost\nclient_port=%d\n"
	    "reverse_client_name=localhost\nserver_address=127.0.0.1\n"
	    "server_port=25\nhelo_name=client.example.net\n"
	    "sender=sender@example.net\nrecipient=%s\nrecipient_count=0\n"
	    "queue_id=\ninstance=%s\nsize=%llu\netrn_domain=\nstress=\n"
	    "sasl_method=\nsasl_username=\nsasl_sender=\nccert_subject=\n"
	    "ccert_issuer=\nccert_fingerprint=\nencryption_protocol=\n"
	    "encryption_cipher=\nencryption_keysize=0\n\n",
	    40000 + id, r->address, inst, size_attr);
	c->outoff = 0;
	c->inlen = 0;
	c->seq++;
}

static void
send_some(struct conn *c)
{
	while (c->outoff < c->outlen) {
		ssize_t n = write(c->fd, c->out + c->outoff,
		    c->outlen - c->outoff);

		if (n < 0) {
			if (errno == EAGAIN || errno == EINTR)
				return;
			die("write");
		}
		c->outoff += (size_t)n;
	}
}


/*
 * -L PATH: a stub policy server for measuring the client's own limit:
 * one thread, epoll (level-triggered, read interest only), answers
 * "action=DUNNO" to every request with one write(); nothing else.
 */
static int
stub_server(const char *path)
{
	struct sockaddr_un sun;
	struct epoll_event ev, evs[256];
	static char buf[1 << 16];
	static size_t held[65536];
	int lfd, ep;

	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", path);
	unlink(path);
	if ((lfd = socket(AF_UNIX, SOCK_STREAM, 0)) < 0 ||
	    bind(lfd, (struct sockaddr *)&sun, sizeof(sun)) < 0 ||
	    listen(lfd, 512) < 0)
		die(path);
	if ((ep = epoll_create1(0)) < 0)
		die("epoll_create1");
	ev.events = EPOLLIN;
	ev.data.fd = lfd;
	epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
	for (;;) {
		int n = epoll_wait(ep, evs, 256, -1), k;

		for (k = 0; k < n; k++) {
			int fd = evs[k].data.fd;
			ssize_t r, i;

			if (fd == lfd) {
				int c = accept(lfd, NULL, NULL);

				if (c < 0 || c >= 65536)
					continue;
				held[c] = 0;
				ev.events = EPOLLIN;
				ev.data.fd = c;
				epoll_ctl(ep, EPOLL_CTL_ADD, c, &ev);
				continue;
			}
			r = read(fd, buf, sizeof(buf));
			if (r <= 0) {
				close(fd);
				continue;
			}
			/* count the empty lines: one answer per request */
			for (i = 0; i < r; i++) {
				if (buf[i] == '\n' && held[fd] == 1) {
					if (write(fd, "action=DUNNO\n\n", 14) < 0)
						break;
					held[fd] = 0;
				} else
					held[fd] = buf[i] == '\n';
			}
		}
	}
	return 0;
}

int
main(int argc, char **argv)
{
	const char *unix_path = NULL, *tcp = NULL, *rfile = NULL;
	double duration = 10, warmup = 1;
	unsigned long long limit = 0;
	int nconns = 1, opt, ep, i;
	struct sockaddr_in sin;
	struct conn *conns;
	struct epoll_event ev, evs[256];
	struct rusage ru0, ru1;
	int64_t start, mstart, end;
	uint64_t total = 0;

	while ((opt = getopt(argc, argv, "L:u:t:r:c:d:w:n:s:i:")) != -1) {
		switch (opt) {
		case 'L': return stub_server(optarg);
		case 'u': unix_path = optarg; break;
		case 't': tcp = optarg; break;
		case 'r': rfile = optarg; break;
		case 'c': nconns = atoi(optarg); break;
		case 'd': duration = atof(optarg); break;
		case 'w': warmup = atof(optarg); break;
		case 'n': limit = strtoull(optarg, NULL, 10); break;
		case 's': size_attr = strtoull(optarg, NULL, 10); break;
		case 'i': instance_mode = optarg; break;
		default:
			fprintf(stderr, "usage: see the head of policy-load.c\n");
			return 2;
		}
	}
	if ((unix_path == NULL) == (tcp == NULL) || rfile == NULL ||
	    nconns < 1) {
		fprintf(stderr, "give -u PATH or -t HOST:PORT, and -r FILE\n");
		return 2;
	}
	load_rcpts(rfile);
	if (tcp != NULL) {
		char host[256];
		const char *colon = strrchr(tcp, ':');

		if (colon == NULL)
			die("-t HOST:PORT");
		snprintf(host, sizeof(host), "%.*s", (int)(colon - tcp), tcp);
		memset(&sin, 0, sizeof(sin));
		sin.sin_family = AF_INET;
		sin.sin_port = htons((uint16_t)atoi(colon + 1));
		if (inet_pton(AF_INET, host, &sin.sin_addr) != 1)
			die("-t: not an IPv4 address");
	}
	if ((hist = calloc(HIST_US, sizeof(*hist))) == NULL)
		die("calloc");
	conns = calloc((size_t)nconns, sizeof(*conns));
	if ((ep = epoll_create1(0)) < 0)
		die("epoll_create1");
	for (i = 0; i < nconns; i++) {
		conns[i].fd = connect_to(unix_path, &sin);
		conns[i].next = (size_t)i * 7919 % nrcpts;
		ev.events = EPOLLIN;
		ev.data.u32 = (uint32_t)i;
		if (epoll_ctl(ep, EPOLL_CTL_ADD, conns[i].fd, &ev) < 0)
			die("epoll_ctl");
	}
	start = now_ns();
	mstart = start + (int64_t)(warmup * 1e9);
	end = mstart + (int64_t)(duration * 1e9);
	getrusage(RUSAGE_SELF, &ru0);
	for (i = 0; i < nconns; i++) {
		make_request(&conns[i], i);
		conns[i].sent_ns = now_ns();
		send_some(&conns[i]);
	}
	for (;;) {
		int n = epoll_wait(ep, evs, 256, 1000), k;
		int64_t t = now_ns();

		if (n < 0 && errno != EINTR)
			die("epoll_wait");
		if (limit == 0 && t >= end)
			break;
		if (limit != 0 && total >= limit)
			break;
		for (k = 0; k < n; k++) {
			struct conn *c = &conns[evs[k].data.u32];
			ssize_t r = read(c->fd, c->in + c->inlen,
			    sizeof(c->in) - 1 - c->inlen);

			if (r == 0) {
				fprintf(stderr, "the server closed a connection\n");
				return 1;
			}
			if (r < 0) {
				if (errno == EAGAIN || errno == EINTR)
					continue;
				die("read");
			}
			c->inlen += (size_t)r;
			if (c->inlen < 2 || c->in[c->inlen - 1] != '\n' ||
			    c->in[c->inlen - 2] != '\n')
				continue;
			t = now_ns();
			total++;
			if (t >= mstart && (limit != 0 || t < end)) {
				int64_t us = (t - c->sent_ns) / 1000;
				const char *want = rcpts[c->next].expect;

				measured++;
				if (us < HIST_US)
					hist[us]++;
				else
					over_hist++;
				if ((t - mstart) / 1000000000 < MAXSEC)
					per_sec[(t - mstart) / 1000000000]++;
				if (strncmp(c->in, "action=", 7) != 0 ||
				    strncmp(c->in + 7, want, strlen(want)) != 0)
					mismatches++;
			}
			c->next = (c->next + 1) % nrcpts;
			make_request(c, (int)evs[k].data.u32);
			c->sent_ns = now_ns();
			send_some(c);
		}
	}
	getrusage(RUSAGE_SELF, &ru1);
	{
		int64_t stop = now_ns();
		double secs = (double)((limit != 0 ? stop : end) - mstart) / 1e9;
		double cpu = (double)(ru1.ru_utime.tv_sec - ru0.ru_utime.tv_sec) +
		    (double)(ru1.ru_stime.tv_sec - ru0.ru_stime.tv_sec) +
		    (double)(ru1.ru_utime.tv_usec - ru0.ru_utime.tv_usec) / 1e6 +
		    (double)(ru1.ru_stime.tv_usec - ru0.ru_stime.tv_usec) / 1e6;
		double pct[] = { 50, 90, 99, 99.9 };
		long pv[4], maxv = 0;
		uint64_t cum = 0;
		int p = 0;
		long u;

		for (u = 0; u < HIST_US; u++) {
			cum += hist[u];
			while (p < 4 && measured > 0 &&
			    cum * 100.0 >= pct[p] * (double)measured)
				pv[p++] = u;
			if (hist[u])
				maxv = u;
		}
		while (p < 4)
			pv[p++] = -1;
		printf("{\"conns\": %d, \"answers\": %llu, \"seconds\": %.3f, "
		       "\"rate\": %.0f, \"p50_us\": %ld, \"p90_us\": %ld, "
		       "\"p99_us\": %ld, \"p999_us\": %ld, \"max_us\": %ld, "
		       "\"over_1s\": %llu, \"mismatches\": %llu, "
		       "\"total_answers\": %llu, \"wall_s\": %.3f, "
		       "\"client_cpu_s\": %.3f, \"per_second\": [",
		    nconns, (unsigned long long)measured, secs,
		    (double)measured / secs, pv[0], pv[1], pv[2], pv[3],
		    over_hist ? 1000000L : maxv,
		    (unsigned long long)over_hist,
		    (unsigned long long)mismatches, (unsigned long long)total,
		    (double)(stop - start) / 1e9, cpu);
		for (u = 0; u < (long)secs && u < MAXSEC; u++)
			printf("%s%llu", u ? ", " : "",
			    (unsigned long long)per_sec[u]);
		printf("]}\n");
	}
	return 0;
}
CSOURCE
"$CC" -O2 -Wall -Wextra -o "$DATA/policy-load" "$DATA/policy-load.c"

PROF=()
if [ -x "$REPO/build-bp-prof/mailkeepd" ]; then
	PROF=(--prof-bin "$REPO/build-bp-prof")
fi
exec python3 "$REPO/bench/bench_policy.py" run --data "$DATA" \
    --bin "$REPO/build-bp" "${PROF[@]}" --loadgen "$DATA/policy-load" "${ARGS[@]}"
