/* libpageowner_preload.so: loaded with LD_PRELOAD by `pageowner record -- CMD`, it reports where
 * the process's pages come and go (mmap, munmap, mremap, madvise releases, malloc-family blocks
 * of PO_MALLOC_MIN_BYTES and more, program-break moves) with the call stack, into the ring that
 * PAGEOWNER_RING names (preload/ring.h). Nothing here allocates, takes a lock or waits on the
 * recorder on the paths the application calls; a full ring drops the record and counts it.
 *
 * Recursion: a thread-local (initial-exec, so reading it never allocates) `t_busy` is set while
 * a record is being made; anything the unwinder calls (mmap for its caches, malloc) passes
 * straight through.
 * Forks: the child shares the parent's ring (the MAP_SHARED mapping survives fork) and announces
 * itself with a PO_START record (PO_START_FORK); every record carries its pid. Exec: LD_PRELOAD
 * and the ring's fd stay, so the new image loads the library again and says PO_START_EXEC.
 * Exit: PO_EXIT from the library's destructor, which then waits (bounded by the ring's
 * exit_wait_ns) until the recorder has processed it, so /proc/PID/maps is still there to
 * symbolize the process's last stacks.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <link.h>
#include <malloc.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define UNW_LOCAL_ONLY
#include <libunwind.h>

#include "preload/ring.h"

#define PO_EXPORT __attribute__((visibility("default")))
#define PO_INLINE static inline __attribute__((always_inline))

/* glibc's own entry points: no dlsym (which callocs) for the malloc family. */
extern void* __libc_malloc(size_t);
extern void __libc_free(void*);
extern void* __libc_calloc(size_t, size_t);
extern void* __libc_realloc(void*, size_t);
extern void* __libc_memalign(size_t, size_t);
extern void* __libc_valloc(size_t);
extern void* __libc_pvalloc(size_t);

typedef void* (*mmap_fn)(void*, size_t, int, int, int, off_t);
typedef int (*munmap_fn)(void*, size_t);
typedef void* (*mremap_fn)(void*, size_t, size_t, int, ...);
typedef int (*madvise_fn)(void*, size_t, int);

static struct po_ring_header* g_ring; /* null: not recording */
static int g_pid;
static int g_exited;
static uintptr_t g_self_lo, g_self_hi; /* this library's code: frames to skip */
static uint64_t g_brk;                 /* the last program break seen */
static mmap_fn real_mmap;
static munmap_fn real_munmap;
static mremap_fn real_mremap;
static madvise_fn real_madvise;

static __thread int t_busy __attribute__((tls_model("initial-exec")));
static __thread int t_tid __attribute__((tls_model("initial-exec")));

PO_INLINE int po_active(void) {
  return g_ring != 0 && !t_busy && !__atomic_load_n(&g_exited, __ATOMIC_RELAXED);
}

PO_INLINE uint64_t po_now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* A record being made: claimed (with its stack) before the call it describes, published after,
 * so that the ring's order is the order in which address ranges changed hands. */
struct po_pending {
  struct po_record* r;
  uint64_t pos;
  int busy; /* this record set t_busy */
};

/* Claims a slot and unwinds into it. Always inlined into the hook, so that the hook is the
 * innermost frame and everything from this library is skipped. Sets t_busy; po_end clears it. */
PO_INLINE void po_begin(struct po_pending* p) {
  p->r = 0;
  p->busy = 0;
  if (!po_active()) return;
  t_busy = 1;
  p->busy = 1;
  p->r = po_ring_claim(g_ring, &p->pos);
  if (p->r == 0) return;
  void* ips[PO_RING_MAX_IPS + 8];
  const int n = unw_backtrace(ips, PO_RING_MAX_IPS + 8);
  uint32_t k = 0;
  for (int i = 0; i < n && k < PO_RING_MAX_IPS; ++i) {
    const uintptr_t ip = (uintptr_t)ips[i];
    if (k == 0 && ip >= g_self_lo && ip < g_self_hi) continue;
    p->r->ips[k++] = ip;
  }
  p->r->nr_ips = k;
}

/* Publishes the record (kind 0: the call failed, the reader skips it). */
PO_INLINE void po_end(struct po_pending* p, uint32_t kind, uint64_t addr, uint64_t len,
                      uint64_t new_addr, uint64_t new_len) {
  if (p->r != 0) {
    struct po_record* r = p->r;
    if (t_tid == 0) t_tid = (int)syscall(SYS_gettid);
    r->kind = kind;
    r->addr = addr;
    r->len = len;
    r->new_addr = new_addr;
    r->new_len = new_len;
    r->pid = g_pid;
    r->tid = t_tid;
    r->ts_ns = po_now_ns();
    po_ring_publish(g_ring, r, p->pos);
  }
  if (p->busy) t_busy = 0;
}

/* po_begin + po_end for a record about something already done. */
#define PO_RECORD(kind, addr, len, new_addr, new_len)                                    \
  do {                                                                                   \
    if (po_active()) {                                                                   \
      struct po_pending pending_;                                                        \
      po_begin(&pending_);                                                               \
      po_end(&pending_, (kind), (uint64_t)(addr), (uint64_t)(len), (uint64_t)(new_addr), \
             (uint64_t)(new_len));                                                       \
    }                                                                                    \
  } while (0)

/* The program break moved (glibc's malloc grew or trimmed its main heap through the internal
 * brk, which no hook sees): one record, charged to the caller whose malloc or free moved it. */
PO_INLINE void po_check_brk(void) {
  if (!po_active()) return;
  const uint64_t now = (uint64_t)(uintptr_t)sbrk(0);
  uint64_t seen = __atomic_load_n(&g_brk, __ATOMIC_RELAXED);
  if (now == seen) return;
  if (!__atomic_compare_exchange_n(&g_brk, &seen, now, 0, __ATOMIC_RELAXED, __ATOMIC_RELAXED))
    return;
  PO_RECORD(PO_BRK, now, seen, 0, 0);
}

/* ---- mmap and friends ---- */

PO_EXPORT void* mmap(void* addr, size_t len, int prot, int flags, int fd, off_t off) {
  void* p = real_mmap
                ? real_mmap(addr, len, prot, flags, fd, off)
                : (void*)syscall(SYS_mmap, addr, len, (long)prot, (long)flags, (long)fd, (long)off);
  if (p != MAP_FAILED && po_active()) {
    const int saved = errno;
    PO_RECORD(PO_MMAP, p, len, 0, ((uint64_t)(uint32_t)prot << 32) | (uint32_t)flags);
    errno = saved;
  }
  return p;
}
PO_EXPORT void* mmap64(void* addr, size_t len, int prot, int flags, int fd, off_t off)
    __attribute__((alias("mmap")));

PO_EXPORT int munmap(void* addr, size_t len) {
  struct po_pending p;
  po_begin(&p);
  const int rc = real_munmap ? real_munmap(addr, len) : (int)syscall(SYS_munmap, addr, len);
  const int saved = errno;
  po_end(&p, rc == 0 ? PO_MUNMAP : 0, (uint64_t)(uintptr_t)addr, len, 0, 0);
  errno = saved;
  return rc;
}

PO_EXPORT void* mremap(void* old, size_t old_len, size_t new_len, int flags, ...) {
  void* want = 0;
  if (flags & MREMAP_FIXED) {
    va_list ap;
    va_start(ap, flags);
    want = va_arg(ap, void*);
    va_end(ap);
  }
  struct po_pending p;
  po_begin(&p);
  void* q = real_mremap ? real_mremap(old, old_len, new_len, flags, want)
                        : (void*)syscall(SYS_mremap, old, old_len, new_len, (long)flags, want);
  const int saved = errno;
  po_end(&p, q != MAP_FAILED ? PO_MREMAP : 0, (uint64_t)(uintptr_t)old, old_len,
         (uint64_t)(uintptr_t)q, new_len);
  errno = saved;
  return q;
}

PO_EXPORT int madvise(void* addr, size_t len, int advice) {
  const int releases = advice == MADV_DONTNEED || advice == MADV_FREE || advice == MADV_REMOVE
#ifdef MADV_DONTNEED_LOCKED
                       || advice == MADV_DONTNEED_LOCKED
#endif
      ;
  struct po_pending p = {0, 0, 0};
  if (releases) po_begin(&p);
  const int rc = real_madvise ? real_madvise(addr, len, advice)
                              : (int)syscall(SYS_madvise, addr, len, (long)advice);
  const int saved = errno;
  if (releases) po_end(&p, rc == 0 ? PO_MADVISE : 0, (uint64_t)(uintptr_t)addr, len, 0, 0);
  errno = saved;
  return rc;
}

/* ---- the malloc family ---- */

PO_INLINE void po_after_alloc(void* q, size_t size) {
  if (q != 0 && size >= PO_MALLOC_MIN_BYTES && po_active()) {
    const int saved = errno;
    PO_RECORD(PO_MALLOC, q, size, 0, 0);
    errno = saved;
  }
  po_check_brk();
}

PO_EXPORT void* malloc(size_t size) {
  void* q = __libc_malloc(size);
  po_after_alloc(q, size);
  return q;
}

PO_EXPORT void* calloc(size_t n, size_t size) {
  void* q = __libc_calloc(n, size);
  if (q != 0) po_after_alloc(q, n * size); /* no overflow: calloc checked it */
  return q;
}

PO_EXPORT void free(void* ptr) {
  if (ptr == 0) return;
  if (po_active() && malloc_usable_size(ptr) >= PO_MALLOC_MIN_BYTES) {
    PO_RECORD(PO_FREE, ptr, 0, 0, 0); /* before the free: the address may be reused at once */
  }
  __libc_free(ptr);
  po_check_brk();
}

PO_EXPORT void* realloc(void* old, size_t size) {
  struct po_pending p = {0, 0, 0};
  const int tracked = old != 0 && po_active() && malloc_usable_size(old) >= PO_MALLOC_MIN_BYTES;
  if (tracked) po_begin(&p);
  void* q = __libc_realloc(old, size);
  const int saved = errno;
  /* On failure (null for a nonzero size) the old block stays. */
  if (tracked) {
    po_end(&p, q != 0 || size == 0 ? PO_FREE : 0, (uint64_t)(uintptr_t)old, 0, 0, 0);
  }
  po_after_alloc(q, size);
  errno = saved;
  return q;
}

PO_EXPORT int posix_memalign(void** out, size_t align, size_t size) {
  if (align < sizeof(void*) || (align & (align - 1)) != 0) return EINVAL;
  const int saved = errno;
  void* q = __libc_memalign(align, size);
  if (q == 0) {
    errno = saved;
    return ENOMEM;
  }
  po_after_alloc(q, size);
  errno = saved;
  *out = q;
  return 0;
}

PO_EXPORT void* aligned_alloc(size_t align, size_t size) {
  void* q = __libc_memalign(align, size);
  po_after_alloc(q, size);
  return q;
}

PO_EXPORT void* memalign(size_t align, size_t size) {
  void* q = __libc_memalign(align, size);
  po_after_alloc(q, size);
  return q;
}

PO_EXPORT void* valloc(size_t size) {
  void* q = __libc_valloc(size);
  po_after_alloc(q, size);
  return q;
}

PO_EXPORT void* pvalloc(size_t size) {
  void* q = __libc_pvalloc(size);
  po_after_alloc(q, size);
  return q;
}

/* ---- start, fork, exit ---- */

static void po_record_start(uint32_t how) {
  if (!po_active()) return;
  struct po_pending p;
  po_begin(&p);
  if (p.r != 0) {
    char comm[16] = {0};
    prctl(PR_GET_NAME, comm, 0, 0, 0);
    p.r->nr_ips = 0;
    memcpy(p.r->ips, comm, sizeof(comm));
  }
  po_end(&p, PO_START, (uint64_t)getppid(), how, 0, 0);
}

static void po_atfork_child(void) {
  g_pid = (int)getpid();
  t_tid = 0;
  po_record_start(PO_START_FORK);
}

/* Finds the PT_LOAD segments of the object holding po_init: the frames to skip. */
static int po_find_self(struct dl_phdr_info* info, size_t size, void* data) {
  (void)size;
  const uintptr_t me = (uintptr_t)data;
  uintptr_t lo = UINTPTR_MAX, hi = 0;
  for (int i = 0; i < info->dlpi_phnum; ++i) {
    const ElfW(Phdr)* ph = &info->dlpi_phdr[i];
    if (ph->p_type != PT_LOAD || !(ph->p_flags & PF_X)) continue;
    const uintptr_t a = info->dlpi_addr + ph->p_vaddr;
    if (a < lo) lo = a;
    if (a + ph->p_memsz > hi) hi = a + ph->p_memsz;
  }
  if (me >= lo && me < hi) {
    g_self_lo = lo;
    g_self_hi = hi;
    return 1;
  }
  return 0;
}

/* Maps the ring named by PAGEOWNER_RING ("FD:INODE[:PATH]"); null when it is not there. */
static struct po_ring_header* po_map_ring(void) {
  const char* env = getenv(PO_RING_ENV);
  if (env == 0) return 0;
  char* end = 0;
  const long fd_number = strtol(env, &end, 10);
  if (*end != ':') return 0;
  const unsigned long long ino = strtoull(end + 1, &end, 10);
  const char* path = *end == ':' ? end + 1 : 0;
  struct stat st;
  int fd = (int)fd_number;
  int opened = 0;
  if (fstat(fd, &st) != 0 || st.st_ino != ino) {
    if (path == 0) return 0;
    fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0) return 0;
    opened = 1;
    if (fstat(fd, &st) != 0 || st.st_ino != ino) {
      close(fd);
      return 0;
    }
  }
  struct po_ring_header* h = 0;
  if ((uint64_t)st.st_size >= PO_RING_HEADER_BYTES) {
    /* syscall() reads every argument as a long: an int (a literal 0 too) leaves the upper half
       of its slot undefined, and clang passed a garbage file offset here (the 6th argument goes
       on the stack). */
    void* m = (void*)syscall(SYS_mmap, (long)0, (long)st.st_size, (long)(PROT_READ | PROT_WRITE),
                             (long)MAP_SHARED, (long)fd, (long)0);
    if (m != MAP_FAILED) {
      h = (struct po_ring_header*)m;
      if (h->magic != PO_RING_MAGIC || h->version != PO_RING_VERSION ||
          h->record_size != sizeof(struct po_record) ||
          po_ring_bytes(h->slots) > (uint64_t)st.st_size) {
        syscall(SYS_munmap, m, (size_t)st.st_size);
        h = 0;
      }
    }
  }
  if (opened) close(fd);
  return h;
}

__attribute__((constructor)) static void po_init(void) {
  t_busy = 1; /* dlsym and getenv may allocate: nothing is recorded yet anyway */
  real_mmap = (mmap_fn)dlsym(RTLD_NEXT, "mmap");
  real_munmap = (munmap_fn)dlsym(RTLD_NEXT, "munmap");
  real_mremap = (mremap_fn)dlsym(RTLD_NEXT, "mremap");
  real_madvise = (madvise_fn)dlsym(RTLD_NEXT, "madvise");
  dl_iterate_phdr(po_find_self, (void*)(uintptr_t)&po_init);
  struct po_ring_header* h = po_map_ring();
  g_pid = (int)getpid();
  g_brk = (uint64_t)(uintptr_t)sbrk(0);
  if (h != 0) pthread_atfork(0, 0, po_atfork_child);
  t_busy = 0;
  __atomic_store_n(&g_ring, h, __ATOMIC_RELEASE);
  po_record_start(PO_START_EXEC);
}

__attribute__((destructor)) static void po_fini(void) {
  if (!po_active()) return;
  struct po_pending p;
  po_begin(&p);
  const uint64_t pos = p.pos;
  const int claimed = p.r != 0;
  if (claimed) p.r->nr_ips = 0;
  po_end(&p, PO_EXIT, 0, 0, 0, 0);
  __atomic_store_n(&g_exited, 1, __ATOMIC_RELAXED);
  if (!claimed) return;
  /* Bounded: the recorder may be gone or slow; exit goes on after exit_wait_ns. */
  const uint64_t deadline = po_now_ns() + g_ring->exit_wait_ns;
  while (__atomic_load_n(&g_ring->consumed, __ATOMIC_ACQUIRE) <= pos && po_now_ns() < deadline) {
    struct timespec ts = {0, 200000};
    nanosleep(&ts, 0);
  }
}
