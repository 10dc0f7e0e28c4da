/* The program `record -- CMD` is tested on: known mmap, munmap, mremap, madvise and malloc calls,
 * each from its own named function, at fixed addresses (so the buddy split is known). It writes
 * the malloc blocks' addresses on stdout ("malloc 0x..."), uses write(2) only (stdio would malloc
 * a buffer of 4 KiB), and exits 3.
 *   app_record_target            the scenario of app_record_test
 *   app_record_target stress N   N mmap+munmap pairs of one page (the ring's overload test)
 *   app_record_target mmaps N    N mmap+munmap pairs of 16 pages, touched (the benchmark)
 *   app_record_target mallocs N  N malloc+free pairs of 16 KiB, touched (the benchmark) */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define PAGE 4096ul
#define REGION1 ((void*)0x200000000000ul)
#define REGION2 ((void*)0x200000100000ul)
#define REGION2_MOVED ((void*)0x200000200000ul)
#define NOINLINE __attribute__((noinline))

static void say(const char* what, void* p) {
  char line[64];
  const int n = snprintf(line, sizeof(line), "%s %p\n", what, p);
  if (write(1, line, (size_t)n) != n) exit(1);
}

static inline __attribute__((always_inline)) void* map_fixed(void* at, size_t pages) {
  void* p = mmap(at, pages * PAGE, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
  if (p != at) exit(10);
  return p;
}

NOINLINE void map_sixteen(void) { map_fixed(REGION1, 16); }
NOINLINE void unmap_middle(void) {
  if (munmap((char*)REGION1 + 4 * PAGE, 4 * PAGE) != 0) exit(11);
}
NOINLINE void map_eight(void) { map_fixed(REGION2, 8); }
NOINLINE void move_eight(void) {
  void* p = mremap(REGION2, 8 * PAGE, 8 * PAGE, MREMAP_MAYMOVE | MREMAP_FIXED, REGION2_MOVED);
  if (p != REGION2_MOVED) exit(12);
}
NOINLINE void grow_eight(void) {
  void* p = mremap(REGION2_MOVED, 8 * PAGE, 16 * PAGE, 0);
  if (p != REGION2_MOVED) exit(13);
}
NOINLINE void drop_page(void) {
  if (madvise(REGION1, PAGE, MADV_DONTNEED) != 0) exit(14);
}
NOINLINE void* big_malloc(void) {
  void* p = malloc(5 * PAGE);
  if (p == NULL) exit(15);
  say("malloc", p);
  return p;
}
NOINLINE void big_free(void* p) { free(p); }
NOINLINE void* leaky_malloc(void) {
  void* p = malloc(2 * PAGE);
  if (p == NULL) exit(16);
  say("malloc", p);
  return p;
}

static void* volatile sink;

int main(int argc, char** argv) {
  if (argc == 3) {
    const long n = atol(argv[2]);
    for (long i = 0; i < n; ++i) {
      if (strcmp(argv[1], "mallocs") == 0) {
        char* p = malloc(4 * PAGE);
        p[0] = (char)i;
        sink = p;
        free(p);
        continue;
      }
      const size_t pages = strcmp(argv[1], "stress") == 0 ? 1 : 16;
      char* p =
          mmap(NULL, pages * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
      if (p == MAP_FAILED) return 20;
      if (pages > 1) p[0] = (char)i;
      munmap(p, pages * PAGE);
    }
    return 0;
  }
  map_sixteen();
  unmap_middle();
  map_eight();
  move_eight();
  grow_eight();
  drop_page();
  big_free(big_malloc());
  sink = leaky_malloc();
  if (write(1, "done\n", 5) != 5) return 1;
  return 3;
}
