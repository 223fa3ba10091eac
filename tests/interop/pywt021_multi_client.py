#!/usr/bin/env python3
"""Several WebTransport sessions on ONE QUIC connection, with pywebtransport 0.21.1 (draft-15).

Connects to URL, then opens --sessions - 1 more sessions on the same connection
(`session.connection.create_session`). Every session sends --count datagrams carrying its own
marker; each must get back exactly its own datagrams (none of another session's). Then every
session closes with 42 / "bye". Prints one JSON line; exit 0 on success.
"""
import argparse
import asyncio
import json
import ssl
import sys
from urllib.parse import urlsplit

from pywebtransport import ClientConfig, WebTransportClient


async def exchange(index: int, session, count: int, timeout: float) -> dict:
    marker = 0xA0 + index
    sent = [bytes([marker]) + i.to_bytes(2, "big") + bytes([marker]) * 20 for i in range(count)]
    got, foreign = set(), 0
    for d in sent:
        await session.send_datagram(data=d)
    deadline = asyncio.get_running_loop().time() + timeout
    while len(got) < count:
        left = deadline - asyncio.get_running_loop().time()
        if left <= 0:
            break
        try:
            echo = await asyncio.wait_for(session.read_datagram(), timeout=left)
        except asyncio.TimeoutError:
            break
        if echo in sent:
            got.add(echo)
        else:
            foreign += 1
    return {"session": index, "sent": count, "received": len(got), "foreign": foreign}


async def run(args) -> dict:
    result = {"peer": "pywebtransport-0.21.1", "draft": "draft-15", "url": args.url, "ok": False}
    parts = urlsplit(args.url)
    cfg = ClientConfig(verify_mode=ssl.CERT_NONE, max_pending_datagrams=1000, connect_timeout=args.timeout)
    async with WebTransportClient(config=cfg) as client:
        first = await client.connect(url=args.url)
        sessions = [first]
        for i in range(1, args.sessions):
            sessions.append(await first.connection.create_session(authority=parts.netloc, path=f"{parts.path}/{i}"))
        result["same_connection"] = all(s.connection is first.connection for s in sessions)
        results = await asyncio.gather(*(exchange(i, s, args.count, args.timeout) for i, s in enumerate(sessions)))
        result["sessions"] = results
        for s in sessions:
            await s.close(error_code=42, reason="bye")
        await asyncio.sleep(0.3)
    result["ok"] = result["same_connection"] and all(r["received"] == r["sent"] and r["foreign"] == 0 for r in results)
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("url")
    p.add_argument("--sessions", type=int, default=3)
    p.add_argument("--count", type=int, default=20)
    p.add_argument("--timeout", type=float, default=10.0)
    args = p.parse_args()
    try:
        result = asyncio.run(run(args))
    except Exception as e:  # report, don't trace
        result = {"ok": False, "error": f"{type(e).__name__}: {e}"}
    print(json.dumps(result), flush=True)
    sys.exit(0 if result.get("ok") else 1)


if __name__ == "__main__":
    main()
