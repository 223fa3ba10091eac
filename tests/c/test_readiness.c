/* Readiness descriptors (wtd_session_readiness_fd, wtd_transport_readiness_fd), under ASan/UBSan:
 * readable on a datagram, cleared once the queue is drained, readable on close, and no lost
 * wake-up while a sender thread races with a poll()-driven receiver. */
#define _POSIX_C_SOURCE 200809L
#include "wtd.h"

#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
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
    snprintf(url, sizeof url, "https://127.0.0.1:%u/ready", port);
    CHECK_R(wtd_client_connect(url, &o, client), WTD_OK);
    CHECK_R(wtd_server_accept(server, srv, 5000), WTD_OK);
}

static int readable(int fd, int timeout_ms) {
    struct pollfd p = {fd, POLLIN, 0};
    return poll(&p, 1, timeout_ms) == 1 && (p.revents & POLLIN);
}

static void test_session_fd(void) {
    wtd_session *c = NULL, *s = NULL;
    int32_t fd = -1, fd2 = -1;
    uint8_t buf[64];
    size_t len = 0;
    printf("# session descriptor: datagram, drain, close\n");
    pair(&c, &s);
    CHECK_R(wtd_session_readiness_fd(s, &fd), WTD_OK);
    CHECK(fd >= 0);
    CHECK_R(wtd_session_readiness_fd(s, &fd2), WTD_OK);
    CHECK(fd2 == fd);
    CHECK(!readable(fd, 0));
    CHECK_R(wtd_session_send(c, (const uint8_t *)"a", 1), WTD_OK);
    CHECK_R(wtd_session_send(c, (const uint8_t *)"b", 1), WTD_OK);
    CHECK(readable(fd, 3000));
    CHECK_R(wtd_session_receive(s, buf, sizeof buf, &len, 1000), WTD_OK);
    /* One left (both arrive quickly on loopback): still readable. */
    CHECK(readable(fd, 1000));
    CHECK_R(wtd_session_receive(s, buf, sizeof buf, &len, 1000), WTD_OK);
    CHECK(!readable(fd, 0));
    CHECK_R(wtd_session_receive(s, buf, sizeof buf, &len, 0), WTD_ERR_WOULD_BLOCK);
    wtd_session_close(c, 5, "bye");
    CHECK(readable(fd, 3000));
    CHECK_R(wtd_session_receive(s, buf, sizeof buf, &len, 0), WTD_ERR_CLOSED);
    CHECK(readable(fd, 0)); /* closed stays readable */
    CHECK_R(wtd_session_readiness_fd(NULL, &fd), WTD_ERR_INVALID_ARGUMENT);
    CHECK_R(wtd_session_readiness_fd(s, NULL), WTD_ERR_INVALID_ARGUMENT);
    wtd_session_free(c);
    wtd_session_free(s);
}

static void test_transport_fd(void) {
    wtd_session *c = NULL, *s = NULL;
    wtd_transport *t = NULL;
    int32_t fd = -1;
    uint8_t buf[64];
    size_t len = 0;
    printf("# transport descriptor: datagram, drain, close\n");
    pair(&c, &s);
    CHECK_R(wtd_transport_new(s, NULL, &t), WTD_OK);
    CHECK_R(wtd_transport_readiness_fd(t, &fd), WTD_OK);
    CHECK(!readable(fd, 0));
    CHECK_R(wtd_session_send(c, (const uint8_t *)"x", 1), WTD_OK);
    CHECK(readable(fd, 3000));
    CHECK_R(wtd_transport_receive(t, buf, sizeof buf, &len, 1000), WTD_OK);
    CHECK(!readable(fd, 0));
    wtd_session_close(c, 0, "");
    CHECK(readable(fd, 3000));
    wtd_transport_free(t);
    wtd_session_free(c);
    wtd_session_free(s);
}

/* ---- race: no lost wake-up -------------------------------------------------------------- */

enum { TOTAL = 20000 };
static atomic_int sender_done;

static void *sender(void *arg) {
    wtd_session *c = arg;
    uint8_t d[32] = {0};
    for (int i = 0; i < TOTAL; i++) {
        memcpy(d, &i, sizeof i);
        while (wtd_session_send(c, d, sizeof d) == WTD_ERR_WOULD_BLOCK) {}
        if (i % 97 == 0) sleep_ms(1); /* bursts and gaps: the queue keeps emptying */
    }
    atomic_store(&sender_done, 1);
    return NULL;
}

static void test_no_lost_wakeup(void) {
    wtd_session *c = NULL, *s = NULL;
    int32_t fd = -1;
    pthread_t th;
    long got = 0, lost_wakeups = 0, polls = 0;
    printf("# no lost wake-up: a sender thread races a poll()-driven receiver\n");
    pair(&c, &s);
    CHECK_R(wtd_session_readiness_fd(s, &fd), WTD_OK);
    pthread_create(&th, NULL, sender, c);
    double idle_since = now_s();
    while (now_s() - idle_since < 2.0) {
        if (!readable(fd, 200)) {
            /* Not readable: the queue must really be empty. */
            wtd_session_stats st;
            st.struct_size = sizeof(st);
            wtd_session_get_stats(s, &st);
            if (st.queued > 0) lost_wakeups++;
            if (!atomic_load(&sender_done)) idle_since = now_s(); /* stop 2 s after the sender */
            continue;
        }
        polls++;
        idle_since = now_s();
        wtd_datagram_buffer bufs[32];
        uint8_t store[32][64];
        for (int i = 0; i < 32; i++) bufs[i] = (wtd_datagram_buffer){store[i], sizeof store[i], 0};
        for (;;) {
            size_t n = 0;
            wtd_result r = wtd_session_receive_batch(s, bufs, 32, &n, 0);
            if (r != WTD_OK || n == 0) break;
            got += (long)n;
        }
    }
    pthread_join(th, NULL);
    wtd_session_stats st;
    st.struct_size = sizeof(st);
    wtd_session_get_stats(s, &st);
    printf("#   received %ld of %d sent (%llu arrived, %llu evicted), %ld polls\n", got, TOTAL,
           (unsigned long long)st.datagrams_received, (unsigned long long)st.dropped_queue_full, polls);
    CHECK(lost_wakeups == 0);
    CHECK((uint64_t)got + st.dropped_queue_full == st.datagrams_received);
    CHECK(st.queued == 0);
    CHECK(got > TOTAL / 2); /* loopback loses little; the point is that nothing got stuck */
    wtd_session_free(c);
    wtd_session_free(s);
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

    test_session_fd();
    test_transport_fd();
    test_no_lost_wakeup();

    wtd_server_free(server);
    wtd_shutdown();
    printf("%s: %d failures\n", failures ? "FAIL" : "ok", failures);
    return failures ? 1 : 0;
}
