// PageOwnerService: the unary handlers (find, call the core, convert) and the drain. The
// streams' reactors live in ingest_reactor.cc and list_pages_reactor.cc.
#include "server/service.h"

#include <malloc.h>

#include <chrono>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/page_owner_sort.h"
#include "core/queries.h"
#include "core/status_macros.h"
#include "server/pprof.h"
#include "server/reactor_util.h"
#include "wire/convert.h"
#include "wire/status.h"

namespace pageowner::server {
namespace {

// The daemon's clock for SetTracking: ns since the host booted (CLOCK_MONOTONIC), the closest
// user-space match for the kernel's local_clock().
uint64_t NowNs() {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                   std::chrono::steady_clock::now().time_since_epoch())
                                   .count());
}

// Finishes a unary call with `status`.
grpc::ServerUnaryReactor* Reply(grpc::CallbackServerContext* context, const absl::Status& status) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  reactor->Finish(wire::ToGrpcStatus(status));
  return reactor;
}

}  // namespace

const grpc::Status& ShuttingDown() {
  static const grpc::Status* const kStatus =
      new grpc::Status(grpc::StatusCode::UNAVAILABLE, "pageownerd is shutting down");
  return *kStatus;
}

PageOwnerService::PageOwnerService(SharedMachine* machine, const ServiceOptions& options)
    : machine_(machine), options_(options), writer_(machine, &counters_) {}

PageOwnerService::~PageOwnerService() = default;

void PageOwnerService::BeginRecovery(const std::string& data_dir) {
  recovering_dir_ = data_dir;
  recovering_.store(true, std::memory_order_release);
}

absl::Status PageOwnerService::RecoveringStatus() const {
  return absl::UnavailableError(absl::StrCat("pageownerd is recovering its state from ",
                                             recovering_dir_,
                                             " (snapshot and log); retry when it is serving"));
}

// ---------------------------------------------------------------------------------------------
// Shutdown

void PageOwnerService::BeginDrain() {
  std::vector<IngestReactor*> open;
  {
    absl::MutexLock lock(&mu_);
    draining_ = true;
    open = RefIngestStreamsLocked();
    DrainListingsLocked();
  }
  DrainIngestStreams(open);
}

bool PageOwnerService::AwaitDrained(absl::Time deadline) {
  absl::MutexLock lock(&mu_);
  return mu_.AwaitWithDeadline(absl::Condition(
                                   +[](PageOwnerService* s) ABSL_EXCLUSIVE_LOCKS_REQUIRED(s->mu_) {
                                     return s->open_.empty() && s->listings_.empty();
                                   },
                                   this),
                               deadline);
}

// ---------------------------------------------------------------------------------------------
// Unary queries

grpc::ServerUnaryReactor* PageOwnerService::GetPage(grpc::CallbackServerContext* context,
                                                    const v1::GetPageRequest* request,
                                                    v1::GetPageResponse* response) {
  if (recovering()) return Reply(context, RecoveringStatus());
  return Reply(context, machine_->Read([&](const Machine& m) -> absl::Status {
    PO_ASSIGN_OR_RETURN(const PageReport report, QueryPage(m, Pfn(request->pfn())));
    wire::ToProto(report, m.symbols(), response);
    return absl::OkStatus();
  }));
}

grpc::ServerUnaryReactor* PageOwnerService::GetStack(grpc::CallbackServerContext* context,
                                                     const v1::GetStackRequest* request,
                                                     v1::Stack* response) {
  if (recovering()) return Reply(context, RecoveringStatus());
  const StackHandle handle(request->handle());
  return Reply(context, machine_->Read([&](const Machine& m) -> absl::Status {
    if (!handle.valid() || !m.depot().Contains(handle)) {
      return absl::NotFoundError(
          absl::StrCat("stack handle ", handle.raw(), " names no stack in the depot"));
    }
    wire::ToProto(m.depot().Usage(handle), m.symbols(), response);
    return absl::OkStatus();
  }));
}

grpc::ServerUnaryReactor* PageOwnerService::ListStacks(grpc::CallbackServerContext* context,
                                                       const v1::ListStacksRequest* request,
                                                       v1::ListStacksResponse* response) {
  if (recovering()) return Reply(context, RecoveringStatus());
  const absl::StatusOr<StackOrder> order = wire::StackOrderFromProto(request->sort());
  if (!order.ok()) return Reply(context, order.status());
  // Usage values are copied under the lock and sorted outside it; frames stay valid for the
  // depot's lifetime.
  std::vector<StackUsage> stacks = machine_->Read([&](const Machine& m) {
    return request->include_empty() ? AllStacks(m.depot())
                                    : StacksOwning(m.depot(), request->threshold());
  });
  OrderStacks(*order, request->top(), &stacks);
  int64_t total = 0;
  for (const StackUsage& s : stacks) {
    wire::ToProto(s, machine_->symbols(), response->add_stacks());
    total += s.pages;
  }
  response->set_total_pages(total);
  return Reply(context, absl::OkStatus());
}

grpc::ServerUnaryReactor* PageOwnerService::GetStats(grpc::CallbackServerContext* context,
                                                     const v1::GetStatsRequest* /*request*/,
                                                     v1::Stats* response) {
  if (recovering()) return Reply(context, RecoveringStatus());
  machine_->Read([&](const Machine& m) { wire::MachineStatsToProto(m, response); });
  response->set_rejected(response->rejected() +
                         counters_.events_invalid.load(std::memory_order_relaxed));
  response->set_batches(counters_.batches.load(std::memory_order_relaxed));
  response->set_batches_rejected(counters_.batches_rejected.load(std::memory_order_relaxed));
  response->set_streams_open(counters_.streams_open.load(std::memory_order_relaxed));
  response->set_max_batch_events(options_.max_batch_events);
  return Reply(context, absl::OkStatus());
}

grpc::ServerUnaryReactor* PageOwnerService::Reset(grpc::CallbackServerContext* context,
                                                  const v1::ResetRequest* /*request*/,
                                                  v1::ResetResponse* response) {
  if (recovering()) return Reply(context, RecoveringStatus());
  if (writer_.logging()) {
    return Reply(context, absl::FailedPreconditionError(
                              "reset is refused while a write-ahead log is kept (--data_dir): "
                              "replaying the log would bring the old state back"));
  }
  if (const uint64_t open = counters_.streams_open.load(std::memory_order_relaxed); open > 0) {
    return Reply(context, absl::FailedPreconditionError(absl::StrCat(
                              open, " ingest streams are open; reset once they have ended")));
  }
  const SharedMachine::ResetResult before = machine_->Reset();
  response->set_allocated_pages(before.allocated_pages.raw());
  response->set_depot_stacks(before.depot_stacks);
  response->set_total_pages(machine_->total_pages().raw());
  response->set_allocated_pages_after(before.allocated_pages_after.raw());
  return Reply(context, absl::OkStatus());
}

grpc::ServerUnaryReactor* PageOwnerService::Snapshot(grpc::CallbackServerContext* context,
                                                     const v1::SnapshotRequest* /*request*/,
                                                     v1::SnapshotResponse* response) {
  if (recovering()) return Reply(context, RecoveringStatus());
  if (snapshotter_ == nullptr) {
    return Reply(context, absl::FailedPreconditionError(
                              "no snapshot without a data directory: start pageownerd with "
                              "--data_dir to keep its state"));
  }
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  snapshotter_->Request([reactor, response](absl::StatusOr<SnapshotResult> r) {
    if (r.ok()) {
      response->set_path(r->path);
      response->set_bytes(r->bytes);
      response->set_log_seq(r->seq);
      response->set_duration_seconds(absl::ToDoubleSeconds(r->duration));
      response->set_stall_seconds(absl::ToDoubleSeconds(r->stall));
      response->set_segments_deleted(r->segments_deleted);
      response->set_snapshots_deleted(r->snapshots_deleted);
    }
    reactor->Finish(wire::ToGrpcStatus(r.status()));
  });
  return reactor;
}

grpc::ServerUnaryReactor* PageOwnerService::SetTracking(grpc::CallbackServerContext* context,
                                                        const v1::SetTrackingRequest* request,
                                                        v1::SetTrackingResponse* response) {
  if (recovering()) return Reply(context, RecoveringStatus());
  const uint64_t ts = request->ts_ns() != 0 ? request->ts_ns() : NowNs();
  if (writer_.logging()) {
    // Logged in the batches' order, answered once durable.
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    writer_.SubmitTracking(request->on(), ts,
                           [reactor, response](absl::Status s, bool on, uint64_t early) {
                             response->set_tracking(on);
                             response->set_early_pages(early);
                             reactor->Finish(wire::ToGrpcStatus(s));
                           });
    return reactor;
  }
  machine_->Write([&](Machine& m) {
    const uint64_t before = m.counters().early_handle_pages;
    m.SetTracking(request->on(), ts);
    response->set_tracking(m.tracking());
    response->set_early_pages(m.counters().early_handle_pages - before);
  });
  return Reply(context, absl::OkStatus());
}

grpc::ServerUnaryReactor* PageOwnerService::GetProfile(grpc::CallbackServerContext* context,
                                                       const v1::GetProfileRequest* request,
                                                       v1::GetProfileResponse* response) {
  if (recovering()) return Reply(context, RecoveringStatus());
  const absl::StatusOr<PageFilter> filter = wire::FromProto(*request);
  if (!filter.ok()) return Reply(context, filter.status());
  response->set_profile(BuildPprof(*machine_, *filter));
  return Reply(context, absl::OkStatus());
}

grpc::ServerUnaryReactor* PageOwnerService::SortPages(grpc::CallbackServerContext* context,
                                                      const v1::SortRequest* request,
                                                      v1::SortResponse* response) {
  if (recovering()) return Reply(context, RecoveringStatus());
  return Reply(context, DoSortPages(*request, response));
}

absl::Status PageOwnerService::DoSortPages(const v1::SortRequest& request,
                                           v1::SortResponse* response) {
  const std::vector<std::string> args(request.args().begin(), request.args().end());
  PO_ASSIGN_OR_RETURN(SortOptions options, ParseSortArgs(args));
  if (!options.operands.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("page_owner_sort operands are not taken here (the daemon's blocks are the "
                     "input): ",
                     options.operands.front()));
  }
  PO_ASSIGN_OR_RETURN(const DumpFormat format, wire::DumpFormatFromProto(request.format()));
  // The blocks are rendered a slice at a time under the reader lock, as ListPages reads them,
  // so that ingest waits for one slice, not for the whole machine.
  constexpr int kBlocksPerHold = 16384;
  {
    PageOwnerSorter sorter;
    std::string text;
    Pfn next(0);
    for (bool done = false; !done;) {
      text.clear();
      done = machine_->Read([&](const Machine& m) {
        return RenderOwnedBlocks(m, format, kBlocksPerHold, &next, &text);
      });
      sorter.AddText(text);
    }
    wire::ToProto(sorter.Report(options), response);
  }
  // The sorter's blocks (~380 MB at the peak of a sort of a full 4 GiB machine) are freed now:
  // give their pages back rather than keep them in malloc's arenas until the next sort.
  malloc_trim(0);
  return absl::OkStatus();
}

}  // namespace pageowner::server
