#include "core/workload.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/kernel_flags.h"

namespace pageowner {
namespace {

// Made-up kernel text: function n at kTextBase + n * kFuncSpan, each kFuncSpan bytes long.
constexpr uint64_t kTextBase = 0xffffffff81000000ULL;
constexpr uint64_t kFuncSpan = 0x400;
constexpr uint32_t kFreeStacks = 16;

// The masks a busy machine uses most, with their rough shares.
constexpr uint32_t kMasks[] = {kGfpHighuserMovable | kGfpComp, kGfpKernel | kGfpComp | kGfpZero,
                               kGfpKernel | kGfpNowarn | kGfpNoretry | kGfpComp, kGfpAtomic,
                               kGfpKernel | kGfpReclaimable | kGfpComp};
constexpr double kMaskShare[] = {0.5, 0.25, 0.12, 0.05, 0.08};

uint64_t Ip(uint64_t func, uint64_t offset) { return kTextBase + func * kFuncSpan + offset; }

}  // namespace

Workload::Workload(const WorkloadOptions& options) : options_(options), rng_(options.seed) {
  // Zipf-like popularity: stack r is chosen with weight 1 / (r + 1).
  std::vector<double> weights(options.stacks);
  for (uint32_t r = 0; r < options.stacks; ++r) weights[r] = 1.0 / (r + 1);
  popularity_ = std::discrete_distribution<uint32_t>(weights.begin(), weights.end());
  // Stacks share their innermost frames (the allocator) and differ below, like real ones.
  std::uniform_int_distribution<uint64_t> func(16, 200000);
  std::uniform_int_distribution<uint64_t> off(0x10, kFuncSpan - 0x10);
  std::mt19937_64 stack_rng(options.stack_seed);
  std::mt19937_64& frames_rng = options.stack_seed != 0 ? stack_rng : rng_;
  for (uint32_t s = 0; s < options.stacks + kFreeStacks; ++s) {
    std::vector<uint64_t> f;
    const bool free_stack = s >= options.stacks;
    f.push_back(Ip(free_stack ? 8 : 0, 0x21a));
    f.push_back(Ip(free_stack ? 9 : 1, 0x198));
    f.push_back(Ip(2 + s % 6, 0x8f));
    while (static_cast<int>(f.size()) < options.depth) {
      f.push_back(Ip(func(frames_rng), off(frames_rng)));
    }
    f.resize(options.depth);
    stacks_.push_back(std::move(f));
  }
  for (uint32_t t = 0; t < options.tasks; ++t) {
    const int32_t pid = 100 + static_cast<int32_t>(t) * 7;
    tasks_.push_back(WorkloadTask{pid, pid - static_cast<int32_t>(t % 3),
                                  absl::StrCat(t % 4 == 0 ? "kworker/" : "app-", t)});
  }
}

std::string Workload::SymbolName(uint64_t ip) {
  const uint64_t func = (ip - kTextBase) / kFuncSpan;
  const uint64_t offset = (ip - kTextBase) % kFuncSpan;
  return absl::StrFormat("func_%d+0x%x/0x%x", func, offset, kFuncSpan);
}

WorkloadEvent Workload::Next() {
  WorkloadEvent e;
  e.ts_ns = (ts_ += 1 + rng_() % 2000);
  e.task = static_cast<uint32_t>(rng_() % tasks_.size());
  const double used = static_cast<double>(allocated_pages()) / static_cast<double>(options_.pages);
  const double u = std::uniform_real_distribution<double>(0, 1)(rng_);
  // Below the fill level allocations dominate, above it frees do; near it they balance.
  double p_alloc = used < options_.fill - band() ? 0.8 : used > options_.fill + band() ? 0.2 : 0.5;
  if (live_.empty()) p_alloc = 1;
  if (u >= p_alloc && !live_.empty()) {
    const size_t i = rng_() % live_.size();
    const Live b = live_[i];
    live_[i] = live_.back();
    live_.pop_back();
    live_pages_ -= uint64_t{1} << b.order;
    pending_pages_ += uint64_t{1} << b.order;
    e.pfn = Pfn(b.pfn);
    e.order = Order(b.order);
    const bool migrate = std::uniform_real_distribution<double>(0, 1)(rng_) <
                         options_.migrate_ratio / (1 - p_alloc + 1e-9);
    if (migrate) {
      e.kind = WorkloadKind::kMigrate;
      e.reason = (rng_() % 4 == 0) ? MigrateReason::kNumaMisplaced : MigrateReason::kCompaction;
      e.stack = options_.stacks + static_cast<uint32_t>(rng_() % kFreeStacks);
    } else {
      e.kind = WorkloadKind::kFree;
      e.stack = options_.stacks + static_cast<uint32_t>(rng_() % kFreeStacks);
      pending_free_pages_ += uint64_t{1} << b.order;
    }
    return e;
  }
  e.kind = WorkloadKind::kAlloc;
  const uint64_t r = rng_() % 100;
  e.order = Order(r < 85 ? 0 : r < 93 ? 1 : r < 98 ? 2 : 3);
  e.stack = popularity_(rng_);
  // The stack decides the mask, as a call site does.
  double acc = 0;
  const double pick = static_cast<double>((e.stack * 2654435761u) % 1000) / 1000.0;
  e.gfp_mask = kMasks[0];
  for (size_t i = 0; i < std::size(kMasks); ++i) {
    acc += kMaskShare[i];
    if (pick < acc) {
      e.gfp_mask = kMasks[i];
      break;
    }
  }
  pending_pages_ += e.order.pages().raw();
  return e;
}

std::vector<std::pair<Pfn, Order>> Workload::TakeLive() {
  std::vector<std::pair<Pfn, Order>> out;
  out.reserve(live_.size());
  for (const Live& b : live_) out.emplace_back(Pfn(b.pfn), Order(b.order));
  live_.clear();
  live_pages_ = 0;
  return out;
}

void Workload::Adopt(Pfn head, Order order) {
  live_.push_back(Live{head.raw(), static_cast<uint8_t>(order.raw())});
  live_pages_ += order.pages().raw();
}

void Workload::Observe(const WorkloadEvent& e, bool ok, Pfn result_pfn) {
  const uint64_t pages = e.order.pages().raw();
  pending_pages_ -= pages;
  const auto order = static_cast<uint8_t>(e.order.raw());
  switch (e.kind) {
    case WorkloadKind::kAlloc:
      if (ok) {
        live_.push_back(Live{result_pfn.raw(), order});
        live_pages_ += pages;
      }
      break;
    case WorkloadKind::kFree:
      pending_free_pages_ -= pages;
      if (!ok) {  // still allocated
        live_.push_back(Live{e.pfn.raw(), order});
        live_pages_ += pages;
      }
      break;
    case WorkloadKind::kMigrate:
      live_.push_back(Live{ok ? result_pfn.raw() : e.pfn.raw(), order});
      live_pages_ += pages;
      break;
  }
}

Event Workload::ToMachineEvent(const WorkloadEvent& e) const {
  const WorkloadTask& t = tasks_[e.task];
  switch (e.kind) {
    case WorkloadKind::kAlloc:
      return AllocEvent{.order = e.order,
                        .gfp_mask = e.gfp_mask,
                        .frames = stacks_[e.stack],
                        .pid = t.pid,
                        .tgid = t.tgid,
                        .comm = t.comm,
                        .ts_ns = e.ts_ns,
                        .pfn = std::nullopt};
    case WorkloadKind::kFree:
      return FreeEvent{.pfn = e.pfn,
                       .order = e.order,
                       .frames = stacks_[e.stack],
                       .pid = t.pid,
                       .tgid = t.tgid,
                       .ts_ns = e.ts_ns};
    case WorkloadKind::kMigrate:
      break;
  }
  return MigrateEvent{.pfn = e.pfn,
                      .reason = e.reason,
                      .target = std::nullopt,
                      .frames = stacks_[e.stack],
                      .pid = t.pid,
                      .tgid = t.tgid,
                      .ts_ns = e.ts_ns};
}

}  // namespace pageowner
