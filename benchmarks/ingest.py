"""API → Redis ingestion: a second process posts batches on loopback as fast as it can."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
from _stack import api_process, auth_headers, pct, table, text

DURATION_S = 8.0
CONCURRENCY = 8


async def blast(url: str, batch_size: int) -> tuple[int, list[float], float]:
    samples = [{"id": "", "prompt": text(20, i), "completion": text(200, i)} for i in range(batch_size)]
    latencies: list[float] = []
    headers = auth_headers()
    sent = 0
    counter = 0

    async def one(client: httpx.AsyncClient, deadline: float) -> None:
        nonlocal sent, counter
        while time.perf_counter() < deadline:
            counter += 1
            for j, s in enumerate(samples):
                s["id"] = f"{counter}-{j}"
            body = json.dumps({"step": counter, "samples": samples}).encode()
            t0 = time.perf_counter()
            r = await client.post(f"{url}/v1/runs/bench-ingest/samples", content=body,
                                  headers={"content-type": "application/json", **headers})
            latencies.append(time.perf_counter() - t0)
            assert r.status_code == 202, r.text
            sent += batch_size

    limits = httpx.Limits(max_connections=CONCURRENCY)
    async with httpx.AsyncClient(limits=limits, timeout=30) as client:
        start = time.perf_counter()
        await asyncio.gather(*(one(client, start + DURATION_S) for _ in range(CONCURRENCY)))
        elapsed = time.perf_counter() - start
    return sent, latencies, elapsed


def main() -> None:
    rows = [("batch size", "samples/s (target >= 10,000)", "p99 request latency")]
    for batch_size in (64, 256):
        with api_process() as url:
            sent, lat, elapsed = asyncio.run(blast(url, batch_size))
        rows.append((str(batch_size), f"{sent / elapsed:,.0f}", f"{pct(lat, 0.99) * 1e3:.1f} ms"))
    table(rows)


if __name__ == "__main__":
    main()
