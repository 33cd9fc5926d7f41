"""Load on `digitlab serve`: N concurrent clients on loopback posting single-digit PNGs for a bounded time.

Reports requests/s, p50/p95/p99 latency and errors; `--soak` runs 10 minutes and records the server's memory.
Starts its own server (`digitlab serve` on a free port) unless `--url` names one. The client is plain
asyncio with keep-alive connections and requests built once, so it takes as little of the shared CPU as it can.
Payloads (`--payload`): `digits`, MNIST test digits as 28x28 PNGs (the default); `canvas`, the same digits
drawn as the page uploads them (280x280 RGBA, black on white); `photos`, the tutorial's photographed digits.
Usage: .venv/bin/python bench/serve_load.py --clients 32 --seconds 20 [--workers 2] [--payload canvas] [--soak]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from PIL import Image
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).parent))
from machine import machine_info  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "examples" / "seed").glob("[0-9].png"))
# Enough different digits that no cache or branch predictor sees one image over and over.
PAYLOAD_DIGITS = 100
CANVAS_SIDE = 280  # the page's drawing canvas (digitlab/static/index.html)
RESULTS = ROOT / "bench" / "results"
CLI = Path(sys.executable).parent / "digitlab"
BOUNDARY = "digitlab-load-boundary"
SOAK_SECONDS = 600
MEMORY_EVERY_S = 5.0


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def payload_images(payload: str) -> list[tuple[str, bytes]]:
    """The PNG files the clients send, named."""
    if payload == "photos":
        return [(path.name, path.read_bytes()) for path in EXAMPLES]
    from digitlab.data import load_dataset

    digits, labels = load_dataset("mnist", "test")
    pairs = zip(digits[:PAYLOAD_DIGITS], labels[:PAYLOAD_DIGITS])
    if payload == "digits":
        return [(f"mnist-{label}.png", png_bytes(Image.fromarray(digit))) for digit, label in pairs]
    # The page draws black on an opaque white canvas, and the browser encodes it as RGBA.
    return [
        (f"drawing-{label}.png", png_bytes(
            Image.fromarray(255 - digit).resize((CANVAS_SIDE, CANVAS_SIDE), Image.Resampling.BILINEAR).convert("RGBA")
        ))
        for digit, label in pairs
    ]


def multipart_request(host: str, port: int, name: str, png: bytes) -> bytes:
    """One complete HTTP/1.1 request, built once and sent many times."""
    body = (
        f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"{name}\"\r\n"
        "Content-Type: image/png\r\n\r\n"
    ).encode() + png + f"\r\n--{BOUNDARY}--\r\n".encode()
    head = (
        f"POST /v1/predict HTTP/1.1\r\nHost: {host}:{port}\r\n"
        f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def client(host: str, port: int, requests: list[bytes], stop_at: float, latencies: list, errors: list) -> None:
    """One keep-alive connection sending requests back to back until the time is up."""
    reader, writer = await asyncio.open_connection(host, port)
    sent = 0
    try:
        while time.perf_counter() < stop_at:
            started = time.perf_counter()
            writer.write(requests[sent % len(requests)])
            sent += 1
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            body = await reader.readexactly(length)
            latencies.append(time.perf_counter() - started)
            if status != 200 or b'"error":null' not in body:
                errors.append(f"{status}: {body[:200]!r}")
            if b"connection: close" in head.lower():
                writer.close()
                reader, writer = await asyncio.open_connection(host, port)
    except (OSError, asyncio.IncompleteReadError) as error:
        errors.append(f"connection: {error!r}")
    finally:
        writer.close()


def process_tree(pid: int) -> list[int]:
    """The server process and its children (the workers, with --workers)."""
    found, pids = [], [pid]
    while pids:
        current = pids.pop()
        found.append(current)
        try:
            for task in Path(f"/proc/{current}/task").iterdir():
                pids += [int(child) for child in (task / "children").read_text().split()]
        except OSError:
            continue
    return found


def server_memory(pid: int) -> int:
    """Resident bytes of the server's processes together."""
    total = 0
    for current in process_tree(pid):
        try:
            status = Path(f"/proc/{current}/status").read_text()
            total += int(next(line for line in status.splitlines() if line.startswith("VmRSS:")).split()[1]) * 1024
        except (OSError, StopIteration):
            continue
    return total


def server_cpu_seconds(pid: int) -> float:
    """User + system CPU time of the server's processes: per request, it does not depend on what else
    shares the machine, unlike requests/s on a busy one."""
    ticks = 0
    for current in process_tree(pid):
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])
        except (OSError, IndexError):
            continue
    return ticks / os.sysconf("SC_CLK_TCK")


async def run_load(
    host: str, port: int, clients: int, seconds: float, server_pid: int | None, images: list[tuple[str, bytes]]
) -> dict:
    requests = [multipart_request(host, port, name, png) for name, png in images]
    load_before = os.getloadavg()[0]
    latencies: list[float] = []
    errors: list[str] = []
    memory: list[tuple[float, int]] = []
    started = time.perf_counter()
    stop_at = started + seconds
    client_cpu = time.process_time()
    server_cpu = server_cpu_seconds(server_pid) if server_pid else None
    tasks = [asyncio.create_task(client(host, port, requests, stop_at, latencies, errors)) for _ in range(clients)]
    while server_pid and time.perf_counter() < stop_at:
        memory.append((round(time.perf_counter() - started, 1), server_memory(server_pid)))
        await asyncio.sleep(min(MEMORY_EVERY_S, max(0.0, stop_at - time.perf_counter())))
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - started
    client_cpu = time.process_time() - client_cpu
    if server_pid:
        server_cpu = server_cpu_seconds(server_pid) - server_cpu
    latencies.sort()

    def percentile(q: float) -> float:
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000 if latencies else float("nan")

    figures = {
        "clients": clients,
        "seconds": round(elapsed, 2),
        "requests": len(latencies),
        "requests_per_s": round(len(latencies) / elapsed, 1),
        "p50_ms": round(percentile(0.50), 2),
        "p95_ms": round(percentile(0.95), 2),
        "p99_ms": round(percentile(0.99), 2),
        "mean_ms": round(statistics.fmean(latencies) * 1000, 2) if latencies else None,
        "errors": len(errors),
        "client_cpu_ms_per_request": round(client_cpu / max(1, len(latencies)) * 1000, 3),
        "server_cpu_ms_per_request": round(server_cpu / max(1, len(latencies)) * 1000, 3) if server_pid else None,
        "load_average_1min_before": load_before,
        "load_average_1min": os.getloadavg()[0],
        "first_errors": errors[:5],
    }
    if memory:
        # Growth from the sample after warm-up (the first 10% of the run) to the last.
        baseline = memory[min(len(memory) - 1, max(1, len(memory) // 10))][1]
        figures["memory_bytes"] = memory
        figures["memory_growth_percent"] = round((memory[-1][1] - baseline) / baseline * 100, 2)
    return figures


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(port: int, workers: int, extra: list[str]) -> subprocess.Popen:
    """`digitlab serve` on loopback, waited for by polling /v1/ready."""
    server = subprocess.Popen(
        [str(CLI), "serve", "--port", str(port), "--workers", str(workers), *extra],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"the server exited: {server.stderr.read().decode()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/ready", timeout=1) as response:
                if response.status == 200:
                    return server
        except OSError:
            time.sleep(0.1)  # polling for readiness, not for correctness
    server.kill()
    raise SystemExit("the server did not become ready within 60 s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--payload", choices=("digits", "canvas", "photos"), default="digits")
    parser.add_argument("--soak", action="store_true", help=f"run {SOAK_SECONDS // 60} minutes, recording memory")
    parser.add_argument("--workers", type=int, default=1, help="server processes (when this script starts it)")
    parser.add_argument("--url", help="an already running server, e.g. http://127.0.0.1:8000 (memory not recorded)")
    parser.add_argument("--serve-arg", action="append", default=[], help="extra `digitlab serve` flag (repeatable)")
    args = parser.parse_args()
    seconds = SOAK_SECONDS if args.soak else args.seconds
    images = payload_images(args.payload)
    try:
        import uvloop  # the server's own event loop; the client spends less CPU on it too

        uvloop.install()
    except ImportError:
        pass
    server = None
    if args.url:
        host, port = args.url.split("//")[-1].rstrip("/").rsplit(":", 1)
        port = int(port)
    else:
        host, port = "127.0.0.1", free_port()
        server = start_server(port, args.workers, args.serve_arg)
    try:
        figures = asyncio.run(run_load(host, port, args.clients, seconds, server.pid if server else None, images))
    finally:
        if server:
            server.terminate()
            server.wait(timeout=30)
    figures |= {
        "payload": args.payload, "workers": args.workers, "soak": args.soak, "machine": machine_info(),
        "date": time.strftime("%F"),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"serve_load_{args.payload}{'_soak' if args.soak else ''}_w{args.workers}_c{args.clients}.json"
    out.write_text(json.dumps(figures, indent=2) + "\n")
    table = Table(title=f"digitlab serve, {args.payload}, {args.clients} clients, {figures['seconds']:.0f} s, "
                        f"{args.workers} worker(s)")
    for column in ("requests/s", "p50 ms", "p95 ms", "p99 ms", "errors", "memory growth", "server CPU ms/req",
                   "client CPU ms/req", "load avg"):
        table.add_column(column, justify="right")
    growth = figures.get("memory_growth_percent")
    table.add_row(
        f"{figures['requests_per_s']:,.0f}", f"{figures['p50_ms']:.1f}", f"{figures['p95_ms']:.1f}",
        f"{figures['p99_ms']:.1f}", str(figures["errors"]), "-" if growth is None else f"{growth:+.1f}%",
        str(figures["server_cpu_ms_per_request"]), str(figures["client_cpu_ms_per_request"]),
        f"{figures['load_average_1min']:.1f}",
    )
    Console().print(table)
    for error in figures["first_errors"]:
        print("error:", error)
    print(f"wrote {out.relative_to(ROOT)}")
    sys.exit(1 if figures["errors"] else 0)


if __name__ == "__main__":
    main()
