/* Command-line number parsing shared by the wtd C examples.
 *
 * Every numeric flag is parsed completely (no trailing characters, no empty value, no overflow)
 * and range-checked; on bad input the program prints which flag, the allowed range and the value
 * it got, and exits with status 2 before it opens any socket. (atoi would turn
 * `--port 99999` into port 34463 and `--port abc` into port 0.) */
#ifndef WTD_EXAMPLES_CLI_H
#define WTD_EXAMPLES_CLI_H

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

/* Parses `text` (the value of `flag`) as a decimal integer within [min, max] or exits with 2. */
static inline long long cli_int(const char *flag, const char *text, long long min, long long max) {
    char *end = NULL;
    errno = 0;
    long long v = text ? strtoll(text, &end, 10) : 0;
    if (!text || end == text || *end != '\0' || errno == ERANGE || v < min || v > max) {
        fprintf(stderr, "error: %s must be an integer in [%lld, %lld], got \"%s\"\n", flag, min, max,
                text ? text : "");
        exit(2);
    }
    return v;
}

/* Parses `text` (the value of `flag`) as a finite number within [min, max] (or [min, max) when
 * `max_exclusive`) or exits with 2. */
static inline double cli_double(const char *flag, const char *text, double min, double max,
                                int max_exclusive) {
    char *end = NULL;
    errno = 0;
    double v = text ? strtod(text, &end) : 0.0;
    if (!text || end == text || *end != '\0' || errno == ERANGE || !isfinite(v) || v < min ||
        v > max || (max_exclusive && v >= max)) {
        fprintf(stderr, "error: %s must be a number in [%g, %g%s, got \"%s\"\n", flag, min, max,
                max_exclusive ? ")" : "]", text ? text : "");
        exit(2);
    }
    return v;
}

/* A TCP/UDP port for a server to listen on: 0 (any free port) to 65535. */
static inline unsigned short cli_port(const char *flag, const char *text) {
    return (unsigned short)cli_int(flag, text, 0, 65535);
}

#endif
