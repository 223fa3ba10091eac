/*
 * wtd_quickstart — the README's minimal example, compiled by CMake so it stays correct.
 *
 * One process: a server whose game loop polls (accept + receive with timeout 0, echo back), and
 * a client on another thread that connects with the server's certificate hash pinned, sends three
 * datagrams and waits for each echo. Exits 0 when every echo came back.
 */
#include <wtd.h>

#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

/* ---- server: a game loop on the poll path --------------------------------------------------- */

#define MAX_SESSIONS 64

static void server_tick(wtd_server *server, wtd_session **sessions, size_t *count) {
    wtd_session *s;
    while (*count < MAX_SESSIONS && wtd_server_accept(server, &s, 0) == WTD_OK)
        sessions[(*count)++] = s;                       /* new session: keep its handle */

    for (size_t i = 0; i < *count; i++) {
        static uint8_t buf[65536];
        size_t len;
        while (wtd_session_receive(sessions[i], buf, sizeof buf, &len, 0) == WTD_OK)
            wtd_session_send(sessions[i], buf, len);     /* echo; never blocks */
        bool closed = true;
        wtd_session_is_closed(sessions[i], &closed);
        if (closed) {                                     /* closed by the peer: drop it */
            wtd_session_free(sessions[i]);
            sessions[i--] = sessions[--*count];
        }
    }
}

/* ---- client: connect, send, receive ---------------------------------------------------------- */

static int run_client(const char *url, const uint8_t cert_hash[32]) {
    wtd_client_options opt;
    opt.struct_size = sizeof(opt);
    wtd_client_options_default(&opt);
    opt.verify = WTD_VERIFY_CERT_HASHES;                 /* like serverCertificateHashes */
    opt.cert_hashes = cert_hash;
    opt.cert_hash_count = 1;

    wtd_session *s;
    if (wtd_client_connect(url, &opt, &s) != WTD_OK) {
        fprintf(stderr, "connect failed: %s\n", wtd_last_error_message());
        return 0;
    }
    int echoed = 0;
    for (int i = 0; i < 3; i++) {
        char msg[32], buf[2048];
        size_t len;
        snprintf(msg, sizeof msg, "hello %d", i);
        wtd_session_send(s, (const uint8_t *)msg, strlen(msg));
        if (wtd_session_receive(s, (uint8_t *)buf, sizeof buf, &len, 1000) == WTD_OK) {
            printf("client got echo: %.*s\n", (int)len, buf);
            echoed++;
        } else {
            printf("client: no echo: %s\n", wtd_last_error_message());
        }
    }
    wtd_session_close(s, 0, "bye");
    wtd_session_free(s);
    return echoed;
}

/* ---- glue: both in one process ---------------------------------------------------------------- */

struct client_args {
    char url[64];
    uint8_t hash[32];
    int echoed, done;
};

static void *client_thread(void *p) {
    struct client_args *a = p;
    a->echoed = run_client(a->url, a->hash);
    __atomic_store_n(&a->done, 1, __ATOMIC_RELEASE);
    return NULL;
}

int main(void) {
    wtd_server_options so;
    so.struct_size = sizeof(so);
    wtd_server_options_default(&so);
    so.host = "127.0.0.1";
    so.port = 0;                                          /* any free port */
    wtd_server *server;
    if (wtd_server_new(&so, &server) != WTD_OK) {
        fprintf(stderr, "server: %s\n", wtd_last_error_message());
        return 1;
    }
    uint16_t port;
    struct client_args args = {0};
    wtd_server_port(server, &port);
    wtd_server_cert_hash(server, args.hash);
    snprintf(args.url, sizeof args.url, "https://127.0.0.1:%u/quickstart", port);
    printf("server listening on port %u\n", port);

    pthread_t t;
    pthread_create(&t, NULL, client_thread, &args);
    wtd_session *sessions[MAX_SESSIONS];
    size_t count = 0;
    struct timespec tick = {0, 1000 * 1000};             /* 1 ms "frame" */
    while (!__atomic_load_n(&args.done, __ATOMIC_ACQUIRE)) {
        server_tick(server, sessions, &count);
        nanosleep(&tick, NULL);
    }
    pthread_join(t, NULL);

    for (size_t i = 0; i < count; i++) wtd_session_free(sessions[i]);
    wtd_server_free(server);
    wtd_shutdown();
    printf("%d of 3 echoes received\n", args.echoed);
    return args.echoed == 3 ? 0 : 1;
}
