#!/usr/bin/python3
"""Ingest stalls as a client sees them, while pageownerd takes snapshots.

One Ingest stream sends one-event batches (an allocation, then the free of what it got), one
batch in flight, and times each answer. Every --snapshot_every seconds it asks for a snapshot
(the Snapshot rpc, on another thread). At the end it prints the answer latencies outside and
during snapshots (from the request until the answer), the longest, and the snapshots' own
figures. Run it beside a load that keeps the writer busy (`pageowner load`), against a daemon
with a --data_dir:

  bench/snapshot_stall.py --server 127.0.0.1:50071 --seconds 60 --snapshot_every 15
"""
import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time


def percentile(values, p):
    if not values:
        return 0.0
    v = sorted(values)
    return v[min(len(v) - 1, int(p * len(v)))]


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    parser = argparse.ArgumentParser()
    parser.add_argument("--server", required=True)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--snapshot_every", type=float, default=15)
    parser.add_argument("--proto_dir", default=os.path.join(here, "..", "proto"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as out:
        subprocess.run(
            ["protoc", "-I", args.proto_dir, "--python_out=" + out, "--grpc_python_out=" + out,
             "--plugin=protoc-gen-grpc_python=/usr/bin/grpc_python_plugin",
             "pageowner/v1/pageowner.proto"], check=True)
        sys.path.insert(0, out)
        import grpc
        from pageowner.v1 import pageowner_pb2 as pb
        from pageowner.v1 import pageowner_pb2_grpc as pb_grpc
        channel = grpc.insecure_channel(args.server)
        stub = pb_grpc.PageOwnerStub(channel)

        windows = []  # (start, end) of each snapshot request
        snaps = []
        stop = threading.Event()

        def snapshotter():
            while not stop.wait(args.snapshot_every):
                t0 = time.monotonic()
                r = stub.Snapshot(pb.SnapshotRequest())
                windows.append((t0, time.monotonic()))
                snaps.append(r)

        lat = []  # (sent, seconds)
        requests = []
        cond = threading.Condition()

        def gen():
            try:
                yield from batches()
            except Exception:
                import traceback
                traceback.print_exc()
                raise

        def batches():
            seq = 0
            pfn = None
            frames = [pb.Frame(ip=0xffffffff81234000, symbol=b"stall_probe+0x0/0x10")]
            deadline = time.monotonic() + args.seconds
            while time.monotonic() < deadline:
                seq += 1
                if pfn is None:
                    b = pb.EventBatch(sequence=seq, kind=[pb.EVENT_KIND_ALLOC], order=[0],
                                      stack_id=[1])
                    if seq == 1:
                        b.stacks.append(pb.StackDef(id=1, frames=frames))
                else:
                    b = pb.EventBatch(sequence=seq, kind=[pb.EVENT_KIND_FREE], order=[0],
                                      pfn=[pfn])
                with cond:
                    requests.append(time.monotonic())
                yield b
                with cond:
                    cond.wait_for(lambda: len(lat) >= seq)
                    pfn = last_pfn[0]

        last_pfn = [None]
        t = threading.Thread(target=snapshotter, daemon=True)
        t.start()
        try:
            for r in stub.Ingest(gen()):
                now = time.monotonic()
                with cond:
                    sent = requests[len(lat)]
                    last_pfn[0] = (r.event_pfn[0] if (r.event_pfn and last_pfn[0] is None)
                                   else None)
                    lat.append((sent, now - sent))
                    cond.notify()
        finally:
            stop.set()
        t.join()

        def during(sent):
            return any(a <= sent <= b for a, b in windows)

        inside = [s for sent, s in lat if during(sent)]
        outside = [s for sent, s in lat if not during(sent)]
        ms = lambda x: "%.1f ms" % (x * 1e3)
        print("batches: %d (%d during snapshots)" % (len(lat), len(inside)))
        print("outside snapshots: p50 %s, p99 %s, max %s" % (
            ms(percentile(outside, 0.5)), ms(percentile(outside, 0.99)), ms(max(outside or [0]))))
        print("during snapshots:  p50 %s, p99 %s, max %s" % (
            ms(percentile(inside, 0.5)), ms(percentile(inside, 0.99)), ms(max(inside or [0]))))
        for r in snaps:
            print("snapshot: %d bytes, %.2f s, writer paused %s" % (
                r.bytes, r.duration_seconds, ms(r.stall_seconds)))


if __name__ == "__main__":
    main()
