/* ctest: error paths of the server/client/session C API, only through wtd.h — NULL handles and
 * NULL out-pointers, zero and oversize lengths, bad URLs and options, TLS failures (wrong pinned
 * hash, missing files), refused paths, unreachable servers, wrong states. Each check prints what
 * it verifies; the first failure exits non-zero with wtd_last_error_message(). Runs under
 * ASan/UBSan (CMakeLists.txt). The happy paths are in test_session.c. */
#include "wtd.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int checks;

static void fail_now(const char *file, int line, const char *what, const char *detail) {
    fprintf(stderr, "FAIL %s:%d: %s%s%s\n  last error: \"%s\"\n", file, line, what,
            detail ? " — " : "", detail ? detail : "", wtd_last_error_message());
    fflush(stdout);
    fflush(stderr);
    _exit(EXIT_FAILURE); /* skip LeakSanitizer: handles are still open on purpose at this point */
}

#define CHECK(cond, ...)                                                           \
    do {                                                                           \
        char what_[512];                                                           \
        snprintf(what_, sizeof what_, __VA_ARGS__);                                \
        if (!(cond)) fail_now(__FILE__, __LINE__, what_, "condition: " #cond);     \
        printf("ok %3d - %s\n", ++checks, what_);                                  \
        fflush(stdout);                                                            \
    } while (0)

/* The last error message of the most recent EXPECT (copied right after the call). */
static char last_msg[1024];

#define EXPECT(call, code, ...)                                                            \
    do {                                                                                   \
        char what_[512];                                                                   \
        wtd_result got_ = (call);                                                          \
        snprintf(last_msg, sizeof last_msg, "%s", wtd_last_error_message());               \
        snprintf(what_, sizeof what_, __VA_ARGS__);                                        \
        if (got_ != (code)) {                                                              \
            char detail_[512];                                                             \
            snprintf(detail_, sizeof detail_, "%s returned %d (%s), expected %d (%s)", #call, \
                     (int)got_, wtd_result_str(got_), (int)(code), wtd_result_str(code));  \
            fail_now(__FILE__, __LINE__, what_, detail_);                                  \
        }                                                                                  \
        if ((code) != WTD_OK && last_msg[0] == '\0')                                       \
            fail_now(__FILE__, __LINE__, what_, "failed without a wtd_last_error_message()"); \
        printf("ok %3d - %s [%s%s%s]\n", ++checks, what_, wtd_result_str(code),            \
               last_msg[0] ? ": " : "", last_msg);                                         \
        fflush(stdout);                                                                    \
    } while (0)

#define OK(call, ...) EXPECT(call, WTD_OK, __VA_ARGS__)
#define INVALID(call, ...) EXPECT(call, WTD_ERR_INVALID_ARGUMENT, __VA_ARGS__)

static uint16_t on_request(void *user_data, const wtd_session_request *req) {
    (void)user_data;
    return strncmp(req->path, "/forbidden", 10) == 0 ? 403 : 200;
}

static wtd_server *server;
static uint16_t port;
static uint8_t cert_hash[32];

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

/* Every function with a NULL handle: WTD_ERR_INVALID_ARGUMENT, not a crash. */
static void test_null_handles(void) {
    uint8_t buf[64];
    char text[64];
    size_t len = 0, n = 0;
    uint64_t id = 0;
    uint16_t p = 0;
    uint32_t code = 0;
    bool flag = false;
    wtd_draft draft = WTD_DRAFT_UNKNOWN;
    wtd_session *s = NULL;
    wtd_session_stats stats;
    wtd_datagram_buffer one = {buf, sizeof buf, 0};
    wtd_session_callbacks cbs;

    printf("# NULL handles\n");
    memset(&cbs, 0, sizeof cbs);
    cbs.struct_size = sizeof cbs;
    INVALID(wtd_server_port(NULL, &p), "wtd_server_port(NULL)");
    INVALID(wtd_server_cert_hash(NULL, buf), "wtd_server_cert_hash(NULL)");
    INVALID(wtd_server_cert_hash_hex(NULL, text, sizeof text), "wtd_server_cert_hash_hex(NULL)");
    INVALID(wtd_server_accept(NULL, &s, 0), "wtd_server_accept(NULL, 0)");
    INVALID(wtd_server_accept(NULL, &s, -1), "wtd_server_accept(NULL, -1) does not block");
    INVALID(wtd_server_close(NULL), "wtd_server_close(NULL)");
    INVALID(wtd_session_send(NULL, buf, 1), "wtd_session_send(NULL)");
    INVALID(wtd_session_receive(NULL, buf, sizeof buf, &len, 0), "wtd_session_receive(NULL, poll)");
    INVALID(wtd_session_receive(NULL, buf, sizeof buf, &len, -1), "wtd_session_receive(NULL, forever) does not block");
    INVALID(wtd_session_receive_batch(NULL, &one, 1, &n, 0), "wtd_session_receive_batch(NULL)");
    INVALID(wtd_session_set_callbacks(NULL, &cbs), "wtd_session_set_callbacks(NULL, cbs)");
    INVALID(wtd_session_set_callbacks(NULL, NULL), "wtd_session_set_callbacks(NULL, NULL)");
    INVALID(wtd_session_close(NULL, 0, "x"), "wtd_session_close(NULL)");
    INVALID(wtd_session_is_closed(NULL, &flag), "wtd_session_is_closed(NULL)");
    INVALID(wtd_session_is_draining(NULL, &flag), "wtd_session_is_draining(NULL)");
    INVALID(wtd_session_close_info(NULL, &code, text, sizeof text, &len), "wtd_session_close_info(NULL)");
    INVALID(wtd_session_wait_closed(NULL, -1), "wtd_session_wait_closed(NULL, -1) does not block");
    INVALID(wtd_session_id(NULL, &id), "wtd_session_id(NULL)");
    INVALID(wtd_session_draft(NULL, &draft), "wtd_session_draft(NULL)");
    INVALID(wtd_session_path(NULL, text, sizeof text, &len), "wtd_session_path(NULL)");
    INVALID(wtd_session_origin(NULL, text, sizeof text, &len), "wtd_session_origin(NULL)");
    INVALID(wtd_session_max_datagram_size(NULL, &len), "wtd_session_max_datagram_size(NULL)");
    stats.struct_size = sizeof(stats);
    INVALID(wtd_session_get_stats(NULL, &stats), "wtd_session_get_stats(NULL)");
    INVALID(wtd_session_open_sibling(NULL, "/x", &s), "wtd_session_open_sibling(NULL)");
    CHECK(s == NULL, "no handle was written by any failing call");
    wtd_session_free(NULL);
    wtd_server_free(NULL);
    CHECK(1, "wtd_session_free(NULL) and wtd_server_free(NULL) are no-ops");
    CHECK(strcmp(wtd_draft_str(WTD_DRAFT_UNKNOWN), "unknown") == 0, "wtd_draft_str(UNKNOWN)");
}

static void test_options(void) {
    wtd_server_options so;
    wtd_client_options co;
    wtd_server *srv = NULL;
    wtd_session *s = NULL;
    char url[256];

    printf("# options\n");
    INVALID(wtd_server_options_default(NULL), "wtd_server_options_default(NULL)");
    INVALID(wtd_client_options_default(NULL), "wtd_client_options_default(NULL)");

    so.struct_size = sizeof(so);
    OK(wtd_server_options_default(&so), "server options default");
    CHECK(so.port == 4433 && so.host == NULL && so.cert_file == NULL && so.on_request == NULL,
          "server defaults: port 4433, host NULL, generated cert, no hooks");
    so.port = 0;
    so.host = "127.0.0.1";
    INVALID(wtd_server_new(&so, NULL), "wtd_server_new with out NULL");
    so.struct_size = 0;
    INVALID(wtd_server_new(&so, &srv), "server options with struct_size = 0");
    CHECK(strstr(last_msg, "struct_size") != NULL, "message names struct_size");
    so.struct_size = sizeof(so);
    OK(wtd_server_options_default(&so), "server options default");
    so.port = 0;
    so.host = "not-an-ip";
    INVALID(wtd_server_new(&so, &srv), "server host \"not-an-ip\"");
    so.host = "127.0.0.1";
    so.cert_file = "/nonexistent/cert.pem";
    INVALID(wtd_server_new(&so, &srv), "cert_file without key_file");
    so.cert_file = NULL;
    so.key_file = "/nonexistent/key.pem";
    INVALID(wtd_server_new(&so, &srv), "key_file without cert_file");
    so.cert_file = "/nonexistent/cert.pem";
    EXPECT(wtd_server_new(&so, &srv), WTD_ERR_TLS, "nonexistent cert/key files");
    so.cert_file = NULL;
    so.key_file = NULL;
    so.idle_timeout_ms = 0;
    INVALID(wtd_server_new(&so, &srv), "idle_timeout_ms = 0");
    so.idle_timeout_ms = 30000;
    so.incoming_queue_capacity = 0;
    INVALID(wtd_server_new(&so, &srv), "incoming_queue_capacity = 0");
    CHECK(srv == NULL, "no server handle written by any failing call");

    /* Port in use: bind a second server on the first one's port. */
    so.incoming_queue_capacity = 1024;
    so.port = port;
    EXPECT(wtd_server_new(&so, &srv), WTD_ERR_IO, "second server on the same port %u", port);

    co.struct_size = sizeof(co);
    OK(wtd_client_options_default(&co), "client options default");
    CHECK(co.struct_size == sizeof co && co.verify == WTD_VERIFY_SYSTEM_ROOTS &&
              co.connect_timeout_ms == 10000 && co.incoming_queue_capacity == 1024,
          "client defaults: system roots, 10 s connect timeout, queue 1024");
    url_for(url, sizeof url, "/");
    client_options(&co);
    INVALID(wtd_client_connect(url, &co, NULL), "wtd_client_connect with out NULL");
    co.struct_size = 0;
    INVALID(wtd_client_connect(url, &co, &s), "client options with struct_size = 0");
    client_options(&co);
    co.verify = 99;
    INVALID(wtd_client_connect(url, &co, &s), "verify = 99");
    client_options(&co);
    co.cert_hash_count = 0;
    INVALID(wtd_client_connect(url, &co, &s), "WTD_VERIFY_CERT_HASHES with cert_hash_count 0");
    client_options(&co);
    co.cert_hashes = NULL;
    INVALID(wtd_client_connect(url, &co, &s), "WTD_VERIFY_CERT_HASHES with cert_hashes NULL");
    /* Issue 9 item 13: count × 32 overflows size_t (0.1 built a slice from the wrapped length). */
    client_options(&co);
    co.cert_hash_count = SIZE_MAX / 16;
    INVALID(wtd_client_connect(url, &co, &s), "cert_hash_count = SIZE_MAX/16 (count x 32 overflows)");
    CHECK(strstr(wtd_last_error_message(), "too large") != NULL, "the message says why: %s",
          wtd_last_error_message());
    client_options(&co);
    co.cert_hash_count = (SIZE_MAX / 2) / 32 + 1;
    INVALID(wtd_client_connect(url, &co, &s), "cert_hash_count x 32 above PTRDIFF_MAX");
    client_options(&co);
    co.verify = WTD_VERIFY_CA_FILE;
    INVALID(wtd_client_connect(url, &co, &s), "WTD_VERIFY_CA_FILE without ca_file");
    co.ca_file = "/nonexistent/ca.pem";
    EXPECT(wtd_client_connect(url, &co, &s), WTD_ERR_TLS, "nonexistent ca_file");
    client_options(&co);
    co.connect_timeout_ms = 0;
    INVALID(wtd_client_connect(url, &co, &s), "connect_timeout_ms = 0");
    CHECK(s == NULL, "no session handle written by any failing call");
}

static void test_bad_urls(void) {
    static const char *bad[] = {"http://x/", "https://", "https://127.0.0.1:0/",
                                "https://127.0.0.1:99999/", "wss://127.0.0.1/", "https://h/a b", ""};
    wtd_client_options co;
    wtd_session *s = NULL;
    printf("# bad URLs\n");
    client_options(&co);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        INVALID(wtd_client_connect(bad[i], &co, &s), "URL \"%s\"", bad[i]);
    INVALID(wtd_client_connect(NULL, &co, &s), "URL NULL");
    CHECK(s == NULL, "no handle written");
}

static void test_connect_failures(void) {
    wtd_client_options co;
    wtd_session *s = NULL;
    char url[256];
    uint8_t wrong[32];
    wtd_result r;

    printf("# connect failures\n");
    url_for(url, sizeof url, "/");
    client_options(&co);
    memcpy(wrong, cert_hash, 32);
    wrong[0] ^= 0xff;
    co.cert_hashes = wrong;
    EXPECT(wtd_client_connect(url, &co, &s), WTD_ERR_TLS, "wrong pinned certificate hash");

    client_options(&co);
    url_for(url, sizeof url, "/forbidden/room");
    EXPECT(wtd_client_connect(url, &co, &s), WTD_ERR_REJECTED, "path refused by on_request with 403");
    CHECK(strstr(last_msg, "403") != NULL, "message mentions 403");
    url_for(url, sizeof url, "/forbidden");
    EXPECT(wtd_client_connect(url, &co, &s), WTD_ERR_REJECTED, "exact /forbidden refused too");

    /* A port with no server: the server's own port + 1 is very likely free; a failure is what
     * counts, and it must come within the connect timeout. */
    client_options(&co);
    co.connect_timeout_ms = 1000;
    snprintf(url, sizeof url, "https://127.0.0.1:%u/", port == 65535 ? 1 : port + 1);
    r = wtd_client_connect(url, &co, &s);
    snprintf(last_msg, sizeof last_msg, "%s", wtd_last_error_message());
    CHECK(r == WTD_ERR_TIMEOUT || r == WTD_ERR_CONNECTION,
          "no server at %s: TIMEOUT or CONNECTION (%s: %.200s)", url, wtd_result_str(r), last_msg);
    CHECK(s == NULL, "no handle written");
}

static void test_session_errors(void) {
    wtd_client_options co;
    wtd_session *c = NULL, *srv_s = NULL, *s2 = NULL;
    char url[256], text[64];
    uint8_t buf[64];
    size_t len = 0, n = 0, max = 0;
    uint32_t code = 0;
    uint8_t *big;
    wtd_datagram_buffer one = {buf, sizeof buf, 0};
    wtd_datagram_buffer null_data = {NULL, 16, 0};
    wtd_session_callbacks cbs;

    printf("# session errors\n");
    client_options(&co);
    url_for(url, sizeof url, "/errors");
    OK(wtd_client_connect(url, &co, &c), "connect %s", url);
    OK(wtd_server_accept(server, &srv_s, 5000), "server accepts");

    /* NULL out-pointers on a live handle. */
    INVALID(wtd_server_port(server, NULL), "wtd_server_port out NULL");
    INVALID(wtd_server_cert_hash(server, NULL), "wtd_server_cert_hash out NULL");
    INVALID(wtd_server_cert_hash_hex(server, NULL, 65), "wtd_server_cert_hash_hex buf NULL, cap 65");
    EXPECT(wtd_server_cert_hash_hex(server, text, 64), WTD_ERR_BUFFER_TOO_SMALL, "cert_hash_hex with cap 64 (needs 65)");
    INVALID(wtd_server_accept(server, NULL, 0), "wtd_server_accept out NULL");
    INVALID(wtd_session_id(c, NULL), "wtd_session_id out NULL");
    INVALID(wtd_session_draft(c, NULL), "wtd_session_draft out NULL");
    INVALID(wtd_session_is_closed(c, NULL), "wtd_session_is_closed out NULL");
    INVALID(wtd_session_is_draining(c, NULL), "wtd_session_is_draining out NULL");
    INVALID(wtd_session_max_datagram_size(c, NULL), "wtd_session_max_datagram_size out NULL");
    INVALID(wtd_session_get_stats(c, NULL), "wtd_session_get_stats out NULL");
    {
        /* Append-only: a caller built against API 0.2.0 (struct ends before
         * connection_receive_overflow) still works and gets only what it asked for. */
        wtd_session_stats old;
        memset(&old, 0xAB, sizeof old);
        old.struct_size = (uint32_t)offsetof(wtd_session_stats, connection_receive_overflow);
        OK(wtd_session_get_stats(c, &old), "session stats at the 0.2.0 size");
        CHECK(old.struct_size == offsetof(wtd_session_stats, connection_receive_overflow) &&
                  old.connection_receive_overflow == 0xABABABABABABABABull,
              "written up to the 0.2.0 size, nothing after it");
        old.struct_size -= 8;
        INVALID(wtd_session_get_stats(c, &old), "session stats below the first published size");
    }
    INVALID(wtd_session_path(c, NULL, 16, &len), "wtd_session_path buf NULL with cap 16");
    INVALID(wtd_session_origin(c, NULL, 16, &len), "wtd_session_origin buf NULL with cap 16");
    INVALID(wtd_session_receive(c, buf, sizeof buf, NULL, 0), "wtd_session_receive out_len NULL");
    INVALID(wtd_session_receive(c, NULL, 16, &len, 0), "wtd_session_receive buf NULL with cap 16");
    INVALID(wtd_session_receive_batch(c, NULL, 1, &n, 0), "wtd_session_receive_batch buffers NULL");
    INVALID(wtd_session_receive_batch(c, &one, 1, NULL, 0), "wtd_session_receive_batch out_count NULL");
    INVALID(wtd_session_receive_batch(c, &null_data, 1, &n, 0), "receive_batch with a buffer data NULL, capacity 16");
    INVALID(wtd_session_receive_batch(c, &one, SIZE_MAX / 8, &n, 0),
            "receive_batch with count x sizeof(wtd_datagram_buffer) overflowing");
    INVALID(wtd_session_open_sibling(c, "/x", NULL), "wtd_session_open_sibling out NULL");
    INVALID(wtd_session_open_sibling(c, NULL, &s2), "wtd_session_open_sibling path NULL");
    INVALID(wtd_session_open_sibling(c, "no-slash", &s2), "wtd_session_open_sibling path without '/'");
    INVALID(wtd_session_open_sibling(srv_s, "/x", &s2), "wtd_session_open_sibling on a server session");
    INVALID(wtd_session_send(c, NULL, 10), "wtd_session_send data NULL with len 10");
    memset(&cbs, 0, sizeof cbs);
    INVALID(wtd_session_set_callbacks(c, &cbs), "session callbacks with struct_size = 0");
    CHECK(s2 == NULL, "no sibling handle written");

    /* Wrong state. */
    EXPECT(wtd_session_close_info(c, &code, text, sizeof text, &len), WTD_ERR_INVALID_STATE,
           "close_info on an open session");

    /* Oversize. */
    OK(wtd_session_max_datagram_size(c, &max), "max_datagram_size (%zu)", max);
    big = calloc(1, 65536);
    CHECK(big != NULL, "allocate 65536 bytes");
    EXPECT(wtd_session_send(c, big, 65536), WTD_ERR_TOO_LARGE, "send of 65536 bytes");
    /* max + 1 is refused. Path MTU discovery only ever raises the limit, and may do so between
     * the read and the send: a send that goes through must come with a larger limit, and is
     * then tried again at the new one. */
    {
        wtd_result r = WTD_OK;
        for (int tries = 0; tries < 10 && r != WTD_ERR_TOO_LARGE; tries++) {
            size_t was = max;
            r = wtd_session_send(c, big, max + 1);
            OK(wtd_session_max_datagram_size(c, &max), "max_datagram_size again (%zu)", max);
            CHECK(r == WTD_ERR_TOO_LARGE || (r == WTD_OK && max > was),
                  "send of max_datagram_size + 1 (%zu): %s, limit now %zu", was + 1, wtd_result_str(r), max);
        }
        CHECK(r == WTD_ERR_TOO_LARGE, "send of max_datagram_size + 1 refused");
    }
    OK(wtd_session_send(c, big, max), "send of exactly max_datagram_size still works");
    free(big);

    /* After close. */
    OK(wtd_session_close(c, 3, "err"), "close");
    INVALID(wtd_session_close_info(c, NULL, text, sizeof text, &len), "close_info out_code NULL");
    EXPECT(wtd_session_close_info(c, &code, text, 2, &len), WTD_ERR_BUFFER_TOO_SMALL, "close_info reason buffer of 2 for \"err\"");
    CHECK(len == 3, "needed length 3 (%zu)", len);
    EXPECT(wtd_session_send(c, buf, 1), WTD_ERR_CLOSED, "send after close");
    EXPECT(wtd_session_open_sibling(c, "/x", &s2), WTD_ERR_CLOSED, "open_sibling on a closed session");
    OK(wtd_session_wait_closed(srv_s, 5000), "server side closed");

    /* Empty datagram (header: len == 0 → WTD_ERR_INVALID_ARGUMENT). On an open session. */
    {
        wtd_session *c2 = NULL, *s3 = NULL;
        url_for(url, sizeof url, "/empty");
        client_options(&co);
        OK(wtd_client_connect(url, &co, &c2), "connect %s", url);
        OK(wtd_server_accept(server, &s3, 5000), "server accepts");
        INVALID(wtd_session_send(c2, buf, 0), "send with len == 0");
        INVALID(wtd_session_send(c2, NULL, 0), "send with data NULL and len == 0");
        wtd_session_free(c2);
        wtd_session_free(s3);
    }
    wtd_session_free(c);
    wtd_session_free(srv_s);
}

/* Hardening options (appended to wtd_server_options in version 2) and protection counters:
 * defaults, zero values refused, an older caller's shorter struct still accepted, and a
 * per-IP connection cap that refuses and counts from C. */
static void test_hardening_options(void) {
    wtd_server_options so;
    wtd_server_stats st;
    wtd_client_options co;
    wtd_server *srv = NULL;
    wtd_session *a = NULL, *b = NULL;
    uint8_t hash[32];
    uint16_t p = 0;
    char url[256];

    printf("# hardening options\n");
    so.struct_size = sizeof(so);
    OK(wtd_server_options_default(&so), "server options default");
    CHECK(so.struct_size == sizeof so && so.accept_queue_capacity == 128 &&
              so.max_connections == 4096 && so.max_connections_per_ip == 64 &&
              so.settings_timeout_ms == 10000 && so.session_timeout_ms == 10000 &&
              so.header_timeout_ms == 10000,
          "hardening defaults: queue 128, 4096 connections, 64 per IP, 10 s deadlines");
    so.port = 0;
    so.host = "127.0.0.1";
#define ZERO_REFUSED(field)                                                          \
    do {                                                                             \
        uint32_t keep_ = so.field;                                                   \
        so.field = 0;                                                                \
        INVALID(wtd_server_new(&so, &srv), #field " = 0");                           \
        CHECK(strstr(last_msg, #field) != NULL, "message names " #field);            \
        so.field = keep_;                                                            \
    } while (0)
    ZERO_REFUSED(accept_queue_capacity);
    ZERO_REFUSED(max_connections);
    ZERO_REFUSED(max_connections_per_ip);
    ZERO_REFUSED(settings_timeout_ms);
    ZERO_REFUSED(session_timeout_ms);
    ZERO_REFUSED(header_timeout_ms);
#undef ZERO_REFUSED
    CHECK(srv == NULL, "no server handle written by a failing call");

    /* A caller compiled against the version-1 struct: the new fields are not read. */
    so.struct_size = (uint32_t)offsetof(wtd_server_options, accept_queue_capacity);
    so.accept_queue_capacity = 0;
    so.max_connections = 0;
    OK(wtd_server_new(&so, &srv), "version-1 struct_size (%u bytes) still accepted",
       so.struct_size);
    wtd_server_free(srv);
    srv = NULL;

    st.struct_size = sizeof(st);
    INVALID(wtd_server_get_stats(NULL, &st), "wtd_server_get_stats(NULL, ...)");
    INVALID(wtd_server_get_stats(server, NULL), "wtd_server_get_stats(server, NULL)");

    /* One connection per IP: a second client from 127.0.0.1 is refused and counted. */
    so.struct_size = sizeof(so);
    OK(wtd_server_options_default(&so), "server options default");
    so.port = 0;
    so.host = "127.0.0.1";
    so.max_connections_per_ip = 1;
    OK(wtd_server_new(&so, &srv), "server with max_connections_per_ip = 1");
    OK(wtd_server_port(srv, &p), "its port (%u)", p);
    OK(wtd_server_cert_hash(srv, hash), "its certificate hash");
    co.struct_size = sizeof(co);
    OK(wtd_client_options_default(&co), "client options default");
    co.verify = WTD_VERIFY_CERT_HASHES;
    co.cert_hashes = hash;
    co.cert_hash_count = 1;
    co.connect_timeout_ms = 5000;
    snprintf(url, sizeof url, "https://127.0.0.1:%u/a", p);
    OK(wtd_client_connect(url, &co, &a), "first connection");
    EXPECT(wtd_client_connect(url, &co, &b), WTD_ERR_CONNECTION,
           "second connection from the same IP refused");
    CHECK(b == NULL, "no session handle for the refused connection");
    memset(&st, 0, sizeof st);
    st.struct_size = sizeof(st);
    OK(wtd_server_get_stats(srv, &st), "server stats");
    CHECK(st.struct_size == sizeof st && st.refused_connections_per_ip == 1 &&
              st.refused_connections_global == 0,
          "refused_connections_per_ip = %llu", (unsigned long long)st.refused_connections_per_ip);
    wtd_session_free(a);
    OK(wtd_server_close(srv), "server close");
    wtd_server_free(srv);
}

int main(void) {
    wtd_server_options so;
    setvbuf(stdout, NULL, _IOLBF, 0);
    printf("# test_errors (wtd %s)\n", wtd_version());

    test_null_handles();

    so.struct_size = sizeof(so);
    OK(wtd_server_options_default(&so), "server options default");
    so.port = 0;
    so.host = "127.0.0.1";
    so.on_request = on_request;
    OK(wtd_server_new(&so, &server), "server on 127.0.0.1 port 0");
    OK(wtd_server_port(server, &port), "server port (%u)", port);
    OK(wtd_server_cert_hash(server, cert_hash), "server certificate hash");

    test_options();
    test_bad_urls();
    test_connect_failures();
    test_session_errors();
    test_hardening_options();

    OK(wtd_server_close(server), "server close");
    wtd_server_free(server);
    wtd_shutdown();
    printf("test_errors: all %d checks passed\n", checks);
    return EXIT_SUCCESS;
}
