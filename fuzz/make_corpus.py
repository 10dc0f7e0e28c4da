#!/usr/bin/python3
"""Builds fuzz/corpus/<target>/ from the real samples in tests/data and client/samples: excerpts
of a few blocks or lines each (every file under 64 KiB), named by content hash. Run from the
repository root; re-running rewrites the corpus. The wire seeds are serialized EventBatches
built with protoc's Python output of proto/pageowner/v1/pageowner.proto."""
import hashlib, lzma, os, random, re, shutil, subprocess, sys, tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(ROOT, "tests", "data")
OUT = os.path.join(ROOT, "fuzz", "corpus")
MAX = 60 * 1024
rng = random.Random(14)


def read(path):
    p = os.path.join(DATA, path)
    with (lzma.open(p) if p.endswith(".xz") else open(p, "rb")) as f:
        return f.read()


def put(target, data):
    if len(data) > MAX:
        data = data[:MAX]
    d = os.path.join(OUT, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, hashlib.sha1(data).hexdigest()[:16]), "wb") as f:
        f.write(data)


def blocks(text):
    return [b + b"\n\n" for b in text.split(b"\n\n") if b.strip()]


def excerpts(target, text, per, count):
    bs = blocks(text)
    for _ in range(count):
        at = rng.randrange(max(1, len(bs) - per))
        put(target, b"".join(bs[at:at + per]))


def lines_excerpts(target, text, per, count):
    ls = text.splitlines(keepends=True)
    for _ in range(count):
        at = rng.randrange(max(1, len(ls) - per))
        put(target, b"".join(ls[at:at + per]))


def main():
    shutil.rmtree(OUT, ignore_errors=True)
    # page_owner dumps, three generations.
    for f in ["import/dump_2016.txt", "import/dump_free_ts.txt", "import/dump_malformed.txt",
              "import/dump_today.txt", "sort/dump_6.12.txt", "sort/dump_6.1.txt",
              "page_owner_6.12_block_0x1068.txt"]:
        put("dump_import", read(f))
    excerpts("dump_import", read("linux-6.12/page_owner.txt.xz"), 6, 12)
    excerpts("dump_import", read("linux-6.1/page_owner.txt.xz"), 6, 8)
    # ftrace.
    for f in sorted(os.listdir(os.path.join(DATA, "import"))):
        if f.startswith("ftrace_"):
            put("ftrace", read("import/" + f))
    for v in ["6.12", "6.1"]:
        t = read(f"linux-{v}/ftrace_kmem.txt.xz")
        put("ftrace", b"".join(t.splitlines(keepends=True)[:60]))
        lines_excerpts("ftrace", t, 40, 10)
    # page_owner_sort: an argument line, then a dump.
    args = ["", "-m", "-a", "-n", "-p", "-P", "-s", "-t", "--cull=stacktrace", "--cull pid,name",
            "--sort=-pid", "--pid 20,40", "--tgid=10", "--name alpha,gamma", "-d -m",
            "1-f", "1-r", "1--cull=f", "1--sort=-pid,ft", "--sort st,-at", "-- -m", "--cu=tg",
            "--cull=allocator -n"]
    d612, d61 = read("sort/dump_6.12.txt"), read("sort/dump_6.1.txt")
    for i, a in enumerate(args):
        put("sort", a.encode() + b"\n" + (d61 if a.startswith("1") else d612))
    for _ in range(6):
        bs = blocks(read("linux-6.12/page_owner.txt.xz"))
        at = rng.randrange(len(bs) - 8)
        put("sort", rng.choice(args[1:14]).encode() + b"\n" + b"".join(bs[at:at + 8]))
    # tracefs formats and kallsyms.
    for root, _, files in os.walk(os.path.join(DATA, "tracepoint")):
        for f in files:
            put("tracepoint_format", open(os.path.join(root, f), "rb").read())
    ks = read("kallsyms/kallsyms_6.18_excerpt.txt")
    put("kallsyms", ks)
    put("kallsyms", read("kallsyms/modules_handwritten.txt"))
    lines_excerpts("kallsyms", ks, 20, 10)
    # replay JSON lines.
    sample = open(os.path.join(ROOT, "client", "samples", "first-session.jsonl"), "rb").read()
    put("replay", sample)
    for line in sample.splitlines(keepends=True)[:20]:
        put("replay", line)
    wire_seeds()


def wire_seeds():
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(["protoc", "-I", os.path.join(ROOT, "proto"), "--python_out", tmp,
                        "pageowner/v1/pageowner.proto"], check=True)
        sys.path.insert(0, tmp)
        from pageowner.v1 import pageowner_pb2 as pb
        text = read("linux-6.12/page_owner.txt.xz").decode("latin-1")
        stacks = []
        for b in text.split("\n\n")[:400]:
            fr = [l[1:] for l in b.splitlines() if l.startswith(" ")]
            if fr:
                stacks.append(fr[:16])

        def batch(seq, n, kinds):
            b = pb.EventBatch(sequence=seq)
            used = rng.sample(range(len(stacks)), 4)
            for i, s in enumerate(used):
                sd = b.stacks.add(id=i + 1)
                for name in stacks[s]:
                    sd.frames.add(symbol=name.encode("latin-1"))
            b.tasks.add(id=1, pid=100, tgid=100, comm=b"kworker/0:1")
            for i in range(n):
                k = rng.choice(kinds)
                b.kind.append(k)
                b.order.append(rng.choice([0, 0, 0, 1, 2, 3, 9]))
                b.pfn.append(rng.randrange(4096) & ~7)
                b.target_pfn.append(rng.randrange(4096) & ~7)
                b.gfp_mask.append(rng.choice([0xcc0, 0x140dca, 0x2800, 0x152a20]))
                b.stack_id.append(rng.randrange(1, 5))
                b.task_id.append(1)
                b.ts_ns.append(1000 + i)
                b.reason.append(rng.randrange(1, 11) if k == 3 else 0)
                b.flags.append(rng.choice([0, 1, 2, 3]))
            return b.SerializeToString()

        def varint(n):
            out = b""
            while True:
                c = n & 0x7F
                n >>= 7
                out += bytes([c | (0x80 if n else 0)])
                if not n:
                    return out

        for i in range(24):
            flags = rng.randrange(4)
            data = bytes([flags])
            for s in range(rng.randrange(1, 4)):
                kinds = [1, 2, 3] if i % 3 else [4]  # ALLOC FREE MIGRATE, or IMPORT
                raw = batch(s + 1, rng.randrange(1, 40), kinds)
                data += varint(len(raw)) + raw
            put("wire", data)


if __name__ == "__main__":
    main()
