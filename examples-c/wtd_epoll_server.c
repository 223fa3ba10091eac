/*
 * wtd_epoll_server — an echo server that serves every session from ONE epoll loop on ONE
 * thread, next to whatever else the loop waits on (here: nothing but wtd and a timer). No
 * callbacks, no extra threads: wtd's readiness descriptors say when to accept or receive.
 *
 *   wtd_epoll_server [--port N] [--seconds S] [--self-test CLIENTS]
 *
 *   --port N           UDP port (default 4433; 0 picks a free one)
 *   --seconds S        stop after S seconds (default: run until Ctrl-C)
 *   --self-test C      also open C client sessions from this same loop, echo 10 datagrams each
 *                      through the server, and exit 0 when every client got all its echoes
 *
 * The pattern, for a game loop that already has an epoll set:
 *   1. wtd_server_readiness_fd() → add to epoll; when readable, wtd_server_accept(…, 0) until
 *      WTD_ERR_WOULD_BLOCK, and add each new session's wtd_session_readiness_fd().
 *   2. when a session's descriptor is readable, receive until WTD_ERR_WOULD_BLOCK (level-
 *      triggered: it stays readable while anything is queued) — or WTD_ERR_CLOSED: remove it
 *      from epoll and free it.
 * Linux only (epoll); the descriptors themselves work with poll()/select() everywhere.
 */
#define _GNU_SOURCE
#include <wtd.h>

#include "cli.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

enum { MAX_PEERS = 1024, ECHOES_PER_CLIENT = 10 };

/* What an epoll entry points at; linked so everything can be freed at exit. */
struct peer {
    wtd_session *session;
    int is_client;  /* self-test: a client session (counts echoes) */
    int echoes;     /* self-test: echoes this client got back */
    struct peer *prev, *next;
};
static struct peer *all_peers;

static volatile sig_atomic_t stop;
static void on_signal(int sig) { (void)sig; stop = 1; }

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int watch(int ep, wtd_session *s, int is_client, struct peer **out) {
    int32_t fd = -1;
    if (wtd_session_readiness_fd(s, &fd) != WTD_OK) return -1;
    struct peer *p = calloc(1, sizeof *p);
    if (!p) return -1;
    p->session = s;
    p->is_client = is_client;
    p->next = all_peers;
    if (all_peers) all_peers->prev = p;
    all_peers = p;
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = p};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) != 0) {
        free(p);
        return -1;
    }
    if (out) *out = p;
    return 0;
}

static void unwatch(int ep, struct peer *p) {
    int32_t fd = -1;
    if (wtd_session_readiness_fd(p->session, &fd) == WTD_OK) epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
    if (p->prev) p->prev->next = p->next;
    else all_peers = p->next;
    if (p->next) p->next->prev = p->prev;
    wtd_session_free(p->session);
    free(p);
}

int main(int argc, char **argv) {
    long port = 4433, seconds = 0, clients = 0;
    for (int i = 1; i < argc; i++) {
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(argv[i], "--port") && v) port = cli_port("--port", v), i++;
        else if (!strcmp(argv[i], "--seconds") && v) seconds = (long)cli_int("--seconds", v, 1, 86400), i++;
        else if (!strcmp(argv[i], "--self-test") && v) clients = (long)cli_int("--self-test", v, 1, 256), i++;
        else {
            fprintf(stderr, "usage: wtd_epoll_server [--port N] [--seconds S] [--self-test CLIENTS]\n");
            return 2;
        }
    }
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);

    wtd_server_options so;
    so.struct_size = sizeof(so);
    wtd_server_options_default(&so);
    so.port = (uint16_t)port;
    so.host = "127.0.0.1";
    wtd_server *server = NULL;
    if (wtd_server_new(&so, &server) != WTD_OK) {
        fprintf(stderr, "server: %s\n", wtd_last_error_message());
        return 1;
    }
    uint16_t bound = 0;
    uint8_t hash[32];
    char hex[65];
    wtd_server_port(server, &bound);
    wtd_server_cert_hash(server, hash);
    wtd_server_cert_hash_hex(server, hex, sizeof hex);
    printf("READY %u %s\n", bound, hex);
    fflush(stdout);

    int ep = epoll_create1(EPOLL_CLOEXEC);
    int32_t server_fd = -1;
    if (ep < 0 || wtd_server_readiness_fd(server, &server_fd) != WTD_OK) {
        fprintf(stderr, "epoll/readiness: %s\n", ep < 0 ? strerror(errno) : wtd_last_error_message());
        return 1;
    }
    struct epoll_event sev = {.events = EPOLLIN, .data.ptr = NULL}; /* NULL = the server */
    epoll_ctl(ep, EPOLL_CTL_ADD, server_fd, &sev);

    /* Self-test clients: connect from this thread (the server side accepts on wtd's threads
     * meanwhile), then watch them in the same epoll set. */
    struct peer *client_peers[256] = {0};
    for (long c = 0; c < clients; c++) {
        wtd_client_options co;
        char url[64];
        co.struct_size = sizeof(co);
        wtd_client_options_default(&co);
        co.verify = WTD_VERIFY_CERT_HASHES, co.cert_hashes = hash, co.cert_hash_count = 1;
        snprintf(url, sizeof url, "https://127.0.0.1:%u/epoll", bound);
        wtd_session *s = NULL;
        if (wtd_client_connect(url, &co, &s) != WTD_OK || watch(ep, s, 1, &client_peers[c]) != 0) {
            fprintf(stderr, "client %ld: %s\n", c, wtd_last_error_message());
            return 1;
        }
        for (int k = 0; k < ECHOES_PER_CLIENT; k++) {
            char msg[32];
            int n = snprintf(msg, sizeof msg, "client %ld ping %d", c, k);
            wtd_session_send(s, (const uint8_t *)msg, (size_t)n);
        }
    }

    unsigned long long sessions = 0, echoed = 0, closed = 0;
    int peers = 0, done = 0;
    double t_end = seconds ? now_s() + (double)seconds : 0, t_fail = now_s() + 20;
    uint8_t buf[2048];
    while (!stop && !done) {
        if (t_end && now_s() >= t_end) break;
        if (clients && now_s() >= t_fail) {
            fprintf(stderr, "self-test: not every client got its echoes within 20 s\n");
            break;
        }
        struct epoll_event evs[64];
        int n = epoll_wait(ep, evs, 64, 100);
        for (int i = 0; i < n; i++) {
            struct peer *p = evs[i].data.ptr;
            if (!p) { /* the server: accept everything that waits */
                wtd_session *s;
                while (peers < MAX_PEERS && wtd_server_accept(server, &s, 0) == WTD_OK) {
                    if (watch(ep, s, 0, NULL) != 0) { wtd_session_free(s); continue; }
                    sessions++, peers++;
                }
                continue;
            }
            for (;;) { /* level-triggered: drain it */
                size_t len = 0;
                wtd_result r = wtd_session_receive(p->session, buf, sizeof buf, &len, 0);
                if (r == WTD_OK) {
                    if (p->is_client) p->echoes++;
                    else if (wtd_session_send(p->session, buf, len) == WTD_OK) echoed++;
                    continue;
                }
                if (r == WTD_ERR_CLOSED) {
                    if (!p->is_client) closed++, peers--;
                    for (long c = 0; c < clients; c++)
                        if (client_peers[c] == p) client_peers[c] = NULL;
                    unwatch(ep, p);
                }
                break; /* WOULD_BLOCK: nothing more queued */
            }
        }
        if (clients) {
            done = 1;
            for (long c = 0; c < clients; c++)
                if (!client_peers[c] || client_peers[c]->echoes < ECHOES_PER_CLIENT) done = 0;
        }
    }
    printf("served %llu sessions, echoed %llu datagrams, %llu closed by their peer\n", sessions, echoed,
           closed);
    while (all_peers) unwatch(ep, all_peers);
    wtd_server_free(server); /* closes the sessions still open; their handles are ours to free */
    wtd_shutdown();
    close(ep);
    if (clients) {
        printf("self-test: %s\n", done ? "every client got its echoes" : "FAILED");
        return done ? 0 : 1;
    }
    return 0;
}
