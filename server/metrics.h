// Metrics: pageownerd's Prometheus metrics (text exposition format 0.0.4) and the small http
// server that serves them on /metrics, with /healthz beside them.
//
// Three sources feed them: the machine (read under its reader lock once a scrape), the ingest
// counters of the service, and the rpc counts and durations, taken in one place for every rpc
// by a gRPC server interceptor.
#ifndef PAGEOWNER_SERVER_METRICS_H_
#define PAGEOWNER_SERVER_METRICS_H_

#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/btree_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "core/types.h"
#include "grpcpp/support/server_interceptor.h"
#include "server/auth.h"
#include "server/http_route.h"
#include "server/ingest.h"
#include "server/shared_machine.h"
#include "server/snapshotter.h"
#include "server/tls.h"
#include "server/wal.h"

namespace pageowner::server {

// The name of a google.rpc.Code value ("OK", "INVALID_ARGUMENT", ...); "UNKNOWN" outside 0..16.
std::string_view RpcCodeName(int code);

// Finished rpcs by method and status code, and their durations (the whole call: for a
// streaming rpc from its start to its status).
//
// Thread-safety: every method may be called from any thread.
class RpcMetrics {
 public:
  // Histogram bounds in seconds, from 10 us (a cached GetStack) to 10 s (a long ListPages).
  static constexpr std::array<double, 19> kBuckets = {
      0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
      0.025,   0.05,     0.1,     0.25,   0.5,     1,      2.5,   5,      10};
  // Distinct method labels kept; further methods (a client may call any name) count as "other".
  static constexpr size_t kMaxMethods = 64;

  // Makes `method`'s series exist before its first call (an OK count of 0, an empty
  // histogram), so that rate() sees them start. Same naming as Record.
  void Declare(std::string_view method) ABSL_LOCKS_EXCLUDED(mu_);
  // `method` as gRPC names it ("/pageowner.v1.PageOwner/GetPage"); the leading '/' is dropped.
  void Record(std::string_view method, int code, absl::Duration duration) ABSL_LOCKS_EXCLUDED(mu_);
  // Appends pageowner_rpc_requests_total and pageowner_rpc_duration_seconds.
  void AppendTo(std::string* out) const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  struct Method {
    std::array<uint64_t, 17> codes{};
    std::array<uint64_t, kBuckets.size()> buckets{};  // not cumulative; +Inf is count
    double sum_seconds = 0;
    uint64_t count = 0;
  };
  mutable absl::Mutex mu_;
  absl::btree_map<std::string, Method> methods_ ABSL_GUARDED_BY(mu_);  // sorted output
};

// The interceptor factory that feeds `metrics` from every rpc of the server it is installed in.
// `metrics` must outlive the server.
std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface> NewRpcMetricsInterceptor(
    RpcMetrics* metrics);

// Renders every metric. Machine state is read under the machine's reader lock, once a Render.
//
// Mixed pageblocks need a walk of every page (Machine::MixedBlocks), too slow for a scrape of a
// large machine: a thread of this class recomputes them every kMixedBlocksPeriod (the first
// time at start), and Render reports the last result.
//
// Thread-safety: Render may be called from any thread.
class MetricsExporter {
 public:
  static constexpr absl::Duration kMixedBlocksPeriod = absl::Seconds(10);

  // All must outlive this object. `auth` (optional): pageowner_auth_refused_total.
  MetricsExporter(const SharedMachine* machine, const IngestCounters* ingest,
                  const RpcMetrics* rpcs, const AuthAudit* auth = nullptr);
  // Stops the mixed-blocks thread.
  ~MetricsExporter();
  MetricsExporter(const MetricsExporter&) = delete;
  MetricsExporter& operator=(const MetricsExporter&) = delete;

  // The whole exposition, in the text format 0.0.4.
  std::string Render() const ABSL_LOCKS_EXCLUDED(mu_);
  // Adds the write-ahead log's families (--data_dir); before serving. `wal` outlives this.
  void AttachWal(const WalMetrics* wal) { wal_.store(wal, std::memory_order_release); }
  // The pageowner_snapshot_* families (server/snapshotter.h); before serving.
  void AttachSnapshots(const SnapshotMetrics* snapshots) {
    snapshots_.store(snapshots, std::memory_order_release);
  }

 private:
  void RefreshMixedBlocks() ABSL_LOCKS_EXCLUDED(mu_);

  const SharedMachine* const machine_;
  const IngestCounters* const ingest_;
  const RpcMetrics* const rpcs_;
  const AuthAudit* const auth_;
  const double start_time_seconds_;
  // Attached after recovery, while scrapes may run.
  std::atomic<const WalMetrics*> wal_{nullptr};
  std::atomic<const SnapshotMetrics*> snapshots_{nullptr};

  mutable absl::Mutex mu_;
  std::array<uint64_t, kNumMigrateTypes> mixed_blocks_ ABSL_GUARDED_BY(mu_){};
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread refresher_;
};

// Who may fetch what from the http endpoint. Each path needs the access HttpPathAccess
// (server/auth.h) names: a request that lacks it is answered 401 (no or an unknown token, with
// WWW-Authenticate) or 403 (a token without the role) before any route runs, and audited.
struct HttpSecurity {
  const TokenStore* tokens = nullptr;  // null: every path open
  AuthAudit* audit = nullptr;          // not null when tokens is not
  HttpTls* tls = nullptr;              // null: plain http
};

// What the daemon is doing, for the health endpoints.
enum class HealthState {
  kRecovering,  // loading its state from --data_dir: alive, not ready
  kServing,
  kDraining,  // shutting down
};

// The http endpoint: GET /metrics (the exporter's text, Content-Type
// "text/plain; version=0.0.4; charset=utf-8"), GET /healthz (liveness: 200 "ok" while
// serving, 200 "recovering" while recovering, 503 "draining" after) and GET /readyz
// (readiness: 200 "ok" only while serving; 503 "recovering" or "draining"). Built on Debian's
// cpp-httplib, with a few threads.
//
// Thread-safety: port() from any thread; Stop (or the destructor) once.
class MetricsHttpServer {
 public:
  // Listens on `address` ("HOST:PORT", "[v6]:PORT"; port 0 picks a free one) and serves from a
  // thread of its own. kInvalidArgument for a malformed address, kUnavailable when it cannot
  // listen.
  // `security`'s pointees must outlive this object.
  static absl::StatusOr<std::unique_ptr<MetricsHttpServer>> Start(
      const std::string& address, const MetricsExporter* exporter,
      std::function<HealthState()> health, HttpSecurity security = {},
      std::vector<HttpRoute> routes = {});
  // Stop()s.
  ~MetricsHttpServer();
  MetricsHttpServer(const MetricsHttpServer&) = delete;
  MetricsHttpServer& operator=(const MetricsHttpServer&) = delete;

  int port() const { return port_; }
  // Stops listening and waits for the serving thread.
  void Stop();

 private:
  struct Impl;
  MetricsHttpServer(std::unique_ptr<Impl> impl, int port);
  std::unique_ptr<Impl> impl_;
  const int port_;
};

// Splits "HOST:PORT" or "[V6]:PORT" (brackets dropped) and checks the port is 0..65535.
// kInvalidArgument otherwise.
absl::StatusOr<std::pair<std::string, int>> SplitHostPort(std::string_view address);

}  // namespace pageowner::server

#endif  // PAGEOWNER_SERVER_METRICS_H_
