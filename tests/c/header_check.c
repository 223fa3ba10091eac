/* Compiles wtd.h as strict C99 (-std=c99 -Wall -Wextra -Wpedantic -Werror) and links a few
 * symbols, proving the generated header is valid C and matches the library's exports. */
#include "wtd.h"

#include <stdio.h>
#include <string.h>

/* C99 has no _Static_assert: a negative array size fails the build instead. */
typedef char wtd_check_ok_is_zero[(WTD_OK == 0) ? 1 : -1];
typedef char wtd_check_version_macros[(WTD_VERSION_MAJOR >= 0 && WTD_VERSION_MINOR >= 0 &&
                                       WTD_VERSION_PATCH >= 0) ? 1 : -1];
typedef char wtd_check_log_levels[(WTD_LOG_ERROR == 1 && WTD_LOG_TRACE == 5) ? 1 : -1];
/* API 0.2: every enum crosses the boundary as a 4-byte integer. */
typedef char wtd_check_enum_sizes[(sizeof(wtd_result) == 4 && sizeof(wtd_log_level) == 4 &&
                                   sizeof(wtd_draft) == 4 && sizeof(wtd_alert_kind) == 4 &&
                                   sizeof(wtd_reliable_outcome) == 4 && sizeof(wtd_issue) == 4)
                                      ? 1
                                      : -1];

static void on_log(void *user_data, wtd_log_level level, const char *message) {
    (void)level;
    (void)message;
    (void)user_data;
}

int main(void) {
    const char *(*version_fn)(void) = wtd_version;
    const char *(*result_str_fn)(uint32_t) = wtd_result_str;
    wtd_result (*set_log_fn)(const wtd_log_callbacks *) = wtd_log_set_callbacks;
    void (*shutdown_fn)(void) = wtd_shutdown;
    wtd_log_cb cb = on_log;
    wtd_log_callbacks lc;
    wtd_result r = WTD_ERR_CLOSED;
    char expected[32];

    sprintf(expected, "%d.%d.%d", WTD_VERSION_MAJOR, WTD_VERSION_MINOR, WTD_VERSION_PATCH);
    if (strcmp(version_fn(), expected) != 0) {
        fprintf(stderr, "header says %s, library says %s\n", expected, version_fn());
        return 1;
    }
    printf("wtd %s (C99 header check): %s\n", version_fn(), result_str_fn(r));
    memset(&lc, 0, sizeof lc);
    lc.struct_size = sizeof lc;
    lc.max_level = WTD_LOG_WARN;
    lc.on_log = cb;
    if (set_log_fn(&lc) != WTD_OK) return 1;
    if (set_log_fn(NULL) != WTD_OK) return 1;
    shutdown_fn();
    return 0;
}
