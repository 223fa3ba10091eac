/*
 * wtd_bench — the "wtd via C API" column of scripts/bench.sh. Uses only include/wtd.h.
 * Every mode prints one JSON line on stdout (servers first print "READY <port> <cert-sha256>").
 *
 *   wtd_bench server count [--transport]   accept one session, count datagrams until 500 ms idle
 *                                          (session: wtd_session_receive/_batch; --transport:
 *                                          wtd_transport_receive_batch)
 *   wtd_bench server echo                  echo every datagram from the datagram callback (until SIGTERM)
 *   wtd_bench server echopoll              echo from the application thread (receive_batch + send)
 *   wtd_bench server echoloop              engine-owned: WTD_RUNTIME_POLL, one thread runs everything
 *                                          (wtd_poll + receive_batch with timeout 0 + send)
 *   wtd_bench server drain                 count-and-drop every datagram in the callback (until SIGTERM)
 *   wtd_bench client blast URL HASH SIZE SECS [--transport BATCH]
 *   wtd_bench client ping URL HASH SIZE COUNT
 *   wtd_bench client echorate URL HASH SIZE SECS WINDOW
 *   wtd_bench client ffi URL HASH SIZE BURST ROUNDS
 *   wtd_bench broadcast CONNS SESSIONS_PER_CONN ROUNDS
 *   wtd_bench server fanout SESSIONS HZ SECS      accept SESSIONS, broadcast 64 B at HZ for SECS (own CPU %)
 *   wtd_bench client fanin URL HASH CONNS PER_CONN open CONNS x PER_CONN sessions, count arrivals
 *
 * Environment: WTD_BENCH_COALESCE_US = wtd_set_send_coalescing interval (default 0: off);
 * WTD_BENCH_THREADS = wtd runtime threads (default: wtd's default: 2, 1 when pinned to one CPU);
 * WTD_BENCH_RUNTIME = poll: engine-owned mode (WTD_RUNTIME_POLL) for any mode — the clients' blocking
 * receives then run wtd on the calling thread while they wait (the only thread), and the callback
 * servers (echo, drain) run their callbacks inside the main thread's wtd_poll loop;
 * WTD_BENCH_BACKOFF = yield (default: sched_yield() before retrying wtd_session_send on
 * WOULD_BLOCK) | spin (retry at once; on a pinned core it starves wtd's own runtime threads).
 */
#define _GNU_SOURCE
#include <wtd.h>

#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* CPU time of the calling thread only (what a call costs the game's thread, without the time
 * other threads of the process run on the same core meanwhile). */
static uint64_t thread_cpu_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t cpu_us(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (uint64_t)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000ull +
           (uint64_t)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
}

static void sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static void die(const char *what, wtd_result r) {
    fprintf(stderr, "wtd_bench: %s failed: %s (%s)\n", what, wtd_result_str(r), wtd_last_error_message());
    exit(1);
}
#define CHECK(call) do { wtd_result r_ = (call); if (r_ != WTD_OK) die(#call, r_); } while (0)

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}
static double pct(const double *sorted, size_t n, double p) {
    if (!n) return 0;
    size_t i = (size_t)((double)n * p);
    return sorted[i < n ? i : n - 1];
}

static int yield_backoff;
static inline void backoff(void) { if (yield_backoff) sched_yield(); }

/* ---------------------------------------------------------------- servers */

static volatile sig_atomic_t running = 1;
static void on_signal(int sig) { (void)sig; running = 0; }
static atomic_ullong srv_count, srv_fail;
static pthread_mutex_t sess_lock = PTHREAD_MUTEX_INITIALIZER;
static wtd_session *sessions[64];
static size_t nsessions;

static void echo_cb(void *u, wtd_session *s, const uint8_t *d, size_t len) {
    (void)u;
    if (wtd_session_send(s, d, len) == WTD_OK) atomic_fetch_add(&srv_count, 1);
    else atomic_fetch_add(&srv_fail, 1);
}
static void drain_cb(void *u, wtd_session *s, const uint8_t *d, size_t len) {
    (void)u, (void)s, (void)d, (void)len;
    atomic_fetch_add(&srv_count, 1);
}
static wtd_session_datagram_cb server_cb;
static void on_session(void *u, wtd_session *s) {
    (void)u;
    wtd_session_callbacks cb = {sizeof cb, 0, server_cb, NULL, NULL};
    wtd_session_set_callbacks(s, &cb);
    pthread_mutex_lock(&sess_lock);
    if (nsessions < 64) sessions[nsessions++] = s; else wtd_session_free(s);
    pthread_mutex_unlock(&sess_lock);
}

static wtd_server *start_server(int with_callback) {
    wtd_server_options o;
    o.struct_size = sizeof(o);
    wtd_server_options_default(&o);
    o.port = 0;
    o.host = "127.0.0.1";
    /* Every benchmark client comes from 127.0.0.1: lift the per-address connection cap and make
     * the accept queue hold a whole fan-out's worth of sessions. */
    o.max_connections_per_ip = o.max_connections;
    o.accept_queue_capacity = 16384;
    if (with_callback) o.on_session = on_session;
    wtd_server *srv = NULL;
    CHECK(wtd_server_new(&o, &srv));
    uint16_t port = 0;
    char hash[65];
    wtd_server_port(srv, &port);
    wtd_server_cert_hash_hex(srv, hash, sizeof hash);
    printf("READY %u %s\n", port, hash);
    fflush(stdout);
    return srv;
}

/* The receive buffers of the servers that receive on their own thread: 64 of 2048 B (every
 * benchmark payload fits); each call resets their capacities. */
enum { RECV_BATCH = 64, RECV_CAP = 2048 };
static wtd_datagram_buffer *recv_buffers(void) {
    static uint8_t store[RECV_BATCH][RECV_CAP];
    static wtd_datagram_buffer bufs[RECV_BATCH];
    for (int i = 0; i < RECV_BATCH; i++) bufs[i] = (wtd_datagram_buffer){store[i], RECV_CAP, 0};
    return bufs;
}

/* A server that runs until SIGINT/SIGTERM (the echo and drain servers). */
static wtd_server *start_signalled_server(int with_callback) {
    wtd_server *srv = start_server(with_callback);
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    return srv;
}

/* Prints what such a server handled, frees it and shuts wtd down. */
static int finish_signalled_server(wtd_server *srv) {
    printf("{\"handled\":%llu,\"failed\":%llu}\n", (unsigned long long)srv_count,
           (unsigned long long)srv_fail);
    fflush(stdout);
    wtd_server_free(srv);
    wtd_shutdown();
    return 0;
}

static int server_count(int use_transport) {
    wtd_server *srv = start_server(0);
    wtd_session *s = NULL;
    CHECK(wtd_server_accept(srv, &s, 15000));
    wtd_transport *t = NULL;
    if (use_transport) {
        wtd_transport_options to;
        to.struct_size = sizeof(to);
        wtd_transport_options_default(&to);
        to.incoming_high_water_mark = 1024; /* same depth as a session's receive queue */
        CHECK(wtd_transport_new(s, &to, &t));
    }
    wtd_datagram_buffer *bufs = recv_buffers();
    uint64_t cpu0 = cpu_us(), n = 0, bytes = 0, first = 0, last = 0;
    unsigned long long spurious = 0;
    for (;;) {
        size_t got = 0;
        int32_t wait = first ? 500 : 15000;
        wtd_result r;
        /* API 0.2: sessions and transports share one batch shape (wait for the first, drain the
         * rest). Every buffer holds 2048 B, so BUFFER_TOO_SMALL would be a library bug: count it. */
        if (t) {
            r = wtd_transport_receive_batch(t, bufs, RECV_BATCH, &got, wait);
        } else {
            r = wtd_session_receive_batch(s, bufs, RECV_BATCH, &got, wait);
        }
        if (r == WTD_ERR_BUFFER_TOO_SMALL) { spurious++; continue; }
        if (r != WTD_OK) { /* timeout (idle) or closed */
            if (r != WTD_ERR_TIMEOUT && r != WTD_ERR_CLOSED)
                fprintf(stderr, "wtd_bench: receive stopped: %s (%s)\n", wtd_result_str(r), wtd_last_error_message());
            break;
        }
        for (size_t i = 0; i < got; i++) bytes += bufs[i].len;
        n += got;
        last = now_ns();
        if (!first) first = last;
    }
    uint64_t cpu = cpu_us() - cpu0;
    unsigned long long dropped = 0;
    if (t) {
        wtd_datagram_stats st;
        st.struct_size = sizeof(st);
        wtd_transport_get_stats(t, &st);
        dropped = st.receive_drops;
    }
    wtd_session_stats ss = {0}; /* fields a library older than this header did not write stay 0 */
    ss.struct_size = sizeof(ss);
    wtd_session_get_stats(s, &ss);
    if (!t) dropped = ss.dropped_queue_full;
    /* quic_frames - drained = datagrams QUIC received that wtd never took; quic_overflow = those
     * QUIC dropped from its full receive buffer (counted by wtd; read while the connection is
     * still open, so a lower bound); drained / drains = mean receive batch. */
    printf("{\"received\":%llu,\"bytes\":%llu,\"secs\":%.6f,\"cpu_us\":%llu,\"receiver_queue_drops\":%llu,\"spurious_buffer_too_small\":%llu,"
           "\"quic_frames\":%llu,\"drained\":%llu,\"drains\":%llu,\"quic_overflow\":%llu,\"lost_packets\":%llu}\n",
           (unsigned long long)n, (unsigned long long)bytes, (double)(last - first) / 1e9,
           (unsigned long long)cpu, dropped, spurious,
           (unsigned long long)ss.connection_datagram_frames_received,
           (unsigned long long)ss.connection_receive_drained,
           (unsigned long long)ss.connection_receive_drains,
           (unsigned long long)ss.connection_receive_overflow,
           (unsigned long long)ss.connection_lost_packets);
    fflush(stdout);
    wtd_transport_free(t);
    wtd_session_free(s);
    wtd_server_free(srv);
    wtd_shutdown();
    return 0;
}

static int poll_runtime; /* WTD_BENCH_RUNTIME=poll */

/* Waits ms milliseconds; in engine-owned mode the wait is spent inside wtd_poll (wtd's I/O,
 * timers and callbacks run there), as a game loop would spend its idle time. */
static void idle_ms(long ms) {
    if (!poll_runtime) {
        sleep_ms(ms);
        return;
    }
    uint64_t end = now_ns() + (uint64_t)ms * 1000000u;
    for (uint64_t t = now_ns(); t < end; t = now_ns())
        CHECK(wtd_poll(NULL, (int32_t)((end - t + 999999u) / 1000000u)));
}

static int server_callback(wtd_session_datagram_cb cb) {
    server_cb = cb;
    wtd_server *srv = start_signalled_server(1);
    while (running) {
        if (poll_runtime) CHECK(wtd_poll(NULL, 20)); /* the callbacks run in here */
        else sleep_ms(20);
    }
    wtd_server_close(srv);
    pthread_mutex_lock(&sess_lock);
    for (size_t i = 0; i < nsessions; i++) wtd_session_free(sessions[i]);
    pthread_mutex_unlock(&sess_lock);
    return finish_signalled_server(srv);
}

/* ---------------------------------------------------------------- clients */

static int parse_hash(const char *hex, uint8_t out[32]) {
    if (strlen(hex) != 64) return -1;
    for (int i = 0; i < 32; i++) {
        unsigned v;
        if (sscanf(hex + 2 * i, "%2x", &v) != 1) return -1;
        out[i] = (uint8_t)v;
    }
    return 0;
}

static uint8_t pin[32];
static wtd_session *connect_to(const char *url, const char *hash) {
    if (parse_hash(hash, pin)) { fprintf(stderr, "bad hash\n"); exit(2); }
    wtd_client_options o;
    o.struct_size = sizeof(o);
    wtd_client_options_default(&o);
    o.verify = WTD_VERIFY_CERT_HASHES, o.cert_hashes = pin, o.cert_hash_count = 1;
    wtd_session *s = NULL;
    CHECK(wtd_client_connect(url, &o, &s));
    return s;
}

static int client_blast(wtd_session *s, size_t size, double secs, int batch) {
    uint8_t *p = malloc(size);
    for (size_t i = 0; i < size; i++) p[i] = (uint8_t)i;
    unsigned long long accepted = 0, would_block = 0, failures = 0, send_drops = 0;
    wtd_transport *t = NULL;
    wtd_datagram_view *views = NULL;
    if (batch > 0) {
        wtd_transport_options to;
        to.struct_size = sizeof(to);
        wtd_transport_options_default(&to);
        to.drop_policy = WTD_DROP_BLOCK; /* back-pressure instead of evicting */
        CHECK(wtd_transport_new(s, &to, &t));
        views = calloc((size_t)batch, sizeof *views);
        for (int i = 0; i < batch; i++) views[i] = (wtd_datagram_view){p, size};
    }
    uint64_t cpu0 = cpu_us(), t0 = now_ns(), end = t0 + (uint64_t)(secs * 1e9);
    for (;;) {
        if (t) {
            size_t acc = 0;
            wtd_result r = wtd_transport_send_multiple(t, views, (size_t)batch, 0, 0, &acc);
            accepted += acc;
            if (r == WTD_ERR_TIMEOUT || r == WTD_ERR_WOULD_BLOCK) would_block++;
            else if (r != WTD_OK) {
                failures++;
                fprintf(stderr, "wtd_bench: send_multiple failed after %llu: %s (%s)\n", accepted, wtd_result_str(r), wtd_last_error_message());
                break;
            }
        } else {
            for (int k = 0; k < 64; k++) {
                wtd_result r;
                while ((r = wtd_session_send(s, p, size)) == WTD_ERR_WOULD_BLOCK) { would_block++; backoff(); }
                if (r != WTD_OK) {
                    failures++;
                    fprintf(stderr, "wtd_bench: send failed after %llu: %s (%s)\n", accepted, wtd_result_str(r), wtd_last_error_message());
                    goto done;
                }
                accepted++;
            }
        }
        if (now_ns() >= end) break;
    }
done:;
    double send_secs = (double)(now_ns() - t0) / 1e9;
    if (t) {
        wtd_transport_close(t, 2000); /* flush what is still queued into QUIC */
        wtd_datagram_stats st;
        st.struct_size = sizeof(st);
        wtd_transport_get_stats(t, &st);
        send_drops = st.send_drops;
    }
    sleep_ms(300); /* let quinn drain before the session closes */
    uint64_t cpu = cpu_us() - cpu0;
    wtd_session_stats ss = {0};
    ss.struct_size = sizeof(ss);
    wtd_session_get_stats(s, &ss);
    printf("{\"accepted\":%llu,\"secs\":%.6f,\"cpu_us\":%llu,\"would_block\":%llu,\"failures\":%llu,\"sender_queue_drops\":%llu,"
           "\"unsent\":%llu,\"flushes\":%llu,\"flushed\":%llu,\"lost_packets\":%llu}\n",
           accepted, send_secs, (unsigned long long)cpu, would_block, failures, send_drops,
           (unsigned long long)ss.send_dropped_unsent, (unsigned long long)ss.connection_send_flushes,
           (unsigned long long)ss.connection_send_flushed, (unsigned long long)ss.connection_lost_packets);
    fflush(stdout);
    wtd_transport_free(t);
    free(views), free(p);
    return 0;
}

static int client_ping(wtd_session *s, size_t size, long count) {
    const long warm = 100;
    uint8_t *p = calloc(1, size), in[2048];
    double *rtt = calloc((size_t)count, sizeof *rtt);
    size_t n = 0;
    unsigned long long lost = 0;
    uint64_t t_all = now_ns();
    for (long i = 0; i < count + warm; i++) {
        if (i == warm) t_all = now_ns();
        uint32_t seq = (uint32_t)i;
        memcpy(p, &seq, 4);
        uint64_t t = now_ns();
        wtd_result r;
        while ((r = wtd_session_send(s, p, size)) == WTD_ERR_WOULD_BLOCK) {}
        if (r != WTD_OK) die("wtd_session_send", r);
        for (;;) {
            size_t len = 0;
            r = wtd_session_receive(s, in, sizeof in, &len, 1000);
            if (r != WTD_OK) { lost++; break; }
            uint32_t got;
            memcpy(&got, in, 4);
            if (got == seq) {
                if (i >= warm) rtt[n++] = (double)(now_ns() - t) / 1e3;
                break;
            }
        }
    }
    double total = (double)(now_ns() - t_all) / 1e9, mean = 0;
    for (size_t i = 0; i < n; i++) mean += rtt[i];
    mean /= n ? (double)n : 1;
    qsort(rtt, n, sizeof *rtt, cmp_double);
    printf("{\"samples\":%zu,\"lost\":%llu,\"p50_us\":%.1f,\"p99_us\":%.1f,\"mean_us\":%.1f,\"rate\":%.1f}\n", n, lost,
           pct(rtt, n, 0.5), pct(rtt, n, 0.99), mean, (double)n / total);
    fflush(stdout);
    free(p), free(rtt);
    return 0;
}

static int client_echorate(wtd_session *s, size_t size, double secs, unsigned long window) {
    uint8_t *p = calloc(1, size), in[2048];
    unsigned long long sent = 0, recv = 0, lost = 0, inflight = 0;
    uint64_t t0 = now_ns(), end = t0 + (uint64_t)(secs * 1e9);
    while (now_ns() < end) {
        while (inflight < window) {
            wtd_result r = wtd_session_send(s, p, size);
            if (r == WTD_ERR_WOULD_BLOCK) break;
            if (r != WTD_OK) die("wtd_session_send", r);
            sent++, inflight++;
        }
        size_t len = 0;
        wtd_result r = wtd_session_receive(s, in, sizeof in, &len, 20);
        if (r == WTD_OK) { recv++; if (inflight) inflight--; }
        else if (r == WTD_ERR_TIMEOUT) { lost += inflight; inflight = 0; }
        else die("wtd_session_receive", r);
    }
    double el = (double)(now_ns() - t0) / 1e9;
    printf("{\"sent\":%llu,\"received\":%llu,\"presumed_lost\":%llu,\"secs\":%.6f,\"rate\":%.1f}\n", sent, recv,
           lost, el, (double)recv / el);
    fflush(stdout);
    free(p);
    return 0;
}

/* Times bursts of BURST calls (each burst far below quinn's 1 MiB datagram send buffer and the
 * transport's 100-datagram queue), sleeping 2 ms between bursts so the peer drains. */
static int client_ffi(wtd_session *s, size_t size, int burst, int rounds) {
    uint8_t *p = calloc(1, size);
    wtd_datagram_view *views = calloc((size_t)burst, sizeof *views);
    for (int i = 0; i < burst; i++) views[i] = (wtd_datagram_view){p, size};
    double ns[3] = {0}, cpu_ns[3] = {0};
    unsigned long long ok[3] = {0}, blocked[3] = {0}, flushes[3] = {0};
    wtd_transport *t = NULL;
    /* An empty poll — what a game loop pays per session per frame when nothing arrived (the
     * server drains, so nothing ever does): [session_receive, session_receive_batch (16 slots),
     * transport_receive_batch (16 slots)], ns per call. */
    enum { POLLS = 1000000 };
    double poll_ns[3] = {0};
    uint8_t pbuf[64];
    wtd_datagram_buffer pslots[16];
    for (int i = 0; i < 16; i++) pslots[i] = (wtd_datagram_buffer){pbuf, sizeof pbuf, 0};
    size_t plen = 0;
    uint64_t p0 = now_ns();
    for (int i = 0; i < POLLS; i++) (void)wtd_session_receive(s, pbuf, sizeof pbuf, &plen, 0);
    uint64_t p1 = now_ns();
    for (int i = 0; i < POLLS; i++) (void)wtd_session_receive_batch(s, pslots, 16, &plen, 0);
    uint64_t p2 = now_ns();
    poll_ns[0] = (double)(p1 - p0) / POLLS, poll_ns[1] = (double)(p2 - p1) / POLLS;
    for (int mode = 0; mode < 3; mode++) {
        if (mode == 1) {
            CHECK(wtd_transport_new(s, NULL, &t));
            uint64_t q0 = now_ns();
            for (int i = 0; i < POLLS; i++) (void)wtd_transport_receive_batch(t, pslots, 16, &plen, 0);
            poll_ns[2] = (double)(now_ns() - q0) / POLLS;
        }
        wtd_session_stats before, after;
        before.struct_size = after.struct_size = sizeof before;
        wtd_session_get_stats(s, &before);
        uint64_t total = 0, total_cpu = 0;
        for (int r = 0; r < rounds; r++) {
            /* The thread-CPU clock is a system call (~0.8 µs here, more when cold): read it
             * outside the wall-clock window, which must time the sends alone. */
            uint64_t c0 = thread_cpu_ns(), t0 = now_ns();
            if (mode == 0) {
                for (int k = 0; k < burst; k++) {
                    if (wtd_session_send(s, p, size) == WTD_OK) ok[0]++; else blocked[0]++;
                }
            } else if (mode == 1) {
                for (int k = 0; k < burst; k++) {
                    if (wtd_transport_try_send(t, p, size, 0, 0) == WTD_OK) ok[1]++; else blocked[1]++;
                }
            } else {
                size_t acc = 0;
                wtd_transport_send_multiple(t, views, (size_t)burst, 0, 0, &acc);
                ok[2] += acc, blocked[2] += (size_t)burst - acc;
            }
            uint64_t t1 = now_ns();
            total += t1 - t0;
            total_cpu += thread_cpu_ns() - c0;
            idle_ms(2);
        }
        ns[mode] = (double)total / ((double)burst * rounds);
        cpu_ns[mode] = (double)total_cpu / ((double)burst * rounds);
        wtd_session_get_stats(s, &after);
        flushes[mode] = after.connection_send_flushes - before.connection_send_flushes;
    }
    wtd_datagram_stats st;
    st.struct_size = sizeof(st);
    wtd_transport_get_stats(t, &st);
    printf("{\"session_send_ns\":%.1f,\"transport_try_send_ns\":%.1f,\"send_multiple_ns_per_dgram\":%.1f,"
           "\"thread_cpu_ns\":[%.1f,%.1f,%.1f],"
           "\"ok\":[%llu,%llu,%llu],\"blocked\":[%llu,%llu,%llu],\"flushes\":[%llu,%llu,%llu],\"transport_send_drops\":%llu,"
           "\"empty_poll_ns\":[%.1f,%.1f,%.1f],\"burst\":%d,\"rounds\":%d}\n",
           ns[0], ns[1], ns[2], cpu_ns[0], cpu_ns[1], cpu_ns[2], ok[0], ok[1], ok[2], blocked[0], blocked[1], blocked[2],
           flushes[0], flushes[1], flushes[2], (unsigned long long)st.send_drops, poll_ns[0], poll_ns[1],
           poll_ns[2], burst, rounds);
    fflush(stdout);
    wtd_transport_free(t);
    free(p), free(views);
    return 0;
}

/* ---------------------------------------------------------------- broadcast */

static atomic_ullong bc_received;
static void bc_cb(void *u, wtd_session *s, const uint8_t *d, size_t len) {
    (void)u, (void)s, (void)d, (void)len;
    atomic_fetch_add(&bc_received, 1);
}

static int broadcast(int conns, int per_conn, int rounds) {
    wtd_server *srv = start_server(0);
    uint16_t port = 0;
    uint8_t hash[32];
    wtd_server_port(srv, &port);
    wtd_server_cert_hash(srv, hash);
    char url[128];
    snprintf(url, sizeof url, "https://127.0.0.1:%u/room", port);
    wtd_client_options o;
    o.struct_size = sizeof(o);
    wtd_client_options_default(&o);
    o.verify = WTD_VERIFY_CERT_HASHES, o.cert_hashes = hash, o.cert_hash_count = 1;
    int total = conns * per_conn;
    wtd_session **cl = calloc((size_t)total, sizeof *cl), **sv = calloc((size_t)total, sizeof *sv);
    wtd_transport **tr = calloc((size_t)total, sizeof *tr);
    wtd_session_callbacks cb = {sizeof cb, 0, bc_cb, NULL, NULL};
    uint64_t t_setup = now_ns();
    int k = 0;
    for (int c = 0; c < conns; c++) {
        CHECK(wtd_client_connect(url, &o, &cl[k]));
        wtd_session *first = cl[k++];
        for (int j = 1; j < per_conn; j++) CHECK(wtd_session_open_sibling(first, "/room", &cl[k++]));
    }
    for (int i = 0; i < total; i++) CHECK(wtd_session_set_callbacks(cl[i], &cb));
    wtd_broadcaster *bc = NULL;
    CHECK(wtd_broadcaster_new(&bc));
    for (int i = 0; i < total; i++) {
        CHECK(wtd_server_accept(srv, &sv[i], 10000));
        CHECK(wtd_transport_new(sv[i], NULL, &tr[i]));
        CHECK(wtd_broadcaster_add(bc, tr[i]));
    }
    size_t count = 0;
    wtd_broadcaster_count(bc, &count);
    double setup_s = (double)(now_ns() - t_setup) / 1e9;
    const uint8_t msg[] = "tick: world state 0123456789abcdef0123456789abcdef0123456789ab"; /* 64 B */
    double *us = calloc((size_t)rounds, sizeof *us);
    unsigned long long accepted = 0;
    for (int r = 0; r < rounds; r++) {
        wtd_broadcast_result br = {0};
        br.struct_size = sizeof br;
        uint64_t t0 = now_ns();
        wtd_result res = wtd_broadcaster_broadcast(bc, msg, 64, 0, 0, &br);
        size_t acc = br.accepted;
        us[r] = (double)(now_ns() - t0) / 1e3;
        if (res != WTD_OK) die("wtd_broadcaster_broadcast", res);
        accepted += acc;
        sleep_ms(20); /* let every queue drain before the next tick */
    }
    sleep_ms(500);
    qsort(us, (size_t)rounds, sizeof *us, cmp_double);
    double p50 = pct(us, (size_t)rounds, 0.5);
    printf("{\"sessions\":%zu,\"connections\":%d,\"rounds\":%d,\"p50_us\":%.1f,\"min_us\":%.1f,\"p90_us\":%.1f,"
           "\"per_session_ns\":%.1f,\"accepted\":%llu,\"delivered\":%llu,\"setup_s\":%.2f}\n",
           count, conns, rounds, p50, us[0], pct(us, (size_t)rounds, 0.9), p50 * 1e3 / (double)count, accepted,
           (unsigned long long)bc_received, setup_s);
    fflush(stdout);
    wtd_broadcaster_free(bc);
    for (int i = 0; i < total; i++) wtd_transport_free(tr[i]), wtd_session_free(sv[i]);
    for (int i = 0; i < total; i++) wtd_session_free(cl[i]);
    wtd_server_free(srv);
    wtd_shutdown();
    free(cl), free(sv), free(tr), free(us);
    return 0;
}

/* Sends each received datagram back on the session, counting sends and failures. */
static void echo_batch(wtd_session *s, const wtd_datagram_buffer *bufs, size_t got) {
    for (size_t i = 0; i < got; i++) {
        if (wtd_session_send(s, bufs[i].data, bufs[i].len) == WTD_OK) atomic_fetch_add(&srv_count, 1);
        else atomic_fetch_add(&srv_fail, 1);
    }
}

/* Echo on the poll path: the application thread takes batches and sends them back. */
static int server_echo_poll(void) {
    wtd_server *srv = start_signalled_server(0);
    wtd_datagram_buffer *bufs = recv_buffers();
    while (running) { /* one session at a time, until SIGTERM */
        wtd_session *s = NULL;
        if (wtd_server_accept(srv, &s, 100) != WTD_OK) continue;
        while (running) {
            size_t got = 0;
            wtd_result r = wtd_session_receive_batch(s, bufs, RECV_BATCH, &got, 100);
            if (r == WTD_ERR_TIMEOUT) continue;
            if (r != WTD_OK) break; /* closed */
            echo_batch(s, bufs, got);
        }
        wtd_session_free(s);
    }
    return finish_signalled_server(srv);
}

/* Echo on the engine-owned path: WTD_RUNTIME_POLL, so wtd has no threads; this one thread runs
 * wtd (wtd_poll, up to 10 ms when idle), then takes what arrived (receive_batch, timeout 0) and
 * sends it back — the sends leave during the next wtd_poll at the top of the loop. */
static int server_echo_loop(void) {
    CHECK(wtd_set_runtime_mode(WTD_RUNTIME_POLL));
    wtd_server *srv = start_signalled_server(0);
    wtd_datagram_buffer *bufs = recv_buffers();
    wtd_session *s = NULL; /* one session at a time, until SIGTERM */
    while (running) {
        CHECK(wtd_poll(NULL, 10));
        if (!s && wtd_server_accept(srv, &s, 0) != WTD_OK) continue;
        for (;;) {
            size_t got = 0;
            wtd_result r = wtd_session_receive_batch(s, bufs, RECV_BATCH, &got, 0);
            if (r == WTD_ERR_WOULD_BLOCK) break;
            if (r != WTD_OK) { /* closed */
                wtd_session_free(s);
                s = NULL;
                break;
            }
            echo_batch(s, bufs, got);
        }
    }
    wtd_session_free(s);
    return finish_signalled_server(srv);
}

/* Two-process fan-out: the server accepts SESSIONS sessions, then broadcasts 64 B at HZ for
 * SECS and measures its own CPU; the client (another process) opens them and counts arrivals. */
static int server_fanout(int sessions, int hz, double secs) {
    wtd_server *srv = start_server(0);
    wtd_broadcaster *bc = NULL;
    CHECK(wtd_broadcaster_new(&bc));
    wtd_session **sv = calloc((size_t)sessions, sizeof *sv);
    wtd_transport **tr = calloc((size_t)sessions, sizeof *tr);
    for (int i = 0; i < sessions; i++) {
        CHECK(wtd_server_accept(srv, &sv[i], 60000));
        CHECK(wtd_transport_new(sv[i], NULL, &tr[i]));
        CHECK(wtd_broadcaster_add(bc, tr[i]));
    }
    sleep_ms(200);
    const uint8_t msg[] = "tick: world state 0123456789abcdef0123456789abcdef0123456789ab"; /* 64 B */
    int rounds = (int)(secs * hz);
    double *us = calloc((size_t)rounds, sizeof *us);
    unsigned long long accepted = 0;
    uint64_t period = 1000000000ull / (uint64_t)hz, t_start = now_ns(), cpu0 = cpu_us();
    for (int r = 0; r < rounds; r++) {
        uint64_t due = t_start + (uint64_t)r * period;
        while (now_ns() < due) sleep_ms(1);
        wtd_broadcast_result br = {0};
        br.struct_size = sizeof br;
        uint64_t t0 = now_ns();
        wtd_result res = wtd_broadcaster_broadcast(bc, msg, 64, 0, 0, &br);
        size_t acc = br.accepted;
        us[r] = (double)(now_ns() - t0) / 1e3;
        if (res != WTD_OK) die("wtd_broadcaster_broadcast", res);
        accepted += acc;
    }
    while (now_ns() < t_start + (uint64_t)rounds * period) sleep_ms(1);
    double wall = (double)(now_ns() - t_start) / 1e9;
    double cpu_pct = (double)(cpu_us() - cpu0) / 1e4 / wall;
    qsort(us, (size_t)rounds, sizeof *us, cmp_double);
    printf("{\"sessions\":%d,\"hz\":%d,\"secs\":%.2f,\"rounds\":%d,\"cpu_pct\":%.1f,\"p50_us\":%.1f,\"p99_us\":%.1f,"
           "\"max_us\":%.1f,\"accepted\":%llu}\n",
           sessions, hz, wall, rounds, cpu_pct, pct(us, (size_t)rounds, 0.5), pct(us, (size_t)rounds, 0.99),
           us[rounds - 1], accepted);
    fflush(stdout);
    sleep_ms(1500); /* the client counts, then closes */
    wtd_broadcaster_free(bc);
    for (int i = 0; i < sessions; i++) wtd_transport_free(tr[i]), wtd_session_free(sv[i]);
    wtd_server_free(srv);
    wtd_shutdown();
    free(sv), free(tr), free(us);
    return 0;
}

static int client_fanin(const char *url, const char *hash_hex, int conns, int per_conn) {
    wtd_client_options o;
    o.struct_size = sizeof(o);
    wtd_client_options_default(&o);
    uint8_t hash[32];
    for (int i = 0; i < 32; i++) sscanf(hash_hex + 2 * i, "%2hhx", &hash[i]);
    o.verify = WTD_VERIFY_CERT_HASHES, o.cert_hashes = hash, o.cert_hash_count = 1;
    int total = conns * per_conn, k = 0;
    wtd_session **cl = calloc((size_t)total, sizeof *cl);
    wtd_session_callbacks cb = {sizeof cb, 0, bc_cb, NULL, NULL};
    for (int c = 0; c < conns; c++) {
        CHECK(wtd_client_connect(url, &o, &cl[k]));
        CHECK(wtd_session_set_callbacks(cl[k], &cb));
        wtd_session *first = cl[k++];
        for (int j = 1; j < per_conn; j++) {
            CHECK(wtd_session_open_sibling(first, "/room", &cl[k]));
            CHECK(wtd_session_set_callbacks(cl[k++], &cb));
        }
    }
    /* Count until 1 s without a datagram (after the first), at most 120 s. */
    unsigned long long last = 0;
    uint64_t quiet_since = now_ns(), t0 = now_ns();
    while (now_ns() - t0 < 120000000000ull) {
        sleep_ms(50);
        unsigned long long n = atomic_load(&bc_received);
        if (n != last) last = n, quiet_since = now_ns();
        else if (n > 0 && now_ns() - quiet_since > 1000000000ull) break;
    }
    printf("{\"sessions\":%d,\"received\":%llu}\n", total, (unsigned long long)atomic_load(&bc_received));
    fflush(stdout);
    for (int i = 0; i < total; i++) wtd_session_free(cl[i]);
    wtd_shutdown();
    free(cl);
    return 0;
}

int main(int argc, char **argv) {
    const char *th = getenv("WTD_BENCH_THREADS");
    if (th && *th) CHECK(wtd_set_runtime_threads((uint32_t)atoi(th)));
    const char *co = getenv("WTD_BENCH_COALESCE_US");
    if (co && *co) CHECK(wtd_set_send_coalescing((uint32_t)atoi(co)));
    const char *rt = getenv("WTD_BENCH_RUNTIME");
    poll_runtime = rt && !strcmp(rt, "poll");
    if (poll_runtime) CHECK(wtd_set_runtime_mode(WTD_RUNTIME_POLL));
    const char *bo = getenv("WTD_BENCH_BACKOFF");
    /* Default: give the CPU back on WTD_ERR_WOULD_BLOCK (what a game loop does, and what raw
     * quinn's awaiting sender does); "spin" retries at once. */
    yield_backoff = !(bo && !strcmp(bo, "spin"));
    if (argc >= 3 && !strcmp(argv[1], "server")) {
        if (!strcmp(argv[2], "count")) return server_count(argc > 3 && !strcmp(argv[3], "--transport"));
        if (!strcmp(argv[2], "echo")) return server_callback(echo_cb);
        if (!strcmp(argv[2], "echopoll")) return server_echo_poll();
        if (!strcmp(argv[2], "echoloop")) return server_echo_loop();
        if (!strcmp(argv[2], "drain")) return server_callback(drain_cb);
        if (!strcmp(argv[2], "fanout") && argc >= 6) return server_fanout(atoi(argv[3]), atoi(argv[4]), atof(argv[5]));
    } else if (argc >= 7 && !strcmp(argv[1], "client") && !strcmp(argv[2], "fanin")) {
        return client_fanin(argv[3], argv[4], atoi(argv[5]), atoi(argv[6]));
    } else if (argc >= 7 && !strcmp(argv[1], "client")) {
        const char *mode = argv[2];
        wtd_session *s = connect_to(argv[3], argv[4]);
        size_t size = (size_t)atol(argv[5]);
        int rc = 2;
        if (!strcmp(mode, "blast"))
            rc = client_blast(s, size, atof(argv[6]),
                              argc > 8 && !strcmp(argv[7], "--transport") ? atoi(argv[8]) : 0);
        else if (!strcmp(mode, "ping")) rc = client_ping(s, size, atol(argv[6]));
        else if (!strcmp(mode, "echorate") && argc > 7) rc = client_echorate(s, size, atof(argv[6]), strtoul(argv[7], 0, 10));
        else if (!strcmp(mode, "ffi") && argc > 7) rc = client_ffi(s, size, atoi(argv[6]), atoi(argv[7]));
        wtd_session_close(s, 0, "done");
        wtd_session_free(s);
        wtd_shutdown();
        return rc;
    } else if (argc >= 5 && !strcmp(argv[1], "broadcast")) {
        return broadcast(atoi(argv[2]), atoi(argv[3]), atoi(argv[4]));
    }
    fprintf(stderr, "usage: see the comment at the top of bench/c/wtd_bench.c\n");
    return 2;
}
