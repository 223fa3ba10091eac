/* Handle lifetimes under concurrency (issue 9 items 11–12), run under ASan/UBSan by ctest:
 *  - after wtd_session_set_callbacks(s, NULL) returns, no old callback runs: the test frees the
 *    callback's user_data right away while a callback was in flight (ASan: heap-use-after-free
 *    if the library returned early);
 *  - wtd_session_free while another thread blocks in wtd_session_receive(-1) or
 *    wtd_session_wait_closed(-1): the blocked calls return, no invalid access;
 *  - wtd_session_free before wtd_transport_free: a receive blocked on the transport returns
 *    WTD_ERR_CLOSED instead of waiting forever. */
#define _POSIX_C_SOURCE 200809L
#include "wtd.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "check.h"

static wtd_server *server;
static uint16_t port;
static uint8_t cert_hash[32];

static void pair(wtd_session **client, wtd_session **srv) {
    wtd_client_options o;
    char url[128];
    o.struct_size = sizeof(o);
    wtd_client_options_default(&o);
    o.verify = WTD_VERIFY_CERT_HASHES, o.cert_hashes = cert_hash, o.cert_hash_count = 1;
    snprintf(url, sizeof url, "https://127.0.0.1:%u/life", port);
    CHECK_R(wtd_client_connect(url, &o, client), WTD_OK);
    CHECK_R(wtd_server_accept(server, srv, 5000), WTD_OK);
}

/* ---- set_callbacks(NULL) waits for a callback in flight ------------------------------------ */

struct slow_state {
    atomic_int entered;
    long writes;
};

static void slow_cb(void *user_data, wtd_session *s, const uint8_t *d, size_t len) {
    (void)s, (void)d, (void)len;
    struct slow_state *st = user_data;
    atomic_store(&st->entered, 1);
    sleep_ms(200);  /* the main thread clears the callbacks meanwhile */
    st->writes++;   /* use-after-free here if set_callbacks returned early */
}

static void test_set_callbacks_null_waits_for_running_callback(void) {
    wtd_session *c = NULL, *s = NULL;
    printf("# set_callbacks(NULL) returns only after a running callback returned\n");
    pair(&c, &s);
    struct slow_state *st = calloc(1, sizeof *st);
    wtd_session_callbacks cb = {sizeof cb, 0, slow_cb, NULL, st};
    CHECK_R(wtd_session_set_callbacks(s, &cb), WTD_OK);
    uint8_t d[8] = {1};
    CHECK_R(wtd_session_send(c, d, sizeof d), WTD_OK);
    double t0 = now_s();
    while (!atomic_load(&st->entered) && now_s() - t0 < 5) sleep_ms(1);
    CHECK(atomic_load(&st->entered));
    double t1 = now_s();
    CHECK_R(wtd_session_set_callbacks(s, NULL), WTD_OK);
    CHECK(now_s() - t1 > 0.1); /* it waited for the 200 ms callback */
    CHECK(st->writes == 1);
    free(st); /* no callback may touch it any more */
    CHECK_R(wtd_session_send(c, d, sizeof d), WTD_OK); /* goes to the queue now */
    uint8_t buf[64];
    size_t len = 0;
    CHECK_R(wtd_session_receive(s, buf, sizeof buf, &len, 5000), WTD_OK);
    wtd_session_free(c);
    wtd_session_free(s);
}

/* Freeing the session also waits for its running callback. */
static void test_free_waits_for_running_callback(void) {
    wtd_session *c = NULL, *s = NULL;
    printf("# wtd_session_free returns only after a running callback returned\n");
    pair(&c, &s);
    struct slow_state *st = calloc(1, sizeof *st);
    wtd_session_callbacks cb = {sizeof cb, 0, slow_cb, NULL, st};
    CHECK_R(wtd_session_set_callbacks(s, &cb), WTD_OK);
    uint8_t d[8] = {2};
    CHECK_R(wtd_session_send(c, d, sizeof d), WTD_OK);
    double t0 = now_s();
    while (!atomic_load(&st->entered) && now_s() - t0 < 5) sleep_ms(1);
    wtd_session_free(s);
    CHECK(st->writes == 1);
    free(st);
    wtd_session_free(c);
}

/* ---- free while another thread is blocked on the handle ------------------------------------ */

struct blocked {
    wtd_session *s;
    wtd_transport *t;
    int use_wait_closed;
    wtd_result r;
    atomic_int done;
};

static void *blocked_receive(void *arg) {
    struct blocked *b = arg;
    uint8_t buf[64];
    size_t len = 0;
    if (b->t) {
        b->r = wtd_transport_receive(b->t, buf, sizeof buf, &len, -1);
    } else if (b->use_wait_closed) {
        b->r = wtd_session_wait_closed(b->s, -1);
    } else {
        b->r = wtd_session_receive(b->s, buf, sizeof buf, &len, -1);
    }
    atomic_store(&b->done, 1);
    return NULL;
}

static int wait_done(struct blocked *b, double secs) {
    double t0 = now_s();
    while (!atomic_load(&b->done) && now_s() - t0 < secs) sleep_ms(5);
    return atomic_load(&b->done);
}

static void test_free_while_blocked(int use_wait_closed) {
    wtd_session *c = NULL, *s = NULL;
    pthread_t th;
    printf("# wtd_session_free while another thread blocks in %s(-1)\n",
           use_wait_closed ? "wtd_session_wait_closed" : "wtd_session_receive");
    pair(&c, &s);
    struct blocked b = {.s = s, .use_wait_closed = use_wait_closed};
    pthread_create(&th, NULL, blocked_receive, &b);
    sleep_ms(100); /* let it block */
    wtd_session_free(s);
    CHECK(wait_done(&b, 5));
    pthread_join(th, NULL);
    CHECK_R(b.r, use_wait_closed ? WTD_OK : WTD_ERR_CLOSED);
    wtd_session_free(c);
}

static void test_session_free_before_transport_free(void) {
    wtd_session *c = NULL, *s = NULL;
    wtd_transport *t = NULL;
    pthread_t th;
    printf("# wtd_session_free before wtd_transport_free: the transport sees the close\n");
    pair(&c, &s);
    CHECK_R(wtd_transport_new(s, NULL, &t), WTD_OK);
    struct blocked b = {.t = t};
    pthread_create(&th, NULL, blocked_receive, &b);
    sleep_ms(100);
    wtd_session_free(s);
    CHECK(wait_done(&b, 5)); /* before the fix this waited forever */
    if (!atomic_load(&b.done)) {
        fprintf(stderr, "transport receive still blocked: giving up on this thread\n");
        wtd_transport_close(t, 0);
    }
    pthread_join(th, NULL);
    CHECK_R(b.r, WTD_ERR_CLOSED);
    wtd_transport_free(t);
    wtd_session_free(c);
}

int main(void) {
    wtd_server_options so;
    so.struct_size = sizeof(so);
    wtd_server_options_default(&so);
    so.port = 0;
    so.host = "127.0.0.1";
    CHECK_R(wtd_server_new(&so, &server), WTD_OK);
    CHECK_R(wtd_server_port(server, &port), WTD_OK);
    CHECK_R(wtd_server_cert_hash(server, cert_hash), WTD_OK);

    test_set_callbacks_null_waits_for_running_callback();
    test_free_waits_for_running_callback();
    test_free_while_blocked(0);
    test_free_while_blocked(1);
    test_session_free_before_transport_free();

    wtd_server_free(server);
    wtd_shutdown();
    printf("%s: %d failures\n", failures ? "FAIL" : "ok", failures);
    return failures ? 1 : 0;
}
