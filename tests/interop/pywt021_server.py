#!/usr/bin/env python3
"""WebTransport datagram echo server on pywebtransport 0.21.1 (draft-15, Python >= 3.12).

Echoes every datagram back on the session it came from, any path. Prints `READY <port>` once
listening, one `SESSION_OPEN id=<n> path=<p> draft=draft-15 protocol=<wt_protocol>` line per accepted session and
one `SESSION_CLOSED id=<n> code=<u32> reason=<text>` line when a session ends (code/reason as
reported by pywebtransport's SESSION_CLOSED event; `code=none` if it gave none).
Runs until SIGINT/SIGTERM.
"""
import argparse
import asyncio
import signal
import socket
import sys

from pywebtransport import ServerConfig, WebTransportServer
from pywebtransport.types import EventType


def log(line: str) -> None:
    print(line, flush=True)


def free_udp_port(host: str) -> int:
    # pywebtransport's ServerConfig rejects bind_port=0, so pick one ourselves.
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


async def echo_session(session, sid: int) -> None:
    closed = asyncio.Event()

    def on_closed(event) -> None:
        data = event.data or {}
        code = data.get("error_code")
        reason = data.get("reason") or ""
        log(f"SESSION_CLOSED id={sid} code={'none' if code is None else code} reason={reason}")
        closed.set()

    session.events.on(event_type=EventType.SESSION_CLOSED, handler=on_closed)
    await session.accept()
    log(f"SESSION_OPEN id={sid} path={session.path} draft=draft-15 protocol={session.wt_protocol}")
    echoed = 0
    try:
        while not session.is_closed:
            data = await session.read_datagram()
            await session.send_datagram(data=data)
            echoed += 1
    except Exception as e:  # session/connection closed
        if not session.is_closed:
            log(f"SESSION_ERROR id={sid} err={type(e).__name__}: {e}")
    try:
        await asyncio.wait_for(closed.wait(), timeout=2)
    except asyncio.TimeoutError:
        log(f"SESSION_CLOSED id={sid} code=none reason=<no close event>")
    log(f"SESSION_STATS id={sid} echoed={echoed}")


async def handle_connection(conn, counter: list[int]) -> None:
    async for session in conn.incoming_sessions():
        counter[0] += 1
        asyncio.create_task(echo_session(session, counter[0]))


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0, help="UDP port (0 = pick a free one)")
    ap.add_argument("--cert", required=True, help="certificate PEM")
    ap.add_argument("--key", required=True, help="private key PEM")
    ap.add_argument("--max-pending-datagrams", type=int, default=1000,
                    help="receive queue depth (library default 100 drops silently under load)")
    args = ap.parse_args()

    port = args.port or free_udp_port(args.host)
    cfg = ServerConfig(
        bind_host=args.host,
        bind_port=port,
        certfile=args.cert,
        keyfile=args.key,
        max_pending_datagrams=args.max_pending_datagrams,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    counter = [0]
    async with WebTransportServer(config=cfg) as server:
        await server.listen()
        log(f"READY {port}")

        async def accept_loop() -> None:
            async for conn in server.incoming_connections():
                asyncio.create_task(handle_connection(conn, counter))

        task = asyncio.create_task(accept_loop())
        await stop.wait()
        task.cancel()
    log(f"STOPPED sessions={counter[0]}")


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
