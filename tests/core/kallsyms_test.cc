#include "core/kallsyms.h"

#include <fstream>
#include <sstream>
#include <string>

#include "gtest/gtest.h"

namespace pageowner {
namespace {

std::string ReadData(const std::string& name) {
  std::ifstream in(std::string(PAGEOWNER_TEST_DATA_DIR) + "/kallsyms/" + name, std::ios::binary);
  EXPECT_TRUE(in.good()) << name;
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

class KallsymsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<Kallsyms> k = Kallsyms::Parse(ReadData("kallsyms_6.18_excerpt.txt") +
                                                 ReadData("modules_handwritten.txt"));
    ASSERT_TRUE(k.ok()) << k.status();
    k_ = std::move(*k);
  }
  Kallsyms k_ = *Kallsyms::Parse("1 T a\n2 T b\n");
};

// Sizes run to the next symbol of any type in the same group, __pfx_ padding symbols included,
// as the kernel's table holds them (the excerpt's cuts shorten nothing checked here).
TEST_F(KallsymsTest, RealKernelSymbols) {
  EXPECT_EQ(k_.Symbolize(0xffffffff81634110 + 0x5b), "post_alloc_hook+0x5b/0xd0");
  EXPECT_EQ(k_.Symbolize(0xffffffff81639490 + 0x26b), "__alloc_frozen_pages_noprof+0x26b/0x340");
  EXPECT_EQ(k_.Symbolize(0xffffffff816397e0 + 0x1d), "__alloc_pages_noprof+0x1d/0x30");
  EXPECT_EQ(k_.Symbolize(0xffffffff81673a70 + 0x9f), "alloc_pages_mpol+0x9f/0x180");
  EXPECT_EQ(k_.Symbolize(0xffffffff81673d70), "alloc_pages_noprof+0x0/0xa0");
  EXPECT_EQ(k_.Symbolize(0xffffffff81673d6f), "__pfx_alloc_pages_noprof+0xf/0x10");
  // Four aliases at _stext's address: the first listed wins.
  EXPECT_EQ(k_.Symbolize(0xffffffff81000000), "srso_alias_untrain_ret+0x0/0x10");
  EXPECT_EQ(k_.Symbolize(0xffffffff81000005), "srso_alias_untrain_ret+0x5/0x10");
  // The last text symbol runs to the first data symbol after it.
  EXPECT_EQ(k_.Symbolize(0xffffffff82276f48 + 1), "_etext+0x1/0x1890b8");
  // A data symbol is no frame: an address in it belongs to the text symbol before, if that
  // reaches (it does not: _etext ends at __start_rodata).
  EXPECT_EQ(k_.Symbolize(0xffffffff82400010), "0xffffffff82400010");
  // Below every symbol, and 0.
  EXPECT_EQ(k_.Symbolize(0x1000), "0x1000");
  EXPECT_EQ(k_.Symbolize(0), "0x0");
  const std::optional<KallsymsMatch> m = k_.Find(0xffffffff81634110 + 0x5b);
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->name, "post_alloc_hook");
  EXPECT_EQ(m->module, "");
  EXPECT_EQ(m->offset, 0x5bu);
  EXPECT_EQ(m->size, 0xd0u);
}

TEST_F(KallsymsTest, ModuleSymbols) {
  EXPECT_EQ(k_.Symbolize(0xffffffffc0a01010 + 0x5c), "ext4_file_write_iter+0x5c/0x690 [ext4]");
  // Listed out of order in the file; sorted before sizing.
  EXPECT_EQ(k_.Symbolize(0xffffffffc0a016b0 + 0x18f),
            "ext4_buffered_write_iter+0x18f/0x190 [ext4]");
  EXPECT_EQ(k_.Symbolize(0xffffffffc0a01840 + 3), "ext4_init_fs.cold+0x3/0xc0 [ext4]");
  // Past the last text symbol, at a data symbol that ends the group: no symbol.
  EXPECT_EQ(k_.Symbolize(0xffffffffc0a01900), "0xffffffffc0a01900");
  EXPECT_EQ(k_.Symbolize(0xffffffffc0b00000 + 0xff), "jbd2_journal_start+0xff/0x100 [jbd2]");
  EXPECT_EQ(k_.Symbolize(0xffffffffc0b00100), "jbd2__journal_start+0x0/0x300 [jbd2]");
  // The ftrace trampoline is alone in its group: its size is unknown (rule 3).
  EXPECT_EQ(k_.Symbolize(0xffffffffc0201000), "0xffffffffc0201000");
  const std::optional<KallsymsMatch> m = k_.Find(0xffffffffc0a01010);
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->module, "ext4");
}

TEST(KallsymsParseTest, NamesAreBytes) {
  absl::StatusOr<Kallsyms> k = Kallsyms::Parse(
      "ffffffff81000000 T caf\xc3\xa9 \x01x\nffffffff81000100 W weak_one\nffffffff81000180 T "
      "end\n");
  ASSERT_TRUE(k.ok()) << k.status();
  EXPECT_EQ(k->Symbolize(0xffffffff81000010), "caf\xc3\xa9 \x01x+0x10/0x100");
  EXPECT_EQ(k->Symbolize(0xffffffff81000100), "weak_one+0x0/0x80");
  EXPECT_EQ(k->size(), 2u);  // `end` is last: unknown size, not kept
}

TEST(KallsymsParseTest, Errors) {
  absl::StatusOr<Kallsyms> k = Kallsyms::Parse(
      "0000000000000000 T _stext\n0000000000000000 t foo\n0000000000000000 t bar\t[ext4]\n");
  EXPECT_EQ(k.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(k.status().message(),
            "every kallsyms address is 0: the kernel hides symbol addresses from this reader "
            "(reading them needs CAP_SYSLOG and kernel.kptr_restrict below 2)");
  struct Case {
    const char* text;
    absl::StatusCode code;
    const char* message;
  };
  const Case cases[] = {
      {"ffff T a\nxyz T b\n", absl::StatusCode::kInvalidArgument, "line 2: bad address \"xyz\""},
      {"ffff T\n", absl::StatusCode::kInvalidArgument, "line 1: expected \"ADDRESS TYPE NAME\""},
      {"ffff Tx\n", absl::StatusCode::kInvalidArgument, "line 1: expected \"ADDRESS TYPE NAME\""},
      {"ffff T \n", absl::StatusCode::kInvalidArgument, "line 1: empty symbol name"},
      {"1ffffffffffffffff T a\n", absl::StatusCode::kInvalidArgument,
       "line 1: bad address \"1ffffffffffffffff\""},
      {"1000 D a\n2000 D b\n", absl::StatusCode::kNotFound, "kallsyms holds no sized text symbol"},
      {"", absl::StatusCode::kNotFound, "kallsyms holds no sized text symbol"},
  };
  for (const Case& c : cases) {
    k = Kallsyms::Parse(c.text);
    EXPECT_EQ(k.status().code(), c.code) << c.text;
    EXPECT_EQ(k.status().message(), c.message) << c.text;
  }
}

// This machine's own table, read as root: the allocator's entry points resolve to themselves.
TEST(KallsymsRealTest, ProcKallsyms) {
  absl::StatusOr<Kallsyms> k = Kallsyms::ReadFile();
  if (absl::IsPermissionDenied(k.status())) GTEST_SKIP() << k.status();
  ASSERT_TRUE(k.ok()) << k.status();
  EXPECT_GT(k->size(), 10000u);
}

}  // namespace
}  // namespace pageowner
