#!/usr/bin/env python3
"""Draft-02 WebTransport datagram echo server on aioquic 1.7.2 (an independent server peer).

Answers every CONNECT with `:protocol webtransport` (or `webtransport-h3`) with 200 and
`sec-webtransport-http3-draft: draft02`, echoes datagrams on the session they arrived on, any path.
Prints `READY <port>` once listening, and per session
  SESSION_OPEN id=<stream id> path=<p> draft=<draft-02|draft-15> protocol=<:protocol>
  SESSION_CLOSED id=<stream id> code=<u32> reason=<text>   (from a CLOSE_WEBTRANSPORT_SESSION capsule,
                                                             code=none when the stream just ended / was reset)
  SESSION_STATS id=<stream id> echoed=<n>
The close capsule is found by parsing the raw CONNECT stream bytes ourselves (aioquic silently drops
unknown frame types, which is what a raw capsule looks like to it): both a capsule inside an HTTP/3 DATA
frame (Chromium, pywt021) and a raw capsule directly on the stream (pywt061) are recognised.
aioquic has no session-close API, so the server never closes sessions itself.
Runs until SIGINT/SIGTERM.
"""
import argparse
import asyncio
import signal

from aioquic.asyncio import QuicConnectionProtocol, serve
from aioquic.buffer import Buffer, BufferReadError
from aioquic.h3.connection import H3_ALPN, H3Connection
from aioquic.h3.events import DatagramReceived, H3Event, HeadersReceived
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import ConnectionTerminated, ProtocolNegotiated, QuicEvent, StreamDataReceived, StreamReset

CLOSE_WEBTRANSPORT_SESSION = 0x2843
ADVERTISE_DRAFT15 = False


def log(line: str) -> None:
    print(line, flush=True)


class H3ConnectionD15(H3Connection):
    """Also advertise draft-15/draft-07 settings (like the capture server in WIRE-FACTS)."""

    def _get_local_settings(self) -> dict[int, int]:
        settings = super()._get_local_settings()
        settings.update({0x2C7CF000: 1, 0xC671706A: 16, 0x2B61: 16777216, 0x2B64: 100, 0x2B65: 100})
        return settings


class EchoProtocol(QuicConnectionProtocol):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._http: H3Connection | None = None
        self._sessions: dict[int, dict] = {}  # CONNECT stream id -> {"echoed", "closed"}
        self._raw: dict[int, bytes] = {}  # raw bytes of client bidi streams (HEADERS, DATA, capsules)

    def quic_event_received(self, event: QuicEvent) -> None:
        if isinstance(event, ProtocolNegotiated):
            cls = H3ConnectionD15 if ADVERTISE_DRAFT15 else H3Connection
            self._http = cls(self._quic, enable_webtransport=True)
        elif isinstance(event, StreamDataReceived) and event.stream_id % 4 == 0:
            self._raw[event.stream_id] = self._raw.get(event.stream_id, b"") + event.data
            if event.stream_id in self._sessions:
                self._check_close(event.stream_id, event.end_stream)
        elif isinstance(event, StreamReset) and event.stream_id in self._sessions:
            self._end_session(event.stream_id, None, f"stream reset {event.error_code}")
        elif isinstance(event, ConnectionTerminated):
            for sid in list(self._sessions):
                self._end_session(sid, None, f"connection closed {event.error_code} {event.reason_phrase}")
        if self._http is not None:
            for h3_event in self._http.handle_event(event):
                self._h3_event_received(h3_event)

    def _h3_event_received(self, event: H3Event) -> None:
        if isinstance(event, HeadersReceived):
            headers = dict(event.headers)
            method, protocol = headers.get(b":method"), headers.get(b":protocol")
            if method == b"CONNECT" and protocol in (b"webtransport", b"webtransport-h3"):
                self._sessions[event.stream_id] = {"echoed": 0, "closed": False}
                self._http.send_headers(
                    event.stream_id, [(b":status", b"200"), (b"sec-webtransport-http3-draft", b"draft02")]
                )
                path = headers.get(b":path", b"").decode(errors="replace")
                # draft label: this server answers draft-02 style; a webtransport-h3 request is a draft-15 client
                draft = "draft-15" if protocol == b"webtransport-h3" else "draft-02"
                log(f"SESSION_OPEN id={event.stream_id} path={path} draft={draft} protocol={protocol.decode()}")
                self._check_close(event.stream_id, False)  # close capsule may have come in the same packet
            else:
                self._http.send_headers(event.stream_id, [(b":status", b"404")], end_stream=True)
            self.transmit()
        elif isinstance(event, DatagramReceived):
            session = self._sessions.get(event.stream_id)
            if session is not None and not session["closed"]:
                self._http.send_datagram(event.stream_id, event.data)
                session["echoed"] += 1
                self.transmit()

    def _check_close(self, sid: int, stream_ended: bool) -> None:
        code, reason = self._parse_close(self._raw.get(sid, b""))
        if code is not None or stream_ended:
            self._end_session(sid, code, reason if code is not None else "fin")
            try:  # answer with FIN on the CONNECT stream, like aioquic's own example does
                self._http.send_data(sid, b"", end_stream=True)
                self.transmit()
            except Exception:
                pass

    @staticmethod
    def _parse_close(raw: bytes):
        """Walk the TLVs of the CONNECT stream: HTTP/3 frames, DATA frames carrying capsules, raw capsules."""

        def tlvs(data: bytes):
            b = Buffer(data=data)
            try:
                while not b.eof():
                    t = b.pull_uint_var()
                    n = b.pull_uint_var()
                    yield t, b.pull_bytes(n)
            except BufferReadError:
                return

        body = b""
        for t, v in tlvs(raw):
            if t == 0x00:  # DATA frame: capsule bytes may span several frames
                body += v
            elif t == CLOSE_WEBTRANSPORT_SESSION and len(v) >= 4:  # raw capsule (pywt061)
                return int.from_bytes(v[:4], "big"), v[4:].decode(errors="replace")
        for t, v in tlvs(body):
            if t == CLOSE_WEBTRANSPORT_SESSION and len(v) >= 4:
                return int.from_bytes(v[:4], "big"), v[4:].decode(errors="replace")
        return None, None

    def _end_session(self, sid: int, code, reason: str) -> None:
        session = self._sessions.get(sid)
        if session is None or session["closed"]:
            return
        session["closed"] = True
        log(f"SESSION_CLOSED id={sid} code={'none' if code is None else code} reason={reason}")
        log(f"SESSION_STATS id={sid} echoed={session['echoed']}")


async def main() -> None:
    global ADVERTISE_DRAFT15
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0, help="UDP port (0 = pick a free one)")
    ap.add_argument("--cert", required=True, help="certificate PEM")
    ap.add_argument("--key", required=True, help="private key PEM")
    ap.add_argument("--advertise-draft15", action="store_true",
                    help="also send SETTINGS 0x2c7cf000=1, 0xc671706a=16 and WT_INITIAL_MAX_* (still answers draft-02 style)")
    ap.add_argument("--udp-payload-size", type=int, default=1452,
                    help="largest UDP payload aioquic sends (default 1452 for loopback; aioquic's own default is 1200)")
    args = ap.parse_args()
    ADVERTISE_DRAFT15 = args.advertise_draft15

    # max_datagram_size = UDP payload aioquic sends. Its default (1200) cannot carry the echo of a
    # datagram as large as Chromium's maxDatagramSize (1211) — the echo would be dropped silently.
    config = QuicConfiguration(alpn_protocols=H3_ALPN, is_client=False, max_datagram_frame_size=65536,
                               max_datagram_size=args.udp_payload_size)
    config.load_cert_chain(args.cert, args.key)
    server = await serve(args.host, args.port, configuration=config, create_protocol=EchoProtocol)
    port = server._transport.get_extra_info("sockname")[1]
    log(f"READY {port}")

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    server.close()
    log("STOPPED")


if __name__ == "__main__":
    asyncio.run(main())
