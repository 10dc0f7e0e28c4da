#include "core/symbols.h"

#include <thread>
#include <vector>

#include "gtest/gtest.h"

namespace pageowner {
namespace {

TEST(SymbolTableTest, NamedAddressPrintsItsNameOthersPrintAsHex) {
  SymbolTable t;
  EXPECT_TRUE(t.Register(0xffffffff81234567, "get_page_from_freelist+0x121a/0x13b0"));
  EXPECT_EQ(t.FormatFrame(0xffffffff81234567), "get_page_from_freelist+0x121a/0x13b0");
  EXPECT_EQ(t.FormatFrame(0xffffffff81000010), "0xffffffff81000010");
  EXPECT_EQ(t.FormatFrame(0), "0x0");
  EXPECT_EQ(t.Name(0xffffffff81000010), "");
}

TEST(SymbolTableTest, FirstNameWinsAndConflictsAreCounted) {
  SymbolTable t;
  EXPECT_TRUE(t.Register(0x1000, "a+0x0/0x10"));
  EXPECT_TRUE(t.Register(0x1000, "a+0x0/0x10"));
  EXPECT_FALSE(t.Register(0x1000, "b+0x0/0x10"));
  EXPECT_EQ(t.Name(0x1000), "a+0x0/0x10");
  EXPECT_EQ(t.conflicts(), 1u);
  EXPECT_TRUE(t.Register(0x2000, ""));  // empty names are ignored
  EXPECT_EQ(t.size(), 1u);
}

TEST(SymbolTableTest, SyntheticAddressesAreStableAcrossTables) {
  SymbolTable a, b;
  const uint64_t x = a.SyntheticAddress("shmem_alloc_folio+0x9c/0xb0");
  b.SyntheticAddress("something_else+0x1/0x2");
  EXPECT_EQ(b.SyntheticAddress("shmem_alloc_folio+0x9c/0xb0"), x);
  EXPECT_EQ(a.SyntheticAddress("shmem_alloc_folio+0x9c/0xb0"), x);
  EXPECT_GE(x, SymbolTable::kSyntheticBase);
  EXPECT_EQ(a.FormatFrame(x), "shmem_alloc_folio+0x9c/0xb0");
  EXPECT_NE(a.SyntheticAddress("other+0x1/0x2"), x);
}

TEST(SymbolTableTest, SyntheticAddressProbesPastATakenAddress) {
  SymbolTable a;
  const uint64_t x = a.SyntheticAddress("f+0x1/0x2");
  SymbolTable b;
  b.Register(x, "a real name at that address");
  const uint64_t y = b.SyntheticAddress("f+0x1/0x2");
  EXPECT_NE(y, x);
  EXPECT_EQ(b.FormatFrame(y), "f+0x1/0x2");
  EXPECT_EQ(b.FormatFrame(x), "a real name at that address");
}

TEST(SymbolTableTest, ConcurrentRegistrationAndLookup) {
  SymbolTable t;
  std::vector<std::thread> threads;
  for (int th = 0; th < 4; ++th) {
    threads.emplace_back([&t, th] {
      for (uint64_t i = 0; i < 2000; ++i) {
        t.Register(0x1000 + i, "f" + std::to_string(i));
        EXPECT_EQ(t.FormatFrame(0x1000 + i), "f" + std::to_string(i)) << th;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(t.size(), 2000u);
  EXPECT_EQ(t.conflicts(), 0u);
}

}  // namespace
}  // namespace pageowner
