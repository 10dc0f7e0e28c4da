#include "server/metrics.h"

#include <dirent.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <map>
#include <sstream>
#include <utility>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/string_view.h"
#include "absl/time/clock.h"
#include "core/build_info.h"
#include "core/strings.h"
#include "httplib.h"

namespace pageowner::server {
namespace {

// Debian's Abseil has its own string_view.

constexpr std::string_view kCodeNames[] = {
    "OK",        "CANCELLED",      "UNKNOWN",           "INVALID_ARGUMENT",   "DEADLINE_EXCEEDED",
    "NOT_FOUND", "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
    "ABORTED",   "OUT_OF_RANGE",   "UNIMPLEMENTED",     "INTERNAL",           "UNAVAILABLE",
    "DATA_LOSS", "UNAUTHENTICATED"};

constexpr std::string_view kEventKindNames[IngestCounters::kEventKinds] = {
    "alloc", "free", "migrate", "import", "other"};

constexpr MigrateType kListTypes[] = {MigrateType::kUnmovable, MigrateType::kMovable,
                                      MigrateType::kReclaimable};

// Escapes a label value: backslash, double quote and newline.
std::string EscapeLabel(std::string_view v) {
  std::string out;
  out.reserve(v.size());
  for (char c : v) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out.push_back(c);
    }
  }
  return out;
}

// Writes the exposition: a family header, then its samples.
class TextWriter {
 public:
  explicit TextWriter(std::string* out) : out_(out) {}

  // HELP text escapes backslash and newline.
  void Family(std::string_view name, std::string_view type, std::string_view help) {
    std::string escaped;
    for (char c : help) {
      if (c == '\\') {
        escaped += "\\\\";
      } else if (c == '\n') {
        escaped += "\\n";
      } else {
        escaped.push_back(c);
      }
    }
    absl::StrAppend(out_, "# HELP ", Sv(name), " ", escaped, "\n# TYPE ", Sv(name), " ", Sv(type),
                    "\n");
  }

  using Labels = std::initializer_list<std::pair<std::string_view, std::string_view>>;
  void Sample(std::string_view name, Labels labels, uint64_t value) {
    Name(name, labels);
    absl::StrAppend(out_, " ", value, "\n");
  }
  void Sample(std::string_view name, Labels labels, double value) {
    Name(name, labels);
    absl::StrAppend(out_, " ", absl::StrFormat("%.17g", value), "\n");
  }

 private:
  void Name(std::string_view name, Labels labels) {
    absl::StrAppend(out_, Sv(name));
    if (labels.size() == 0) return;
    out_->push_back('{');
    bool first = true;
    for (const auto& [k, v] : labels) {
      absl::StrAppend(out_, first ? "" : ",", Sv(k), "=\"", EscapeLabel(v), "\"");
      first = false;
    }
    out_->push_back('}');
  }
  std::string* const out_;
};

// process_start_time_seconds: the process's start from /proc/self/stat (field 22, clock ticks
// since boot) and the boot time from /proc/stat; now when they cannot be read.
double ProcessStartTimeSeconds() {
  const double now = absl::ToDoubleSeconds(absl::Now() - absl::UnixEpoch());
  std::ifstream stat("/proc/self/stat");
  std::string line;
  if (!std::getline(stat, line)) return now;
  // The command name (field 2) may hold spaces: fields after it start past the last ')'.
  const size_t paren = line.rfind(')');
  if (paren == std::string::npos) return now;
  std::istringstream rest(line.substr(paren + 2));
  std::string field;
  uint64_t start_ticks = 0;
  for (int i = 3; i <= 22 && rest >> field; ++i) {
    if (i == 22 && !absl::SimpleAtoi(field, &start_ticks)) return now;
  }
  std::ifstream proc_stat("/proc/stat");
  uint64_t btime = 0;
  while (std::getline(proc_stat, line)) {
    if (line.rfind("btime ", 0) == 0 && absl::SimpleAtoi(line.substr(6), &btime)) break;
  }
  const long ticks = sysconf(_SC_CLK_TCK);
  if (btime == 0 || start_ticks == 0 || ticks <= 0) return now;
  return static_cast<double>(btime) + static_cast<double>(start_ticks) / static_cast<double>(ticks);
}

// process_resident_memory_bytes from /proc/self/statm (resident pages, field 2); 0 when unread.
uint64_t ResidentBytes() {
  std::ifstream statm("/proc/self/statm");
  uint64_t size = 0, resident = 0;
  if (!(statm >> size >> resident)) return 0;
  return resident * static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
}

// process_cpu_seconds_total: user plus system time of every thread, from getrusage.
double CpuSeconds() {
  rusage u{};
  if (getrusage(RUSAGE_SELF, &u) != 0) return 0;
  const auto seconds = [](const timeval& t) {
    return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_usec) / 1e6;
  };
  return seconds(u.ru_utime) + seconds(u.ru_stime);
}

// process_open_fds: the entries of /proc/self/fd, less the one the count itself opens.
uint64_t OpenFds() {
  DIR* d = opendir("/proc/self/fd");
  if (d == nullptr) return 0;
  uint64_t n = 0;
  while (const dirent* e = readdir(d)) {
    if (e->d_name[0] != '.') ++n;
  }
  closedir(d);
  return n > 0 ? n - 1 : 0;
}

// process_max_fds: the soft RLIMIT_NOFILE.
uint64_t MaxFds() {
  rlimit r{};
  if (getrlimit(RLIMIT_NOFILE, &r) != 0) return 0;
  return static_cast<uint64_t>(r.rlim_cur);
}

// Everything Render reads of the machine, copied under the reader lock.
struct MachineSample {
  uint64_t total_pages = 0;
  uint64_t reserved_pages = 0;
  std::array<std::array<uint64_t, kMaxOrder + 1>, 3> allocated_pages{};
  std::array<std::array<uint64_t, kMaxOrder + 1>, 3> free_pages{};
  StackDepotStats depot;
  size_t depot_bytes = 0;
  uint64_t symbol_bytes = 0;
  size_t metadata_bytes = 0;
  MachineCounters counters;
};

class RpcInterceptor final : public grpc::experimental::Interceptor {
 public:
  RpcInterceptor(RpcMetrics* metrics, std::string_view method)
      : metrics_(metrics), method_(method), start_(absl::Now()) {}

  // A call that ends without sending a status (the client went away) counts as CANCELLED.
  ~RpcInterceptor() override {
    if (!sent_) {
      metrics_->Record(method_, static_cast<int>(grpc::StatusCode::CANCELLED),
                       absl::Now() - start_);
    }
  }

  // Counted before the status is sent, so that a client that has seen its call end finds it in
  // /metrics (the interceptor is destroyed only after that, when gRPC frees the call).
  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(
            grpc::experimental::InterceptionHookPoints::PRE_SEND_STATUS)) {
      sent_ = true;
      metrics_->Record(method_, static_cast<int>(methods->GetSendStatus().error_code()),
                       absl::Now() - start_);
    }
    methods->Proceed();
  }

 private:
  RpcMetrics* const metrics_;
  const std::string method_;
  const absl::Time start_;
  bool sent_ = false;
};

class RpcInterceptorFactory final : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  explicit RpcInterceptorFactory(RpcMetrics* metrics) : metrics_(metrics) {}
  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override {
    return new RpcInterceptor(metrics_, info->method() != nullptr ? info->method() : "");
  }

 private:
  RpcMetrics* const metrics_;
};

}  // namespace

std::string_view RpcCodeName(int code) {
  return code >= 0 && code < static_cast<int>(std::size(kCodeNames)) ? kCodeNames[code] : "UNKNOWN";
}

// ---- RpcMetrics ----

void RpcMetrics::Declare(std::string_view method) {
  if (!method.empty() && method.front() == '/') method.remove_prefix(1);
  absl::MutexLock lock(&mu_);
  if (methods_.size() < kMaxMethods) methods_.try_emplace(std::string(method));
}

void RpcMetrics::Record(std::string_view method, int code, absl::Duration duration) {
  if (!method.empty() && method.front() == '/') method.remove_prefix(1);
  if (code < 0 || code >= 17) code = static_cast<int>(grpc::StatusCode::UNKNOWN);
  const double seconds = absl::ToDoubleSeconds(duration);
  const size_t bucket =
      std::lower_bound(kBuckets.begin(), kBuckets.end(), seconds) - kBuckets.begin();
  absl::MutexLock lock(&mu_);
  auto it = methods_.find(Sv(method));
  if (it == methods_.end()) {
    it = methods_.try_emplace(methods_.size() < kMaxMethods ? std::string(method) : "other").first;
  }
  Method& m = it->second;
  ++m.codes[code];
  if (bucket < kBuckets.size()) ++m.buckets[bucket];
  m.sum_seconds += seconds;
  ++m.count;
}

void RpcMetrics::AppendTo(std::string* out) const {
  TextWriter w(out);
  absl::MutexLock lock(&mu_);
  w.Family("pageowner_rpc_requests_total", "counter",
           "Finished gRPC calls by method (service/Method) and status code.");
  for (const auto& [name, m] : methods_) {
    for (int code = 0; code < 17; ++code) {
      if (m.codes[code] == 0 && code != 0) continue;
      w.Sample("pageowner_rpc_requests_total", {{"method", name}, {"code", RpcCodeName(code)}},
               m.codes[code]);
    }
  }
  w.Family("pageowner_rpc_duration_seconds", "histogram",
           "Duration of gRPC calls by method, from the call's start to its status (for "
           "streaming calls the whole stream).");
  for (const auto& [name, m] : methods_) {
    uint64_t cumulative = 0;
    for (size_t i = 0; i < kBuckets.size(); ++i) {
      cumulative += m.buckets[i];
      const std::string le = absl::StrFormat("%g", kBuckets[i]);
      w.Sample("pageowner_rpc_duration_seconds_bucket", {{"method", name}, {"le", le}}, cumulative);
    }
    w.Sample("pageowner_rpc_duration_seconds_bucket", {{"method", name}, {"le", "+Inf"}}, m.count);
    w.Sample("pageowner_rpc_duration_seconds_sum", {{"method", name}}, m.sum_seconds);
    w.Sample("pageowner_rpc_duration_seconds_count", {{"method", name}}, m.count);
  }
}

std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface> NewRpcMetricsInterceptor(
    RpcMetrics* metrics) {
  return std::make_unique<RpcInterceptorFactory>(metrics);
}

// ---- MetricsExporter ----

MetricsExporter::MetricsExporter(const SharedMachine* machine, const IngestCounters* ingest,
                                 const RpcMetrics* rpcs, const AuthAudit* auth)
    : machine_(machine),
      ingest_(ingest),
      rpcs_(rpcs),
      auth_(auth),
      start_time_seconds_(ProcessStartTimeSeconds()) {
  refresher_ = std::thread([this] {
    for (;;) {
      RefreshMixedBlocks();
      absl::MutexLock lock(&mu_);
      const auto stopping = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stopping_; };
      if (mu_.AwaitWithTimeout(absl::Condition(&stopping), kMixedBlocksPeriod)) return;
    }
  });
}

MetricsExporter::~MetricsExporter() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  refresher_.join();
}

void MetricsExporter::RefreshMixedBlocks() {
  const std::vector<ZoneMixedBlocks> zones =
      machine_->Read([](const Machine& m) { return m.MixedBlocks(); });
  std::array<uint64_t, kNumMigrateTypes> sum{};
  for (const ZoneMixedBlocks& z : zones) {
    for (int mt = 0; mt < kNumMigrateTypes; ++mt) sum[mt] += z.count[mt];
  }
  absl::MutexLock lock(&mu_);
  mixed_blocks_ = sum;
}

std::string MetricsExporter::Render() const {
  MachineSample s = machine_->Read([](const Machine& m) {
    MachineSample s;
    const BuddyAllocator& a = m.allocator();
    s.total_pages = m.total_pages().raw();
    s.reserved_pages = m.reserved_pages().raw();
    for (int t = 0; t < 3; ++t) {
      for (unsigned k = 0; k <= static_cast<unsigned>(kMaxOrder); ++k) {
        s.allocated_pages[t][k] = a.AllocatedBlockCount(Order(k), kListTypes[t]) << k;
        s.free_pages[t][k] = a.FreeBlockCount(Order(k), kListTypes[t]) << k;
      }
    }
    s.depot = m.depot().stats();
    const MachineMemory memory = m.MemoryUsage();
    s.depot_bytes = memory.depot;
    s.symbol_bytes = m.symbols().name_bytes();
    s.metadata_bytes = memory.total();
    s.counters = m.counters();
    return s;
  });
  std::array<uint64_t, kNumMigrateTypes> mixed;
  {
    absl::MutexLock lock(&mu_);
    mixed = mixed_blocks_;
  }

  std::string out;
  out.reserve(16 << 10);
  TextWriter w(&out);
  w.Family("pageowner_events_total", "counter",
           "Events carried by Ingest streams, by kind (alloc, free, migrate, import; other: an "
           "unknown kind in a malformed batch) and the result code they were answered with.");
  for (int kind = 0; kind < IngestCounters::kEventKinds; ++kind) {
    for (int code = 0; code < IngestCounters::kCodes; ++code) {
      const uint64_t n = ingest_->events[kind][code].load(std::memory_order_relaxed);
      // The OK series of the three kinds exist from the start, so that rate() sees them begin.
      if (n == 0 && (code != 0 || kind == IngestCounters::kOtherKind)) continue;
      w.Sample("pageowner_events_total",
               {{"kind", kEventKindNames[kind]}, {"code", RpcCodeName(code)}}, n);
    }
  }
  const uint64_t batches = ingest_->batches.load(std::memory_order_relaxed);
  const uint64_t rejected = ingest_->batches_rejected.load(std::memory_order_relaxed);
  w.Family("pageowner_ingest_batches_total", "counter",
           "Ingest batches read, by result: ok, or rejected as malformed (nothing applied).");
  w.Sample("pageowner_ingest_batches_total", {{"result", "ok"}}, batches - rejected);
  w.Sample("pageowner_ingest_batches_total", {{"result", "rejected"}}, rejected);
  w.Family("pageowner_ingest_streams_open", "gauge", "Ingest streams open now.");
  w.Sample("pageowner_ingest_streams_open", {},
           ingest_->streams_open.load(std::memory_order_relaxed));
  w.Family("pageowner_ingest_streams_refused_total", "counter",
           "Ingest streams refused with RESOURCE_EXHAUSTED because --max_streams were open.");
  w.Sample("pageowner_ingest_streams_refused_total", {},
           ingest_->streams_refused.load(std::memory_order_relaxed));
  w.Family("pageowner_symbol_bytes", "gauge",
           "Bytes of frame names the daemon keeps (bounded by --max_symbol_bytes; a batch past "
           "it is refused with RESOURCE_EXHAUSTED, counted in pageowner_events_total).");
  w.Sample("pageowner_symbol_bytes", {}, s.symbol_bytes);

  w.Family("pageowner_memory_pages", "gauge", "Pages of 4 KiB in the simulated machine.");
  w.Sample("pageowner_memory_pages", {}, s.total_pages);
  w.Family("pageowner_memory_bytes", "gauge",
           "The simulated machine's memory in bytes (--memory): pages times 4096.");
  w.Sample("pageowner_memory_bytes", {}, s.total_pages * uint64_t{4096});
  w.Family("pageowner_allocated_pages", "gauge",
           "Allocated pages by block order and the migratetype the block was requested for.");
  for (int t = 0; t < 3; ++t) {
    for (unsigned k = 0; k <= static_cast<unsigned>(kMaxOrder); ++k) {
      w.Sample("pageowner_allocated_pages",
               {{"order", absl::StrCat(k)}, {"migratetype", MigrateTypeName(kListTypes[t])}},
               s.allocated_pages[t][k]);
    }
  }
  w.Family("pageowner_reserved_pages", "gauge",
           "Pages that are not RAM on the machine mirrored (holes, memblock-reserved memory, "
           "/proc/iomem gaps: record --kernel places them); counted in pageowner_allocated_pages "
           "(order and migratetype as placed), never handed out, never owned.");
  w.Sample("pageowner_reserved_pages", {}, s.reserved_pages);
  w.Family("pageowner_free_pages", "gauge",
           "Free pages by block order and free list (the pageblock's migratetype): free blocks "
           "times 2^order, as /proc/pagetypeinfo counts them.");
  for (int t = 0; t < 3; ++t) {
    for (unsigned k = 0; k <= static_cast<unsigned>(kMaxOrder); ++k) {
      w.Sample("pageowner_free_pages",
               {{"order", absl::StrCat(k)}, {"migratetype", MigrateTypeName(kListTypes[t])}},
               s.free_pages[t][k]);
    }
  }
  w.Family("pageowner_pageblocks_mixed", "gauge",
           "Pageblocks holding allocations of another migratetype, by the pageblock's "
           "migratetype, over all zones (pagetypeinfo's mixed blocks). Recomputed every 10 s "
           "by a walk of all pages, so up to 10 s stale.");
  for (int mt = 0; mt < kNumMigrateTypes; ++mt) {
    w.Sample("pageowner_pageblocks_mixed",
             {{"migratetype", MigrateTypeName(static_cast<MigrateType>(mt))}}, mixed[mt]);
  }

  w.Family("pageowner_depot_stacks", "gauge", "Distinct stacks stored in the stack depot.");
  w.Sample("pageowner_depot_stacks", {}, s.depot.persistent_count);
  w.Family("pageowner_depot_pools", "gauge", "Stack depot pools of 16 KiB in use.");
  w.Sample("pageowner_depot_pools", {}, uint64_t{s.depot.pools});
  w.Family("pageowner_depot_bytes", "gauge",
           "Heap bytes held by the stack depot: pools, pool table, hash table, owner list.");
  w.Sample("pageowner_depot_bytes", {}, uint64_t{s.depot_bytes});
  w.Family("pageowner_depot_truncated_stacks_total", "counter",
           "Stack saves cut to --stack_depth frames.");
  w.Sample("pageowner_depot_truncated_stacks_total", {}, s.depot.truncated);
  w.Family("pageowner_depot_failed_saves_total", "counter",
           "Stack saves that found no depot pool (the failure handle was used instead).");
  w.Sample("pageowner_depot_failed_saves_total", {}, s.depot.failed);
  w.Family("pageowner_special_handle_uses_total", "counter",
           "Allocations charged to page_owner's special handles: failure (the depot could not "
           "save) and dummy (page_owner's own recursive allocations).");
  w.Sample("pageowner_special_handle_uses_total", {{"handle", "failure"}},
           s.counters.failure_handle_uses);
  w.Sample("pageowner_special_handle_uses_total", {{"handle", "dummy"}},
           s.counters.dummy_handle_uses);
  w.Family("pageowner_early_pages_total", "counter",
           "Pages given the early handle when tracking was turned on.");
  w.Sample("pageowner_early_pages_total", {}, s.counters.early_handle_pages);
  w.Family("pageowner_repaired_events_total", "counter",
           "Trusted events (a real machine's) that found the daemon's picture wrong: alloc "
           "(over allocated pages, freed implicitly), free (not of exactly one allocated block), "
           "free_of_free (a range already free: OK, nothing changed).");
  w.Sample("pageowner_repaired_events_total", {{"kind", "alloc"}}, s.counters.repaired_allocs);
  w.Sample("pageowner_repaired_events_total", {{"kind", "free"}}, s.counters.repaired_frees);
  w.Sample("pageowner_repaired_events_total", {{"kind", "free_of_free"}}, s.counters.ignored_frees);
  w.Family("pageowner_implied_frees_total", "counter",
           "Blocks, or parts of blocks, freed implicitly by trusted allocations over them.");
  w.Sample("pageowner_implied_frees_total", {}, s.counters.implied_frees);
  w.Family("pageowner_implied_freed_pages_total", "counter",
           "Pages of the blocks freed implicitly by trusted allocations.");
  w.Sample("pageowner_implied_freed_pages_total", {}, s.counters.implied_freed_pages);
  w.Family("pageowner_split_blocks_total", "counter",
           "Allocated blocks cut by a trusted event, their rest kept allocated.");
  w.Sample("pageowner_split_blocks_total", {}, s.counters.split_blocks);
  w.Family("pageowner_owner_metadata_bytes", "gauge",
           "Heap bytes of the owner metadata: page records, allocator state, depot, contexts, "
           "symbols.");
  w.Sample("pageowner_owner_metadata_bytes", {}, uint64_t{s.metadata_bytes});

  rpcs_->AppendTo(&out);
  if (auth_ != nullptr) auth_->AppendTo(&out);
  if (const WalMetrics* wal = wal_.load(std::memory_order_acquire)) wal->AppendTo(&out);
  if (const SnapshotMetrics* s = snapshots_.load(std::memory_order_acquire)) s->AppendTo(&out);

  w.Family("pageowner_build_info", "gauge",
           "Always 1; the labels say what this build is (pageownerd --version).");
  w.Sample("pageowner_build_info",
           {{"version", ProjectVersion()}, {"git", GitDescribe()}, {"build_type", BuildType()}},
           uint64_t{1});
  w.Family("process_cpu_seconds_total", "counter",
           "Total user and system CPU time spent in seconds.");
  w.Sample("process_cpu_seconds_total", {}, CpuSeconds());
  w.Family("process_open_fds", "gauge", "Number of open file descriptors.");
  w.Sample("process_open_fds", {}, OpenFds());
  w.Family("process_max_fds", "gauge", "Maximum number of open file descriptors.");
  w.Sample("process_max_fds", {}, MaxFds());
  w.Family("process_resident_memory_bytes", "gauge", "Resident memory size in bytes.");
  w.Sample("process_resident_memory_bytes", {}, ResidentBytes());
  w.Family("process_start_time_seconds", "gauge",
           "Start time of the process since unix epoch in seconds.");
  w.Sample("process_start_time_seconds", {}, start_time_seconds_);
  return out;
}

// ---- MetricsHttpServer ----

absl::StatusOr<std::pair<std::string, int>> SplitHostPort(std::string_view address) {
  const auto bad = [&] {
    return absl::InvalidArgumentError(
        absl::StrCat("\"", Sv(address), "\" is not HOST:PORT (port 0..65535) or none"));
  };
  const size_t colon = address.rfind(':');
  if (colon == std::string_view::npos || colon == 0) return bad();
  std::string_view host = address.substr(0, colon);
  const std::string_view port_text = address.substr(colon + 1);
  if (host.front() == '[') {
    if (host.size() < 3 || host.back() != ']') return bad();
    host = host.substr(1, host.size() - 2);
  } else if (host.find(':') != std::string_view::npos) {
    return bad();  // a bare IPv6 address needs brackets
  }
  int port = 0;
  if (port_text.empty() || port_text.size() > 5 ||
      !std::all_of(port_text.begin(), port_text.end(),
                   [](char c) { return c >= '0' && c <= '9'; }) ||
      !absl::SimpleAtoi(Sv(port_text), &port) || port > 65535) {
    return bad();
  }
  return std::make_pair(std::string(host), port);
}

namespace {

// The per-path check of HttpSecurity, as a pre-routing handler: it runs before any route, so a
// refused request reaches no handler.
httplib::Server::HandlerWithResponse HttpAuthGate(HttpSecurity security) {
  return [security](const httplib::Request& req, httplib::Response& res) {
    std::string header;
    std::optional<std::string_view> authorization;
    if (req.has_header("Authorization")) {
      header = req.get_header_value("Authorization");
      authorization = header;
    }
    const AuthDecision decision = Decide(*security.tokens, HttpPathAccess(req.path), authorization);
    if (decision.allowed) return httplib::Server::HandlerResponse::Unhandled;
    security.audit->Refused("http", req.path, absl::StrCat(req.remote_addr, ":", req.remote_port),
                            decision);
    const bool forbidden = decision.reason == RefusalReason::kInsufficientRole;
    res.status = forbidden ? 403 : 401;
    if (!forbidden) {
      res.set_header("WWW-Authenticate", "Bearer realm=\"pageownerd\"");
      res.headers.emplace("WWW-Authenticate", "Basic realm=\"pageownerd\"");
    }
    res.set_content(RefusalMessage(req.path, decision) + "\n", "text/plain; charset=utf-8");
    return httplib::Server::HandlerResponse::Handled;
  };
}

}  // namespace

struct MetricsHttpServer::Impl {
  std::unique_ptr<httplib::Server> server;  // an httplib::SSLServer with TLS
  std::thread thread;
  std::atomic<bool> ended{false};  // the serving thread returned
  bool stopped = false;
};

MetricsHttpServer::MetricsHttpServer(std::unique_ptr<Impl> impl, int port)
    : impl_(std::move(impl)), port_(port) {}

MetricsHttpServer::~MetricsHttpServer() { Stop(); }

absl::StatusOr<std::unique_ptr<MetricsHttpServer>> MetricsHttpServer::Start(
    const std::string& address, const MetricsExporter* exporter,
    std::function<HealthState()> health, HttpSecurity security, std::vector<HttpRoute> routes) {
  absl::StatusOr<std::pair<std::string, int>> host_port = SplitHostPort(address);
  if (!host_port.ok()) return host_port.status();
  auto impl = std::make_unique<Impl>();
  if (security.tls != nullptr) {
    HttpTls* tls = security.tls;
    auto ssl =
        std::make_unique<httplib::SSLServer>([tls](SSL_CTX& ctx) { return tls->Configure(&ctx); });
    if (!ssl->is_valid()) {
      return absl::InternalError(absl::StrCat("cannot set up TLS for ", address));
    }
    impl->server = std::move(ssl);
  } else {
    impl->server = std::make_unique<httplib::Server>();
  }
  httplib::Server& http = *impl->server;
  if (security.tokens != nullptr) http.set_pre_routing_handler(HttpAuthGate(security));
  // Scrapes and probes are few: two threads, not httplib's default of one a core.
  http.new_task_queue = [] { return new httplib::ThreadPool(2); };
  // SO_REUSEADDR only: httplib also sets SO_REUSEPORT by default, which would let a second
  // daemon share the port instead of failing to start.
  http.set_socket_options([](socket_t sock) {
    const int yes = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
  });
  http.Get("/metrics", [exporter](const httplib::Request&, httplib::Response& res) {
    res.set_content(exporter->Render(), "text/plain; version=0.0.4; charset=utf-8");
  });
  const auto health_text = [](HealthState s) {
    return s == HealthState::kServing      ? "ok\n"
           : s == HealthState::kRecovering ? "recovering\n"
                                           : "draining\n";
  };
  http.Get("/healthz", [health, health_text](const httplib::Request&, httplib::Response& res) {
    const HealthState s = health();
    res.status = s == HealthState::kDraining ? 503 : 200;
    res.set_content(health_text(s), "text/plain; charset=utf-8");
  });
  http.Get("/readyz", [health, health_text](const httplib::Request&, httplib::Response& res) {
    const HealthState s = health();
    res.status = s == HealthState::kServing ? 200 : 503;
    res.set_content(health_text(s), "text/plain; charset=utf-8");
  });
  // More GET paths (the pprof profile, the web page and its data: server/viz_http.h).
  for (HttpRoute& route : routes) {
    http.Get(
        route.path,  // a regex to httplib; ours have no special characters but '.'
        [handler = std::move(route.handler)](const httplib::Request& req, httplib::Response& res) {
          std::map<std::string, std::string> params;
          for (const auto& [k, v] : req.params) params.emplace(k, v);
          HttpReply reply = handler(params);
          res.status = reply.status;
          for (const auto& [k, v] : reply.headers) res.set_header(k, v);
          res.set_content(std::move(reply.body), reply.content_type);
        });
  }
  const auto& [host, port] = *host_port;
  int bound = port;
  if (port == 0) {
    bound = http.bind_to_any_port(host);
  } else if (!http.bind_to_port(host, port)) {
    bound = -1;
  }
  if (bound <= 0) {
    return absl::UnavailableError(absl::StrCat("cannot listen on ", address, " for metrics"));
  }
  std::atomic<bool>& ended = impl->ended;
  impl->thread = std::thread([&http, &ended] {
    http.listen_after_bind();
    ended = true;
  });
  // stop() only takes effect once the server runs.
  while (!http.is_running() && !ended) absl::SleepFor(absl::Milliseconds(1));
  if (ended) {
    impl->thread.join();
    return absl::UnavailableError(absl::StrCat("cannot serve metrics on ", address));
  }
  return std::unique_ptr<MetricsHttpServer>(new MetricsHttpServer(std::move(impl), bound));
}

void MetricsHttpServer::Stop() {
  if (impl_->stopped) return;
  impl_->stopped = true;
  impl_->server->stop();
  impl_->thread.join();
}

}  // namespace pageowner::server
