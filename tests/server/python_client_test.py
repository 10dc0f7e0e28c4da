#!/usr/bin/python3
"""A client that is not ours: Debian's python3-grpcio and python3-protobuf talk to pageownerd.

Generates Python stubs from pageowner.proto with protoc and grpc_python_plugin into a temporary
directory, starts pageownerd on a free loopback port, streams events through Ingest, reads back
a page and a stack, checks the answers, and stops the daemon with SIGTERM (exit code 0).
"""

import argparse
import os
import re
import signal
import subprocess
import sys
import tempfile


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--pageownerd", required=True)
    parser.add_argument("--protoc", required=True)
    parser.add_argument("--grpc_python_plugin", required=True)
    parser.add_argument("--proto_dir", required=True)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as out:
        subprocess.run(
            [args.protoc, "-I", args.proto_dir, "--python_out=" + out, "--grpc_python_out=" + out,
             "--plugin=protoc-gen-grpc_python=" + args.grpc_python_plugin,
             "pageowner/v1/pageowner.proto"],
            check=True)
        sys.path.insert(0, out)
        import grpc
        from pageowner.v1 import pageowner_pb2 as pb
        from pageowner.v1 import pageowner_pb2_grpc as pb_grpc

        daemon = subprocess.Popen(
            [args.pageownerd, "--listen=127.0.0.1:0", "--memory=64MiB", "--metrics_listen=none"],
            stderr=subprocess.PIPE, text=True)
        try:
            line = daemon.stderr.readline()
            m = re.fullmatch(r"pageownerd: listening on (127\.0\.0\.1:\d+) \(memory 16384 pages\)\n",
                             line)
            assert m, "unexpected first line: %r" % line
            with grpc.insecure_channel(m.group(1)) as channel:
                run(channel, pb, pb_grpc)
                hostile(channel, pb, pb_grpc)
        finally:
            daemon.send_signal(signal.SIGTERM)
            code = daemon.wait(timeout=30)
        assert code == 0, "pageownerd exited %d" % code
    print("python client: OK")


def run(channel, pb, pb_grpc):
    grpc_module = sys.modules["grpc"]
    stub = pb_grpc.PageOwnerStub(channel)
    frames = [pb.Frame(ip=0xffffffff81001000, symbol=b"py_alloc+0x10/0x40"),
              pb.Frame(ip=0, symbol=b"py_caller+0x8/0x20")]
    first = pb.EventBatch(
        sequence=1,
        stacks=[pb.StackDef(id=1, frames=frames)],
        tasks=[pb.TaskDef(id=1, pid=4242, tgid=4240, comm=b"python3")],
        kind=[pb.EVENT_KIND_ALLOC, pb.EVENT_KIND_ALLOC, pb.EVENT_KIND_FREE],
        order=[2, 0, 3],
        pfn=[256, 0, 999],
        gfp_mask=[0xcc0, 0xcc0, 0],
        stack_id=[1, 1, 0],
        task_id=[1, 1, 1],
        ts_ns=[1000, 2000, 3000],
        flags=[pb.EVENT_FLAG_AT_PFN, 0, 0])
    # Stack 1 is reused in a later batch of the same stream; column `order` alone is enough.
    second = pb.EventBatch(sequence=2, kind=[pb.EVENT_KIND_ALLOC], order=[1], stack_id=[1])
    # A malformed batch: stack 9 was never defined.
    third = pb.EventBatch(sequence=3, kind=[pb.EVENT_KIND_ALLOC], stack_id=[9])
    results = list(stub.Ingest(iter([first, second, third])))
    assert [r.sequence for r in results] == [1, 2, 3], results
    r1, r2, r3 = results
    assert r1.code == 0 and list(r1.event_code) == [0, 0, 9], r1
    assert r1.event_pfn[0] == 256, r1
    assert 2 in r1.event_message and r1.event_message[2], r1
    handle = r1.event_handle[0]
    assert handle != 0 and r1.event_handle[1] == handle, r1
    assert r2.code == 0 and list(r2.event_code) == [0] and r2.event_handle[0] == handle, r2
    assert r3.code == 3 and "stack id 9" in r3.message and len(r3.event_code) == 0, r3

    page = stub.GetPage(pb.GetPageRequest(pfn=257))
    assert page.block_head == 256 and page.block_order == 2, page
    assert page.page.pid == 4242 and page.page.tgid == 4240 and page.page.comm == b"python3", page
    assert page.page.allocated and page.page.handle == handle, page
    assert page.page_owner_text.startswith(b"Page allocated via order 2, mask "), page
    assert b"PFN 0x100 " in page.page_owner_text, page.page_owner_text
    assert b" py_alloc+0x10/0x40\n py_caller+0x8/0x20\n" in page.page_owner_text, page

    stack = stub.GetStack(pb.GetStackRequest(handle=handle))
    assert [f.symbol for f in stack.frames] == [b"py_alloc+0x10/0x40", b"py_caller+0x8/0x20"], stack
    assert stack.frames[0].ip == 0xffffffff81001000 and stack.frames[1].ip != 0, stack
    assert stack.pages == 4 + 1 + 2 and stack.allocations == 3, stack

    try:
        stub.GetPage(pb.GetPageRequest(pfn=1 << 20))
        raise AssertionError("GetPage beyond memory succeeded")
    except grpc_module.RpcError as e:
        assert e.code() == grpc_module.StatusCode.OUT_OF_RANGE, e

    # The second batch's allocation has no task: pid 0.
    chunks = list(stub.ListPages(pb.ListPagesRequest(pid=4242)))
    pages = [p for chunk in chunks for p in chunk.pages]
    assert [p.pfn for p in pages] == sorted([256, r1.event_pfn[1]]), pages
    assert [s.handle for chunk in chunks for s in chunk.stacks] == [handle], chunks
    stats = stub.GetStats(pb.GetStatsRequest())
    assert stats.allocs == 3 and stats.rejected == 1 and stats.batches_rejected == 1, stats


def hostile(channel, pb, pb_grpc):
    """Issue 10's findings 1 and 2, from a client that is not ours."""
    grpc_module = sys.modules["grpc"]
    stub = pb_grpc.PageOwnerStub(channel)
    # Kernel names are bytes: a comm the daemon cuts mid-character (15 of 17 bytes), a comm that
    # is not UTF-8 at all (cut at its NUL, as the kernel's strings are), a symbol that is not.
    cut = "Renderer Threa\u00c4x".encode()
    raw = b"\xff\xfe\x00\xc3"
    symbol = b"\xe4\xb8sym+0x1/0x2"
    batch = pb.EventBatch(
        sequence=1,
        stacks=[pb.StackDef(id=1, frames=[pb.Frame(ip=0xffffffff81002000, symbol=symbol)])],
        tasks=[pb.TaskDef(id=1, pid=7, tgid=7, comm=cut), pb.TaskDef(id=2, pid=8, tgid=8, comm=raw)],
        kind=[pb.EVENT_KIND_ALLOC, pb.EVENT_KIND_ALLOC], order=[0, 0], pfn=[4096, 4097],
        stack_id=[1, 1], task_id=[1, 2], flags=[pb.EVENT_FLAG_AT_PFN, pb.EVENT_FLAG_AT_PFN])
    results = list(stub.Ingest(iter([batch])))
    assert len(results) == 1 and results[0].code == 0, results
    assert list(results[0].event_code) == [0, 0], results
    page = stub.GetPage(pb.GetPageRequest(pfn=4096))
    assert page.page.comm == b"Renderer Threa\xc3", page.page.comm
    assert b"tgid 7 (Renderer Threa\xc3), ts " in page.page_owner_text, page.page_owner_text
    assert b" " + symbol + b"\n" in page.page_owner_text, page.page_owner_text
    assert stub.GetPage(pb.GetPageRequest(pfn=4097)).page.comm == b"\xff\xfe"
    stack = stub.GetStack(pb.GetStackRequest(handle=page.page.handle))
    assert [f.symbol for f in stack.frames] == [symbol], stack
    chunks = list(stub.ListPages(pb.ListPagesRequest(comm=b"Renderer Threa\xc3")))
    assert [p.pfn for c in chunks for p in c.pages] == [4096], chunks
    report = stub.SortPages(pb.SortRequest(args=[b"--cull=name"]))
    assert b"Renderer Threa\xc3" in report.output, report.output
    # A message that is not an EventBatch ends the stream with INVALID_ARGUMENT (not OK), after
    # the batches before it were answered.
    ingest = channel.stream_stream("/pageowner.v1.PageOwner/Ingest",
                                   request_serializer=None,
                                   response_deserializer=pb.BatchResult.FromString)
    good = pb.EventBatch(sequence=9).SerializeToString()
    truncated = b"\x08"  # field 1's tag, its varint missing
    answers = []
    try:
        for answer in ingest(iter([good, truncated, good])):
            answers.append(answer)
        raise AssertionError("a stream with an undecodable message ended OK: %r" % answers)
    except grpc_module.RpcError as e:
        assert e.code() == grpc_module.StatusCode.INVALID_ARGUMENT, e
        assert "message 2 of the stream is not an EventBatch" in e.details(), e.details()
    assert [a.sequence for a in answers] == [9], answers


if __name__ == "__main__":
    main()
