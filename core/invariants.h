// Full-scan invariant checkers of the core's state, for tests and fuzzers (tcmalloc keeps such
// checkers debug-only; ours are plain functions that return what they found, so a test can print
// it and a fuzzer can abort on it). Each costs O(everything it checks): call them between steps,
// never on a hot path.
#ifndef PAGEOWNER_CORE_INVARIANTS_H_
#define PAGEOWNER_CORE_INVARIANTS_H_

#include "absl/status/status.h"
#include "core/machine.h"
#include "core/stack_depot.h"

namespace pageowner {

// The depot's invariants (core/stack_depot.h): every stored stack has a valid handle, 1 to
// max_depth frames, is found again by its frames (dedup) and fetched back equal; the stats count
// what ForEachStack visits; no stack owns negative pages; the owner list holds each stack that was
// charged an allocation, once; pools stay within max_pools and hold the stored bytes.
// kInternal naming the first violation, or OK.
// Thread-safety: as the depot's const methods, but the answer is only meaningful with no
// concurrent Save or Charge.
absl::Status CheckDepotInvariants(const StackDepot& depot);

// Everything above for the machine's depot, the allocator's own CheckInvariants, and the machine's
// (core/machine.h): every page whose record is allocated lies in an allocated block, has an owner,
// a stored handle and a record order no larger than its block's; with tracking on every allocated
// page's record is allocated; each stack's page count equals a recount of the records, and the
// counts sum to tracked_pages(); the depot's pools are the order-2 blocks the machine took for it.
// kInternal naming the first violation, or OK.
// Thread-safety: as the machine's const queries (no mutator may run meanwhile).
absl::Status CheckMachineInvariants(const Machine& machine);

}  // namespace pageowner

#endif  // PAGEOWNER_CORE_INVARIANTS_H_
