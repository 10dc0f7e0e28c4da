// A seeded randomized run of mixed alloc, free and migrate events, good and bad, checked after
// every step against a plain model of what was applied.
#include <cstdint>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/invariants.h"
#include "core/machine.h"
#include "gtest/gtest.h"

namespace pageowner {
namespace {

constexpr uint64_t kPages = 8192;
constexpr int kSteps = 100000;
constexpr int kStacks = 400;

struct ModelBlock {
  unsigned order;
  uint32_t gfp;
  std::vector<uint64_t> frames;
  int32_t pid, tgid;
  std::string comm;
  uint64_t ts;
  MigrateReason reason = MigrateReason::kNone;
};

class RandomRun {
 public:
  explicit RandomRun(uint64_t seed) : rng_(seed), m_(Options()) {
    for (int i = 0; i < kStacks; ++i) {
      // Depths 1..20: the deepest are cut to 16 by the depot.
      std::vector<uint64_t> s(1 + i % 20);
      for (size_t k = 0; k < s.size(); ++k) s[k] = 0xffffffff81000000ULL + i * 0x1000 + k * 8;
      stacks_.push_back(s);
    }
    owner_.assign(kPages, kFree);
    SyncPools();
  }

  void Run() {
    for (step_ = 0; step_ < kSteps; ++step_) {
      const int dice = Uniform(0, 99);
      if (dice < 10) {
        BadEvent();
      } else if (blocks_.empty() || (dice < 55 && allocated_ < kPages * 8 / 10)) {
        AllocEvent();
      } else if (dice < 85) {
        FreeEvent();
      } else {
        MigrateEvent();
      }
      CheckEveryStep();
      if (step_ % 5000 == 0) CheckEverything();
      if (::testing::Test::HasFatalFailure()) return;
    }
    CheckEverything();
  }

  const Machine& machine() const { return m_; }

 private:
  static constexpr int64_t kFree = -1;
  static constexpr int64_t kPool = -2;

  static MachineOptions Options() {
    MachineOptions o;
    o.pages = PageCount(kPages);
    o.depot_max_pools = 2;  // small: later new stacks get the failure handle
    return o;
  }
  int Uniform(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng_); }
  unsigned RandomOrder() {
    const int d = Uniform(0, 99);
    return d < 70 ? 0 : d < 85 ? 1 : d < 95 ? 2 : d < 99 ? 3 : static_cast<unsigned>(Uniform(4, 6));
  }
  uint64_t RandomHead() {
    auto it = blocks_.begin();
    std::advance(it, Uniform(0, static_cast<int>(blocks_.size()) - 1));
    return it->first;
  }

  // The pages the depot took since the last look belong to no event.
  void SyncPools() {
    const auto pools = m_.depot_pool_pfns();
    for (; pools_seen_ < pools.size(); ++pools_seen_) {
      for (uint64_t i = 0; i < 4; ++i) {
        ASSERT_EQ(owner_[pools[pools_seen_].raw() + i], kFree);
        owner_[pools[pools_seen_].raw() + i] = kPool;
      }
      allocated_ += 4;
    }
  }

  void Place(uint64_t head, const ModelBlock& b) {
    for (uint64_t i = 0; i < (uint64_t{1} << b.order); ++i) {
      ASSERT_EQ(owner_[head + i], kFree) << "page " << head + i << " in two blocks, step " << step_;
      owner_[head + i] = static_cast<int64_t>(head);
    }
    allocated_ += uint64_t{1} << b.order;
    blocks_[head] = b;
  }
  void Remove(uint64_t head) {
    const unsigned order = blocks_.at(head).order;
    for (uint64_t i = 0; i < (uint64_t{1} << order); ++i) owner_[head + i] = kFree;
    allocated_ -= uint64_t{1} << order;
    blocks_.erase(head);
  }

  bool RangeFree(uint64_t head, unsigned order) const {
    for (uint64_t i = 0; i < (uint64_t{1} << order); ++i) {
      if (owner_[head + i] != kFree) return false;
    }
    return true;
  }

  void AllocEvent() {
    ModelBlock b;
    b.order = RandomOrder();
    static constexpr uint32_t kMasks[] = {0xcc0, 0x140cca, 0x52cd0, 0xd2cc0, 0x820};
    b.gfp = kMasks[Uniform(0, 4)];
    // Skewed popularity: low stack indices are far more common.
    const int s =
        std::min(kStacks - 1, static_cast<int>(std::exponential_distribution<>(0.02)(rng_)));
    b.frames = stacks_[s];
    b.pid = Uniform(1, 50);
    b.tgid = b.pid;
    b.comm = absl::StrCat("task-", b.pid);
    b.ts = ++ts_;
    ::pageowner::AllocEvent e{.order = Order(b.order),
                              .gfp_mask = b.gfp,
                              .frames = b.frames,
                              .pid = b.pid,
                              .tgid = b.tgid,
                              .comm = b.comm,
                              .ts_ns = b.ts};
    std::optional<uint64_t> at;
    if (Uniform(0, 3) == 0) {
      at = static_cast<uint64_t>(Uniform(0, kPages - 1)) & ~((uint64_t{1} << b.order) - 1);
      e.pfn = Pfn(*at);
    }
    const bool expect_ok = !at.has_value() || RangeFree(*at, b.order);
    absl::StatusOr<EventResult> r = m_.Alloc(e);
    if (!r.ok()) {
      ASSERT_TRUE(at.has_value() ? !expect_ok : true) << r.status() << " step " << step_;
      ASSERT_EQ(r.status().code(), at.has_value() ? absl::StatusCode::kAlreadyExists
                                                  : absl::StatusCode::kResourceExhausted);
      return;
    }
    ASSERT_TRUE(expect_ok) << "allocated over a used range at step " << step_;
    if (at.has_value()) {
      ASSERT_EQ(r->pfn.raw(), *at);
    }
    SyncPools();
    Place(r->pfn.raw(), b);
    CheckBlock(r->pfn.raw(), r->handle);
  }

  void FreeEvent() {
    const uint64_t head = RandomHead();
    const ModelBlock b = blocks_.at(head);
    const auto& f = stacks_[Uniform(0, 9)];
    const int32_t pid = Uniform(1, 50);
    const uint64_t ts = ++ts_;
    absl::StatusOr<EventResult> r = m_.Free({.pfn = Pfn(head),
                                             .order = Order(b.order),
                                             .frames = f,
                                             .pid = pid,
                                             .tgid = pid + 1,
                                             .ts_ns = ts});
    ASSERT_TRUE(r.ok()) << r.status() << " step " << step_;
    Remove(head);
    SyncPools();
    const PageOwner p = *m_.PageRecord(Pfn(head));
    ASSERT_FALSE(p.allocated);
    ASSERT_TRUE(p.owner);
    ASSERT_EQ(p.free_pid, pid);
    ASSERT_EQ(p.free_tgid, pid + 1);
    ASSERT_EQ(p.free_ts_ns, ts);
    ASSERT_EQ(p.ts_ns, b.ts);  // the last owner stays
    ASSERT_EQ(p.free_handle, r->handle);
  }

  void MigrateEvent() {
    const uint64_t head = RandomHead();
    ModelBlock b = blocks_.at(head);
    const auto reason = static_cast<MigrateReason>(Uniform(0, kNumMigrateReasons - 1));
    ::pageowner::MigrateEvent e{.pfn = Pfn(head), .reason = reason, .ts_ns = ++ts_};
    std::optional<uint64_t> target;
    if (Uniform(0, 1) == 0) {
      target = static_cast<uint64_t>(Uniform(0, kPages - 1)) & ~((uint64_t{1} << b.order) - 1);
      e.target = Pfn(*target);
    }
    const bool expect_ok = !target.has_value() || RangeFree(*target, b.order);
    absl::StatusOr<EventResult> r = m_.Migrate(e);
    if (!r.ok()) {
      ASSERT_TRUE(target.has_value() ? !expect_ok : true) << r.status() << " step " << step_;
      ASSERT_EQ(r.status().code(), target.has_value() ? absl::StatusCode::kAlreadyExists
                                                      : absl::StatusCode::kResourceExhausted);
      return;
    }
    ASSERT_TRUE(expect_ok) << "migrated over a used range at step " << step_;
    Remove(head);
    b.reason = reason;
    Place(r->pfn.raw(), b);
    SyncPools();
    CheckBlock(r->pfn.raw(), r->handle);
    ASSERT_FALSE(m_.PageRecord(Pfn(head))->allocated);
  }

  // A bad event: returns its exact code and changes nothing.
  void BadEvent() {
    const uint64_t free_before = m_.allocator().free_pages().raw();
    const uint64_t tracked_before = m_.tracked_pages().raw();
    const uint64_t stacks_before = m_.depot().stats().persistent_count;
    const MachineCounters c = m_.counters();
    const auto& frames = stacks_[0];
    absl::StatusCode want;
    absl::Status got;
    uint64_t pfn = static_cast<uint64_t>(Uniform(0, kPages - 1));
    switch (Uniform(0, 6)) {
      case 0:
        want = absl::StatusCode::kInvalidArgument;
        got = m_.Alloc({.order = Order(11 + Uniform(0, 20)), .frames = frames}).status();
        break;
      case 1:
        want = absl::StatusCode::kOutOfRange;
        pfn = kPages + Uniform(0, 100000);
        got = m_.Alloc({.order = Order(0), .frames = frames, .pfn = Pfn(pfn)}).status();
        break;
      case 2: {  // free of a free page or a tail page or the wrong order
        want = absl::StatusCode::kFailedPrecondition;
        if (owner_[pfn] == kFree) {
          got = m_.Free({.pfn = Pfn(pfn), .order = Order(0)}).status();
        } else if (owner_[pfn] >= 0 && static_cast<uint64_t>(owner_[pfn]) != pfn) {
          got = m_.Free({.pfn = Pfn(pfn), .order = Order(0)}).status();
        } else if (owner_[pfn] >= 0) {
          const unsigned o = blocks_.at(pfn).order;
          got = m_.Free({.pfn = Pfn(pfn), .order = Order(o == 0 ? 1 : o - 1)}).status();
        } else {
          got = m_.Free({.pfn = Pfn(pfn), .order = Order(0)}).status();  // a pool: order 2
        }
        break;
      }
      case 3:
        want = absl::StatusCode::kOutOfRange;
        got = m_.Free({.pfn = Pfn(kPages + Uniform(0, 10)), .order = Order(0)}).status();
        break;
      case 4:
        want = absl::StatusCode::kInvalidArgument;
        got = m_.Migrate({.pfn = Pfn(pfn), .reason = MigrateReason::kNone}).status();
        break;
      case 5: {  // alloc exactly over an allocated page
        if (blocks_.empty()) return;
        want = absl::StatusCode::kAlreadyExists;
        const uint64_t head = RandomHead();
        got = m_.Alloc({.order = Order(blocks_.at(head).order), .frames = frames, .pfn = Pfn(head)})
                  .status();
        break;
      }
      default:  // migrate a free page
        if (owner_[pfn] != kFree) return;
        want = absl::StatusCode::kFailedPrecondition;
        got = m_.Migrate({.pfn = Pfn(pfn)}).status();
        break;
    }
    ASSERT_EQ(got.code(), want) << got << " step " << step_;
    ASSERT_EQ(m_.allocator().free_pages().raw(), free_before);
    ASSERT_EQ(m_.tracked_pages().raw(), tracked_before);
    ASSERT_EQ(m_.depot().stats().persistent_count, stacks_before);
    ASSERT_EQ(m_.counters().allocs, c.allocs);
    ASSERT_EQ(m_.counters().frees, c.frees);
    ASSERT_EQ(m_.counters().migrates, c.migrates);
    ++bad_;
  }

  // The block's record is what was applied.
  void CheckBlock(uint64_t head, StackHandle got_handle) {
    const ModelBlock& b = blocks_.at(head);
    const PageOwner p = *m_.BlockOwner(Pfn(head + (uint64_t{1} << b.order) - 1));
    ASSERT_EQ(p.pfn.raw(), head);
    ASSERT_EQ(p.order.raw(), b.order);
    ASSERT_EQ(p.gfp_mask, b.gfp);
    ASSERT_EQ(p.pid, b.pid);
    ASSERT_EQ(p.tgid, b.tgid);
    ASSERT_EQ(p.comm, b.comm);
    ASSERT_EQ(p.ts_ns, b.ts);
    ASSERT_EQ(p.last_migrate_reason, b.reason);
    ASSERT_TRUE(p.allocated);
    ASSERT_EQ(p.handle, got_handle);
    const StackHandle stored = m_.depot().Find(b.frames);
    if (stored.valid()) {
      ASSERT_EQ(p.handle, stored);
    } else {
      ASSERT_EQ(p.handle, m_.failure_handle());  // the depot was full when it came
    }
  }

  void CheckEveryStep() {
    ASSERT_EQ(m_.allocator().free_pages().raw() + m_.allocator().allocated_pages().raw(), kPages);
    ASSERT_EQ(m_.allocator().allocated_pages().raw(), allocated_) << "step " << step_;
    ASSERT_EQ(m_.tracked_pages().raw(), allocated_);
    int64_t sum = 0;
    // Every stack: the early stack owns pages but is not on the owner list.
    m_.depot().ForEachStack([&](const StackUsage& s) { sum += s.pages; });
    ASSERT_EQ(sum, static_cast<int64_t>(allocated_)) << "step " << step_;
  }

  void CheckEverything() {
    ASSERT_TRUE(m_.allocator().CheckInvariants().ok()) << m_.allocator().CheckInvariants();
    ASSERT_TRUE(CheckMachineInvariants(m_).ok()) << CheckMachineInvariants(m_);
    std::map<uint32_t, int64_t> want_pages;
    for (uint64_t pfn = 0; pfn < kPages; ++pfn) {
      const std::optional<AllocatedBlock> blk = m_.allocator().BlockContaining(Pfn(pfn));
      if (owner_[pfn] == kFree) {
        ASSERT_FALSE(blk.has_value()) << pfn;
        continue;
      }
      ASSERT_TRUE(blk.has_value()) << pfn;
      const PageOwner rec = *m_.PageRecord(Pfn(pfn));
      ++want_pages[rec.handle.raw()];
      if (owner_[pfn] == kPool) {
        ASSERT_EQ(blk->order.raw(), 2u);
        ASSERT_TRUE(rec.handle == m_.dummy_handle() || rec.handle == m_.early_handle());
      } else {
        ASSERT_EQ(blk->head.raw(), static_cast<uint64_t>(owner_[pfn]));
        ASSERT_EQ(blk->order.raw(), blocks_.at(blk->head.raw()).order);
      }
    }
    m_.depot().ForEachStack([&](const StackUsage& s) {
      const auto it = want_pages.find(s.handle.raw());
      ASSERT_EQ(s.pages, it == want_pages.end() ? 0 : it->second) << s.handle.raw();
    });
  }

  std::mt19937_64 rng_;
  Machine m_;
  std::vector<std::vector<uint64_t>> stacks_;
  std::vector<int64_t> owner_;  // head of the owning block, kFree or kPool
  std::map<uint64_t, ModelBlock> blocks_;
  uint64_t allocated_ = 0;
  size_t pools_seen_ = 0;
  uint64_t ts_ = 0;
  int step_ = 0;
  int bad_ = 0;

 public:
  int bad() const { return bad_; }
};

TEST(MachineRandomTest, HundredThousandMixedEventsKeepEveryInvariant) {
  RandomRun run(20261126);
  run.Run();
  const Machine& m = run.machine();
  // The run exercised every path it claims to.
  EXPECT_GT(run.bad(), 5000);
  EXPECT_GT(m.counters().allocs, 20000u);
  EXPECT_GT(m.counters().frees, 15000u);
  EXPECT_GT(m.counters().migrates, 5000u);
  EXPECT_GT(m.counters().failure_handle_uses, 0u);
  EXPECT_EQ(m.counters().dummy_handle_uses, 1u);  // the second pool
  EXPECT_GT(m.depot().stats().truncated, 0u);
  EXPECT_GT(m.allocator().fallback_steals(), 0u);
}

}  // namespace
}  // namespace pageowner
