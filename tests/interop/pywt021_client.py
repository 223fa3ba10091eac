#!/usr/bin/env python3
"""WebTransport datagram echo client on pywebtransport 0.21.1 (draft-15, Python >= 3.12).

Connects to URL (certificate verification off), sends datagrams of the given sizes (`max` = the
largest payload pywebtransport accepts on this session, found by probing: an oversized
send_datagram raises DatagramError "wt_datagram validate exceeded" without sending), checks every
echo byte-for-byte, then closes the session with --close-code/--close-reason (default 42 / "bye").
Prints one JSON line and exits 0 if every echo arrived intact, 1 otherwise.
"""
import argparse
import asyncio
import json
import os
import ssl
import sys
import time

from pywebtransport import ClientConfig, DatagramError, WebTransportClient


def make_payload(tag: int, size: int) -> bytes:
    # 4-byte tag then a tag-dependent pattern, so every datagram is distinct and checkable.
    head = tag.to_bytes(4, "big")
    body = bytes(((tag * 7 + i) & 0xFF) for i in range(max(0, size - 4)))
    return (head + body)[:size] if size >= 4 else head[-size:]


async def probe_max(session, upper: int) -> int:
    for size in range(upper, 0, -1):
        try:
            await session.send_datagram(data=make_payload(0xFFFFFFFF, size))
        except DatagramError:
            continue
        return size  # this one was really sent; its echo is consumed by the caller
    raise RuntimeError("no datagram size accepted")


async def run(args) -> dict:
    result = {"peer": "pywebtransport-0.21.1", "draft": "draft-15", "url": args.url, "ok": False}
    cfg = ClientConfig(verify_mode=ssl.CERT_NONE, max_pending_datagrams=1000,
                       connect_timeout=args.timeout)
    async with WebTransportClient(config=cfg) as client:
        session = await client.connect(url=args.url)
        result["wt_protocol"] = session.wt_protocol
        try:
            diag = await session.connection.diagnose()
            result["peer_max_datagram_frame_size"] = diag.peer_max_datagram_frame_size
        except Exception:
            pass

        sizes = []
        max_size = None
        for s in args.sizes.split(","):
            if s == "max":
                max_size = await probe_max(session, cfg.max_datagram_size)
                probe = make_payload(0xFFFFFFFF, max_size)
                echo = await asyncio.wait_for(session.read_datagram(), timeout=args.timeout)
                if echo != probe:
                    result["error"] = f"probe echo mismatch ({len(echo)} bytes)"
                    return result
                sizes.append(max_size)
            else:
                sizes.append(int(s))
        result["max_datagram"] = max_size
        result["sizes"] = sizes

        # Send each size --count times; wait for all echoes of a batch, resend missing ones.
        sent = received = mismatches = resent = 0
        rtts = []
        tag = 0
        for size in sizes:
            pending = {}
            for _ in range(args.count):
                tag += 1
                p = make_payload(tag, size)
                pending.setdefault(p, []).append(time.perf_counter())
                await session.send_datagram(data=p)
                sent += 1
            tries = 0
            while pending:
                try:
                    echo = await asyncio.wait_for(session.read_datagram(), timeout=1.0)
                except asyncio.TimeoutError:
                    tries += 1
                    if tries > 3:
                        break
                    for p, times in pending.items():  # loss on loopback is rare; resend what's missing
                        for _ in times:
                            await session.send_datagram(data=p)
                            resent += 1
                    continue
                times = pending.get(echo)
                t0 = times.pop(0) if times else None
                if times == []:
                    del pending[echo]
                if t0 is None:
                    mismatches += 1  # not something we are waiting for (duplicate or corrupted)
                else:
                    received += 1
                    rtts.append((time.perf_counter() - t0) * 1e6)
            if pending:
                result["missing_sizes"] = sorted({len(p) for p in pending})
                break
        rtts.sort()
        result.update(sent=sent, received=received, mismatches=mismatches, resent=resent,
                      rtt_p50_us=int(rtts[len(rtts) // 2]) if rtts else None)
        await session.close(error_code=args.close_code, reason=args.close_reason)
        result["closed_with"] = {"code": args.close_code, "reason": args.close_reason}
        await asyncio.sleep(0.2)  # let the close capsule go out before the endpoint shuts down
        result["ok"] = received == sent and mismatches == 0 and not result.get("missing_sizes")
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("url", help="e.g. https://127.0.0.1:4433/echo")
    ap.add_argument("--sizes", default="1,16,100,500,1000,max", help="comma list of sizes; 'max' = probed maximum")
    ap.add_argument("--count", type=int, default=5, help="datagrams per size")
    ap.add_argument("--close-code", type=int, default=42)
    ap.add_argument("--close-reason", default="bye")
    ap.add_argument("--timeout", type=float, default=10.0)
    args = ap.parse_args()
    try:
        result = asyncio.run(asyncio.wait_for(run(args), timeout=args.timeout * 3))
    except BaseException as e:  # noqa: BLE001 - report anything as a failed result
        if isinstance(e, KeyboardInterrupt):
            raise
        result = {"peer": "pywebtransport-0.21.1", "draft": "draft-15", "url": args.url, "ok": False,
                  "error": f"{type(e).__name__}: {e}"}
    print(json.dumps(result), flush=True)
    sys.exit(0 if result.get("ok") else 1)


if __name__ == "__main__":
    main()
