/*
 * wtd_reliable_demo — the reliability layer end to end under datagram loss.
 *
 *   wtd_reliable_demo [--loss FRACTION] [--count N] [--unordered]
 *   wtd_reliable_demo --print-wire
 *
 * Runs a wtd server and a client in one process on 127.0.0.1, opens one WebTransport session,
 * attaches a reliability layer (wtd_reliability_*) to both ends' transports and sends N numbered
 * messages from the client to the server. Loss is injected on both directions with the layer's
 * test knob `wtd_reliability_set_test_drop_fraction` (each end drops that fraction of the DATA / ACK frames it
 * receives), so messages and acknowledgements are lost and must be retransmitted.
 *
 * Prints one JSON line:
 *   {"sent":N,"delivered":D,"duplicates":0,"gave_up":G,"retransmits":R,"in_order":true|false,...}
 * where "delivered" = distinct messages the receiving application got, "duplicates" = messages it
 * got more than once (must be 0; suppressed duplicate frames are not counted here), "gave_up" =
 * sends reported as WTD_RELIABLE_GAVE_UP, "retransmits" = DATA retransmissions, "in_order" =
 * whether the receiving application saw them in sending order (the receiver uses in_order = 1
 * unless --unordered). Exits 0 when D == N and there were no duplicates.
 *
 * --print-wire prints, instead, the bytes wtd's reliability layer puts on the wire, captured by a
 * plain transport on the other end: {"data_hex":...} = the DATA frame of sequence 7 with payload
 * "hi", {"ack_hex":...} = the ACK a layer sends for an incoming DATA of sequence 1234 (used by the
 * interop case pywt061_reliability_wire to compare with pywebtransport 0.6.1's frames).
 */
#include "cli.h"
#include <wtd.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static void print_hex(const uint8_t *b, size_t n) {
    for (size_t i = 0; i < n; i++) printf("%02x", b[i]);
}

static int die(const char *what);

/* --print-wire: see the file comment. `ct`/`st` are the two ends of one session, no layers yet. */
static int print_wire(wtd_transport *ct, wtd_transport *st) {
    wtd_reliability_options ro;
    wtd_reliability *tx = NULL, *rx = NULL;
    uint8_t frame[256], data[256], ack[256];
    size_t n = 0, data_len = 0, ack_len = 0;
    ro.struct_size = sizeof(ro);
    wtd_reliability_options_default(&ro);
    if (wtd_reliability_new(ct, &ro, &tx) != WTD_OK) return die("wtd_reliability_new");
    for (int i = 0; i < 7; i++)
        if (wtd_reliability_send(tx, (const uint8_t *)"filler", 6, NULL) != WTD_OK) return die("send");
    if (wtd_reliability_send(tx, (const uint8_t *)"hi", 2, NULL) != WTD_OK) return die("send");
    /* The server end has no layer: the frames arrive as plain datagrams. */
    while (data_len == 0 && wtd_transport_receive(st, frame, sizeof frame, &n, 5000) == WTD_OK)
        if (n >= 9 && frame[5] == 0 && frame[6] == 0 && frame[7] == 0 && frame[8] == 7) {
            memcpy(data, frame, n);
            data_len = n;
        }
    wtd_reliability_close(tx); /* detaches: the client end's frames are plain again */
    if (wtd_reliability_new(st, &ro, &rx) != WTD_OK) return die("wtd_reliability_new");
    {
        const uint8_t data1234[] = {4, 'D', 'A', 'T', 'A', 0, 0, 0x04, 0xd2, 'x'};
        if (wtd_transport_send(ct, data1234, sizeof data1234, 0, 0, -1) != WTD_OK) return die("send");
    }
    while (ack_len == 0 && wtd_transport_receive(ct, frame, sizeof frame, &n, 5000) == WTD_OK)
        if (n >= 4 && frame[0] == 3 && memcmp(frame + 1, "ACK", 3) == 0) {
            memcpy(ack, frame, n);
            ack_len = n;
        }
    printf("{\"data_hex\":\"");
    print_hex(data, data_len);
    printf("\",\"ack_hex\":\"");
    print_hex(ack, ack_len);
    printf("\"}\n");
    fflush(stdout);
    wtd_reliability_free(tx);
    wtd_reliability_free(rx);
    return data_len && ack_len ? 0 : 1;
}

static int die(const char *what) {
    fprintf(stderr, "wtd_reliable_demo: %s: %s\n", what, wtd_last_error_message());
    printf("{\"error\":\"%s\"}\n", what);
    return 1;
}

int main(int argc, char **argv) {
    double loss = 0.2;
    long count = 1000;
    int ordered = 1, wire = 0;
    for (int i = 1; i < argc; i++) {
        const char *next = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(argv[i], "--loss") && next) loss = cli_double("--loss", argv[++i], 0, 1, 1);
        else if (!strcmp(argv[i], "--count") && next) count = (long)cli_int("--count", argv[++i], 1, 10000000);
        else if (!strcmp(argv[i], "--unordered")) ordered = 0;
        else if (!strcmp(argv[i], "--print-wire")) wire = 1;
        else {
            fprintf(stderr, "usage: %s [--loss FRACTION] [--count N] [--unordered] | --print-wire\n",
                    argv[0]);
            return 2;
        }
    }
    if (loss < 0.0 || loss >= 1.0 || count <= 0) {
        fprintf(stderr, "--loss must be within [0, 1) and --count > 0\n");
        return 2;
    }

    /* Server and client on loopback; the client pins the server's generated certificate. */
    wtd_server_options so;
    wtd_server *server = NULL;
    uint16_t port = 0;
    uint8_t hash[32];
    so.struct_size = sizeof(so);
    wtd_server_options_default(&so);
    so.host = "127.0.0.1";
    so.port = 0;
    if (wtd_server_new(&so, &server) != WTD_OK) return die("wtd_server_new");
    wtd_server_port(server, &port);
    wtd_server_cert_hash(server, hash);

    wtd_client_options co;
    wtd_session *cs = NULL, *ss = NULL;
    char url[64];
    co.struct_size = sizeof(co);
    wtd_client_options_default(&co);
    co.verify = WTD_VERIFY_CERT_HASHES;
    co.cert_hashes = hash;
    co.cert_hash_count = 1;
    snprintf(url, sizeof url, "https://127.0.0.1:%u/reliable", port);
    if (wtd_client_connect(url, &co, &cs) != WTD_OK) return die("wtd_client_connect");
    if (wtd_server_accept(server, &ss, 5000) != WTD_OK) return die("wtd_server_accept");

    /* Transports with room for a full window of frames. */
    wtd_transport_options to;
    wtd_transport *ct = NULL, *st = NULL;
    to.struct_size = sizeof(to);
    wtd_transport_options_default(&to);
    to.outgoing_high_water_mark = 1024;
    to.incoming_high_water_mark = 1024;
    if (wtd_transport_new(cs, &to, &ct) != WTD_OK || wtd_transport_new(ss, &to, &st) != WTD_OK)
        return die("wtd_transport_new");
    if (wire) {
        int rc = print_wire(ct, st);
        wtd_transport_free(ct);
        wtd_transport_free(st);
        wtd_session_free(cs);
        wtd_session_free(ss);
        wtd_server_free(server);
        wtd_shutdown();
        return rc;
    }

    /* Reliability on both ends: fast RTO, many retries, injected loss on what each end receives. */
    wtd_reliability_options ro;
    wtd_reliability *tx = NULL, *rx = NULL;
    ro.struct_size = sizeof(ro);
    wtd_reliability_options_low_latency(&ro);
    ro.ack_timeout_ms = 100;
    ro.max_retries = 20;
    ro.min_rto_ms = 10;
    ro.max_rto_ms = 500;
    ro.max_in_flight = 256;
    if (wtd_reliability_new(ct, &ro, &tx) != WTD_OK) return die("wtd_reliability_new (client)");
    ro.in_order = ordered ? 1 : 0;
    if (wtd_reliability_new(st, &ro, &rx) != WTD_OK) return die("wtd_reliability_new (server)");
    if (wtd_reliability_set_test_drop_fraction(tx, loss) != WTD_OK ||
        wtd_reliability_set_test_drop_fraction(rx, loss) != WTD_OK)
        return die("wtd_reliability_set_test_drop_fraction");

    unsigned char *seen = calloc((size_t)count, 1);
    long next = 0, delivered = 0, duplicates = 0, finished = 0, gave_up = 0, foreign = 0;
    long last = -1;
    int in_order = 1;
    double start = now_s(), deadline = start + 120.0;
    wtd_reliable_result results[256];
    uint8_t buf[64];
    size_t n = 0;

    while ((finished < count || delivered + gave_up < count) && now_s() < deadline) {
        int progressed = 0;
        /* Send as many as the window allows. */
        while (next < count) {
            int len = snprintf((char *)buf, sizeof buf, "msg %ld", next);
            wtd_result r = wtd_reliability_send(tx, buf, (size_t)len, NULL);
            if (r == WTD_ERR_WOULD_BLOCK) break;
            if (r != WTD_OK) return die("wtd_reliability_send");
            next++;
            progressed = 1;
        }
        /* Receive what arrived. */
        while (wtd_reliability_receive(rx, buf, sizeof buf - 1, &n, 0) == WTD_OK) {
            long k = -1;
            buf[n] = 0;
            progressed = 1;
            if (sscanf((const char *)buf, "msg %ld", &k) != 1 || k < 0 || k >= count) {
                foreign++;
                continue;
            }
            if (seen[k]) {
                duplicates++;
                continue;
            }
            seen[k] = 1;
            delivered++;
            if (k < last) in_order = 0;
            last = k;
        }
        /* Collect outcomes. */
        if (wtd_reliability_poll_outcomes(tx, results, sizeof(wtd_reliable_result), 256, &n) == WTD_OK && n > 0) {
            progressed = 1;
            for (size_t i = 0; i < n; i++) {
                finished++;
                if (results[i].outcome == WTD_RELIABLE_GAVE_UP) gave_up++;
            }
        }
        if (!progressed) sleep_ms(1);
    }
    double elapsed = now_s() - start;

    wtd_reliability_stats txs, rxs;
    txs.struct_size = sizeof(txs);
    wtd_reliability_get_stats(tx, &txs);
    rxs.struct_size = sizeof(rxs);
    wtd_reliability_get_stats(rx, &rxs);
    printf("{\"sent\":%ld,\"delivered\":%ld,\"duplicates\":%ld,\"gave_up\":%ld,\"retransmits\":%llu,"
           "\"in_order\":%s,\"loss\":%g,\"dropped_frames\":%llu,\"duplicate_frames_suppressed\":%llu,"
           "\"srtt_us\":%llu,\"foreign\":%ld,\"elapsed_s\":%.3f}\n",
           next, delivered, duplicates, gave_up, (unsigned long long)txs.retransmits,
           in_order ? "true" : "false", loss,
           (unsigned long long)(txs.injected_drops + rxs.injected_drops),
           (unsigned long long)rxs.duplicates, (unsigned long long)txs.srtt_us, foreign, elapsed);
    fflush(stdout);

    free(seen);
    wtd_reliability_free(tx);
    wtd_reliability_free(rx);
    wtd_transport_free(ct);
    wtd_transport_free(st);
    wtd_session_close(cs, 0, "done");
    wtd_session_free(cs);
    wtd_session_free(ss);
    wtd_server_close(server);
    wtd_server_free(server);
    wtd_shutdown();
    return (delivered == count && duplicates == 0 && next == count) ? 0 : 1;
}
