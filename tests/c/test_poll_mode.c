/* Engine-owned mode (wtd_set_runtime_mode(WTD_RUNTIME_POLL) + wtd_poll), under ASan/UBSan:
 * server and client in one process on one thread; datagrams echoed by callbacks that run inside
 * wtd_poll on the polling thread; nothing moves while nobody polls; batch receive; close codes;
 * blocking calls and a nested wtd_poll refused inside a callback; blocking calls (connect,
 * accept, receive, transport receive, wait_closed) on a second thread while the first polls. */
#define _POSIX_C_SOURCE 200809L
#include "wtd.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "check.h"
#include "loopback.h"

enum { N = 64 };

static pthread_t main_thread;

/* Polls (10 ms at a time) until *flag is set or 10 s pass; returns the events polled. */
static uint64_t poll_until_flag(atomic_int *flag) {
    uint64_t total = 0, n = 0;
    double deadline = now_s() + 10;
    while (!atomic_load(flag) && now_s() < deadline) {
        CHECK_R(wtd_poll(&n, 10), WTD_OK);
        total += n;
    }
    CHECK(atomic_load(flag));
    return total;
}

/* ---- one thread: echo through callbacks run inside wtd_poll ---------------------------- */

struct echo {
    wtd_session *client;
    atomic_int echoed;
    atomic_int off_thread;  /* callbacks that ran elsewhere than the polling thread */
    atomic_int refusals_ok; /* blocking calls refused inside the callback */
    atomic_int closed;
    uint32_t close_code;
    char close_reason[32];
};

static void on_echo(void *user, wtd_session *s, const uint8_t *data, size_t len) {
    struct echo *e = user;
    if (!pthread_equal(pthread_self(), main_thread))
        atomic_fetch_add(&e->off_thread, 1);
    if (atomic_load(&e->echoed) == 0) {
        uint8_t buf[16];
        size_t got = 0;
        uint64_t n = 0;
        wtd_session *x = NULL;
        int ok = wtd_session_receive(e->client, buf, sizeof buf, &got, 100) == WTD_ERR_INVALID_STATE;
        ok &= wtd_server_accept(server, &x, 100) == WTD_ERR_INVALID_STATE;
        ok &= wtd_poll(&n, 0) == WTD_ERR_INVALID_STATE;
        ok &= wtd_session_wait_closed(s, 100) == WTD_ERR_INVALID_STATE;
        atomic_store(&e->refusals_ok, ok);
    }
    CHECK_R(wtd_session_send(s, data, len), WTD_OK);
    atomic_fetch_add(&e->echoed, 1);
}

static void on_echo_closed(void *user, wtd_session *s, uint32_t code, const char *reason) {
    struct echo *e = user;
    (void)s;
    if (!pthread_equal(pthread_self(), main_thread))
        atomic_fetch_add(&e->off_thread, 1);
    e->close_code = code;
    snprintf(e->close_reason, sizeof e->close_reason, "%s", reason);
    atomic_store(&e->closed, 1);
}

static void test_one_thread_echo(void) {
    wtd_session *c = NULL, *s = NULL;
    static struct echo e;
    wtd_session_callbacks cb;
    uint8_t store[N][8];
    wtd_datagram_buffer bufs[N];
    uint32_t back[N];
    size_t nback = 0, got = 0;
    uint64_t events = 0, n = 0;
    double deadline;
    int i;
    printf("# one thread: connect, echo through callbacks inside wtd_poll, batch receive\n");
    /* Blocking connect and accept drive the runtime themselves: no poller needed. */
    pair("/poll", &c, &s);
    if (!c || !s)
        return;
    e.client = c;
    memset(&cb, 0, sizeof cb);
    cb.struct_size = sizeof cb;
    cb.on_datagram = on_echo;
    cb.on_closed = on_echo_closed;
    cb.user_data = &e;
    CHECK_R(wtd_session_set_callbacks(s, &cb), WTD_OK);

    for (i = 0; i < N; i++) {
        uint32_t v = (uint32_t)i;
        CHECK_R(wtd_session_send(c, (const uint8_t *)&v, sizeof v), WTD_OK);
    }
    /* Nobody polls: nothing is sent, received or called back. */
    sleep_ms(100);
    CHECK(atomic_load(&e.echoed) == 0);

    for (i = 0; i < N; i++) {
        bufs[i].data = store[i];
        bufs[i].capacity = sizeof store[i];
    }
    deadline = now_s() + 10;
    while (nback < N && now_s() < deadline) {
        wtd_result r;
        CHECK_R(wtd_poll(&n, 10), WTD_OK);
        events += n;
        r = wtd_session_receive_batch(c, bufs, N, &got, 0);
        CHECK(r == WTD_OK || r == WTD_ERR_WOULD_BLOCK);
        for (i = 0; r == WTD_OK && i < (int)got && nback < N; i++) {
            CHECK(bufs[i].len == 4);
            memcpy(&back[nback++], bufs[i].data, 4);
        }
    }
    CHECK(nback == N);
    for (i = 0; i < (int)nback; i++)
        CHECK(back[i] == (uint32_t)i);
    CHECK(atomic_load(&e.echoed) == N);
    /* Each datagram reached a session twice: the server's callback, the client's queue. */
    CHECK(events >= 2 * N);
    CHECK(atomic_load(&e.off_thread) == 0);
    CHECK(atomic_load(&e.refusals_ok) == 1);

    printf("# close codes, close notice inside wtd_poll\n");
    CHECK_R(wtd_session_close(c, 4242, "bye"), WTD_OK);
    poll_until_flag(&e.closed);
    CHECK(e.close_code == 4242);
    CHECK(strcmp(e.close_reason, "bye") == 0);
    CHECK(atomic_load(&e.off_thread) == 0);
    wtd_session_free(c);
    wtd_session_free(s);
}

/* ---- timing: returns at once, waits, wakes on arrival ---------------------------------- */

static void test_poll_waits(void) {
    wtd_session *c = NULL, *s = NULL;
    uint64_t n = 99;
    uint8_t buf[16];
    size_t len = 0;
    double t;
    printf("# wtd_poll: 0 returns at once, a timeout waits, an arrival ends the wait\n");
    pair("/wait", &c, &s);
    if (!c || !s)
        return;
    CHECK_R(wtd_poll(&n, 50), WTD_OK); /* the handshake's tail */
    t = now_s();
    CHECK_R(wtd_poll(&n, 0), WTD_OK);
    CHECK(n == 0);
    CHECK(now_s() - t < 0.05);
    t = now_s();
    CHECK_R(wtd_poll(NULL, 60), WTD_OK);
    CHECK(now_s() - t >= 0.055);
    /* The send is queued; the poll sends it, the server's socket reads it, the wait ends. */
    CHECK_R(wtd_session_send(c, (const uint8_t *)"hi", 2), WTD_OK);
    t = now_s();
    CHECK_R(wtd_poll(&n, 5000), WTD_OK);
    CHECK(n >= 1);
    CHECK(now_s() - t < 2);
    CHECK_R(wtd_session_receive(s, buf, sizeof buf, &len, 0), WTD_OK);
    CHECK(len == 2 && memcmp(buf, "hi", 2) == 0);
    wtd_session_free(c);
    wtd_session_free(s);
}

/* ---- a second thread's blocking calls while the first polls ---------------------------- */

static atomic_int worker_done;

static void *worker(void *arg) {
    wtd_session *c = NULL, *s = NULL;
    wtd_transport *t = NULL;
    uint8_t buf[16];
    size_t len = 0;
    (void)arg;
    pair("/worker", &c, &s);
    if (c && s) {
        CHECK_R(wtd_session_send(c, (const uint8_t *)"one", 3), WTD_OK);
        CHECK_R(wtd_session_receive(s, buf, sizeof buf, &len, 5000), WTD_OK);
        CHECK(len == 3 && memcmp(buf, "one", 3) == 0);
        CHECK_R(wtd_transport_new(s, NULL, &t), WTD_OK);
        CHECK_R(wtd_session_send(c, (const uint8_t *)"two", 3), WTD_OK);
        CHECK_R(wtd_transport_receive(t, buf, sizeof buf, &len, 5000), WTD_OK);
        CHECK(len == 3 && memcmp(buf, "two", 3) == 0);
        CHECK_R(wtd_session_close(c, 7, "done"), WTD_OK);
        CHECK_R(wtd_session_wait_closed(s, 5000), WTD_OK);
        wtd_transport_free(t);
    }
    wtd_session_free(c);
    wtd_session_free(s);
    atomic_store(&worker_done, 1);
    return NULL;
}

static void test_second_thread(void) {
    pthread_t th;
    printf("# blocking calls on a second thread while the first polls\n");
    CHECK(pthread_create(&th, NULL, worker, NULL) == 0);
    poll_until_flag(&worker_done);
    pthread_join(th, NULL);
}

int main(void) {
    uint64_t n = 0;
    main_thread = pthread_self();
    printf("# mode: threads by default, poll chosen before first use\n");
    CHECK_R(wtd_poll(&n, 0), WTD_ERR_INVALID_STATE);
    CHECK_R(wtd_set_runtime_mode(7), WTD_ERR_INVALID_ARGUMENT);
    CHECK_R(wtd_set_runtime_mode(WTD_RUNTIME_POLL), WTD_OK);
    start_loopback_server();
    CHECK_R(wtd_set_runtime_mode(WTD_RUNTIME_THREADS), WTD_ERR_INVALID_STATE);
    if (server) {
        test_one_thread_echo();
        test_poll_waits();
        test_second_thread();
        wtd_server_free(server);
    }
    wtd_shutdown();
    CHECK_R(wtd_set_runtime_mode(WTD_RUNTIME_THREADS), WTD_OK);
    CHECK_R(wtd_poll(&n, 0), WTD_ERR_INVALID_STATE);
    wtd_shutdown();
    if (failures) {
        fprintf(stderr, "%d check(s) failed\n", failures);
        return 1;
    }
    printf("ok\n");
    return 0;
}
