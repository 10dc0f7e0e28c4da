"""A small known workload for the pprof and web page tests: JSON lines for `pageowner replay`.

phase1(): stack A 10 x order 0 (pid 100 "alpha"), stack B 5 x order 2 (pid 200 "beta",
movable), stack C 3 x order 3 at 0xff00, 0xff08, 0xff10 (pid 300 "gamma") of which 0xff08 is
freed again. phase2(): stack D 7 x order 1 (pid 400 "delta") and 4 more of stack A: 18 pages
more in 11 blocks.
"""

import json

STACK_A = ["alpha_alloc+0x10/0x40", "alpha_caller+0x22/0x80", "do_syscall_64+0x9e/0x1c0"]
STACK_B = ["beta_fault+0x31/0x90", "handle_mm_fault+0x1c5/0x3b0", "do_user_addr_fault+0x1d8/0x690"]
STACK_C = ["gamma_slab+0x5/0x20", "new_slab+0x3a7/0x4d0", "kmem_cache_alloc_noprof+0x250/0x2a0"]
STACK_D = ["delta_grow+0x44/0x100", "alpha_caller+0x22/0x80", "do_syscall_64+0x9e/0x1c0"]

PHASE2_PAGES = 7 * 2 + 4
PHASE2_BLOCKS = 11


def alloc(stack, order, pid, comm, gfp="GFP_KERNEL", pfn=None, ts=1000000):
    e = {"kind": "alloc", "order": order, "gfp": gfp, "pid": pid, "comm": comm, "ts_ns": ts,
         "stack": stack}
    if pfn is not None:
        e["pfn"] = hex(pfn)
    return json.dumps(e)


def phase1():
    lines = []
    for i in range(10):
        lines.append(alloc(STACK_A, 0, 100, "alpha", ts=1000000 + i))
    for i in range(5):
        lines.append(alloc(STACK_B, 2, 200, "beta", gfp="GFP_HIGHUSER_MOVABLE", ts=2000000 + i))
    for pfn in (0xff00, 0xff08, 0xff10):
        lines.append(alloc(STACK_C, 3, 300, "gamma", pfn=pfn, ts=3000000))
    lines.append(json.dumps({"kind": "free", "pfn": "0xff08", "order": 3, "pid": 300,
                             "comm": "gamma", "ts_ns": 3000001}))
    return "\n".join(lines) + "\n"


def phase2():
    lines = []
    for i in range(7):
        lines.append(alloc(STACK_D, 1, 400, "delta", ts=4000000 + i))
    for i in range(4):
        lines.append(alloc(STACK_A, 0, 100, "alpha", ts=5000000 + i))
    return "\n".join(lines) + "\n"
