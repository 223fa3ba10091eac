/*
 * wtd_echo_client — opens a session, sends datagrams one at a time, waits for each echo and
 * reports round-trip times.
 *
 *   wtd_echo_client URL [--count N] [--size BYTES] [--cert-hash HEX | --ca FILE | --insecure]
 *
 * Prints {"sent":N,"received":M,"rtt_p50_us":..,"rtt_p99_us":..,"draft":".."} and exits 0 when
 * every echo arrived.
 */
#include "cli.h"
#include <wtd.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static uint64_t now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static int parse_hash(const char *hex, uint8_t out[32]) {
    if (strlen(hex) != 64) return -1;
    for (int i = 0; i < 32; i++) {
        unsigned v;
        if (sscanf(hex + 2 * i, "%2x", &v) != 1) return -1;
        out[i] = (uint8_t)v;
    }
    return 0;
}

int main(int argc, char **argv) {
    const char *url = NULL;
    long count = 100, size = 100;
    uint8_t pin[32];
    wtd_client_options opt;
    opt.struct_size = sizeof(opt);
    wtd_client_options_default(&opt);
    for (int i = 1; i < argc; i++) {
        const char *next = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(argv[i], "--count") && next) count = (long)cli_int("--count", argv[++i], 1, 10000000);
        else if (!strcmp(argv[i], "--size") && next) size = (long)cli_int("--size", argv[++i], 4, 65535);
        else if (!strcmp(argv[i], "--cert-hash") && next) {
            if (parse_hash(argv[++i], pin)) { fprintf(stderr, "bad --cert-hash\n"); return 2; }
            opt.verify = WTD_VERIFY_CERT_HASHES, opt.cert_hashes = pin, opt.cert_hash_count = 1;
        } else if (!strcmp(argv[i], "--ca") && next) opt.verify = WTD_VERIFY_CA_FILE, opt.ca_file = argv[++i];
        else if (!strcmp(argv[i], "--insecure")) opt.verify = WTD_VERIFY_NONE_DANGEROUS;
        else if (!url && argv[i][0] != '-') url = argv[i];
        else url = NULL, i = argc;
    }
    if (!url || count < 1 || size < 4 || size > 65535) {
        fprintf(stderr, "usage: %s URL [--count N] [--size BYTES>=4] [--cert-hash HEX | --ca FILE | --insecure]\n", argv[0]);
        return 2;
    }

    wtd_session *s = NULL;
    if (wtd_client_connect(url, &opt, &s) != WTD_OK) {
        fprintf(stderr, "connect failed: %s\n", wtd_last_error_message());
        return 1;
    }
    wtd_draft draft = WTD_DRAFT_UNKNOWN;
    wtd_session_draft(s, &draft);

    uint8_t *out = calloc(1, (size_t)size), *in = malloc(65536);
    uint64_t *rtt = calloc((size_t)count, sizeof *rtt), *sent_at = calloc((size_t)count, sizeof *sent_at);
    long sent = 0, received = 0;
    for (long seq = 0; seq < count; seq++) {
        memcpy(out, &seq, 4); /* the sequence number leads the payload; the rest is filler */
        for (long j = 4; j < size; j++) out[j] = (uint8_t)(seq + j);
        sent_at[seq] = now_us();
        wtd_result r;
        while ((r = wtd_session_send(s, out, (size_t)size)) == WTD_ERR_WOULD_BLOCK) {}
        if (r != WTD_OK) { fprintf(stderr, "send failed: %s\n", wtd_last_error_message()); break; }
        sent++;
        /* Wait up to 1 s for this echo; late echoes of earlier datagrams are still counted. */
        for (;;) {
            size_t len = 0;
            r = wtd_session_receive(s, in, 65536, &len, 1000);
            if (r != WTD_OK) break;
            uint32_t got;
            memcpy(&got, in, 4);
            if (len == (size_t)size && got < (uint32_t)count && !rtt[got]) {
                rtt[got] = now_us() - sent_at[got] + 1;
                received++;
            }
            if (got == (uint32_t)seq) break;
        }
        if (r == WTD_ERR_CLOSED) break;
    }
    uint64_t *sorted = calloc((size_t)(received ? received : 1), sizeof *sorted);
    long n = 0;
    for (long i = 0; i < count; i++) if (rtt[i]) sorted[n++] = rtt[i] - 1;
    qsort(sorted, (size_t)n, sizeof *sorted, cmp_u64);
    printf("{\"sent\":%ld,\"received\":%ld,\"rtt_p50_us\":%llu,\"rtt_p99_us\":%llu,\"draft\":\"%s\"}\n",
           sent, received, n ? (unsigned long long)sorted[n / 2] : 0ULL,
           n ? (unsigned long long)sorted[(n * 99) / 100 < n ? (n * 99) / 100 : n - 1] : 0ULL, wtd_draft_str(draft));
    fflush(stdout);

    wtd_session_close(s, 0, "done");
    wtd_session_free(s);
    wtd_shutdown();
    free(out), free(in), free(rtt), free(sent_at), free(sorted);
    return received == count ? 0 : 1;
}
