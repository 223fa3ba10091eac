/* ctest: WebTransport sessions through the C API only (wtd.h), server and clients in one process
 * on 127.0.0.1 — connect/accept, metadata getters, datagrams (blocking, poll, batch, too-small
 * buffers), callbacks (echo from inside a callback, blocking calls refused there), close (codes,
 * idempotence, waking blocked receivers), several sessions on one connection, server close.
 * Error paths live in test_errors.c. Every check prints what it verifies; the first failure exits
 * non-zero with wtd_last_error_message(). Runs under ASan/UBSan (CMakeLists.txt). */
#include "wtd.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <time.h>

/* ---------------------------------------------------------------------------------------------
 * Check helpers. */

/* True while the session is open (wtd_session_is_closed says false). */
static int session_is_open(const wtd_session *s) {
    bool closed = true;
    return wtd_session_is_closed(s, &closed) == WTD_OK && !closed;
}

static int checks;

static void fail_now(const char *file, int line, const char *what, const char *detail) {
    fprintf(stderr, "FAIL %s:%d: %s%s%s\n  last error: \"%s\"\n", file, line, what,
            detail ? " — " : "", detail ? detail : "", wtd_last_error_message());
    fflush(stdout);
    fflush(stderr);
    _exit(EXIT_FAILURE); /* skip LeakSanitizer: handles are still open on purpose at this point */
}

/* CHECK(cond, description): prints the description, fails with the last error message. */
#define CHECK(cond, ...)                                                           \
    do {                                                                           \
        char what_[512];                                                           \
        snprintf(what_, sizeof what_, __VA_ARGS__);                                \
        if (!(cond)) fail_now(__FILE__, __LINE__, what_, "condition: " #cond);     \
        printf("ok %3d - %s\n", ++checks, what_);                                  \
        fflush(stdout);                                                            \
    } while (0)

/* EXPECT(call, code, description): the call returns exactly `code`. The last error message is
 * read right after the call, before anything else can overwrite it. */
#define EXPECT(call, code, ...)                                                            \
    do {                                                                                   \
        char what_[512];                                                                   \
        wtd_result got_ = (call);                                                          \
        snprintf(what_, sizeof what_, __VA_ARGS__);                                        \
        if (got_ != (code)) {                                                              \
            char detail_[512];                                                             \
            snprintf(detail_, sizeof detail_, "%s returned %d (%s), expected %d (%s)", #call, \
                     (int)got_, wtd_result_str(got_), (int)(code), wtd_result_str(code));  \
            fail_now(__FILE__, __LINE__, what_, detail_);                                  \
        }                                                                                  \
        printf("ok %3d - %s [%s]\n", ++checks, what_, wtd_result_str(code));               \
        fflush(stdout);                                                                    \
    } while (0)

#define OK(call, ...) EXPECT(call, WTD_OK, __VA_ARGS__)

static void sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static long long now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---------------------------------------------------------------------------------------------
 * Server and client set-up. */

static int requests_seen;
static pthread_mutex_t requests_lock = PTHREAD_MUTEX_INITIALIZER;

/* Refuses every path under /forbidden with 403, accepts the rest. Runs on a wtd thread. */
static uint16_t on_request(void *user_data, const wtd_session_request *req) {
    (void)user_data;
    pthread_mutex_lock(&requests_lock);
    requests_seen++;
    pthread_mutex_unlock(&requests_lock);
    return strncmp(req->path, "/forbidden", 10) == 0 ? 403 : 200;
}

static wtd_server *server;
static uint16_t port;
static uint8_t cert_hash[32];

static void start_server(void) {
    wtd_server_options opt;
    char hex[65];
    opt.struct_size = sizeof(opt);
    OK(wtd_server_options_default(&opt), "server options default");
    CHECK(opt.struct_size == sizeof opt, "server options struct_size = sizeof (%u)", opt.struct_size);
    opt.port = 0;
    opt.host = "127.0.0.1";
    opt.on_request = on_request;
    OK(wtd_server_new(&opt, &server), "wtd_server_new on 127.0.0.1 port 0");
    OK(wtd_server_port(server, &port), "wtd_server_port");
    CHECK(port != 0, "port 0 picked a real port (%u)", port);
    OK(wtd_server_cert_hash(server, cert_hash), "wtd_server_cert_hash");
    OK(wtd_server_cert_hash_hex(server, hex, sizeof hex), "wtd_server_cert_hash_hex");
    CHECK(strlen(hex) == 64, "hex hash has 64 characters");
    {
        char from_bytes[65];
        for (int i = 0; i < 32; i++) snprintf(from_bytes + 2 * i, 3, "%02x", cert_hash[i]);
        CHECK(strcmp(hex, from_bytes) == 0, "hex hash matches the 32-byte hash (%s)", hex);
    }
}

static void client_options(wtd_client_options *opt) {
    opt->struct_size = sizeof(*opt);
    OK(wtd_client_options_default(opt), "client options default");
    opt->verify = WTD_VERIFY_CERT_HASHES;
    opt->cert_hashes = cert_hash;
    opt->cert_hash_count = 1;
    opt->connect_timeout_ms = 5000;
}

static void url_for(char *buf, size_t cap, const char *path) {
    snprintf(buf, cap, "https://127.0.0.1:%u%s", port, path);
}

/* Connects a client to `path` and accepts the matching server session. */
static void connect_pair(const char *path, const char *origin, wtd_session **client,
                         wtd_session **srv) {
    wtd_client_options opt;
    char url[256];
    client_options(&opt);
    opt.origin = origin;
    url_for(url, sizeof url, path);
    OK(wtd_client_connect(url, &opt, client), "connect to %s with the pinned certificate hash", url);
    OK(wtd_server_accept(server, srv, 5000), "server accepts the session for %s", path);
}

/* Waits until `s` has at least `n` datagrams queued (at most 3 s). */
static int wait_queued(wtd_session *s, uint64_t n) {
    long long deadline = now_ms() + 3000;
    wtd_session_stats st;
    while (now_ms() < deadline) {
        st.struct_size = sizeof(st);
        if (wtd_session_get_stats(s, &st) != WTD_OK) return 0;
        if (st.queued >= n) return 1;
        sleep_ms(5);
    }
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * Connect, metadata. */

static void test_connect_and_metadata(wtd_session **out_client, wtd_session **out_srv) {
    wtd_session *c = NULL, *s = NULL;
    uint64_t cid = 0, sid = 1;
    wtd_draft cd = WTD_DRAFT_UNKNOWN, sd = WTD_DRAFT_UNKNOWN;
    char buf[256];
    size_t len = 0;
    wtd_session *none = NULL;

    printf("# connect, accept, metadata\n");
    EXPECT(wtd_server_accept(server, &none, 0), WTD_ERR_WOULD_BLOCK,
           "accept with timeout 0 and no pending session");
    EXPECT(wtd_server_accept(server, &none, 50), WTD_ERR_TIMEOUT,
           "accept with timeout 50 ms and no pending session");
    CHECK(none == NULL, "accept wrote no handle on failure");

    connect_pair("/chat?room=1", "https://game.example", &c, &s);
    OK(wtd_session_id(c, &cid), "client session id");
    OK(wtd_session_id(s, &sid), "server session id");
    CHECK(cid == sid, "session ids equal on both ends (%llu)", (unsigned long long)cid);
    OK(wtd_session_draft(c, &cd), "client draft");
    OK(wtd_session_draft(s, &sd), "server draft");
    CHECK(cd == WTD_DRAFT_15 && sd == WTD_DRAFT_15, "both ends negotiated WTD_DRAFT_15 (%d/%d)",
          (int)cd, (int)sd);
    CHECK(strcmp(wtd_draft_str(cd), "draft-15") == 0, "wtd_draft_str says \"%s\"", wtd_draft_str(cd));
    CHECK(strcmp(wtd_draft_str(WTD_DRAFT_02), "draft-02") == 0 &&
              strcmp(wtd_draft_str(WTD_DRAFT_07), "draft-07") == 0 &&
              strcmp(wtd_draft_str(WTD_DRAFT_13), "draft-13") == 0 &&
              strcmp(wtd_draft_str(WTD_DRAFT_UNKNOWN), "unknown") == 0,
          "wtd_draft_str for every draft");

    /* Path: size query convention. */
    EXPECT(wtd_session_path(s, NULL, 0, &len), WTD_ERR_BUFFER_TOO_SMALL,
           "path size query with NULL/0");
    CHECK(len == strlen("/chat?room=1"), "size query reports %zu bytes (without NUL)", len);
    len = 0;
    memset(buf, 'X', sizeof buf);
    EXPECT(wtd_session_path(s, buf, strlen("/chat?room=1"), &len), WTD_ERR_BUFFER_TOO_SMALL,
           "path into a buffer without room for the NUL");
    CHECK(len == 12 && buf[0] == 'X', "needed length reported, buffer untouched");
    OK(wtd_session_path(s, buf, len + 1, &len), "path into an exact buffer");
    CHECK(strcmp(buf, "/chat?room=1") == 0 && len == 12, "server path is \"%s\"", buf);
    OK(wtd_session_path(c, buf, sizeof buf, NULL), "client path with out_len NULL");
    CHECK(strcmp(buf, "/chat?room=1") == 0, "client path is \"%s\"", buf);

    /* Origin. */
    EXPECT(wtd_session_origin(s, NULL, 0, &len), WTD_ERR_BUFFER_TOO_SMALL,
           "origin size query with NULL/0");
    CHECK(len == strlen("https://game.example"), "origin size query reports %zu", len);
    OK(wtd_session_origin(s, buf, sizeof buf, &len), "server origin");
    CHECK(strcmp(buf, "https://game.example") == 0, "server sees origin \"%s\"", buf);

    {
        size_t cmax = 0, smax = 0;
        OK(wtd_session_max_datagram_size(c, &cmax), "client max_datagram_size");
        OK(wtd_session_max_datagram_size(s, &smax), "server max_datagram_size");
        CHECK(cmax > 1000 && smax > 1000, "max_datagram_size > 1000 (client %zu, server %zu)",
              cmax, smax);
    }
    {
        bool closed = true;
        OK(wtd_session_is_closed(c, &closed), "is_closed on an open session");
        CHECK(!closed, "session reports open");
        {
            bool draining = true;
            OK(wtd_session_is_draining(c, &draining), "is_draining on an open session");
            CHECK(!draining, "a fresh session is not draining");
        }
        CHECK(session_is_open(c) && session_is_open(s), "wtd_session_is_open on both ends");
    }
    pthread_mutex_lock(&requests_lock);
    CHECK(requests_seen >= 1, "on_request was consulted (%d requests)", requests_seen);
    pthread_mutex_unlock(&requests_lock);
    *out_client = c;
    *out_srv = s;
}

/* A second session without an origin header: origin getter gives "". */
static void test_no_origin(void) {
    wtd_session *c = NULL, *s = NULL;
    char buf[8] = "junk";
    size_t len = 99;
    printf("# session without origin\n");
    connect_pair("/", NULL, &c, &s);
    OK(wtd_session_origin(s, buf, sizeof buf, &len), "origin when none was sent");
    CHECK(buf[0] == '\0' && len == 0, "origin is \"\"");
    wtd_session_free(c);
    wtd_session_free(s);
}

/* ---------------------------------------------------------------------------------------------
 * Datagrams: blocking, poll, batch, too-small buffers. */

static void test_datagrams(wtd_session *c, wtd_session *s) {
    uint8_t buf[2048];
    size_t len = 0;

    printf("# datagrams\n");
    EXPECT(wtd_session_receive(s, buf, sizeof buf, &len, 0), WTD_ERR_WOULD_BLOCK,
           "poll receive (timeout 0) on an empty queue");
    EXPECT(wtd_session_receive(s, buf, sizeof buf, &len, 50), WTD_ERR_TIMEOUT,
           "receive with timeout 50 ms on an empty queue");

    OK(wtd_session_send(c, (const uint8_t *)"hello", 5), "client sends \"hello\"");
    OK(wtd_session_receive(s, buf, sizeof buf, &len, 3000), "server blocking receive (3 s)");
    CHECK(len == 5 && memcmp(buf, "hello", 5) == 0, "server got \"hello\"");
    OK(wtd_session_send(s, (const uint8_t *)"world!", 6), "server sends \"world!\"");
    OK(wtd_session_receive(c, buf, sizeof buf, &len, 3000), "client blocking receive (3 s)");
    CHECK(len == 6 && memcmp(buf, "world!", 6) == 0, "client got \"world!\"");

    /* A datagram at exactly max_datagram_size goes through. */
    {
        size_t max = 0;
        uint8_t *big;
        OK(wtd_session_max_datagram_size(c, &max), "client max_datagram_size");
        big = malloc(max);
        CHECK(big != NULL, "allocate %zu bytes", max);
        for (size_t i = 0; i < max; i++) big[i] = (uint8_t)(i * 7);
        OK(wtd_session_send(c, big, max), "send a datagram of exactly max_datagram_size (%zu)", max);
        OK(wtd_session_receive(s, buf, sizeof buf, &len, 3000), "receive it");
        CHECK(len == max && memcmp(buf, big, max) == 0, "max-size datagram intact");
        free(big);
    }

    /* Batch receive keeps the order. */
    {
        enum { N = 6 };
        uint8_t store[8][64];
        wtd_datagram_buffer bufs[8];
        size_t got = 0, n = 0;
        char msg[32];
        for (int i = 0; i < N; i++) {
            snprintf(msg, sizeof msg, "batch-%d", i);
            OK(wtd_session_send(c, (const uint8_t *)msg, strlen(msg)), "client sends %s", msg);
        }
        CHECK(wait_queued(s, N), "server queue holds %d datagrams", N);
        for (int i = 0; i < 8; i++) {
            bufs[i].data = store[i];
            bufs[i].capacity = sizeof store[i];
            bufs[i].len = 0;
        }
        /* First call with room for 4, second with room for the rest. */
        OK(wtd_session_receive_batch(s, bufs, 4, &n, 0), "receive_batch into 4 buffers");
        CHECK(n == 4, "4 datagrams filled (%zu)", n);
        got = n;
        OK(wtd_session_receive_batch(s, bufs + got, 8 - got, &n, 0), "receive_batch into the rest");
        CHECK(n == N - 4, "the remaining %d datagrams filled (%zu)", N - 4, n);
        got += n;
        for (size_t i = 0; i < got; i++) {
            snprintf(msg, sizeof msg, "batch-%zu", i);
            CHECK(bufs[i].len == strlen(msg) && memcmp(bufs[i].data, msg, bufs[i].len) == 0,
                  "batch slot %zu holds %s (order kept)", i, msg);
        }
        n = 99;
        EXPECT(wtd_session_receive_batch(s, bufs, 8, &n, 0), WTD_ERR_WOULD_BLOCK,
               "receive_batch on an empty queue with timeout 0 (the transport's shape)");
        CHECK(n == 99, "out_count untouched on failure");
        EXPECT(wtd_session_receive_batch(s, bufs, 8, &n, 30), WTD_ERR_TIMEOUT,
               "receive_batch waits up to timeout_ms");
        EXPECT(wtd_session_receive_batch(s, bufs, 0, &n, 0), WTD_ERR_INVALID_ARGUMENT,
               "receive_batch with count 0");
    }

    /* BUFFER_TOO_SMALL leaves the datagram queued. */
    {
        uint8_t payload[100], small[10];
        wtd_datagram_buffer one = {small, sizeof small, 0};
        size_t n = 99;
        for (int i = 0; i < 100; i++) payload[i] = (uint8_t)(0xA0 ^ i);
        OK(wtd_session_send(c, payload, sizeof payload), "client sends 100 bytes");
        EXPECT(wtd_session_receive(s, small, sizeof small, &len, 3000), WTD_ERR_BUFFER_TOO_SMALL,
               "receive into a 10-byte buffer");
        CHECK(len == 100, "needed size reported in out_len (%zu)", len);
        EXPECT(wtd_session_receive(s, NULL, 0, &len, 0), WTD_ERR_BUFFER_TOO_SMALL,
               "receive with NULL/0 acts as a size query");
        CHECK(len == 100, "size query says 100");
        EXPECT(wtd_session_receive_batch(s, &one, 1, &n, 0), WTD_ERR_BUFFER_TOO_SMALL,
               "receive_batch whose first buffer is too small");
        CHECK(one.len == 100, "BUFFER_TOO_SMALL writes the needed size into buffers[0].len (%zu)",
              one.len);
        OK(wtd_session_receive(s, buf, sizeof buf, &len, 0), "receive again with a big buffer");
        CHECK(len == 100 && memcmp(buf, payload, 100) == 0, "the datagram was still queued, intact");
        EXPECT(wtd_session_receive(s, buf, sizeof buf, &len, 0), WTD_ERR_WOULD_BLOCK,
               "queue empty again");
    }

    /* A batch stops at the first datagram that does not fit; it stays queued. */
    {
        uint8_t a[8], b[4];
        wtd_datagram_buffer two[2] = {{a, sizeof a, 0}, {b, sizeof b, 0}};
        size_t n = 0;
        OK(wtd_session_send(c, (const uint8_t *)"fits", 4), "client sends \"fits\"");
        OK(wtd_session_send(c, (const uint8_t *)"too long", 8), "client sends \"too long\"");
        CHECK(wait_queued(s, 2), "server queue holds 2 datagrams");
        OK(wtd_session_receive_batch(s, two, 2, &n, 0), "batch with a 4-byte second buffer");
        CHECK(n == 1 && two[0].len == 4 && memcmp(a, "fits", 4) == 0, "only the first was taken");
        OK(wtd_session_receive(s, buf, sizeof buf, &len, 0), "the second is still queued");
        CHECK(len == 8 && memcmp(buf, "too long", 8) == 0, "and intact");
    }

    {
        wtd_session_stats st;
        memset(&st, 0, sizeof st);
        st.struct_size = sizeof(st);
        OK(wtd_session_get_stats(s, &st), "server stats");
        CHECK(st.struct_size == sizeof st, "stats struct_size = sizeof");
        CHECK(st.datagrams_received >= 11 && st.datagrams_read == st.datagrams_received &&
                  st.queued == 0 && st.dropped_queue_full == 0 && st.datagrams_sent == 1 &&
                  st.max_datagram_size > 1000,
              "server counters (received %llu, read %llu, sent %llu, queued %llu)",
              (unsigned long long)st.datagrams_received, (unsigned long long)st.datagrams_read,
              (unsigned long long)st.datagrams_sent, (unsigned long long)st.queued);
    }
}

/* ---------------------------------------------------------------------------------------------
 * Callbacks. */

typedef struct {
    pthread_mutex_t lock;
    int datagrams;
    int echo_failures;
    wtd_result blocking_receive;   /* wtd_session_receive(..., -1) from inside the callback */
    wtd_result timed_receive;      /* wtd_session_receive(..., 100) from inside the callback */
    wtd_result poll_receive;       /* wtd_session_receive(..., 0) from inside the callback */
    wtd_result wait_closed;        /* wtd_session_wait_closed from inside the callback */
    wtd_result accept;             /* wtd_server_accept(-1) from inside the callback */
    wtd_result connect;            /* wtd_client_connect from inside the callback */
    char blocking_message[256];
    int closed_calls;
    uint32_t closed_code;
    char closed_reason[64];
    wtd_session *closed_session;
    wtd_session *datagram_session;
} cb_state;

static void cb_on_datagram(void *user_data, wtd_session *session, const uint8_t *data, size_t len) {
    cb_state *st = (cb_state *)user_data;
    uint8_t scratch[16];
    size_t n = 0;
    wtd_result r = wtd_session_send(session, data, len); /* echo from inside the callback */
    pthread_mutex_lock(&st->lock);
    st->datagrams++;
    st->datagram_session = session;
    if (r != WTD_OK) st->echo_failures++;
    if (st->datagrams == 1) {
        wtd_session *none = NULL;
        wtd_client_options opt;
        st->blocking_receive = wtd_session_receive(session, scratch, sizeof scratch, &n, -1);
        snprintf(st->blocking_message, sizeof st->blocking_message, "%s", wtd_last_error_message());
        st->timed_receive = wtd_session_receive(session, scratch, sizeof scratch, &n, 100);
        st->poll_receive = wtd_session_receive(session, scratch, sizeof scratch, &n, 0);
        st->wait_closed = wtd_session_wait_closed(session, -1);
        st->accept = wtd_server_accept(server, &none, -1);
        opt.struct_size = sizeof(opt);
        wtd_client_options_default(&opt);
        opt.connect_timeout_ms = 100;
        st->connect = wtd_client_connect("https://127.0.0.1:9/", &opt, &none);
    }
    pthread_mutex_unlock(&st->lock);
}

static void cb_on_closed(void *user_data, wtd_session *session, uint32_t code, const char *reason) {
    cb_state *st = (cb_state *)user_data;
    /* Take a little time before recording, so that a wtd_session_wait_closed that returned before
     * this callback finished (the header promises "callbacks included") is caught every time,
     * not just when the scheduler happens to expose the race. */
    sleep_ms(50);
    pthread_mutex_lock(&st->lock);
    st->closed_calls++;
    st->closed_code = code;
    st->closed_session = session;
    snprintf(st->closed_reason, sizeof st->closed_reason, "%s", reason ? reason : "(null)");
    pthread_mutex_unlock(&st->lock);
}

static cb_state cbs;

static void test_callbacks(wtd_session *c, wtd_session *s) {
    wtd_session_callbacks callbacks;
    uint8_t buf[256];
    size_t len = 0;

    printf("# callbacks\n");
    memset(&cbs, 0, sizeof cbs);
    pthread_mutex_init(&cbs.lock, NULL);
    cbs.blocking_receive = cbs.timed_receive = cbs.poll_receive = cbs.wait_closed = cbs.accept =
        cbs.connect = (wtd_result)-1;
    memset(&callbacks, 0, sizeof callbacks);
    callbacks.struct_size = sizeof callbacks;
    callbacks.on_datagram = cb_on_datagram;
    callbacks.on_closed = cb_on_closed;
    callbacks.user_data = &cbs;
    OK(wtd_session_set_callbacks(s, &callbacks), "install on_datagram (echo) + on_closed on the server session");

    OK(wtd_session_send(c, (const uint8_t *)"ping", 4), "client sends \"ping\"");
    OK(wtd_session_receive(c, buf, sizeof buf, &len, 3000), "client receives the echo sent from inside the callback");
    CHECK(len == 4 && memcmp(buf, "ping", 4) == 0, "echo is \"ping\"");
    for (int i = 0; i < 5; i++) {
        char msg[32];
        snprintf(msg, sizeof msg, "cb-%d", i);
        OK(wtd_session_send(c, (const uint8_t *)msg, strlen(msg)), "client sends %s", msg);
        OK(wtd_session_receive(c, buf, sizeof buf, &len, 3000), "client receives its echo");
        CHECK(len == strlen(msg) && memcmp(buf, msg, len) == 0, "echo is %s", msg);
    }

    pthread_mutex_lock(&cbs.lock);
    CHECK(cbs.datagrams == 6 && cbs.echo_failures == 0, "callback saw 6 datagrams, every echo sent (%d, %d failures)",
          cbs.datagrams, cbs.echo_failures);
    CHECK(cbs.datagram_session == s, "the session pointer passed to on_datagram is the handle");
    CHECK(cbs.blocking_receive == WTD_ERR_INVALID_STATE,
          "blocking wtd_session_receive(-1) inside a callback returns WTD_ERR_INVALID_STATE (got %d: %s)",
          (int)cbs.blocking_receive, cbs.blocking_message);
    CHECK(cbs.timed_receive == WTD_ERR_INVALID_STATE,
          "wtd_session_receive(100 ms) inside a callback returns WTD_ERR_INVALID_STATE (got %d)",
          (int)cbs.timed_receive);
    CHECK(cbs.poll_receive == WTD_ERR_WOULD_BLOCK,
          "poll receive inside a callback is allowed (WOULD_BLOCK: datagrams go to the callback) (got %d)",
          (int)cbs.poll_receive);
    CHECK(cbs.wait_closed == WTD_ERR_INVALID_STATE,
          "wtd_session_wait_closed inside a callback returns WTD_ERR_INVALID_STATE (got %d)",
          (int)cbs.wait_closed);
    CHECK(cbs.accept == WTD_ERR_INVALID_STATE,
          "wtd_server_accept(-1) inside a callback returns WTD_ERR_INVALID_STATE (got %d)", (int)cbs.accept);
    CHECK(cbs.connect == WTD_ERR_INVALID_STATE,
          "wtd_client_connect inside a callback returns WTD_ERR_INVALID_STATE (got %d)", (int)cbs.connect);
    CHECK(cbs.closed_calls == 0, "on_closed not called while open");
    pthread_mutex_unlock(&cbs.lock);

    {
        wtd_session_stats st;
        st.struct_size = sizeof(st);
        OK(wtd_session_get_stats(s, &st), "server stats after the callback phase");
        CHECK(st.queued == 0, "datagrams went to the callback, not the queue");
    }
}

/* ---------------------------------------------------------------------------------------------
 * Close. */

static void test_close(wtd_session *c, wtd_session *s) {
    uint32_t code = 0;
    char reason[64];
    size_t len = 0;

    printf("# close\n");
    EXPECT(wtd_session_close_info(s, &code, reason, sizeof reason, &len), WTD_ERR_INVALID_STATE,
           "close_info on an open session");
    EXPECT(wtd_session_wait_closed(s, 50), WTD_ERR_TIMEOUT, "wait_closed(50 ms) on an open session");

    OK(wtd_session_close(c, 42, "bye"), "client closes with 42 \"bye\"");
    OK(wtd_session_wait_closed(s, 5000),
       "server side wait_closed (returns once the close notice, on_closed included, was delivered)");
}

static void test_close_info(wtd_session *c, wtd_session *s) {
    uint32_t code = 0;
    char reason[64];
    size_t len = 0;
    bool closed = false;

    EXPECT(wtd_session_close_info(s, &code, NULL, 0, &len), WTD_ERR_BUFFER_TOO_SMALL,
           "close_info size query (reason NULL/0)");
    CHECK(len == 3, "reason length 3 reported (%zu)", len);
    OK(wtd_session_close_info(s, &code, reason, sizeof reason, &len), "server close_info");
    CHECK(code == 42 && strcmp(reason, "bye") == 0 && len == 3,
          "server sees code 42 reason \"bye\" (%u \"%s\")", code, reason);
    pthread_mutex_lock(&cbs.lock);
    CHECK(cbs.closed_calls == 1 && cbs.closed_code == 42 && strcmp(cbs.closed_reason, "bye") == 0 &&
              cbs.closed_session == s,
          "on_closed called once with 42 \"bye\" (%d calls, %u \"%s\")", cbs.closed_calls,
          cbs.closed_code, cbs.closed_reason);
    pthread_mutex_unlock(&cbs.lock);

    OK(wtd_session_close_info(c, &code, reason, sizeof reason, &len), "client close_info");
    CHECK(code == 42 && strcmp(reason, "bye") == 0, "client keeps its own 42 \"bye\"");
    OK(wtd_session_close(c, 7, "again"), "second close is OK (idempotent)");
    OK(wtd_session_close(c, 8, NULL), "third close with NULL reason is OK");
    OK(wtd_session_close_info(c, &code, reason, sizeof reason, &len), "client close_info again");
    CHECK(code == 42 && strcmp(reason, "bye") == 0, "later closes keep the first code/reason");
    OK(wtd_session_close(s, 9, "late"), "closing the already-closed server side is OK");
    OK(wtd_session_close_info(s, &code, reason, sizeof reason, &len), "server close_info again");
    CHECK(code == 42 && strcmp(reason, "bye") == 0, "server keeps the peer's 42 \"bye\"");

    OK(wtd_session_is_closed(c, &closed), "is_closed (client)");
    CHECK(closed, "client session is closed");
    OK(wtd_session_is_closed(s, &closed), "is_closed (server)");
    CHECK(closed, "server session is closed");
    CHECK(!session_is_open(c) && !session_is_open(s), "wtd_session_is_open is false");
    EXPECT(wtd_session_send(c, (const uint8_t *)"x", 1), WTD_ERR_CLOSED, "send after close (client)");
    EXPECT(wtd_session_send(s, (const uint8_t *)"x", 1), WTD_ERR_CLOSED, "send after close (server)");
    {
        uint8_t buf[16];
        wtd_datagram_buffer one = {buf, sizeof buf, 0};
        size_t n = 0;
        EXPECT(wtd_session_receive(c, buf, sizeof buf, &len, 0), WTD_ERR_CLOSED,
               "poll receive on a closed, empty session");
        EXPECT(wtd_session_receive(c, buf, sizeof buf, &len, -1), WTD_ERR_CLOSED,
               "blocking receive on a closed session returns at once");
        EXPECT(wtd_session_receive_batch(c, &one, 1, &n, 0), WTD_ERR_CLOSED,
               "receive_batch on a closed, empty session");
    }
    OK(wtd_session_wait_closed(c, 5000), "wait_closed on a locally closed session");
    OK(wtd_session_set_callbacks(s, NULL), "removing callbacks is OK");
}

/* Datagrams that arrived before the close can still be read after it. */
static void test_queued_survives_close(void) {
    wtd_session *c = NULL, *s = NULL;
    uint8_t buf[64];
    size_t len = 0;
    printf("# queued datagrams survive a local close\n");
    connect_pair("/drain", NULL, &c, &s);
    OK(wtd_session_send(s, (const uint8_t *)"last words", 10), "server sends a datagram");
    CHECK(wait_queued(c, 1), "client has it queued");
    OK(wtd_session_close(c, 1, "done"), "client closes");
    OK(wtd_session_receive(c, buf, sizeof buf, &len, 0), "queued datagram still readable after close");
    CHECK(len == 10 && memcmp(buf, "last words", 10) == 0, "intact");
    EXPECT(wtd_session_receive(c, buf, sizeof buf, &len, 0), WTD_ERR_CLOSED, "then WTD_ERR_CLOSED");
    OK(wtd_session_wait_closed(s, 5000), "server side closes too");
    wtd_session_free(c);
    wtd_session_free(s);
}

typedef struct {
    wtd_session *session;
    wtd_result result;
    int done;
} blocked_receive;

static void *receive_thread(void *arg) {
    blocked_receive *b = (blocked_receive *)arg;
    uint8_t buf[64];
    size_t len = 0;
    b->result = wtd_session_receive(b->session, buf, sizeof buf, &len, -1);
    __atomic_store_n(&b->done, 1, __ATOMIC_SEQ_CST);
    return NULL;
}

/* A receive blocked in another thread wakes with WTD_ERR_CLOSED: once for a local close, once for
 * the peer's. */
static void test_close_wakes_receiver(void) {
    wtd_session *c = NULL, *s = NULL;
    blocked_receive on_client = {NULL, (wtd_result)-1, 0}, on_server = {NULL, (wtd_result)-1, 0};
    pthread_t t1, t2;
    uint32_t code = 0;
    char reason[64];

    printf("# close wakes blocked receivers\n");
    connect_pair("/wake", NULL, &c, &s);
    on_client.session = c;
    on_server.session = s;
    CHECK(pthread_create(&t1, NULL, receive_thread, &on_client) == 0, "thread blocks in client receive(-1)");
    CHECK(pthread_create(&t2, NULL, receive_thread, &on_server) == 0, "thread blocks in server receive(-1)");
    sleep_ms(200);
    CHECK(!__atomic_load_n(&on_client.done, __ATOMIC_SEQ_CST) &&
              !__atomic_load_n(&on_server.done, __ATOMIC_SEQ_CST),
          "both receivers are still blocked after 200 ms");
    OK(wtd_session_close(s, 7, "srv"), "server closes its session (7 \"srv\")");
    CHECK(pthread_join(t2, NULL) == 0, "server-side receiver returned (local close)");
    CHECK(on_server.result == WTD_ERR_CLOSED, "it returned WTD_ERR_CLOSED (%d)", (int)on_server.result);
    CHECK(pthread_join(t1, NULL) == 0, "client-side receiver returned (peer close)");
    CHECK(on_client.result == WTD_ERR_CLOSED, "it returned WTD_ERR_CLOSED (%d)", (int)on_client.result);
    OK(wtd_session_wait_closed(c, 5000), "client wait_closed");
    OK(wtd_session_close_info(c, &code, reason, sizeof reason, NULL), "client close_info");
    CHECK(code == 7 && strcmp(reason, "srv") == 0, "client sees the server's 7 \"srv\" (%u \"%s\")", code, reason);
    wtd_session_free(c);
    wtd_session_free(s);
}

/* Freeing an open session closes it (code 0): the peer sees the close. */
static void test_free_closes(void) {
    wtd_session *c = NULL, *s = NULL;
    uint32_t code = 99;
    printf("# free closes an open session\n");
    connect_pair("/free", NULL, &c, &s);
    wtd_session_free(c);
    OK(wtd_session_wait_closed(s, 5000), "server sees the freed client session close");
    {
        char reason[64];
        OK(wtd_session_close_info(s, &code, reason, sizeof reason, NULL), "server close_info");
        CHECK(code == 0, "code 0 (\"%s\")", reason);
    }
    wtd_session_free(s);
}

/* ---------------------------------------------------------------------------------------------
 * Several sessions on one connection. */

static void test_multi_session(wtd_session *clients[3], wtd_session *servers[3]) {
    static const char *paths[3] = {"/a", "/b", "/c"};
    wtd_session *accepted[3] = {NULL, NULL, NULL};
    uint8_t buf[256];
    size_t len = 0;

    printf("# three sessions on one connection\n");
    {
        wtd_client_options opt;
        char url[256];
        client_options(&opt);
        url_for(url, sizeof url, paths[0]);
        OK(wtd_client_connect(url, &opt, &clients[0]), "connect %s", url);
    }
    OK(wtd_session_open_sibling(clients[0], paths[1], &clients[1]), "open_sibling %s", paths[1]);
    OK(wtd_session_open_sibling(clients[0], paths[2], &clients[2]), "open_sibling %s", paths[2]);
    for (int i = 0; i < 3; i++) OK(wtd_server_accept(server, &accepted[i], 5000), "server accepts session %d", i);
    /* Match server sessions to client sessions by path. */
    for (int i = 0; i < 3; i++) {
        char path[32];
        OK(wtd_session_path(accepted[i], path, sizeof path, NULL), "path of accepted session %d", i);
        for (int j = 0; j < 3; j++)
            if (strcmp(path, paths[j]) == 0) servers[j] = accepted[i];
    }
    for (int i = 0; i < 3; i++) {
        uint64_t cid = 0, sid = 1;
        CHECK(servers[i] != NULL, "a server session for %s", paths[i]);
        OK(wtd_session_id(clients[i], &cid), "client id %d", i);
        OK(wtd_session_id(servers[i], &sid), "server id %d", i);
        CHECK(cid == sid, "%s: ids equal (%llu)", paths[i], (unsigned long long)cid);
        for (int j = 0; j < i; j++) {
            uint64_t other = 0;
            OK(wtd_session_id(clients[j], &other), "client id %d", j);
            CHECK(other != cid, "ids of %s and %s differ", paths[j], paths[i]);
        }
    }
    /* Every session sends 3 tagged datagrams each way. */
    for (int round = 0; round < 3; round++)
        for (int i = 0; i < 3; i++) {
            char msg[32];
            snprintf(msg, sizeof msg, "up%s#%d", paths[i], round);
            OK(wtd_session_send(clients[i], (const uint8_t *)msg, strlen(msg)), "client sends %s", msg);
            snprintf(msg, sizeof msg, "down%s#%d", paths[i], round);
            OK(wtd_session_send(servers[i], (const uint8_t *)msg, strlen(msg)), "server sends %s", msg);
        }
    for (int i = 0; i < 3; i++)
        for (int round = 0; round < 3; round++) {
            char want[32];
            snprintf(want, sizeof want, "up%s#%d", paths[i], round);
            OK(wtd_session_receive(servers[i], buf, sizeof buf - 1, &len, 3000), "server %s receives", paths[i]);
            buf[len] = 0;
            CHECK(strcmp((char *)buf, want) == 0, "server %s got its own %s (got %s)", paths[i], want, (char *)buf);
            snprintf(want, sizeof want, "down%s#%d", paths[i], round);
            OK(wtd_session_receive(clients[i], buf, sizeof buf - 1, &len, 3000), "client %s receives", paths[i]);
            buf[len] = 0;
            CHECK(strcmp((char *)buf, want) == 0, "client %s got its own %s (got %s)", paths[i], want, (char *)buf);
        }
    sleep_ms(100);
    for (int i = 0; i < 3; i++) {
        EXPECT(wtd_session_receive(servers[i], buf, sizeof buf, &len, 0), WTD_ERR_WOULD_BLOCK,
               "server %s has nothing foreign queued", paths[i]);
        EXPECT(wtd_session_receive(clients[i], buf, sizeof buf, &len, 0), WTD_ERR_WOULD_BLOCK,
               "client %s has nothing foreign queued", paths[i]);
    }
    /* Closing one sibling leaves the others working. */
    OK(wtd_session_close(clients[1], 5, "only b"), "close %s only", paths[1]);
    OK(wtd_session_wait_closed(servers[1], 5000), "server side of %s closed", paths[1]);
    CHECK(session_is_open(clients[0]) && session_is_open(clients[2]) &&
              session_is_open(servers[0]) && session_is_open(servers[2]),
          "%s and %s stay open", paths[0], paths[2]);
    OK(wtd_session_send(clients[2], (const uint8_t *)"still here", 10), "client %s still sends", paths[2]);
    OK(wtd_session_receive(servers[2], buf, sizeof buf, &len, 3000), "server %s still receives", paths[2]);
    CHECK(len == 10 && memcmp(buf, "still here", 10) == 0, "intact");
}

/* ---------------------------------------------------------------------------------------------
 * Server close. */

static void test_server_close(wtd_session *clients[3], wtd_session *servers[3]) {
    wtd_session *none = NULL;
    printf("# server close\n");
    OK(wtd_server_close(server), "wtd_server_close");
    for (int i = 0; i < 3; i++) {
        uint32_t code = 99;
        char reason[128] = "";
        OK(wtd_session_wait_closed(clients[i], 5000), "client session %d sees the close", i);
        OK(wtd_session_close_info(clients[i], &code, reason, sizeof reason, NULL), "client %d close_info", i);
        printf("#   client session %d closed with %u \"%s\"\n", i, code, reason);
        if (i != 1) CHECK(code == 0, "client session %d closed with code 0", i);
        CHECK(!session_is_open(servers[i]), "server session %d is closed", i);
    }
    EXPECT(wtd_server_accept(server, &none, 0), WTD_ERR_CLOSED, "accept (poll) after server close");
    EXPECT(wtd_server_accept(server, &none, -1), WTD_ERR_CLOSED, "accept (forever) after server close returns at once");
    OK(wtd_server_close(server), "wtd_server_close is idempotent");
    {
        uint16_t p = 0;
        uint8_t h[32];
        /* Getters on a closed server: either still answer or say closed, never crash. */
        wtd_result r = wtd_server_port(server, &p);
        CHECK(r == WTD_OK || r == WTD_ERR_CLOSED, "wtd_server_port after close: %s", wtd_result_str(r));
        r = wtd_server_cert_hash(server, h);
        CHECK(r == WTD_OK && memcmp(h, cert_hash, 32) == 0, "cert hash still readable after close");
    }
    {
        wtd_client_options opt;
        char url[256];
        wtd_session *s = NULL;
        wtd_result r;
        client_options(&opt);
        opt.connect_timeout_ms = 1000;
        url_for(url, sizeof url, "/after-close");
        r = wtd_client_connect(url, &opt, &s);
        CHECK(r == WTD_ERR_TIMEOUT || r == WTD_ERR_CONNECTION,
              "connecting to a closed server fails with TIMEOUT or CONNECTION (%s)", wtd_result_str(r));
        CHECK(s == NULL, "no handle written");
    }
    for (int i = 0; i < 3; i++) {
        wtd_session_free(clients[i]);
        wtd_session_free(servers[i]);
    }
}

int main(void) {
    wtd_session *c = NULL, *s = NULL;
    wtd_session *clients[3] = {NULL, NULL, NULL}, *servers[3] = {NULL, NULL, NULL};

    setvbuf(stdout, NULL, _IOLBF, 0);
    printf("# test_session (wtd %s)\n", wtd_version());
    start_server();
    test_connect_and_metadata(&c, &s);
    test_no_origin();
    test_datagrams(c, s);
    test_callbacks(c, s);
    test_close(c, s);
    test_close_info(c, s);
    wtd_session_free(c);
    wtd_session_free(s);
    test_queued_survives_close();
    test_close_wakes_receiver();
    test_free_closes();
    test_multi_session(clients, servers);
    test_server_close(clients, servers);
    wtd_server_free(server);
    wtd_session_free(NULL);
    wtd_server_free(NULL);
    pthread_mutex_destroy(&cbs.lock);
    wtd_shutdown();
    printf("test_session: all %d checks passed\n", checks);
    return EXIT_SUCCESS;
}
