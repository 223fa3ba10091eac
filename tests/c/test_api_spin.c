/* API-sequence fuzzer in the spirit of msquic's spinquic (issue 9 item 14), run under ASan/UBSan.
 *
 * Several threads call random sequences of create / send / receive / close / set_callbacks /
 * transport create+free / free on a shared pool of session pairs, for a bounded time
 * (WTD_SPIN_SECS, default 30; WTD_SPIN_SEED picks the sequence). Calls on one handle run
 * concurrently from several threads; only freeing a handle excludes other calls on it (the API
 * rule: no call may start after free). Every set_callbacks installs a freshly allocated
 * user_data and frees the old one as soon as the replacing call (or the free) returns: a
 * callback that ran late would touch freed memory and ASan stops the test. A watchdog aborts on
 * a deadlock (no operation finished for 30 s); LeakSanitizer checks for leaks at exit. */
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

enum { SLOTS = 12, THREADS = 4, MAGIC = 0x5717 };

struct ud {
    int magic;
    atomic_long calls;
};

struct slot {
    pthread_rwlock_t lock; /* read: any call on the handles; write: create/free them */
    wtd_session *client, *server;
    wtd_transport *transport;
    struct ud *ud;          /* user_data of the server session's callbacks (NULL: none) */
    pthread_mutex_t ud_lock; /* serializes set_callbacks + freeing the old user_data */
};

static struct slot slots[SLOTS];
static atomic_long ops, callbacks_run, unexpected;
static atomic_int stop;

static uint32_t rnd(uint64_t *s) {
    *s ^= *s << 13, *s ^= *s >> 7, *s ^= *s << 17;
    return (uint32_t)(*s >> 11);
}

static void on_dgram(void *user_data, wtd_session *s, const uint8_t *d, size_t len) {
    (void)s, (void)d, (void)len;
    struct ud *u = user_data;
    if (u->magic != MAGIC) atomic_fetch_add(&unexpected, 1);
    /* Now and then a slow callback, to widen the window a replacing call must wait out. */
    if (atomic_fetch_add(&u->calls, 1) % 8 == 0) sleep_ms(1);
    atomic_fetch_add(&callbacks_run, 1);
    u->magic = MAGIC; /* a write: ASan reports it if `u` was already freed */
}

/* Results every call may legitimately return in this test. */
static void expect_one_of(wtd_result r, const char *what) {
    switch (r) {
    case WTD_OK: case WTD_ERR_WOULD_BLOCK: case WTD_ERR_TIMEOUT: case WTD_ERR_CLOSED:
    case WTD_ERR_TOO_LARGE: case WTD_ERR_INVALID_ARGUMENT: case WTD_ERR_CONNECTION:
    case WTD_ERR_BUFFER_TOO_SMALL:
        return;
    default:
        fprintf(stderr, "%s: unexpected %s (%s)\n", what, wtd_result_str(r), wtd_last_error_message());
        atomic_fetch_add(&unexpected, 1);
    }
}

static void open_pair(struct slot *sl) {
    if (connect_client("/spin", 3000, &sl->client) != WTD_OK) {
        sl->client = NULL;
        return;
    }
    /* Another thread may accept our server session first: any accepted one will do, and
     * sessions whose client went away just close. */
    if (wtd_server_accept(server, &sl->server, 3000) != WTD_OK) sl->server = NULL;
}

static void free_pair(struct slot *sl, uint64_t *seed) {
    /* Random order: the transport before or after its session (both must be fine). */
    int transport_first = rnd(seed) & 1;
    if (transport_first) wtd_transport_free(sl->transport);
    pthread_mutex_lock(&sl->ud_lock);
    wtd_session_free(sl->server); /* waits for a running callback */
    free(sl->ud);
    sl->ud = NULL;
    pthread_mutex_unlock(&sl->ud_lock);
    if (!transport_first) wtd_transport_free(sl->transport);
    wtd_session_free(sl->client);
    sl->client = sl->server = NULL;
    sl->transport = NULL;
}

static void one_op(struct slot *sl, uint64_t *seed) {
    uint8_t buf[1500];
    size_t len = 0;
    uint32_t op = rnd(seed) % 100;
    if (op < 8) { /* create or free: exclusive */
        pthread_rwlock_wrlock(&sl->lock);
        if (!sl->client) open_pair(sl);
        else free_pair(sl, seed);
        pthread_rwlock_unlock(&sl->lock);
        return;
    }
    if (op < 12) { /* transport create / free: exclusive too (a handle change) */
        pthread_rwlock_wrlock(&sl->lock);
        if (sl->server && !sl->transport) {
            wtd_result r = wtd_transport_new(sl->server, NULL, &sl->transport);
            if (r != WTD_OK) sl->transport = NULL;
            expect_one_of(r, "transport_new");
        } else if (sl->transport) {
            wtd_transport_free(sl->transport);
            sl->transport = NULL;
        }
        pthread_rwlock_unlock(&sl->lock);
        return;
    }
    pthread_rwlock_rdlock(&sl->lock);
    wtd_session *c = sl->client, *s = sl->server;
    if (!c) {
        pthread_rwlock_unlock(&sl->lock);
        return;
    }
    wtd_session *either = (rnd(seed) % 4 == 0) && s ? s : c; /* mostly client → server */
    if (op < 50) { /* send: sizes 0 (refused), normal, oversize (refused) */
        uint32_t k = rnd(seed) % 20;
        len = k == 0 ? 0 : k == 1 ? sizeof buf : 1 + rnd(seed) % 1000;
        memset(buf, (int)op, sizeof buf);
        expect_one_of(wtd_session_send(either, buf, len), "session_send");
    } else if (op < 70) {
        expect_one_of(wtd_session_receive(either, buf, sizeof buf, &len, (int32_t)(rnd(seed) % 3)),
                      "session_receive");
    } else if (op < 78 && s) {
        pthread_mutex_lock(&sl->ud_lock);
        struct ud *old = sl->ud, *nu = NULL;
        wtd_result r;
        if (rnd(seed) % 4) {
            nu = calloc(1, sizeof *nu);
            nu->magic = MAGIC;
            wtd_session_callbacks cb = {sizeof cb, 0, on_dgram, NULL, nu};
            r = wtd_session_set_callbacks(s, &cb);
        } else {
            r = wtd_session_set_callbacks(s, NULL);
        }
        expect_one_of(r, "set_callbacks");
        if (r == WTD_OK) {
            sl->ud = nu;
            free(old); /* no callback may use it any more */
        } else {
            free(nu);
        }
        pthread_mutex_unlock(&sl->ud_lock);
    } else if (op < 88 && sl->transport) {
        if (rnd(seed) & 1) {
            len = 1 + rnd(seed) % 600;
            expect_one_of(wtd_transport_send(sl->transport, buf, len, (int32_t)(rnd(seed) % 5) - 2,
                                             rnd(seed) % 50, 0),
                          "transport_send");
        } else {
            expect_one_of(wtd_transport_receive(sl->transport, buf, sizeof buf, &len, (int32_t)(rnd(seed) % 3)),
                          "transport_receive");
        }
    } else if (op < 92) {
        expect_one_of(wtd_session_close(either, rnd(seed) % 1000, "spin"), "session_close");
    } else {
        wtd_session_stats st;
        st.struct_size = sizeof st;
        expect_one_of(wtd_session_get_stats(either, &st), "get_stats");
    }
    pthread_rwlock_unlock(&sl->lock);
}

static void *worker(void *arg) {
    uint64_t seed = (uint64_t)(uintptr_t)arg * 0x9E3779B97F4A7C15ull | 1;
    while (!atomic_load(&stop)) {
        one_op(&slots[rnd(&seed) % SLOTS], &seed);
        atomic_fetch_add(&ops, 1);
    }
    return NULL;
}

int main(void) {
    const char *secs_env = getenv("WTD_SPIN_SECS"), *seed_env = getenv("WTD_SPIN_SEED");
    double secs = secs_env ? atof(secs_env) : 30;
    uint64_t seed = seed_env ? strtoull(seed_env, NULL, 10) : (uint64_t)time(NULL);
    printf("# spin: %d threads, %d session pairs, %.0f s, seed %llu (WTD_SPIN_SEED to repeat)\n",
           THREADS, SLOTS, secs, (unsigned long long)seed);
    start_loopback_server();
    for (int i = 0; i < SLOTS; i++) {
        pthread_rwlock_init(&slots[i].lock, NULL);
        pthread_mutex_init(&slots[i].ud_lock, NULL);
    }
    pthread_t th[THREADS];
    for (int i = 0; i < THREADS; i++) pthread_create(&th[i], NULL, worker, (void *)(uintptr_t)(seed + (uint64_t)i + 1));
    double t0 = now_s(), last_progress = t0;
    long last_ops = 0;
    while (now_s() - t0 < secs) {
        sleep_ms(200);
        long n = atomic_load(&ops);
        if (n != last_ops) last_ops = n, last_progress = now_s();
        if (now_s() - last_progress > 30) {
            fprintf(stderr, "spin: no operation finished for 30 s: deadlock\n");
            abort();
        }
    }
    atomic_store(&stop, 1);
    for (int i = 0; i < THREADS; i++) pthread_join(th[i], NULL);
    for (int i = 0; i < SLOTS; i++)
        if (slots[i].client || slots[i].server) free_pair(&slots[i], &seed);
    /* Sessions accepted by one slot whose client belonged to another may still wait. */
    wtd_session *left;
    while (wtd_server_accept(server, &left, 0) == WTD_OK) wtd_session_free(left);
    wtd_server_free(server);
    wtd_shutdown();
    printf("# %ld operations, %ld callbacks, %ld unexpected results\n", atomic_load(&ops),
           atomic_load(&callbacks_run), atomic_load(&unexpected));
    CHECK(atomic_load(&unexpected) == 0);
    CHECK(atomic_load(&ops) > 1000);
    printf("%s: %d failures\n", failures ? "FAIL" : "ok", failures);
    return failures ? 1 : 0;
}
