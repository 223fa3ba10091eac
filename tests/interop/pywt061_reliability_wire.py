#!/usr/bin/env python3
"""pywebtransport 0.6.1's reliability wire format, produced by its own code (py311 venv).

Drives the real `pywebtransport.datagram.reliability.DatagramReliabilityLayer` over a stub
transport whose `_send_framed_data` is pywebtransport's own `WebTransportDatagramTransport.
_send_framed_data` (the `u8 type_len || type || body` framing) and whose `send` records the bytes:

  * DATA: `layer.send(data=b"hi")` with the layer's next sequence number set to 7;
  * ACK:  the layer's DATA handler answering an incoming DATA frame with sequence 1234.

Then feeds the frames given with --wtd-data / --wtd-ack (hex; default: wtd's, as pinned by the
unit test in src/datagram/reliability.rs) to the layer's receive handler, to show that
pywebtransport parses wtd's frames (DATA seq 7 → payload b"hi" queued; ACK 1234 clears the
pending send 1234).

Prints one JSON line {"data_hex", "ack_hex", "parsed_data", "parsed_ack", "ok"}; exits 0 if both
parses worked (the byte comparison is run.sh's job).
"""
import argparse
import asyncio
import json
import struct
import sys
from types import SimpleNamespace

from pywebtransport.datagram.reliability import DatagramReliabilityLayer, _ReliableDatagram
from pywebtransport.datagram.transport import WebTransportDatagramTransport


class StubTransport:
    """Just enough of WebTransportDatagramTransport for the reliability layer."""

    # pywebtransport's own framing code, bound to this stub.
    _send_framed_data = WebTransportDatagramTransport._send_framed_data
    is_closed = False

    def __init__(self) -> None:
        self.sent: list[bytes] = []

    async def send(self, *, data, priority: int = 0, ttl=None) -> None:
        self.sent.append(bytes(data))


async def run(args) -> dict:
    stub = StubTransport()
    layer = DatagramReliabilityLayer(stub, ack_timeout=1.0, max_retries=3)
    # What __aenter__ sets up, without subscribing to a real transport's events.
    layer._lock = asyncio.Lock()
    layer._incoming_queue = asyncio.Queue()

    layer._send_sequence = 7
    await layer.send(data=b"hi")
    data_frame = stub.sent[-1]

    await layer._handle_data_message(payload=struct.pack("!I", 1234) + b"x")
    ack_frame = stub.sent[-1]
    _ = layer._incoming_queue.get_nowait()  # the DATA it just acknowledged

    # The other direction: pywebtransport's receive path parses wtd's frames.
    wtd_data = bytes.fromhex(args.wtd_data)
    wtd_ack = bytes.fromhex(args.wtd_ack)
    await layer._on_datagram_received(SimpleNamespace(data={"data": wtd_data}))
    parsed_data = None
    if not layer._incoming_queue.empty():
        parsed_data = layer._incoming_queue.get_nowait().decode("latin-1")
    seq_sent = sorted(layer._received_sequences)
    layer._pending_acks[1234] = _ReliableDatagram(data=b"", sequence=1234)
    await layer._on_datagram_received(SimpleNamespace(data={"data": wtd_ack}))
    parsed_ack = 1234 not in layer._pending_acks

    ok = parsed_data == "hi" and 7 in seq_sent and parsed_ack
    return {
        "peer": "pywebtransport-0.6.1",
        "data_hex": data_frame.hex(),
        "ack_hex": ack_frame.hex(),
        "parsed_data": parsed_data,
        "parsed_data_seq_seen": 7 in seq_sent,
        "parsed_ack": parsed_ack,
        "ok": ok,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--wtd-data", default=(b"\x04DATA\x00\x00\x00\x07hi").hex())
    ap.add_argument("--wtd-ack", default=(b"\x03ACK1234").hex())
    args = ap.parse_args()
    try:
        result = asyncio.run(run(args))
    except Exception as e:  # noqa: BLE001
        result = {"peer": "pywebtransport-0.6.1", "ok": False, "error": f"{type(e).__name__}: {e}"}
    print(json.dumps(result), flush=True)
    sys.exit(0 if result.get("ok") else 1)


if __name__ == "__main__":
    main()
