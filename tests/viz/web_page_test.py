#!/usr/bin/python3
"""The web page in a real browser: Debian's chromium, headless, against a real pageownerd.

Loads a known workload (the first-session sample, a seeded synthetic load, then
tests/viz/workload.py's two phases), opens /?pfn=0xff10 (a page of workload stack C) with --dump-dom after a
virtual time budget, and checks what the page wrote into its DOM:
  - the map has one cell a page (65536 cells for 256 MiB);
  - the text shown for the pfn equals `pageowner page 0xff10` byte for byte;
  - the selected page's stack color is the one its content id gives (computed here again),
    and every page of that stack is drawn in that color, read back from the canvas;
  - the top-stacks table equals `pageowner stacks --sort pages` (frames and pages, in order)
    and its allocations equal `pageowner stack HANDLE`'s;
and takes a screenshot (kept in the build directory: web_page.png, web_page_pageblocks.png).
"""

import argparse
import colorsys
import html.parser
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import workload  # noqa: E402

CHROMIUM = "/usr/bin/chromium"


class Grab(html.parser.HTMLParser):
    """Text of elements by id, and the stacks table's rows."""

    def __init__(self):
        super().__init__()
        self.text = {}
        self.attrs_of = {}
        self.rows = []
        self._stack = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "id" in a:
            self.attrs_of[a["id"]] = a
        self._stack.append((tag, a.get("id")))
        if tag == "tr" and "data-handle" in a:
            self.rows.append({"handle": int(a["data-handle"]), "cells": []})
        if tag == "td" and self.rows and self._inside("stacks-table"):
            self.rows[-1]["cells"].append("")

    def handle_endtag(self, tag):
        while self._stack:
            t, _ = self._stack.pop()
            if t == tag:
                break

    def _inside(self, ident):
        return any(i == ident for _, i in self._stack)

    def handle_data(self, data):
        for _, ident in self._stack:
            if ident:
                self.text[ident] = self.text.get(ident, "") + data
        if self._stack and self._stack[-1][0] == "td" and self.rows and self._inside(
                "stacks-table"):
            self.rows[-1]["cells"][-1] += data


def stack_color(content_id):
    """app.js's stackColor: hue low32 % 360, saturation 55 + high32 % 30, lightness
    42 + (high32 >> 8) % 20; CSS hsl to rgb, rounded."""
    v = int(content_id, 16)
    lo, hi = v & 0xffffffff, v >> 32
    h, s, l = lo % 360, (55 + hi % 30) / 100, (42 + (hi >> 8) % 20) / 100

    def f(n):
        k = (n + h / 30) % 12
        a = s * min(l, 1 - l)
        return l - a * max(-1, min(k - 3, 9 - k, 1))
    return [round(255 * f(0)), round(255 * f(8)), round(255 * f(4))]


def run(cmd, **kw):
    r = subprocess.run(cmd, capture_output=True, **kw)
    if r.returncode != 0:
        raise AssertionError("%s: exit %d\n%s" % (cmd, r.returncode, r.stderr.decode()))
    return r.stdout.decode()


def chromium(profile_dir, *args):
    return run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--no-first-run", "--hide-scrollbars", "--user-data-dir=" + profile_dir] +
               list(args), timeout=120)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pageownerd", required=True)
    ap.add_argument("--pageowner", required=True)
    ap.add_argument("--sample", required=True)
    ap.add_argument("--artifacts", required=True)
    a = ap.parse_args()
    if not os.path.exists(CHROMIUM):
        print("SKIP: %s is missing (deploy/install-deps.sh installs chromium)" % CHROMIUM)
        return 77
    tmp = tempfile.mkdtemp(prefix="web_page_test.")
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
        run(cli + ["replay", a.sample])
        # The synthetic load before the workload: it frees blocks it did not allocate.
        run(cli + ["load", "--events", "6000", "--stacks", "40", "--fill", "0.5", "--seed", "5"])
        for i, text in enumerate((workload.phase1(), workload.phase2())):
            p = os.path.join(tmp, "w%d.jsonl" % i)
            open(p, "w").write(text)
            run(cli + ["replay", p])

        pfn = 0xff10
        dom = chromium(os.path.join(tmp, "profile"), "--virtual-time-budget=15000",
                       "--dump-dom", "%s/?pfn=%d&live=0" % (http, pfn))
        g = Grab()
        g.feed(dom)
        assert 'data-ready="1"' in dom, dom[:2000]
        probe = json.loads(g.text["probe"])
        assert probe["cells"] == 65536 and probe["pages_per_cell"] == 1, probe
        assert g.attrs_of["map"]["data-cells"] == "65536"

        expected_text = run(cli + ["page", hex(pfn)])
        assert g.text["page-text"] == expected_text, (g.text["page-text"], expected_text)

        sel = probe["selected"]
        assert sel["pfn"] == pfn
        stack_c = run(cli + ["stack", str(sel["handle"])])
        assert re.findall(r"^ (\S+)$", stack_c, re.M) == workload.STACK_C, stack_c
        content_id = re.search(r"^content_id: (0x[0-9a-f]+)$", stack_c, re.M)
        content_id = content_id.group(1) if content_id else sel["content_id"]
        assert int(sel["content_id"], 16) == int(content_id, 16), (sel, content_id)
        rgb = stack_color(sel["content_id"])
        assert sel["expected_rgb"] == rgb and sel["drawn_rgb"] == rgb, (sel, rgb)
        assert sel["stack_cells"] == 16 and sel["stack_cells_in_color"] == 16, sel

        # The table: `stacks --sort pages`, in order.
        show = []
        frames = []
        for line in run(cli + ["stacks", "--sort", "pages"]).splitlines():
            if line.startswith(" "):
                frames.append(line.strip())
            elif line.startswith("nr_base_pages: "):
                show.append((frames, int(line.split()[1])))
                frames = []
        table = [(r["cells"][5].split("\n"), int(r["cells"][1])) for r in g.rows]
        assert table == show, (table[:3], show[:3])
        for r in g.rows[:5]:
            st = run(cli + ["stack", str(r["handle"])])
            assert int(re.search(r"^allocations: (\d+)$", st, re.M).group(1)) == int(
                r["cells"][2])

        os.makedirs(a.artifacts, exist_ok=True)
        shot = os.path.join(a.artifacts, "web_page.png")
        chromium(os.path.join(tmp, "profile"), "--virtual-time-budget=15000",
                 "--window-size=1500,1250", "--screenshot=" + shot,
                 "%s/?pfn=%d&live=0&stack=%d" % (http, pfn, sel["handle"]))
        assert os.path.getsize(shot) > 10000
        print("web_page_test: OK; screenshot %s" % shot)
        return 0
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=30)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
