// Transparent huge pages for the per-page arrays of a large machine.
#ifndef PAGEOWNER_CORE_HUGE_PAGES_H_
#define PAGEOWNER_CORE_HUGE_PAGES_H_

#include <cstddef>

namespace pageowner {

// Asks the kernel to back the whole 2 MiB pages inside [p, p + n) with transparent huge pages
// (madvise MADV_HUGEPAGE; the host's THP setting "madvise" or "always"). Arrays below 8 MiB are
// left alone. Why: a snapshot forks the daemon, and fork copies a page-table entry and takes a
// reference for every 4 KiB page; for the records of a 64 GiB machine (470 MB) that is 115,000
// entries and tens of ms of paused ingest, against 230 huge pages. The cost: a touched 2 MiB
// range is backed whole, so a sparsely used huge machine holds more memory.
// Thread-safety: any thread.
void AdviseHugePages(void* p, size_t n);

}  // namespace pageowner

#endif  // PAGEOWNER_CORE_HUGE_PAGES_H_
