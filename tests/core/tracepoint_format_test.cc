#include "core/tracepoint_format.h"

#include <sys/stat.h>

#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "core/procfs.h"
#include "gtest/gtest.h"

namespace pageowner {
namespace {

std::string DataPath(const std::string& name) {
  return std::string(PAGEOWNER_TEST_DATA_DIR) + "/tracepoint/" + name;
}

TracepointFormat Load(const std::string& kernel, const std::string& event) {
  absl::StatusOr<TracepointFormat> f =
      TracepointFormat::ReadFromTracefs(DataPath(kernel), "kmem", event);
  EXPECT_TRUE(f.ok()) << f.status();
  return f.ok() ? *f : TracepointFormat();
}

std::vector<TracepointField> Common() {
  return {{"unsigned short", "common_type", 0, 2, false, false},
          {"unsigned char", "common_flags", 2, 1, false, false},
          {"unsigned char", "common_preempt_count", 3, 1, false, false},
          {"int", "common_pid", 4, 4, true, false}};
}

template <typename... F>
std::vector<TracepointField> With(F... fields) {
  std::vector<TracepointField> v = Common();
  (v.push_back(fields), ...);
  return v;
}

void Put(std::vector<uint8_t>& p, size_t offset, uint64_t v, size_t size) {
  for (size_t i = 0; i < size; ++i) p[offset + i] = static_cast<uint8_t>(v >> (8 * i));
}

// The real files of this machine's kernel (6.18.44, read from its tracefs).
TEST(TracepointFormatTest, Linux618Files) {
  const TracepointFormat alloc = Load("linux-6.18", "mm_page_alloc");
  EXPECT_EQ(alloc.name(), "mm_page_alloc");
  EXPECT_EQ(alloc.id(), 653u);
  EXPECT_EQ(alloc.fields(), With(TracepointField{"unsigned long", "pfn", 8, 8, false, false},
                                 TracepointField{"unsigned int", "order", 16, 4, false, false},
                                 TracepointField{"unsigned long", "gfp_flags", 24, 8, false, false},
                                 TracepointField{"int", "migratetype", 32, 4, true, false}));
  const TracepointFormat free = Load("linux-6.18", "mm_page_free");
  EXPECT_EQ(free.id(), 655u);
  EXPECT_EQ(free.fields(), With(TracepointField{"unsigned long", "pfn", 8, 8, false, false},
                                TracepointField{"unsigned int", "order", 16, 4, false, false}));
  const TracepointFormat batched = Load("linux-6.18", "mm_page_free_batched");
  EXPECT_EQ(batched.id(), 654u);
  EXPECT_EQ(batched.fields(), With(TracepointField{"unsigned long", "pfn", 8, 8, false, false}));
}

// Derived by hand from a 3.x kernel's include/trace/events/kmem.h (see tests/data/README.md).
TEST(TracepointFormatTest, Linux3xDerivedFiles) {
  const TracepointFormat alloc = Load("linux-3.x-derived", "mm_page_alloc");
  EXPECT_EQ(alloc.id(), 312u);
  EXPECT_EQ(alloc.fields(), With(TracepointField{"struct page *", "page", 8, 8, false, false},
                                 TracepointField{"unsigned int", "order", 16, 4, false, false},
                                 TracepointField{"gfp_t", "gfp_flags", 20, 4, false, false},
                                 TracepointField{"int", "migratetype", 24, 4, true, false}));
  EXPECT_EQ(alloc.Find("pfn"), nullptr);
  const TracepointFormat batched = Load("linux-3.x-derived", "mm_page_free_batched");
  EXPECT_EQ(batched.fields(), With(TracepointField{"struct page *", "page", 8, 8, false, false},
                                   TracepointField{"int", "cold", 16, 4, true, false}));
}

TEST(TracepointFormatTest, ReadsFieldsByNameOnBothLayouts) {
  // 6.18: pfn 0x12345 order 3 gfp 0x140cca migratetype 1, payload of 36 bytes.
  const TracepointFormat a618 = Load("linux-6.18", "mm_page_alloc");
  std::vector<uint8_t> p(36, 0xee);
  Put(p, 0, 653, 2);
  Put(p, 4, 4242, 4);
  Put(p, 8, 0x12345, 8);
  Put(p, 16, 3, 4);
  Put(p, 24, 0x140cca, 8);
  Put(p, 32, 1, 4);
  EXPECT_EQ(*a618.ReadUnsigned(p, "common_type"), 653u);
  EXPECT_EQ(*a618.ReadSigned(p, "common_pid"), 4242);
  EXPECT_EQ(*a618.ReadUnsigned(p, "pfn"), 0x12345u);
  EXPECT_EQ(*a618.ReadUnsigned(p, "order"), 3u);
  EXPECT_EQ(*a618.ReadUnsigned(p, "gfp_flags"), 0x140ccau);
  EXPECT_EQ(*a618.ReadSigned(p, "migratetype"), 1);
  // A failed allocation: pfn -1UL.
  Put(p, 8, ~uint64_t{0}, 8);
  EXPECT_EQ(*a618.ReadUnsigned(p, "pfn"), ~uint64_t{0});
  // Sign extension only for signed fields.
  Put(p, 32, 0xffffffff, 4);
  EXPECT_EQ(*a618.ReadSigned(p, "migratetype"), -1);
  EXPECT_EQ(*a618.ReadUnsigned(p, "migratetype"), 0xffffffffu);
  Put(p, 16, 0xfffffffe, 4);
  EXPECT_EQ(*a618.ReadSigned(p, "order"), 0xfffffffe);

  // 3.x: the same values sit elsewhere; gfp_flags is 4 bytes.
  const TracepointFormat a3 = Load("linux-3.x-derived", "mm_page_alloc");
  std::vector<uint8_t> q(28, 0);
  Put(q, 8, 0xffffea0000123400, 8);
  Put(q, 16, 3, 4);
  Put(q, 20, 0x200d2, 4);
  Put(q, 24, 2, 4);
  EXPECT_EQ(*a3.ReadUnsigned(q, "page"), 0xffffea0000123400u);
  EXPECT_EQ(*a3.ReadUnsigned(q, "gfp_flags"), 0x200d2u);
  EXPECT_EQ(*a3.ReadSigned(q, "migratetype"), 2);
}

TEST(TracepointFormatTest, FieldErrorsHaveExactCodes) {
  const TracepointFormat a = Load("linux-6.18", "mm_page_alloc");
  std::vector<uint8_t> p(36, 0);
  EXPECT_EQ(a.ReadUnsigned(p, "page").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(a.ReadUnsigned(p, "page").status().message(), "mm_page_alloc has no field \"page\"");
  // migratetype ends at byte 36: 35 bytes are one short.
  std::vector<uint8_t> shortp(35, 0);
  EXPECT_EQ(a.ReadSigned(shortp, "migratetype").status().code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ(a.ReadSigned(shortp, "migratetype").status().message(),
            "mm_page_alloc.migratetype at offset 32 size 4 passes the payload's 35 bytes");
  EXPECT_TRUE(a.ReadUnsigned(shortp, "gfp_flags").ok());
  EXPECT_EQ(a.ReadUnsigned({}, "common_type").status().code(), absl::StatusCode::kOutOfRange);

  absl::StatusOr<TracepointFormat> odd = TracepointFormat::Parse(
      "name: x\nID: 7\n\tfield:char comm[16];\toffset:8;\tsize:16;\tsigned:1;\n"
      "\tfield:__data_loc char[] name;\toffset:24;\tsize:4;\tsigned:1;\n"
      "\tfield:u8 three[3];\toffset:28;\tsize:3;\tsigned:0;\n");
  ASSERT_TRUE(odd.ok()) << odd.status();
  EXPECT_EQ(odd->fields()[0], (TracepointField{"char", "comm", 8, 16, true, true}));
  EXPECT_EQ(odd->fields()[1], (TracepointField{"__data_loc char[]", "name", 24, 4, true, false}));
  std::vector<uint8_t> big(64, 0);
  EXPECT_EQ(odd->ReadUnsigned(big, "comm").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(odd->ReadUnsigned(big, "comm").status().message(),
            "x.comm (char, size 16) is not an integer field");
  EXPECT_EQ(odd->ReadUnsigned(big, "three").status().code(), absl::StatusCode::kInvalidArgument);
  // __data_loc is a 4-byte integer (offset | length << 16): readable.
  EXPECT_TRUE(odd->ReadUnsigned(big, "name").ok());
}

TEST(TracepointFormatTest, ParseErrors) {
  struct Case {
    const char* text;
    const char* message;
  };
  const Case cases[] = {
      {"ID: 1\n\tfield:int a;\toffset:0;\tsize:4;\tsigned:1;\n", "format without a name: line"},
      {"name: x\n\tfield:int a;\toffset:0;\tsize:4;\tsigned:1;\n", "format without an ID: line"},
      {"name: x\nID: 1\nformat:\n", "format without field: lines"},
      {"name: x\nID: one\n", "line 2: bad ID \"one\""},
      {"name: x\nID: 99999999999\n", "line 2: bad ID \"99999999999\""},
      {"name: x\nID: 1\n\tfield:int a;\tsize:4;\tsigned:1;\n",
       "line 3: field without a valid offset:"},
      {"name: x\nID: 1\n\tfield:int a;\toffset:0;\tsigned:1;\n",
       "line 3: field without a valid size:"},
      {"name: x\nID: 1\n\tfield:int a;\toffset:0;\tsize:4;\tsigned:2;\n",
       "line 3: field without a valid signed:"},
      {"name: x\nID: 1\n\tfield:int a\toffset:0\n", "line 3: field without ';'"},
      {"name: x\nID: 1\n\tfield:int a;\toffset:0;\tsize:4;\tsigned:1;\n"
       "\tfield:int a;\toffset:4;\tsize:4;\tsigned:1;\n",
       "line 4: duplicate field \"a\""},
      {"name: \n", "line 1: empty name"},
  };
  for (const Case& c : cases) {
    absl::StatusOr<TracepointFormat> f = TracepointFormat::Parse(c.text);
    EXPECT_EQ(f.status().code(), absl::StatusCode::kInvalidArgument) << c.text;
    EXPECT_EQ(f.status().message(), c.message) << c.text;
  }
}

TEST(TracepointFormatTest, TracefsErrors) {
  // A root without events/: tracefs not mounted there.
  const std::string empty = ::testing::TempDir() + "/tracefs_empty";
  mkdir(empty.c_str(), 0755);
  absl::StatusOr<TracepointFormat> f =
      TracepointFormat::ReadFromTracefs(empty, "kmem", "mm_page_alloc");
  EXPECT_EQ(f.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(f.status().message(), "tracefs is not mounted at " + empty + " (no " + empty +
                                      "/events); mount it with: mount -t tracefs nodev " + empty);
  // The event missing from a mounted tracefs.
  f = TracepointFormat::ReadFromTracefs(DataPath("linux-6.18"), "kmem",
                                        "mm_page_alloc_zone_locked");
  EXPECT_EQ(f.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(f.status().message().substr(0, 60),
            "this kernel has no tracepoint kmem:mm_page_alloc_zone_locked");
}

}  // namespace
}  // namespace pageowner
