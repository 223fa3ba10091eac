#!/usr/bin/env python3
"""WebTransport datagram echo client on pywebtransport 0.6.1 (aioquic based, draft-13, Python 3.11).

Modes:
  echo        send raw datagrams of the given sizes via `(await session.datagrams).send(data=...)`,
              check every echo byte-for-byte (`(await session.datagrams).receive(timeout=...)`).
  structured  send objects with StructuredDatagramTransport (JSONSerializer, 2-byte big-endian type id
              + JSON body per datagram) and check the echoed objects decode to the same values.
Then closes the session with --close-code/--close-reason (default 42 / "bye"); pywebtransport 0.6.1
writes the CLOSE_WEBTRANSPORT_SESSION capsule RAW on the CONNECT stream (no DATA frame), then FIN,
then closes the QUIC connection (code 0).
Prints one JSON line; exits 0 if every echo arrived intact, 1 otherwise.
"""
import argparse
import asyncio
import json
import logging
import ssl
import sys
import time
from dataclasses import dataclass

from pywebtransport import ClientConfig, StructuredDatagramTransport, WebTransportClient
from pywebtransport.serializer.json import JSONSerializer


@dataclass
class Ping:
    seq: int
    text: str


@dataclass
class Reading:
    sensor: str
    value: float
    tags: list[str]


def make_payload(tag: int, size: int) -> bytes:
    head = tag.to_bytes(4, "big")
    body = bytes(((tag * 7 + i) & 0xFF) for i in range(max(0, size - 4)))
    return (head + body)[:size]


async def echo_mode(session, args, result) -> bool:
    dg = await session.datagrams
    result["max_datagram_size_reported"] = dg.max_datagram_size
    sizes = [int(s) for s in args.sizes.split(",")]
    result["sizes"] = sizes
    sent = received = mismatches = resent = 0
    rtts = []
    tag = 0
    for size in sizes:
        pending = {}
        for _ in range(args.count):
            tag += 1
            p = make_payload(tag, size)
            pending.setdefault(p, []).append(time.perf_counter())
            await dg.send(data=p)
            sent += 1
        tries = 0
        while pending:
            try:
                echo = await dg.receive(timeout=1.0)
            except Exception:  # pywebtransport TimeoutError
                tries += 1
                if tries > 3:
                    break
                for p, times in pending.items():
                    for _ in times:
                        await dg.send(data=p)
                        resent += 1
                continue
            times = pending.get(echo)
            t0 = times.pop(0) if times else None
            if times == []:
                del pending[echo]
            if t0 is None:
                mismatches += 1
            else:
                received += 1
                rtts.append((time.perf_counter() - t0) * 1e6)
        if pending:
            result["missing_sizes"] = sorted({len(p) for p in pending})
            break
    rtts.sort()
    result.update(sent=sent, received=received, mismatches=mismatches, resent=resent,
                  rtt_p50_us=int(rtts[len(rtts) // 2]) if rtts else None)
    return received == sent and mismatches == 0 and "missing_sizes" not in result


async def structured_mode(session, args, result) -> bool:
    sdt: StructuredDatagramTransport = await session.create_structured_datagram_transport(
        serializer=JSONSerializer(), registry={1: Ping, 2: Reading}
    )
    objs = []
    for i in range(args.count):
        objs.append(Ping(seq=i, text=f"hello {i}"))
        objs.append(Reading(sensor=f"s{i}", value=i * 1.5, tags=["a", str(i)]))
    sent = received = mismatches = 0
    for obj in objs:  # one at a time: order and loss are then unambiguous
        got = None
        for _attempt in range(3):
            await sdt.send_obj(obj=obj)
            sent += 1
            try:
                got = await sdt.receive_obj(timeout=1.0)
                break
            except Exception:
                continue
        if got is None:
            result["missing"] = repr(obj)
            break
        if got == obj:
            received += 1
        else:
            mismatches += 1
            result.setdefault("mismatch_examples", []).append([repr(obj), repr(got)])
    result.update(objects=len(objs), sent=sent, received=received, mismatches=mismatches)
    return received == len(objs) and mismatches == 0


async def run(args) -> dict:
    result = {"peer": "pywebtransport-0.6.1", "draft": "draft-13", "mode": args.mode, "url": args.url, "ok": False}
    cfg = ClientConfig.create(verify_mode=ssl.CERT_NONE, connect_timeout=args.timeout)
    async with WebTransportClient(config=cfg) as client:
        session = await client.connect(url=args.url)
        if args.mode == "echo":
            ok = await echo_mode(session, args, result)
        else:
            ok = await structured_mode(session, args, result)
        await session.close(code=args.close_code, reason=args.close_reason)
        result["closed_with"] = {"code": args.close_code, "reason": args.close_reason}
        await asyncio.sleep(0.2)
        result["ok"] = ok
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("url", help="e.g. https://127.0.0.1:4433/echo")
    ap.add_argument("--mode", choices=["echo", "structured"], default="echo")
    ap.add_argument("--sizes", default="1,16,100,500,1000,1100", help="comma list of datagram sizes (echo mode)")
    ap.add_argument("--count", type=int, default=5, help="datagrams per size / objects per type")
    ap.add_argument("--close-code", type=int, default=42)
    ap.add_argument("--close-reason", default="bye")
    ap.add_argument("--timeout", type=float, default=10.0)
    ap.add_argument("--verbose", action="store_true", help="library logging at INFO")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO if args.verbose else logging.CRITICAL, stream=sys.stderr)
    try:
        result = asyncio.run(asyncio.wait_for(run(args), timeout=args.timeout * 3))
    except BaseException as e:  # noqa: BLE001
        if isinstance(e, KeyboardInterrupt):
            raise
        result = {"peer": "pywebtransport-0.6.1", "draft": "draft-13", "mode": args.mode, "url": args.url,
                  "ok": False, "error": f"{type(e).__name__}: {e}"}
    print(json.dumps(result), flush=True)
    sys.exit(0 if result.get("ok") else 1)


if __name__ == "__main__":
    main()
