#include "server/flags.h"

#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "gtest/gtest.h"

ABSL_FLAG(int32_t, test_depth, 16, "An int flag for CheckCommandLine.");
ABSL_FLAG(bool, test_switch, false, "A bool flag for CheckCommandLine.");
ABSL_FLAG(std::string, test_text, "", "A string flag for CheckCommandLine.");

namespace pageowner::server {
namespace {

TEST(ParseMemorySizeTest, ExactValues) {
  EXPECT_EQ(ParseMemorySize("4096").value(), 4096u);
  EXPECT_EQ(ParseMemorySize("4294967296").value(), uint64_t{4} << 30);
  EXPECT_EQ(ParseMemorySize("4KiB").value(), 4096u);
  EXPECT_EQ(ParseMemorySize("64MiB").value(), uint64_t{64} << 20);
  EXPECT_EQ(ParseMemorySize("4GiB").value(), uint64_t{4} << 30);
  EXPECT_EQ(ParseMemorySize("1TiB").value(), uint64_t{1} << 40);
  EXPECT_EQ(ParseMemorySize("16TiB").value(), uint64_t{16} << 40);
  EXPECT_EQ(ParseMemorySize("0012KiB").value(), uint64_t{12} << 10);
  EXPECT_EQ(ParseMemorySize("16777215TiB").value(), uint64_t{16777215} << 40);
}

TEST(ParseMemorySizeTest, SyntaxErrorsAreInvalidArgument) {
  for (const char* bad : {"", "GiB", "12parsecs", "4 GiB", "4gib", "4G", "4GB", "1.5GiB", "-4096",
                          "+4096", " 4096", "4096 ", "0x1000", "4KiBGiB"}) {
    EXPECT_EQ(ParseMemorySize(bad).status().code(), absl::StatusCode::kInvalidArgument) << bad;
  }
  EXPECT_NE(ParseMemorySize("12parsecs").status().message().find("\"parsecs\""), std::string::npos);
}

TEST(ParseMemorySizeTest, ZeroAndPartialPagesAreInvalidArgument) {
  for (const char* bad : {"0", "0GiB", "4095", "4097", "1KiB", "6KiB"}) {
    EXPECT_EQ(ParseMemorySize(bad).status().code(), absl::StatusCode::kInvalidArgument) << bad;
  }
}

TEST(ParseMemorySizeTest, OverflowIsOutOfRange) {
  EXPECT_EQ(ParseMemorySize("18446744073709551616").status().code(),
            absl::StatusCode::kOutOfRange);  // 2^64
  EXPECT_EQ(ParseMemorySize("99999999999999999999999").status().code(),
            absl::StatusCode::kOutOfRange);
  EXPECT_EQ(ParseMemorySize("16777216TiB").status().code(), absl::StatusCode::kOutOfRange);
}

absl::Status Check(std::vector<std::string> args) {
  args.insert(args.begin(), "prog");
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  return CheckCommandLine(static_cast<int>(argv.size()), argv.data());
}

TEST(CheckCommandLineTest, AcceptsWhatAbseilAccepts) {
  EXPECT_TRUE(Check({}).ok());
  EXPECT_TRUE(Check({"--test_depth=3", "-test_depth=4", "--test_depth", "5"}).ok());
  EXPECT_TRUE(Check({"--test_switch", "--notest_switch", "--test_switch=false"}).ok());
  EXPECT_TRUE(Check({"--test_text=", "--test_text", "x y"}).ok());
  EXPECT_TRUE(Check({"--help"}).ok());
  EXPECT_TRUE(Check({"--", "anything", "--bogus"}).ok());
}

TEST(CheckCommandLineTest, RejectsWithOneLine) {
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      {{"--bogus=1"}, "unknown flag --bogus"},
      {{"--notest_depth"}, "unknown flag --notest_depth"},
      {{"--test_depth=abc"}, "--test_depth=abc: "},
      {{"--test_depth"}, "missing value for --test_depth"},
      {{"--test_switch=maybe"}, "--test_switch=maybe: "},
      {{"positional"}, "unexpected argument \"positional\""},
      {{"-"}, "unexpected argument \"-\""},
  };
  for (const auto& [args, message] : cases) {
    const absl::Status s = Check(args);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << args[0];
    EXPECT_EQ(s.message().substr(0, message.size()), message) << s.message();
    EXPECT_EQ(s.message().find('\n'), absl::string_view::npos) << s.message();
  }
}

FlagValues Defaults() {
  // Field by field: FlagValues grows with every flag, and the rest keep their defaults.
  FlagValues f;
  f.listen = "127.0.0.1:50051";
  f.memory = "4GiB";
  f.stack_depth = 16;
  f.depot_max_pools = 8192;
  f.max_batch_events = 65536;
  f.tracking = true;
  f.metrics_listen = "127.0.0.1:9464";
  return f;
}

TEST(MakeServerOptionsTest, Defaults) {
  const absl::StatusOr<ServerOptions> o = MakeServerOptions(Defaults());
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->listen_address, "127.0.0.1:50051");
  EXPECT_EQ(o->machine.pages.raw(), uint64_t{1} << 20);
  EXPECT_EQ(o->machine.stack_depth, 16);
  EXPECT_EQ(o->machine.depot_max_pools, 8192u);
  EXPECT_EQ(o->max_batch_events, 65536u);
  EXPECT_TRUE(o->machine.tracking);
}

TEST(MakeServerOptionsTest, EachBadValueNamesItsFlag) {
  struct Case {
    void (*mutate)(FlagValues&);
    absl::StatusCode code;
    std::string prefix;
  };
  const Case cases[] = {
      {[](FlagValues& f) { f.memory = "12parsecs"; }, absl::StatusCode::kInvalidArgument,
       "--memory=12parsecs: "},
      {[](FlagValues& f) { f.memory = "32TiB"; }, absl::StatusCode::kInvalidArgument,
       "--memory=32TiB: "},
      {[](FlagValues& f) { f.memory = "99999999999TiB"; }, absl::StatusCode::kOutOfRange,
       "--memory=99999999999TiB: "},
      {[](FlagValues& f) { f.stack_depth = 0; }, absl::StatusCode::kInvalidArgument,
       "--stack_depth=0: must be in 1..64"},
      {[](FlagValues& f) { f.stack_depth = 65; }, absl::StatusCode::kInvalidArgument,
       "--stack_depth=65: must be in 1..64"},
      {[](FlagValues& f) { f.depot_max_pools = 0; }, absl::StatusCode::kInvalidArgument,
       "--depot_max_pools=0: "},
      {[](FlagValues& f) { f.depot_max_pools = 131072; }, absl::StatusCode::kInvalidArgument,
       "--depot_max_pools=131072: "},
      {[](FlagValues& f) { f.max_batch_events = 0; }, absl::StatusCode::kInvalidArgument,
       "--max_batch_events=0: "},
      {[](FlagValues& f) { f.listen = ""; }, absl::StatusCode::kInvalidArgument, "--listen: "},
  };
  for (const Case& c : cases) {
    FlagValues f = Defaults();
    c.mutate(f);
    const absl::StatusOr<ServerOptions> o = MakeServerOptions(f);
    EXPECT_EQ(o.status().code(), c.code) << c.prefix;
    EXPECT_EQ(o.status().message().substr(0, c.prefix.size()), c.prefix) << o.status();
  }
}

TEST(MakeServerOptionsTest, Bounds) {
  FlagValues f = Defaults();
  f.memory = "16TiB";
  f.stack_depth = 64;
  f.depot_max_pools = 131071;
  f.max_batch_events = 1;
  f.tracking = false;
  const absl::StatusOr<ServerOptions> o = MakeServerOptions(f);
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->machine.pages.raw(), uint64_t{1} << 32);
  EXPECT_FALSE(o->machine.tracking);
}

}  // namespace
}  // namespace pageowner::server
