#include "client/commands.h"

#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <regex>
#include <sstream>
#include <thread>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "client/cli_checks.h"
#include "client/client.h"
#include "client/command.h"
#include "client/json_out.h"
#include "core/content_id.h"
#include "core/machine.h"
#include "core/reports.h"
#include "core/workload.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/client/fake_service.h"

namespace pageowner::cli {
namespace {

using ::pageowner::testing::FakePageOwner;
using ::pageowner::testing::FakeServer;

// ---- Numbers ----

TEST(ParseNumberTest, DecimalAndHex) {
  EXPECT_EQ(*ParseNumber("0"), 0u);
  EXPECT_EQ(*ParseNumber("4096"), 4096u);
  EXPECT_EQ(*ParseNumber("0x1000"), 0x1000u);
  EXPECT_EQ(*ParseNumber("0X1f"), 0x1fu);
  EXPECT_EQ(*ParseNumber("0xFFFFFFFFFFFFFFFF"), UINT64_MAX);
  EXPECT_EQ(*ParseNumber("18446744073709551615"), UINT64_MAX);
  EXPECT_EQ(*ParseNumber("007"), 7u);
}

TEST(ParseNumberTest, Garbage) {
  for (const char* bad : {"", "x", "-1", "+1", "0x", "12a", " 1", "1 ", "0x1g", "1e3", "1.5",
                          "0b101", "18446744073709551616", "0x10000000000000000"}) {
    absl::StatusOr<uint64_t> n = ParseNumber(bad);
    EXPECT_FALSE(n.ok()) << "'" << bad << "'";
    if (!n.ok()) {
      EXPECT_EQ(n.status().code(), absl::StatusCode::kInvalidArgument);
    }
  }
}

// ---- Command line ----

TEST(ParseCommandLineTest, CommandsFlagsAndServer) {
  absl::StatusOr<CommandLine> line = ParseCommandLine(
      {"--server=10.0.0.1:7", "stacks", "--top", "5", "--handles", "--sort=allocs"});
  ASSERT_TRUE(line.ok()) << line.status();
  EXPECT_EQ(line->server, "10.0.0.1:7");
  EXPECT_EQ(line->command, "stacks");
  EXPECT_TRUE(line->positional.empty());
  EXPECT_EQ(line->flags, (std::vector<std::pair<std::string, std::string>>{
                             {"top", "5"}, {"handles", "true"}, {"sort", "allocs"}}));

  line = ParseCommandLine({"page", "0x1000", "--server", "h:1", "--json"});
  ASSERT_TRUE(line.ok()) << line.status();
  EXPECT_EQ(line->server, "h:1");
  EXPECT_EQ(line->positional, std::vector<std::string>{"0x1000"});

  line = ParseCommandLine({"replay", "-"});
  ASSERT_TRUE(line.ok());
  EXPECT_EQ(line->positional, std::vector<std::string>{"-"});
  EXPECT_EQ(line->server, std::string(kDefaultServer));

  for (auto args : std::vector<std::vector<std::string>>{
           {"--help"}, {"help"}, {"page", "--help"}, {"-h"}, {"help", "page"}}) {
    line = ParseCommandLine(args);
    ASSERT_TRUE(line.ok()) << args[0];
    EXPECT_EQ(line->command, "help");
  }
}

TEST(ParseCommandLineTest, BadUsage) {
  struct Case {
    std::vector<std::string> args;
    std::string message;
  };
  for (const Case& c : std::vector<Case>{
           {{}, "no command given"},
           {{"frobnicate"}, "unknown command 'frobnicate'"},
           {{"page"}, "page: missing argument"},
           {{"page", "1", "2"}, "page: unexpected argument '2'"},
           {{"dump", "--json"}, "unknown flag --json for dump"},
           {{"stacks", "--top"}, "flag --top needs a value"},
           {{"stats", "--json=maybe"}, "flag --json takes no value (or true|false)"},
           {{"--verbose", "stats"}, "unknown flag --verbose"},
           {{"stats", "-x"}, "unknown flag -x"},
       }) {
    absl::StatusOr<CommandLine> line = ParseCommandLine(c.args);
    ASSERT_FALSE(line.ok()) << c.message;
    EXPECT_EQ(line.status().code(), absl::StatusCode::kInvalidArgument);
    const std::string m(line.status().message());
    EXPECT_TRUE(absl::StartsWith(m, c.message + "\nusage: pageowner ")) << m;
    EXPECT_EQ(std::count(m.begin(), m.end(), '\n'), 1) << m;  // one line of hint
  }
}

struct Ran {
  int code;
  std::string out;
  std::string err;
};

Ran RunArgs(const std::vector<std::string>& args, const std::string& input = "") {
  std::istringstream in(input);
  std::ostringstream out, err;
  absl::StatusOr<CommandLine> line = ParseCommandLine(args);
  if (!line.ok()) return {kExitUsage, "", std::string(line.status().message())};
  const int code = Dispatch(*line, Io{in, out, err});
  return {code, out.str(), err.str()};
}

TEST(DispatchTest, BadNumbersAreUsageErrorsAndReachNoServer) {
  // --server points nowhere: a usage error must be found before any call.
  const std::string nowhere = "--server=127.0.0.1:1";
  struct Case {
    std::vector<std::string> args;
    std::string first_line;
  };
  for (const Case& c : std::vector<Case>{
           {{"page", "xyz"}, "pageowner: page: bad PFN: 'xyz' is not a decimal or 0x hex number"},
           {{"page", "-5"}, "pageowner: page: bad PFN: '-5' is not a decimal or 0x hex number"},
           {{"stack", "0x1g"},
            "pageowner: stack: bad HANDLE: '0x1g' is not a decimal or 0x hex number"},
           {{"stack", "4294967296"},
            "pageowner: stack: bad HANDLE: '4294967296' is above 4294967295"},
           {{"stacks", "--top", "ten"},
            "pageowner: stacks: bad --top: 'ten' is not a decimal or 0x hex number"},
           {{"stacks", "--sort", "size"},
            "pageowner: stacks: bad --sort 'size': pages, allocs or newest"},
           {{"load"}, "pageowner: load: --events N is required"},
           {{"load", "--events", "1k"},
            "pageowner: load: bad --events: '1k' is not a decimal or 0x hex number"},
           {{"load", "--events=5", "--fill=2"},
            "pageowner: load: bad --fill '2': a fraction in (0, 1]"},
           {{"load", "--events=5", "--stacks=0"},
            "pageowner: load: bad --stacks: must be at least 1"},
           {{"replay", "/nonexistent/file.jsonl"},
            "pageowner: replay: cannot open /nonexistent/file.jsonl: No such file or directory"},
           {{"replay", "-", "--batch=0"}, "pageowner: replay: bad --batch: must be at least 1"},
       }) {
    std::vector<std::string> args = c.args;
    args.insert(args.begin(), nowhere);
    const Ran r = RunArgs(args);
    EXPECT_EQ(r.code, kExitUsage) << c.first_line;
    EXPECT_TRUE(absl::StartsWith(r.err, c.first_line + "\nusage: pageowner ")) << r.err;
    EXPECT_TRUE(r.out.empty());
  }
}

TEST(DispatchTest, HelpListsEveryCommand) {
  const Ran r = RunArgs({"help"});
  EXPECT_EQ(r.code, kExitOk);
  for (const char* synopsis :
       {"  page PFN [--json]\n", "  stack HANDLE [--json]\n",
        "  stacks [--threshold N] [--top N] [--sort pages|allocs|newest] [--handles] [--json]\n",
        "  dump [--format today|v6.2|2016]\n", "  stats [--json]\n",
        "  replay FILE [--batch N] [--format jsonl|ftrace] [--trusted]\n",
        "  import FILE [--force] [--batch N]\n",
        "  sort [--format today|v6.2|2016] [page_owner_sort options]\n",
        "  load --events N [--stacks S] [--fill F] [--seed X] [--batch N]\n", "  snapshot\n",
        "  help\n", "--server=HOST:PORT"}) {
    EXPECT_TRUE(absl::StrContains(r.out, synopsis)) << synopsis;
  }
  EXPECT_EQ(RunArgs({"--help"}).out, r.out);
}

TEST(DispatchTest, AnUnreachableDaemonIsExitOne) {
  const Ran r = RunArgs({"--server=127.0.0.1:1", "stats"});
  EXPECT_EQ(r.code, kExitServerError);
  EXPECT_TRUE(
      absl::StartsWith(r.err, "pageowner: no pageownerd answers at 127.0.0.1:1 (UNAVAILABLE: "))
      << r.err;
  EXPECT_TRUE(absl::EndsWith(r.err,
                             "); start one there (`pageownerd --listen=127.0.0.1:1` or "
                             "`make run`) or pass --server=HOST:PORT\n"))
      << r.err;
}

// ---- Replay lines ----

TEST(ParseReplayLineTest, Alloc) {
  absl::StatusOr<ReplayEvent> e = ParseReplayLine(
      R"({"kind":"alloc","order":2,"gfp":"GFP_KERNEL|__GFP_ZERO","pfn":"0x1068","pid":77,)"
      R"("comm":"cat","ts_ns":6549647543,"stack":["get_page_from_freelist+0x121a/0x13b0",)"
      R"("0xffffffff81000010",{"ip":"0xffffffff81000020","sym":"f+0x1/0x2"},{"sym":"g+0x3/0x4"},)"
      R"({"ip":18446744071578845232}]})");
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_EQ(e->kind, ReplayKind::kAlloc);
  EXPECT_EQ(e->order, 2u);
  EXPECT_EQ(e->gfp_mask, 0xdc0u);
  EXPECT_EQ(e->pfn, 0x1068u);
  EXPECT_EQ(e->pid, 77);
  EXPECT_EQ(e->tgid, 77);  // defaults to pid
  EXPECT_EQ(e->comm, "cat");
  EXPECT_EQ(e->ts_ns, 6549647543u);
  ASSERT_EQ(e->stack.size(), 5u);
  EXPECT_EQ(e->stack[0].ip, 0u);
  EXPECT_EQ(e->stack[0].symbol, "get_page_from_freelist+0x121a/0x13b0");
  EXPECT_EQ(e->stack[1].ip, 0xffffffff81000010u);
  EXPECT_EQ(e->stack[1].symbol, "");
  EXPECT_EQ(e->stack[2].ip, 0xffffffff81000020u);
  EXPECT_EQ(e->stack[2].symbol, "f+0x1/0x2");
  EXPECT_EQ(e->stack[3].ip, 0u);
  EXPECT_EQ(e->stack[3].symbol, "g+0x3/0x4");
  EXPECT_EQ(e->stack[4].ip, 0xffffffff81000030u);

  e = ParseReplayLine(R"({"kind":"alloc","gfp":"0xcc0","tgid":5,"stack":["a+0x1/0x2"]})");
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_EQ(e->gfp_mask, 0xcc0u);
  EXPECT_EQ(e->order, 0u);
  EXPECT_FALSE(e->pfn.has_value());
  EXPECT_EQ(e->pid, 0);
  EXPECT_EQ(e->tgid, 5);
  e = ParseReplayLine(R"({"kind":"alloc","gfp":3264,"stack":["a+0x1/0x2"]})");
  ASSERT_TRUE(e.ok());
  EXPECT_EQ(e->gfp_mask, 0xcc0u);
}

TEST(ParseReplayLineTest, FreeAndMigrate) {
  absl::StatusOr<ReplayEvent> e =
      ParseReplayLine(R"({"kind":"free","pfn":4200,"order":1,"pid":9,"tgid":8,"comm":"x"})");
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_EQ(e->kind, ReplayKind::kFree);
  EXPECT_EQ(e->pfn, 4200u);
  EXPECT_EQ(e->order, 1u);
  EXPECT_EQ(e->tgid, 8);
  EXPECT_TRUE(e->stack.empty());

  e = ParseReplayLine(
      R"({"kind":"migrate","pfn":"0x10","reason":"numa_misplaced","target_pfn":32})");
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_EQ(e->kind, ReplayKind::kMigrate);
  EXPECT_EQ(e->reason, MigrateReason::kNumaMisplaced);
  EXPECT_EQ(e->target_pfn, 32u);
  e = ParseReplayLine(R"({"kind":"migrate","pfn":16})");
  ASSERT_TRUE(e.ok());
  EXPECT_EQ(e->reason, MigrateReason::kCompaction);
  EXPECT_FALSE(e->target_pfn.has_value());
}

TEST(ParseReplayLineTest, Malformed) {
  struct Case {
    const char* line;
    const char* message;
  };
  for (const Case& c : std::vector<Case>{
           {R"({"kind":"alloc")", "not JSON: "},
           {R"([1,2])", "not a JSON object"},
           // A number no double holds was an uncaught exception (found by the replay fuzzer).
           {R"({"kind":"alloc","stack":["a"],"ts_ns":41e3492990})",
            "not JSON: number overflow parsing '41e3492990'"},
           {R"({"order":1})", "missing field \"kind\""},
           {R"({"kind":3})", "field \"kind\" must be a string"},
           {R"({"kind":"malloc"})", "unknown kind \"malloc\" (alloc, free or migrate)"},
           {R"({"kind":"alloc","stack":["a"],"ordr":1})", "unknown field \"ordr\""},
           {R"({"kind":"free","pfn":1,"gfp":"0xcc0"})", "field \"gfp\" does not apply to free"},
           {R"({"kind":"alloc","stack":["a"],"reason":"compaction"})",
            "field \"reason\" does not apply to alloc"},
           {R"({"kind":"alloc","stack":["a"],"order":-1})", "field \"order\" must not be negative"},
           {R"({"kind":"alloc","stack":["a"],"order":1.5})", "field \"order\" must be an integer"},
           {R"({"kind":"alloc","stack":["a"],"order":true})",
            "field \"order\" must be a number or a string"},
           {R"({"kind":"alloc","stack":["a"],"pfn":"12z"})",
            "field \"pfn\": '12z' is not a decimal or 0x hex number"},
           {R"({"kind":"alloc","stack":["a"],"gfp":"GFP_KERNAL"})", "field \"gfp\": "},
           {R"({"kind":"alloc","stack":["a"],"gfp":4294967296})",
            "field \"gfp\" is above 4294967295"},
           {R"({"kind":"alloc","stack":["a"],"pid":4294967296})", "field \"pid\" is out of range"},
           {R"({"kind":"alloc","stack":["a"],"pid":"1"})", "field \"pid\" must be an integer"},
           {R"({"kind":"alloc","stack":["a"],"comm":5})", "field \"comm\" must be a string"},
           {R"({"kind":"alloc"})", "an alloc needs a non-empty \"stack\""},
           {R"({"kind":"alloc","stack":[]})", "an alloc needs a non-empty \"stack\""},
           {R"({"kind":"alloc","stack":"a"})", "field \"stack\" must be an array of frames"},
           {R"({"kind":"alloc","stack":["a",""]})", "stack frame 1 is empty"},
           {R"({"kind":"alloc","stack":[{"ip":1,"name":"x"}]})",
            "stack frame 0: unknown field \"name\""},
           {R"({"kind":"alloc","stack":[{}]})", "stack frame 0 has neither ip nor sym"},
           {R"({"kind":"alloc","stack":[null]})", "stack frame 0 must be a string"},
           {R"({"kind":"alloc","stack":["0x0"]})", "stack frame 0: address 0"},
           {R"({"kind":"free","order":0})", "a free needs field \"pfn\""},
           {R"({"kind":"migrate","pfn":1,"reason":"boredom"})",
            "unknown migrate reason \"boredom\""},
       }) {
    absl::StatusOr<ReplayEvent> e = ParseReplayLine(c.line);
    ASSERT_FALSE(e.ok()) << c.line;
    EXPECT_EQ(e.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_TRUE(absl::StartsWith(e.status().message(), c.message))
        << c.line << " -> " << e.status().message();
  }
}

// ---- Commands against the fake service ----

class CommandsTest : public ::testing::Test {
 protected:
  CommandsTest()
      : machine_(MachineOptions{.pages = PageCount(1 << 14)}),
        server_(&service_),
        client_(server_.channel()) {
    service_.set_machine(&machine_);
    service_.set_chunk_pages(7);
  }

  // A few thousand workload events applied to the machine directly, with symbol names.
  void Populate() {
    Workload w(WorkloadOptions{.pages = 1 << 14, .stacks = 40, .depth = 8, .fill = 0.5, .seed = 3});
    for (uint32_t s = 0; s < w.num_stacks(); ++s) {
      for (uint64_t ip : w.frames(s)) machine_.symbols().Register(ip, Workload::SymbolName(ip));
    }
    for (int i = 0; i < 3000; ++i) {
      const WorkloadEvent e = w.Next();
      const EventResult r = machine_.Apply(w.ToMachineEvent(e));
      w.Observe(e, r.status.ok(), r.pfn);
    }
  }

  Ran Run(const std::function<int(Io)>& command, const std::string& input = "") {
    std::istringstream in(input);
    std::ostringstream out, err;
    const int code = command(Io{in, out, err});
    return {code, out.str(), err.str()};
  }

  Machine machine_;
  FakePageOwner service_;
  FakeServer server_;
  client::Client client_;
};

TEST_F(CommandsTest, DumpIsTheKernelsTextForEveryBlock) {
  Populate();
  const Ran r = Run([&](Io io) { return RunDump(client_, io); });
  EXPECT_EQ(r.code, kExitOk) << r.err;
  const std::string expected = PageOwnerText(machine_, DumpFormat::kToday);
  EXPECT_GT(expected.size(), 10000u);
  EXPECT_EQ(r.out, expected);
  EXPECT_EQ(r.err, "");
}

TEST_F(CommandsTest, PagePrintsTheBlockDumpPrints) {
  Populate();
  std::vector<PageOwner> blocks;
  machine_.ForEachOwnedBlock(Pfn(0), [&](const PageOwner& p) {
    blocks.push_back(p);
    return true;
  });
  ASSERT_GT(blocks.size(), 100u);
  int tails = 0;
  for (size_t i = 0; i < blocks.size(); i += 37) {
    const PageOwner& b = blocks[i];
    std::string expected;
    AppendPageOwnerBlock(b, machine_.depot().Fetch(b.handle), machine_.symbols(),
                         DumpFormat::kToday, &expected);
    // The head, and the last page of the block.
    for (Pfn pfn : {b.pfn, b.pfn + PageCount(b.order.pages().raw() - 1)}) {
      const Ran r = Run([&](Io io) { return RunPage(client_, {pfn, false}, io); });
      EXPECT_EQ(r.code, kExitOk) << r.err;
      EXPECT_EQ(r.out, expected) << "pfn " << pfn.raw();
      tails += pfn != b.pfn;
    }
  }
  EXPECT_GT(tails, 0);
}

TEST_F(CommandsTest, PageOfAFreePageIsDumpPageOwner) {
  Populate();
  // The last page is free on a half-full machine; find a freed page that keeps an owner.
  std::optional<Pfn> freed;
  for (uint64_t pfn = 0; pfn < (1 << 14) && !freed; ++pfn) {
    absl::StatusOr<PageOwner> p = machine_.PageRecord(Pfn(pfn));
    if (p.ok() && p->owner && !p->allocated && p->free_handle.valid()) freed = Pfn(pfn);
  }
  ASSERT_TRUE(freed.has_value());
  const Ran r = Run([&](Io io) { return RunPage(client_, {*freed, false}, io); });
  EXPECT_EQ(r.code, kExitOk);
  EXPECT_EQ(r.out, *DumpPageOwner(machine_, *freed));
  EXPECT_TRUE(absl::StartsWith(r.out, "page_owner tracks the page as freed\n")) << r.out;
}

TEST_F(CommandsTest, PageErrorsAndJson) {
  Populate();
  Ran r = Run([&](Io io) { return RunPage(client_, {Pfn(1 << 20), false}, io); });
  EXPECT_EQ(r.code, kExitServerError);
  EXPECT_TRUE(absl::StartsWith(r.err, "pageowner: OUT_OF_RANGE: ")) << r.err;
  EXPECT_EQ(r.out, "");

  std::vector<PageOwner> blocks;
  machine_.ForEachOwnedBlock(Pfn(0), [&](const PageOwner& p) {
    blocks.push_back(p);
    return blocks.size() < 10;
  });
  r = Run([&](Io io) { return RunPage(client_, {blocks.back().pfn, true}, io); });
  EXPECT_EQ(r.code, kExitOk);
  const nlohmann::json j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["page"]["pfn"], blocks.back().pfn.raw());  // a number: below 2^53
  // comm travels as bytes, and prints as the readable text it is.
  EXPECT_EQ(j["page"]["comm"], blocks.back().comm);
  EXPECT_TRUE(absl::StartsWith(j["alloc_stack"]["frames"][0]["ip"].get<std::string>(), "0x"));
  EXPECT_EQ(j["alloc_stack"]["content_id"].get<std::string>().size(), 18u);
  EXPECT_EQ(j["page"]["allocated"], true);
  EXPECT_EQ(j["alloc_stack"]["handle"], blocks.back().handle.raw());
}

TEST_F(CommandsTest, StacksIsShowStacks) {
  Populate();
  for (int64_t threshold : {0, 5, 40}) {
    for (bool handles : {false, true}) {
      const Ran r = Run([&](Io io) {
        return RunStacks(
            client_, {.threshold = threshold, .top = 0, .sort = "newest", .handles = handles}, io);
      });
      EXPECT_EQ(r.code, kExitOk);
      if (!handles) {
        EXPECT_EQ(r.out, ShowStacksText(machine_, threshold, StacksView::kStacks));
        continue;
      }
      // show_stacks_handles with our content_id and nr_base_pages lines under each handle line.
      std::string expected;
      machine_.depot().ForEachOwnerStack([&](const StackUsage& s) {
        if (s.pages < 1 || s.pages < threshold) return;
        AppendStackEntry(s, machine_.symbols(), StacksView::kStacksHandles, &expected);
        expected.insert(expected.size() - 1,
                        absl::StrFormat("content_id: 0x%016x\nnr_base_pages: %d\n",
                                        StackContentId(s.frames, machine_.symbols()), s.pages));
      });
      EXPECT_EQ(r.out, expected);
      EXPECT_EQ(std::regex_replace(
                    r.out, std::regex("content_id: 0x[0-9a-f]{16}\nnr_base_pages: [0-9]+\n"), ""),
                ShowStacksText(machine_, threshold, StacksView::kStacksHandles));
    }
  }
  // By pages, the first entry owns the most.
  const Ran top = Run([&](Io io) {
    return RunStacks(client_, {.threshold = 0, .top = 1, .sort = "pages", .handles = false}, io);
  });
  int64_t most = 0;
  machine_.depot().ForEachOwnerStack([&](const StackUsage& s) { most = std::max(most, s.pages); });
  EXPECT_TRUE(absl::EndsWith(top.out, absl::StrCat("\nnr_base_pages: ", most, "\n\n"))) << top.out;
  EXPECT_EQ(std::count(top.out.begin(), top.out.end(), ':'), 1);
}

TEST_F(CommandsTest, Stack) {
  Populate();
  std::optional<StackUsage> some;
  machine_.depot().ForEachOwnerStack([&](const StackUsage& s) {
    if (!some && s.pages > 0) some = s;
  });
  ASSERT_TRUE(some.has_value());
  Ran r = Run([&](Io io) { return RunStack(client_, {some->handle, false}, io); });
  EXPECT_EQ(r.code, kExitOk);
  std::string expected;
  for (uint64_t ip : some->frames) absl::StrAppend(&expected, " ", Workload::SymbolName(ip), "\n");
  absl::StrAppend(
      &expected, "handle: ", some->handle.raw(), "\n",
      absl::StrFormat("content_id: 0x%016x\n", StackContentId(some->frames, machine_.symbols())),
      "nr_base_pages: ", some->pages, "\nallocations: ", some->allocations, "\n");
  EXPECT_EQ(r.out, expected);

  r = Run([&](Io io) { return RunStack(client_, {StackHandle(7), false}, io); });
  EXPECT_EQ(r.code, kExitServerError);
  EXPECT_EQ(r.err, "pageowner: NOT_FOUND: stack handle 7 is unknown\n");
}

TEST_F(CommandsTest, Stats) {
  Populate();
  Ran r = Run([&](Io io) { return RunStats(client_, {false}, io); });
  EXPECT_EQ(r.code, kExitOk);
  EXPECT_TRUE(absl::StartsWith(r.out, "total_pages: 16384\n")) << r.out;
  EXPECT_TRUE(absl::StrContains(r.out, "\ntracking: true\n")) << r.out;
  EXPECT_TRUE(absl::StrContains(r.out, "\nfree_blocks_movable: ")) << r.out;
  // The fake serves stats through the daemon's own code, metadata included: two decimals.
  EXPECT_TRUE(absl::StrContains(
      r.out, absl::StrFormat("\nmetadata_bytes_per_page: %.2f\n",
                             static_cast<double>(machine_.MemoryUsage().total()) / 16384)))
      << r.out;
  EXPECT_TRUE(absl::StrContains(r.out, "\n\n" + StackDepotStatsText(machine_.depot().stats())))
      << r.out;
  EXPECT_TRUE(absl::EndsWith(r.out, "\n\n" + MixedBlocksText(machine_.MixedBlocks()))) << r.out;
  r = Run([&](Io io) { return RunStats(client_, {true}, io); });
  EXPECT_EQ(r.code, kExitOk);
  EXPECT_EQ(nlohmann::json::parse(r.out)["total_pages"], 16384);
}

TEST_F(CommandsTest, ReplayReportsBadLinesAndFailedEventsByLineNumber) {
  // The fake fails the event it is told is at pfn 0x2000.
  service_.set_answer([](const v1::EventBatch& b, v1::BatchResult* r) {
    for (int i = 0; i < b.kind_size(); ++i) {
      const bool fail = b.pfn_size() && b.pfn(i) == 0x2000;
      r->add_event_code(fail ? static_cast<int>(grpc::StatusCode::FAILED_PRECONDITION) : 0);
      r->add_event_pfn(fail ? 0 : 0x1000 + i);
      r->add_event_handle(fail ? 0 : 1);
      if (fail) (*r->mutable_event_message())[i] = "pfn 0x2000 is free";
    }
  });
  const std::string input =
      "# a comment, then a blank line\n"
      "\n"
      R"({"kind":"alloc","gfp":"GFP_KERNEL","pid":1,"comm":"init","stack":["a+0x1/0x10","b+0x2/0x20"]})"
      "\n"
      R"({"kind":"alloc","gfp":"GFP_KERNEL","pid":1,"comm":"init","stack":["a+0x1/0x10","b+0x2/0x20"]})"
      "\n"
      "{not json\n"
      R"({"kind":"free","pfn":"0x2000"})"
      "\n"
      R"({"kind":"alloc"})"
      "\n"
      R"({"kind":"migrate","pfn":"0x1000","reason":"compaction"})"
      "\r\n";
  const Ran r =
      Run([&](Io io) { return RunReplay(client_, {.file = "-", .batch = 2}, io); }, input);
  // One event refused of four: partial failure is exit 1.
  EXPECT_EQ(r.code, kExitServerError) << r.err;
  EXPECT_TRUE(absl::StrContains(r.err, "pageowner: replay: the daemon refused 1 of 4 events\n"))
      << r.err;
  EXPECT_TRUE(absl::StrContains(r.err, "replay: line 5: not JSON: ")) << r.err;
  EXPECT_TRUE(absl::StrContains(r.err, "replay: line 7: an alloc needs a non-empty \"stack\"\n"))
      << r.err;
  EXPECT_TRUE(absl::StrContains(r.err, "replay: line 6: FAILED_PRECONDITION: pfn 0x2000 is free\n"))
      << r.err;
  EXPECT_EQ(r.out,
            "replay: 4 events, 2 bad lines skipped\n"
            "results: OK 3, FAILED_PRECONDITION 1\n");
  // Two batches of two; the stack and the task went once.
  const auto batches = service_.batches();
  ASSERT_EQ(batches.size(), 2u);
  EXPECT_EQ(batches[0].kind_size(), 2);
  EXPECT_EQ(batches[0].stacks_size(), 1);
  EXPECT_EQ(batches[0].stacks(0).frames(1).symbol(), "b+0x2/0x20");
  EXPECT_EQ(batches[0].tasks_size(), 1);
  EXPECT_EQ(batches[0].gfp_mask(0), 0xcc0u);
  EXPECT_EQ(batches[1].kind(1), v1::EVENT_KIND_MIGRATE);
  EXPECT_EQ(batches[1].reason(1), v1::MIGRATE_REASON_COMPACTION);
}

TEST_F(CommandsTest, LoadDrivesTheWorkloadAndReportsItsRate) {
  const Ran r = Run([&](Io io) {
    return RunLoad(client_, {.events = 5000, .stacks = 100, .fill = 0.5, .seed = 1, .batch = 512},
                   io);
  });
  EXPECT_EQ(r.code, kExitOk) << r.err;
  EXPECT_TRUE(absl::StartsWith(r.out, "load: results: OK 5000\nload: 5000 events in ")) << r.out;
  EXPECT_TRUE(absl::EndsWith(r.out, " events/s\n")) << r.out;
  int events = 0;
  int stack_defs = 0;
  for (const auto& b : service_.batches()) {
    events += b.kind_size();
    stack_defs += b.stacks_size();
  }
  EXPECT_EQ(events, 5000);
  EXPECT_LE(stack_defs, 116);  // 100 allocation stacks and 16 free stacks, each at most once
}

// ---- Issue 16 ----

TEST(JsonOutTest, BytesAreReadableAndNumbersAreNumbers) {
  EXPECT_EQ(BytesToJsonText("kworker/0:1"), "kworker/0:1");
  EXPECT_EQ(BytesToJsonText("caf\xc3\xa9"), "caf\xc3\xa9");  // valid UTF-8 as is
  EXPECT_EQ(BytesToJsonText(std::string("a\xff\xc3(b\\", 6)), "a\\xff\\xc3(b\\x5c");
  EXPECT_EQ(BytesToJsonText(std::string("\xed\xa0\x80", 3)), "\\xed\\xa0\\x80");  // a surrogate
  v1::Stats stats;
  stats.set_total_pages(uint64_t{1} << 53);
  stats.set_free_pages((uint64_t{1} << 53) + 1);
  const nlohmann::json j = nlohmann::json::parse(MessageToReadableJson(stats));
  EXPECT_EQ(j["total_pages"], uint64_t{1} << 53);
  EXPECT_EQ(j["free_pages"], "9007199254740993");
  EXPECT_EQ(j["tracking"], false);
  EXPECT_EQ(j["free_blocks_movable"], nlohmann::json::array());
  v1::Frame frame;
  frame.set_ip(0xffffffff81234567);
  frame.set_symbol("f+0x1/0x2");
  EXPECT_EQ(MessageToReadableJson(frame),
            "{\n  \"ip\": \"0xffffffff81234567\",\n  \"symbol\": \"f+0x1/0x2\"\n}\n");
}

TEST(CliChecksTest, ServerTargetsAndNearestCommand) {
  EXPECT_EQ(*ServerTarget("localhost"), "localhost:50051");
  EXPECT_EQ(*ServerTarget("10.0.0.1:7"), "10.0.0.1:7");
  EXPECT_EQ(*ServerTarget("[::1]"), "[::1]:50051");
  EXPECT_EQ(*ServerTarget("unix:/run/p.sock"), "unix:/run/p.sock");
  EXPECT_EQ(ServerTarget("http://h:1").status().message(),
            "--server wants HOST:PORT, not a URL: 'http://h:1'");
  EXPECT_FALSE(ServerTarget("h:99999").ok());
  EXPECT_FALSE(ServerTarget("50051").ok());
  EXPECT_FALSE(ServerTarget(":50051").ok());
  const std::vector<std::string_view> names = {"page", "stack", "stacks", "stats", "dump"};
  EXPECT_EQ(NearestName("stat", names), "stats");
  EXPECT_EQ(NearestName("pages", names), "page");
  EXPECT_EQ(NearestName("frobnicate", names), "");
  const Ran r = RunArgs({"--version"});
  EXPECT_EQ(r.code, kExitOk);
  EXPECT_TRUE(absl::StartsWith(r.out, "pageowner 0.")) << r.out;
  absl::StatusOr<CommandLine> line = ParseCommandLine({"stat"});
  EXPECT_TRUE(absl::StartsWith(line.status().message(),
                               "unknown command 'stat' (did you mean 'stats'?)\n"));
}

// A stream whose every write fails, as on a full disk.
class FullBuf : public std::streambuf {
 protected:
  int_type overflow(int_type) override {
    errno = ENOSPC;
    return traits_type::eof();
  }
  std::streamsize xsputn(const char*, std::streamsize) override {
    errno = ENOSPC;
    return 0;
  }
};

TEST_F(CommandsTest, WriteErrorsExitThree) {
  Populate();
  FullBuf buf;
  std::ostream full(&buf);
  std::istringstream in;
  std::ostringstream err;
  EXPECT_EQ(RunDump(client_, Io{in, full, err}), kExitWriteError);
  EXPECT_EQ(err.str(), "pageowner: cannot write the output: No space left on device\n");
  err.str("");
  full.clear();
  EXPECT_EQ(FinishOutput(Io{in, full, err}, RunStats(client_, {false}, Io{in, full, err})),
            kExitWriteError);
  EXPECT_EQ(err.str(), "pageowner: cannot write the output: No space left on device\n");
}

TEST_F(CommandsTest, StacksJsonAndAllocations) {
  Populate();
  Ran r = Run([&](Io io) {
    return RunStacks(client_, {.threshold = 0, .top = 2, .sort = "allocs", .handles = false}, io);
  });
  EXPECT_EQ(r.code, kExitOk);
  std::vector<int64_t> allocations;
  machine_.depot().ForEachOwnerStack([&](const StackUsage& s) {
    if (s.pages >= 1) allocations.push_back(static_cast<int64_t>(s.allocations));
  });
  std::sort(allocations.rbegin(), allocations.rend());
  EXPECT_TRUE(absl::StrContains(r.out, absl::StrCat("\nallocations: ", allocations[0], "\n\n")))
      << r.out;
  EXPECT_TRUE(absl::EndsWith(r.out, absl::StrCat("\nallocations: ", allocations[1], "\n\n")))
      << r.out;
  r = Run([&](Io io) {
    return RunStacks(client_, {.threshold = 0, .top = 3, .sort = "pages", .json = true}, io);
  });
  EXPECT_EQ(r.code, kExitOk);
  const nlohmann::json j = nlohmann::json::parse(r.out);
  ASSERT_EQ(j["stacks"].size(), 3u);
  EXPECT_TRUE(j["stacks"][0]["pages"].is_number());
  EXPECT_TRUE(j["stacks"][0]["frames"][0]["symbol"].get<std::string>().rfind("func_", 0) == 0);
}

TEST_F(CommandsTest, LoadRefusedEventsAreExitOneAndCtrlCIs130) {
  // Every third event refused.
  service_.set_answer([](const v1::EventBatch& b, v1::BatchResult* r) {
    for (int i = 0; i < b.kind_size(); ++i) {
      const bool fail = i % 3 == 0;
      r->add_event_code(fail ? static_cast<int>(grpc::StatusCode::RESOURCE_EXHAUSTED) : 0);
      r->add_event_pfn(fail ? 0 : 0x1000 + i);
      r->add_event_handle(fail ? 0 : 1);
    }
  });
  Ran r = Run([&](Io io) {
    return RunLoad(client_, {.events = 3000, .stacks = 10, .fill = 0.5, .seed = 1, .batch = 300},
                   io);
  });
  EXPECT_EQ(r.code, kExitServerError);
  EXPECT_EQ(r.err, "pageowner: load: the daemon refused 1000 of 3000 events\n");

  service_.set_answer([](const v1::EventBatch& b, v1::BatchResult* r) {
    for (int i = 0; i < b.kind_size(); ++i) {
      r->add_event_code(0);
      r->add_event_pfn(0x1000 + i);
      r->add_event_handle(1);
    }
  });
  std::thread interrupter([&] {
    ASSERT_TRUE(service_.AwaitBatchesReceived(20, absl::Seconds(30)));
    kill(getpid(), SIGINT);
  });
  r = Run([&](Io io) {
    return RunLoad(client_, {.events = uint64_t{1} << 40, .stacks = 10, .batch = 64}, io);
  });
  interrupter.join();
  EXPECT_EQ(r.code, kExitInterrupted);
  EXPECT_TRUE(std::regex_search(
      r.out, std::regex("\nload: interrupted after ([0-9]+) of 1099511627776 events: \\1 applied, "
                        "0 not\n$")))
      << r.out;
}

}  // namespace
}  // namespace pageowner::cli
