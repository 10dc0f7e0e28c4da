// Machine::SaveState / LoadState: a seeded random machine (the workload's events, imports with
// printed extras, trusted repairs, tracking switched off and on) is saved and loaded, and the
// copy must be the same machine: the same dump, stacks, stats and bytes when saved again, the
// invariants hold, and the same later events give the same results on both.
#include "core/snapshot.h"

#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/invariants.h"
#include "core/machine.h"
#include "core/reports.h"
#include "core/workload.h"
#include "gtest/gtest.h"

namespace pageowner {
namespace {

struct Config {
  const char* name;
  uint64_t pages;
  uint32_t depot_max_pools;
  int events;
};

std::string Save(const Machine& m) {
  StringSink sink;
  SnapshotWriter w(&sink);
  m.SaveState(w);
  EXPECT_TRUE(w.Finish().ok());
  EXPECT_EQ(w.bytes(), sink.data().size());
  return sink.data();
}

absl::StatusOr<std::unique_ptr<Machine>> Load(const MachineOptions& o, std::string_view bytes) {
  StringSource source(bytes);
  SnapshotReader r(&source);
  return Machine::LoadState(o, r);
}

// Everything a client can see of a machine, as text.
std::string Fingerprint(const Machine& m) {
  std::string out = PageOwnerText(m, DumpFormat::kToday);
  out += PageOwnerText(m, DumpFormat::k2016);
  out += ShowStacksText(m, 0, StacksView::kStacksHandles);
  out += ShowStacksText(m, 0, StacksView::kHandles);
  out += StackDepotStatsText(m.depot().stats());
  out += MixedBlocksText(m.MixedBlocks());
  const MachineCounters& c = m.counters();
  absl::StrAppend(&out, "counters ", c.allocs, " ", c.frees, " ", c.migrates, " ", c.rejected, " ",
                  c.dummy_handle_uses, " ", c.failure_handle_uses, " ", c.early_handle_pages, " ",
                  c.repaired_allocs, " ", c.repaired_frees, " ", c.ignored_frees, " ",
                  c.implied_frees, " ", c.implied_freed_pages, " ", c.split_blocks, "\n");
  absl::StrAppend(&out, "reserved ", m.reserved_pages().raw(), "\n");
  const MachineMemory mem = m.MemoryUsage();
  absl::StrAppend(&out, "memory ", mem.records, " ", mem.allocator, " ", mem.depot, " ",
                  mem.contexts, " ", mem.symbols, "\n");
  absl::StrAppend(&out, "tracked ", m.tracked_pages().raw(), " tracking ", m.tracking(),
                  " handles ", m.dummy_handle().raw(), " ", m.failure_handle().raw(), " ",
                  m.early_handle().raw(), " steals ", m.allocator().fallback_steals(), " free ",
                  m.allocator().free_pages().raw(), " symbols ", m.symbols().size(), " ",
                  m.symbols().conflicts(), "\n");
  for (unsigned k = 0; k <= kMaxOrder; ++k) {
    for (MigrateType mt :
         {MigrateType::kUnmovable, MigrateType::kMovable, MigrateType::kReclaimable}) {
      absl::StrAppend(&out, m.allocator().FreeBlockCount(Order(k), mt), ",",
                      m.allocator().AllocatedBlockCount(Order(k), mt), " ");
    }
  }
  for (Pfn p : m.depot_pool_pfns()) absl::StrAppend(&out, "pool ", p.raw(), "\n");
  for (uint64_t p = 0; p < m.total_pages().raw(); p += 97) {
    absl::StatusOr<std::string> d = DumpPageOwner(m, Pfn(p));
    out += d.ok() ? *d : std::string(d.status().message());
  }
  return out;
}

// Applies `n` events of the workload, and every 500th step one of the rarer kinds: an import
// with printed extras, a trusted allocation over whatever is there, a trusted free, tracking
// switched off and on again.
class Driver {
 public:
  Driver(uint64_t pages, uint64_t seed)
      : workload_(WorkloadOptions{.pages = pages, .stacks = 300, .fill = 0.8, .seed = seed}),
        rng_(seed) {}

  // Returns every result, in order, as text (to compare two machines step by step).
  std::string Run(Machine& m, int n) {
    std::string results;
    for (int i = 0; i < n; ++i) {
      EventResult r;
      if (i % 500 == 250) {
        r = Rare(m, i / 500);
      } else {
        const WorkloadEvent e = workload_.Next();
        r = m.Apply(workload_.ToMachineEvent(e));
        workload_.Observe(e, r.status.ok(), r.pfn);
      }
      absl::StrAppend(&results, i, ":", r.status.ToString(), ":", r.pfn.raw(), ":", r.handle.raw(),
                      "\n");
    }
    return results;
  }

 private:
  EventResult Rare(Machine& m, int k) {
    const uint64_t pages = m.total_pages().raw();
    const uint64_t pfn = std::uniform_int_distribution<uint64_t>(0, pages / 4 - 1)(rng_) * 4;
    frames_ = {0xffffffff81000000ULL + 0x40ULL * k, 0xffffffff81100000ULL + 8ULL * (k % 7)};
    m.symbols().Register(frames_[0], absl::StrCat("rare_", k, "+0x0/0x40"));
    switch (k % 5) {
      case 0: {
        extras_ = PrintedExtras{.page_flags = 0x2000ULL + k,
                                .flags_text = absl::StrCat("0x", k, "(slab)"),
                                .gfp_names = "GFP_KERNEL",
                                .slab_cache = k % 8 == 0,
                                .memcg = "Charged to memcg /"};
        absl::StatusOr<EventResult> r = m.Import(ImportEvent{.pfn = Pfn(pfn),
                                                             .order = Order(2),
                                                             .gfp_mask = 0xcc0,
                                                             .frames = frames_,
                                                             .pid = 7,
                                                             .tgid = 7,
                                                             .comm = "imported",
                                                             .ts_ns = 5000ULL + k,
                                                             .free_ts_ns = 17,
                                                             .extras = &extras_});
        if (!r.ok()) return EventResult{r.status(), Pfn(), StackHandle()};
        workload_.Adopt(Pfn(pfn), Order(2));
        return *r;
      }
      case 1: {
        AllocEvent e{.order = Order(1),
                     .gfp_mask = 0xcc0,
                     .frames = frames_,
                     .pid = 9,
                     .tgid = 9,
                     .comm = "trusted",
                     .ts_ns = 6000ULL + k,
                     .pfn = Pfn(pfn),
                     .trusted = true};
        // The workload may still believe a block under it is live: let it keep the range.
        return m.Apply(e);
      }
      case 3:
        // Not RAM on the mirrored machine; trusted, so it takes the range whatever is there.
        return m.Apply(
            AllocEvent{.order = Order(1), .pfn = Pfn(pfn), .trusted = true, .reserved = true});
      case 2:
        m.SetTracking(false, 0);
        return m.Apply(AllocEvent{.order = Order(0), .gfp_mask = 0xcc0, .frames = frames_});
      default:
        m.SetTracking(true, 7000ULL + k);
        return EventResult{absl::OkStatus(), Pfn(), StackHandle()};
    }
  }

  Workload workload_;
  std::mt19937_64 rng_;
  std::vector<uint64_t> frames_;
  PrintedExtras extras_;
};

class SnapshotTest : public ::testing::TestWithParam<Config> {
 protected:
  MachineOptions Options() const {
    MachineOptions o;
    o.pages = PageCount(GetParam().pages);
    o.depot_max_pools = GetParam().depot_max_pools;
    return o;
  }
};

TEST_P(SnapshotTest, LoadedMachineIsTheSameMachine) {
  Machine original(Options());
  Driver driver(GetParam().pages, 42);
  driver.Run(original, GetParam().events);
  ASSERT_TRUE(CheckMachineInvariants(original).ok());
  // The run reached the rare corners the snapshot must carry.
  const MachineCounters& c = original.counters();
  EXPECT_GT(c.repaired_allocs, 0u);
  EXPECT_GT(c.early_handle_pages, 4u);  // tracking turned on again over allocated pages
  EXPECT_GT(c.migrates, 0u);
  EXPECT_GT(c.frees, 0u);
  EXPECT_GT(original.reserved_pages().raw(), 0u);
  if (GetParam().depot_max_pools == 2) {
    EXPECT_GT(c.failure_handle_uses, 0u);
  }
  EXPECT_NE(PageOwnerText(original, DumpFormat::kToday).find("Charged to memcg /"),
            std::string::npos);

  const std::string bytes = Save(original);
  absl::StatusOr<std::unique_ptr<Machine>> loaded = Load(Options(), bytes);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  Machine& copy = **loaded;
  absl::Status inv = CheckMachineInvariants(copy);
  ASSERT_TRUE(inv.ok()) << inv;
  EXPECT_EQ(Fingerprint(copy), Fingerprint(original));
  // Saved again, byte for byte the same: nothing was lost or reordered.
  EXPECT_EQ(Save(copy), bytes);

  // The same future: the same events give the same results and the same machine.
  Driver twin = driver;
  const std::string a = driver.Run(original, GetParam().events / 2);
  const std::string b = twin.Run(copy, GetParam().events / 2);
  EXPECT_EQ(a, b);
  EXPECT_EQ(Fingerprint(copy), Fingerprint(original));
  inv = CheckMachineInvariants(copy);
  EXPECT_TRUE(inv.ok()) << inv;
  EXPECT_EQ(Save(copy), Save(original));
}

TEST_P(SnapshotTest, EveryTruncationIsDataLoss) {
  Machine original(Options());
  Driver driver(GetParam().pages, 7);
  driver.Run(original, 2000);
  const std::string bytes = Save(original);
  // Every prefix would take long on the big config; a prime stride visits every section.
  for (size_t len = 0; len < bytes.size(); len += 1 + bytes.size() / 997) {
    absl::StatusOr<std::unique_ptr<Machine>> m = Load(Options(), bytes.substr(0, len));
    ASSERT_EQ(m.status().code(), absl::StatusCode::kDataLoss) << "prefix of " << len;
  }
}

INSTANTIATE_TEST_SUITE_P(Sizes, SnapshotTest,
                         ::testing::Values(
                             // Two depot pools: later stacks get the failure handle.
                             Config{"Small", 8192, 2, 6000},
                             Config{"Large", 1 << 16, kDefaultDepotMaxPools, 20000}),
                         [](const ::testing::TestParamInfo<Config>& p) { return p.param.name; });

TEST(SnapshotFormatTest, OtherOptionsAreRefusedByName) {
  Machine m(MachineOptions{.pages = PageCount(4096)});
  const std::string bytes = Save(m);
  absl::StatusOr<std::unique_ptr<Machine>> other =
      Load(MachineOptions{.pages = PageCount(8192)}, bytes);
  EXPECT_EQ(other.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(other.status().message(),
            "the snapshot is of a machine of 4096 pages, stack depth 16, 8192 depot pools; this "
            "one has 8192 pages, stack depth 16, 8192 depot pools");
  other = Load(MachineOptions{.pages = PageCount(4096), .stack_depth = 8}, bytes);
  EXPECT_EQ(other.status().code(), absl::StatusCode::kFailedPrecondition);
}

TEST(SnapshotFormatTest, GarbageIsDataLossNamingTheSection) {
  const MachineOptions o{.pages = PageCount(4096)};
  absl::StatusOr<std::unique_ptr<Machine>> m = Load(o, "not a machine at all");
  EXPECT_EQ(m.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(m.status().message(), "snapshot: section machine expected (tag MACH), found tag not ");
  // A valid start, then a wrong section.
  std::string bytes = Save(Machine(o));
  const size_t at = bytes.find("BUDY");
  ASSERT_NE(at, std::string::npos);
  bytes[at] = 'X';
  m = Load(o, bytes);
  EXPECT_EQ(m.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(m.status().message(),
            "snapshot: section allocator expected (tag BUDY), found tag XUDY");
}

TEST(SnapshotFormatTest, BadValuesAreDataLossNotCrashes) {
  const MachineOptions o{.pages = PageCount(4096)};
  Machine original(o);
  Driver(4096, 3).Run(original, 3000);
  const std::string bytes = Save(original);
  // Flip each byte of a sample (a CRC is the file's job; here the loader's own checks must hold
  // without crashing): every outcome is a machine whose invariants hold, or kDataLoss.
  std::mt19937_64 rng(5);
  int refused = 0;
  for (int i = 0; i < 400; ++i) {
    std::string bad = bytes;
    const size_t at = std::uniform_int_distribution<size_t>(0, bad.size() - 1)(rng);
    bad[at] = static_cast<char>(bad[at] ^ (1 << (i % 8)));
    absl::StatusOr<std::unique_ptr<Machine>> m = Load(o, bad);
    if (!m.ok()) {
      EXPECT_EQ(m.status().code(), absl::StatusCode::kDataLoss) << m.status();
      ++refused;
    }
  }
  EXPECT_GT(refused, 0);
}

TEST(SnapshotFormatTest, UntouchedMemoryCostsAlmostNothing) {
  // 4 GiB, nothing allocated but the depot's first pool: the records and per-page bytes are
  // zero runs of a byte each.
  Machine m(MachineOptions{.pages = PageCount(1 << 20)});
  const std::string bytes = Save(m);
  EXPECT_LT(bytes.size(), 200u * 1024);
  absl::StatusOr<std::unique_ptr<Machine>> copy =
      Load(MachineOptions{.pages = PageCount(1 << 20)}, bytes);
  ASSERT_TRUE(copy.ok()) << copy.status();
  EXPECT_EQ(Fingerprint(**copy), Fingerprint(m));
}

}  // namespace
}  // namespace pageowner
