#!/usr/bin/python3
"""TLS, mutual TLS and role tokens, from clients that are not ours.

Makes certificates with the openssl command line in a temporary directory (a CA, a server
certificate for 127.0.0.1, a second one for rotation, a client certificate, an expired client
certificate, a CA and a client certificate of another authority), tokens with `pageowner token new`,
starts pageownerd with mutual TLS and a token file, and checks with python grpcio every refused
case by its exact code, with the daemon's state (GetStats) unchanged by each; then the right ones,
the pageowner CLI, curl against /metrics and /healthz over TLS, rotation of the certificate and the
token file by SIGHUP without dropping an open Ingest stream, the audit lines and counters, that no
token ever appears in the daemon's output or /metrics, tokens on loopback without TLS (local
credentials), and the refusal to start on a network address without TLS and tokens.
"""

import argparse
import os
import queue
import re
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time

ARGS = None
GRPC = None
PB = None
PB_GRPC = None
# Every refusal this test causes, by reason, to compare with pageowner_auth_refused_total.
EXPECTED_REFUSALS = {"missing_token": 0, "malformed_credentials": 0, "unknown_token": 0,
                     "insufficient_role": 0}


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw)


def make_certificates(d):
    """CA, server (SAN IP 127.0.0.1), server2, client, expired client, other CA and its client."""
    def key(name):
        run(["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
             "-out", f"{d}/{name}.key"])

    def ca(name):
        key(name)
        run(["openssl", "req", "-x509", "-new", "-key", f"{d}/{name}.key", "-out",
             f"{d}/{name}.pem", "-days", "2", "-subj", f"/CN={name}"])

    def leaf(name, issuer, cn, ext):
        key(name)
        run(["openssl", "req", "-new", "-key", f"{d}/{name}.key", "-out", f"{d}/{name}.csr",
             "-subj", f"/CN={cn}"])
        with open(f"{d}/{name}.ext", "w") as f:
            f.write(ext)
        run(["openssl", "x509", "-req", "-in", f"{d}/{name}.csr", "-CA", f"{d}/{issuer}.pem",
             "-CAkey", f"{d}/{issuer}.key", "-CAcreateserial", "-out", f"{d}/{name}.pem",
             "-days", "1", "-extfile", f"{d}/{name}.ext"])

    server_ext = "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n"
    client_ext = "extendedKeyUsage=clientAuth\n"
    ca("ca")
    ca("otherca")
    leaf("server", "ca", "pageownerd", server_ext)
    leaf("server2", "ca", "pageownerd-rotated", server_ext)
    leaf("client", "ca", "client", client_ext)
    leaf("otherclient", "otherca", "client", client_ext)
    # Expired: `openssl ca` is the 3.0 tool that takes explicit dates.
    key("expired")
    run(["openssl", "req", "-new", "-key", f"{d}/expired.key", "-out", f"{d}/expired.csr",
         "-subj", "/CN=expired"])
    os.makedirs(f"{d}/cadb", exist_ok=True)
    open(f"{d}/cadb/index.txt", "w").close()
    with open(f"{d}/cadb/serial", "w") as f:
        f.write("1000\n")
    with open(f"{d}/ca.cnf", "w") as f:
        f.write(f"""[ca]
default_ca = test
[test]
database = {d}/cadb/index.txt
serial = {d}/cadb/serial
new_certs_dir = {d}/cadb
default_md = sha256
policy = any
x509_extensions = ext
[any]
commonName = supplied
[ext]
extendedKeyUsage = clientAuth
""")
    run(["openssl", "ca", "-batch", "-config", f"{d}/ca.cnf", "-cert", f"{d}/ca.pem", "-keyfile",
         f"{d}/ca.key", "-in", f"{d}/expired.csr", "-out", f"{d}/expired.pem", "-startdate",
         "20200101000000Z", "-enddate", "20200102000000Z", "-notext"])


def read(path):
    with open(path, "rb") as f:
        return f.read()


def new_token(d, role, name):
    """`pageowner token new ROLE --out FILE`: the token's file and the line for the token file."""
    out = run([ARGS.pageowner, "token", "new", role, "--out", f"{d}/{name}.token"]).stdout
    assert re.fullmatch(role + r" [0-9a-f]{64}\n", out), out
    assert oct(os.stat(f"{d}/{name}.token").st_mode & 0o777) == "0o600"
    token = read(f"{d}/{name}.token").decode().strip()
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", token), token
    return token, out


class Daemon:
    """pageownerd with its stderr collected by a thread."""

    def __init__(self, flags):
        self.proc = subprocess.Popen([ARGS.pageownerd, "--memory=64MiB"] + flags,
                                     stderr=subprocess.PIPE, text=True)
        self.lines = []
        self.grpc_port = None
        self.http_port = None
        ready = threading.Event()

        def reader():
            for line in self.proc.stderr:
                self.lines.append(line)
                m = re.match(r"pageownerd: listening on 127\.0\.0\.1:(\d+) ", line)
                if m:
                    self.grpc_port = int(m.group(1))
                m = re.match(r"pageownerd: metrics on https?://127\.0\.0\.1:(\d+)/metrics", line)
                if m:
                    self.http_port = int(m.group(1))
                if self.grpc_port and (self.http_port or "--metrics_listen=none" in flags):
                    ready.set()
            ready.set()

        self.thread = threading.Thread(target=reader, daemon=True)
        self.thread.start()
        assert ready.wait(30), "pageownerd did not start"
        assert self.grpc_port, "".join(self.lines)

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=30)
        self.thread.join(timeout=10)
        assert code == 0, "pageownerd exited %d:\n%s" % (code, "".join(self.lines))
        return "".join(self.lines)

    def wait_for_line(self, pattern, timeout=10):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if any(re.search(pattern, l) for l in self.lines):
                return
            time.sleep(0.05)
        raise AssertionError("no line %r in:\n%s" % (pattern, "".join(self.lines)))


def credentials(d, ca="ca", cert="client"):
    return GRPC.ssl_channel_credentials(
        root_certificates=read(f"{d}/{ca}.pem"),
        private_key=read(f"{d}/{cert}.key") if cert else None,
        certificate_chain=read(f"{d}/{cert}.pem") if cert else None)


def bearer(token):
    return [("authorization", "Bearer " + token)]


def code_of(call):
    try:
        call()
        return GRPC.StatusCode.OK
    except GRPC.RpcError as e:
        return e.code()


def alloc_batch(sequence, pfn):
    return PB.EventBatch(
        sequence=sequence,
        stacks=[PB.StackDef(id=1, frames=[PB.Frame(ip=0xffffffff81001000, symbol=b"auth_test")])],
        kind=[PB.EVENT_KIND_ALLOC], order=[0], pfn=[pfn], stack_id=[1],
        flags=[PB.EVENT_FLAG_AT_PFN])


def check_tls_and_tokens(d, daemon, tokens):
    target = "127.0.0.1:%d" % daemon.grpc_port
    good = GRPC.secure_channel(target, credentials(d))
    stub = PB_GRPC.PageOwnerStub(good)
    admin = bearer(tokens["admin"])

    def stats():
        return stub.GetStats(PB.GetStatsRequest(), metadata=admin, timeout=10)

    before = stats()
    assert before.tracking and before.allocs == 0, before
    assert stats() == before  # GetStats is stable: a refused call must leave it so

    def refused(expected, call, reason=None, what=""):
        got = code_of(call)
        assert got == expected, "%s: got %s, want %s" % (what, got, expected)
        if reason:
            EXPECTED_REFUSALS[reason] += 1
        after = stats()
        assert after == before, "%s changed the daemon's state:\n%s\n%s" % (what, before, after)

    # The handshake refusals: gRPC reports them UNAVAILABLE, and no call is made.
    plain = GRPC.insecure_channel(target)
    refused(GRPC.StatusCode.UNAVAILABLE,
            lambda: PB_GRPC.PageOwnerStub(plain).GetStats(PB.GetStatsRequest(), metadata=admin,
                                                          timeout=5), what="plaintext to TLS")
    for name, creds in [("wrong CA", credentials(d, ca="otherca")),
                        ("mTLS without a client certificate", credentials(d, cert=None)),
                        ("expired client certificate", credentials(d, cert="expired")),
                        ("client certificate of another CA", credentials(d, cert="otherclient"))]:
        with GRPC.secure_channel(target, creds) as ch:
            refused(GRPC.StatusCode.UNAVAILABLE,
                    lambda: PB_GRPC.PageOwnerStub(ch).GetStats(PB.GetStatsRequest(),
                                                               metadata=admin, timeout=5),
                    what=name)

    # Token refusals over good TLS, each before any handler runs.
    refused(GRPC.StatusCode.UNAUTHENTICATED,
            lambda: stub.GetStats(PB.GetStatsRequest(), timeout=5), "missing_token", "no token")
    refused(GRPC.StatusCode.UNAUTHENTICATED,
            lambda: stub.GetStats(PB.GetStatsRequest(), metadata=bearer("not-a-token"), timeout=5),
            "unknown_token", "wrong token")
    refused(GRPC.StatusCode.UNAUTHENTICATED,
            lambda: stub.GetStats(PB.GetStatsRequest(),
                                  metadata=[("authorization", "Token " + tokens["admin"])],
                                  timeout=5),
            "malformed_credentials", "malformed authorization")
    refused(GRPC.StatusCode.PERMISSION_DENIED,
            lambda: list(stub.Ingest(iter([alloc_batch(1, 100)]), metadata=bearer(tokens["reader"]),
                                     timeout=5)),
            "insufficient_role", "reader token on Ingest")
    refused(GRPC.StatusCode.PERMISSION_DENIED,
            lambda: stub.SetTracking(PB.SetTrackingRequest(on=False),
                                     metadata=bearer(tokens["writer"]), timeout=5),
            "insufficient_role", "writer token on SetTracking")
    refused(GRPC.StatusCode.PERMISSION_DENIED,
            lambda: stub.SetTracking(PB.SetTrackingRequest(on=False),
                                     metadata=bearer(tokens["reader"]), timeout=5),
            "insufficient_role", "reader token on SetTracking")
    refused(GRPC.StatusCode.UNAUTHENTICATED,
            lambda: list(stub.Ingest(iter([alloc_batch(1, 100)]), timeout=5)),
            "missing_token", "Ingest without a token")
    # The message says what to do, and never carries the token.
    try:
        stub.SetTracking(PB.SetTrackingRequest(on=False), metadata=bearer(tokens["writer"]),
                         timeout=5)
        raise AssertionError("SetTracking with a writer token succeeded")
    except GRPC.RpcError as e:
        EXPECTED_REFUSALS["insufficient_role"] += 1
        assert e.details() == ("/pageowner.v1.PageOwner/SetTracking needs the admin role; this "
                               "token has writer (ask for a token with that role)"), e.details()
        assert tokens["writer"] not in e.details()
    assert stats() == before

    # Health is open, like /healthz.
    health = good.unary_unary("/grpc.health.v1.Health/Check")
    assert health(b"", timeout=5) == b"\x08\x01"  # status: SERVING

    # The right ones.
    r = stub.GetStats(PB.GetStatsRequest(), metadata=bearer(tokens["reader"]), timeout=5)
    assert r == before
    results = list(stub.Ingest(iter([alloc_batch(1, 100)]), metadata=bearer(tokens["writer"]),
                               timeout=10))
    assert [x.code for x in results] == [0], results
    page = stub.GetPage(PB.GetPageRequest(pfn=100), metadata=bearer(tokens["reader"]), timeout=5)
    assert b"auth_test" in page.page_owner_text, page
    assert stats().allocs == 1
    t = stub.SetTracking(PB.SetTrackingRequest(on=True), metadata=admin, timeout=5)
    assert t.tracking
    # An admin may ingest and a writer may read.
    assert stub.GetStats(PB.GetStatsRequest(), metadata=bearer(tokens["writer"]),
                         timeout=5).allocs == 1
    plain.close()
    good.close()


def check_cli(d, daemon):
    target = "--server=127.0.0.1:%d" % daemon.grpc_port
    tls = ["--tls_ca=%s/ca.pem" % d, "--tls_cert=%s/client.pem" % d,
           "--tls_key=%s/client.key" % d]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PAGEOWNER_")}
    ok = subprocess.run([ARGS.pageowner, target] + tls + ["--token_file=%s/reader.token" % d,
                                                          "stats"],
                        capture_output=True, text=True, env=env)
    assert ok.returncode == 0 and "allocs: 1" in ok.stdout, ok
    # The same through the environment.
    env2 = dict(env, PAGEOWNER_TLS_CA=f"{d}/ca.pem", PAGEOWNER_TLS_CERT=f"{d}/client.pem",
                PAGEOWNER_TLS_KEY=f"{d}/client.key", PAGEOWNER_TOKEN_FILE=f"{d}/reader.token")
    ok = subprocess.run([ARGS.pageowner, target, "stats"], capture_output=True, text=True,
                        env=env2)
    assert ok.returncode == 0, ok
    no = subprocess.run([ARGS.pageowner, target] + tls + ["stats"], capture_output=True,
                        text=True, env=env)
    EXPECTED_REFUSALS["missing_token"] += 1
    assert no.returncode == 1, no
    assert no.stderr.startswith(
        "pageowner: UNAUTHENTICATED: /pageowner.v1.PageOwner/GetStats needs a token with the "
        "reader role"), no.stderr
    assert "pass --token_file=FILE (or set PAGEOWNER_TOKEN_FILE)" in no.stderr, no.stderr
    deny = subprocess.run([ARGS.pageowner, target] + tls + ["--token_file=%s/reader.token" % d,
                                                            "load", "--events", "10"],
                          capture_output=True, text=True, env=env)
    EXPECTED_REFUSALS["insufficient_role"] += 1
    assert deny.returncode == 1, deny
    assert "PERMISSION_DENIED" in deny.stderr and "needs the writer role" in deny.stderr, deny
    handshake = subprocess.run([ARGS.pageowner, target, "stats"], capture_output=True, text=True,
                               env=env)
    assert handshake.returncode == 1 and "UNAVAILABLE" in handshake.stderr, handshake
    # Plaintext to a TLS port: the hint names the TLS flags.
    assert "--tls_ca=FILE" in handshake.stderr, handshake.stderr
    missing = subprocess.run([ARGS.pageowner, target, "--token_file=%s/nope" % d, "stats"],
                             capture_output=True, text=True, env=env)
    assert missing.returncode == 2 and "--token_file=%s/nope: cannot read" % d in missing.stderr, \
        missing


def curl(d, port, path, *extra):
    r = subprocess.run(["curl", "-sS", "-o", f"{d}/body", "-w", "%{http_code}", "--cacert",
                        f"{d}/ca.pem", "https://127.0.0.1:%d%s" % (port, path)] + list(extra),
                       capture_output=True, text=True)
    body = read(f"{d}/body").decode() if os.path.exists(f"{d}/body") else ""
    if os.path.exists(f"{d}/body"):
        os.remove(f"{d}/body")
    return r.returncode, r.stdout, body


def header_file(d, name, value):
    # curl -H @FILE: the token never goes on a command line.
    with open(f"{d}/{name}", "w") as f:
        f.write("Authorization: " + value + "\n")
    os.chmod(f"{d}/{name}", 0o600)
    return "@%s/%s" % (d, name)


def check_http(d, daemon, tokens):
    port = daemon.http_port
    assert curl(d, port, "/healthz")[1:] == ("200", "ok\n")
    code, status, body = curl(d, port, "/metrics")
    EXPECTED_REFUSALS["missing_token"] += 1
    assert (code, status) == (0, "401"), (code, status, body)
    assert "needs a token with the reader role" in body, body
    assert curl(d, port, "/metrics", "-H", header_file(d, "h-bad", "Bearer nope"))[1] == "401"
    EXPECTED_REFUSALS["unknown_token"] += 1
    code, status, body = curl(d, port, "/metrics", "-H",
                              header_file(d, "h-reader", "Bearer " + tokens["reader"]))
    assert status == "200" and "pageowner_auth_refused_total" in body, (status, body[:200])
    # Basic auth (Prometheus' basic_auth), from a curl config file.
    with open(f"{d}/basic.cfg", "w") as f:
        f.write('user = "prometheus:%s"\n' % tokens["writer"])
    assert curl(d, port, "/metrics", "-K", f"{d}/basic.cfg")[1] == "200"
    # A path the table does not name needs admin.
    assert curl(d, port, "/debug/other", "-H", header_file(d, "h-reader", "Bearer " +
                                                           tokens["reader"]))[1] == "403"
    EXPECTED_REFUSALS["insufficient_role"] += 1
    assert curl(d, port, "/debug/other", "-H", header_file(d, "h-admin", "Bearer " +
                                                           tokens["admin"]))[1] == "404"
    # Plain http to the TLS port, and TLS with a client certificate of another CA: no answer.
    plain = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}",
                            "http://127.0.0.1:%d/healthz" % port], capture_output=True, text=True)
    assert plain.returncode != 0 or plain.stdout != "200", plain
    other = curl(d, port, "/healthz", "--cert", f"{d}/otherclient.pem", "--key",
                 f"{d}/otherclient.key")
    assert other[0] != 0, other
    good = curl(d, port, "/healthz", "--cert", f"{d}/client.pem", "--key", f"{d}/client.key")
    assert good[1] == "200", good
    return body


def peer_certificate_cn(d, port, client=True):
    ctx = ssl.create_default_context(cafile=f"{d}/ca.pem")
    if client:
        ctx.load_cert_chain(f"{d}/client.pem", f"{d}/client.key")
    ctx.set_alpn_protocols(["h2"])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        with ctx.wrap_socket(s, server_hostname="127.0.0.1") as t:
            subject = dict(x[0] for x in t.getpeercert()["subject"])
            return subject["commonName"]


def check_rotation(d, daemon, tokens, token_lines):
    target = "127.0.0.1:%d" % daemon.grpc_port
    assert peer_certificate_cn(d, daemon.grpc_port) == "pageownerd"
    assert peer_certificate_cn(d, daemon.http_port, client=False) == "pageownerd"
    channel = GRPC.secure_channel(target, credentials(d))
    stub = PB_GRPC.PageOwnerStub(channel)
    # An Ingest stream opened with the old writer token, fed one batch at a time.
    batches = queue.Queue()

    def feed():
        while True:
            b = batches.get()
            if b is None:
                return
            yield b

    stream = stub.Ingest(feed(), metadata=bearer(tokens["writer"]), timeout=60)
    batches.put(alloc_batch(1, 200))
    assert next(stream).code == 0

    # New token file (the old writer token gone, a new one in) and new certificate, each
    # replaced by a rename; then SIGHUP.
    writer2, line2 = new_token(d, "writer", "writer2")
    tokens["writer2"] = writer2
    with open(f"{d}/tokens.new", "w") as f:
        f.write("# rotated\n" + token_lines["reader"] + token_lines["admin"] + line2)
    os.replace(f"{d}/tokens.new", f"{d}/tokens.txt")
    for ext in ("key", "pem"):
        with open(f"{d}/server2.{ext}", "rb") as src, open(f"{d}/server.{ext}.new", "wb") as dst:
            dst.write(src.read())
    os.replace(f"{d}/server.key.new", f"{d}/server.key")
    os.replace(f"{d}/server.pem.new", f"{d}/server.pem")
    daemon.proc.send_signal(signal.SIGHUP)
    daemon.wait_for_line(r"pageownerd: reloaded .*tokens\.txt: 3 tokens")
    daemon.wait_for_line(r"pageownerd: TLS files checked")

    assert code_of(lambda: stub.GetStats(PB.GetStatsRequest(), metadata=bearer(tokens["writer"]),
                                         timeout=5)) == GRPC.StatusCode.UNAUTHENTICATED
    EXPECTED_REFUSALS["unknown_token"] += 1
    assert code_of(lambda: stub.GetStats(PB.GetStatsRequest(), metadata=bearer(writer2),
                                         timeout=5)) == GRPC.StatusCode.OK
    # The open stream goes on: its call was authorized when it started.
    batches.put(alloc_batch(2, 201))
    assert next(stream).code == 0
    batches.put(None)
    assert list(stream) == []
    # gRPC re-reads the certificate files within a second; the http listener took them at once.
    deadline = time.time() + 10
    while peer_certificate_cn(d, daemon.grpc_port) != "pageownerd-rotated":
        assert time.time() < deadline, "gRPC still serves the old certificate"
        time.sleep(0.2)
    assert peer_certificate_cn(d, daemon.http_port, client=False) == "pageownerd-rotated"
    with GRPC.secure_channel(target, credentials(d)) as fresh:
        s = PB_GRPC.PageOwnerStub(fresh).GetStats(PB.GetStatsRequest(), metadata=bearer(writer2),
                                                  timeout=5)
        assert s.allocs == 3, s
    # A bad token file on SIGHUP keeps the tokens in force.
    with open(f"{d}/tokens.new", "w") as f:
        f.write(token_lines["reader"] + "writer 123\n")
    os.replace(f"{d}/tokens.new", f"{d}/tokens.txt")
    daemon.proc.send_signal(signal.SIGHUP)
    daemon.wait_for_line(r"pageownerd: SIGHUP: .*tokens\.txt:2: the second field must be 64 "
                         r"lowercase hex digits.*; still using what was loaded before")
    assert code_of(lambda: stub.GetStats(PB.GetStatsRequest(), metadata=bearer(writer2),
                                         timeout=5)) == GRPC.StatusCode.OK
    channel.close()


def check_local(d, tokens, token_lines):
    """Tokens without TLS on loopback: local credentials, plaintext on the wire."""
    with open(f"{d}/local-tokens.txt", "w") as f:
        f.write(token_lines["reader"])
    daemon = Daemon(["--listen=127.0.0.1:0", "--metrics_listen=none",
                     "--auth_tokens=%s/local-tokens.txt" % d])
    try:
        with GRPC.insecure_channel("127.0.0.1:%d" % daemon.grpc_port) as ch:
            stub = PB_GRPC.PageOwnerStub(ch)
            assert code_of(lambda: stub.GetStats(PB.GetStatsRequest(), timeout=5)) == \
                GRPC.StatusCode.UNAUTHENTICATED
            assert code_of(lambda: stub.GetStats(PB.GetStatsRequest(),
                                                 metadata=bearer(tokens["reader"]),
                                                 timeout=5)) == GRPC.StatusCode.OK
            assert code_of(lambda: stub.SetTracking(PB.SetTrackingRequest(on=False),
                                                    metadata=bearer(tokens["reader"]),
                                                    timeout=5)) == GRPC.StatusCode.PERMISSION_DENIED
            s = stub.GetStats(PB.GetStatsRequest(), metadata=bearer(tokens["reader"]), timeout=5)
            assert s.tracking, s
            assert ch.unary_unary("/grpc.health.v1.Health/Check")(b"", timeout=5) == b"\x08\x01"
    finally:
        out = daemon.stop()
    assert "refused grpc /pageowner.v1.PageOwner/GetStats from local: missing_token" in out, out


def check_refusals_to_start(d):
    def start(flags):
        return subprocess.run([ARGS.pageownerd, "--memory=64MiB", "--metrics_listen=none"] + flags,
                              capture_output=True, text=True, timeout=30)

    r = start(["--listen=0.0.0.0:0"])
    assert r.returncode == 2, r
    assert r.stderr == (
        "pageownerd: --listen=0.0.0.0:0 is not a loopback address, and without TLS and tokens "
        "anyone who can reach it may stream events, turn tracking off and read every owner: add "
        "--tls_cert=FILE --tls_key=FILE (and --tls_client_ca=FILE for mutual TLS) and "
        "--auth_tokens=FILE (one line a token; `pageowner token new ROLE` prints one) or, if that "
        "is what you mean, --insecure\n"), r.stderr
    r = start(["--listen=0.0.0.0:0", f"--tls_cert={d}/server.pem", f"--tls_key={d}/server.key"])
    assert r.returncode == 2 and "without tokens" in r.stderr, r
    with open(f"{d}/bad-tokens.txt", "w") as f:
        f.write("# ok\nreader " + "0" * 64 + "\nroot " + "1" * 64 + "\n")
    r = start([f"--auth_tokens={d}/bad-tokens.txt"])
    assert r.returncode == 2, r
    assert r.stderr == ("pageownerd: %s/bad-tokens.txt:3: unknown role \"root\" (reader, writer "
                        "or admin)\n" % d), r.stderr
    r = start([f"--tls_cert={d}/client.pem", f"--tls_key={d}/server.key"])
    assert r.returncode == 2 and "does not match --tls_cert" in r.stderr, r
    r = start([f"--tls_cert={d}/expired.pem", f"--tls_key={d}/expired.key"])
    assert r.returncode == 2 and "the certificate has expired" in r.stderr, r
    # --insecure: the operator means it.
    p = subprocess.Popen([ARGS.pageownerd, "--memory=64MiB", "--metrics_listen=none",
                          "--listen=0.0.0.0:0", "--insecure"], stderr=subprocess.PIPE, text=True)
    line = p.stderr.readline()
    p.send_signal(signal.SIGTERM)
    p.communicate(timeout=30)
    assert line.startswith("pageownerd: listening on 0.0.0.0:"), line
    assert p.returncode == 0


def main():
    global ARGS, GRPC, PB, PB_GRPC
    parser = argparse.ArgumentParser()
    for flag in ("--pageownerd", "--pageowner", "--protoc", "--grpc_python_plugin",
                 "--proto_dir"):
        parser.add_argument(flag, required=True)
    ARGS = parser.parse_args()
    with tempfile.TemporaryDirectory() as d:
        run([ARGS.protoc, "-I", ARGS.proto_dir, "--python_out=" + d, "--grpc_python_out=" + d,
             "--plugin=protoc-gen-grpc_python=" + ARGS.grpc_python_plugin,
             "pageowner/v1/pageowner.proto"])
        sys.path.insert(0, d)
        import grpc
        from pageowner.v1 import pageowner_pb2, pageowner_pb2_grpc
        GRPC, PB, PB_GRPC = grpc, pageowner_pb2, pageowner_pb2_grpc

        make_certificates(d)
        tokens, lines = {}, {}
        for role in ("reader", "writer", "admin"):
            tokens[role], lines[role] = new_token(d, role, role)
        with open(f"{d}/tokens.txt", "w") as f:
            f.write("# pageownerd tokens\n" + "".join(lines[r] for r in ("reader", "writer",
                                                                          "admin")))
        check_refusals_to_start(d)
        check_local(d, tokens, lines)
        daemon = Daemon(["--listen=127.0.0.1:0", "--metrics_listen=127.0.0.1:0",
                         f"--tls_cert={d}/server.pem", f"--tls_key={d}/server.key",
                         f"--tls_client_ca={d}/ca.pem", f"--auth_tokens={d}/tokens.txt"])
        try:
            check_tls_and_tokens(d, daemon, tokens)
            check_cli(d, daemon)
            check_http(d, daemon, tokens)
            check_rotation(d, daemon, tokens, lines)
            metrics = curl(d, daemon.http_port, "/metrics", "-H",
                           header_file(d, "h-admin", "Bearer " + tokens["admin"]))[2]
        finally:
            out = daemon.stop()
        for reason, n in EXPECTED_REFUSALS.items():
            want = 'pageowner_auth_refused_total{reason="%s"} %d\n' % (reason, n)
            assert want in metrics, (want, re.findall(r"pageowner_auth_refused_total.*", metrics))
        assert sum(EXPECTED_REFUSALS.values()) == len(re.findall(r"auth: refused", out)), out
        assert ("pageownerd: auth: refused grpc /pageowner.v1.PageOwner/Ingest from tls "
                "CN=client: insufficient_role (needs writer, token has reader)\n") in out, out
        assert re.search(r"auth: refused http /metrics from 127\.0\.0\.1:\d+: missing_token\n",
                         out), out
        # No token, whole or as its hash's source, in the daemon's output or its metrics.
        for name, token in tokens.items():
            assert token not in out, "token %s in the daemon's output" % name
            assert token not in metrics, "token %s in /metrics" % name
    print("auth tls test: OK")


if __name__ == "__main__":
    main()
