#!/usr/bin/env python3
"""A shape-mode attnres worker written from docs/protocol.md alone (protocol version 2).

    python3 shape_worker.py --join ENDPOINT --rank R [--keys DIR]

It joins an `attnres coordinator` (or any coordinator speaking protocol 2) beside attnres workers of other ranks
and runs its rank of every variant in shape mode: tensors of the real sizes, tagged, checked on arrival, counted
in its report. Needs pyzmq. Compute mode is refused with a `failed` message. With `--keys DIR` (a directory of
`attnres keys generate`) every link is CURVE, as docs/protocol.md "Authentication (CURVE)" says.
"""
import argparse, json, os, socket, struct, sys, threading, time
import zmq
import zmq.utils.z85

VERSION = 2
MAGIC = b"ARES"
CONTROL_KIND = 16
FORWARD, BACKWARD, PROBE = 1, 2, 3
HIDDEN, BLOCK, PARTIAL = 1, 2, 3
ROLE_KIND = {HIDDEN: "activation", BLOCK: "block", PARTIAL: "partial"}


class Failure(Exception):
    pass


# --- control frames ---------------------------------------------------------------------------------------------

def control(msg):
    return MAGIC + struct.pack("<HH", VERSION, CONTROL_KIND) + json.dumps(msg, sort_keys=True).encode()


def parse_control(frame):
    if len(frame) < 8 or frame[:4] != MAGIC:
        raise Failure("control frame without the ARES prefix")
    version, kind = struct.unpack_from("<HH", frame, 4)
    if version != VERSION or kind != CONTROL_KIND:
        raise Failure(f"control frame of version {version}, kind {kind}")
    return json.loads(frame[8:])


# --- data frames --------------------------------------------------------------------------------------------------

def header(kind, step, variant, microbatch, hop, src, dst, tensors):
    """tensors: list of (role, block, partial_layers, dims)."""
    out = MAGIC + struct.pack("<HHIIIHHHHI", VERSION, kind, step, microbatch, hop, src, dst, len(tensors), variant,
                              32 + 24 * len(tensors))
    for role, block, partial, dims in tensors:
        d = list(dims) + [1] * (3 - len(dims))
        out += struct.pack("<BBBBII3I", role, 1, len(dims), 0, block, partial, *d)
    return out


def parse_header(frame):
    if len(frame) < 32 or frame[:4] != MAGIC:
        raise Failure(f"data header of {len(frame)} bytes without the magic")
    version, kind, step, mb, hop, src, dst, n, variant, length = struct.unpack_from("<HHIIIHHHHI", frame, 4)
    if version != VERSION:
        raise Failure(f"frame rejected: protocol version {version}, this worker speaks version {VERSION}")
    if kind not in (FORWARD, BACKWARD, PROBE) or length != 32 + 24 * n or len(frame) != length:
        raise Failure(f"frame rejected: kind {kind}, length {length}, {n} tensors, {len(frame)} bytes")
    tensors = []
    for i in range(n):
        role, dtype, ndim, _, block, partial, d0, d1, d2 = struct.unpack_from("<BBBBII3I", frame, 32 + 24 * i)
        if role not in ROLE_KIND or dtype != 1 or not 1 <= ndim <= 3:
            raise Failure(f"frame rejected: tensor {i} role {role} dtype {dtype} ndim {ndim}")
        tensors.append((role, block, partial, (d0, d1, d2)[:ndim]))
    return dict(kind=kind, step=step, variant=variant, microbatch=mb, hop=hop, src=src, dst=dst, tensors=tensors)


# --- layout, blocks and hop plan (docs/protocol.md "Which tensors a hop carries") ---------------------------------

class Plan:
    def __init__(self, t):
        self.P, self.V = t["pipeline"]["ranks"], t["pipeline"]["virtual"]
        self.C = self.P * self.V
        self.L = t["model"]["layers"]
        kind = t["residual"]["kind"]
        self.standard = kind == "standard"
        self.N = self.L if kind == "full" else t["residual"].get("blocks", 1)
        self.S = self.L // self.N
        self.cache = t["cache"]
        self.dims = (t["pipeline"]["microbatch_size"], t["model"]["seq"], t["model"]["hidden"])
        self.activation = self.dims[0] * self.dims[1] * self.dims[2] * 4
        self.tensors = [self.hop(k) for k in range(self.C - 1)]

    def rank(self, chunk): return chunk % self.P
    def last_layer(self, chunk): return (chunk + 1) * self.L // self.C
    def first_layer(self, chunk): return chunk * self.L // self.C + 1
    def block_of(self, l): return min((l - 1) // self.S + 1, self.N)
    def block_last(self, n): return self.L if n == self.N else n * self.S
    def block_first(self, n): return (n - 1) * self.S + 1

    def completed(self, l):
        if l < 1:
            return [0]
        n = self.block_of(l)
        return list(range(0, (n if self.block_last(n) == l else n - 1) + 1))

    def partial(self, l):
        n = self.block_of(l)
        return None if self.block_last(n) == l else (n, l - self.block_first(n) + 1)

    def held(self, receiver_chunk):
        k = receiver_chunk
        if self.cache == "cross-stage":
            return set(self.completed(self.last_layer(k - self.P))) if k - self.P >= 0 else set()
        if self.cache == "received-only":
            held = set()
            if k - self.P >= 0 and self.rank(k) == 0:
                held.add(0)
            if k - 1 - self.P >= 0:
                held |= set(self.completed(self.last_layer(k - 1 - self.P)))
            return held
        return set()

    def hop(self, k):
        """Roles of hop k: ("h",), ("b", n), ("p", n, i)."""
        if self.standard:
            return [("h",)]
        last = self.last_layer(k)
        held = self.held(k + 1)
        roles = [("b", n) for n in self.completed(last) if n not in held]
        p = self.partial(last)
        if p:
            roles.append(("p",) + p)
        return roles

    def produced(self, chunk):
        if self.standard:
            return []
        before = set() if chunk == 0 else set(self.completed(self.first_layer(chunk) - 1))
        return [n for n in self.completed(self.last_layer(chunk)) if n not in before]

    def kept(self, chunk, received):
        if self.standard or chunk + self.P >= self.C:
            return []
        if self.cache == "cross-stage":
            return sorted(set(received) | set(self.produced(chunk)))
        if self.cache == "received-only":
            return sorted(set(received) | ({0} if chunk == 0 else set()))
        return []

    def descriptor(self, role):
        if role[0] == "h":
            return (HIDDEN, 0, 0, self.dims)
        if role[0] == "b":
            return (BLOCK, role[1], 0, self.dims)
        return (PARTIAL, role[1], role[2], self.dims)


def role_of(descriptor):
    role, block, partial, _ = descriptor
    return ("h",) if role == HIDDEN else ("b", block) if role == BLOCK else ("p", block, partial)


def schedule(kind, P, V, m, r):
    """The compute order of rank r: (forward?, chunk, microbatch)."""
    if kind == "gpipe":
        return [(True, r, i) for i in range(m)] + [(False, r, i) for i in range(m)]
    if kind == "1f1b":
        w = min(P - r - 1, m)
        order = [(True, r, i) for i in range(w)]
        for i in range(m - w):
            order += [(True, r, w + i), (False, r, i)]
        return order + [(False, r, i) for i in range(m - w, m)]
    T = m * V
    w = min(2 * (P - r - 1) + (V - 1) * P, T)

    def item(j, forward):
        g = (j % (P * V)) // P
        if not forward:
            g = V - 1 - g
        return (forward, g * P + r, (j // (P * V)) * P + j % P)
    order = [item(j, True) for j in range(w)]
    for i in range(T - w):
        order += [item(w + i, True), item(i, False)]
    return order + [item(j, False) for j in range(T - w, T)]


def tag(role, forward, step, mb, hop):
    if role[0] == "b":
        code = role[1] % 256
    elif role[0] == "p":
        code = 256 + (7 * role[1] + role[2]) % 256
    else:
        code = 512 + hop % 256
    v = (step % 16) * 2 ** 19 + (mb % 512) * 2 ** 10 + code
    return float(v + 1 if forward else -(v + 1))


def tensor(nbytes, value):
    buf = bytearray(nbytes)
    struct.pack_into("<f", buf, 0, value)
    struct.pack_into("<f", buf, nbytes // 4 * 4 - 4, value)
    return bytes(buf)


def read_tag(buf):
    first = struct.unpack_from("<f", buf, 0)[0]
    last = struct.unpack_from("<f", buf, len(buf) // 4 * 4 - 4)[0]
    return first if first == last else None


# --- CURVE ------------------------------------------------------------------------------------------------------

def read_key(path, secret):
    if secret and os.stat(path).st_mode & 0o077:
        raise SystemExit(f"{path}: a secret key readable by others: chmod 600 {path}")
    key = open(path).read().strip()
    if len(key) != 40:
        raise SystemExit(f"{path}: must be one line of 40 Z85 characters")
    return key.encode()


class ZAP:
    """The context's ZAP handler (RFC 27): admits only `admitted` (Z85 public key -> user id), on its own thread."""
    def __init__(self, ctx, admitted, rank):
        self.table = {zmq.utils.z85.decode(k): u for k, u in admitted.items()}
        self.rank = rank
        self.sock = ctx.socket(zmq.REP)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.bind("inproc://zeromq.zap.01")
        self.stopped = False
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        while not self.stopped:
            if not self.sock.poll(50):
                continue
            f = self.sock.recv_multipart()
            version, request_id, address, mechanism = f[0], f[1], f[3].decode(), f[5]
            user = self.table.get(f[6]) if mechanism == b"CURVE" and len(f) > 6 else None
            if user is None:
                key = zmq.utils.z85.encode(f[6]).decode() if len(f) > 6 and len(f[6]) == 32 else mechanism.decode()
                print(f"[rank {self.rank}] refused a data connection from {address}: CURVE key {key} is not a sender of this rank", file=sys.stderr)
            self.sock.send_multipart([b"1.0", request_id, b"200" if user else b"400", b"OK" if user else b"unknown CURVE key",
                                      (user or "").encode(), b""])

    def stop(self):
        self.stopped = True
        self.thread.join()
        self.sock.close()


# --- the worker ---------------------------------------------------------------------------------------------------

class Worker:
    def __init__(self, endpoint, rank, keys=None):
        self.rank = rank
        self.ctx = zmq.Context()
        self.control = self.ctx.socket(zmq.DEALER)
        self.control.setsockopt(zmq.ROUTING_ID, f"rank-{rank}".encode())
        self.control.setsockopt(zmq.LINGER, 1000)
        self.keys, self.zap, self.public_keys = None, None, None
        if keys:
            self.keys = (read_key(f"{keys}/rank-{rank}.pub", False), read_key(f"{keys}/rank-{rank}.secret", True))
            self.curve_client(self.control, read_key(f"{keys}/coordinator.pub", False))
        self.control.connect(endpoint)
        self.inbox = None
        self.peers = {}
        self.stash = {}
        self.pending = []
        self.last_heard = time.monotonic()
        self.last_beat = 0.0
        self.heard = False

    def curve_client(self, s, server_key):
        s.curve_serverkey = server_key
        s.curve_publickey, s.curve_secretkey = self.keys

    def send(self, msg):
        self.control.send(control(msg))

    def pump(self, timeout_ms):
        """Reads control and data; heartbeats; watches the coordinator's silence."""
        now = time.monotonic()
        if now - self.last_beat > 0.25 and self.heard:
            self.send({"type": "heartbeat", "rank": self.rank})
            self.last_beat = now
        limit = 3.0 if self.heard else 60.0
        if now - self.last_heard > limit:
            raise SystemExit(f"[rank {self.rank}] coordinator silent for {limit:.0f} s; exiting")
        poller = zmq.Poller()
        poller.register(self.control, zmq.POLLIN)
        if self.inbox is not None:
            poller.register(self.inbox, zmq.POLLIN)
        ready = dict(poller.poll(timeout_ms))
        if self.control in ready:
            while self.control.poll(0):
                msg = parse_control(self.control.recv())
                self.last_heard = time.monotonic()
                self.heard = True
                if msg["type"] == "shutdown":
                    raise SystemExit(0)
                if msg["type"] != "heartbeat":
                    self.pending.append(msg)
        if self.inbox is not None and self.inbox in ready:
            while self.inbox.poll(0):
                frames = self.inbox.recv_multipart(copy=False)
                user = frames[0].get("User-Id") if self.keys else None
                frames = [f.bytes for f in frames]
                h = parse_header(frames[0])
                if self.keys and user != f"rank-{h['src']}":
                    raise Failure(f"data message claiming rank {h['src']} over a link authenticated as {user}")
                if h["dst"] != self.rank or len(frames) - 1 != len(h["tensors"]):
                    raise Failure(f"data message from rank {h['src']} for rank {h['dst']} with {len(frames) - 1} tensor frames")
                key = (h["variant"], h["step"], h["kind"], h["hop"], h["microbatch"]) if h["kind"] != PROBE else ("probe", h["src"])
                if key in self.stash:
                    raise Failure(f"duplicate data message from rank {h['src']}: {key}")
                self.stash[key] = (h, frames[1:])

    def next_control(self):
        while not self.pending:
            self.pump(100)
        return self.pending.pop(0)

    def take(self, key):
        while key not in self.stash:
            self.pump(50)
        return self.stash.pop(key)

    def run(self):
        self.send({"type": "hello", "rank": self.rank, "pid": os.getpid(), "host": socket.gethostname(), "versions": [VERSION]})
        msg = self.next_control()
        if msg["type"] == "refused":
            raise SystemExit(f"[rank {self.rank}] refused: {msg['reason']}")
        if msg["type"] != "welcome" or msg["version"] != VERSION or msg["rank"] != self.rank:
            raise Failure(f"expected welcome, got {msg}")
        while True:
            msg = self.next_control()
            if msg["type"] == "setup":
                self.setup(msg)
            elif msg["type"] == "connect":
                self.connect(msg["endpoints"])
            elif msg["type"] == "run":
                self.run_variant(msg)
            else:
                raise Failure(f"unexpected {msg['type']}")

    def setup(self, msg):
        s = self.ctx.socket(zmq.PULL)
        s.setsockopt(zmq.LINGER, 0)
        s.setsockopt(zmq.RCVHWM, 0)
        s.setsockopt(zmq.MAXMSGSIZE, msg["max_frame_bytes"] + (64 if self.keys else 0))
        if self.keys:
            keys, P = msg.get("curve_public_keys"), msg["ranks"]
            if not keys or len(keys) != P or keys[self.rank].encode() != self.keys[0]:
                raise Failure("setup: curve_public_keys missing, of the wrong length, or not listing this rank's key")
            self.public_keys = [k.encode() for k in keys]
            senders = {(self.rank + 1) % P, (self.rank - 1) % P} - {self.rank}
            self.zap = ZAP(self.ctx, {keys[n]: f"rank-{n}" for n in senders}, self.rank)
            s.curve_server = True
            s.curve_secretkey = self.keys[1]
            s.zap_domain = b"attnres-data"
        if msg["transport"] == "ipc":
            s.bind(f"ipc://{msg['ipc_directory']}/rank-{self.rank}.data")
        else:
            a = msg.get("address") or {"host": "127.0.0.1", "port": 0}
            s.bind(f"tcp://{a['host']}:{a['port'] or '*'}")
        self.inbox = s
        self.send({"type": "bound", "rank": self.rank, "endpoint": s.getsockopt_string(zmq.LAST_ENDPOINT)})

    def connect(self, endpoints):
        P = len(endpoints)
        neighbours = {(self.rank + 1) % P, (self.rank - 1) % P} - {self.rank}
        for n in neighbours:
            s = self.ctx.socket(zmq.PUSH)
            s.setsockopt(zmq.LINGER, 0)
            s.setsockopt(zmq.SNDHWM, 0)
            if self.keys:
                self.curve_client(s, self.public_keys[n])
            s.connect(endpoints[n])
            self.peers[n] = s
            s.send(header(PROBE, 0, 0, 0, 0, self.rank, n, []))
        for n in neighbours:
            self.take(("probe", n))
        self.send({"type": "ready", "rank": self.rank})

    def run_variant(self, msg):
        t, variant = msg["topology"], msg["variant"]
        if t["mode"] != "shape":
            raise Failure("this worker runs shape mode only")
        plan = Plan(t)
        r, C = self.rank, plan.C
        order = schedule(t["pipeline"]["schedule"], plan.P, plan.V, t["pipeline"]["microbatches"], r)
        received, sent, per_hop = {}, {}, {}
        counts = {"messages": 0, "headers": 0, "peak": 0, "cached": 0}

        def count(table, h, link, frames):
            direction = "forward" if h["kind"] == FORWARD else "backward"
            for d, f in zip(h["tensors"], frames):
                k = (link[0], link[1], direction, ROLE_KIND[d[0]])
                b, n = table.get(k, (0, 0))
                table[k] = (b + len(f), n + 1)

        def send(kind, step, hop, mb, dst, roles, payloads):
            descs = [plan.descriptor(x) for x in roles]
            hdr = header(kind, step, variant, mb, hop, r, dst, descs)
            h = dict(kind=kind, tensors=descs)
            count(sent, h, (r, dst), payloads)
            counts["messages"] += 1
            counts["headers"] += len(hdr)
            if kind == FORWARD:
                per_hop[hop] = max(per_hop.get(hop, 0), len(descs))
            self.peers[dst].send_multipart([hdr] + payloads, copy=False)

        def receive(kind, step, hop, mb, forward):
            h, frames = self.take((variant, step, kind, hop, mb))
            roles = [role_of(d) for d in h["tensors"]]
            if roles != plan.tensors[hop]:
                raise Failure(f"hop {hop} microbatch {mb}: expected {plan.tensors[hop]}, received {roles}")
            for x, f in zip(roles, frames):
                if read_tag(f) != tag(x, forward, step, mb, hop):
                    raise Failure(f"hop {hop} microbatch {mb}: {x} carries the wrong tag")
            count(received, h, (h["src"], r), frames)
            return roles, frames

        for step in range(t["steps"]):
            cache = {}
            for forward, c, mb in order:
                if forward:
                    available = dict(cache.get(mb, {}))
                    got = []
                    if c > 0:
                        roles, frames = receive(FORWARD, step, c - 1, mb, True)
                        for x, f in zip(roles, frames):
                            if x[0] == "b":
                                available[x[1]] = f
                                got.append(x[1])
                    for n in plan.produced(c):
                        available[n] = tensor(plan.activation, tag(("b", n), True, step, mb, c))
                    for n in plan.kept(c, got):
                        if n not in cache.setdefault(mb, {}):
                            cache[mb][n] = available[n]
                            counts["cached"] += plan.activation
                    counts["peak"] = max(counts["peak"], counts["cached"])
                    if c < C - 1:
                        out = [available[x[1]] if x[0] == "b" else tensor(plan.activation, tag(x, True, step, mb, c))
                               for x in plan.tensors[c]]
                        send(FORWARD, step, c, mb, plan.rank(c + 1), plan.tensors[c], out)
                else:
                    if c < C - 1:
                        receive(BACKWARD, step, c, mb, False)
                    if c > 0:
                        out = [tensor(plan.activation, tag(x, False, step, mb, c - 1)) for x in plan.tensors[c - 1]]
                        send(BACKWARD, step, c - 1, mb, plan.rank(c - 1), plan.tensors[c - 1], out)
                    if c < plan.P and mb in cache:
                        counts["cached"] -= plan.activation * len(cache.pop(mb))
            self.send({"type": "step_done", "rank": r, "variant": variant, "step": step})

        def links(table):
            return [{"src": k[0], "dst": k[1], "direction": k[2], "kind": k[3], "payload_bytes": v[0], "tensors": v[1]}
                    for k, v in sorted(table.items())]
        self.send({"type": "report", "rank": r, "variant": variant, "received": links(received), "sent": links(sent),
                   "header_bytes_sent": counts["headers"], "messages_sent": counts["messages"],
                   "peak_cached_bytes": counts["peak"],
                   "tensors_per_hop": [{"hop": k, "tensors": v} for k, v in sorted(per_hop.items())],
                   "compute_seconds": 0.0, "wait_seconds": 0.0})


def main():
    a = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    a.add_argument("--join", required=True)
    a.add_argument("--rank", type=int, required=True)
    a.add_argument("--keys", help="CURVE key directory: rank-R.pub, rank-R.secret and coordinator.pub are read")
    args = a.parse_args()
    w = Worker(args.join, args.rank, args.keys)
    try:
        w.run()
    except Failure as e:
        print(f"[rank {args.rank}] {e}", file=sys.stderr)
        w.send({"type": "failed", "rank": args.rank, "message": f"worker rank {args.rank}: {e}"})
        sys.exit(1)
    finally:
        if w.zap:
            w.zap.stop()
        w.control.close(linger=1000)
        w.ctx.destroy(linger=0)


if __name__ == "__main__":
    main()
