/* The shared-memory ring between the preload library (libpageowner_preload.so, in the recorded
 * process and its descendants) and `pageowner record` (the reader). C and C++ both include it;
 * the layout is the protocol, so a change bumps PO_RING_VERSION.
 *
 * The ring is a bounded multi-producer queue of fixed-size records (Vyukov's design): each slot
 * has a sequence number; a producer claims position p with a compare-and-swap on `head` when
 * slot p's sequence is p, writes the record, and publishes it by storing p + 1; the reader takes
 * slot p when its sequence is p + 1 and frees it by storing p + slots.
 *
 * Invariants:
 *  1. A producer never waits for the reader: when slot p still holds an unread record (its
 *     sequence is below p) the ring is full, and the record is dropped and counted in `drops`.
 *  2. Producers only contend with each other (a failed compare-and-swap retries with the newer
 *     head), so a thread is delayed only by threads that made progress.
 *  3. `consumed` is the reader's position once it has processed every record below it; only the
 *     library's exit path waits on it, bounded by `exit_wait_ns`.
 * A producer killed between its claim and its publish leaves a slot the reader can never take:
 * the reader stops there (records after it are lost and counted by the reader as "torn").
 */
#ifndef PAGEOWNER_PRELOAD_RING_H_
#define PAGEOWNER_PRELOAD_RING_H_

#include <stdint.h>

#define PO_RING_MAGIC 0x31474e4952574f50ull /* "POWRING1" little-endian */
#define PO_RING_VERSION 1u
#define PO_RING_MAX_IPS 32
#define PO_RING_HEADER_BYTES 256u
/* The environment variable naming the ring: "FD:INODE" (the memfd's number in the process and
 * its inode, checked before use), then optionally ":/proc/PID/fd/N", a path to reopen it by when
 * the fd was closed (e.g. by a close-all-fds before exec). */
#define PO_RING_ENV "PAGEOWNER_RING"

/* What a record says. Addresses and lengths are the process's own, in bytes. */
enum po_kind {
  PO_MMAP = 1,    /* addr, len (the mapping, pages); new_len: prot << 32 | flags */
  PO_MUNMAP = 2,  /* addr, len */
  PO_MREMAP = 3,  /* addr, len: the old range; new_addr, new_len: the new one */
  PO_MADVISE = 4, /* addr, len released by MADV_DONTNEED, MADV_FREE or MADV_REMOVE */
  PO_MALLOC = 5,  /* addr: the block, len: its size (>= PO_MALLOC_MIN_BYTES) */
  PO_FREE = 6,    /* addr: a block whose usable size is >= PO_MALLOC_MIN_BYTES */
  PO_START = 7,   /* the library started in a process: addr = parent pid, len = PO_START_*,
                     ips[0..1]: comm (16 bytes, NUL-padded) */
  PO_EXIT = 8,    /* the process is exiting (exit(), return from main); no stack */
  PO_BRK = 9      /* the program break moved: addr = new break, len = old break */
};
#define PO_START_EXEC 0u /* a new image (the first process, or an exec) */
#define PO_START_FORK 1u /* a fork's child: inherits nothing in the map */
#define PO_MALLOC_MIN_BYTES 4096u

struct po_record {
  uint64_t seq; /* the ring protocol's slot sequence */
  uint32_t kind;
  uint32_t nr_ips; /* valid entries of ips, innermost first */
  uint64_t addr;
  uint64_t len;
  uint64_t new_addr;
  uint64_t new_len;
  int32_t pid;                   /* the process (tgid) */
  int32_t tid;                   /* the thread */
  uint64_t ts_ns;                /* CLOCK_MONOTONIC */
  uint64_t ips[PO_RING_MAX_IPS]; /* return addresses */
};

struct po_ring_header {
  uint64_t magic;
  uint32_t version;
  uint32_t record_size;  /* sizeof(struct po_record) */
  uint64_t slots;        /* a power of two */
  uint64_t exit_wait_ns; /* how long exit waits for the reader (0: not at all) */
  uint8_t pad0[32];
  uint64_t head; /* producers: the next position to claim */
  uint8_t pad1[56];
  uint64_t consumed; /* reader: every record below this position is processed */
  uint8_t pad2[56];
  uint64_t drops;   /* records dropped because the ring was full */
  uint64_t written; /* records published */
  uint8_t pad3[48];
};

#ifdef __cplusplus
static_assert(sizeof(struct po_ring_header) == PO_RING_HEADER_BYTES, "ring header layout");
static_assert(sizeof(struct po_record) == 320, "record layout");
#else
_Static_assert(sizeof(struct po_ring_header) == PO_RING_HEADER_BYTES, "ring header layout");
_Static_assert(sizeof(struct po_record) == 320, "record layout");
#endif

/* The ring's size in bytes for `slots` records. */
static inline uint64_t po_ring_bytes(uint64_t slots) {
  return PO_RING_HEADER_BYTES + slots * (uint64_t)sizeof(struct po_record);
}

static inline struct po_record* po_ring_slot(struct po_ring_header* h, uint64_t pos) {
  return (struct po_record*)((char*)h + PO_RING_HEADER_BYTES) + (pos & (h->slots - 1));
}

/* Producer: claims a slot for one record, or returns 0 (and counts a drop) when the ring is
 * full. Never waits for the reader. Fill the record, then po_ring_publish(). */
static inline struct po_record* po_ring_claim(struct po_ring_header* h, uint64_t* pos_out) {
  uint64_t pos = __atomic_load_n(&h->head, __ATOMIC_RELAXED);
  for (;;) {
    struct po_record* r = po_ring_slot(h, pos);
    const uint64_t seq = __atomic_load_n(&r->seq, __ATOMIC_ACQUIRE);
    const int64_t dif = (int64_t)(seq - pos);
    if (dif == 0) {
      if (__atomic_compare_exchange_n(&h->head, &pos, pos + 1, 1, __ATOMIC_RELAXED,
                                      __ATOMIC_RELAXED)) {
        *pos_out = pos;
        return r;
      }
      /* `pos` now holds the newer head: retry there. */
    } else if (dif < 0) {
      __atomic_fetch_add(&h->drops, 1, __ATOMIC_RELAXED);
      return 0;
    } else {
      pos = __atomic_load_n(&h->head, __ATOMIC_RELAXED);
    }
  }
}

static inline void po_ring_publish(struct po_ring_header* h, struct po_record* r, uint64_t pos) {
  __atomic_fetch_add(&h->written, 1, __ATOMIC_RELAXED);
  __atomic_store_n(&r->seq, pos + 1, __ATOMIC_RELEASE);
}

/* Reader (one thread): the record at `pos` when it is published, else 0. */
static inline const struct po_record* po_ring_peek(struct po_ring_header* h, uint64_t pos) {
  struct po_record* r = po_ring_slot(h, pos);
  return __atomic_load_n(&r->seq, __ATOMIC_ACQUIRE) == pos + 1 ? r : 0;
}

/* Reader: gives slot `pos` back to the producers. */
static inline void po_ring_release(struct po_ring_header* h, uint64_t pos) {
  __atomic_store_n(&po_ring_slot(h, pos)->seq, pos + h->slots, __ATOMIC_RELEASE);
}

/* Reader: initializes a zeroed ring of `slots` (a power of two) records. */
static inline void po_ring_init(struct po_ring_header* h, uint64_t slots, uint64_t exit_wait_ns) {
  h->magic = PO_RING_MAGIC;
  h->version = PO_RING_VERSION;
  h->record_size = (uint32_t)sizeof(struct po_record);
  h->slots = slots;
  h->exit_wait_ns = exit_wait_ns;
  for (uint64_t i = 0; i < slots; ++i) po_ring_slot(h, i)->seq = i;
}

#endif /* PAGEOWNER_PRELOAD_RING_H_ */
