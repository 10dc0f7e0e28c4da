#!/usr/bin/python3
"""The heap profile read by the real `go tool pprof` (Debian's golang-go).

Starts pageownerd (256 MiB, http listener on port 0), replays a known workload
(tests/viz/workload.py) after the repository's first-session sample, then:
  - `pageowner pprof -o A` and GET /debug/pprof/heap both open with `go tool pprof -raw`,
    `-top` and `-sample_index=inuse_space`; default sample type inuse_space;
  - inuse_space summed over samples equals `stats` tracked_pages x 4096, inuse_objects the
    blocks of `dump`; each stack's inuse_space equals its nr_base_pages in `stacks` x 4096
    (stacks matched by their frames' function names); alloc_objects of each handle equals
    `stack HANDLE`'s allocations; labels pid, comm, gfp, order, content_id are there;
  - --pid / --comm / --order filters keep only the matching blocks;
  - after phase 2, `go tool pprof -diff_base A B` shows exactly the pages added in between.
Skips (exit 77) only when `go` is missing; install-deps installs it.
"""

import argparse
import gzip
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import workload  # noqa: E402

GO = shutil.which("go") or "/usr/lib/go/bin/go"


def run(cmd, **kw):
    r = subprocess.run(cmd, capture_output=True, **kw)
    if r.returncode != 0:
        raise AssertionError("%s: exit %d\n%s" % (cmd, r.returncode, r.stderr.decode()))
    return r.stdout


def pprof(*args):
    env = dict(os.environ, HOME=os.environ.get("TMPDIR_PPROF", "/tmp"), PPROF_TMPDIR="/tmp")
    return run([GO, "tool", "pprof"] + list(args), env=env).decode()


def parse_raw(text):
    """-raw: ([sample types], [(values, [location ids], {label: value})], {loc id: function})."""
    lines = text.splitlines()
    i = lines.index("Samples:")
    types = [t.replace("[dflt]", "") for t in lines[i + 1].split()]
    samples = []
    j = i + 2
    while j < len(lines) and lines[j].strip() and not lines[j].startswith("Locations"):
        m = re.match(r"^\s*([-\d\s]+):\s*([\d\s]*)$", lines[j])
        assert m, "sample line %r" % lines[j]
        values = [int(v) for v in m.group(1).split()]
        locs = [int(v) for v in m.group(2).split()]
        labels = {}
        j += 1
        while j < len(lines) and re.match(r"^\s+\S+:\[", lines[j]):
            for k, v in re.findall(r"(\S+):\[([^\]]*)\]", lines[j]):
                labels[k] = v
            j += 1
        samples.append((values, locs, labels))
    functions = {}
    k = lines.index("Locations")
    for line in lines[k + 1:]:
        m = re.match(r"^\s*(\d+):\s+0x[0-9a-f]+\s+M=\d+\s+(\S+)", line)
        if m:
            functions[int(m.group(1))] = m.group(2)
        elif line and not line.startswith(" ") and not line[0].isdigit():
            break
    return types, samples, functions


def column(types, samples, name):
    idx = types.index(name)
    return sum(s[0][idx] for s in samples)


def strip(frame):
    return re.sub(r"\+0x[0-9a-f]+/0x[0-9a-f]+$", "", frame)


def parse_stacks(text):
    """`pageowner stacks`: [(frames stripped, nr_base_pages)]."""
    out = []
    frames = []
    for line in text.splitlines():
        if line.startswith(" "):
            frames.append(strip(line.strip()))
        elif line.startswith("nr_base_pages: "):
            out.append((tuple(frames), int(line.split()[1])))
            frames = []
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pageownerd", required=True)
    ap.add_argument("--pageowner", required=True)
    ap.add_argument("--sample", required=True)
    a = ap.parse_args()
    if not os.path.exists(GO):
        print("SKIP: go is missing (deploy/install-deps.sh installs golang-go)")
        return 77
    tmp = tempfile.mkdtemp(prefix="pprof_test.")
    os.environ["TMPDIR_PPROF"] = tmp
    daemon = subprocess.Popen([a.pageownerd, "--listen=127.0.0.1:0", "--memory=256MiB",
                               "--metrics_listen=127.0.0.1:0"], stderr=subprocess.PIPE, text=True)
    try:
        grpc_addr = re.search(r"listening on (\S+)", daemon.stderr.readline()).group(1)
        http = None
        while http is None:
            line = daemon.stderr.readline()
            assert line, "no metrics line"
            m = re.search(r"(http://\S+)/metrics", line)
            if m:
                http = m.group(1)
        cli = [a.pageowner, "--server=" + grpc_addr]

        def po(*args, **kw):
            return run(cli + list(args), **kw).decode()

        po("replay", a.sample)
        p1 = os.path.join(tmp, "phase1.jsonl")
        open(p1, "w").write(workload.phase1())
        po("replay", p1)

        prof_a = os.path.join(tmp, "a.pb.gz")
        po("pprof", "-o", prof_a)
        assert open(prof_a, "rb").read(2) == b"\x1f\x8b", "not gzip"
        http_prof = os.path.join(tmp, "http.pb.gz")
        with urllib.request.urlopen(http + "/debug/pprof/heap", timeout=10) as r:
            open(http_prof, "wb").write(r.read())

        stats = po("stats")
        tracked = int(re.search(r"^tracked_pages: (\d+)$", stats, re.M).group(1))
        blocks = po("dump").count("Page allocated via order")
        for f in (prof_a, http_prof):
            types, samples, functions = parse_raw(pprof("-raw", f))
            assert types == ["alloc_objects/count", "alloc_space/bytes", "inuse_objects/count",
                             "inuse_space/bytes"], types
            assert column(types, samples, "inuse_space/bytes") == tracked * 4096, (
                column(types, samples, "inuse_space/bytes"), tracked)
            assert column(types, samples, "inuse_objects/count") == blocks
        # -top: the default sample type is inuse_space; the total is every tracked page.
        assert "inuse_space/bytes[dflt]" in pprof("-raw", prof_a)
        top = pprof("-top", "-unit=B", prof_a)
        assert "Type: inuse_space" in top, top
        total = int(re.search(r"of (\d+)B total", top).group(1))
        assert total == tracked * 4096, (total, tracked)
        top_idx = pprof("-top", "-sample_index=inuse_space", "-unit=B", prof_a)
        assert "of %dB total" % (tracked * 4096) in top_idx

        # Per stack: inuse pages = show_stacks' nr_base_pages; allocations = `stack`'s.
        types, samples, functions = parse_raw(pprof("-raw", prof_a))
        by_frames = {}
        allocs_by_handle = {}
        for values, locs, labels in samples:
            key = tuple(functions[l] for l in locs)
            by_frames[key] = by_frames.get(key, 0) + values[3]
            for lab in ("content_id", "handle", "order"):
                assert lab in labels, labels
            if values[2] > 0:
                for lab in ("pid", "comm", "gfp"):
                    assert lab in labels, labels
            h = int(labels["handle"])
            allocs_by_handle[h] = allocs_by_handle.get(h, 0) + values[0]
        show = parse_stacks(po("stacks"))
        assert len(show) >= 4
        for frames, pages in show:
            assert by_frames.get(frames, 0) == pages * 4096, (frames, by_frames.get(frames), pages)
        assert sum(v for v in by_frames.values()) == tracked * 4096
        missing = {k: v for k, v in by_frames.items() if v and k not in dict(show)}
        assert sum(p for _, p in show) * 4096 + sum(missing.values()) == tracked * 4096, missing
        for h, n in allocs_by_handle.items():
            text = po("stack", str(h))
            assert int(re.search(r"^allocations: (\d+)$", text, re.M).group(1)) == n, (h, n)
        # Stack C: 3 allocations of order 3, 2 blocks now: alloc_space 3 x 8 pages.
        c = [s for s in samples if tuple(functions[l] for l in s[1]) ==
             tuple(strip(f) for f in workload.STACK_C) and s[0][0] > 0]
        assert len(c) == 1 and c[0][0][:2] == [3, 3 * 8 * 4096], c

        # Filters.
        for flags, pages, nblocks in ((["--pid", "200"], 5 * 4, 5), (["--comm", "gamma"], 16, 2),
                                      (["--order", "3"], None, None)):
            f = os.path.join(tmp, "f.pb.gz")
            po("pprof", "-o", f, *flags)
            t, s, _ = parse_raw(pprof("-raw", f))
            if pages is not None:
                assert column(t, s, "inuse_space/bytes") == pages * 4096, (flags, s)
                assert column(t, s, "inuse_objects/count") == nblocks
            for values, _, labels in s:
                if values[2] and flags[0] == "--order":
                    assert labels["order"] == "3", labels

        # Leak hunting: phase 2 adds 18 pages in 11 blocks; the diff shows exactly those.
        p2 = os.path.join(tmp, "phase2.jsonl")
        open(p2, "w").write(workload.phase2())
        po("replay", p2)
        prof_b = os.path.join(tmp, "b.pb.gz")
        po("pprof", "-o", prof_b)
        diff = pprof("-top", "-unit=B", "-diff_base", prof_a, prof_b)
        m = re.search(r"Showing nodes accounting for (-?\d+)B, [\d.]+% of (-?\d+)B total", diff)
        # With -diff_base the total is the new profile's; what the nodes account for is the diff.
        assert m and int(m.group(1)) == workload.PHASE2_PAGES * 4096, diff
        diff_objects = pprof("-top", "-sample_index=inuse_objects", "-diff_base", prof_a, prof_b)
        m = re.search(r"accounting for (-?\d+), ", diff_objects)
        assert m and int(m.group(1)) == workload.PHASE2_BLOCKS, diff_objects
        # The grown stacks lead: delta_grow owns 14 of the 18 pages, alpha_alloc 4 more.
        assert re.search(r"^\s*57344B .* delta_grow$", diff, re.M), diff
        assert re.search(r"^\s*16384B .* alpha_alloc$", diff, re.M), diff
        print("pprof_test: OK (%d bytes, %d samples)" % (os.path.getsize(prof_a), len(samples)))
        return 0
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=30)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
