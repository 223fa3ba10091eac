/*
 * wtd_game_loop — the shape of a game server on wtd: one thread, a fixed 60 Hz tick, no
 * callbacks. Each tick it
 *   1. accepts new sessions (poll) and gives each a datagram transport,
 *   2. drains every session's incoming datagrams with ONE wtd_transport_receive_batch call
 *      (timeout 0: never waits),
 *   3. sends each session a small state update (priority 0, 50 ms TTL: stale state is dropped
 *      instead of queued), and every 60th tick an "important" one (priority 10: leaves first,
 *      and is never evicted for a lower-priority update),
 * and once per second prints per-session stats.
 *
 * With --poll the loop also owns the network (engine-owned mode, WTD_RUNTIME_POLL): wtd starts no
 * threads, and everything — socket reads and writes, timers, callbacks — happens inside the
 * wtd_poll calls of this thread: one at the top of each tick, then the rest of the tick is waited
 * out inside wtd_poll, which puts the tick's sends on the wire and handles arrivals and ACKs while
 * the game sleeps.
 *
 *   wtd_game_loop [--port P] [--seconds S] [--poll]
 *
 * Prints "READY <port> <sha256-of-cert>" once listening (like wtd_echo_server; port 0 picks a
 * free port; connect with that hash in serverCertificateHashes). Runs until SIGINT/SIGTERM, or
 * for S seconds.
 */
#include "cli.h"
#include <wtd.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define TICK_HZ 60
#define MAX_PLAYERS 256
#define BATCH 64          /* datagrams taken per session per tick at most */
#define SLOT_SIZE 1500    /* one buffer per datagram; larger ones are handled below */

typedef struct {
    wtd_session *session;
    wtd_transport *transport;
    uint64_t id;
    unsigned long long inputs; /* datagrams this session sent us */
} player;

static volatile sig_atomic_t running = 1;
static void on_signal(int sig) { (void)sig; running = 0; }

static player players[MAX_PLAYERS];
static size_t player_count;
static uint8_t slots[BATCH][SLOT_SIZE];

static void join(wtd_session *s) {
    wtd_transport_options opt;
    opt.struct_size = sizeof(opt);
    wtd_transport_options_default(&opt);
    opt.outgoing_high_water_mark = 32; /* a short queue: old state is worthless */
    opt.drop_policy = WTD_DROP_OLDEST; /* full → evict the oldest lowest-priority update */
    wtd_transport *t = NULL;
    if (player_count == MAX_PLAYERS || wtd_transport_new(s, &opt, &t) != WTD_OK) {
        wtd_session_free(s); /* full or failed: close it */
        return;
    }
    player *p = &players[player_count++];
    p->session = s, p->transport = t, p->inputs = 0;
    wtd_session_id(s, &p->id);
    printf("JOIN session=%llu players=%zu\n", (unsigned long long)p->id, player_count);
}

static void leave(size_t i) {
    printf("LEAVE session=%llu inputs=%llu\n", (unsigned long long)players[i].id, players[i].inputs);
    wtd_transport_free(players[i].transport);
    wtd_session_free(players[i].session);
    players[i] = players[--player_count];
}

/* Step 2: everything that arrived since the last tick, in one call. Returns 0 when the session
 * is gone. */
static int drain_inputs(player *p) {
    wtd_datagram_buffer bufs[BATCH];
    for (int i = 0; i < BATCH; i++) bufs[i] = (wtd_datagram_buffer){slots[i], SLOT_SIZE, 0};
    size_t n = 0;
    wtd_result r = wtd_transport_receive_batch(p->transport, bufs, BATCH, &n, 0);
    if (r == WTD_OK) {
        /* Game logic goes here: apply bufs[i].data[0 .. bufs[i].len) as player input. */
        p->inputs += n;
    } else if (r == WTD_ERR_BUFFER_TOO_SMALL) {
        /* Bigger than a slot: it stays queued until read, so read it into a big enough buffer. */
        size_t len = bufs[0].len;
        uint8_t *big = malloc(len);
        if (big && wtd_transport_try_receive(p->transport, big, len, &len) == WTD_OK) p->inputs++;
        free(big);
    } else if (r == WTD_ERR_CLOSED) {
        return 0; /* the client left (or the connection died) and nothing is left to read */
    }
    /* WTD_ERR_WOULD_BLOCK: nothing arrived this tick. */
    return 1;
}

/* Step 3: fire and forget. try_send never blocks; a full queue evicts (and counts) the oldest. */
static void send_state(player *p, unsigned long tick) {
    char msg[96];
    int len = snprintf(msg, sizeof msg, "state tick=%lu players=%zu", tick, player_count);
    wtd_transport_try_send(p->transport, (const uint8_t *)msg, (size_t)len, 0, 50);
    if (tick % TICK_HZ == 0) {
        len = snprintf(msg, sizeof msg, "important tick=%lu", tick);
        wtd_transport_try_send(p->transport, (const uint8_t *)msg, (size_t)len, 10, 0);
    }
}

/* Milliseconds from now until `t` (negative when past). */
static long ms_until(const struct timespec *t) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (long)(t->tv_sec - now.tv_sec) * 1000 + (t->tv_nsec - now.tv_nsec) / 1000000;
}

static void print_stats(unsigned long tick) {
    for (size_t i = 0; i < player_count; i++) {
        wtd_datagram_stats s;
        size_t queued = 0;
        s.struct_size = sizeof(s);
        if (wtd_transport_get_stats(players[i].transport, &s) != WTD_OK) continue;
        wtd_transport_get_send_buffer_size(players[i].transport, &queued);
        printf("STATS t=%lus session=%llu sent=%llu received=%llu drops=%llu "
               "(evicted=%llu expired=%llu) queue=%zu\n",
               tick / TICK_HZ, (unsigned long long)players[i].id,
               (unsigned long long)s.datagrams_sent, (unsigned long long)s.datagrams_received,
               (unsigned long long)(s.send_drops + s.receive_drops + s.rejected_full),
               (unsigned long long)s.dropped_full, (unsigned long long)s.dropped_expired, queued);
    }
    fflush(stdout);
}

int main(int argc, char **argv) {
    wtd_server_options opt;
    opt.struct_size = sizeof(opt);
    wtd_server_options_default(&opt);
    opt.port = 4433;
    double seconds = 0; /* 0 = until SIGINT */
    int poll_mode = 0;
    for (int i = 1; i < argc; i++) {
        const char *next = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(argv[i], "--port") && next) opt.port = cli_port("--port", argv[++i]);
        else if (!strcmp(argv[i], "--seconds") && next) seconds = cli_double("--seconds", argv[++i], 0, 31536000, 0);
        else if (!strcmp(argv[i], "--poll")) poll_mode = 1;
        else {
            fprintf(stderr, "usage: %s [--port P] [--seconds S] [--poll]\n", argv[0]);
            return 2;
        }
    }
    /* Engine-owned: chosen before the first call that starts wtd (here wtd_server_new). */
    if (poll_mode && wtd_set_runtime_mode(WTD_RUNTIME_POLL) != WTD_OK) {
        fprintf(stderr, "cannot select poll mode: %s\n", wtd_last_error_message());
        return 1;
    }
    /* opt.on_session stays NULL: new sessions wait for wtd_server_accept (the poll path). */
    wtd_server *server = NULL;
    if (wtd_server_new(&opt, &server) != WTD_OK) {
        fprintf(stderr, "cannot start server: %s\n", wtd_last_error_message());
        return 1;
    }
    uint16_t port = 0;
    char hash[65];
    wtd_server_port(server, &port);
    wtd_server_cert_hash_hex(server, hash, sizeof hash);
    printf("READY %u %s\n", port, hash);
    fflush(stdout);
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);

    struct timespec next;
    clock_gettime(CLOCK_MONOTONIC, &next);
    const long tick_ns = 1000000000L / TICK_HZ;
    unsigned long max_ticks = seconds > 0 ? (unsigned long)(seconds * TICK_HZ) : 0;
    for (unsigned long tick = 1; running && (!max_ticks || tick <= max_ticks); tick++) {
        wtd_session *s = NULL;
        if (poll_mode) wtd_poll(NULL, 0); /* 0. engine-owned: read what arrived, run callbacks */
        while (wtd_server_accept(server, &s, 0) == WTD_OK) join(s); /* 1. new players */
        for (size_t i = 0; i < player_count;) {                     /* 2. inputs */
            if (drain_inputs(&players[i])) i++;
            else leave(i); /* swaps the last player into slot i */
        }
        for (size_t i = 0; i < player_count; i++) send_state(&players[i], tick); /* 3. state */
        if (tick % TICK_HZ == 0) print_stats(tick);

        next.tv_nsec += tick_ns; /* sleep until the next tick boundary (no drift) */
        if (next.tv_nsec >= 1000000000L) next.tv_sec++, next.tv_nsec -= 1000000000L;
        /* 4. engine-owned: wait inside wtd_poll, which sends this tick's updates first and handles
         * arrivals and ACKs while the game waits (it returns early when something arrives). */
        for (long ms; poll_mode && running && (ms = ms_until(&next)) > 0;) wtd_poll(NULL, (int32_t)ms);
        clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &next, NULL);
    }

    print_stats(max_ticks ? max_ticks : 0);
    while (player_count) leave(player_count - 1);
    wtd_server_close(server);
    wtd_server_free(server);
    wtd_shutdown();
    return 0;
}
