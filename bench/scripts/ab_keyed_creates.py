"""A/B of two `rampart` binaries on keyed contact creates (SQLite), outside the suite.

    python3 bench/scripts/ab_keyed_creates.py BINARY [REQUESTS] [CONNECTIONS]

Starts BINARY on a fresh data directory (an organization and an owner API key made with its
CLI), sends 50 warm-up creates per connection, then REQUESTS creates (default 4,000) over
CONNECTIONS keep-alive connections (default 16), each with a fresh `Idempotency-Key` and a
unique email, and prints one JSON line: writes per second, median latency, and the server's
CPU time and context switches (all its threads, from /proc) per write. Run the two binaries
alternately, several rounds: on a shared two-core machine writes per second swing widely,
while context switches per write follow the number of hand-offs a write makes.
"""

import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid

BIN = sys.argv[1]
N = int(sys.argv[2]) if len(sys.argv) > 2 else 4000
CONNS = int(sys.argv[3]) if len(sys.argv) > 3 else 16
PORT = 18311


def main():
    with tempfile.TemporaryDirectory(prefix="rampart-ab-") as data:
        env = dict(
            os.environ,
            RAMPART_DATA_DIR=data,
            RAMPART_LISTEN=f"127.0.0.1:{PORT}",
            RAMPART_RATE_LIMITS__API_PER_KEY="4000000000",
            RAMPART_RATE_LIMITS__API_PER_IP="4000000000",
            RAMPART_QUOTAS__GROWTH="1000000000000",
            RAMPART_LOG="warn",
        )

        def cli(*args):
            out = subprocess.run([BIN, *args], env=env, check=True, capture_output=True)
            return json.loads(out.stdout)

        subprocess.run([BIN, "migrate"], env=env, check=True, capture_output=True)
        org = cli("admin", "create-org", "--name", "AB", "--owner-email", "o@ab.example.com",
                  "--plan", "growth", "--json")
        ws = org["workspace_id"]
        key = cli("admin", "create-api-key", "--workspace", ws, "--role", "owner", "--name", "ab",
                  "--json")["key"]
        server = subprocess.Popen([BIN, "serve"], env=env, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
        try:
            for _ in range(200):
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{PORT}/readyz")
                    break
                except OSError:
                    time.sleep(0.05)
            print(json.dumps(asyncio.run(measure(server.pid, ws, key))))
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait()


def request(ws, key, n):
    body = json.dumps({
        "name": f"Contact {n}",
        "email": f"c{n}-{uuid.uuid4().hex[:8]}@ab.example.com",
        "phone": "+14155552671",
        "us_state": "CA",
        "tags": ["bench", "lead"],
    }).encode()
    head = (f"POST /v1/workspaces/{ws}/contacts HTTP/1.1\r\nHost: ab\r\n"
            f"Authorization: Bearer {key}\r\nContent-Type: application/json\r\n"
            f"Idempotency-Key: {uuid.uuid4().hex}\r\nContent-Length: {len(body)}\r\n\r\n")
    return head.encode() + body


async def connection(ws, key, count, latencies, first):
    reader, writer = await asyncio.open_connection("127.0.0.1", PORT)
    for i in range(count):
        data = request(ws, key, first + i)
        started = time.perf_counter()
        writer.write(data)
        await writer.drain()
        status = await reader.readline()
        if b" 201 " not in status:
            raise RuntimeError(f"expected 201, got {status!r}")
        length = 0
        while (line := await reader.readline()) != b"\r\n":
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        await reader.readexactly(length)
        latencies.append(time.perf_counter() - started)
    writer.close()


def server_cpu(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def server_switches(pid):
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/status") as f:
            total += sum(int(l.split()[1]) for l in f if "ctxt_switches" in l)
    return total


async def measure(pid, ws, key):
    await asyncio.gather(*[connection(ws, key, 50, [], 1_000_000 * (c + 1)) for c in range(CONNS)])
    latencies = []
    cpu0, cs0, t0 = server_cpu(pid), server_switches(pid), time.perf_counter()
    per = N // CONNS
    await asyncio.gather(*[connection(ws, key, per, latencies, per * c) for c in range(CONNS)])
    elapsed = time.perf_counter() - t0
    n = len(latencies)
    return {
        "binary": BIN,
        "connections": CONNS,
        "writes_per_s": round(n / elapsed),
        "p50_ms": round(statistics.median(latencies) * 1000, 3),
        "server_cpu_us_per_write": round((server_cpu(pid) - cpu0) / n * 1e6),
        "context_switches_per_write": round((server_switches(pid) - cs0) / n, 2),
    }


if __name__ == "__main__":
    main()
