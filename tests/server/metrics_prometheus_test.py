#!/usr/bin/python3
"""pageownerd's /metrics from the outside, with Debian's prometheus package.

Starts pageownerd with --metrics_listen=127.0.0.1:0, streams known events through Ingest
(stubs generated at test time, as python_client_test.py does), then checks that:
  - the real /metrics output passes `promtool check metrics` (fails when promtool is missing);
  - pageowner_events_total equals what was sent, by kind and code, exactly;
  - a real Prometheus server scraping the daemon every second returns the same total through
    its HTTP query API (/api/v1/query?query=sum(pageowner_events_total));
  - --metrics_listen=none opens no http port, and a bad --metrics_listen exits 2 with one line.
"""

import argparse
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

PROMTOOL = "/usr/bin/promtool"
PROMETHEUS = "/usr/bin/prometheus"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_daemon(pageownerd, metrics_listen):
    daemon = subprocess.Popen(
        [pageownerd, "--listen=127.0.0.1:0", "--memory=64MiB",
         "--metrics_listen=" + metrics_listen],
        stderr=subprocess.PIPE, text=True)
    line = daemon.stderr.readline()
    m = re.fullmatch(r"pageownerd: listening on (127\.0\.0\.1:\d+) \(memory 16384 pages\)\n", line)
    assert m, "unexpected first line: %r" % line
    return daemon, m.group(1)


def stop(process):
    process.send_signal(signal.SIGTERM)
    return process.wait(timeout=30)


def get(url):
    with urllib.request.urlopen(url, timeout=5) as r:
        return r.status, r.headers.get("Content-Type"), r.read().decode()


def parse_events(text):
    """{(kind, code): value} of pageowner_events_total."""
    out = {}
    for line in text.splitlines():
        m = re.fullmatch(r'pageowner_events_total\{kind="(\w+)",code="(\w+)"\} (\d+)', line)
        if m:
            out[(m.group(1), m.group(2))] = int(m.group(3))
    return out


def send_events(address, pb, pb_grpc):
    """Sends known events; returns {(kind, code): count} as the daemon must count them."""
    import grpc
    frames = [pb.Frame(ip=0xffffffff81001000, symbol=b"metrics_alloc+0x10/0x40")]
    first = pb.EventBatch(
        sequence=1, stacks=[pb.StackDef(id=1, frames=frames)],
        kind=[pb.EVENT_KIND_ALLOC, pb.EVENT_KIND_ALLOC, pb.EVENT_KIND_ALLOC, pb.EVENT_KIND_FREE,
              pb.EVENT_KIND_FREE, pb.EVENT_KIND_MIGRATE, pb.EVENT_KIND_MIGRATE,
              pb.EVENT_KIND_ALLOC],
        order=[2, 0, 11, 2, 0, 0, 0, 0],
        pfn=[256, 0, 0, 256, 999, 4096, 8000, 1 << 30],
        stack_id=[1, 1, 1, 0, 0, 0, 0, 1],
        reason=[0, 0, 0, 0, 0, pb.MIGRATE_REASON_COMPACTION, pb.MIGRATE_REASON_NONE, 0],
        flags=[pb.EVENT_FLAG_AT_PFN, 0, 0, 0, 0, 0, 0, pb.EVENT_FLAG_AT_PFN])
    # The block the migration of pfn 4096 moves.
    zero = pb.EventBatch(sequence=0, stacks=[pb.StackDef(id=1, frames=frames)],
                         kind=[pb.EVENT_KIND_ALLOC], order=[0], pfn=[4096], stack_id=[1],
                         flags=[pb.EVENT_FLAG_AT_PFN])
    malformed = pb.EventBatch(sequence=2, kind=[pb.EVENT_KIND_ALLOC, pb.EVENT_KIND_FREE],
                              stack_id=[9, 0])
    with grpc.insecure_channel(address) as channel:
        stub = pb_grpc.PageOwnerStub(channel)
        results = list(stub.Ingest(iter([zero, first, malformed])))
    assert [r.code for r in results] == [0, 0, 3], results
    assert list(results[0].event_code) == [0], results[0]
    # alloc at 256 OK, alloc OK, order 11 INVALID_ARGUMENT, free 256 OK, free 999
    # FAILED_PRECONDITION, migrate 4096 OK, migrate without reason INVALID_ARGUMENT, alloc
    # beyond memory OUT_OF_RANGE.
    assert list(results[1].event_code) == [0, 0, 3, 0, 9, 0, 3, 11], results[1]
    return {("alloc", "OK"): 3, ("alloc", "INVALID_ARGUMENT"): 2, ("alloc", "OUT_OF_RANGE"): 1,
            ("free", "OK"): 1, ("free", "FAILED_PRECONDITION"): 1,
            ("free", "INVALID_ARGUMENT"): 1, ("migrate", "OK"): 1,
            ("migrate", "INVALID_ARGUMENT"): 1}


def query_prometheus(prom_port, daemon_metrics_port, want_total, workdir):
    config = os.path.join(workdir, "prometheus.yml")
    with open(config, "w") as f:
        f.write("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
                "scrape_configs:\n  - job_name: pageownerd\n    static_configs:\n"
                "      - targets: ['127.0.0.1:%d']\n" % daemon_metrics_port)
    prom = subprocess.Popen(
        [PROMETHEUS, "--config.file=" + config,
         "--storage.tsdb.path=" + os.path.join(workdir, "tsdb"),
         "--web.listen-address=127.0.0.1:%d" % prom_port],
        stdout=subprocess.DEVNULL, stderr=open(os.path.join(workdir, "prometheus.log"), "w"))
    try:
        url = "http://127.0.0.1:%d/api/v1/query?%s" % (
            prom_port, urllib.parse.urlencode({"query": "sum(pageowner_events_total)"}))
        deadline = time.time() + 25
        last = None
        while time.time() < deadline:
            try:
                _, _, body = get(url)
                last = json.loads(body)
                result = last["data"]["result"]
                if result and float(result[0]["value"][1]) == want_total:
                    return
            except OSError:
                pass  # not up yet
            time.sleep(0.25)
        log = open(os.path.join(workdir, "prometheus.log")).read()[-2000:]
        raise AssertionError("Prometheus never returned %d: last %r\n%s" % (want_total, last, log))
    finally:
        prom.send_signal(signal.SIGTERM)
        try:
            prom.wait(timeout=10)
        except subprocess.TimeoutExpired:
            prom.kill()
            prom.wait()


def listening_ports(pid):
    """The TCP ports process `pid` listens on (its sockets matched against /proc/net/tcp*)."""
    inodes = set()
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            target = os.readlink("/proc/%d/fd/%s" % (pid, fd))
        except OSError:
            continue
        m = re.fullmatch(r"socket:\[(\d+)\]", target)
        if m:
            inodes.add(m.group(1))
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not os.path.exists(table):
            continue
        for line in open(table).readlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # LISTEN
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--pageownerd", required=True)
    parser.add_argument("--protoc", required=True)
    parser.add_argument("--grpc_python_plugin", required=True)
    parser.add_argument("--proto_dir", required=True)
    args = parser.parse_args()
    for tool in (PROMTOOL, PROMETHEUS):
        assert os.access(tool, os.X_OK), "%s is missing: install Debian's prometheus" % tool

    with tempfile.TemporaryDirectory() as out:
        subprocess.run(
            [args.protoc, "-I", args.proto_dir, "--python_out=" + out, "--grpc_python_out=" + out,
             "--plugin=protoc-gen-grpc_python=" + args.grpc_python_plugin,
             "pageowner/v1/pageowner.proto"],
            check=True)
        sys.path.insert(0, out)
        from pageowner.v1 import pageowner_pb2 as pb
        from pageowner.v1 import pageowner_pb2_grpc as pb_grpc

        daemon, address = start_daemon(args.pageownerd, "127.0.0.1:0")
        try:
            line = daemon.stderr.readline()
            m = re.fullmatch(r"pageownerd: metrics on http://127\.0\.0\.1:(\d+)/metrics\n", line)
            assert m, "unexpected metrics line: %r" % line
            metrics_port = int(m.group(1))
            status, _, body = get("http://127.0.0.1:%d/healthz" % metrics_port)
            assert status == 200 and body == "ok\n", (status, body)

            want = send_events(address, pb, pb_grpc)
            status, content_type, text = get("http://127.0.0.1:%d/metrics" % metrics_port)
            assert status == 200, status
            assert content_type == "text/plain; version=0.0.4; charset=utf-8", content_type
            check = subprocess.run([PROMTOOL, "check", "metrics"], input=text, text=True,
                                   capture_output=True)
            assert check.returncode == 0, "promtool: %s%s" % (check.stdout, check.stderr)
            got = {k: v for k, v in parse_events(text).items() if v != 0}
            assert got == want, "events: got %r, want %r" % (got, want)
            assert "pageowner_ingest_batches_total{result=\"rejected\"} 1\n" in text, text
            assert "pageowner_ingest_batches_total{result=\"ok\"} 2\n" in text, text

            query_prometheus(free_port(), metrics_port, sum(want.values()), out)
        finally:
            code = stop(daemon)
        assert code == 0, "pageownerd exited %d" % code

        # none: the gRPC port only.
        daemon, address = start_daemon(args.pageownerd, "none")
        try:
            grpc_port = int(address.rsplit(":", 1)[1])
            ports = listening_ports(daemon.pid)
            assert ports == {grpc_port}, "listening on %r, want only %d" % (ports, grpc_port)
        finally:
            assert stop(daemon) == 0
        rest = daemon.stderr.read()
        assert "metrics" not in rest, rest

    # A bad address: exit 2, one line.
    bad = subprocess.run([args.pageownerd, "--metrics_listen=9464"], capture_output=True,
                         text=True, timeout=30)
    assert bad.returncode == 2, bad
    assert bad.stderr.startswith("pageownerd: --metrics_listen=9464: "), bad.stderr
    assert bad.stderr.count("\n") == 1, bad.stderr
    print("metrics and prometheus: OK")


if __name__ == "__main__":
    main()
