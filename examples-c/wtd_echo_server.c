/*
 * wtd_echo_server — echoes every datagram back on every WebTransport session, any path.
 *
 *   wtd_echo_server [--host H] [--port P] [--cert FILE --key FILE]
 *
 * Prints "READY <port> <sha256-of-cert>" once listening (port 0 picks a free port; without
 * --cert/--key a 13-day self-signed certificate is generated, which browsers accept through
 * serverCertificateHashes), one line per session event, and its totals on SIGINT/SIGTERM.
 * Uses the callback path: datagrams are echoed from inside the datagram callback.
 */
#include "cli.h"
#include <wtd.h>

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_SESSIONS 4096

static volatile sig_atomic_t running = 1;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static wtd_session *sessions[MAX_SESSIONS];
static size_t session_count;
static unsigned long long echoed, echo_failed;

static void on_signal(int sig) { (void)sig; running = 0; }

static void on_datagram(void *user, wtd_session *s, const uint8_t *data, size_t len) {
    (void)user;
    wtd_result r = wtd_session_send(s, data, len);
    pthread_mutex_lock(&lock);
    if (r == WTD_OK) echoed++; else echo_failed++;
    pthread_mutex_unlock(&lock);
}

static void on_closed(void *user, wtd_session *s, uint32_t code, const char *reason) {
    (void)user;
    uint64_t id = 0;
    wtd_session_id(s, &id);
    printf("SESSION_CLOSED id=%llu code=%u reason=%s\n", (unsigned long long)id, code, reason);
    fflush(stdout);
}

static void on_session(void *user, wtd_session *s) {
    (void)user;
    uint64_t id = 0;
    wtd_draft draft = WTD_DRAFT_UNKNOWN;
    char path[512] = "";
    wtd_session_id(s, &id);
    wtd_session_draft(s, &draft);
    wtd_session_path(s, path, sizeof path, NULL);
    printf("SESSION_OPEN id=%llu path=%s draft=%s\n", (unsigned long long)id, path, wtd_draft_str(draft));
    fflush(stdout);
    wtd_session_callbacks cb = {sizeof cb, 0, on_datagram, on_closed, NULL};
    wtd_session_set_callbacks(s, &cb);
    pthread_mutex_lock(&lock);
    if (session_count < MAX_SESSIONS) sessions[session_count++] = s;
    else wtd_session_free(s); /* full: refuse by closing */
    pthread_mutex_unlock(&lock);
}

int main(int argc, char **argv) {
    wtd_server_options opt;
    opt.struct_size = sizeof(opt);
    wtd_server_options_default(&opt);
    opt.port = 4433;
    for (int i = 1; i < argc; i++) {
        const char *next = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(argv[i], "--host") && next) opt.host = argv[++i];
        else if (!strcmp(argv[i], "--port") && next) opt.port = cli_port("--port", argv[++i]);
        else if (!strcmp(argv[i], "--cert") && next) opt.cert_file = argv[++i];
        else if (!strcmp(argv[i], "--key") && next) opt.key_file = argv[++i];
        else {
            fprintf(stderr, "usage: %s [--host H] [--port P] [--cert FILE --key FILE]\n", argv[0]);
            return 2;
        }
    }
    opt.on_session = on_session;

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
    struct timespec tick = {0, 20 * 1000 * 1000};
    while (running) nanosleep(&tick, NULL);

    wtd_server_close(server);
    pthread_mutex_lock(&lock);
    for (size_t i = 0; i < session_count; i++) wtd_session_free(sessions[i]);
    printf("STATS sessions=%zu echoed=%llu echo_failed=%llu\n", session_count, echoed, echo_failed);
    pthread_mutex_unlock(&lock);
    wtd_server_free(server);
    wtd_shutdown();
    return 0;
}
