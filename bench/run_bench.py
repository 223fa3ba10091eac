#!/usr/bin/env python3
"""Runs every benchmark of scripts/bench.sh and prints ONE table (all figures from this run).

Not a test: nothing here asserts on timings. Called by scripts/bench.sh after the release build;
can be re-run alone:  python3 bench/run_bench.py [--secs 2] [--repeat 3] [--no-pin]

Process layout: each measurement is two processes on 127.0.0.1, the receiver/server pinned to
CPU 1 and the sender/client pinned to CPU 0 (taskset), unless --no-pin. The broadcast run is one
process (server + 1,000 client sessions), unpinned.
"""
import argparse
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RAWQ = os.path.join(ROOT, "target", "release", "rawq_bench")
# WTD_BENCH_BIN: another wtd_bench build (e.g. of an older commit) to compare against.
WTD = os.environ.get("WTD_BENCH_BIN") or os.path.join(ROOT, "build-release", "bench", "wtd_bench")
WTDR = os.path.join(ROOT, "target", "release", "examples", "wtdr_bench")  # wtd's Rust API, no FFI
PY = os.path.join(ROOT, "build", "interop-cache", "py312", "bin", "python")
PYB = os.path.join(ROOT, "bench", "py", "pywt_bench.py")


def log(msg):
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


class Runner:
    def __init__(self, pin):
        self.pin = pin and shutil.which("taskset") and (os.cpu_count() or 1) >= 2
        self.tmp = tempfile.mkdtemp(prefix="wtd-bench-")
        self.cert = os.path.join(self.tmp, "cert.pem")
        self.key = os.path.join(self.tmp, "key.pem")
        subprocess.run([RAWQ, "cert", self.cert, self.key], check=True)

    def cmd(self, cpu, argv):
        return (["taskset", "-c", str(cpu)] if self.pin else []) + argv

    def start_server(self, argv, env=None):
        """Starts a server on CPU 1 (`env`: extra environment), returns (proc, port, hash-or-None)."""
        p = subprocess.Popen(self.cmd(1, argv), stdout=subprocess.PIPE, stderr=sys.stderr, text=True,
                             env={**os.environ, **(env or {})})
        line = p.stdout.readline().split()
        if not line or line[0] != "READY":
            p.kill()
            raise RuntimeError(f"server {argv} did not start: {line}")
        return p, int(line[1]), (line[2] if len(line) > 2 else None)

    def client(self, argv, timeout=60, env=None):
        r = subprocess.run(self.cmd(0, argv), stdout=subprocess.PIPE, stderr=sys.stderr, text=True,
                           timeout=timeout, env={**os.environ, **(env or {})})
        lines = [l for l in r.stdout.splitlines() if l.startswith("{")]
        if not lines:
            raise RuntimeError(f"client {argv} printed no result (exit {r.returncode})")
        return json.loads(lines[-1])

    @staticmethod
    def finish_server(p, term=True, timeout=20):
        if term:
            p.send_signal(signal.SIGTERM)
        try:
            out, _ = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            out, _ = p.communicate()
        lines = [l for l in out.splitlines() if l.startswith("{")]
        return json.loads(lines[-1]) if lines else {}

    # ---- per implementation argv builders -------------------------------------------------
    def server_argv(self, impl, mode):
        if impl in ("raw", "raw_copy"):
            return [RAWQ, "server", mode]
        if impl == "py":
            return [PY, PYB, "server", mode, "--cert", self.cert, "--key", self.key]
        if impl == "wtd_rs":
            return [WTDR, "server", mode]
        argv = [WTD, "server", mode]
        return argv + (["--transport"] if impl == "wtd_tr" and mode == "count" else [])

    def client_argv(self, impl, port, h, mode, size, *rest):
        rest = [str(x) for x in rest]
        if impl in ("raw", "raw_copy"):
            mode = "blastcopy" if impl == "raw_copy" and mode == "blast" else mode
            return [RAWQ, "client", mode, str(port), str(size)] + rest
        url = f"https://127.0.0.1:{port}/bench"
        if impl == "py":
            return [PY, PYB, "client", mode, url, str(size)] + rest
        if impl == "wtd_rs":
            return [WTDR, "client", mode, url, h, str(size)] + rest
        return [WTD, "client", mode, url, h, str(size)] + rest

    def one_way(self, impl, size, secs, batch):
        srv, port, h = self.start_server(self.server_argv(impl, "count"))
        extra = ["--transport", batch] if impl == "wtd_tr" else []
        try:
            snd = self.client(self.client_argv(impl, port, h, "blast", size, secs, *extra))
        finally:
            rcv = self.finish_server(srv, term=False)
        if impl == "py" and not rcv:
            pass
        rcv_rate = rcv["received"] / rcv["secs"] if rcv.get("secs") else 0.0
        return dict(
            rate=rcv_rate,
            mbps=rcv["bytes"] / rcv["secs"] / 1e6 if rcv.get("secs") else 0.0,
            delivered=rcv["received"] / snd["accepted"] if snd["accepted"] else 0.0,
            cpu_snd=snd["cpu_us"] / snd["accepted"] if snd["accepted"] else 0.0,
            cpu_rcv=rcv["cpu_us"] / rcv["received"] if rcv["received"] else 0.0,
            snd=snd, rcv=rcv)


class Background:
    """CPU used by processes other than this benchmark's, per section: /proc/stat busy time minus
    the CPU time of our (waited-for) child processes, as % of all CPUs."""

    def __init__(self):
        self.sections = []
        self.tck = os.sysconf("SC_CLK_TCK")

    def snap(self):
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        busy = (sum(v[:8]) - v[3] - v[4]) / self.tck  # all but idle and iowait
        ch = __import__("resource").getrusage(__import__("resource").RUSAGE_CHILDREN)
        return time.monotonic(), busy, ch.ru_utime + ch.ru_stime

    def start(self, name):
        self.cur = (name, self.snap())

    def stop(self):
        name, (t0, b0, c0) = self.cur
        t1, b1, c1 = self.snap()
        pct = max(0.0, (b1 - b0) - (c1 - c0)) / ((t1 - t0) * (os.cpu_count() or 1)) * 100
        self.sections.append((name, pct))


def median_ping(runs):
    """One ping result from several runs: the median of each figure, the sums of the counts."""
    med = {k: statistics.median(r[k] for r in runs) for k in ("p50_us", "p99_us", "mean_us", "rate")}
    return dict(samples=sum(r["samples"] for r in runs), lost=sum(r["lost"] for r in runs), **med)


def fmt_rate(x):
    return "—" if x is None else f"{x:,.0f}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--secs", type=float, default=2.0, help="blast duration per one-way run")
    ap.add_argument("--repeat", type=int, default=5, help="interleaved one-way runs per cell (median reported)")
    ap.add_argument("--pings", type=int, default=5000, help="ping samples per server per round")
    ap.add_argument("--echo-rounds", type=int, default=5, help="interleaved ping rounds (median reported)")
    ap.add_argument("--window", type=int, default=32, help="datagrams in flight for the echo-rate row")
    ap.add_argument("--batch", type=int, default=32, help="datagrams per wtd_transport_send_multiple")
    ap.add_argument("--no-pin", action="store_true")
    ap.add_argument("--json", help="also write all raw results here")
    ap.add_argument("--skip-py", action="store_true", help="leave pywebtransport out (quick checks)")
    ap.add_argument("--fanout-conns", type=int, default=625, help="fan-out row: connections x 16 sessions")
    ap.add_argument("--fanout-hz", type=int, default=20)
    ap.add_argument("--fanout-secs", type=float, default=10.0)
    a = ap.parse_args()
    R = Runner(not a.no_pin)
    impls = ["raw", "wtd_rs", "wtd_s", "wtd_tr", "py"]
    if a.skip_py:  # quick local checks only: the table then shows "—" for pywebtransport
        impls = impls[:4]
    res = {"one_way": {}, "echo": {}, "ffi": {}, "broadcast": None}
    bg = Background()

    bg.start("one-way")
    # Interleaved like the echo rounds: run i of every implementation, then run i + 1, so a slow
    # phase of the VM (minutes long) hits every column alike instead of one column's runs.
    # raw_copy (not a table column): raw quinn copying each payload into a fresh `Bytes`, as any
    # C API must copy from the caller's buffer — a reference for what that copy costs.
    oneway_impls = impls[:1] + ["raw_copy"] + impls[1:]
    for size in (64, 1000):
        runs = {impl: [] for impl in oneway_impls}
        for i in range(a.repeat):
            for impl in oneway_impls:
                log(f"one-way {impl} {size} B run {i + 1}/{a.repeat}")
                runs[impl].append(R.one_way(impl, size, a.secs, a.batch))
        for impl in oneway_impls:
            med = sorted(runs[impl], key=lambda r: r["rate"])[len(runs[impl]) // 2]
            med["all_rates"] = [r["rate"] for r in runs[impl]]
            res["one_way"][(impl, size)] = med

    bg.stop()
    bg.start("echo")
    # C servers other than the callback one; wtd_owncb: the callback server in engine-owned mode
    # (its callbacks run inside the main thread's wtd_poll loop). The wtd C servers are pinged
    # twice per round: by the C client in threads mode (wtd's default; the table's echo rows) and
    # by the same client engine-owned — one thread, as raw quinn's current-thread client — which
    # separates the client's own thread hop from the server's. Ping runs go in interleaved rounds
    # (every server once per round, same order), so a phase of the VM hits every column alike;
    # each figure is the median over the rounds. The windowed echo rate runs in the first round.
    own_mode = {"wtd_poll": "echopoll", "wtd_own": "echoloop", "wtd_owncb": "echo"}
    echo_impls = ("raw", "wtd_rs", "wtd_s", "wtd_poll", "wtd_own", "wtd_owncb") + (() if a.skip_py else ("py",))
    owncli = ("wtd_s", "wtd_poll", "wtd_own", "wtd_owncb")
    pings = {i: [] for i in echo_impls}
    pings_oc = {i: [] for i in owncli}
    rates = {}

    def start_echo(impl):
        if impl in own_mode:
            return R.start_server([WTD, "server", own_mode[impl]],
                                  env={"WTD_BENCH_RUNTIME": "poll"} if impl == "wtd_owncb" else None)
        return R.start_server(R.server_argv(impl, "echo"))

    for rnd in range(a.echo_rounds):
        for impl in echo_impls:
            log(f"echo {impl} (round {rnd + 1}/{a.echo_rounds})")
            srv, port, h = start_echo(impl)
            try:
                cimpl = "wtd_s" if impl in own_mode else impl
                pings[impl].append(R.client(R.client_argv(cimpl, port, h, "ping", 64, a.pings), timeout=120))
                if rnd == 0:
                    rates[impl] = (None if impl == "wtd_rs" else  # the Rust bench has no windowed client
                                   R.client(R.client_argv(cimpl, port, h, "echorate", 64, a.secs, a.window)))
            finally:
                R.finish_server(srv)
        for impl in owncli:
            log(f"echo {impl}, engine-owned client (round {rnd + 1}/{a.echo_rounds})")
            srv, port, h = start_echo(impl)
            try:
                pings_oc[impl].append(R.client(R.client_argv("wtd_s", port, h, "ping", 64, a.pings),
                                               timeout=120, env={"WTD_BENCH_RUNTIME": "poll"}))
            finally:
                R.finish_server(srv)
    for impl in echo_impls:
        res["echo"][impl] = dict(ping=median_ping(pings[impl]), rounds=pings[impl], echorate=rates[impl])
    res["echo_owncli"] = {i: dict(ping=median_ping(v), rounds=v) for i, v in pings_oc.items()}

    bg.stop()
    bg.start("ffi + broadcast")
    log("ffi raw quinn")
    srv, port, h = R.start_server(R.server_argv("raw", "count"))
    res["ffi"]["raw"] = R.client(R.client_argv("raw", port, h, "ffi", 64, 64, 500))
    R.finish_server(srv, term=False)
    log("ffi wtd")
    srv, port, h = R.start_server([WTD, "server", "drain"])
    res["ffi"]["wtd"] = R.client(R.client_argv("wtd_s", port, h, "ffi", 64, 64, 500))
    res["ffi"]["wtd_rs"] = R.client(R.client_argv("wtd_rs", port, h, "ffi", 64, 64, 500))
    # The same calls with send coalescing (wtd_set_send_coalescing(1000)): no wake-up per burst.
    os.environ["WTD_BENCH_COALESCE_US"] = "1000"
    try:
        res["ffi"]["wtd_co"] = R.client(R.client_argv("wtd_s", port, h, "ffi", 64, 64, 500))
    finally:
        del os.environ["WTD_BENCH_COALESCE_US"]
    # Engine-owned (WTD_RUNTIME_POLL): the calls only queue; the client's idle time between bursts
    # is spent in wtd_poll, which hands the sends to QUIC (no thread to wake).
    os.environ["WTD_BENCH_RUNTIME"] = "poll"
    try:
        res["ffi"]["wtd_own"] = R.client(R.client_argv("wtd_s", port, h, "ffi", 64, 64, 500))
    finally:
        del os.environ["WTD_BENCH_RUNTIME"]
    R.finish_server(srv)

    log("broadcast 1000 sessions")
    r = subprocess.run([WTD, "broadcast", "125", "8", "50"], stdout=subprocess.PIPE, stderr=sys.stderr,
                       text=True, timeout=180)
    res["broadcast"] = json.loads([l for l in r.stdout.splitlines() if l.startswith("{")][-1])
    bg.stop()
    bg.start("fan-out")
    conns, per = a.fanout_conns, 16
    log(f"fan-out: {conns * per} sessions ({conns} connections x {per}), 64 B at {a.fanout_hz} Hz for {a.fanout_secs:g} s")
    srv, port, h = R.start_server([WTD, "server", "fanout", str(conns * per), str(a.fanout_hz), str(a.fanout_secs)])
    try:
        fan_cli = R.client([WTD, "client", "fanin", f"https://127.0.0.1:{port}/room", h, str(conns), str(per)],
                           timeout=300)
    finally:
        fan_srv = R.finish_server(srv, term=False, timeout=60)
    res["fanout"] = dict(server=fan_srv, client=fan_cli)
    bg.stop()

    # ---------------------------------------------------------------- table
    ow, ec, ff, bc = res["one_way"], res["echo"], res["ffi"], res["broadcast"]
    cols = ["raw quinn", "wtd Rust (no FFI)", "wtd C: session_send", "wtd C: transport batch / app-thread echo",
            "pywebtransport 0.21.1", "wtd C: engine-owned (wtd_poll loop)",
            "wtd C: engine-owned, callback echo"]
    rows = []

    def row(label, vals):
        vals = list(vals) + [None] * (len(cols) - len(vals))
        rows.append([label] + [("—" if v is None else v) for v in vals])

    for size in (64, 1000):
        row(f"one-way {size} B: datagrams/s received", [fmt_rate(ow[(i, size)]["rate"]) for i in impls])
        row(f"one-way {size} B: MB/s (payload)", [f"{ow[(i, size)]['mbps']:.1f}" for i in impls])
        row(f"one-way {size} B: delivered (recv/accepted)",
            [f"{ow[(i, size)]['delivered'] * 100:.2f} %" for i in impls])
    for size in (64, 1000):
        row(f"CPU µs/datagram {size} B: sender / receiver",
            [f"{ow[(i, size)]['cpu_snd']:.2f} / {ow[(i, size)]['cpu_rcv']:.2f}" for i in impls])
    ecl = lambda i, k: ec[i]["ping"][k] if i in ec else None  # noqa: E731
    # Echo rows: column 2 = wtd server echoing from the datagram callback, column 3 = from the
    # application thread in threads mode (blocking receive_batch + send: the "app-thread" path;
    # two thread hand-offs per echo that raw quinn's one-task echo has no counterpart of — the
    # earlier rounds called it "poll"), last two columns = engine-owned
    # (WTD_RUNTIME_POLL: one thread runs wtd_poll, then receive_batch and send | the callback).
    echo_cols = ["raw", "wtd_rs", "wtd_s", "wtd_poll", "py", "wtd_own", "wtd_owncb"]
    row("echo RTT 64 B p50 / p99 (µs) [wtd: callback | app thread | engine-owned loop | callback]",
        [f"{ecl(i, 'p50_us'):.0f} / {ecl(i, 'p99_us'):.0f}" if i in ec else None for i in echo_cols])
    row("echo ping-pong rate, 1 in flight (/s)", [fmt_rate(ecl(i, "rate")) if i in ec else None for i in echo_cols])
    row(f"echo rate, {a.window} in flight (/s)",
        [fmt_rate(ec[i]["echorate"]["rate"]) if i in ec and ec[i]["echorate"] else None for i in echo_cols])
    w, own = ff["wtd"], ff["wtd_own"]
    row("ns/call (wall): session_send; try_send / send_multiple per dgram [engine-owned: all three]",
        [f"{ff['raw']['ns_per_call']:.0f} (send_datagram)", f"{ff['wtd_rs']['session_send_ns']:.0f}",
         f"{w['session_send_ns']:.0f}",
         f"{w['transport_try_send_ns']:.0f} / {w['send_multiple_ns_per_dgram']:.0f}", None,
         f"{own['session_send_ns']:.0f}; {own['transport_try_send_ns']:.0f} / "
         f"{own['send_multiple_ns_per_dgram']:.0f}"])
    tc = w.get("thread_cpu_ns", [0, 0, 0])
    row("ns/call (calling thread's CPU): same calls",
        [None, f"{ff['wtd_rs'].get('thread_cpu_ns', 0):.0f}", f"{tc[0]:.0f}", f"{tc[1]:.0f} / {tc[2]:.0f}", None])
    co = ff["wtd_co"]
    row("ns/call (wall) with wtd_set_send_coalescing(1000 µs): same calls",
        [None, None, f"{co['session_send_ns']:.0f}",
         f"{co['transport_try_send_ns']:.0f} / {co['send_multiple_ns_per_dgram']:.0f}", None])
    row(f"broadcast to {bc['sessions']} sessions: µs/call (p50), ns/session",
        [None, None, None, f"{bc['p50_us']:.0f} µs, {bc['per_session_ns']:.0f} ns", None])
    fs, fc = res["fanout"]["server"], res["fanout"]["client"]
    if fs:
        row(f"fan-out {fs['sessions']} sessions, 64 B at {fs['hz']} Hz: server CPU %, delivered, p99 call",
            [None, None, None, f"{fs['cpu_pct']:.0f} % of a core, {fc['received'] / max(1, fs['accepted']) * 100:.2f} %, "
                         f"{fs['p99_us'] / 1e3:.1f} ms", None])

    widths = [max(len(str(r[c])) for r in rows + [["", *cols]]) for c in range(len(cols) + 1)]
    line = lambda r: "| " + " | ".join(str(v).ljust(widths[c]) for c, v in enumerate(r)) + " |"  # noqa: E731
    print(line(["metric", *cols]))
    print("|" + "|".join("-" * (wd + 2) for wd in widths) + "|")
    for r in rows:
        print(line(r))

    raw64, raw1k = ow[("raw", 64)]["rate"], ow[("raw", 1000)]["rate"]
    print()
    print("Ratios (SPEC §7 targets in brackets):")
    for impl, name, target in (("wtd_rs", "Rust session", 90), ("wtd_s", "C session_send", 90),
                               ("wtd_tr", "C transport batch", 80)):
        print(f"  wtd {name} / raw throughput: 64 B {ow[(impl, 64)]['rate'] / raw64 * 100:.1f} %, "
              f"1000 B {ow[(impl, 1000)]['rate'] / raw1k * 100:.1f} %   [>= {target} %]")
    rc64, rc1k = ow[("raw_copy", 64)]["rate"], ow[("raw_copy", 1000)]["rate"]
    print(f"  reference, raw quinn copying each payload into a fresh Bytes: {rc64 / raw64 * 100:.1f} % / "
          f"{rc1k / raw1k * 100:.1f} % of raw quinn; wtd C session_send / that: 64 B "
          f"{ow[('wtd_s', 64)]['rate'] / rc64 * 100:.1f} %, 1000 B {ow[('wtd_s', 1000)]['rate'] / rc1k * 100:.1f} %")
    for size in (64, 1000):
        print(f"  delivered {size} B (recv/accepted): " + ", ".join(
            f"{i} {ow[(i, size)]['delivered'] * 100:.2f} %" for i in impls if i != "py") + "   [wtd >= 99 %]")
        print(f"    not delivered, by counted reason ({size} B, C): " + "; ".join(
            f"{i}: receive queue {ow[(i, size)]['rcv'].get('receiver_queue_drops', 0):,}, QUIC receive "
            f"buffer {ow[(i, size)]['rcv'].get('quic_overflow', 0):,}, lost packets "
            f"{ow[(i, size)]['rcv'].get('lost_packets', 0):,}" for i in ("wtd_s", "wtd_tr") if i in impls))
        raw_rcv = ow[("raw", size)]["cpu_rcv"]
        print(f"  receiver CPU/datagram vs raw, {size} B: " + ", ".join(
            f"{i} {ow[(i, size)]['cpu_rcv'] / raw_rcv:.2f}x" for i in ("wtd_rs", "wtd_s", "wtd_tr"))
              + "   [<= 1.3x]")
    print(f"  ns/call (wall): session_send {w['session_send_ns']:.0f}, transport try_send "
          f"{w['transport_try_send_ns']:.0f}   [<= 300]; send_multiple {w['send_multiple_ns_per_dgram']:.0f}"
          f"/datagram   [<= 150]")
    print(f"  ns/call (calling thread's CPU): session_send {tc[0]:.0f}, try_send {tc[1]:.0f}, "
          f"send_multiple {tc[2]:.0f}/datagram")
    print(f"  ns/call (wall) with send coalescing 1000 µs: session_send {co['session_send_ns']:.0f}, try_send "
          f"{co['transport_try_send_ns']:.0f}   [<= 300]; send_multiple {co['send_multiple_ns_per_dgram']:.0f}"
          f"/datagram   [<= 150]")
    print(f"  ns/call (wall) engine-owned (wtd_poll): session_send {own['session_send_ns']:.0f}, try_send "
          f"{own['transport_try_send_ns']:.0f}   [<= 300]; send_multiple {own['send_multiple_ns_per_dgram']:.0f}"
          f"/datagram   [<= 150]")
    ep, epo = w.get("empty_poll_ns"), own.get("empty_poll_ns")
    if ep and epo:  # a game loop's per-session cost when nothing arrived (no target)
        print(f"  empty poll (nothing queued), ns/call: session_receive {ep[0]:.0f}, session_receive_batch "
              f"{ep[1]:.0f}, transport_receive_batch {ep[2]:.0f}; engine-owned {epo[0]:.0f} / {epo[1]:.0f} / "
              f"{epo[2]:.0f}")
    for impl, name in (("wtd_s", "callback"), ("wtd_poll", "app-thread (threads mode)"),
                       ("wtd_own", "engine-owned wtd_poll loop"), ("wtd_owncb", "engine-owned callback")):
        print(f"  wtd p99 / raw p99 (64 B echo, {name} path): {ecl(impl, 'p99_us') / ecl('raw', 'p99_us'):.2f}x"
              f"   [<= 1.2x]   (p50: {ecl(impl, 'p50_us') / ecl('raw', 'p50_us'):.2f}x)")
    oc = res["echo_owncli"]
    print("  same, wtd client engine-owned (one thread, like raw quinn's client): "
          + ", ".join(f"{name} {oc[impl]['ping']['p99_us'] / ecl('raw', 'p99_us'):.2f}x"
                      for impl, name in (("wtd_s", "callback"), ("wtd_poll", "app-thread"),
                                         ("wtd_own", "engine-owned loop"),
                                         ("wtd_owncb", "engine-owned callback")))
          + "   [<= 1.2x]")
    if "py" in ec:
        print(f"  wtd echo rate / pywebtransport echo rate: {a.window} in flight "
              f"{ec['wtd_s']['echorate']['rate'] / ec['py']['echorate']['rate']:.1f}x, "
              f"1 in flight {ecl('wtd_s', 'rate') / ecl('py', 'rate'):.1f}x   [>= 30x]")
    print()
    print("Details:")
    for (impl, size), r in ow.items():
        print(f"  one-way {impl:6} {size:4} B: runs {[round(x) for x in r['all_rates']]}/s; median run: "
              f"sender {json.dumps(r['snd'])} receiver {json.dumps(r['rcv'])}")
    for impl, r in ec.items():
        print(f"  echo {impl:6}: ping (median of {len(r['rounds'])} rounds) {json.dumps(r['ping'])}; p50/p99 per "
              f"round {[(round(x['p50_us']), round(x['p99_us'])) for x in r['rounds']]}; window "
              f"{json.dumps(r['echorate'])}")
    for impl, r in oc.items():
        print(f"  echo {impl:6}, engine-owned client: p50/p99 per round "
              f"{[(round(x['p50_us']), round(x['p99_us'])) for x in r['rounds']]}")
    print(f"  ffi raw: {json.dumps(ff['raw'])}")
    print(f"  ffi wtd: {json.dumps(ff['wtd'])}")
    print(f"  ffi wtd, send coalescing 1000 µs: {json.dumps(ff['wtd_co'])}")
    print(f"  ffi wtd, engine-owned: {json.dumps(ff['wtd_own'])}")
    print(f"  send wtd Rust: {json.dumps(ff['wtd_rs'])}")
    print(f"  broadcast: {json.dumps(bc)}")
    print(f"  fan-out: server {json.dumps(res['fanout']['server'])} client {json.dumps(res['fanout']['client'])}")
    pin = ("sender/client pinned to CPU 0, receiver/server to CPU 1 (taskset); broadcast unpinned"
           if R.pin else "no CPU pinning")
    threads = os.environ.get("WTD_BENCH_THREADS") or (
        "default (1 in the pinned processes, 2 in the unpinned broadcast)" if R.pin else "default (2)")
    print(f"  setup: {a.secs:g} s blasts, median of {a.repeat} interleaved one-way runs, {a.echo_rounds} interleaved "
          f"rounds of {a.pings} ping samples (+100 warm-up; medians), {pin}; wtd runtime threads {threads}; raw quinn on a tokio current-thread "
          f"runtime; wtd_session_send retry on WOULD_BLOCK = {os.environ.get('WTD_BENCH_BACKOFF') or 'yield'}")
    print("  CPU used by OTHER processes during the run (% of all CPUs; > a few % skews figures): "
          + ", ".join(f"{n} {p:.0f} %" for n, p in bg.sections))
    print(f"  machine: {platform.node()} nproc={os.cpu_count()} cpu={cpu_model()} kernel={platform.release()}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({**res, "one_way": {f"{k[0]}_{k[1]}": v for k, v in ow.items()}}, f, indent=1)
    shutil.rmtree(R.tmp, ignore_errors=True)


def cpu_model():
    try:
        for l in open("/proc/cpuinfo"):
            if l.startswith("model name"):
                return l.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


if __name__ == "__main__":
    main()
