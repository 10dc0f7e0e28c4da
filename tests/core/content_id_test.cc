#include "core/content_id.h"

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "core/kernel_flags.h"
#include "core/machine.h"
#include "gtest/gtest.h"

namespace pageowner {
namespace {

using NamedFrames = std::vector<std::pair<uint64_t, std::string>>;

const NamedFrames kFramesA = {{0xffffffff81001000, "get_page_from_freelist+0x121a/0x13b0"},
                              {0xffffffff81002000, "__alloc_pages_noprof+0x1a0/0x350"},
                              {0xffffffff81003000, "alloc_pages_mpol_noprof+0x9c/0x1e0"}};
const NamedFrames kFramesB = {{0xffffffff81004000, "shmem_alloc_folio+0x9c/0xb0"},
                              {0xffffffff81005000, "shmem_get_folio_gfp+0x23b/0x690"}};

// Names the frames in `symbols` and returns their ips.
std::vector<uint64_t> Register(SymbolTable& symbols, const NamedFrames& frames,
                               uint64_t ip_offset = 0) {
  std::vector<uint64_t> ips;
  for (const auto& [ip, name] : frames) {
    symbols.Register(ip + ip_offset, name);
    ips.push_back(ip + ip_offset);
  }
  return ips;
}

TEST(ContentIdTest, IsFnv1a64OfThePrintedFramesEachEndedByANewline) {
  SymbolTable symbols;
  // FNV-1a 64 of the empty input is the offset basis; of "a\n" it is computed by hand below.
  EXPECT_EQ(StackContentId({}, symbols), ContentIdHasher::kOffsetBasis);
  uint64_t h = ContentIdHasher::kOffsetBasis;
  for (unsigned char c : std::string("a+0x0/0x10\n0x1234\n")) {
    h ^= c;
    h *= ContentIdHasher::kPrime;
  }
  symbols.Register(0x1000, "a+0x0/0x10");
  const std::vector<uint64_t> frames = {0x1000, 0x1234};  // the second has no name
  EXPECT_EQ(StackContentId(frames, symbols), h);
  // A known published FNV-1a 64 value: "a" -> 0xaf63dc4c8601ec8c.
  uint64_t a = ContentIdHasher::kOffsetBasis;
  a ^= 'a';
  a *= ContentIdHasher::kPrime;
  EXPECT_EQ(a, 0xaf63dc4c8601ec8cULL);
}

TEST(ContentIdTest, SameNamesAtDifferentIpsGiveTheSameId) {
  SymbolTable here, there;
  const std::vector<uint64_t> a = Register(here, kFramesA);
  const std::vector<uint64_t> b = Register(there, kFramesA, 0x200000);  // another kernel's layout
  ASSERT_NE(a, b);
  EXPECT_EQ(StackContentId(a, here), StackContentId(b, there));
}

TEST(ContentIdTest, DifferentFramesOrOrderGiveDifferentIds) {
  SymbolTable symbols;
  std::vector<uint64_t> a = Register(symbols, kFramesA);
  const std::vector<uint64_t> b = Register(symbols, kFramesB);
  EXPECT_NE(StackContentId(a, symbols), StackContentId(b, symbols));
  const uint64_t id = StackContentId(a, symbols);
  std::swap(a[0], a[1]);
  EXPECT_NE(StackContentId(a, symbols), id);
  a.pop_back();
  EXPECT_NE(StackContentId(a, symbols), id);
}

TEST(ContentIdTest, UnnamedFramesHashTheirIps) {
  SymbolTable symbols;
  const std::vector<uint64_t> a = {0xffffffff81000010, 0xffffffff81000020};
  const std::vector<uint64_t> b = {0xffffffff81000010, 0xffffffff81000030};
  EXPECT_NE(StackContentId(a, symbols), StackContentId(b, symbols));
  SymbolTable other;
  EXPECT_EQ(StackContentId(a, symbols), StackContentId(a, other));
}

// Two daemons: the same stacks stored in opposite orders (so with different handles) and with
// different ips get the same ids.
TEST(ContentIdTest, TwoMachinesWithDifferentRegistrationOrderAgree) {
  MachineOptions options;
  options.pages = PageCount(16384);
  Machine first(options), second(options);
  const std::vector<uint64_t> first_a = Register(first.symbols(), kFramesA);
  const std::vector<uint64_t> first_b = Register(first.symbols(), kFramesB);
  const std::vector<uint64_t> second_b = Register(second.symbols(), kFramesB, 0x1000000);
  const std::vector<uint64_t> second_a = Register(second.symbols(), kFramesA, 0x1000000);
  const auto alloc = [](Machine& m, const std::vector<uint64_t>& frames) {
    absl::StatusOr<EventResult> r =
        m.Alloc({.order = Order(0), .gfp_mask = kGfpKernel, .frames = frames, .comm = "test"});
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? r->handle : StackHandle();
  };
  const StackHandle h1a = alloc(first, first_a);
  const StackHandle h1b = alloc(first, first_b);
  const StackHandle h2b = alloc(second, second_b);
  const StackHandle h2a = alloc(second, second_a);
  EXPECT_NE(h1a.raw(), h2a.raw());  // the handles differ: b was stored first on the second machine
  const auto id = [](const Machine& m, StackHandle h) {
    return StackContentId(m.depot().Fetch(h), m.symbols());
  };
  EXPECT_EQ(id(first, h1a), id(second, h2a));
  EXPECT_EQ(id(first, h1b), id(second, h2b));
  EXPECT_NE(id(first, h1a), id(first, h1b));
}

}  // namespace
}  // namespace pageowner
