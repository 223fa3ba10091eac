/* Shared by the C tests: failure counting check macros and small time helpers. Include after
 * wtd.h, <stdio.h> and <time.h>. */
#ifndef WTD_TEST_CHECK_H
#define WTD_TEST_CHECK_H

static int failures = 0;

#define CHECK(cond)                                                                   \
    do {                                                                              \
        if (!(cond)) {                                                                \
            fprintf(stderr, "%s:%d: CHECK failed: %s (last error: \"%s\")\n", __FILE__, \
                    __LINE__, #cond, wtd_last_error_message());                        \
            failures++;                                                               \
        }                                                                             \
    } while (0)

/* Checks that `expr` returns `want`, printing both codes otherwise. */
#define CHECK_R(expr, want)                                                                  \
    do {                                                                                     \
        wtd_result r_ = (expr);                                                              \
        if (r_ != (want)) {                                                                  \
            fprintf(stderr, "%s:%d: %s returned %d (%s), expected %s (last error: \"%s\")\n", \
                    __FILE__, __LINE__, #expr, (int)r_, wtd_result_str(r_), #want,            \
                    wtd_last_error_message());                                               \
            failures++;                                                                      \
        }                                                                                    \
    } while (0)

#define INV WTD_ERR_INVALID_ARGUMENT

static void sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

#endif
