/*
 * wtd_structured_echo — a structured-datagram echo server (wtd_structured_*).
 *
 *   wtd_structured_echo [--host H] [--port P] [--cert FILE --key FILE]
 *
 * Like wtd_echo_server, but every session gets a datagram transport and a structured transport
 * (`u16 big-endian type id || body`, pywebtransport's StructuredDatagramTransport format) with
 * type ids 1 and 2 registered and a pass-through serializer (the "object" is the body bytes), and
 * each received object is sent back with the same type id. Datagrams with an unknown type id (or
 * shorter than 2 bytes) are counted, not echoed.
 *
 * Prints "READY <port> <sha256-of-cert>", "SESSION_OPEN id=<n> path=<p> draft=<d>",
 * "SESSION_CLOSED id=<n> code=<c> reason=<r>" (flushed), and on SIGINT/SIGTERM
 * "STATS sessions=<n> echoed=<n> unknown=<n> failed=<n>".
 * One thread per session receives (blocking with a timeout) and echoes.
 */
#include "cli.h"
#include <wtd.h>

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_SESSIONS 256

/* The pass-through "object": the body bytes. */
typedef struct blob {
    size_t len;
    uint8_t data[];
} blob;

static int blob_serialize(void *user_data, uint16_t type_id, const void *obj, uint8_t *buf,
                          size_t cap, size_t *out_len) {
    const blob *b = obj;
    (void)user_data;
    (void)type_id;
    if (b == NULL || b->len > cap) return -1;
    memcpy(buf, b->data, b->len);
    *out_len = b->len;
    return 0;
}

static int blob_deserialize(void *user_data, uint16_t type_id, const uint8_t *data, size_t len,
                            void **out_obj) {
    (void)user_data;
    (void)type_id;
    blob *b = malloc(sizeof *b + len + 1);
    if (b == NULL) return -1;
    b->len = len;
    if (len) memcpy(b->data, data, len);
    *out_obj = b;
    return 0;
}

typedef struct slot {
    wtd_session *session;
    wtd_transport *transport;
    wtd_structured *structured;
    pthread_t thread;
    int started;
} slot;

static volatile sig_atomic_t running = 1;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static slot slots[MAX_SESSIONS];
static size_t slot_count;
static unsigned long long echoed, unknown, failed;

static void on_signal(int sig) {
    (void)sig;
    running = 0;
}

static void count(unsigned long long *c) {
    pthread_mutex_lock(&lock);
    (*c)++;
    pthread_mutex_unlock(&lock);
}

/* Receives objects and echoes them until the session (hence the transport) closes. */
static void *session_loop(void *arg) {
    slot *s = arg;
    uint64_t id = 0;
    wtd_session_id(s->session, &id);
    while (running) {
        uint16_t type = 0;
        void *obj = NULL;
        wtd_result r = wtd_structured_receive_obj(s->structured, &type, &obj, 200);
        if (r == WTD_OK) {
            if (wtd_structured_send_obj(s->structured, type, obj, 0, 0) == WTD_OK) count(&echoed);
            else count(&failed);
            free(obj);
        } else if (r == WTD_ERR_SERIALIZATION) {
            count(&unknown);
            fprintf(stderr, "session %llu: %s\n", (unsigned long long)id, wtd_last_error_message());
        } else if (r == WTD_ERR_CLOSED) {
            break;
        } else if (r != WTD_ERR_TIMEOUT) {
            fprintf(stderr, "session %llu: receive: %s\n", (unsigned long long)id,
                    wtd_last_error_message());
            break;
        }
    }
    if (wtd_session_wait_closed(s->session, running ? 5000 : 0) == WTD_OK) {
        uint32_t code = 0;
        char reason[1100] = "";
        wtd_session_close_info(s->session, &code, reason, sizeof reason, NULL);
        printf("SESSION_CLOSED id=%llu code=%u reason=%s\n", (unsigned long long)id, code, reason);
        fflush(stdout);
    }
    return NULL;
}

/* Server callback (wtd thread): only records the session; main() sets it up. */
static void on_session(void *user, wtd_session *s) {
    (void)user;
    pthread_mutex_lock(&lock);
    if (slot_count < MAX_SESSIONS) slots[slot_count++].session = s;
    else wtd_session_free(s);
    pthread_mutex_unlock(&lock);
}

static void setup_slot(slot *s) {
    uint64_t id = 0;
    wtd_draft draft = WTD_DRAFT_UNKNOWN;
    char path[512] = "";
    wtd_structured_options so;
    wtd_session_id(s->session, &id);
    wtd_session_draft(s->session, &draft);
    wtd_session_path(s->session, path, sizeof path, NULL);
    printf("SESSION_OPEN id=%llu path=%s draft=%s\n", (unsigned long long)id, path,
           wtd_draft_str(draft));
    fflush(stdout);
    so.struct_size = sizeof(so);
    wtd_structured_options_default(&so);
    so.serialize = blob_serialize;
    so.deserialize = blob_deserialize;
    if (wtd_transport_new(s->session, NULL, &s->transport) != WTD_OK ||
        wtd_structured_new(s->transport, &so, &s->structured) != WTD_OK ||
        wtd_structured_register(s->structured, 1) != WTD_OK ||
        wtd_structured_register(s->structured, 2) != WTD_OK) {
        fprintf(stderr, "session %llu: setup failed: %s\n", (unsigned long long)id,
                wtd_last_error_message());
        return;
    }
    if (pthread_create(&s->thread, NULL, session_loop, s) == 0) s->started = 1;
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
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    printf("READY %u %s\n", port, hash);
    fflush(stdout);
    size_t set_up = 0;
    struct timespec tick = {0, 5 * 1000 * 1000};
    while (running) {
        pthread_mutex_lock(&lock);
        size_t n = slot_count;
        pthread_mutex_unlock(&lock);
        for (; set_up < n; set_up++) setup_slot(&slots[set_up]);
        nanosleep(&tick, NULL);
    }

    wtd_server_close(server);
    for (size_t i = 0; i < set_up; i++) {
        if (slots[i].structured) wtd_structured_close(slots[i].structured);
        if (slots[i].started) pthread_join(slots[i].thread, NULL);
        wtd_structured_free(slots[i].structured);
        wtd_transport_free(slots[i].transport);
    }
    pthread_mutex_lock(&lock);
    for (size_t i = 0; i < slot_count; i++) wtd_session_free(slots[i].session);
    printf("STATS sessions=%zu echoed=%llu unknown=%llu failed=%llu\n", slot_count, echoed,
           unknown, failed);
    fflush(stdout);
    pthread_mutex_unlock(&lock);
    wtd_server_free(server);
    wtd_shutdown();
    return 0;
}
