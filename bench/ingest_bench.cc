// pageowner-bench ingest [--events N] [--memory 4GiB] [--streams K] [--batch B] [--repeat R]
// [--live]: a real pageownerd against a do-nothing sink, the same client messages to each.
#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <iostream>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/str_format.h"
#include "bench/bench_util.h"
#include "bench/streams.h"
#include "grpcpp/grpcpp.h"
#include "grpcpp/support/client_interceptor.h"
#include "pageowner/v1/pageowner.grpc.pb.h"
#include "pageowner/v1/pageowner.pb.h"

namespace pageowner::bench {
namespace {

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

std::shared_ptr<grpc::Channel> RecordingChannel(const std::string& address, Recorder* recorder) {
  std::vector<std::unique_ptr<grpc::experimental::ClientInterceptorFactoryInterface>> f;
  f.push_back(std::make_unique<RecordingFactory>(recorder));
  return grpc::experimental::CreateCustomChannelWithInterceptors(
      address, grpc::InsecureChannelCredentials(), BenchChannelArgs(), std::move(f));
}

void WaitConnected(grpc::Channel* channel) {
  channel->WaitForConnected(std::chrono::system_clock::now() + std::chrono::seconds(10));
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

uint64_t WireBytes(const std::vector<std::vector<v1::EventBatch>>& streams) {
  uint64_t n = 0;
  for (const auto& s : streams) {
    for (const auto& m : s) n += m.ByteSizeLong();
  }
  return n;
}

struct IngestConfig {
  uint64_t events = 0;
  std::string memory;
  uint64_t pages = 0;
  uint64_t streams = 1;
  size_t batch = 0;
  bool live = false;
};

// One run against a fresh pageownerd: what it did, and every message each stream sent.
struct OursRun {
  StreamOutcome total;
  uint64_t rss = 0;
  std::vector<std::vector<v1::EventBatch>> sent;
};

OursRun RunOurs(const IngestConfig& c, const Recorded& rec) {
  OursRun run;
  run.sent.resize(c.streams);
  Daemon d(c.memory);
  std::vector<std::unique_ptr<Recorder>> recorders;
  std::vector<std::shared_ptr<grpc::Channel>> channels;
  for (uint64_t k = 0; k < c.streams; ++k) {
    recorders.push_back(std::make_unique<Recorder>());
    channels.push_back(RecordingChannel(d.address(), recorders.back().get()));
    WaitConnected(channels.back().get());
  }
  std::vector<StreamOutcome> outs(c.streams);
  const auto t0 = Clock::now();
  if (!c.live) {
    outs[0] = StreamRecorded(channels[0], rec, c.batch);
  } else {
    std::vector<std::thread> threads;
    for (uint64_t k = 0; k < c.streams; ++k) {
      threads.emplace_back([&, k] {
        outs[k] = StreamLive(channels[k], c.pages, 0.7 / static_cast<double>(c.streams),
                             c.events / c.streams, 100 + k, c.batch);
      });
    }
    for (auto& t : threads) t.join();
  }
  run.total.seconds = Since(t0);
  for (const StreamOutcome& o : outs) {
    run.total.events += o.events;
    run.total.failed += o.failed;
    run.total.mismatched += o.mismatched;
  }
  run.rss = d.rss();
  for (uint64_t k = 0; k < c.streams; ++k) run.sent[k] = recorders[k]->Take();
  return run;
}

// The same messages, in the same batches, to the sink; returns the events answered and the
// seconds it took.
std::pair<uint64_t, double> RunSink(const Sink& sink,
                                    const std::vector<std::vector<v1::EventBatch>>& sent) {
  std::vector<std::shared_ptr<grpc::Channel>> channels;
  for (size_t k = 0; k < sent.size(); ++k) {
    channels.push_back(Channel(sink.address()));
    WaitConnected(channels.back().get());
  }
  std::vector<uint64_t> answered(sent.size());
  const auto t1 = Clock::now();
  {
    std::vector<std::thread> threads;
    for (size_t k = 0; k < sent.size(); ++k) {
      threads.emplace_back([&, k] { answered[k] = ReplayMessages(channels[k], sent[k], 8); });
    }
    for (auto& t : threads) t.join();
  }
  const double secs = Since(t1);
  uint64_t events = 0;
  for (uint64_t a : answered) events += a;
  return {events, secs};
}

}  // namespace

int IngestBench(Flags flags) {
  IngestConfig c;
  c.events = flags.Int("events", 4000000);
  c.memory = flags.String("memory", "4GiB");
  c.streams = std::max<uint64_t>(1, flags.Int("streams", 1));
  c.batch = flags.Int("batch", 4096);
  const uint64_t repeat = std::max<uint64_t>(1, flags.Int("repeat", 3));
  // Live: every stream generates its events while streaming and observes its own results (always
  // so for several streams, whose interleaving on the daemon no twin can predict).
  c.live = flags.Bool("live") || c.streams > 1;
  flags.CheckAllUsed();
  c.pages = ParsePages(c.memory);
  absl::PrintF(
      "pageowner-bench ingest: %s events, %s machine (%s pages), %d stream(s), %d events a "
      "batch, %d runs; load average %s, %d cpus\n",
      Commas(c.events), c.memory, Commas(c.pages), c.streams, c.batch, repeat, LoadAverage(),
      std::thread::hardware_concurrency());
  Recorded rec;
  if (!c.live) {
    rec = Pregenerate(c.pages, c.events, 1);
    absl::PrintF("pre-generated on an in-process twin in %.2f s (%s events failed there)\n",
                 rec.seconds, Commas(rec.failed));
  } else {
    absl::PrintF(
        "%d streams: each a live workload (observing its own results) keeping %.0f%% of "
        "memory allocated, %s events a stream\n",
        c.streams, 70.0 / static_cast<double>(c.streams), Commas(c.events / c.streams));
  }
  Sink sink;
  std::vector<double> ours_rates, sink_rates, ratios;
  absl::PrintF("\n%-4s %-11s %12s %9s %14s %12s %10s %8s\n", "run", "server", "events", "seconds",
               "events/s", "MB on wire", "failed", "RSS MiB");
  for (uint64_t run = 1; run <= repeat; ++run) {
    const OursRun o = RunOurs(c, rec);
    const double mb = static_cast<double>(WireBytes(o.sent)) / 1e6;
    const double ours = static_cast<double>(o.total.events) / o.total.seconds;
    absl::PrintF("%-4d %-11s %12s %9.3f %14s %12.1f %10s %8.0f\n", run, "pageownerd",
                 Commas(o.total.events), o.total.seconds, Commas(static_cast<uint64_t>(ours)), mb,
                 Commas(o.total.failed), static_cast<double>(o.rss) / (1 << 20));
    if (o.total.mismatched != 0) {
      absl::PrintF("     warning: %s results differ from the in-process twin's\n",
                   Commas(o.total.mismatched));
    }
    const auto [sink_events, sink_secs] = RunSink(sink, o.sent);
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

}  // namespace pageowner::bench
