#include "server/viz_http.h"

#include <algorithm>
#include <cstring>
#include <map>
#include <optional>
#include <string>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "core/content_id.h"
#include "core/memory_map.h"
#include "core/queries.h"
#include "core/strings.h"
#include "nlohmann/json.hpp"
#include "server/pprof.h"
#include "server/web_assets.h"

namespace pageowner::server {
namespace {

using Params = std::map<std::string, std::string>;

HttpReply MakeReply(std::string content_type, std::string body, int status = 200) {
  HttpReply r;
  r.status = status;
  r.content_type = std::move(content_type);
  r.body = std::move(body);
  return r;
}

HttpReply BadRequest(const absl::Status& status) {
  return MakeReply("text/plain; charset=utf-8", absl::StrCat(status.message(), "\n"), 400);
}

// The value of `name` as an unsigned number, or `fallback` when absent.
absl::StatusOr<uint64_t> Number(const Params& params, const std::string& name, uint64_t fallback) {
  auto it = params.find(name);
  if (it == params.end()) return fallback;
  uint64_t v = 0;
  const std::string& text = it->second;
  const bool ok = text.size() > 2 && text[0] == '0' && (text[1] == 'x' || text[1] == 'X')
                      ? absl::SimpleHexAtoi(text.substr(2), &v)
                      : absl::SimpleAtoi(text, &v);
  if (!ok) return absl::InvalidArgumentError(absl::StrCat("bad ", name, ": ", text));
  return v;
}

std::string Json(const nlohmann::json& j) {
  // Comm and symbols are the kernel's raw bytes: invalid UTF-8 becomes U+FFFD.
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

HttpReply JsonReply(const nlohmann::json& j) { return MakeReply("application/json", Json(j)); }

std::string Hex64(uint64_t v) { return absl::StrFormat("0x%016x", v); }

// What a walk cost: wall time, lock holds and the longest hold.
struct WalkCost {
  absl::Time start = absl::Now();
  uint64_t holds = 0;
  absl::Duration max_hold;
  template <typename Fn>
  void Hold(const SharedMachine& machine, Fn&& fn) {
    machine.Read([&](const Machine& m) {
      const absl::Time t = absl::Now();
      fn(m);
      max_hold = std::max(max_hold, absl::Now() - t);
    });
    ++holds;
  }
  void AddHeaders(HttpReply* r) const {
    r->headers.emplace_back("X-Pageowner-Walk-Us",
                            absl::StrCat(absl::ToInt64Microseconds(absl::Now() - start)));
    r->headers.emplace_back("X-Pageowner-Lock-Holds", absl::StrCat(holds));
    r->headers.emplace_back("X-Pageowner-Max-Hold-Us",
                            absl::StrCat(absl::ToInt64Microseconds(max_hold)));
  }
};

void Put32(std::string* out, uint32_t v) {
  char b[4];
  for (int i = 0; i < 4; ++i) b[i] = static_cast<char>(v >> (8 * i));
  out->append(b, 4);
}
void Put64(std::string* out, uint64_t v) {
  Put32(out, static_cast<uint32_t>(v));
  Put32(out, static_cast<uint32_t>(v >> 32));
}

HttpReply Profile(const SharedMachine& machine, const Params& params) {
  PageFilter filter;
  if (params.count("pid")) {
    int32_t pid = 0;
    if (!absl::SimpleAtoi(params.at("pid"), &pid)) {
      return BadRequest(absl::InvalidArgumentError("bad pid: " + params.at("pid")));
    }
    filter.pid = pid;
  }
  if (params.count("comm")) filter.comm = params.at("comm");
  if (params.count("order")) {
    absl::StatusOr<uint64_t> order = Number(params, "order", 0);
    if (!order.ok()) return BadRequest(order.status());
    if (*order > static_cast<uint64_t>(kMaxOrder)) {
      return BadRequest(absl::InvalidArgumentError(
          absl::StrCat("order ", *order, " is above the maximum order ", kMaxOrder)));
    }
    filter.order = Order(static_cast<unsigned>(*order));
  }
  HttpReply r = MakeReply("application/octet-stream", BuildPprof(machine, filter));
  r.headers.emplace_back("Content-Disposition", "attachment; filename=\"heap.pb.gz\"");
  return r;
}

HttpReply Asset(std::string_view name, std::string_view content_type) {
  for (size_t i = 0; i < kNumWebAssets; ++i) {
    if (kWebAssets[i].name == name) {
      HttpReply r = MakeReply(std::string(content_type), std::string(kWebAssets[i].bytes));
      r.headers.emplace_back("Cache-Control", "no-cache");
      return r;
    }
  }
  return MakeReply("text/plain; charset=utf-8", "not built in\n", 404);
}

HttpReply Map(const SharedMachine& machine, const Params& params) {
  MapRequest req;
  absl::StatusOr<MapColoring> coloring =
      ParseMapColoring(params.count("by") ? params.at("by") : "stack");
  if (!coloring.ok()) return BadRequest(coloring.status());
  req.coloring = *coloring;
  const uint64_t total = machine.total_pages().raw();
  absl::StatusOr<uint64_t> start = Number(params, "start", 0);
  absl::StatusOr<uint64_t> end = Number(params, "end", total);
  absl::StatusOr<uint64_t> cell = Number(params, "cell", 1);
  for (const auto* s : {&start, &end, &cell}) {
    if (!s->ok()) return BadRequest(s->status());
  }
  req.start = Pfn(*start);
  req.end = Pfn(*end);
  req.pages_per_cell = *cell;
  absl::StatusOr<MemoryMapScan> scan = MemoryMapScan::Create(machine.total_pages(), req);
  if (!scan.ok()) return BadRequest(scan.status());
  WalkCost cost;
  while (!scan->done()) {
    cost.Hold(machine, [&](const Machine& m) { scan->Step(m, kVizBlocksPerHold); });
  }
  const MemoryMap map = scan->Finish();
  std::string out = "POMAP001";
  Put64(&out, map.request.start.raw());
  Put64(&out, map.request.end.raw());
  Put64(&out, map.request.pages_per_cell);
  Put32(&out, static_cast<uint32_t>(map.request.coloring));
  Put32(&out, static_cast<uint32_t>(map.cells.size()));
  std::string runs;
  uint32_t nruns = 0;
  absl::flat_hash_set<uint32_t> handles;
  for (size_t i = 0; i < map.cells.size();) {
    size_t j = i;
    while (j < map.cells.size() && map.cells[j] == map.cells[i]) ++j;
    Put32(&runs, map.cells[i]);
    Put32(&runs, static_cast<uint32_t>(j - i));
    ++nruns;
    if (map.request.coloring == MapColoring::kStack && map.cells[i] != kFreeCell) {
      handles.insert(map.cells[i]);
    }
    i = j;
  }
  Put32(&out, nruns);
  out += runs;
  Put32(&out, static_cast<uint32_t>(map.mixed_pageblocks.size()));
  for (uint64_t pb : map.mixed_pageblocks) Put32(&out, static_cast<uint32_t>(pb));
  // Content ids read the depot and the symbols, both thread-safe without the machine's lock.
  std::vector<uint32_t> sorted(handles.begin(), handles.end());
  std::sort(sorted.begin(), sorted.end());
  Put32(&out, static_cast<uint32_t>(sorted.size()));
  const StackDepot& depot =
      machine.Read([](const Machine& m) -> const StackDepot& { return m.depot(); });
  for (uint32_t h : sorted) {
    Put32(&out, h);
    Put64(&out, StackContentId(depot.Fetch(StackHandle(h)), machine.symbols()));
  }
  HttpReply r = MakeReply("application/octet-stream", std::move(out));
  cost.AddHeaders(&r);
  return r;
}

nlohmann::json StackJson(const StackUsage& s, const SymbolTable& symbols) {
  nlohmann::json frames = nlohmann::json::array();
  for (uint64_t ip : s.frames) frames.push_back(symbols.FormatFrame(ip));
  return {{"handle", s.handle.raw()},
          {"content_id", Hex64(StackContentId(s.frames, symbols))},
          {"pages", s.pages},
          {"allocations", s.allocations},
          {"frames", std::move(frames)}};
}

HttpReply Summary(const SharedMachine& machine, const Params& params) {
  absl::StatusOr<uint64_t> top = Number(params, "top", 500);
  if (!top.ok()) return BadRequest(top.status());
  nlohmann::json j;
  std::vector<StackUsage> stacks;
  machine.Read([&](const Machine& m) {
    const BuddyAllocator& a = m.allocator();
    j["total_pages"] = m.total_pages().raw();
    j["pageblock_pages"] = uint64_t{1} << kPageblockOrder;
    j["max_order"] = kMaxOrder;
    j["free_pages"] = a.free_pages().raw();
    j["allocated_pages"] = a.allocated_pages().raw();
    j["tracked_pages"] = m.tracked_pages().raw();
    j["tracking"] = m.tracking();
    j["special"] = {{"early", m.early_handle().raw()},
                    {"dummy", m.dummy_handle().raw()},
                    {"failure", m.failure_handle().raw()}};
    nlohmann::json pools = nlohmann::json::array();
    for (Pfn p : m.depot_pool_pfns()) pools.push_back(p.raw());
    j["depot_pool_pfns"] = std::move(pools);
    j["age_shift"] = kAgeShift;
    j["migratetypes"] = {"Unmovable", "Movable", "Reclaimable", "HighAtomic", "CMA", "Isolate"};
    stacks = StacksOwning(m.depot(), 1);
  });
  // show_stacks' order (newest first) among equals, most pages first.
  j["stacks_owning"] = stacks.size();
  OrderStacks(StackOrder::kPages, *top, &stacks);
  nlohmann::json list = nlohmann::json::array();
  for (const StackUsage& s : stacks) list.push_back(StackJson(s, machine.symbols()));
  j["stacks"] = std::move(list);
  return JsonReply(j);
}

HttpReply Page(const SharedMachine& machine, const Params& params) {
  if (!params.count("pfn")) return BadRequest(absl::InvalidArgumentError("pfn missing"));
  absl::StatusOr<uint64_t> pfn = Number(params, "pfn", 0);
  if (!pfn.ok()) return BadRequest(pfn.status());
  nlohmann::json j;
  const absl::Status status = machine.Read([&](const Machine& m) -> absl::Status {
    absl::StatusOr<PageReport> r = QueryPage(m, Pfn(*pfn));
    if (!r.ok()) return r.status();
    const PageOwner& p = r->owner;
    j["pfn"] = *pfn;
    j["block_head"] = r->block_head.raw();
    j["block_order"] = r->block_order.raw();
    j["allocated"] = p.allocated && p.owner;
    j["handle"] = p.handle.raw();
    j["pid"] = p.pid;
    j["comm"] = p.comm;
    j["pageblock"] = Pfn(*pfn).pageblock();
    j["pageblock_migratetype"] =
        std::string(MigrateTypeName(m.allocator().PageblockMigrateType(Pfn(*pfn).pageblock())));
    // What `pageowner page PFN` prints: the block, or dump_page_owner's lines for a page that
    // no allocated block owns.
    j["text"] = r->page_owner_text.empty() ? r->dump_page_owner_text : r->page_owner_text;
    if (r->alloc_stack.has_value()) j["stack"] = StackJson(*r->alloc_stack, m.symbols());
    return absl::OkStatus();
  });
  if (!status.ok()) return BadRequest(status);
  return JsonReply(j);
}

}  // namespace

std::vector<HttpRoute> VizRoutes(const SharedMachine* machine) {
  std::vector<HttpRoute> routes;
  routes.push_back(
      {"/debug/pprof/heap", [machine](const Params& p) { return Profile(*machine, p); }});
  routes.push_back(
      {"/", [](const Params&) { return Asset("index.html", "text/html; charset=utf-8"); }});
  routes.push_back({"/viz/app.js", [](const Params&) {
                      return Asset("app.js", "text/javascript; charset=utf-8");
                    }});
  routes.push_back({"/viz/map", [machine](const Params& p) { return Map(*machine, p); }});
  routes.push_back({"/viz/summary", [machine](const Params& p) { return Summary(*machine, p); }});
  routes.push_back({"/viz/page", [machine](const Params& p) { return Page(*machine, p); }});
  return routes;
}

}  // namespace pageowner::server
