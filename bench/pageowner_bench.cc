// pageowner-bench: figures that need more than a micro-benchmark (see BENCHMARKS.md).
//   pageowner-bench memory [--gib N] [--events N] [--stacks N]
//       the seed patch's memory table side by side with ours, in process.
//   pageowner-bench ingest [--events N] [--memory 4GiB] [--streams K] [--batch B] [--repeat R]
//                          [--live]
//       a real pageownerd against a do-nothing sink, the same client messages to each.
//   pageowner-bench getpage [--events N] [--memory 4GiB]
//       GetPage latency over loopback while an ingest stream runs, and idle.
//   pageowner-bench liststacks [--events N] [--queries Q]
//       ListStacks top 100 on a 1 GiB and a 64 GiB daemon after the same workload.
//   pageowner-bench dump [--memory 4GiB] [--runs R]
//       `pageowner dump` of a machine filled with order-0 allocations: MB of text a second.
//   pageowner-bench rss [--memory 64GiB] [--fill 0.9] [--order N] [--events N] [--time]
//       the daemon's RSS a page after `pageowner load --fill` (or an --order N fill).
#include <fcntl.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"
#include "client/client.h"
#include "client/session.h"
#include "core/machine.h"
#include "core/workload.h"
#include "grpcpp/grpcpp.h"
#include "grpcpp/support/client_interceptor.h"
#include "pageowner/v1/pageowner.grpc.pb.h"
#include "pageowner/v1/pageowner.pb.h"

namespace pageowner {
namespace {

using Clock = std::chrono::steady_clock;

double Since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// A field of /proc/PID/status ("VmRSS", "VmHWM") in bytes; 0 when absent.
uint64_t StatusBytes(const std::string& pid, const char* field) {
  std::ifstream in("/proc/" + pid + "/status");
  const std::string prefix = std::string(field) + ":";
  for (std::string line; std::getline(in, line);) {
    if (line.rfind(prefix, 0) == 0) {
      return std::strtoull(line.c_str() + prefix.size(), nullptr, 10) * 1024;
    }
  }
  return 0;
}

uint64_t RssBytes() { return StatusBytes("self", "VmRSS"); }

std::string Commas(uint64_t v) {
  const std::string digits = std::to_string(v);
  std::string out;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out.push_back(',');
    out.push_back(digits[i]);
  }
  return out;
}

double Median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 == 1 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

double Percentile(std::vector<double>* v, double p) {
  if (v->empty()) return 0;
  std::sort(v->begin(), v->end());
  const size_t i = std::min(v->size() - 1, static_cast<size_t>(p * static_cast<double>(v->size())));
  return (*v)[i];
}

int Usage() {
  std::cerr << "usage: pageowner-bench memory|ingest|getpage|liststacks|dump|rss [flags]\n"
               "  memory     [--gib N] [--events N] [--stacks N]\n"
               "  ingest     [--events N] [--memory 4GiB] [--streams K] [--batch B] [--repeat R]\n"
               "  getpage    [--events N] [--memory 4GiB] [--batch B]\n"
               "  liststacks [--events N] [--queries Q]\n"
               "  dump       [--memory 4GiB] [--runs R]\n"
               "  rss        [--memory 64GiB] [--fill 0.9] [--order N] [--events N] [--time]\n";
  return 2;
}

// "--name=value" or "--name value" flags; a bare "--name" is "true".
class Flags {
 public:
  Flags(int argc, char** argv) {
    for (int i = 0; i < argc; ++i) {
      std::string a = argv[i];
      if (a.rfind("--", 0) != 0) {
        std::cerr << "pageowner-bench: unexpected argument " << a << "\n";
        std::exit(2);
      }
      a = a.substr(2);
      const size_t eq = a.find('=');
      if (eq != std::string::npos) {
        values_[a.substr(0, eq)] = a.substr(eq + 1);
      } else if (i + 1 < argc && std::string_view(argv[i + 1]).rfind("--", 0) != 0) {
        values_[a] = argv[++i];
      } else {
        values_[a] = "true";
      }
    }
  }
  uint64_t Int(const std::string& name, uint64_t def) {
    auto it = Take(name);
    if (!it) return def;
    uint64_t v;
    if (!absl::SimpleAtoi(*it, &v)) Bad(name, *it);
    return v;
  }
  double Double(const std::string& name, double def) {
    auto it = Take(name);
    if (!it) return def;
    double v;
    if (!absl::SimpleAtod(*it, &v)) Bad(name, *it);
    return v;
  }
  std::string String(const std::string& name, const std::string& def) {
    auto it = Take(name);
    return it ? *it : def;
  }
  bool Bool(const std::string& name) { return Take(name).has_value(); }
  // Exits 2 when a flag was given that no one asked for.
  void CheckAllUsed() {
    if (values_.empty()) return;
    std::cerr << "pageowner-bench: unknown flag --" << values_.begin()->first << "\n";
    std::exit(2);
  }

 private:
  std::optional<std::string> Take(const std::string& name) {
    auto it = values_.find(name);
    if (it == values_.end()) return std::nullopt;
    std::string v = it->second;
    values_.erase(it);
    return v;
  }
  [[noreturn]] static void Bad(const std::string& name, const std::string& v) {
    std::cerr << "pageowner-bench: bad value for --" << name << ": " << v << "\n";
    std::exit(2);
  }
  std::map<std::string, std::string> values_;
};

// Pages in a "4GiB"-style size.
uint64_t ParsePages(const std::string& text) {
  static const std::pair<const char*, int> kUnits[] = {
      {"KiB", 10}, {"MiB", 20}, {"GiB", 30}, {"TiB", 40}};
  for (const auto& [suffix, shift] : kUnits) {
    const size_t n = std::strlen(suffix);
    if (text.size() > n && text.compare(text.size() - n, n, suffix) == 0) {
      uint64_t v;
      if (absl::SimpleAtoi(text.substr(0, text.size() - n), &v)) return (v << shift) >> 12;
    }
  }
  uint64_t v;
  if (absl::SimpleAtoi(text, &v)) return v >> 12;
  std::cerr << "pageowner-bench: bad memory size " << text << "\n";
  std::exit(2);
}

// The directory of this binary, where pageownerd and pageowner are built too.
std::string BinDir() {
  char buf[4096];
  const ssize_t n = readlink("/proc/self/exe", buf, sizeof(buf) - 1);
  if (n <= 0) return ".";
  std::string path(buf, static_cast<size_t>(n));
  return path.substr(0, path.rfind('/'));
}

// A pageownerd child on a free loopback port. Its stderr is copied to ours, prefixed.
class Daemon {
 public:
  // `time_v`: run it under /usr/bin/time -v (which prints its report when the daemon exits).
  Daemon(const std::string& memory, bool time_v = false) {
    int fds[2];
    if (pipe(fds) != 0) std::abort();
    const std::string daemon = BinDir() + "/pageownerd";
    std::vector<std::string> args;
    if (time_v) args = {"/usr/bin/time", "-v"};
    // No metrics listener: several daemons run at once here, and the benchmark reads none.
    args.insert(args.end(),
                {daemon, "--listen=127.0.0.1:0", "--memory=" + memory, "--metrics_listen=none"});
    pid_ = fork();
    if (pid_ == 0) {
      dup2(fds[1], 2);
      close(fds[0]);
      close(fds[1]);
      std::vector<char*> argv;
      for (auto& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      execv(argv[0], argv.data());
      _exit(127);
    }
    close(fds[1]);
    err_ = fdopen(fds[0], "r");
    char line[4096];
    while (std::fgets(line, sizeof(line), err_) != nullptr) {
      std::string_view l(line);
      const size_t at = l.find("listening on ");
      if (at != std::string_view::npos) {
        l.remove_prefix(at + std::strlen("listening on "));
        address_ = std::string(l.substr(0, l.find(' ')));
        break;
      }
      std::cerr << "[pageownerd] " << line;
    }
    if (address_.empty()) {
      std::cerr << "pageowner-bench: pageownerd did not start\n";
      std::exit(1);
    }
    drain_ = std::thread([this] {
      char l[4096];
      while (std::fgets(l, sizeof(l), err_) != nullptr) std::cerr << "[pageownerd] " << l;
    });
    daemon_pid_ = pid_;
    if (time_v) {
      // The daemon is time's only child.
      for (int i = 0; i < 100 && daemon_pid_ == pid_; ++i) {
        std::ifstream in(absl::StrFormat("/proc/%d/task/%d/children", pid_, pid_));
        int child = 0;
        if (in >> child)
          daemon_pid_ = child;
        else
          usleep(10000);
      }
    }
    std::cerr << "pageowner-bench: pageownerd pid " << daemon_pid_ << " on " << address_ << "\n";
  }
  ~Daemon() {
    kill(daemon_pid_, SIGTERM);
    int status;
    waitpid(pid_, &status, 0);
    drain_.join();
    std::fclose(err_);
  }
  const std::string& address() const { return address_; }
  std::string pid() const { return std::to_string(daemon_pid_); }
  uint64_t rss() const { return StatusBytes(pid(), "VmRSS"); }
  uint64_t hwm() const { return StatusBytes(pid(), "VmHWM"); }

 private:
  pid_t pid_ = -1;
  pid_t daemon_pid_ = -1;
  FILE* err_ = nullptr;
  std::string address_;
  std::thread drain_;
};

int Memory(int argc, char** argv) {
  uint64_t gib = 4, events = 4000000;
  uint32_t stacks = 10000;
  for (int i = 0; i < argc; ++i) {
    std::string_view a = argv[i];
    auto value = [&](std::string_view flag, auto* out) {
      if (a.rfind(flag, 0) != 0 || a.size() <= flag.size() || a[flag.size()] != '=') return false;
      const std::string v(a.substr(flag.size() + 1));
      if (!absl::SimpleAtoi(v, out)) {
        std::cerr << "pageowner-bench: bad value for " << flag << ": " << v << "\n";
        std::exit(2);
      }
      return true;
    };
    if (!value("--gib", &gib) && !value("--events", &events) && !value("--stacks", &stacks)) {
      return Usage();
    }
  }
  const uint64_t rss0 = RssBytes();
  MachineOptions mo;
  mo.pages = PageCount(gib << 18);
  Machine m(mo);
  WorkloadOptions wo;
  wo.pages = mo.pages.raw();
  wo.stacks = stacks;
  Workload w(wo);
  const auto t0 = std::chrono::steady_clock::now();
  for (uint64_t i = 0; i < events; ++i) {
    const WorkloadEvent e = w.Next();
    const EventResult r = m.Apply(w.ToMachineEvent(e));
    w.Observe(e, r.status.ok(), r.pfn);
  }
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const uint64_t rss1 = RssBytes();

  const uint64_t pages = mo.pages.raw();
  const MachineMemory mem = m.MemoryUsage();
  const StackDepotStats ds = m.depot().stats();
  // The kernel's depot for the same stacks: a record is about (frames + 3) x 8 bytes, in 16 KiB
  // pools (the seed's 2016 depot used 16 KiB slabs the same way).
  uint64_t kernel_record_bytes = 0;
  m.depot().ForEachStack(
      [&](const StackUsage& s) { kernel_record_bytes += (s.frames.size() + 3) * 8; });
  const uint64_t kernel_depot = (kernel_record_bytes + 16383) / 16384 * 16384;
  const uint64_t our_depot = uint64_t{ds.pools} * 16384;
  const uint64_t our_static = mem.records + mem.allocator + mem.contexts + mem.symbols;

  absl::PrintF(
      "pageowner-bench memory: %d GiB machine (%s pages), %s events in %.2f s, %d "
      "stacks of 16 frames, %.1f%% of pages allocated, %s stacks stored\n\n",
      gib, Commas(pages), Commas(events), secs, stacks,
      100.0 * m.allocator().allocated_pages().raw() / pages, Commas(ds.persistent_count));
  absl::PrintF("%-40s %8s %16s %14s %16s\n", "layout", "B/page", "per-page bytes", "depot bytes",
               "total bytes");
  auto row = [&](const char* name, double per_page, uint64_t depot) {
    const auto fixed = static_cast<uint64_t>(per_page * static_cast<double>(pages));
    absl::PrintF("%-40s %8.2f %16s %14s %16s\n", name, per_page, Commas(fixed), Commas(depot),
                 Commas(fixed + depot));
  };
  row("2016 inline, 8 frames (before the seed)", 88, 0);
  row("2016 depot handle (the seed)", 24, kernel_depot);
  row("today's kernel (page_owner + page_ext)", 72, kernel_depot);
  row("pageowner: every modern field", static_cast<double>(our_static) / pages, our_depot);
  absl::PrintF(
      "\npageowner parts: records %s (%.2f B/page), allocator %s (%.2f B/page), "
      "contexts %s, symbols %s, depot pools %d (%s bytes of records)\n",
      Commas(mem.records), static_cast<double>(mem.records) / pages, Commas(mem.allocator),
      static_cast<double>(mem.allocator) / pages, Commas(mem.contexts), Commas(mem.symbols),
      ds.pools, Commas(ds.persistent_bytes));
  absl::PrintF("bytes per stored stack: ours %.1f, the kernel's formula (frames + 3) x 8 = %.1f\n",
               static_cast<double>(ds.persistent_bytes) / ds.persistent_count,
               static_cast<double>(kernel_record_bytes) / ds.persistent_count);
  absl::PrintF(
      "process RSS growth: %s bytes (%.2f B/page; includes the workload generator's own "
      "state)\n",
      Commas(rss1 - rss0), static_cast<double>(rss1 - rss0) / pages);
  absl::PrintF("memory: ours=%.2f B/page kernel=72 B/page ratio=%.3f\n",
               static_cast<double>(our_static + our_depot) / pages,
               static_cast<double>(our_static + our_depot) / pages / 72.0);
  return 0;
}

// The do-nothing sink: decodes each EventBatch (gRPC parses it into the message) and answers a
// BatchResult with the batch's sequence and one OK code an event, nothing else.
class SinkService final : public v1::PageOwner::CallbackService {
 public:
  grpc::ServerBidiReactor<v1::EventBatch, v1::BatchResult>* Ingest(
      grpc::CallbackServerContext* /*context*/) override {
    class Reactor final : public grpc::ServerBidiReactor<v1::EventBatch, v1::BatchResult> {
     public:
      Reactor() { StartRead(&in_); }
      void OnReadDone(bool ok) override {
        if (!ok) {
          Finish(grpc::Status::OK);
          return;
        }
        out_.Clear();
        out_.set_sequence(in_.sequence());
        out_.mutable_event_code()->Resize(in_.kind_size(), 0);
        StartWrite(&out_);
      }
      void OnWriteDone(bool ok) override {
        if (!ok) {
          Finish(grpc::Status(grpc::StatusCode::CANCELLED, "write failed"));
          return;
        }
        StartRead(&in_);
      }
      void OnDone() override { delete this; }

     private:
      v1::EventBatch in_;
      v1::BatchResult out_;
    };
    return new Reactor;
  }
};

class Sink {
 public:
  Sink() {
    grpc::ServerBuilder b;
    b.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port_);
    b.SetMaxReceiveMessageSize(-1);
    b.RegisterService(&service_);
    server_ = b.BuildAndStart();
  }
  ~Sink() { server_->Shutdown(); }
  std::string address() const { return absl::StrFormat("127.0.0.1:%d", port_); }

 private:
  int port_ = 0;
  SinkService service_;
  std::unique_ptr<grpc::Server> server_;
};

// Records a copy of every EventBatch the client sends on Ingest.
class Recorder {
 public:
  void Add(const v1::EventBatch& m) {
    std::lock_guard<std::mutex> lock(mu_);
    messages_.push_back(m);
  }
  std::vector<v1::EventBatch> Take() {
    std::lock_guard<std::mutex> lock(mu_);
    return std::move(messages_);
  }

 private:
  std::mutex mu_;
  std::vector<v1::EventBatch> messages_;
};

class RecordingInterceptor final : public grpc::experimental::Interceptor {
 public:
  explicit RecordingInterceptor(Recorder* r) : recorder_(r) {}
  void Intercept(grpc::experimental::InterceptorBatchMethods* m) override {
    if (m->QueryInterceptionHookPoint(
            grpc::experimental::InterceptionHookPoints::PRE_SEND_MESSAGE)) {
      if (const void* msg = m->GetSendMessage(); msg != nullptr) {
        recorder_->Add(*static_cast<const v1::EventBatch*>(msg));
      }
    }
    m->Proceed();
  }

 private:
  Recorder* recorder_;
};

class RecordingFactory final : public grpc::experimental::ClientInterceptorFactoryInterface {
 public:
  explicit RecordingFactory(Recorder* r) : recorder_(r) {}
  grpc::experimental::Interceptor* CreateClientInterceptor(
      grpc::experimental::ClientRpcInfo* info) override {
    if (std::string_view(info->method()) != "/pageowner.v1.PageOwner/Ingest") return nullptr;
    return new RecordingInterceptor(recorder_);
  }

 private:
  Recorder* recorder_;
};

std::shared_ptr<grpc::Channel> Channel(const std::string& address, Recorder* recorder = nullptr) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(-1);
  // A channel of its own, so that runs share no connection.
  args.SetInt("bench_channel_id", std::rand());
  if (recorder == nullptr) {
    return grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), args);
  }
  std::vector<std::unique_ptr<grpc::experimental::ClientInterceptorFactoryInterface>> f;
  f.push_back(std::make_unique<RecordingFactory>(recorder));
  return grpc::experimental::CreateCustomChannelWithInterceptors(
      address, grpc::InsecureChannelCredentials(), args, std::move(f));
}

// The workload's events, generated once against an in-process twin of the daemon's machine
// (the Machine is deterministic, so the daemon gives the same results for the same events).
struct Recorded {
  std::unique_ptr<Workload> workload;
  std::vector<WorkloadEvent> events;
  std::vector<uint64_t> result_pfn;  // what the twin answered, 0 on failure
  uint64_t failed = 0;
  double seconds = 0;
};

WorkloadOptions BenchWorkload(uint64_t pages, uint64_t seed) {
  WorkloadOptions wo;
  wo.pages = pages;
  wo.stacks = 10000;
  wo.depth = 16;
  wo.fill = 0.7;  // the workload wanders around it: 50 to 90% full
  wo.seed = seed;
  return wo;
}

Recorded Pregenerate(uint64_t pages, uint64_t events, uint64_t seed) {
  const auto t0 = Clock::now();
  Recorded r;
  r.workload = std::make_unique<Workload>(BenchWorkload(pages, seed));
  MachineOptions mo;
  mo.pages = PageCount(pages);
  Machine twin(mo);
  r.events.reserve(events);
  r.result_pfn.reserve(events);
  for (uint64_t i = 0; i < events; ++i) {
    const WorkloadEvent e = r.workload->Next();
    const EventResult res = twin.Apply(r.workload->ToMachineEvent(e));
    r.workload->Observe(e, res.status.ok(), res.pfn);
    r.events.push_back(e);
    r.result_pfn.push_back(res.status.ok() ? res.pfn.raw() : 0);
    r.failed += !res.status.ok();
  }
  r.seconds = Since(t0);
  return r;
}

// Every stack (with the %pS names of its frames) and task of `w`, interned in `s`.
void InternAll(const Workload& w, client::Session* s, std::vector<client::StackId>* stacks,
               std::vector<client::TaskId>* tasks) {
  std::vector<client::Frame> frames;
  for (uint32_t i = 0; i < w.num_stacks(); ++i) {
    frames.clear();
    for (uint64_t ip : w.frames(i)) frames.push_back({ip, Workload::SymbolName(ip)});
    stacks->push_back(s->InternStack(frames));
  }
  for (const WorkloadTask& t : w.tasks()) tasks->push_back(s->InternTask({t.pid, t.tgid, t.comm}));
}

struct StreamOutcome {
  uint64_t events = 0;
  uint64_t failed = 0;      // results not OK
  uint64_t mismatched = 0;  // results that differ from the twin's
  double seconds = 0;
};

// Streams the recorded events with one Session and checks each result against the twin's.
StreamOutcome StreamRecorded(const std::shared_ptr<grpc::Channel>& channel, const Recorded& rec,
                             size_t batch) {
  StreamOutcome out;
  std::atomic<uint64_t> failed{0}, mismatched{0};
  client::SessionOptions so;
  so.batch_events = batch;
  so.on_results = [&](absl::Span<const client::IngestResult> results) {
    uint64_t f = 0, m = 0;
    for (const client::IngestResult& r : results) {
      f += !r.ok();
      m += (r.ok() ? r.pfn.raw() : 0) != rec.result_pfn[r.seq];
    }
    failed += f;
    mismatched += m;
  };
  client::Session session(channel, so);
  std::vector<client::StackId> stacks;
  std::vector<client::TaskId> tasks;
  InternAll(*rec.workload, &session, &stacks, &tasks);
  const auto t0 = Clock::now();
  for (const WorkloadEvent& e : rec.events)
    client::AddWorkloadEvent(&session, e, stacks[e.stack], tasks[e.task]);
  const absl::Status st = session.Finish();
  out.seconds = Since(t0);
  if (!st.ok()) std::cerr << "pageowner-bench: ingest stream: " << st << "\n";
  out.events = rec.events.size();
  out.failed = failed;
  out.mismatched = mismatched;
  return out;
}

// One stream of a live workload (it observes its own results as they arrive), for concurrent
// streams, whose interleaving on the daemon no twin can predict. Each stream keeps `fill` of the
// machine allocated.
StreamOutcome StreamLive(const std::shared_ptr<grpc::Channel>& channel, uint64_t pages, double fill,
                         uint64_t events, uint64_t seed, size_t batch) {
  StreamOutcome out;
  WorkloadOptions wo = BenchWorkload(pages, seed);
  wo.fill = fill;
  Workload w(wo);
  client::SessionOptions so;
  so.batch_events = batch;
  client::Session session(channel, so);
  std::vector<client::StackId> stacks;
  std::vector<client::TaskId> tasks;
  InternAll(w, &session, &stacks, &tasks);
  std::vector<WorkloadEvent> pending;  // sent, not yet observed, in seq order
  size_t pending_head = 0;
  std::vector<client::IngestResult> results;
  auto observe = [&] {
    results.clear();
    session.Poll(&results);
    for (const client::IngestResult& r : results) {
      out.failed += !r.ok();
      w.Observe(pending[pending_head++], r.ok(), r.pfn);
    }
    if (pending_head > (1 << 16) && pending_head * 2 > pending.size()) {
      pending.erase(pending.begin(), pending.begin() + static_cast<ptrdiff_t>(pending_head));
      pending_head = 0;
    }
  };
  const auto t0 = Clock::now();
  for (uint64_t i = 0; i < events; ++i) {
    const WorkloadEvent e = w.Next();
    pending.push_back(e);
    client::AddWorkloadEvent(&session, e, stacks[e.stack], tasks[e.task]);
    if ((i & 1023) == 1023) observe();
  }
  const absl::Status st = session.Finish();
  observe();
  out.seconds = Since(t0);
  if (!st.ok()) std::cerr << "pageowner-bench: ingest stream: " << st << "\n";
  out.events = events;
  return out;
}

// Sends recorded messages on one Ingest stream with a plain sync stub, at most `window` batches
// unanswered (as the Session does); returns the events the sink answered.
uint64_t ReplayMessages(const std::shared_ptr<grpc::Channel>& channel,
                        const std::vector<v1::EventBatch>& messages, size_t window) {
  auto stub = v1::PageOwner::NewStub(channel);
  grpc::ClientContext ctx;
  auto rw = stub->Ingest(&ctx);
  std::mutex mu;
  std::condition_variable cv;
  size_t answered = 0;
  uint64_t events = 0;
  std::thread reader([&] {
    v1::BatchResult r;
    while (rw->Read(&r)) {
      std::lock_guard<std::mutex> lock(mu);
      ++answered;
      events += static_cast<uint64_t>(r.event_code_size());
      cv.notify_one();
    }
  });
  for (size_t i = 0; i < messages.size(); ++i) {
    {
      std::unique_lock<std::mutex> lock(mu);
      cv.wait(lock, [&] { return i - answered < window; });
    }
    if (!rw->Write(messages[i])) break;
  }
  rw->WritesDone();
  reader.join();
  const grpc::Status st = rw->Finish();
  if (!st.ok()) std::cerr << "pageowner-bench: sink stream: " << st.error_message() << "\n";
  return events;
}

std::string LoadAverage() {
  std::ifstream in("/proc/loadavg");
  std::string a, b, c;
  in >> a >> b >> c;
  return a + " " + b + " " + c;
}

uint64_t WireBytes(const std::vector<std::vector<v1::EventBatch>>& streams) {
  uint64_t n = 0;
  for (const auto& s : streams) {
    for (const auto& m : s) n += m.ByteSizeLong();
  }
  return n;
}

int Ingest(Flags flags) {
  const uint64_t events = flags.Int("events", 4000000);
  const std::string memory = flags.String("memory", "4GiB");
  const uint64_t streams = std::max<uint64_t>(1, flags.Int("streams", 1));
  const size_t batch = flags.Int("batch", 4096);
  const uint64_t repeat = std::max<uint64_t>(1, flags.Int("repeat", 3));
  // Live: every stream generates its events while streaming and observes its own results (always
  // so for several streams, whose interleaving on the daemon no twin can predict).
  const bool live = flags.Bool("live") || streams > 1;
  flags.CheckAllUsed();
  const uint64_t pages = ParsePages(memory);
  absl::PrintF(
      "pageowner-bench ingest: %s events, %s machine (%s pages), %d stream(s), %d events a "
      "batch, %d runs; load average %s, %d cpus\n",
      Commas(events), memory, Commas(pages), streams, batch, repeat, LoadAverage(),
      std::thread::hardware_concurrency());
  Recorded rec;
  if (!live) {
    rec = Pregenerate(pages, events, 1);
    absl::PrintF("pre-generated on an in-process twin in %.2f s (%s events failed there)\n",
                 rec.seconds, Commas(rec.failed));
  } else {
    absl::PrintF(
        "%d streams: each a live workload (observing its own results) keeping %.0f%% of "
        "memory allocated, %s events a stream\n",
        streams, 70.0 / static_cast<double>(streams), Commas(events / streams));
  }
  Sink sink;
  std::vector<double> ours_rates, sink_rates, ratios;
  absl::PrintF("\n%-4s %-11s %12s %9s %14s %12s %10s %8s\n", "run", "server", "events", "seconds",
               "events/s", "MB on wire", "failed", "RSS MiB");
  for (uint64_t run = 1; run <= repeat; ++run) {
    std::vector<std::vector<v1::EventBatch>> sent(streams);
    uint64_t ours_events = 0, ours_failed = 0, mismatched = 0, rss = 0;
    double ours_secs = 0;
    {
      Daemon d(memory);
      std::vector<std::unique_ptr<Recorder>> recorders;
      std::vector<std::shared_ptr<grpc::Channel>> channels;
      for (uint64_t k = 0; k < streams; ++k) {
        recorders.push_back(std::make_unique<Recorder>());
        channels.push_back(Channel(d.address(), recorders.back().get()));
        channels.back()->WaitForConnected(std::chrono::system_clock::now() +
                                          std::chrono::seconds(10));
      }
      std::vector<StreamOutcome> outs(streams);
      const auto t0 = Clock::now();
      if (!live) {
        outs[0] = StreamRecorded(channels[0], rec, batch);
      } else {
        std::vector<std::thread> threads;
        for (uint64_t k = 0; k < streams; ++k) {
          threads.emplace_back([&, k] {
            outs[k] = StreamLive(channels[k], pages, 0.7 / static_cast<double>(streams),
                                 events / streams, 100 + k, batch);
          });
        }
        for (auto& t : threads) t.join();
      }
      ours_secs = Since(t0);
      for (const StreamOutcome& o : outs) {
        ours_events += o.events;
        ours_failed += o.failed;
        mismatched += o.mismatched;
      }
      rss = d.rss();
      for (uint64_t k = 0; k < streams; ++k) sent[k] = recorders[k]->Take();
    }
    const double mb = static_cast<double>(WireBytes(sent)) / 1e6;
    const double ours = static_cast<double>(ours_events) / ours_secs;
    absl::PrintF("%-4d %-11s %12s %9.3f %14s %12.1f %10s %8.0f\n", run, "pageownerd",
                 Commas(ours_events), ours_secs, Commas(static_cast<uint64_t>(ours)), mb,
                 Commas(ours_failed), static_cast<double>(rss) / (1 << 20));
    if (mismatched != 0) {
      absl::PrintF("     warning: %s results differ from the in-process twin's\n",
                   Commas(mismatched));
    }
    // The same messages, in the same batches, to the sink.
    std::vector<std::shared_ptr<grpc::Channel>> channels;
    for (uint64_t k = 0; k < streams; ++k) {
      channels.push_back(Channel(sink.address()));
      channels.back()->WaitForConnected(std::chrono::system_clock::now() +
                                        std::chrono::seconds(10));
    }
    std::vector<uint64_t> answered(streams);
    const auto t1 = Clock::now();
    {
      std::vector<std::thread> threads;
      for (uint64_t k = 0; k < streams; ++k) {
        threads.emplace_back([&, k] { answered[k] = ReplayMessages(channels[k], sent[k], 8); });
      }
      for (auto& t : threads) t.join();
    }
    const double sink_secs = Since(t1);
    uint64_t sink_events = 0;
    for (uint64_t a : answered) sink_events += a;
    const double sinkr = static_cast<double>(sink_events) / sink_secs;
    absl::PrintF("%-4d %-11s %12s %9.3f %14s %12.1f %10s %8s\n", run, "sink", Commas(sink_events),
                 sink_secs, Commas(static_cast<uint64_t>(sinkr)), mb, "-", "-");
    ours_rates.push_back(ours);
    sink_rates.push_back(sinkr);
    ratios.push_back(ours / sinkr);
  }
  absl::PrintF("\nmedians of %d runs (ratio: median of the per-run ratios); load average now %s\n",
               repeat, LoadAverage());
  absl::PrintF("ingest: ours=%.0f sink=%.0f ratio=%.3f\n", Median(ours_rates), Median(sink_rates),
               Median(ratios));
  return 0;
}

// GetPage latency with a sync stub on random pfns the workload allocated, while one ingest
// stream runs, and then on the idle daemon.
int GetPage(Flags flags) {
  const uint64_t events = flags.Int("events", 8000000);
  const std::string memory = flags.String("memory", "4GiB");
  const size_t batch = flags.Int("batch", 4096);
  flags.CheckAllUsed();
  const uint64_t pages = ParsePages(memory);
  Recorded rec = Pregenerate(pages, events, 1);
  std::vector<uint64_t> pfns;
  for (uint64_t p : rec.result_pfn) {
    if (p != 0) pfns.push_back(p);
  }
  absl::PrintF(
      "pageowner-bench getpage: %s machine, %s events streamed while querying; load "
      "average %s\n",
      memory, Commas(events), LoadAverage());
  Daemon d(memory);
  auto query_channel = Channel(d.address());
  auto stub = v1::PageOwner::NewStub(query_channel);
  std::mt19937_64 rng(7);
  auto query = [&](std::vector<double>* lat) {
    v1::GetPageRequest req;
    req.set_pfn(pfns[rng() % pfns.size()]);
    v1::GetPageResponse resp;
    grpc::ClientContext ctx;
    const auto t0 = Clock::now();
    const grpc::Status st = stub->GetPage(&ctx, req, &resp);
    lat->push_back(Since(t0) * 1e6);
    if (!st.ok()) std::cerr << "GetPage: " << st.error_message() << "\n";
  };
  for (int i = 0; i < 1000; ++i) {
    std::vector<double> warm;
    query(&warm);
  }
  std::atomic<bool> done{false};
  StreamOutcome ingest;
  std::thread t([&] {
    ingest = StreamRecorded(Channel(d.address()), rec, batch);
    done = true;
  });
  std::vector<double> busy;
  while (!done) query(&busy);
  t.join();
  std::vector<double> idle;
  for (size_t i = 0; i < std::max<size_t>(busy.size(), 20000); ++i) query(&idle);
  const double rate = static_cast<double>(ingest.events) / ingest.seconds;
  absl::PrintF("%-34s %9s %9s %9s %9s %9s\n", "GetPage (us)", "queries", "p50", "p99", "p99.9",
               "max");
  for (auto& [name, v] :
       {std::pair<const char*, std::vector<double>*>{"while ingesting", &busy}, {"idle", &idle}}) {
    const size_t n = v->size();
    absl::PrintF("%-34s %9s %9.1f %9.1f %9.1f %9.1f\n", name, Commas(n), Percentile(v, 0.5),
                 Percentile(v, 0.99), Percentile(v, 0.999), Percentile(v, 1.0));
  }
  absl::PrintF("ingest meanwhile: %s events/s (%s failed)\n", Commas(static_cast<uint64_t>(rate)),
               Commas(ingest.failed));
  absl::PrintF("getpage: p50=%.1fus p99=%.1fus (while ingesting at %.0f events/s)\n",
               Percentile(&busy, 0.5), Percentile(&busy, 0.99), rate);
  return 0;
}

// ListStacks top 100 on a 1 GiB and a 64 GiB daemon after the same workload (same events,
// stacks and fill fraction), Q times each.
int ListStacks(Flags flags) {
  const uint64_t events = flags.Int("events", 4000000);
  const uint64_t queries = flags.Int("queries", 200);
  const std::string sizes = flags.String("memory", "1GiB,64GiB");
  flags.CheckAllUsed();
  absl::PrintF(
      "pageowner-bench liststacks: %s events of the workload (10,000 stacks), then %d "
      "ListStacks top 100; load average %s\n",
      Commas(events), queries, LoadAverage());
  absl::PrintF("%-8s %14s %10s %10s %10s %10s %9s\n", "memory", "pages", "stacks", "p50 us",
               "p99 us", "min us", "RSS MiB");
  std::stringstream list(sizes);
  std::vector<std::pair<std::string, double>> medians;
  for (std::string memory; std::getline(list, memory, ',');) {
    const uint64_t pages = ParsePages(memory);
    Daemon d(memory);
    StreamLive(Channel(d.address()), pages, 0.7, events, 1, 4096);
    client::Client c(Channel(d.address()));
    v1::ListStacksRequest req;
    req.set_top(100);
    std::vector<double> lat;
    int n = 0;
    for (uint64_t i = 0; i < queries + 5; ++i) {
      const auto t0 = Clock::now();
      absl::StatusOr<v1::ListStacksResponse> r = c.ListStacks(req);
      const double us = Since(t0) * 1e6;
      if (!r.ok()) {
        std::cerr << "ListStacks: " << r.status() << "\n";
        return 1;
      }
      n = r->stacks_size();
      if (i >= 5) lat.push_back(us);
    }
    absl::StatusOr<v1::Stats> st = c.GetStats();
    const double p50 = Percentile(&lat, 0.5);
    absl::PrintF("%-8s %14s %10d %10.0f %10.0f %10.0f %9.0f\n", memory, Commas(pages), n, p50,
                 Percentile(&lat, 0.99), Percentile(&lat, 0.0),
                 static_cast<double>(d.rss()) / (1 << 20));
    if (st.ok()) {
      absl::PrintF("         (%s stacks in the depot, %.1f%% of pages allocated)\n",
                   Commas(st->depot_persistent_count()),
                   100.0 * static_cast<double>(st->allocated_pages()) / pages);
    }
    medians.emplace_back(memory, p50);
  }
  std::string line = "liststacks:";
  for (auto& [m, p] : medians) line += absl::StrFormat(" %s=%.0fus", m, p);
  absl::PrintF("%s\n", line);
  return 0;
}

// Allocations of one order until `fill` of the machine is allocated, on one Session.
StreamOutcome FillOrder(const std::string& address, uint64_t pages, int order, double fill) {
  StreamOutcome out;
  Workload w(BenchWorkload(pages, 1));
  std::atomic<uint64_t> failed{0};
  client::SessionOptions so;
  so.batch_events = 4096;
  so.on_results = [&](absl::Span<const client::IngestResult> results) {
    uint64_t f = 0;
    for (const client::IngestResult& r : results) f += !r.ok();
    failed += f;
  };
  client::Session session(Channel(address), so);
  std::vector<client::StackId> stacks;
  std::vector<client::TaskId> tasks;
  InternAll(w, &session, &stacks, &tasks);
  const uint64_t n = static_cast<uint64_t>(fill * static_cast<double>(pages)) >> order;
  const auto t0 = Clock::now();
  for (uint64_t i = 0; i < n; ++i) {
    session.Alloc({.order = Order(order),
                   .gfp_mask = 0x140cca,
                   .stack = stacks[(i * 7919) % 10000],
                   .task = tasks[i % tasks.size()],
                   .ts_ns = 1000000000 + i * 100,
                   .pfn = std::nullopt});
  }
  const absl::Status st = session.Finish();
  out.seconds = Since(t0);
  if (!st.ok()) std::cerr << "pageowner-bench: fill stream: " << st << "\n";
  out.events = n;
  out.failed = failed;
  return out;
}

// Runs argv with stdout to `out_fd` (-1: inherited); returns the exit status.
int Run(const std::vector<std::string>& args, int out_fd) {
  const pid_t pid = fork();
  if (pid == 0) {
    if (out_fd >= 0) dup2(out_fd, 1);
    std::vector<char*> argv;
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    execvp(argv[0], argv.data());
    _exit(127);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
}

// Bytes `args` writes on stdout.
uint64_t CountOutput(const std::vector<std::string>& args) {
  int fds[2];
  if (pipe(fds) != 0) std::abort();
  uint64_t n = 0;
  std::thread reader([&] {
    char buf[1 << 16];
    for (ssize_t r; (r = read(fds[0], buf, sizeof(buf))) > 0;) n += static_cast<uint64_t>(r);
  });
  Run(args, fds[1]);
  close(fds[1]);
  reader.join();
  close(fds[0]);
  return n;
}

int Dump(Flags flags) {
  const std::string memory = flags.String("memory", "4GiB");
  const uint64_t runs = flags.Int("runs", 5);
  flags.CheckAllUsed();
  const uint64_t pages = ParsePages(memory);
  Daemon d(memory);
  const StreamOutcome fill = FillOrder(d.address(), pages, 0, 1.0);
  absl::PrintF(
      "pageowner-bench dump: %s machine filled with %s order-0 allocations in %.2f s "
      "(%s failed); load average %s\n",
      memory, Commas(fill.events), fill.seconds, Commas(fill.failed), LoadAverage());
  const std::vector<std::string> cmd = {BinDir() + "/pageowner", "--server=" + d.address(), "dump"};
  const uint64_t bytes = CountOutput(cmd);
  const int devnull = open("/dev/null", O_WRONLY);
  std::vector<double> secs;
  for (uint64_t i = 0; i < runs; ++i) {
    const auto t0 = Clock::now();
    const int rc = Run(cmd, devnull);
    secs.push_back(Since(t0));
    if (rc != 0) std::cerr << "pageowner dump exited " << rc << "\n";
  }
  close(devnull);
  const double med = Median(secs);
  absl::PrintF(
      "pageowner dump > /dev/null: %s bytes of text, %d runs, median %.3f s, min %.3f s "
      "(daemon RSS %.0f MiB)\n",
      Commas(bytes), runs, med, *std::min_element(secs.begin(), secs.end()),
      static_cast<double>(d.rss()) / (1 << 20));
  absl::PrintF("dump: %.1f MB/s (%.1f MB in %.3f s)\n", static_cast<double>(bytes) / 1e6 / med,
               static_cast<double>(bytes) / 1e6, med);
  if (Run({"sh", "-c", "command -v hyperfine >/dev/null"}, -1) == 0) {
    Run({"hyperfine", "--warmup", "1", "--runs", std::to_string(runs), "-N",
         BinDir() + "/pageowner --server=" + d.address() + " dump"},
        -1);
  }
  return 0;
}

int Rss(Flags flags) {
  const std::string memory = flags.String("memory", "64GiB");
  const double fill = flags.Double("fill", 0.9);
  const int64_t order = static_cast<int64_t>(flags.Int("order", 1000));
  const uint64_t events = flags.Int("events", 0);
  const bool time_v = flags.Bool("time");
  flags.CheckAllUsed();
  const uint64_t pages = ParsePages(memory);
  absl::PrintF("pageowner-bench rss: %s machine (%s pages), fill %.2f; load average %s\n", memory,
               Commas(pages), fill, LoadAverage());
  Daemon d(memory, time_v);
  absl::PrintF("started: RSS %.1f MiB\n", static_cast<double>(d.rss()) / (1 << 20));
  const auto t0 = Clock::now();
  if (order <= 10) {
    const StreamOutcome o = FillOrder(d.address(), pages, static_cast<int>(order), fill);
    absl::PrintF("filled with %s order-%d allocations in %.2f s (%s events/s, %s failed)\n",
                 Commas(o.events), order, o.seconds,
                 Commas(static_cast<uint64_t>(static_cast<double>(o.events) / o.seconds)),
                 Commas(o.failed));
  } else {
    // The exact CLI command; enough events to reach the fill level with the workload's mix.
    const uint64_t n = events != 0 ? events : static_cast<uint64_t>(fill * pages);
    const std::vector<std::string> cmd = {BinDir() + "/pageowner", "--server=" + d.address(),
                                          "load", absl::StrFormat("--events=%d", n),
                                          absl::StrFormat("--fill=%g", fill)};
    absl::PrintF("running: pageowner load --events=%d --fill=%g\n", n, fill);
    std::fflush(stdout);
    if (Run(cmd, -1) != 0) std::cerr << "pageowner load failed\n";
  }
  absl::PrintF("loaded in %.1f s\n", Since(t0));
  client::Client c(Channel(d.address()));
  absl::StatusOr<v1::Stats> st = c.GetStats();
  if (!st.ok()) {
    std::cerr << "GetStats: " << st.status() << "\n";
    return 1;
  }
  std::mt19937_64 rng(3);
  std::vector<double> get_us;
  for (int i = 0; i < 1000; ++i) {
    const auto q0 = Clock::now();
    absl::StatusOr<v1::GetPageResponse> r = c.GetPage(Pfn(rng() % pages));
    get_us.push_back(Since(q0) * 1e6);
    if (!r.ok()) std::cerr << "GetPage: " << r.status() << "\n";
  }
  v1::ListStacksRequest req;
  req.set_top(100);
  std::vector<double> list_us;
  for (int i = 0; i < 20; ++i) {
    const auto q0 = Clock::now();
    absl::StatusOr<v1::ListStacksResponse> r = c.ListStacks(req);
    list_us.push_back(Since(q0) * 1e6);
    if (!r.ok()) std::cerr << "ListStacks: " << r.status() << "\n";
  }
  const uint64_t rss = d.rss(), hwm = d.hwm();
  absl::PrintF(
      "allocated %s of %s pages (%.1f%%), %s stacks; GetPage p50 %.0f us, ListStacks "
      "top 100 p50 %.0f us\n",
      Commas(st->allocated_pages()), Commas(pages),
      100.0 * static_cast<double>(st->allocated_pages()) / static_cast<double>(pages),
      Commas(st->depot_persistent_count()), Percentile(&get_us, 0.5), Percentile(&list_us, 0.5));
  absl::PrintF("daemon's own metadata: %.2f B/page\n", st->metadata_bytes_per_page());
  absl::PrintF(
      "rss: memory=%s pages=%d VmRSS=%.1fMiB VmHWM=%.1fMiB bytes_per_page=%.2f "
      "hwm_bytes_per_page=%.2f\n",
      memory, pages, static_cast<double>(rss) / (1 << 20), static_cast<double>(hwm) / (1 << 20),
      static_cast<double>(rss) / static_cast<double>(pages),
      static_cast<double>(hwm) / static_cast<double>(pages));
  std::fflush(stdout);
  return 0;
}

}  // namespace
}  // namespace pageowner

int main(int argc, char** argv) {
  if (argc < 2) return pageowner::Usage();
  const std::string_view mode = argv[1];
  if (mode == "memory") return pageowner::Memory(argc - 2, argv + 2);
  pageowner::Flags flags(argc - 2, argv + 2);
  if (mode == "ingest") return pageowner::Ingest(std::move(flags));
  if (mode == "getpage") return pageowner::GetPage(std::move(flags));
  if (mode == "liststacks") return pageowner::ListStacks(std::move(flags));
  if (mode == "dump") return pageowner::Dump(std::move(flags));
  if (mode == "rss") return pageowner::Rss(std::move(flags));
  return pageowner::Usage();
}
