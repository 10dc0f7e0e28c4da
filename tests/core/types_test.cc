#include "core/types.h"

#include "gtest/gtest.h"

namespace pageowner {
namespace {

TEST(TypesTest, OrderPagesAndValidity) {
  EXPECT_EQ(Order(0).pages().raw(), 1u);
  EXPECT_EQ(Order(10).pages().raw(), 1024u);
  EXPECT_TRUE(Order(10).valid());
  EXPECT_FALSE(Order(11).valid());
}

TEST(TypesTest, PfnArithmeticAndAlignment) {
  EXPECT_EQ((Pfn(8) + PageCount(4)).raw(), 12u);
  EXPECT_EQ((Pfn(12) - Pfn(8)).raw(), 4u);
  EXPECT_EQ(Pfn(0x1068).pageblock(), 8u);
  EXPECT_TRUE(Pfn(0x1068).aligned_to(Order(3)));
  EXPECT_FALSE(Pfn(0x1068).aligned_to(Order(4)));
  EXPECT_EQ(PageCount(3).in_bytes(), 12288u);
}

TEST(TypesTest, KernelNames) {
  EXPECT_EQ(MigrateTypeName(MigrateType::kUnmovable), "Unmovable");
  EXPECT_EQ(MigrateTypeName(MigrateType::kHighAtomic), "HighAtomic");
  EXPECT_EQ(MigrateTypeName(MigrateType::kIsolate), "Isolate");
  EXPECT_EQ(MigrateReasonName(MigrateReason::kCompaction), "compaction");
  EXPECT_EQ(MigrateReasonName(MigrateReason::kSyscallOrCpuset), "syscall_or_cpuset");
  EXPECT_EQ(MigrateReasonName(MigrateReason::kDamon), "damon");
  EXPECT_EQ(MigrateReasonName(MigrateReason::kNone), "");
}

}  // namespace
}  // namespace pageowner
