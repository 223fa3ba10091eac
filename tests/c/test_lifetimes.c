/* Handle lifetimes under concurrency (issue 9 items 11–12), run under ASan/UBSan by ctest:
 *  - after wtd_session_set_callbacks(s, NULL) returns, no old callback runs: the test frees the
 *    callback's user_data right away while a callback was in flight (ASan: heap-use-after-free
 *    if the library returned early);
 *  - wtd_session_free while another thread blocks in wtd_session_receive(-1) or
 *    wtd_session_wait_closed(-1): the blocked calls return, no invalid access;
 *  - wtd_server_free while another thread blocks in wtd_server_accept(-1): it returns CLOSED;
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
#include "loopback.h"


/* ---- set_callbacks(NULL) waits for a callback in flight ------------------------------------ */

struct slow_state {
    atomic_int entered;
    atomic_long writes;
};

static void slow_cb(void *user_data, wtd_session *s, const uint8_t *d, size_t len) {
    (void)s, (void)d, (void)len;
    struct slow_state *st = user_data;
    atomic_store(&st->entered, 1);
    sleep_ms(200);  /* the main thread clears the callbacks meanwhile */
    atomic_fetch_add(&st->writes, 1); /* use-after-free here if set_callbacks returned early */
}

/* A pair whose server session is inside a 200 ms callback (with freshly allocated user_data)
 * when this returns. */
static struct slow_state *pair_in_slow_callback(wtd_session **c, wtd_session **s) {
    pair("/life", c, s);
    struct slow_state *st = calloc(1, sizeof *st);
    wtd_session_callbacks cb = {sizeof cb, 0, slow_cb, NULL, st};
    CHECK_R(wtd_session_set_callbacks(*s, &cb), WTD_OK);
    uint8_t d[8] = {1};
    CHECK_R(wtd_session_send(*c, d, sizeof d), WTD_OK);
    double t0 = now_s();
    while (!atomic_load(&st->entered) && now_s() - t0 < 20) sleep_ms(1);
    CHECK(atomic_load(&st->entered));
    return st;
}

static void test_set_callbacks_null_waits_for_running_callback(void) {
    wtd_session *c = NULL, *s = NULL;
    printf("# set_callbacks(NULL) returns only after a running callback returned\n");
    struct slow_state *st = pair_in_slow_callback(&c, &s);
    double t1 = now_s();
    long done_before = atomic_load(&st->writes); /* 1 only on a very slow run (valgrind) */
    CHECK_R(wtd_session_set_callbacks(s, NULL), WTD_OK);
    if (!done_before) CHECK(now_s() - t1 > 0.1); /* it waited for the 200 ms callback */
    CHECK(atomic_load(&st->writes) == 1);
    free(st); /* no callback may touch it any more */
    uint8_t d[8] = {2}, buf[64];
    size_t len = 0;
    CHECK_R(wtd_session_send(c, d, sizeof d), WTD_OK); /* goes to the queue now */
    CHECK_R(wtd_session_receive(s, buf, sizeof buf, &len, 20000), WTD_OK);
    wtd_session_free(c);
    wtd_session_free(s);
}

/* Freeing the session also waits for its running callback. */
static void test_free_waits_for_running_callback(void) {
    wtd_session *c = NULL, *s = NULL;
    printf("# wtd_session_free returns only after a running callback returned\n");
    struct slow_state *st = pair_in_slow_callback(&c, &s);
    wtd_session_free(s);
    CHECK(atomic_load(&st->writes) == 1);
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
    pair("/life", &c, &s);
    struct blocked b = {.s = s, .use_wait_closed = use_wait_closed};
    pthread_create(&th, NULL, blocked_receive, &b);
    sleep_ms(100); /* let it block */
    wtd_session_free(s);
    CHECK(wait_done(&b, 20));
    pthread_join(th, NULL);
    CHECK_R(b.r, use_wait_closed ? WTD_OK : WTD_ERR_CLOSED);
    wtd_session_free(c);
}

static void test_session_free_before_transport_free(void) {
    wtd_session *c = NULL, *s = NULL;
    wtd_transport *t = NULL;
    pthread_t th;
    printf("# wtd_session_free before wtd_transport_free: the transport sees the close\n");
    pair("/life", &c, &s);
    CHECK_R(wtd_transport_new(s, NULL, &t), WTD_OK);
    struct blocked b = {.t = t};
    pthread_create(&th, NULL, blocked_receive, &b);
    sleep_ms(100);
    wtd_session_free(s);
    CHECK(wait_done(&b, 20)); /* before the fix this waited forever */
    if (!atomic_load(&b.done)) {
        fprintf(stderr, "transport receive still blocked: giving up on this thread\n");
        wtd_transport_close(t, 0);
    }
    pthread_join(th, NULL);
    CHECK_R(b.r, WTD_ERR_CLOSED);
    wtd_transport_free(t);
    wtd_session_free(c);
}

/* ---- free the server while another thread blocks in accept(-1) ----------------------------- */

struct blocked_accept {
    wtd_server *srv;
    wtd_result r;
    atomic_int done;
};

static void *blocked_accept_thread(void *arg) {
    struct blocked_accept *b = arg;
    wtd_session *s = NULL;
    b->r = wtd_server_accept(b->srv, &s, -1);
    if (b->r == WTD_OK) wtd_session_free(s);
    atomic_store(&b->done, 1);
    return NULL;
}

static void test_server_free_while_accept_blocks(void) {
    wtd_server_options so;
    wtd_server *srv = NULL;
    pthread_t th;
    printf("# wtd_server_free while another thread blocks in wtd_server_accept(-1)\n");
    so.struct_size = sizeof so;
    wtd_server_options_default(&so);
    so.port = 0;
    so.host = "127.0.0.1";
    CHECK_R(wtd_server_new(&so, &srv), WTD_OK);
    struct blocked_accept b = {.srv = srv};
    pthread_create(&th, NULL, blocked_accept_thread, &b);
    sleep_ms(100);
    wtd_server_free(srv);
    double t0 = now_s();
    while (!atomic_load(&b.done) && now_s() - t0 < 20) sleep_ms(5);
    CHECK(atomic_load(&b.done));
    pthread_join(th, NULL);
    CHECK_R(b.r, WTD_ERR_CLOSED);
}

int main(void) {
    start_loopback_server();

    test_set_callbacks_null_waits_for_running_callback();
    test_free_waits_for_running_callback();
    test_free_while_blocked(0);
    test_free_while_blocked(1);
    test_session_free_before_transport_free();
    test_server_free_while_accept_blocks();

    wtd_server_free(server);
    wtd_shutdown();
    printf("%s: %d failures\n", failures ? "FAIL" : "ok", failures);
    return failures ? 1 : 0;
}
