/* ctest: the datagram transport C API (wtd_transport_*) over a real loopback session — every
 * export at least once, its error paths, and the semantics the C caller relies on (nothing lost
 * on BUFFER_TOO_SMALL / bad JSON, close wakes receivers, truthful counters). Uses only wtd.h. */
#include "wtd.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "check.h"

/* Waits (≤ 5 s) until `t` has at least `n` datagrams queued for reading. */
/* API 0.2 removed the per-field getters that get_stats / get_options already return. */
static wtd_datagram_stats t_stats(const wtd_transport *t) {
    wtd_datagram_stats s;
    memset(&s, 0, sizeof s);
    s.struct_size = sizeof s;
    CHECK_R(wtd_transport_get_stats(t, &s), WTD_OK);
    return s;
}

static wtd_transport_options t_opts(const wtd_transport *t) {
    wtd_transport_options o;
    memset(&o, 0, sizeof o);
    o.struct_size = sizeof o;
    CHECK_R(wtd_transport_get_options(t, &o), WTD_OK);
    return o;
}

static int wait_queued(wtd_transport *t, size_t n) {
    double until = now_s() + 5.0;
    size_t have = 0;
    while (now_s() < until) {
        if (wtd_transport_get_receive_buffer_size(t, &have) == WTD_OK && have >= n) return 1;
        sleep_ms(2);
    }
    fprintf(stderr, "wait_queued: %zu of %zu arrived\n", have, n);
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Setup: server on 127.0.0.1:0 and a client pinned to its certificate. */

static wtd_server *server;
static uint8_t cert_hash[32];
static uint16_t port;

static void start_server(void) {
    wtd_server_options so;
    so.struct_size = sizeof(so);
    CHECK_R(wtd_server_options_default(&so), WTD_OK);
    so.port = 0;
    so.host = "127.0.0.1";
    CHECK_R(wtd_server_new(&so, &server), WTD_OK);
    CHECK_R(wtd_server_port(server, &port), WTD_OK);
    CHECK_R(wtd_server_cert_hash(server, cert_hash), WTD_OK);
}

/* A client session on `path` and the server's end of it. */
static void connect_pair(const char *path, wtd_session **client, wtd_session **srv) {
    char url[128];
    snprintf(url, sizeof url, "https://127.0.0.1:%u%s", port, path);
    wtd_client_options co;
    co.struct_size = sizeof(co);
    CHECK_R(wtd_client_options_default(&co), WTD_OK);
    co.verify = WTD_VERIFY_CERT_HASHES;
    co.cert_hashes = cert_hash;
    co.cert_hash_count = 1;
    *client = NULL;
    *srv = NULL;
    CHECK_R(wtd_client_connect(url, &co, client), WTD_OK);
    CHECK_R(wtd_server_accept(server, srv, 5000), WTD_OK);
}

/* ------------------------------------------------------------------------------------------ */

static void test_null_handles(void) {
    uint8_t buf[16];
    char text[16];
    size_t n = 0;
    uint64_t u64;
    bool b;
    double d;
    wtd_transport *t = NULL;
    wtd_transport_options o;
    wtd_datagram_buffer db = {buf, sizeof buf, 0};
    wtd_datagram_view view = {buf, 1};
    wtd_datagram_metadata meta;
    wtd_queue_stats qs;
    wtd_datagram_stats st;
    wtd_issue issues[4];
    wtd_throughput_result tr;
    wtd_transport_callbacks cb;
    memset(&cb, 0, sizeof cb);
    cb.struct_size = sizeof cb;

    CHECK_R(wtd_transport_options_default(NULL), INV);
    CHECK_R(wtd_transport_new(NULL, NULL, &t), INV);
    CHECK(t == NULL);
    o.struct_size = sizeof(o);
    CHECK_R(wtd_transport_get_options(NULL, &o), INV);
    CHECK_R(wtd_transport_close(NULL, 0), INV);
    wtd_transport_free(NULL); /* no-op */
    CHECK_R(wtd_transport_send(NULL, buf, 1, 0, 0, -1), INV);
    CHECK_R(wtd_transport_try_send(NULL, buf, 1, 0, 0), INV);
    n = 99;
    CHECK_R(wtd_transport_send_multiple(NULL, &view, 1, 0, 0, &n), INV);
    CHECK(n == 0); /* out_accepted is written even on failure */
    CHECK_R(wtd_transport_send_json(NULL, "{}", 2, 0, 0, -1), INV);
    CHECK_R(wtd_transport_receive(NULL, buf, sizeof buf, &n, 0), INV);
    CHECK_R(wtd_transport_try_receive(NULL, buf, sizeof buf, &n), INV);
    CHECK_R(wtd_transport_receive_batch(NULL, &db, 1, &n, 0), INV);
    meta.struct_size = sizeof(meta);
    CHECK_R(wtd_transport_receive_with_metadata(NULL, buf, sizeof buf, &n, &meta, 0), INV);
    CHECK_R(wtd_transport_receive_json(NULL, text, sizeof text, &n, 0), INV);
    CHECK_R(wtd_transport_clear_receive_buffer(NULL, &n), INV);
    CHECK_R(wtd_transport_clear_send_buffer(NULL, &n), INV);
    CHECK_R(wtd_transport_get_receive_buffer_size(NULL, &n), INV);
    CHECK_R(wtd_transport_get_send_buffer_size(NULL, &n), INV);
    qs.struct_size = sizeof(qs);
    CHECK_R(wtd_transport_get_queue_stats(NULL, &qs), INV);
    st.struct_size = sizeof(st);
    CHECK_R(wtd_transport_get_stats(NULL, &st), INV);
    CHECK_R(wtd_transport_debug_state(NULL, text, sizeof text, &n), INV);
    CHECK_R(wtd_transport_diagnose_issues(NULL, issues, 4, &n), INV);
    CHECK_R(wtd_transport_diagnose_issues_json(NULL, text, sizeof text, &n), INV);
    CHECK_R(wtd_transport_start_heartbeat(NULL, 1000), INV);
    CHECK_R(wtd_transport_stop_heartbeat(NULL), INV);
    CHECK_R(wtd_transport_last_heartbeat_received(NULL, &d), INV);
    CHECK_R(wtd_transport_max_datagram_size(NULL, &n), INV);
    tr.struct_size = sizeof(tr);
    CHECK_R(wtd_transport_throughput_test(NULL, 10, 10, &tr), INV);
    CHECK_R(wtd_transport_set_callbacks(NULL, &cb), INV);
    CHECK_R(wtd_transport_is_closed(NULL, &b), INV);
    CHECK_R(wtd_transport_is_readable(NULL, &b), INV);
    CHECK_R(wtd_transport_is_writable(NULL, &b), INV);
    CHECK_R(wtd_transport_set_incoming_max_age(NULL, 5), INV);
    CHECK_R(wtd_transport_set_outgoing_max_age(NULL, 5), INV);
    CHECK_R(wtd_transport_send_sequence(NULL, &u64), INV);
    CHECK_R(wtd_transport_receive_sequence(NULL, &u64), INV);
    CHECK_R(wtd_transport_receive_sequence(NULL, &u64), INV);
    CHECK(strstr(wtd_last_error_message(), "transport is NULL") != NULL);

    CHECK(!wtd_is_heartbeat_datagram(NULL, 0));
    CHECK(!wtd_is_heartbeat_datagram(NULL, 10));
    CHECK_R(wtd_create_heartbeat_datagram(NULL, 5, &n), INV);
}

static void test_options(wtd_session *s) {
    wtd_transport_options o;
    wtd_transport *t = NULL;
    o.struct_size = sizeof(o);
    CHECK_R(wtd_transport_options_default(&o), WTD_OK);
    CHECK(o.struct_size == sizeof o);
    CHECK(o.outgoing_high_water_mark == 100 && o.incoming_high_water_mark == 0);
    CHECK(o.drop_policy == WTD_DROP_OLDEST && o.sender_timeout_ms == 1000);
    CHECK(o.incoming_max_age_ms == 0 && o.outgoing_max_age_ms == 0 && o.filter_heartbeats == 0);
    /* Invalid options are refused before the transport takes over the session. */
    wtd_transport_options bad = o;
    bad.drop_policy = 3;
    CHECK_R(wtd_transport_new(s, &bad, &t), INV);
    bad = o;
    bad.outgoing_high_water_mark = 0;
    CHECK_R(wtd_transport_new(s, &bad, &t), INV);
    bad = o;
    bad.filter_heartbeats = 2;
    CHECK_R(wtd_transport_new(s, &bad, &t), INV);
    bad = o;
    bad.struct_size = 0;
    CHECK_R(wtd_transport_new(s, &bad, &t), INV);
    CHECK_R(wtd_transport_new(s, &o, NULL), INV);
    CHECK(t == NULL);
}

static void test_properties(wtd_transport *ct, wtd_transport *st, wtd_session *cs) {
    uint64_t id = 0, sid = 0;
    size_t n = 0, smax = 0;
    bool b = true;
    CHECK_R(wtd_session_id(cs, &sid), WTD_OK);
    id = t_stats(ct).session_id; /* API 0.2: read from get_stats */
    CHECK(id == sid);
    id = t_stats(st).session_id; /* API 0.2: read from get_stats */
    CHECK(id == sid);
    CHECK_R(wtd_transport_max_datagram_size(ct, &n), WTD_OK);
    CHECK_R(wtd_session_max_datagram_size(cs, &smax), WTD_OK);
    CHECK(n > 1000 && n == smax);
    CHECK_R(wtd_transport_is_closed(ct, &b), WTD_OK);
    CHECK(!b);
    CHECK_R(wtd_transport_is_readable(ct, &b), WTD_OK);
    CHECK(b);
    CHECK_R(wtd_transport_is_writable(ct, &b), WTD_OK);
    CHECK(b);
    n = t_opts(ct).outgoing_high_water_mark; /* API 0.2: read from get_options */
    CHECK(n == 100);
    n = t_opts(st).outgoing_high_water_mark; /* API 0.2: read from get_options */
    CHECK(n == 64);
    wtd_transport_options o;
    o.struct_size = sizeof(o);
    CHECK_R(wtd_transport_get_options(st, &o), WTD_OK);
    CHECK(o.struct_size == sizeof o && o.outgoing_high_water_mark == 64);
    CHECK(o.incoming_high_water_mark == 64); /* 0 = same as outgoing */
    CHECK(o.drop_policy == WTD_DROP_OLDEST);
}

static void test_send_receive_metadata(wtd_transport *ct, wtd_transport *st) {
    uint8_t buf[256];
    size_t len = 0;
    wtd_datagram_metadata meta;
    CHECK_R(wtd_transport_send(ct, (const uint8_t *)"hello", 5, 0, 0, -1), WTD_OK);
    memset(&meta, 0x55, sizeof meta);
    meta.struct_size = sizeof(meta);
    CHECK_R(wtd_transport_receive_with_metadata(st, buf, sizeof buf, &len, &meta, 5000), WTD_OK);
    CHECK(len == 5 && memcmp(buf, "hello", 5) == 0);
    CHECK(meta.struct_size == sizeof meta);
    CHECK(meta.size == 5);
    /* SHA-256("hello") = 2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824 */
    CHECK(strcmp(meta.checksum, "2cf24dba") == 0);
    CHECK(meta.sequence >= 1);
    CHECK(meta.timestamp > 1.6e9);
    CHECK(meta.age >= 0.0 && meta.age < 5.0);
    CHECK(meta.receive_time >= 0.0 && meta.receive_time < 5.0);
    CHECK(meta.priority == 0 && meta.ttl_ms == 0 && meta.is_expired == 0);
    CHECK_R(wtd_transport_receive_with_metadata(st, buf, sizeof buf, &len, NULL, 0), INV);

    /* Nothing queued: poll → WOULD_BLOCK, short wait → TIMEOUT. */
    CHECK_R(wtd_transport_try_receive(st, buf, sizeof buf, &len), WTD_ERR_WOULD_BLOCK);
    CHECK_R(wtd_transport_receive(st, buf, sizeof buf, &len, 30), WTD_ERR_TIMEOUT);
    CHECK_R(wtd_transport_receive(st, buf, sizeof buf, NULL, 0), INV);
    CHECK_R(wtd_transport_receive(st, NULL, 8, &len, 0), INV);

    /* A datagram larger than the buffer stays queued, with its size reported. */
    CHECK_R(wtd_transport_try_send(ct, (const uint8_t *)"hello world", 11, 3, 1000), WTD_OK);
    CHECK(wait_queued(st, 1));
    len = 0;
    CHECK_R(wtd_transport_receive(st, buf, 4, &len, 5000), WTD_ERR_BUFFER_TOO_SMALL);
    CHECK(len == 11);
    len = 0;
    CHECK_R(wtd_transport_try_receive(st, NULL, 0, &len), WTD_ERR_BUFFER_TOO_SMALL);
    CHECK(len == 11);
    CHECK_R(wtd_transport_try_receive(st, buf, sizeof buf, &len), WTD_OK);
    CHECK(len == 11 && memcmp(buf, "hello world", 11) == 0);
    wtd_datagram_stats s;
    s.struct_size = sizeof(s);
    CHECK_R(wtd_transport_get_stats(st, &s), WTD_OK);
    CHECK(s.receive_errors == 0); /* a small buffer is not an error of the datagram */
    CHECK(s.datagrams_read == 2);

    /* Bad sends: empty, NULL data, oversize; each counted. */
    size_t max = 0;
    CHECK_R(wtd_transport_max_datagram_size(ct, &max), WTD_OK);
    /* max_datagram_size only grows (path MTU discovery), so "too large" uses a size no QUIC
     * datagram can have rather than max + 1, which may become valid a moment later. */
    const size_t too_big = 70000;
    uint8_t *big = calloc(1, too_big);
    wtd_datagram_stats before, after;
    before.struct_size = sizeof(before);
    CHECK_R(wtd_transport_get_stats(ct, &before), WTD_OK);
    CHECK_R(wtd_transport_send(ct, buf, 0, 0, 0, -1), INV);
    CHECK_R(wtd_transport_try_send(ct, NULL, 0, 0, 0), INV);
    CHECK_R(wtd_transport_send(ct, NULL, 5, 0, 0, -1), INV);
    CHECK_R(wtd_transport_send(ct, big, too_big, 0, 0, -1), WTD_ERR_TOO_LARGE);
    CHECK_R(wtd_transport_try_send(ct, big, too_big, 0, 0), WTD_ERR_TOO_LARGE);
    after.struct_size = sizeof(after);
    CHECK_R(wtd_transport_get_stats(ct, &after), WTD_OK);
    CHECK(after.dropped_too_large == before.dropped_too_large + 2);
    CHECK(after.send_failures == before.send_failures + 4); /* NULL data never reaches the queue */
    CHECK(after.datagrams_sent == before.datagrams_sent);
    /* The largest allowed size goes through. */
    CHECK_R(wtd_transport_send(ct, big, max, 0, 0, 0), WTD_OK);
    CHECK(wait_queued(st, 1));
    uint8_t *got = malloc(max);
    CHECK_R(wtd_transport_receive(st, got, max, &len, 5000), WTD_OK);
    CHECK(len == max);
    free(got);
    free(big);
}

static void test_json(wtd_transport *ct, wtd_transport *st) {
    char text[64];
    size_t len = 0;
    uint64_t sent_before = 0, sent_after = 0;
    const char *doc = "{ \"a\" : [1, 2] }";
    CHECK_R(wtd_transport_send_json(ct, doc, strlen(doc), 0, 0, -1), WTD_OK);
    CHECK(wait_queued(st, 1));
    /* Too small (11 chars + NUL needed): stays queued. */
    CHECK_R(wtd_transport_receive_json(st, text, 4, &len, 5000), WTD_ERR_BUFFER_TOO_SMALL);
    CHECK(len == 11);
    CHECK_R(wtd_transport_receive_json(st, NULL, 0, &len, 0), WTD_ERR_BUFFER_TOO_SMALL);
    CHECK(len == 11);
    CHECK_R(wtd_transport_receive_json(st, text, 12, &len, 0), WTD_OK);
    CHECK(len == 11 && strcmp(text, "{\"a\":[1,2]}") == 0);

    /* Invalid JSON / UTF-8: SERIALIZATION, nothing sent. */
    sent_before = t_stats(ct).datagrams_sent; /* API 0.2: read from get_stats */
    CHECK_R(wtd_transport_send_json(ct, "{oops", 5, 0, 0, -1), WTD_ERR_SERIALIZATION);
    CHECK_R(wtd_transport_send_json(ct, "\"\xff\xfe\"", 4, 0, 0, -1), WTD_ERR_SERIALIZATION);
    CHECK_R(wtd_transport_send_json(ct, NULL, 0, 0, 0, -1), WTD_ERR_SERIALIZATION);
    sent_after = t_stats(ct).datagrams_sent; /* API 0.2: read from get_stats */
    CHECK(sent_after == sent_before);
    size_t queued = 1;
    CHECK_R(wtd_transport_get_send_buffer_size(ct, &queued), WTD_OK);
    CHECK(queued == 0);

    /* A datagram that is not JSON stays readable after receive_json refuses it. */
    CHECK_R(wtd_transport_send(ct, (const uint8_t *)"not json", 8, 0, 0, -1), WTD_OK);
    CHECK_R(wtd_transport_receive_json(st, text, sizeof text, &len, 5000), WTD_ERR_SERIALIZATION);
    uint8_t raw[64];
    CHECK_R(wtd_transport_try_receive(st, raw, sizeof raw, &len), WTD_OK);
    CHECK(len == 8 && memcmp(raw, "not json", 8) == 0);
    wtd_datagram_stats s;
    s.struct_size = sizeof(s);
    CHECK_R(wtd_transport_get_stats(st, &s), WTD_OK);
    CHECK(s.receive_errors == 1);
}

static void test_batches_and_queues(wtd_transport *ct, wtd_transport *st) {
    char payloads[5][4];
    wtd_datagram_view views[5];
    for (int i = 0; i < 5; i++) {
        snprintf(payloads[i], sizeof payloads[i], "m%d", i);
        views[i].data = (const uint8_t *)payloads[i];
        views[i].len = 2;
    }
    size_t accepted = 99;
    CHECK_R(wtd_transport_send_multiple(ct, views, 5, 0, 0, &accepted), WTD_OK);
    CHECK(accepted == 5);
    CHECK_R(wtd_transport_send_multiple(ct, views, 0, 0, 0, &accepted), WTD_OK);
    CHECK(accepted == 0);
    CHECK_R(wtd_transport_send_multiple(ct, views, 5, 0, 0, NULL), INV);
    CHECK(wait_queued(st, 5));

    wtd_queue_stats qs;
    qs.struct_size = sizeof(qs);
    CHECK_R(wtd_transport_get_queue_stats(st, &qs), WTD_OK);
    CHECK(qs.struct_size == sizeof qs);
    CHECK(qs.incoming.size == 5 && qs.incoming.max_size == 64);
    CHECK(qs.incoming.class_count == 1 && qs.incoming.other_count == 0);
    CHECK(qs.incoming.classes[0].priority == 0 && qs.incoming.classes[0].count == 5);
    CHECK(qs.outgoing.max_size == 64 && qs.outgoing.size == 0);
    size_t n = 0;
    CHECK_R(wtd_transport_get_receive_buffer_size(st, &n), WTD_OK);
    CHECK(n == 5);

    uint8_t store[8][64];
    wtd_datagram_buffer bufs[8];
    for (int i = 0; i < 8; i++) bufs[i] = (wtd_datagram_buffer){store[i], sizeof store[i], 0};
    size_t count = 0;
    CHECK_R(wtd_transport_receive_batch(st, bufs, 8, &count, 0), WTD_OK);
    CHECK(count == 5);
    for (size_t i = 0; i < count && i < 5; i++)
        CHECK(bufs[i].len == 2 && memcmp(bufs[i].data, payloads[i], 2) == 0);
    CHECK_R(wtd_transport_receive_batch(st, bufs, 8, &count, 0), WTD_ERR_WOULD_BLOCK);
    CHECK_R(wtd_transport_receive_batch(st, bufs, 0, &count, 0), INV);
    CHECK_R(wtd_transport_receive_batch(st, NULL, 8, &count, 0), INV);

    /* Too small a first buffer: WOULD stay queued, its size in buffers[0].len. */
    CHECK_R(wtd_transport_send(ct, (const uint8_t *)"0123456789", 10, 0, 0, -1), WTD_OK);
    CHECK(wait_queued(st, 1));
    bufs[0].capacity = 4;
    CHECK_R(wtd_transport_receive_batch(st, bufs, 8, &count, 1000), WTD_ERR_BUFFER_TOO_SMALL);
    CHECK(bufs[0].len == 10);
    bufs[0].capacity = sizeof store[0];
    CHECK_R(wtd_transport_receive_batch(st, bufs, 8, &count, 1000), WTD_OK);
    CHECK(count == 1 && bufs[0].len == 10);

    /* send_multiple stops at the first failure and reports how many were accepted. */
    views[2].len = 0;
    CHECK_R(wtd_transport_send_multiple(ct, views, 5, 0, 0, &accepted), INV);
    CHECK(accepted == 2);
    views[2].len = 2;
    views[3].data = NULL; /* invalid item: refused before anything is sent */
    CHECK_R(wtd_transport_send_multiple(ct, views, 5, 0, 0, &accepted), INV);
    CHECK(accepted == 0);
    CHECK(wait_queued(st, 2));
    sleep_ms(50);
    size_t cleared = 0;
    CHECK_R(wtd_transport_clear_receive_buffer(st, &cleared), WTD_OK);
    CHECK(cleared == 2);
    CHECK_R(wtd_transport_clear_receive_buffer(st, NULL), WTD_OK);
    CHECK_R(wtd_transport_clear_send_buffer(ct, &cleared), WTD_OK);
    CHECK(cleared == 0);
    wtd_datagram_stats s;
    s.struct_size = sizeof(s);
    CHECK_R(wtd_transport_get_stats(st, &s), WTD_OK);
    CHECK(s.cleared_incoming == 2 && s.receive_drops == 2);
}

static void test_max_age(wtd_transport *ct, wtd_transport *st) {
    uint32_t ms = 1;
    ms = t_opts(st).incoming_max_age_ms; /* API 0.2: read from get_options */
    CHECK(ms == 0);
    CHECK_R(wtd_transport_set_incoming_max_age(st, 50), WTD_OK);
    ms = t_opts(st).incoming_max_age_ms; /* API 0.2: read from get_options */
    CHECK(ms == 50);
    CHECK_R(wtd_transport_send(ct, (const uint8_t *)"old", 3, 0, 0, -1), WTD_OK);
    CHECK(wait_queued(st, 1));
    sleep_ms(120);
    uint8_t buf[16];
    size_t len = 0;
    CHECK_R(wtd_transport_try_receive(st, buf, sizeof buf, &len), WTD_ERR_WOULD_BLOCK);
    wtd_datagram_stats s;
    s.struct_size = sizeof(s);
    CHECK_R(wtd_transport_get_stats(st, &s), WTD_OK);
    CHECK(s.expired_incoming == 1);
    CHECK_R(wtd_transport_set_incoming_max_age(st, 0), WTD_OK);
    ms = t_opts(st).incoming_max_age_ms; /* API 0.2: read from get_options */
    CHECK(ms == 0);

    CHECK_R(wtd_transport_set_outgoing_max_age(ct, 30), WTD_OK);
    ms = t_opts(ct).outgoing_max_age_ms; /* API 0.2: read from get_options */
    CHECK(ms == 30);
    CHECK_R(wtd_transport_set_outgoing_max_age(ct, 0), WTD_OK);
    ms = t_opts(ct).outgoing_max_age_ms; /* API 0.2: read from get_options */
    CHECK(ms == 0);
}

/* Callbacks: counters shared with the runtime thread. */
typedef struct {
    pthread_mutex_t mu;
    wtd_transport *expected;
    int received, sent, wrong_handle;
    size_t received_bytes, sent_bytes;
    wtd_result blocking_in_callback, poll_in_callback;
} cb_state;

static void on_received(void *ud, wtd_transport *t, const uint8_t *data, size_t len) {
    cb_state *c = ud;
    uint8_t buf[64];
    size_t n = 0;
    /* Blocking calls are refused on a callback thread; polling is fine. */
    wtd_result blocking = wtd_transport_receive(t, buf, sizeof buf, &n, 1000);
    wtd_result poll = wtd_transport_try_receive(t, buf, sizeof buf, &n);
    pthread_mutex_lock(&c->mu);
    if (t != c->expected || data == NULL) c->wrong_handle++;
    c->received++;
    c->received_bytes += len;
    c->blocking_in_callback = blocking;
    c->poll_in_callback = poll;
    pthread_mutex_unlock(&c->mu);
}

static void on_sent(void *ud, wtd_transport *t, size_t size) {
    cb_state *c = ud;
    pthread_mutex_lock(&c->mu);
    if (t != c->expected) c->wrong_handle++;
    c->sent++;
    c->sent_bytes += size;
    pthread_mutex_unlock(&c->mu);
}

static int wait_count(cb_state *c, const int *field, int want) {
    double until = now_s() + 5.0;
    while (now_s() < until) {
        pthread_mutex_lock(&c->mu);
        int have = *field;
        pthread_mutex_unlock(&c->mu);
        if (have >= want) return 1;
        sleep_ms(2);
    }
    return 0;
}

static void test_callbacks(wtd_transport *ct, wtd_transport *st) {
    cb_state rx, tx;
    memset(&rx, 0, sizeof rx);
    memset(&tx, 0, sizeof tx);
    pthread_mutex_init(&rx.mu, NULL);
    pthread_mutex_init(&tx.mu, NULL);
    rx.expected = st;
    tx.expected = ct;
    wtd_transport_callbacks cb = {sizeof cb, 0, on_received, NULL, &rx};
    CHECK_R(wtd_transport_set_callbacks(st, &cb), WTD_OK);
    wtd_transport_callbacks cb2 = {sizeof cb2, 0, NULL, on_sent, &tx};
    CHECK_R(wtd_transport_set_callbacks(ct, &cb2), WTD_OK);
    wtd_transport_callbacks bad = {0, 0, NULL, NULL, NULL};
    CHECK_R(wtd_transport_set_callbacks(ct, &bad), INV);

    for (int i = 0; i < 3; i++) CHECK_R(wtd_transport_send(ct, (const uint8_t *)"cb", 2, 0, 0, -1), WTD_OK);
    CHECK(wait_count(&rx, &rx.received, 3));
    CHECK(wait_count(&tx, &tx.sent, 3));
    pthread_mutex_lock(&rx.mu);
    CHECK(rx.received == 3 && rx.received_bytes == 6 && rx.wrong_handle == 0);
    CHECK(rx.blocking_in_callback == WTD_ERR_INVALID_STATE);
    CHECK(rx.poll_in_callback == WTD_ERR_WOULD_BLOCK);
    pthread_mutex_unlock(&rx.mu);
    pthread_mutex_lock(&tx.mu);
    CHECK(tx.sent == 3 && tx.sent_bytes == 6 && tx.wrong_handle == 0);
    pthread_mutex_unlock(&tx.mu);
    size_t n = 1;
    CHECK_R(wtd_transport_get_receive_buffer_size(st, &n), WTD_OK);
    CHECK(n == 0); /* callback datagrams skip the queue */

    CHECK_R(wtd_transport_set_callbacks(st, NULL), WTD_OK);
    CHECK_R(wtd_transport_set_callbacks(ct, NULL), WTD_OK);
    /* Back to the queue. */
    CHECK_R(wtd_transport_send(ct, (const uint8_t *)"q", 1, 0, 0, -1), WTD_OK);
    uint8_t buf[8];
    CHECK_R(wtd_transport_receive(st, buf, sizeof buf, &n, 5000), WTD_OK);
    CHECK(n == 1 && buf[0] == 'q');
    pthread_mutex_lock(&rx.mu);
    CHECK(rx.received == 3);
    pthread_mutex_unlock(&rx.mu);
    pthread_mutex_destroy(&rx.mu);
    pthread_mutex_destroy(&tx.mu);
}

static void test_heartbeat(wtd_transport *ct, wtd_transport *st) {
    uint8_t buf[64];
    size_t len = 0;
    double last = -1;
    CHECK_R(wtd_transport_last_heartbeat_received(st, &last), WTD_OK);
    CHECK(last == 0.0);
    CHECK_R(wtd_transport_start_heartbeat(ct, 0), INV);
    CHECK_R(wtd_transport_start_heartbeat(ct, 3600 * 1000), WTD_OK); /* first beat at once */
    CHECK_R(wtd_transport_receive(st, buf, sizeof buf, &len, 5000), WTD_OK);
    CHECK(len > 10 && memcmp(buf, "HEARTBEAT:", 10) == 0);
    CHECK(wtd_is_heartbeat_datagram(buf, len));
    CHECK_R(wtd_transport_last_heartbeat_received(st, &last), WTD_OK);
    CHECK(last > 1.6e9);
    CHECK_R(wtd_transport_stop_heartbeat(ct), WTD_OK);
    CHECK_R(wtd_transport_stop_heartbeat(ct), WTD_OK);

    CHECK_R(wtd_create_heartbeat_datagram(buf, sizeof buf, &len), WTD_OK);
    CHECK(len > 10 && len < 32 && memcmp(buf, "HEARTBEAT:", 10) == 0);
    CHECK(wtd_is_heartbeat_datagram(buf, len));
    CHECK(!wtd_is_heartbeat_datagram(buf, 9));
    CHECK(!wtd_is_heartbeat_datagram((const uint8_t *)"hello", 5));
    size_t need = 0;
    CHECK_R(wtd_create_heartbeat_datagram(buf, 4, &need), WTD_ERR_BUFFER_TOO_SMALL);
    CHECK(need == len);
}

static void test_reports(wtd_transport *ct, wtd_transport *st) {
    size_t need = 0;
    CHECK_R(wtd_transport_debug_state(st, NULL, 0, &need), WTD_ERR_BUFFER_TOO_SMALL);
    CHECK(need > 50);
    char *text = malloc(need + 1024);
    size_t len = 0;
    CHECK_R(wtd_transport_debug_state(st, text, need + 1024, &len), WTD_OK);
    CHECK(strlen(text) == len);
    const char *keys[] = {"\"transport\"", "\"statistics\"", "\"queues\"", "\"configuration\"",
                          "\"sequences\""};
    for (size_t i = 0; i < 5; i++) CHECK(strstr(text, keys[i]) != NULL);
    free(text);

    wtd_issue issues[8];
    size_t count = 99;
    CHECK_R(wtd_transport_diagnose_issues(ct, issues, 8, &count), WTD_OK);
    CHECK(count < 8);
    for (size_t i = 0; i < count && i < 8; i++) CHECK(issues[i] != WTD_ISSUE_CLOSED);
    CHECK_R(wtd_transport_diagnose_issues(ct, NULL, 8, &count), INV);
    char js[1024];
    CHECK_R(wtd_transport_diagnose_issues_json(ct, js, sizeof js, &len), WTD_OK);
    CHECK(js[0] == '[' && js[len - 1] == ']');

    /* Counters agree with the stats struct. */
    wtd_datagram_stats s;
    uint64_t v = 0;
    s.struct_size = sizeof(s);
    CHECK_R(wtd_transport_get_stats(ct, &s), WTD_OK);
    CHECK(s.struct_size == sizeof s);
    CHECK(s.datagrams_sent > 10 && s.bytes_sent > 0);
    v = t_stats(ct).datagrams_sent; /* API 0.2: read from get_stats */
    CHECK(v == s.datagrams_sent);
    v = t_stats(ct).bytes_sent; /* API 0.2: read from get_stats */
    CHECK(v == s.bytes_sent);
    CHECK_R(wtd_transport_send_sequence(ct, &v), WTD_OK);
    CHECK(v >= s.datagrams_sent);
    CHECK(s.send_success_rate > 0.0 && s.send_success_rate <= 1.0);
    CHECK(s.min_datagram_size >= 1 && s.max_datagram_size >= s.min_datagram_size);
    CHECK(s.avg_datagram_size > 0.0);
    CHECK(s.session_id == 0 || s.session_id > 0);
    CHECK(s.created_at > 1.6e9);
    s.struct_size = sizeof(s);
    CHECK_R(wtd_transport_get_stats(st, &s), WTD_OK);
    v = t_stats(st).datagrams_received; /* API 0.2: read from get_stats */
    CHECK(v == s.datagrams_received);
    v = t_stats(st).bytes_received; /* API 0.2: read from get_stats */
    CHECK(v == s.bytes_received);
    CHECK_R(wtd_transport_receive_sequence(st, &v), WTD_OK);
    CHECK(v == s.datagrams_received);
    CHECK(s.datagrams_read + s.receive_drops == s.datagrams_received);
}

/* REJECT_NEW with a 1-datagram queue: a burst faster than QUIC drains is refused with
 * WOULD_BLOCK, and every refusal is counted. Then the throughput test on the same transport. */
static void test_reject_new_and_throughput(void) {
    wtd_session *cs = NULL, *ss = NULL;
    connect_pair("/flood", &cs, &ss);
    wtd_transport_options o;
    o.struct_size = sizeof(o);
    wtd_transport_options_default(&o);
    o.drop_policy = WTD_DROP_REJECT_NEW;
    o.outgoing_high_water_mark = 1;
    wtd_transport *ft = NULL;
    CHECK_R(wtd_transport_new(cs, &o, &ft), WTD_OK);
    size_t max = 0;
    CHECK_R(wtd_transport_max_datagram_size(ft, &max), WTD_OK);
    uint8_t *payload = calloc(1, max);
    unsigned long ok = 0, would_block = 0, other = 0;
    double until = now_s() + 10.0;
    while (would_block < 3 && now_s() < until) {
        wtd_result r = wtd_transport_try_send(ft, payload, max, 0, 0);
        if (r == WTD_OK) ok++;
        else if (r == WTD_ERR_WOULD_BLOCK) would_block++;
        else other++;
    }
    CHECK(would_block == 3);
    CHECK(other == 0);
    size_t queued = 9;
    CHECK_R(wtd_transport_get_send_buffer_size(ft, &queued), WTD_OK);
    CHECK(queued <= 1);
    wtd_datagram_stats s;
    s.struct_size = sizeof(s);
    CHECK_R(wtd_transport_get_stats(ft, &s), WTD_OK);
    CHECK(s.rejected_full == would_block);
    CHECK(s.send_failures == would_block);
    CHECK(s.dropped_full == 0); /* REJECT_NEW never evicts */
    size_t cleared = 9;
    CHECK_R(wtd_transport_clear_send_buffer(ft, &cleared), WTD_OK);
    CHECK(cleared <= 1);

    wtd_throughput_result tr;
    tr.struct_size = sizeof(tr);
    CHECK_R(wtd_transport_throughput_test(ft, 0, 100, &tr), INV);
    CHECK_R(wtd_transport_throughput_test(ft, 100, 0, &tr), WTD_ERR_TOO_LARGE);
    CHECK_R(wtd_transport_throughput_test(ft, 100, 70000, &tr), WTD_ERR_TOO_LARGE);
    CHECK_R(wtd_transport_throughput_test(ft, 100, 100, NULL), INV);
    tr.struct_size = sizeof(tr);
    CHECK_R(wtd_transport_throughput_test(ft, 200, 100, &tr), WTD_OK);
    CHECK(tr.struct_size == sizeof tr);
    CHECK(tr.duration >= 0.2 && tr.duration < 5.0);
    CHECK(tr.datagrams_sent > 0 && tr.attempts > 0);
    CHECK(tr.throughput_dps > 0.0);
    double ratio = tr.throughput_bps / (tr.throughput_dps * 800.0);
    CHECK(ratio > 0.999999 && ratio < 1.000001);
    CHECK(tr.error_rate >= 0.0 && tr.error_rate <= 1.0);
    printf("flood: %lu accepted before WOULD_BLOCK; throughput test: %llu sent, %.0f dps, "
           "%llu errors\n",
           ok, (unsigned long long)tr.datagrams_sent, tr.throughput_dps,
           (unsigned long long)tr.errors);
    free(payload);

    /* A transport on a closed session is refused. */
    CHECK_R(wtd_transport_close(ft, 0), WTD_OK);
    wtd_transport_free(ft);
    CHECK_R(wtd_session_close(cs, 0, "bye"), WTD_OK);
    wtd_transport *late = NULL;
    CHECK_R(wtd_transport_new(cs, NULL, &late), WTD_ERR_CLOSED);
    CHECK(late == NULL);
    wtd_session_free(cs);
    wtd_session_free(ss);
}

typedef struct {
    wtd_transport *t;
    wtd_result r;
} recv_arg;

static void *blocked_receiver(void *p) {
    recv_arg *a = p;
    uint8_t buf[64];
    size_t len = 0;
    a->r = wtd_transport_receive(a->t, buf, sizeof buf, &len, -1);
    return NULL;
}

/* API 0.2 growable output structs: the library reads the caller's struct_size first and writes
 * at most that many bytes, reporting what it wrote. A struct_size below the first published size
 * (0 = forgotten) is refused before anything is written; a newer caller's bigger struct gets the
 * library's fields and keeps its tail. */
static void test_struct_size(wtd_transport *st) {
    struct {
        wtd_datagram_stats s;
        unsigned char canary[64];
    } box;
    const uint32_t short_size = (uint32_t)offsetof(wtd_datagram_stats, bytes_received);
    size_t untouched = 0;
    const unsigned char *bytes = (const unsigned char *)&box;
    printf("# struct_size\n");
    memset(&box, 0xAB, sizeof box);
    box.s.struct_size = short_size;
    CHECK_R(wtd_transport_get_stats(st, &box.s), INV);
    CHECK(strstr(wtd_last_error_message(), "struct_size") != NULL);
    while (untouched + 4 < sizeof box && bytes[4 + untouched] == 0xAB) untouched++;
    CHECK(untouched + 4 == sizeof box); /* nothing written on the refusal */
    box.s.struct_size = 0;
    CHECK_R(wtd_transport_get_stats(st, &box.s), INV);
    {
        struct {
            wtd_datagram_stats s;
            uint64_t appended_later[4];
        } big;
        memset(&big, 0xCD, sizeof big);
        big.s.struct_size = sizeof big;
        CHECK_R(wtd_transport_get_stats(st, &big.s), WTD_OK);
        CHECK(big.s.struct_size == sizeof big.s);
        CHECK(big.appended_later[0] == 0xCDCDCDCDCDCDCDCDull &&
              big.appended_later[3] == 0xCDCDCDCDCDCDCDCDull);
    }
    {
        struct {
            wtd_transport_options o;
            uint32_t appended_later[4];
        } big;
        memset(&big, 0xCD, sizeof big);
        big.o.struct_size = sizeof big;
        CHECK_R(wtd_transport_options_default(&big.o), WTD_OK);
        CHECK(big.o.struct_size == sizeof big.o && big.appended_later[0] == 0xCDCDCDCDu);
        CHECK(big.o.outgoing_high_water_mark == 100);
    }
}

static void test_close(wtd_transport *ct, wtd_transport *st) {
    size_t n = 0;
    CHECK_R(wtd_transport_clear_receive_buffer(st, &n), WTD_OK);
    recv_arg a = {st, WTD_OK};
    pthread_t th;
    CHECK(pthread_create(&th, NULL, blocked_receiver, &a) == 0);
    sleep_ms(200); /* let it block (if it has not yet, close before receive → CLOSED too) */
    CHECK_R(wtd_transport_close(st, 0), WTD_OK);
    pthread_join(th, NULL);
    CHECK(a.r == WTD_ERR_CLOSED);
    CHECK_R(wtd_transport_close(st, 0), WTD_OK); /* idempotent */

    bool b = false;
    CHECK_R(wtd_transport_is_closed(st, &b), WTD_OK);
    CHECK(b);
    CHECK_R(wtd_transport_is_writable(st, &b), WTD_OK);
    CHECK(!b);
    CHECK_R(wtd_transport_send(st, (const uint8_t *)"x", 1, 0, 0, -1), WTD_ERR_CLOSED);
    CHECK_R(wtd_transport_try_send(st, (const uint8_t *)"x", 1, 0, 0), WTD_ERR_CLOSED);
    CHECK_R(wtd_transport_send_json(st, "{}", 2, 0, 0, -1), WTD_ERR_CLOSED);
    CHECK_R(wtd_transport_start_heartbeat(st, 1000), WTD_ERR_CLOSED);
    uint8_t buf[8];
    CHECK_R(wtd_transport_try_receive(st, buf, sizeof buf, &n), WTD_ERR_CLOSED);

    wtd_issue issues[8];
    size_t count = 0;
    int closed = 0;
    CHECK_R(wtd_transport_diagnose_issues(st, NULL, 0, &count), WTD_ERR_BUFFER_TOO_SMALL);
    CHECK(count >= 1);
    CHECK_R(wtd_transport_diagnose_issues(st, issues, 8, &count), WTD_OK);
    for (size_t i = 0; i < count; i++) closed += issues[i] == WTD_ISSUE_CLOSED;
    CHECK(closed == 1);
    char js[1024];
    CHECK_R(wtd_transport_diagnose_issues_json(st, js, sizeof js, NULL), WTD_OK);
    CHECK(strstr(js, "closed") != NULL);

    /* Close with flush on the client; later sends fail. */
    CHECK_R(wtd_transport_send(ct, (const uint8_t *)"last", 4, 0, 0, -1), WTD_OK);
    CHECK_R(wtd_transport_close(ct, 500), WTD_OK);
    CHECK_R(wtd_transport_send(ct, (const uint8_t *)"x", 1, 0, 0, -1), WTD_ERR_CLOSED);
    size_t accepted = 9;
    wtd_datagram_view v = {(const uint8_t *)"x", 1};
    CHECK_R(wtd_transport_send_multiple(ct, &v, 1, 0, 0, &accepted), WTD_ERR_CLOSED);
    CHECK(accepted == 0);
}

int main(void) {
    test_null_handles();
    start_server();
    wtd_session *cs = NULL, *ss = NULL;
    connect_pair("/t", &cs, &ss);
    if (!cs || !ss) {
        fprintf(stderr, "no session; giving up\n");
        return 1;
    }
    test_options(ss);

    wtd_transport *ct = NULL, *st = NULL;
    CHECK_R(wtd_transport_new(cs, NULL, &ct), WTD_OK);
    wtd_transport_options o;
    o.struct_size = sizeof(o);
    CHECK_R(wtd_transport_options_default(&o), WTD_OK);
    o.outgoing_high_water_mark = 64;
    CHECK_R(wtd_transport_new(ss, &o, &st), WTD_OK);
    if (!ct || !st) {
        fprintf(stderr, "no transport; giving up\n");
        return 1;
    }

    test_struct_size(st);
    test_properties(ct, st, cs);
    test_send_receive_metadata(ct, st);
    test_json(ct, st);
    test_batches_and_queues(ct, st);
    test_max_age(ct, st);
    test_callbacks(ct, st);
    test_heartbeat(ct, st);
    test_reports(ct, st);
    test_reject_new_and_throughput();
    test_close(ct, st);

    wtd_transport_free(ct);
    wtd_transport_free(st);
    wtd_session_free(cs);
    wtd_session_free(ss);
    CHECK_R(wtd_server_close(server), WTD_OK);
    wtd_server_free(server);
    wtd_shutdown();

    if (failures) {
        fprintf(stderr, "%d check(s) failed\n", failures);
        return 1;
    }
    printf("test_transport: all checks passed\n");
    return 0;
}
