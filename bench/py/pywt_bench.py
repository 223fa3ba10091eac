#!/usr/bin/env python3
"""The "pywebtransport 0.21.1" column of scripts/bench.sh (client -> its own server, draft-15).

Runs in build/interop-cache/py312 (Python 3.12, pywebtransport==0.21.1). One JSON line per run.

  pywt_bench.py server count --cert C --key K    count datagrams of one session until 500 ms idle
  pywt_bench.py server echo  --cert C --key K    echo every datagram (until SIGTERM)
  pywt_bench.py client blast    URL SIZE SECS          send_datagram loop for SECS
  pywt_bench.py client ping     URL SIZE COUNT         ping-pong, one in flight
  pywt_bench.py client echorate URL SIZE SECS WINDOW   windowed echo (WINDOW in flight)

Both ends use max_pending_datagrams=1000 (the library default of 100 drops silently under load;
tests/interop uses 1000 too).
"""
import asyncio
import json
import resource
import signal
import socket
import ssl
import sys
import time

from pywebtransport import ClientConfig, ServerConfig, WebTransportClient, WebTransportServer

PENDING = 1000


def cpu_us() -> int:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return int((r.ru_utime + r.ru_stime) * 1e6)


def out(d: dict) -> None:
    print(json.dumps(d), flush=True)


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def server(mode: str, cert: str, key: str) -> None:
    port = free_udp_port()
    cfg = ServerConfig(bind_host="127.0.0.1", bind_port=port, certfile=cert, keyfile=key,
                       max_pending_datagrams=PENDING)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    result: dict = {}

    async def count(session) -> None:
        await session.accept()
        cpu0 = cpu_us()
        n = nbytes = 0
        first = last = None
        while True:
            try:
                d = await asyncio.wait_for(session.read_datagram(), timeout=0.5 if first else 15)
            except Exception:  # idle timeout or closed
                break
            n += 1
            nbytes += len(d)
            last = time.perf_counter()
            first = first or last
        result.update(received=n, bytes=nbytes, secs=(last - first) if first else 0.0,
                      cpu_us=cpu_us() - cpu0)
        stop.set()

    async def echo(session) -> None:
        await session.accept()
        try:
            while not session.is_closed:
                d = await session.read_datagram()
                await session.send_datagram(data=d)
        except Exception:
            pass

    handler = count if mode == "count" else echo

    async with WebTransportServer(config=cfg) as srv:
        await srv.listen()
        print(f"READY {port}", flush=True)

        async def on_conn(conn) -> None:
            async for sess in conn.incoming_sessions():
                asyncio.create_task(handler(sess))

        async def accept_loop() -> None:
            async for conn in srv.incoming_connections():
                asyncio.create_task(on_conn(conn))

        task = asyncio.create_task(accept_loop())
        await stop.wait()
        task.cancel()
    if result:
        out(result)


async def client(mode: str, url: str, size: int, args: list[str]) -> None:
    cfg = ClientConfig(verify_mode=ssl.CERT_NONE, max_pending_datagrams=PENDING, connect_timeout=10)
    async with WebTransportClient(config=cfg) as c:
        session = await c.connect(url=url)
        payload = bytes(i & 0xFF for i in range(size))
        if mode == "blast":
            secs = float(args[0])
            cpu0 = cpu_us()
            t0 = time.perf_counter()
            end = t0 + secs
            accepted = failures = 0
            while time.perf_counter() < end:
                try:
                    await session.send_datagram(data=payload)
                    accepted += 1
                except Exception:
                    failures += 1
            send_secs = time.perf_counter() - t0
            await asyncio.sleep(0.3)
            out(dict(accepted=accepted, failures=failures, secs=send_secs, cpu_us=cpu_us() - cpu0))
        elif mode == "ping":
            count, warm = int(args[0]), 100
            rtts: list[float] = []
            lost = 0
            t_all = time.perf_counter()
            for i in range(count + warm):
                if i == warm:
                    t_all = time.perf_counter()
                p = i.to_bytes(4, "little") + payload[4:]
                t = time.perf_counter()
                await session.send_datagram(data=p)
                while True:
                    try:
                        e = await asyncio.wait_for(session.read_datagram(), timeout=1.0)
                    except asyncio.TimeoutError:
                        lost += 1
                        break
                    if e[:4] == p[:4]:
                        if i >= warm:
                            rtts.append((time.perf_counter() - t) * 1e6)
                        break
            total = time.perf_counter() - t_all
            rtts.sort()
            pick = lambda q: rtts[min(len(rtts) - 1, int(len(rtts) * q))] if rtts else 0.0  # noqa: E731
            out(dict(samples=len(rtts), lost=lost, p50_us=pick(0.5), p99_us=pick(0.99),
                     mean_us=sum(rtts) / max(1, len(rtts)), rate=len(rtts) / total))
        elif mode == "echorate":
            secs, window = float(args[0]), int(args[1])
            sent = recv = lost = inflight = 0
            t0 = time.perf_counter()
            end = t0 + secs
            while time.perf_counter() < end:
                while inflight < window:
                    await session.send_datagram(data=payload)
                    sent += 1
                    inflight += 1
                try:
                    await asyncio.wait_for(session.read_datagram(), timeout=0.02)
                    recv += 1
                    inflight = max(0, inflight - 1)
                except asyncio.TimeoutError:
                    lost += inflight
                    inflight = 0
            el = time.perf_counter() - t0
            out(dict(sent=sent, received=recv, presumed_lost=lost, secs=el, rate=recv / el))
        await session.close(error_code=0, reason="done")
        await asyncio.sleep(0.1)


def main() -> None:
    a = sys.argv[1:]
    if len(a) >= 2 and a[0] == "server":
        kv = dict(zip(a[2::2], a[3::2]))
        asyncio.run(server(a[1], kv["--cert"], kv["--key"]))
    elif len(a) >= 4 and a[0] == "client":
        asyncio.run(client(a[1], a[2], int(a[3]), a[4:]))
    else:
        print(__doc__, file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
