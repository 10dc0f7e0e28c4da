#include "server/server.h"

#include <atomic>
#include <cstdio>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "core/status_macros.h"
#include "google/protobuf/descriptor.h"
#include "grpc/support/log.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/health_check_service_interface.h"
#include "grpcpp/resource_quota.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/server.h"
#include "grpcpp/server_builder.h"
#include "server/auth.h"
#include "server/grpc_security.h"
#include "server/metrics.h"
#include "server/service.h"
#include "server/shared_machine.h"
#include "server/snapshot.h"
#include "server/viz_http.h"

namespace pageowner::server {
namespace {

// A batch of --max_batch_events events with its stack definitions can pass gRPC's default
// 4 MiB limit.
constexpr int kMaxReceiveBytes = 64 << 20;
// How long Shutdown waits for open streams to end (Ingest streams answer what they have read,
// ListPages streams write their current chunk) before cancelling them.
constexpr absl::Duration kDrainTimeout = absl::Seconds(10);
// Then what is left is unary answers on their way out. gRPC's shutdown also waits for clients
// to close idle connections until this deadline, so it stays short.
constexpr absl::Duration kGrace = absl::Milliseconds(250);

// What gRPC logged while the server started (KeepStartupLog), for the one-line error.
absl::Mutex startup_log_mu;
std::string* startup_log_first_error ABSL_GUARDED_BY(startup_log_mu) = nullptr;
bool startup_address_in_use ABSL_GUARDED_BY(startup_log_mu) = false;

void KeepStartupLog(gpr_log_func_args* args) {
  if (args->message == nullptr || args->severity != GPR_LOG_SEVERITY_ERROR) return;
  absl::MutexLock lock(&startup_log_mu);
  if (std::strstr(args->message, "Address already in use") != nullptr) {
    startup_address_in_use = true;
  }
  if (startup_log_first_error == nullptr) {
    const char* end = std::strchr(args->message, '\n');
    startup_log_first_error = new std::string(
        args->message, end ? static_cast<size_t>(end - args->message) : std::strlen(args->message));
  }
}

std::string StartupLogReason() {
  absl::MutexLock lock(&startup_log_mu);
  if (startup_address_in_use) return "the address is in use (another pageownerd?)";
  if (startup_log_first_error != nullptr) return *startup_log_first_error;
  return "gRPC could not bind it";
}

}  // namespace

struct Server::Impl {
  explicit Impl(const ServerOptions& options)
      : options(options),
        machine(options.machine),
        service(&machine,
                ServiceOptions{.max_batch_events = options.max_batch_events,
                               .max_symbol_bytes = options.max_symbol_bytes,
                               .max_stream_definition_bytes = options.max_stream_definition_bytes,
                               .max_streams = options.max_streams}) {}

  const ServerOptions options;
  SharedMachine machine;
  // The log outlives the service, whose writer answers through it until it stops.
  std::unique_ptr<Wal> wal;
  std::optional<WalRecoveryReport> recovery;
  PageOwnerService service;
  // Stopped before the writer (its snapshots run on the writer thread).
  std::unique_ptr<Snapshotter> snapshotter;
  // Token checks and their audit, used by the gRPC server and the http listener below.
  std::unique_ptr<TokenStore> tokens;  // null: no --auth_tokens
  AuthAudit audit;
  std::unique_ptr<HttpTls> http_tls;  // null: plain http
  // Destroyed in reverse order: the metrics endpoint first, then the gRPC server, whose calls
  // feed rpc_metrics until it is gone.
  RpcMetrics rpc_metrics;
  std::unique_ptr<MetricsExporter> exporter;
  std::unique_ptr<grpc::Server> server;
  int port = 0;
  std::atomic<HealthState> health{HealthState::kServing};  // /healthz, /readyz
  std::unique_ptr<MetricsHttpServer> metrics_http;

  absl::Mutex mu;
  bool shutdown_started ABSL_GUARDED_BY(mu) = false;
  bool shutdown_done ABSL_GUARDED_BY(mu) = false;
};

absl::StatusOr<std::unique_ptr<Server>> Server::Create(const ServerOptions& options) {
  PO_ASSIGN_OR_RETURN(std::unique_ptr<Server> server, Open(options));
  PO_RETURN_IF_ERROR(server->Recover());
  return server;
}

absl::Status Server::Recover() {
  Impl& impl = *impl_;
  if (!impl.options.wal.has_value()) return absl::OkStatus();
  // Nothing is served from a half-recovered machine: every rpc is refused until the end.
  WalRecoveryReport report;
  PO_ASSIGN_OR_RETURN(Recovered recovered,
                      RecoverDataDir(*impl.options.wal, impl.options.machine, &report));
  impl.machine.Replace(std::move(recovered.machine));
  impl.wal = std::move(recovered.wal);
  impl.service.AttachLog(impl.wal.get());
  PageOwnerService* service = &impl.service;
  impl.snapshotter = std::make_unique<Snapshotter>(
      impl.options.wal->dir, impl.options.snapshot, impl.wal.get(), &impl.machine,
      WalGeometry::Of(impl.options.machine),
      [service](const std::function<void()>& fn) { service->RunOnWriter(fn); },
      report.snapshot_seq);
  impl.service.AttachSnapshotter(impl.snapshotter.get());
  impl.recovery = std::move(report);
  if (impl.exporter != nullptr) {
    impl.exporter->AttachWal(&impl.wal->metrics());
    impl.exporter->AttachSnapshots(&impl.snapshotter->metrics());
  }
  impl.service.EndRecovery();
  HealthState recovering = HealthState::kRecovering;
  if (impl.health.compare_exchange_strong(recovering, HealthState::kServing)) {
    grpc::HealthCheckServiceInterface* health = impl.server->GetHealthCheckService();
    health->SetServingStatus(v1::PageOwner::service_full_name(), true);
    health->SetServingStatus(true);
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<Server>> Server::Open(const ServerOptions& options) {
  PO_RETURN_IF_ERROR(Machine::ValidateOptions(options.machine));
  if (options.max_batch_events == 0) {
    return absl::InvalidArgumentError("max_batch_events must be at least 1");
  }
  auto impl = std::make_unique<Impl>(options);
  const bool recovering = options.wal.has_value();
  if (recovering) {
    impl->service.BeginRecovery(options.wal->dir);
    impl->health.store(HealthState::kRecovering);
  }
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  if (!options.auth_tokens_file.empty()) {
    PO_ASSIGN_OR_RETURN(impl->tokens, TokenStore::Load(options.auth_tokens_file));
  }
  PO_ASSIGN_OR_RETURN(std::shared_ptr<grpc::ServerCredentials> credentials,
                      MakeServerCredentials(options.tls, impl->tokens.get(), &impl->audit));
  builder.AddListeningPort(options.listen_address, credentials, &impl->port);
  builder.RegisterService(&impl->service);
  const google::protobuf::ServiceDescriptor* rpcs =
      google::protobuf::DescriptorPool::generated_pool()->FindServiceByName(
          v1::PageOwner::service_full_name());
  for (int i = 0; rpcs != nullptr && i < rpcs->method_count(); ++i) {
    impl->rpc_metrics.Declare(absl::StrCat(rpcs->full_name(), "/", rpcs->method(i)->name()));
  }
  std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> interceptors;
  interceptors.push_back(NewRpcMetricsInterceptor(&impl->rpc_metrics));
  builder.experimental().SetInterceptorCreators(std::move(interceptors));
  builder.SetMaxReceiveMessageSize(kMaxReceiveBytes);
  // All calls' buffers together: past it gRPC refuses new calls and stops reading, so that
  // clients that send faster than we apply, or never read, cannot take the daemon's memory.
  grpc::ResourceQuota quota("pageownerd");
  quota.Resize(options.max_grpc_memory);
  builder.SetResourceQuota(quota);
  // A second daemon on the same port must fail to start, not share the port (gRPC sets
  // SO_REUSEPORT by default).
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  // gRPC logs a failed bind in several lines of its own; the daemon says it in one.
  gpr_set_log_function(KeepStartupLog);
  impl->server = builder.BuildAndStart();
  gpr_set_log_function(nullptr);  // gRPC's default again
  if (impl->server == nullptr || impl->port == 0) {
    if (impl->server != nullptr) impl->server->Shutdown();
    return absl::UnavailableError(
        absl::StrCat("cannot listen on ", options.listen_address, ": ", StartupLogReason()));
  }
  if (!options.metrics_listen_address.empty()) {
    impl->exporter = std::make_unique<MetricsExporter>(
        &impl->machine, &impl->service.counters(), &impl->rpc_metrics,
        impl->tokens != nullptr ? &impl->audit : nullptr);
    if (options.tls.enabled()) {
      absl::StatusOr<std::unique_ptr<HttpTls>> tls = HttpTls::Load(options.tls);
      if (!tls.ok()) {
        impl->server->Shutdown();
        return tls.status();
      }
      impl->http_tls = std::move(*tls);
    }
    Impl* raw = impl.get();
    absl::StatusOr<std::unique_ptr<MetricsHttpServer>> http = MetricsHttpServer::Start(
        options.metrics_listen_address, impl->exporter.get(),
        [raw] { return raw->health.load(std::memory_order_relaxed); },
        HttpSecurity{
            .tokens = impl->tokens.get(), .audit = &impl->audit, .tls = impl->http_tls.get()},
        VizRoutes(&impl->machine));
    if (!http.ok()) {
      impl->server->Shutdown();
      return http.status();
    }
    impl->metrics_http = std::move(*http);
  }
  // Health answers for the whole server ("") and for our service by name: NOT_SERVING until
  // Recover with a data dir.
  grpc::HealthCheckServiceInterface* health = impl->server->GetHealthCheckService();
  health->SetServingStatus(v1::PageOwner::service_full_name(), !recovering);
  health->SetServingStatus(!recovering);
  return std::unique_ptr<Server>(new Server(std::move(impl)));
}

Server::Server(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Server::~Server() {
  Shutdown();
  Wait();
}

int Server::bound_port() const { return impl_->port; }

const std::optional<WalRecoveryReport>& Server::recovery() const { return impl_->recovery; }

absl::StatusOr<SnapshotResult> Server::TakeSnapshot() {
  if (impl_->snapshotter == nullptr) {
    return absl::FailedPreconditionError("no snapshot without a data directory (--data_dir)");
  }
  return impl_->snapshotter->TakeNow();
}

int Server::metrics_port() const {
  return impl_->metrics_http != nullptr ? impl_->metrics_http->port() : 0;
}

std::string Server::listening_address() const {
  const std::string& address = impl_->options.listen_address;
  const size_t colon = address.rfind(':');
  if (colon == std::string::npos || address.substr(colon + 1) != "0") return address;
  return absl::StrCat(address.substr(0, colon + 1), impl_->port);
}

void Server::Shutdown() {
  {
    absl::MutexLock lock(&impl_->mu);
    if (impl_->shutdown_started) {
      impl_->mu.Await(absl::Condition(&impl_->shutdown_done));
      return;
    }
    impl_->shutdown_started = true;
  }
  impl_->health.store(HealthState::kDraining, std::memory_order_relaxed);
  // NOT_SERVING for every service name, and no later change.
  impl_->server->GetHealthCheckService()->Shutdown();
  impl_->service.BeginDrain();
  impl_->service.AwaitDrained(absl::Now() + kDrainTimeout);
  impl_->server->Shutdown(absl::ToChronoTime(absl::Now() + kGrace));
  if (impl_->snapshotter != nullptr) impl_->snapshotter->Stop();
  impl_->service.StopWriter();
  absl::MutexLock lock(&impl_->mu);
  impl_->shutdown_done = true;
}

absl::Status Server::Reload() {
  absl::Status status;
  if (impl_->tokens != nullptr) {
    absl::StatusOr<size_t> n = impl_->tokens->Reload();
    if (n.ok()) {
      std::fprintf(stderr, "pageownerd: reloaded %s: %zu tokens\n", impl_->tokens->path().c_str(),
                   *n);
    } else {
      status = n.status();
    }
  }
  if (impl_->options.tls.enabled()) {
    absl::Status tls =
        impl_->http_tls != nullptr ? impl_->http_tls->Reload() : CheckTlsFiles(impl_->options.tls);
    if (tls.ok()) {
      std::fprintf(stderr, "pageownerd: TLS files checked; new connections use them\n");
    } else if (status.ok()) {
      status = tls;
    }
  }
  return status;
}

void Server::Wait() {
  impl_->server->Wait();
  absl::MutexLock lock(&impl_->mu);
  impl_->mu.Await(absl::Condition(&impl_->shutdown_done));
}

}  // namespace pageowner::server
