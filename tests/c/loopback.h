/* Shared by C tests that need a wtd server on 127.0.0.1 and client sessions pinned to its
 * certificate. Include after wtd.h, <stdio.h> and check.h. */
#ifndef WTD_TEST_LOOPBACK_H
#define WTD_TEST_LOOPBACK_H

static wtd_server *server;
static uint16_t port;
static uint8_t cert_hash[32];

/* Starts `server` on 127.0.0.1, any free port (default options). */
static inline void start_loopback_server(void) {
    wtd_server_options so;
    so.struct_size = sizeof so;
    wtd_server_options_default(&so);
    so.port = 0;
    so.host = "127.0.0.1";
    CHECK_R(wtd_server_new(&so, &server), WTD_OK);
    CHECK_R(wtd_server_port(server, &port), WTD_OK);
    CHECK_R(wtd_server_cert_hash(server, cert_hash), WTD_OK);
}

/* Connects a client session to `path` (timeout `timeout_ms`); WTD_OK or the error. */
static inline wtd_result connect_client(const char *path, int32_t timeout_ms, wtd_session **client) {
    wtd_client_options o;
    char url[128];
    o.struct_size = sizeof o;
    wtd_client_options_default(&o);
    o.verify = WTD_VERIFY_CERT_HASHES, o.cert_hashes = cert_hash, o.cert_hash_count = 1;
    o.connect_timeout_ms = (uint32_t)timeout_ms;
    snprintf(url, sizeof url, "https://127.0.0.1:%u%s", port, path);
    return wtd_client_connect(url, &o, client);
}

/* Connects a client to `path` and accepts the server's side of it. */
static inline void pair(const char *path, wtd_session **client, wtd_session **srv) {
    CHECK_R(connect_client(path, 20000, client), WTD_OK);
    CHECK_R(wtd_server_accept(server, srv, 20000), WTD_OK);
}

#endif
