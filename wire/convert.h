// pageowner::wire: every conversion between pageowner.v1 messages and core values, in one
// place, used by the server, the client and the test fakes alike. Nothing else lives here: no
// rpc, no policy. A conversion from the wire that can meet a value core has no meaning for
// returns kInvalidArgument naming it.
//
// Two encodings of an enum differ on purpose:
//  - MigrateReason: the wire's enum is the kernel's shifted by one, so that 0 (the proto3
//    default) means "never migrated" (core's kNone, -1).
//  - MigrateType: a PageRecord carries the bare enum (a page always has a pageblock type); the
//    packed column EventBatch.pageblock_migratetype carries MigrateType + 1 because a repeated
//    field cannot say "unset" otherwise, and an imported block may not name its pageblock type.
//
// Thread-safety: stateless functions; safe from any thread.
#ifndef PAGEOWNER_WIRE_CONVERT_H_
#define PAGEOWNER_WIRE_CONVERT_H_

#include <cstdint>
#include <optional>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "core/machine.h"
#include "core/page_owner_sort.h"
#include "core/queries.h"
#include "core/reports.h"
#include "core/stack_depot.h"
#include "core/symbols.h"
#include "core/types.h"
#include "pageowner/v1/pageowner.pb.h"

namespace pageowner::wire {

// ---- Enums ----
v1::MigrateReason ToProto(MigrateReason reason);
// kInvalidArgument for a value outside the enum; NONE is kNone.
absl::StatusOr<MigrateReason> MigrateReasonFromProto(int reason);

v1::MigrateType ToProto(MigrateType type);
// kInvalidArgument for a value outside the enum.
absl::StatusOr<MigrateType> MigrateTypeFromProto(int type);
// EventBatch.pageblock_migratetype: 0 unset, else MigrateType + 1.
uint32_t ToBatchMigratetype(std::optional<MigrateType> type);
absl::StatusOr<std::optional<MigrateType>> BatchMigratetypeFromProto(uint32_t value);

v1::DumpFormat ToProto(DumpFormat format);
absl::StatusOr<DumpFormat> DumpFormatFromProto(int format);

v1::StackSort ToProto(StackOrder order);
absl::StatusOr<StackOrder> StackOrderFromProto(int sort);

// ---- Records ----
void ToProto(const PrintedExtras& extras, v1::PrintedExtras* out);
PrintedExtras FromProto(const v1::PrintedExtras& extras);

void ToProto(const PageOwner& p, v1::PageRecord* out);
// The daemon's record as core's plain struct, so that core's renderers print it exactly as the
// daemon would. The record's printed extras (imported blocks), if any, are kept in *storage,
// which must outlive the returned PageOwner's use. An unknown migrate reason reads as kNone and
// an unknown migratetype as it is (the renderers name what they do not know).
PageOwner FromProto(const v1::PageRecord& record, PrintedExtras* storage);

// ---- Stacks ----
// A stack with its frames as %pS prints them (names from `symbols`), its usage and content id.
void ToProto(const StackUsage& stack, const SymbolTable& symbols, v1::Stack* out);

// A stack received from the daemon, with storage for its addresses.
struct ReceivedStack {
  StackHandle handle;
  std::vector<uint64_t> ips;
  int64_t pages = 0;
  uint64_t allocations = 0;

  // A view for AppendStackEntry; valid while this object lives and is not changed.
  StackUsage usage() const;
};
// Names each frame's address in `symbols` with the text the daemon printed for it (frames the
// daemon printed as a bare "0x..." address stay unnamed, and so print the same) and returns the
// stack's addresses and usage.
ReceivedStack FromProto(const v1::Stack& stack, SymbolTable* symbols);

// ---- Queries ----
// kInvalidArgument for an unknown state or an order filter above kMaxOrder; kOutOfRange is
// PageScan::Create's.
absl::StatusOr<PageScanRequest> FromProto(const v1::ListPagesRequest& request);
// The filters of a profile (state: allocated). kInvalidArgument for an order above kMaxOrder.
absl::StatusOr<PageFilter> FromProto(const v1::GetProfileRequest& request);

void ToProto(const PageReport& report, const SymbolTable& symbols, v1::GetPageResponse* out);

// The machine's part of GetStats (the ingest counters are the server's to add).
void MachineStatsToProto(const Machine& m, v1::Stats* out);

void ToProto(const SortReport& report, v1::SortResponse* out);

}  // namespace pageowner::wire

#endif  // PAGEOWNER_WIRE_CONVERT_H_
