#!/usr/bin/env python3
"""pywebtransport 0.6.1 StructuredDatagramTransport client against wtd_structured_echo (py311).

1. Objects of the registered types (1: Ping, 2: Reading; JSONSerializer; `u16 BE type id || JSON`)
   are sent with `send_obj` and must come back equal via `receive_obj` (pywt061_client.py's
   structured mode, reused).
2. Then raw datagrams the server must NOT echo are sent on the same session: an unregistered
   type id (9) and a 1-byte datagram (no type id). Nothing may come back within --quiet-time s;
   the server counts them (its exit line `STATS ... unknown=2`, checked by run.sh).
3. Closes the session with 42 / "bye".

Prints one JSON line; exits 0 if every object round-tripped and nothing came back for step 2.
"""
import argparse
import asyncio
import json
import logging
import ssl
import sys

from pywebtransport import ClientConfig, WebTransportClient

from pywt061_client import structured_mode


async def run(args) -> dict:
    result = {"peer": "pywebtransport-0.6.1", "draft": "draft-13", "mode": "structured+unknown",
              "url": args.url, "ok": False}
    cfg = ClientConfig.create(verify_mode=ssl.CERT_NONE, connect_timeout=args.timeout)
    async with WebTransportClient(config=cfg) as client:
        session = await client.connect(url=args.url)
        ok = await structured_mode(session, args, result)
        dg = await session.datagrams
        unknown = [b"\x00\x09" + json.dumps({"seq": 1}).encode(), b"\x07"]
        for d in unknown:
            await dg.send(data=d)
        echoed_unknown = []
        try:
            while True:
                echoed_unknown.append((await dg.receive(timeout=args.quiet_time)).hex())
        except Exception:  # pywebtransport TimeoutError: nothing (more) came back
            pass
        result.update(unknown_sent=len(unknown), unknown_echoed=echoed_unknown)
        await session.close(code=args.close_code, reason=args.close_reason)
        result["closed_with"] = {"code": args.close_code, "reason": args.close_reason}
        await asyncio.sleep(0.2)
        result["ok"] = ok and not echoed_unknown
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("url", help="e.g. https://127.0.0.1:4433/structured")
    ap.add_argument("--count", type=int, default=10, help="objects per type")
    ap.add_argument("--quiet-time", type=float, default=0.5, help="seconds to wait for a wrong echo")
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
        result = {"peer": "pywebtransport-0.6.1", "draft": "draft-13", "url": args.url, "ok": False,
                  "error": f"{type(e).__name__}: {e}"}
    print(json.dumps(result), flush=True)
    sys.exit(0 if result.get("ok") else 1)


if __name__ == "__main__":
    main()
