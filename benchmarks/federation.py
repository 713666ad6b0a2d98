"""Full-mesh pull rounds across 5, 10 and 20 nodes, beside a two-node pull, in the same run.

    .venv/bin/python benchmarks/federation.py                     # 5, 10 and 20 nodes
    .venv/bin/python benchmarks/federation.py --sizes 3,5 --rounds 2

Every node is its own ``exchange serve`` process on loopback (SQLite, one worker), with a
policy that makes every other node a partner and a small outbreak pushed through its agency
API (``benchmarks/federation_nodes.py``). A round is every node pulling the same 12-cell
release (cases per province and week) from every other node: N x (N - 1) signed pulls
through ``exchange.clients.pulling.pull``, what ``exchange pull`` does (sign, verify the
answer, store it, witness the peer's checkpoint). This process is every node's pulling
side; the servers answer (verify, policy, ledger, SQL, noise, store, audit, sign).

Concurrency: ``--concurrency`` pulls in flight at any time (default 2, one per core), each
worker taking the next pair of a list ordered so that neighbours have different pullers and
providers. Before every round each node takes a one-row correction (untimed), so every pull
is a fresh release, never the cache's answer (checked: a cached answer fails the run).

Baseline, in the same run and with the same concurrency and code: two nodes, each pulling
from the other (a round of 2 pulls), half of the rounds before the meshes and half after,
so drift over the run shows. Per pull we report latency (p50/p95) and CPU time (servers'
user + system time from /proc, plus this process's, over the pull phases only, divided by
the pulls): with every server on 2 cores, a round's time grows with its N x (N - 1) pulls,
but neither latency at a fixed concurrency nor CPU per pull should. Memory: each server's
VmRSS and VmHWM after its size's rounds.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import httpx2

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from federation_nodes import CELLS, Federation, node_ids, now, query

from exchange.clients.pulling import peer_client, pull
from nodes import peers

TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Measured:
    """What the timed rounds of one mesh size (or of the baseline) took."""

    rounds: list[float]  # seconds per round
    latencies: list[float]  # ms per pull
    cpu: float  # seconds: the members' servers and this process, during pulls only
    members: list[str]

    @property
    def pulls(self) -> int:
        return len(self.latencies)

    def p(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]

    @property
    def cpu_ms_per_pull(self) -> float:
        return self.cpu * 1000 / self.pulls


def cpu_seconds(pids: list[int]) -> float:
    """User + system time of the processes (from /proc), plus this process's own."""
    total = time.process_time()
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime
    return total


def memory_mb(pid: int) -> tuple[float, float]:
    """VmRSS and VmHWM (peak RSS) of a process, in MB."""
    found = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            found[name] = int(value.split()[0]) / 1024
    return found["VmRSS"], found["VmHWM"]


def mesh_pairs(members: list[str]) -> list[tuple[str, str]]:
    """(puller, provider) for every ordered pair; neighbours share neither."""
    n = len(members)
    return [(members[i], members[(i + k) % n]) for k in range(1, n) for i in range(n)]


class Mesh:
    """Runs rounds of pulls among some of the federation's nodes, ``concurrency`` at a time."""

    def __init__(self, federation: Federation, concurrency: int) -> None:
        self.federation = federation
        self.clients = [httpx2.Client(timeout=60) for _ in range(concurrency)]
        self.corrections = federation.seed(self.clients[0])
        self.wanted = query(now().date())

    def close(self) -> None:
        for client in self.clients:
            client.close()

    def fresh(self, members: list[str]) -> None:
        """A one-row correction on each member: a new data version, so no cached answer."""
        for node_id in members:
            self.federation.push(self.clients[0], node_id, self.corrections[node_id][:1])

    def round(self, members: list[str], pairs: list[tuple[str, str]]) -> tuple[float, list[float]]:
        """One round of ``pairs``; returns its seconds and each pull's ms."""
        federation = self.federation
        known = {
            pair: peers.get_peer(federation.opened[pair[0]].engine, pair[1]) for pair in set(pairs)
        }
        jobs, lock = deque(pairs), threading.Lock()
        latencies: list[float] = []
        failures: list[BaseException] = []

        def work(http: httpx2.Client) -> None:
            while not failures:
                with lock:
                    if not jobs:
                        return
                    puller, provider = jobs.popleft()
                node = federation.opened[puller]
                started = time.perf_counter()
                try:
                    got = pull(node, peer_client(node, http, known[puller, provider]), self.wanted)
                    if got.cached or len(got.release["cells"]) != CELLS:
                        raise RuntimeError(f"{puller} got a cached or partial release: {got}")
                except BaseException as error:  # re-raised below, in the main thread
                    failures.append(error)
                    return
                latencies.append((time.perf_counter() - started) * 1000)

        workers = [
            threading.Thread(target=work, args=(http,), daemon=True) for http in self.clients
        ]
        started = time.perf_counter()
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        elapsed = time.perf_counter() - started
        if failures:
            raise failures[0]
        return elapsed, latencies

    def measure(self, members: list[str], rounds: int, warm_up: int) -> Measured:
        """``warm_up`` untimed rounds, then ``rounds`` timed ones, each on fresh data."""
        print(f"measuring {len(members)} nodes...", file=sys.stderr, flush=True)
        pids = [self.federation.servers[node_id].pid for node_id in members]
        pairs = mesh_pairs(members)
        measured = Measured([], [], 0.0, members)
        for index in range(warm_up + rounds):
            self.fresh(members)
            before = cpu_seconds(pids)
            elapsed, latencies = self.round(members, pairs)
            spent = cpu_seconds(pids) - before
            if index >= warm_up:
                measured.rounds.append(elapsed)
                measured.latencies += latencies
                measured.cpu += spent
        return measured


def memory_line(federation: Federation, members: list[str]) -> str:
    found = [memory_mb(federation.servers[node_id].pid) for node_id in members]
    rss = [r for r, _ in found]
    return (
        f"server RSS mean {statistics.mean(rss):5.1f} MB, max {max(rss):5.1f} MB, "
        f"peak (VmHWM) max {max(h for _, h in found):5.1f} MB"
    )


def report(label: str, got: Measured, base: Measured | None, memory: str) -> None:
    per_round = statistics.mean(got.rounds)
    pulls_per_round = got.pulls // len(got.rounds)
    print(f"{label}: {len(got.rounds)} rounds of {pulls_per_round} pulls")
    print(
        f"  round {per_round * 1000:8.1f} ms   per pull {per_round * 1000 / pulls_per_round:6.2f} ms"
        f"   latency p50 {got.p(0.5):6.2f} ms  p95 {got.p(0.95):6.2f} ms"
        f"   CPU {got.cpu_ms_per_pull:6.2f} ms/pull"
    )
    if base is not None:
        print(
            f"  vs two nodes: latency p50 {got.p(0.5) / base.p(0.5):4.2f}x, "
            f"CPU per pull {got.cpu_ms_per_pull / base.cpu_ms_per_pull:4.2f}x"
        )
    print(f"  {memory}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="5,10,20", help="node counts, comma-separated")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds per size")
    parser.add_argument("--concurrency", type=int, default=2, help="pulls in flight")
    parser.add_argument("--baseline", type=int, default=60, help="two-node rounds (2 pulls)")
    parser.add_argument("--tolerance", type=float, default=1.25, help="largest/smallest size")
    args = parser.parse_args()
    sizes = sorted({int(size) for size in args.sizes.split(",")})
    if sizes[0] < 2 or args.rounds < 1 or args.concurrency < 1 or args.baseline < 2:
        parser.error("sizes need 2 nodes or more; rounds, concurrency and baseline 1 or more")

    federation = Federation.create()
    mesh: Mesh | None = None
    try:
        started = time.perf_counter()
        federation.build(sizes[-1])
        federation.start()
        federation.connect()
        mesh = Mesh(federation, args.concurrency)
        print(
            f"{sizes[-1]} servers ready in {time.perf_counter() - started:.1f} s "
            f"(exchange serve, SQLite, one worker each; {os.cpu_count()} CPUs); "
            f"{args.concurrency} pulls in flight; fresh {CELLS}-cell releases only"
        )
        pair = node_ids(2)
        half = args.baseline // 2
        before = mesh.measure(pair, half, warm_up=3)
        meshes = {size: mesh.measure(node_ids(size), args.rounds, warm_up=1) for size in sizes}
        memory = {size: memory_line(federation, node_ids(size)) for size in sizes}
        after = mesh.measure(pair, args.baseline - half, warm_up=0)
        base_memory = memory_line(federation, pair)
    except BaseException:
        print(
            f"the run failed; the servers' last log lines:\n{federation.log_tails()}",
            file=sys.stderr,
        )
        raise
    finally:
        if mesh is not None:
            mesh.close()
        federation.stop()

    base = Measured(
        before.rounds + after.rounds, before.latencies + after.latencies,
        before.cpu + after.cpu, pair,
    )  # fmt: skip
    drift = after.p(0.5) / before.p(0.5)
    report("two nodes, each pulling from the other (baseline)", base, None, base_memory)
    print(
        f"  baseline drift over the run: p50 {before.p(0.5):.2f} ms before the meshes, "
        f"{after.p(0.5):.2f} ms after ({drift:.2f}x); CPU {before.cpu_ms_per_pull:.2f} "
        f"then {after.cpu_ms_per_pull:.2f} ms/pull"
    )
    for size in sizes:
        report(f"{size} nodes, full mesh", meshes[size], base, memory[size])

    small, large = meshes[sizes[0]], meshes[sizes[-1]]
    cpu_ratio = large.cpu_ms_per_pull / small.cpu_ms_per_pull
    p50_ratio = large.p(0.5) / small.p(0.5)
    grows = max(cpu_ratio, p50_ratio) > args.tolerance
    print(
        f"per-pull cost {'GROWS' if grows else 'does not grow'} with the number of nodes: "
        f"{sizes[-1]} vs {sizes[0]} nodes, CPU per pull {cpu_ratio:.2f}x and latency p50 "
        f"{p50_ratio:.2f}x (tolerance {args.tolerance:.2f}x)"
    )


if __name__ == "__main__":
    main()
