"""A shaping TCP proxy on loopback: one-way delay, a bandwidth cap and fault hooks, in user space.

This machine's kernel has no ``netem`` qdisc, so wide-area links are emulated
by a small asyncio proxy of our own placed between party processes (see
:func:`benchmarks.harness.run_processes` and ``benchmarks/run.py --link``).

Model
-----
A :class:`LinkProfile` ``100mbit:50ms`` means, **per direction**, a one-way
delay of 50 ms (so a round trip costs 100 ms, as with SecretFlow's
``netem delay 50ms`` on each machine's egress) and a token-bucket cap of
100 Mbit/s (bucket size ``burst``, default 128 KiB like its ``tbf ... burst
128kb``). Each direction of each connection is a pipeline of two tasks:

* the *reader* takes a chunk from the sending socket at time ``t``, asks the
  direction's token bucket when the chunk has been serialized onto the link
  (``t_ser``; later when the bucket is in debt) and queues
  ``(t_ser + delay, chunk)``;
* the *writer* sleeps until each chunk's arrival time and writes it on.

So bytes sent at ``t`` arrive at ``t + delay + serialization time`` while
later chunks are already in flight: throughput is the cap, not
``chunk / delay`` as it would be if each read slept in series. The token
bucket of a direction is shared by every connection between the same two
parties (in both proxies of a party pair: the requests of ``a -> b`` and the
responses of ``b -> a`` both travel from ``a`` to ``b``), so parallel streams
share the link as on a real one.

Emulated TCP is ideal: no loss, no slow start, windows as large as the bounded
queue (``max(1 MiB, 2 x bandwidth-delay product)`` per direction). Real TCP over
a 100 ms round trip is slower, never faster, so the figures are lower bounds
on a real link's cost.

Faults (used by the chaos suite, ``benchmarks/suites/chaos.py``): :meth:`Proxy.reset` (abort every connection
with a TCP RST), :meth:`Proxy.stall` (half-open: connections stay up but no
byte moves in the chosen direction until :meth:`Proxy.resume`),
:meth:`Proxy.truncate_after` (forward ``n`` more bytes in a direction, then
cut the connection) and :meth:`Proxy.refuse` (new connections are closed at
once).

Bounds: listens and connects on 127.0.0.1 only; at most ``max_connections``
connections per proxy; at most the queue bound buffered per direction
(backpressure through TCP beyond it).

Usage::

    python benchmarks/linkshaper.py --target 127.0.0.1:50051 --link 100mbit:50ms [--listen-port 0]
    python benchmarks/linkshaper.py --overhead       # the proxy's own cost, unshaped, vs direct loopback

>>> with LinkShaper() as shaper:                                        # doctest: +SKIP
...     p = shaper.add_proxy(target_port=50051, profile=LinkProfile.parse("10mbit:50ms"), src="a", dst="b")
...     p.port                                        # connect here instead of 50051
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import re
import socket
import statistics
import struct
import sys
import threading
import time
from dataclasses import dataclass, field

__all__ = ["LinkProfile", "LinkShaper", "Proxy", "TokenBucket", "measure_overhead", "PROFILES"]

LOOPBACK = "127.0.0.1"
_DEBUG = bool(os.environ.get("LINKSHAPER_DEBUG"))
#: Named profiles accepted by ``--link`` besides ``RATE:DELAY``.
PROFILES = {
    "lan": "no proxy: parties talk over loopback directly",
    "proxy": "through the proxy, unshaped (no delay, no cap): the proxy's own cost",
    "100mbit:50ms": "100 Mbit/s per direction, 50 ms one way (100 ms round trip)",
    "10mbit:50ms": "10 Mbit/s per direction, 50 ms one way",
}
_RATE_UNITS = {"bit": 1, "kbit": 1e3, "mbit": 1e6, "gbit": 1e9}
_DELAY_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0}
_SPEC_RE = re.compile(r"^(?P<rate>\d+(?:\.\d+)?)(?P<ru>bit|kbit|mbit|gbit)(?::(?P<delay>\d+(?:\.\d+)?)(?P<du>us|ms|s))?$")


# --------------------------------------------------------------------------- profile

@dataclass(frozen=True)
class LinkProfile:
    """How one link between two parties behaves, per direction.

    Attributes
    ----------
    name : str
        The spec it was parsed from (``"100mbit:50ms"``, ``"proxy"``).
    rate_bps : float or None
        Cap in bits per second per direction; None: unlimited.
    delay : float
        One-way delay in seconds per direction.
    burst : int
        Token-bucket size in bytes (how much may leave at once after an idle spell).
    """

    name: str
    rate_bps: float | None = None
    delay: float = 0.0
    burst: int = 128 * 1024

    @classmethod
    def parse(cls, spec: "str | LinkProfile | None") -> "LinkProfile | None":
        """``"lan"``/None/empty -> None (no proxy); ``"proxy"`` -> unshaped; ``"RATE[:DELAY]"`` -> shaped.

        ``RATE`` is a number with ``bit``, ``kbit``, ``mbit`` or ``gbit``; ``DELAY`` with ``us``, ``ms`` or ``s``.
        """
        if spec is None or isinstance(spec, LinkProfile):
            return spec
        s = str(spec).strip().lower()
        if s in ("", "lan", "none"):
            return None
        if s in ("proxy", "unshaped"):
            return cls("proxy")
        m = _SPEC_RE.match(s)
        if not m:
            raise ValueError(f"link profile {spec!r}: expected 'lan', 'proxy' or RATE[:DELAY] like '100mbit:50ms'")
        rate = float(m["rate"]) * _RATE_UNITS[m["ru"]]
        delay = float(m["delay"]) * _DELAY_UNITS[m["du"]] if m["delay"] else 0.0
        if rate <= 0:
            raise ValueError(f"link profile {spec!r}: the rate must be > 0")
        if delay > 10:
            raise ValueError(f"link profile {spec!r}: a one-way delay above 10 s is not a link")
        return cls(s, rate, delay)

    @property
    def shaped(self) -> bool:
        return self.rate_bps is not None or self.delay > 0

    def queue_bytes(self) -> int:
        """Bytes buffered per direction before backpressure: max(1 MiB, 2 x bandwidth-delay product), <= 64 MiB."""
        if self.rate_bps is None:
            return 4 * 2**20
        bdp = self.rate_bps / 8 * max(self.delay, 0.001)
        return int(min(64 * 2**20, max(2**20, 2 * bdp)))

    def read_bytes(self) -> int:
        """Largest chunk taken off a socket at once: about 2 ms of the cap (4-64 KiB), 256 KiB unshaped."""
        if self.rate_bps is None:
            return 256 * 1024
        return int(min(64 * 1024, max(4 * 1024, self.rate_bps / 8 * 0.002)))

    def as_dict(self) -> dict:
        return {"profile": self.name, "rate_mbit": None if self.rate_bps is None else self.rate_bps / 1e6,
                "one_way_delay_ms": round(self.delay * 1000, 3), "burst_bytes": self.burst,
                "queue_bytes_per_direction": self.queue_bytes()}


class TokenBucket:
    """Bytes per second with a bucket of ``burst`` bytes, in virtual time.

    :meth:`reserve` never sleeps: it returns when ``n`` bytes have left (now,
    or later when the bucket is in debt). Debt carries over, so a queue of
    chunks departs at exactly the cap.
    """

    def __init__(self, rate_bytes: float, burst: int):
        if not rate_bytes > 0:
            raise ValueError("rate must be > 0")
        self.rate = float(rate_bytes)
        self.burst = max(1, int(burst))
        self._tokens = float(self.burst)
        self._t: float | None = None

    def reserve(self, n: int, now: float) -> float:
        """Take ``n`` bytes' worth of tokens at ``now``; return the time the last byte is on the link."""
        if self._t is None:
            self._t = now
        if now > self._t:
            self._tokens = min(float(self.burst), self._tokens + (now - self._t) * self.rate)
            self._t = now
        self._tokens -= n
        if self._tokens >= 0:
            return self._t
        return self._t + (-self._tokens) / self.rate


# --------------------------------------------------------------------------- proxy

@dataclass
class _Faults:
    refuse: bool = False
    stalled: set = field(default_factory=set)            # {"up", "down"}
    truncate: dict = field(default_factory=dict)         # direction -> bytes still allowed


class _Conn:
    def __init__(self, proxy: "Proxy", cr, cw, sr, sw):
        self.proxy, self.cr, self.cw, self.sr, self.sw = proxy, cr, cw, sr, sw
        self.tasks: list[asyncio.Task] = []
        self.closed = False
        # per direction: allowed bytes left before a truncation cut (None: no truncation armed)
        self.truncate_left: dict[str, int | None] = {
            d: proxy._faults.truncate.get(d) for d in ("up", "down")}

    def abort(self, rst: bool = True) -> None:
        if self.closed:
            return
        self.closed = True
        for w in (self.cw, self.sw):
            sock = w.get_extra_info("socket")
            if rst and sock is not None:
                try:  # SO_LINGER 0: close sends RST, not FIN
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                except OSError:
                    pass
            w.transport.abort()
        for t in self.tasks:
            if t is not asyncio.current_task():
                t.cancel()


class Proxy:
    """One listening port on 127.0.0.1 forwarding to one target port, shaped per direction.

    ``up`` is client -> target (bytes ``src`` sends to ``dst``), ``down`` the way back.
    The fault methods are thread-safe (they hop onto the shaper's loop).
    """

    def __init__(self, shaper: "LinkShaper", target_port: int, profile: LinkProfile | None, src: str, dst: str,
                 max_connections: int):
        self._shaper = shaper
        self.target_port = int(target_port)
        self.profile = profile or LinkProfile("proxy")
        self.src, self.dst = src, dst
        self.max_connections = max_connections
        self.port: int | None = None
        self._server: asyncio.base_events.Server | None = None
        self._conns: set[_Conn] = set()
        self._faults = _Faults()
        self.bytes = {"up": 0, "down": 0}
        self.connections = 0
        self.refused = 0

    # -- lifecycle (on the loop) -------------------------------------------------
    async def _start(self, listen_port: int = 0) -> int:
        self._server = await asyncio.start_server(self._accept, LOOPBACK, listen_port, limit=2**20)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
        for c in list(self._conns):
            c.abort(rst=False)
        if self._server is not None:
            try:
                await asyncio.wait_for(self._server.wait_closed(), 2.0)
            except (asyncio.TimeoutError, Exception):  # noqa: BLE001 - closing anyway
                pass

    async def _accept(self, cr: asyncio.StreamReader, cw: asyncio.StreamWriter) -> None:
        if self._faults.refuse or len(self._conns) >= self.max_connections:
            self.refused += 1
            _debug(f"{self.src}->{self.dst}: refused ({'fault' if self._faults.refuse else 'connection limit'})")
            cw.transport.abort()
            return
        try:
            sr, sw = await asyncio.wait_for(asyncio.open_connection(LOOPBACK, self.target_port, limit=2**20), 10.0)
        except (OSError, asyncio.TimeoutError) as exc:
            self.refused += 1
            _debug(f"{self.src}->{self.dst}: target {self.target_port} unreachable: {exc!r}")
            cw.transport.abort()
            return
        _debug(f"{self.src}->{self.dst}: connection {self.connections + 1} open")
        for w in (cw, sw):
            sock = w.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.connections += 1
        conn = _Conn(self, cr, cw, sr, sw)
        self._conns.add(conn)
        up = self._shaper._bucket(self.src, self.dst, self.profile)
        down = self._shaper._bucket(self.dst, self.src, self.profile)
        conn.tasks = [asyncio.ensure_future(self._direction(conn, "up", cr, sw, up)),
                      asyncio.ensure_future(self._direction(conn, "down", sr, cw, down))]
        try:
            await asyncio.gather(*conn.tasks, return_exceptions=True)
        finally:
            self._conns.discard(conn)
            if not conn.closed:
                conn.closed = True
                for w in (cw, sw):
                    w.close()

    async def _direction(self, conn: _Conn, d: str, reader, writer, bucket: TokenBucket | None) -> None:
        """One direction of one connection: reader and writer halves joined by a bounded, timestamped queue."""
        loop = asyncio.get_running_loop()
        prof = self.profile
        cap, n_read = prof.queue_bytes(), prof.read_bytes()
        q: collections.deque = collections.deque()
        queued = 0
        more = asyncio.Event()       # something was queued
        room = asyncio.Event()       # the queue has room
        room.set()
        eof = False

        async def read_side() -> None:
            nonlocal queued, eof
            try:
                while True:
                    await room.wait()
                    data = await reader.read(n_read)
                    if not data:
                        break
                    left = conn.truncate_left[d]
                    cut = False
                    if left is not None:
                        if len(data) >= left:
                            data, cut = data[:left], True
                        conn.truncate_left[d] = left - len(data)
                    now = loop.time()
                    depart = bucket.reserve(len(data), now) if (bucket is not None and data) else now
                    if data:
                        q.append((depart + prof.delay, data))
                        queued += len(data)
                        more.set()
                        if queued >= cap:
                            room.clear()
                    if cut:
                        q.append((depart + prof.delay, None))  # the cut, after the allowed bytes arrive
                        more.set()
                        return
            except (ConnectionError, OSError):
                pass
            eof = True
            more.set()

        async def write_side() -> None:
            nonlocal queued
            while True:
                while not q:
                    if eof:
                        try:
                            if writer.can_write_eof():
                                writer.write_eof()  # half-close: the peer sees the sender's FIN
                        except (ConnectionError, OSError, RuntimeError):
                            pass
                        return
                    more.clear()
                    await more.wait()
                at, data = q[0]
                wait = at - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                while d in self._faults.stalled and not conn.closed:
                    await asyncio.sleep(0.01)  # half-open stall: hold the bytes, keep the connection
                q.popleft()
                if data is None:  # truncation: cut the connection after the allowed bytes
                    conn.abort(rst=True)
                    return
                queued -= len(data)
                if queued < cap:
                    room.set()
                writer.write(data)
                self.bytes[d] += len(data)
                await writer.drain()

        rt = asyncio.ensure_future(read_side())
        try:
            await write_side()
            _debug(f"{self.src}->{self.dst} {d}: ended (eof={eof}, closed={conn.closed})")
        except (ConnectionError, OSError) as exc:
            _debug(f"{self.src}->{self.dst} {d}: {exc!r}; aborting the connection")
            conn.abort(rst=True)
        finally:
            rt.cancel()

    # -- faults (thread-safe) ----------------------------------------------------
    def _call(self, fn) -> None:
        self._shaper._run(self._async(fn))

    @staticmethod
    async def _async(fn):
        fn()

    def reset(self) -> None:
        """Abort every open connection with a TCP RST (both sides see 'connection reset')."""
        self._call(lambda: [c.abort(rst=True) for c in list(self._conns)])

    def stall(self, direction: str = "both") -> None:
        """Half-open stall: keep connections up but forward nothing in ``direction`` ('up', 'down', 'both')."""
        dirs = _dirs(direction)
        self._call(lambda: self._faults.stalled.update(dirs))

    def resume(self) -> None:
        """Undo :meth:`stall`, :meth:`refuse` and any armed :meth:`truncate_after`."""
        def go():
            self._faults.stalled.clear()
            self._faults.refuse = False
            self._faults.truncate.clear()
            for c in self._conns:
                c.truncate_left = {"up": None, "down": None}
        self._call(go)

    def truncate_after(self, n: int, direction: str = "up") -> None:
        """Forward ``n`` more bytes in ``direction`` on each connection (and new ones), then cut it (RST)."""
        if n < 0:
            raise ValueError("n must be >= 0")
        dirs = _dirs(direction)

        def go():
            for d in dirs:
                self._faults.truncate[d] = n
                for c in self._conns:
                    c.truncate_left[d] = n
        self._call(go)

    def refuse(self, on: bool = True) -> None:
        """Close new connections at once (existing ones are untouched)."""
        self._call(lambda: setattr(self._faults, "refuse", bool(on)))

    def stats(self) -> dict:
        return {"src": self.src, "dst": self.dst, "port": self.port, "target_port": self.target_port,
                "bytes_up": self.bytes["up"], "bytes_down": self.bytes["down"],
                "connections": self.connections, "refused": self.refused}


def _debug(msg: str) -> None:
    if _DEBUG:
        print(f"linkshaper {time.monotonic():.3f} {msg}", file=sys.stderr, flush=True)


def _dirs(direction: str) -> set[str]:
    if direction == "both":
        return {"up", "down"}
    if direction not in ("up", "down"):
        raise ValueError(f"direction must be 'up', 'down' or 'both', got {direction!r}")
    return {direction}


class LinkShaper:
    """An asyncio loop in a daemon thread hosting any number of :class:`Proxy` ports.

    Token buckets are kept per directed party pair ``(src, dst)`` and shared by
    every proxy and connection carrying bytes that way.
    """

    def __init__(self, max_connections: int = 64, profile: LinkProfile | None = None):
        self.max_connections = max_connections
        self.profile = profile  # informational: the profile its owner shapes with (see harness.shape_federation)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._main, name="linkshaper", daemon=True)
        self._buckets: dict[tuple[str, str], TokenBucket | None] = {}
        self.proxies: list[Proxy] = []
        self._closed = False
        self._thread.start()

    def _main(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_forever()

    def _run(self, coro, timeout: float = 30.0):
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def _bucket(self, src: str, dst: str, profile: LinkProfile) -> TokenBucket | None:
        key = (src, dst)
        if key not in self._buckets:
            self._buckets[key] = (TokenBucket(profile.rate_bps / 8, profile.burst)
                                  if profile.rate_bps is not None else None)
        return self._buckets[key]

    def add_proxy(self, target_port: int, profile: LinkProfile | str | None = None, *, src: str = "a",
                  dst: str = "b", listen_port: int = 0) -> Proxy:
        """Listen on 127.0.0.1 (``listen_port``, 0: the OS picks) and forward to 127.0.0.1:``target_port``."""
        if self._closed:
            raise RuntimeError("LinkShaper is closed")
        prof = LinkProfile.parse(profile) if profile is not None else LinkProfile("proxy")
        p = Proxy(self, target_port, prof, src, dst, self.max_connections)
        self._run(p._start(listen_port))
        self.proxies.append(p)
        return p

    def stats(self) -> list[dict]:
        return [p.stats() for p in self.proxies]

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True

        async def stop_all():
            for p in self.proxies:
                await p._close()
        try:
            self._run(stop_all(), timeout=10.0)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5.0)
            if not self._thread.is_alive():
                self._loop.close()

    def __enter__(self) -> "LinkShaper":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# --------------------------------------------------------------------------- overhead

def _sink_server() -> tuple[socket.socket, threading.Thread]:
    """A loopback server: per connection, 'P' + byte -> echo the byte; 'S' + 8-byte n -> read n bytes, answer b'k'."""
    srv = socket.socket()
    srv.bind((LOOPBACK, 0))
    srv.listen(8)

    def handle(c: socket.socket) -> None:
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        buf = bytearray(1 << 20)
        try:
            while True:
                op = c.recv(1)
                if not op:
                    return
                if op == b"P":
                    c.sendall(_recv_exact(c, 1))
                else:
                    n = struct.unpack("!Q", _recv_exact(c, 8))[0]
                    while n:
                        k = c.recv_into(buf, min(n, len(buf)))
                        if not k:
                            return
                        n -= k
                    c.sendall(b"k")
        except OSError:
            pass
        finally:
            c.close()

    def serve() -> None:
        while True:
            try:
                c, _ = srv.accept()
            except OSError:
                return
            threading.Thread(target=handle, args=(c,), daemon=True).start()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    return srv, t


def _recv_exact(c: socket.socket, n: int) -> bytes:
    out = b""
    while len(out) < n:
        b = c.recv(n - len(out))
        if not b:
            raise ConnectionError("closed")
        out += b
    return out


def _probe(port: int, mib: int, pings: int) -> dict:
    c = socket.create_connection((LOOPBACK, port))
    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        rtts = []
        for _ in range(pings + 5):
            t = time.perf_counter()
            c.sendall(b"Px")
            _recv_exact(c, 1)
            rtts.append(time.perf_counter() - t)
        rtts = rtts[5:]
        block = b"\0" * (1 << 20)
        t = time.perf_counter()
        c.sendall(b"S" + struct.pack("!Q", mib << 20))
        for _ in range(mib):
            c.sendall(block)
        _recv_exact(c, 1)
        secs = time.perf_counter() - t
    finally:
        c.close()
    return {"rtt_ms_median": round(statistics.median(rtts) * 1000, 3),
            "rtt_ms_p90": round(sorted(rtts)[int(0.9 * len(rtts))] * 1000, 3),
            "throughput_mb_s": round((mib << 20) / secs / 1e6, 1)}


def measure_overhead(mib: int = 64, pings: int = 200, profile: "LinkProfile | str | None" = None) -> dict:
    """The proxy's own cost: throughput and round trip through an (unshaped) proxy vs direct loopback.

    One client and a sink/echo server in this process (threads, blocking
    sockets), the proxy on its own thread's event loop, as in the harness
    (where the proxy runs in the launcher and the parties in their own
    processes). ``profile`` given: measure through that profile instead (a
    check that the shaping does what it says).
    """
    srv, _ = _sink_server()
    try:
        port = srv.getsockname()[1]
        direct = _probe(port, mib, pings)
        with LinkShaper() as sh:
            p = sh.add_proxy(port, profile or "proxy")
            proxied = _probe(p.port, mib, pings)
    finally:
        srv.close()
    return {"direct": direct, "proxied": proxied,
            "profile": (LinkProfile.parse(profile) or LinkProfile("proxy")).name if profile else "proxy",
            "added_rtt_ms": round(proxied["rtt_ms_median"] - direct["rtt_ms_median"], 3),
            "throughput_ratio": round(proxied["throughput_mb_s"] / direct["throughput_mb_s"], 3),
            "mib": mib, "pings": pings}


# --------------------------------------------------------------------------- CLI

def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="linkshaper.py", description=__doc__.strip().splitlines()[0])
    p.add_argument("--target", help="HOST:PORT to forward to (127.0.0.1 only)")
    p.add_argument("--listen-port", type=int, default=0)
    p.add_argument("--link", default="proxy", help="'proxy' (unshaped) or RATE:DELAY, e.g. 100mbit:50ms")
    p.add_argument("--overhead", action="store_true", help="measure the unshaped proxy vs direct loopback and exit")
    p.add_argument("--mib", type=int, default=64, help="MiB per throughput probe (--overhead)")
    a = p.parse_args(argv)
    if a.overhead:
        print(json.dumps(measure_overhead(a.mib, profile=None if a.link == "proxy" else a.link), indent=2))
        return 0
    if not a.target:
        p.error("--target is required (or --overhead)")
    host, _, port = a.target.rpartition(":")
    if host not in (LOOPBACK, "localhost"):
        p.error("loopback only: --target must be 127.0.0.1:PORT")
    with LinkShaper() as sh:
        px = sh.add_proxy(int(port), a.link, listen_port=a.listen_port)
        print(f"{LOOPBACK}:{px.port} -> {a.target} ({a.link}); Ctrl-C to stop", flush=True)
        try:
            while True:
                time.sleep(5)
        except KeyboardInterrupt:
            print(json.dumps(px.stats()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
