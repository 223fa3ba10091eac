/* ctest: the foundation of the C API — version, result strings, per-thread last error, log
 * callback registration, runtime configuration, shutdown. Uses only wtd.h. */
#include "wtd.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int failures = 0;

#define CHECK(cond)                                                                   \
    do {                                                                              \
        if (!(cond)) {                                                                \
            fprintf(stderr, "%s:%d: CHECK failed: %s (last error: \"%s\")\n", __FILE__, \
                    __LINE__, #cond, wtd_last_error_message());                        \
            failures++;                                                               \
        }                                                                             \
    } while (0)

typedef struct {
    int calls;
    int bad_user_data;
    int level_above_max;
    char last[256];
} log_capture;

/* Installs (on_log NULL: removes) the log callback through the API 0.2 struct. */
static wtd_result set_log(wtd_log_cb on, void *user_data, uint32_t max_level) {
    wtd_log_callbacks c;
    memset(&c, 0, sizeof c);
    c.struct_size = sizeof c;
    c.max_level = max_level;
    c.on_log = on;
    c.user_data = user_data;
    return wtd_log_set_callbacks(&c);
}

static void on_log(void *user_data, wtd_log_level level, const char *message) {
    log_capture *cap = (log_capture *)user_data;
    if (cap == NULL) return;
    cap->calls++;
    if (level > WTD_LOG_DEBUG) cap->level_above_max++;
    if (message == NULL) {
        cap->bad_user_data++;
        return;
    }
    strncpy(cap->last, message, sizeof cap->last - 1);
    cap->last[sizeof cap->last - 1] = '\0';
}

/* Issue 9 item 13: every enum taken from C is a plain integer; any value is safe and an
 * out-of-range one names itself "unknown" (run under UBSan). */
static void test_enum_strings(void) {
    static const uint32_t bad[] = {5, 99, 0x7fffffffu, 0x80000000u, 0xffffffffu};
    size_t i;
    CHECK(strcmp(wtd_draft_str(WTD_DRAFT_15), "draft-15") == 0);
    CHECK(strcmp(wtd_draft_str(WTD_DRAFT_UNKNOWN), "unknown") == 0);
    CHECK(strcmp(wtd_alert_kind_str(WTD_ALERT_INCREASING_SEND_TIME), "increasing_send_time") == 0);
    CHECK(strcmp(wtd_log_level_str(WTD_LOG_WARN), "WARN") == 0);
    CHECK(strcmp(wtd_log_level_str(0), "unknown") == 0);
    CHECK(strcmp(wtd_alert_kind_str(3), "unknown") == 0);
    for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CHECK(strcmp(wtd_draft_str(bad[i] == 5 ? 3 : bad[i]), "unknown") == 0);
        CHECK(strcmp(wtd_alert_kind_str(bad[i]), "unknown") == 0);
        CHECK(strcmp(wtd_log_level_str(bad[i] == 5 ? 6 : bad[i]), "unknown") == 0);
        CHECK(strcmp(wtd_result_str(bad[i] == 5 ? 17 : bad[i]), "unknown") == 0);
    }
}

static void test_version(void) {
    char expected[32];
    snprintf(expected, sizeof expected, "%d.%d.%d", WTD_VERSION_MAJOR, WTD_VERSION_MINOR,
             WTD_VERSION_PATCH);
    CHECK(strcmp(wtd_version(), expected) == 0);
    CHECK(wtd_version_number() ==
          (uint32_t)((WTD_VERSION_MAJOR << 16) | (WTD_VERSION_MINOR << 8) | WTD_VERSION_PATCH));
}

static void test_result_strings(void) {
    static const wtd_result all[] = {
        WTD_OK,           WTD_ERR_INVALID_ARGUMENT, WTD_ERR_CLOSED,       WTD_ERR_TIMEOUT,
        WTD_ERR_WOULD_BLOCK, WTD_ERR_TOO_LARGE,     WTD_ERR_BUFFER_TOO_SMALL, WTD_ERR_TLS,
        WTD_ERR_CONNECTION, WTD_ERR_REJECTED,       WTD_ERR_PROTOCOL,     WTD_ERR_IO,
        WTD_ERR_SERIALIZATION, WTD_ERR_NOT_SUPPORTED, WTD_ERR_INVALID_STATE, WTD_ERR_PANIC,
        WTD_ERR_INTERNAL,
    };
    size_t i, j;
    for (i = 0; i < sizeof all / sizeof all[0]; i++) {
        const char *s = wtd_result_str(all[i]);
        CHECK(s != NULL);
        if (s == NULL) continue;
        CHECK(strlen(s) > 0);
        CHECK(strcmp(s, "unknown") != 0);
        for (j = 0; j < i; j++) CHECK(strcmp(s, wtd_result_str(all[j])) != 0);
    }
    CHECK(strcmp(wtd_result_str(WTD_OK), "ok") == 0);
    CHECK(strcmp(wtd_result_str(WTD_ERR_CLOSED), "closed") == 0);
    CHECK(strcmp(wtd_result_str((uint32_t)-1), "unknown") == 0);
    CHECK(strcmp(wtd_result_str(17), "unknown") == 0);
    CHECK(strcmp(wtd_result_str(1000000), "unknown") == 0);
}

static void *other_thread(void *arg) {
    int *ok = (int *)arg;
    /* A fresh thread has no last error, even though the main thread has one. */
    *ok = strcmp(wtd_last_error_message(), "") == 0;
    *ok = *ok && wtd_set_runtime_threads(0) == WTD_ERR_INVALID_ARGUMENT;
    *ok = *ok && strstr(wtd_last_error_message(), "at least 1") != NULL;
    return NULL;
}

static void test_last_error(void) {
    pthread_t t;
    int ok = 0;
    const char *msg;
    CHECK(strcmp(wtd_last_error_message(), "") == 0);
    CHECK(wtd_set_runtime_threads(0) == WTD_ERR_INVALID_ARGUMENT);
    msg = wtd_last_error_message();
    CHECK(msg != NULL && strlen(msg) > 0);
    /* wtd_result_str does not disturb it. */
    CHECK(strcmp(wtd_result_str(WTD_ERR_INVALID_ARGUMENT), "invalid argument") == 0);
    CHECK(strcmp(wtd_last_error_message(), msg) == 0);
    CHECK(pthread_create(&t, NULL, other_thread, &ok) == 0);
    CHECK(pthread_join(t, NULL) == 0);
    CHECK(ok);
    CHECK(strstr(wtd_last_error_message(), "at least 1") != NULL);
    /* A successful call clears it. */
    CHECK(set_log(NULL, NULL, 0) == WTD_OK);
    CHECK(strcmp(wtd_last_error_message(), "") == 0);
}

static void test_log_callback(void) {
    log_capture cap;
    memset(&cap, 0, sizeof cap);
    CHECK(set_log(NULL, NULL, 0) == WTD_OK);
    CHECK(set_log(NULL, NULL, 12345) == WTD_OK); /* level ignored when off */
    CHECK(set_log(on_log, &cap, 0) == WTD_ERR_INVALID_ARGUMENT);
    CHECK(set_log(on_log, &cap, 6) == WTD_ERR_INVALID_ARGUMENT);
    CHECK(set_log(on_log, &cap, WTD_LOG_DEBUG) == WTD_OK);
    wtd_shutdown(); /* logs at DEBUG */
    CHECK(cap.calls >= 1);
    CHECK(cap.bad_user_data == 0);
    CHECK(cap.level_above_max == 0);
    CHECK(strstr(cap.last, "shutdown") != NULL);
    CHECK(set_log(on_log, &cap, WTD_LOG_ERROR) == WTD_OK);
    cap.calls = 0;
    wtd_shutdown(); /* DEBUG message filtered out */
    CHECK(cap.calls == 0);
    CHECK(set_log(NULL, NULL, 0) == WTD_OK);
}

static void test_runtime(void) {
    CHECK(wtd_set_runtime_threads(0) == WTD_ERR_INVALID_ARGUMENT);
    CHECK(wtd_set_runtime_threads(100000) == WTD_ERR_INVALID_ARGUMENT);
    /* The runtime has not started (or was shut down), so configuring it is allowed. */
    CHECK(wtd_set_runtime_threads(3) == WTD_OK);
    CHECK(wtd_set_runtime_threads(2) == WTD_OK);
    wtd_shutdown();
    wtd_shutdown();
    CHECK(wtd_set_runtime_threads(1) == WTD_OK);
    /* Send coalescing: any time, up to 100 ms. */
    CHECK(wtd_set_send_coalescing(100001) == WTD_ERR_INVALID_ARGUMENT);
    CHECK(strstr(wtd_last_error_message(), "maximum") != NULL);
    CHECK(wtd_set_send_coalescing(100000) == WTD_OK);
    CHECK(wtd_set_send_coalescing(0) == WTD_OK);
}

int main(void) {
    test_version();
    test_result_strings();
    test_enum_strings();
    test_last_error();
    test_log_callback();
    test_runtime();
    wtd_shutdown();
    if (failures) {
        fprintf(stderr, "test_foundation: %d check(s) failed\n", failures);
        return EXIT_FAILURE;
    }
    printf("test_foundation: all checks passed (wtd %s)\n", wtd_version());
    return EXIT_SUCCESS;
}
