#include "core/invariants.h"

#include <algorithm>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "core/buddy_allocator.h"
#include "core/types.h"

namespace pageowner {
namespace {

absl::Status Broken(const std::string& what) {
  return absl::InternalError(absl::StrCat("invariant broken: ", what));
}

}  // namespace

absl::Status CheckDepotInvariants(const StackDepot& depot) {
  const StackDepotStats stats = depot.stats();
  if (stats.pools > depot.max_pools()) {
    return Broken(absl::StrCat("depot uses ", stats.pools, " pools, more than its limit ",
                               depot.max_pools()));
  }
  if (stats.persistent_bytes > uint64_t{stats.pools} * StackDepot::kPoolBytes) {
    return Broken(
        absl::StrCat("depot stores ", stats.persistent_bytes, " bytes in ", stats.pools, " pools"));
  }
  uint64_t stacks = 0;
  uint64_t frame_bytes = 0;
  absl::Status status;
  absl::flat_hash_set<uint32_t> charged;
  depot.ForEachStack([&](const StackUsage& u) {
    ++stacks;
    if (!status.ok()) return;
    const std::string h = absl::StrCat("stack ", u.handle.raw());
    frame_bytes += u.frames.size() * sizeof(uint64_t);
    if (!u.handle.valid()) {
      status = Broken("a stored stack has the invalid handle");
    } else if (u.frames.empty() || u.frames.size() > static_cast<size_t>(depot.max_depth())) {
      status = Broken(
          absl::StrCat(h, " has ", u.frames.size(), " frames (max ", depot.max_depth(), ")"));
    } else if (!depot.Contains(u.handle)) {
      status = Broken(absl::StrCat(h, " is listed but not found by its handle"));
    } else if (depot.Find(u.frames) != u.handle) {
      status = Broken(absl::StrCat(h, "'s frames are found as stack ", depot.Find(u.frames).raw()));
    } else if (const absl::Span<const uint64_t> f = depot.Fetch(u.handle);
               !std::equal(f.begin(), f.end(), u.frames.begin(), u.frames.end())) {
      status = Broken(absl::StrCat(h, " fetches other frames than it lists"));
    } else if (u.pages < 0) {
      status = Broken(absl::StrCat(h, " owns ", u.pages, " pages"));
    }
    if (u.allocations > 0) charged.insert(u.handle.raw());
  });
  if (!status.ok()) return status;
  if (stacks != stats.persistent_count) {
    return Broken(
        absl::StrCat("depot lists ", stacks, " stacks, its stats count ", stats.persistent_count));
  }
  if (frame_bytes > stats.persistent_bytes) {
    return Broken(absl::StrCat("depot's frames take ", frame_bytes, " bytes, its stats count ",
                               stats.persistent_bytes));
  }
  absl::flat_hash_set<uint32_t> owners;
  depot.ForEachOwnerStack([&](const StackUsage& u) {
    if (!status.ok()) return;
    if (!owners.insert(u.handle.raw()).second) {
      status = Broken(absl::StrCat("stack ", u.handle.raw(), " is on the owner list twice"));
    } else if (u.allocations == 0) {
      status = Broken(absl::StrCat("stack ", u.handle.raw(), " is an owner with no allocation"));
    }
  });
  if (!status.ok()) return status;
  if (owners.size() != charged.size()) {
    return Broken(absl::StrCat("owner list holds ", owners.size(), " stacks, ", charged.size(),
                               " were charged allocations"));
  }
  return absl::OkStatus();
}

absl::Status CheckMachineInvariants(const Machine& machine) {
  const BuddyAllocator& buddy = machine.allocator();
  if (absl::Status s = buddy.CheckInvariants(); !s.ok()) return s;
  const StackDepot& depot = machine.depot();
  if (absl::Status s = CheckDepotInvariants(depot); !s.ok()) return s;

  const uint64_t pools = depot.stats().pools;
  const uint64_t taken = machine.depot_pool_pfns().size();
  if (taken != pools && taken != pools + 1) {  // one may be the depot's spare
    return Broken(absl::StrCat("the machine took ", taken, " blocks for ", pools, " depot pools"));
  }
  for (StackHandle h : {machine.dummy_handle(), machine.failure_handle(), machine.early_handle()}) {
    if (!depot.Contains(h))
      return Broken(absl::StrCat("special stack ", h.raw(), " is not stored"));
  }

  // Invariant 2 of core/machine.h: per-stack page counts are a recount of the records.
  absl::flat_hash_map<uint32_t, int64_t> recount;
  uint64_t tracked = 0;
  uint64_t reserved = 0;
  const uint64_t pages = machine.total_pages().raw();
  for (uint64_t i = 0; i < pages; ++i) {
    const Pfn pfn(i);
    absl::StatusOr<PageOwner> rec = machine.PageRecord(pfn);
    if (!rec.ok()) return Broken(absl::StrCat("pfn ", i, ": ", rec.status().ToString()));
    const std::optional<AllocatedBlock> block = buddy.BlockContaining(pfn);
    if (rec->reserved) {  // invariant 6
      if (rec->allocated) return Broken(absl::StrCat("pfn ", i, " is reserved and tracked"));
      if (!block.has_value()) return Broken(absl::StrCat("pfn ", i, " is reserved and free"));
      ++reserved;
      continue;
    }
    if (rec->allocated) {
      if (!block.has_value()) {
        return Broken(absl::StrCat("pfn ", i, "'s record is allocated, the page is free"));
      }
      if (!rec->owner) return Broken(absl::StrCat("pfn ", i, " is allocated with no owner"));
      if (!depot.Contains(rec->handle)) {
        return Broken(absl::StrCat("pfn ", i, " is owned by unknown stack ", rec->handle.raw()));
      }
      if (rec->order.raw() > block->order.raw()) {
        return Broken(absl::StrCat("pfn ", i, "'s record has order ", rec->order.raw(),
                                   ", its block ", block->order.raw()));
      }
      ++recount[rec->handle.raw()];
      ++tracked;
    } else if (block.has_value() && machine.tracking()) {
      return Broken(absl::StrCat("pfn ", i, " is allocated but not tracked with tracking on"));
    }
  }
  if (tracked != machine.tracked_pages().raw()) {
    return Broken(absl::StrCat(tracked, " records are allocated, the machine counts ",
                               machine.tracked_pages().raw()));
  }
  if (reserved != machine.reserved_pages().raw()) {
    return Broken(absl::StrCat(reserved, " pages are marked reserved, the machine counts ",
                               machine.reserved_pages().raw()));
  }
  absl::Status status;
  int64_t counted = 0;
  depot.ForEachStack([&](const StackUsage& u) {
    counted += u.pages;
    if (!status.ok()) return;
    auto it = recount.find(u.handle.raw());
    const int64_t want = it == recount.end() ? 0 : it->second;
    if (u.pages != want) {
      status = Broken(absl::StrCat("stack ", u.handle.raw(), " counts ", u.pages,
                                   " pages, its records ", want));
    }
  });
  if (!status.ok()) return status;
  if (counted != static_cast<int64_t>(tracked)) {
    return Broken(absl::StrCat("the stacks count ", counted, " pages, the records ", tracked));
  }
  return absl::OkStatus();
}

}  // namespace pageowner
