/*
 * wtd_browser_demo — a WebTransport server for browsers that also serves its own web page.
 *
 *   wtd_browser_demo [--host H] [--port P] [--http-port P] [--page FILE] [--seconds S]
 *
 * Open the printed http://127.0.0.1:<http-port>/ in Chromium (or any browser with WebTransport
 * and serverCertificateHashes). The page arrives with the WebTransport URL and this run's
 * certificate SHA-256 filled in, connects, and shows live round-trip time, datagrams/s and loss
 * as a chart; what you type in one tab the server broadcasts to every open tab.
 *
 * <player> is a number the server gives each session (1, 2, ...). Datagram protocol (UTF-8 text, one message per datagram):
 *   page -> server  "H"                  hello          -> "w <player> <players>" to that tab
 *   page -> server  "P <seq> <time>"     ping           -> "p <seq> <time>" (same bytes, echoed)
 *   page -> server  "M <msg-id> <text>"  chat message   -> "m <player> <msg-id> <text>" to all
 *   server -> page  "t <tick> <players>" 20 Hz server tick (priority 0, 100 ms TTL)
 * Anything else is dropped and counted (STATS ... dropped_unknown=, dropped_bad_message=).
 *
 * Prints "PAGE <url>" and then "READY <udp-port> <sha256-of-cert>" once both listeners are up
 * (ports 0 pick free ones), "JOIN"/"LEAVE"/"MSG" lines as things happen and a "STATS" line every
 * 5 s and at exit. Runs until SIGINT/SIGTERM (or for S seconds). Uses only include/wtd.h: the poll
 * path for new sessions, a datagram transport per session with its receive callback (pings are
 * answered from the callback, so the RTT shown is not rounded to a tick), and one broadcaster for
 * chat messages and ticks. The HTTP side is a tiny blocking HTTP/1.0 responder on its own thread.
 */
#define _GNU_SOURCE /* readlink, clock_nanosleep, MSG_NOSIGNAL under -std=c11 too */
#include <wtd.h>
#include "cli.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_PLAYERS 64
#define TICK_HZ 20
#define MAX_TEXT 600           /* bytes of chat text accepted in one message */
#define MAX_REQUEST 8192       /* bytes of HTTP request head read at most */

#ifndef WTD_BROWSER_DEMO_PAGE  /* set by CMakeLists.txt to the page in the source tree */
#define WTD_BROWSER_DEMO_PAGE "examples-c/browser_demo/index.html"
#endif

typedef struct {
    wtd_session *session;
    wtd_transport *transport;
    uint64_t id;             /* session id: the CONNECT stream id, 0 for the first session of
                              * every connection, so not unique across browser tabs */
    unsigned long long num;  /* player number, unique in this run: what pages see */
} player;

static volatile sig_atomic_t running = 1;
static void on_signal(int sig) { (void)sig; running = 0; }

static wtd_broadcaster *everyone;     /* every player's transport: chat and ticks */
static atomic_size_t player_count;    /* shown to pages in "w" and "t" */

/* Counters (updated from wtd callback threads and the main thread). */
static atomic_ullong pings, send_failed, messages, hellos, dropped_unknown, dropped_bad_message;
static atomic_ullong http_requests, http_errors;

/* ---------------------------------------------------------------- datagrams (callback thread) */

static void send_text(wtd_transport *t, const char *s, size_t len, int32_t priority) {
    if (wtd_transport_try_send(t, (const uint8_t *)s, len, priority, 0) != WTD_OK)
        atomic_fetch_add(&send_failed, 1);
}

/* Copies `len` bytes of `text` into `out` (cap ≥ 1) with control characters replaced, for logs. */
static void printable(char *out, size_t cap, const uint8_t *text, size_t len) {
    size_t n = len < cap - 1 ? len : cap - 1;
    for (size_t i = 0; i < n; i++) out[i] = text[i] < 0x20 || text[i] == 0x7f ? '?' : (char)text[i];
    out[n] = 0;
}

static void on_received(void *user, wtd_transport *t, const uint8_t *data, size_t len) {
    player *p = user;
    char reply[64 + MAX_TEXT];
    if (len >= 1 && data[0] == 'P' && len < 64) { /* ping: echo it as "p ..." */
        memcpy(reply, data, len);
        reply[0] = 'p';
        send_text(t, reply, len, 5);
        atomic_fetch_add(&pings, 1);
    } else if (len == 1 && data[0] == 'H') {      /* hello: tell the page who it is */
        int n = snprintf(reply, sizeof reply, "w %llu %zu", p->num,
                         atomic_load(&player_count));
        send_text(t, reply, (size_t)n, 10);
        atomic_fetch_add(&hellos, 1);
    } else if (len >= 4 && data[0] == 'M' && data[1] == ' ') { /* "M <msg-id> <text>" */
        size_t i = 2;
        unsigned long long msg_id = 0;
        while (i < len && data[i] >= '0' && data[i] <= '9' && i < 12) msg_id = msg_id * 10 + (data[i++] - '0');
        if (i == 2 || i + 1 >= len || data[i] != ' ' || len - i - 1 > MAX_TEXT) {
            atomic_fetch_add(&dropped_bad_message, 1);
            return;
        }
        const uint8_t *text = data + i + 1;
        size_t text_len = len - i - 1;
        int n = snprintf(reply, sizeof reply, "m %llu %llu ", p->num, msg_id);
        memcpy(reply + n, text, text_len);
        wtd_broadcast_result res = {0};
        res.struct_size = sizeof res;
        wtd_result r = wtd_broadcaster_broadcast(everyone, (const uint8_t *)reply, (size_t)n + text_len,
                                                 10, 0, &res);
        char shown[81];
        printable(shown, sizeof shown, text, text_len);
        printf("MSG player=%llu id=%llu accepted=%zu failed=%zu result=%s text=%s\n",
               p->num, msg_id, res.accepted, res.failed, wtd_result_str(r), shown);
        fflush(stdout);
        atomic_fetch_add(&messages, 1);
    } else {
        atomic_fetch_add(&dropped_unknown, 1);
    }
}

/* ---------------------------------------------------------------- sessions (main thread) */

static player *players[MAX_PLAYERS];
static size_t nplayers;
static unsigned long long next_player_num = 1;

static void join(wtd_session *s) {
    uint64_t id = 0;
    wtd_draft draft = WTD_DRAFT_UNKNOWN;
    char origin[256] = "";
    wtd_session_id(s, &id);
    wtd_session_draft(s, &draft);
    wtd_session_origin(s, origin, sizeof origin, NULL);
    if (nplayers == MAX_PLAYERS) {
        printf("REFUSED session=%llu: %d players already\n", (unsigned long long)id, MAX_PLAYERS);
        wtd_session_close(s, 1, "server full");
        wtd_session_free(s);
        return;
    }
    player *p = calloc(1, sizeof *p);
    wtd_transport_options opt;
    opt.struct_size = sizeof(opt);
    wtd_transport_options_default(&opt);
    opt.outgoing_high_water_mark = 256;
    opt.drop_policy = WTD_DROP_OLDEST;
    if (!p || wtd_transport_new(s, &opt, &p->transport) != WTD_OK) {
        printf("REFUSED session=%llu: %s\n", (unsigned long long)id, wtd_last_error_message());
        free(p);
        wtd_session_free(s);
        return;
    }
    p->session = s;
    p->id = id;
    p->num = next_player_num++;
    wtd_transport_callbacks cb = {sizeof cb, 0, on_received, NULL, p};
    wtd_transport_set_callbacks(p->transport, &cb);
    /* Datagrams that arrived before the callback was set are queued: hand them over too. */
    uint8_t early[2048];
    size_t len = 0;
    while (wtd_transport_try_receive(p->transport, early, sizeof early, &len) == WTD_OK)
        on_received(p, p->transport, early, len);
    wtd_broadcaster_add(everyone, p->transport);
    players[nplayers++] = p;
    atomic_store(&player_count, nplayers);
    printf("JOIN player=%llu session=%llu draft=%s origin=%s players=%zu\n", p->num, (unsigned long long)id,
           wtd_draft_str(draft), origin[0] ? origin : "-", nplayers);
    fflush(stdout);
}

static void leave(size_t i) {
    player *p = players[i];
    uint32_t code = 0;
    char reason[128] = "";
    if (wtd_session_close_info(p->session, &code, reason, sizeof reason, NULL) != WTD_OK)
        snprintf(reason, sizeof reason, "(still open: server closing it)");
    wtd_broadcaster_remove(everyone, p->transport);
    wtd_transport_free(p->transport); /* callbacks stop; none runs after this returns */
    wtd_session_free(p->session);
    players[i] = players[--nplayers];
    atomic_store(&player_count, nplayers);
    printf("LEAVE player=%llu code=%u reason=%s players=%zu\n", p->num, code,
           reason, nplayers);
    fflush(stdout);
    free(p);
}

static void print_stats(void) {
    printf("STATS players=%zu pings=%llu hellos=%llu messages=%llu send_failed=%llu "
           "dropped_unknown=%llu dropped_bad_message=%llu http_requests=%llu http_errors=%llu\n",
           nplayers, atomic_load(&pings), atomic_load(&hellos), atomic_load(&messages),
           atomic_load(&send_failed), atomic_load(&dropped_unknown), atomic_load(&dropped_bad_message),
           atomic_load(&http_requests), atomic_load(&http_errors));
    fflush(stdout);
}

/* ---------------------------------------------------------------- HTTP/1.0 (its own thread) */

static char *page;          /* the page with URL and hash filled in */
static size_t page_len;
static int http_fd = -1;

/* Reads a whole file into a NUL-terminated heap buffer, or NULL. */
static char *read_file(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *buf = NULL;
    size_t len = 0, cap = 0, n;
    char chunk[4096];
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) {
        if (len + n + 1 > cap) {
            cap = (len + n + 1) * 2;
            char *grown = realloc(buf, cap);
            if (!grown) { free(buf); fclose(f); return NULL; }
            buf = grown;
        }
        memcpy(buf + len, chunk, n);
        len += n;
    }
    fclose(f);
    if (!buf) buf = calloc(1, 1);
    else buf[len] = 0;
    return buf;
}

/* Returns `text` with every `key` replaced by `value` (heap), or NULL. */
static char *replace_all(const char *text, const char *key, const char *value) {
    size_t klen = strlen(key), vlen = strlen(value), count = 0;
    for (const char *s = strstr(text, key); s; s = strstr(s + klen, key)) count++;
    char *out = malloc(strlen(text) + count * vlen + 1), *o = out;
    if (!out) return NULL;
    const char *s = text;
    for (const char *hit = strstr(s, key); hit; hit = strstr(s, key)) {
        memcpy(o, s, (size_t)(hit - s));
        o += hit - s;
        memcpy(o, value, vlen);
        o += vlen;
        s = hit + klen;
    }
    strcpy(o, s);
    return out;
}

/* Finds the page: --page, the source tree's (path compiled in by CMake), then
 * browser_demo/index.html next to the binary. */
static char *load_page(const char *explicit_path, char *used, size_t cap) {
    if (explicit_path) {
        snprintf(used, cap, "%s", explicit_path);
        return read_file(explicit_path);
    }
    snprintf(used, cap, "%s", WTD_BROWSER_DEMO_PAGE);
    char *text = read_file(used);
    if (text) return text;
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0) return NULL;
    exe[n] = 0;
    char *slash = strrchr(exe, '/');
    if (!slash) return NULL;
    *slash = 0;
    snprintf(used, cap, "%s/browser_demo/index.html", exe);
    return read_file(used);
}

static void http_reply(int fd, const char *status, const char *type, const char *body, size_t len) {
    char head[512];
    int n = snprintf(head, sizeof head,
                     "HTTP/1.0 %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                     "Cache-Control: no-store\r\nConnection: close\r\n\r\n",
                     status, type, len);
    const char *parts[2] = {head, body};
    size_t lens[2] = {(size_t)n, len};
    for (int k = 0; k < 2; k++) {
        size_t off = 0;
        while (off < lens[k]) {
            ssize_t w = send(fd, parts[k] + off, lens[k] - off, MSG_NOSIGNAL);
            if (w < 0 && errno == EINTR) continue;
            if (w <= 0) { atomic_fetch_add(&http_errors, 1); return; }
            off += (size_t)w;
        }
    }
}

static void http_serve_one(int fd) {
    struct timeval tv = {2, 0}; /* a client that sends nothing is dropped after 2 s */
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    char req[MAX_REQUEST + 1];
    size_t len = 0;
    while (len < MAX_REQUEST) {
        ssize_t r = recv(fd, req + len, MAX_REQUEST - len, 0);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        len += (size_t)r;
        req[len] = 0;
        if (strstr(req, "\r\n\r\n") || strstr(req, "\n\n")) break;
    }
    req[len] = 0;
    char method[8] = "", path[256] = "";
    if (sscanf(req, "%7s %255s", method, path) != 2) {
        atomic_fetch_add(&http_errors, 1);
        http_reply(fd, "400 Bad Request", "text/plain", "bad request\n", 12);
        return;
    }
    atomic_fetch_add(&http_requests, 1);
    char *query = strchr(path, '?');
    if (query) *query = 0;
    if (strcmp(method, "GET") != 0) {
        http_reply(fd, "405 Method Not Allowed", "text/plain", "GET only\n", 9);
    } else if (!strcmp(path, "/") || !strcmp(path, "/index.html")) {
        http_reply(fd, "200 OK", "text/html; charset=utf-8", page, page_len);
    } else if (!strcmp(path, "/favicon.ico")) {
        http_reply(fd, "204 No Content", "image/x-icon", "", 0);
    } else {
        http_reply(fd, "404 Not Found", "text/plain", "not found\n", 10);
    }
}

static void *http_thread(void *arg) {
    (void)arg;
    while (running) {
        struct pollfd pfd = {http_fd, POLLIN, 0};
        int r = poll(&pfd, 1, 200); /* wake up now and then to notice shutdown */
        if (r <= 0) continue;
        int fd = accept(http_fd, NULL, NULL);
        if (fd < 0) continue;
        http_serve_one(fd);
        close(fd);
    }
    return NULL;
}

/* Listens on host:*port (TCP); writes the port chosen back. Returns the fd or -1. */
static int http_listen(const char *host, uint16_t *port) {
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_port = htons(*port);
    if (inet_pton(AF_INET, host, &a.sin_addr) != 1) {
        fprintf(stderr, "--host %s: the HTTP listener needs an IPv4 address\n", host);
        return -1;
    }
    int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    if (fd < 0) return -1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    socklen_t alen = sizeof a;
    if (bind(fd, (struct sockaddr *)&a, sizeof a) != 0 || listen(fd, 16) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &alen) != 0) {
        fprintf(stderr, "HTTP listener on %s:%u: %s\n", host, *port, strerror(errno));
        close(fd);
        return -1;
    }
    *port = ntohs(a.sin_port);
    return fd;
}

/* ---------------------------------------------------------------- main */

int main(int argc, char **argv) {
    const char *host = "127.0.0.1", *page_path = NULL;
    uint16_t http_port = 8080;
    wtd_server_options opt;
    opt.struct_size = sizeof(opt);
    wtd_server_options_default(&opt);
    opt.port = 4433;
    double seconds = 0;
    for (int i = 1; i < argc; i++) {
        const char *next = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(argv[i], "--host") && next) host = argv[++i];
        else if (!strcmp(argv[i], "--port") && next) opt.port = cli_port("--port", argv[++i]);
        else if (!strcmp(argv[i], "--http-port") && next) http_port = cli_port("--http-port", argv[++i]);
        else if (!strcmp(argv[i], "--page") && next) page_path = argv[++i];
        else if (!strcmp(argv[i], "--seconds") && next) seconds = cli_double("--seconds", argv[++i], 0, 86400, 0);
        else {
            fprintf(stderr, "usage: %s [--host H] [--port P] [--http-port P] [--page FILE] [--seconds S]\n",
                    argv[0]);
            return 2;
        }
    }
    opt.host = host;

    char used[PATH_MAX + 32];
    char *template = load_page(page_path, used, sizeof used);
    if (!template) {
        fprintf(stderr, "cannot read the page %s: %s (pass --page FILE)\n", used, strerror(errno));
        return 1;
    }
    if (wtd_broadcaster_new(&everyone) != WTD_OK) {
        fprintf(stderr, "broadcaster: %s\n", wtd_last_error_message());
        return 1;
    }
    wtd_server *server = NULL;
    if (wtd_server_new(&opt, &server) != WTD_OK) {
        fprintf(stderr, "cannot start the WebTransport server: %s\n", wtd_last_error_message());
        return 1;
    }
    uint16_t port = 0;
    char hash[65];
    wtd_server_port(server, &port);
    wtd_server_cert_hash_hex(server, hash, sizeof hash);

    /* The page gets this run's URL and certificate hash (both change every start). */
    const char *url_host = strcmp(host, "0.0.0.0") == 0 ? "127.0.0.1" : host;
    char url[128];
    snprintf(url, sizeof url, "https://%s:%u/demo", url_host, port);
    char *with_url = replace_all(template, "__WTD_URL__", url);
    page = with_url ? replace_all(with_url, "__WTD_CERT_HASH__", hash) : NULL;
    free(with_url);
    free(template);
    if (!page) {
        fprintf(stderr, "out of memory\n");
        return 1;
    }
    page_len = strlen(page);

    http_fd = http_listen(host, &http_port);
    if (http_fd < 0) return 1;
    pthread_t http;
    if (pthread_create(&http, NULL, http_thread, NULL) != 0) {
        fprintf(stderr, "cannot start the HTTP thread\n");
        return 1;
    }
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    printf("page %s (%zu bytes), WebTransport %s\n", used, page_len, url);
    printf("PAGE http://%s:%u/\n", url_host, http_port);
    printf("READY %u %s\n", port, hash);
    printf("open http://%s:%u/ in Chromium (two tabs to see the chat); Ctrl-C stops\n", url_host, http_port);
    fflush(stdout);

    struct timespec next;
    clock_gettime(CLOCK_MONOTONIC, &next);
    const long tick_ns = 1000000000L / TICK_HZ;
    unsigned long max_ticks = seconds > 0 ? (unsigned long)(seconds * TICK_HZ) : 0;
    for (unsigned long tick = 1; running && (!max_ticks || tick <= max_ticks); tick++) {
        wtd_session *s = NULL;
        while (wtd_server_accept(server, &s, 0) == WTD_OK) join(s);
        for (size_t i = 0; i < nplayers;) {
            bool closed = false;
            wtd_transport_is_closed(players[i]->transport, &closed);
            if (closed) leave(i); /* swaps the last player into slot i */
            else i++;
        }
        if (nplayers) {
            char msg[64];
            int n = snprintf(msg, sizeof msg, "t %lu %zu", tick, nplayers);
            wtd_broadcaster_broadcast(everyone, (const uint8_t *)msg, (size_t)n, 0, 100, NULL);
        }
        if (tick % (5 * TICK_HZ) == 0) print_stats();
        next.tv_nsec += tick_ns;
        if (next.tv_nsec >= 1000000000L) next.tv_sec++, next.tv_nsec -= 1000000000L;
        clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &next, NULL);
    }

    running = 0;
    pthread_join(http, NULL);
    close(http_fd);
    wtd_server_close(server); /* closes every session (code 0) */
    while (nplayers) leave(nplayers - 1);
    print_stats();
    wtd_broadcaster_free(everyone);
    wtd_server_free(server);
    wtd_shutdown();
    free(page);
    return 0;
}
