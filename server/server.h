// Server: pageownerd's gRPC server (the PageOwner service, the standard health service and
// server reflection) over one simulated machine. No gRPC type appears here, so that main and
// tests need not know how it is served.
#ifndef PAGEOWNER_SERVER_SERVER_H_
#define PAGEOWNER_SERVER_SERVER_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "core/machine.h"
#include "server/limits.h"
#include "server/snapshotter.h"
#include "server/tls.h"
#include "server/wal.h"

namespace pageowner::server {

struct ServerOptions {
  // host:port to listen on (port 0: any free port, see bound_port()).
  std::string listen_address = "127.0.0.1:50051";
  MachineOptions machine;
  // Events an Ingest batch may hold; a longer batch is malformed.
  uint32_t max_batch_events = kDefaultMaxBatchEvents;
  // The bounds on what streams keep and buffer (server/limits.h says each).
  uint64_t max_symbol_bytes = kDefaultMaxSymbolBytes;
  uint64_t max_stream_definition_bytes = kDefaultMaxStreamDefinitionBytes;
  uint32_t max_streams = kDefaultMaxStreams;
  uint64_t max_grpc_memory = kDefaultMaxGrpcMemory;
  // host:port of the http endpoint serving /metrics and /healthz (port 0: any free port, see
  // metrics_port()); empty: none.
  std::string metrics_listen_address;
  // --data_dir and the log's options: state kept there and recovered from it at start; unset:
  // in memory only.
  std::optional<WalOptions> wal;
  // With a data dir: when snapshots are taken (server/snapshotter.h).
  SnapshotPolicy snapshot;
  // TLS for the gRPC port and the http listener (server/tls.h); none: plaintext.
  TlsFiles tls;
  // The token file (server/auth.h): every call and every http path but the open ones needs a
  // token with the role the tables name. Empty: no tokens, everything open.
  std::string auth_tokens_file;
};

// Thread-safety: every method may be called from any thread; Shutdown and Wait typically from
// different ones (a signal thread and main).
class Server {
 public:
  // Builds the machine and starts serving: Open, then Recover. Errors: Open's and Recover's.
  static absl::StatusOr<std::unique_ptr<Server>> Create(const ServerOptions& options);

  // Builds the machine and opens the ports. With a data dir (options.wal) the server is then
  // *recovering*: every rpc is answered UNAVAILABLE saying so, the gRPC health service says
  // NOT_SERVING, /healthz 200 "recovering" (alive) and /readyz 503, until Recover. Without one
  // it serves at once. Errors: kInvalidArgument for bad options, kUnavailable when the address
  // (or the metrics address) cannot be listened on.
  static absl::StatusOr<std::unique_ptr<Server>> Open(const ServerOptions& options);
  // Loads the newest snapshot and replays the log after it (RecoverDataDir), then serves.
  // OK at once without a data dir. Errors: RecoverDataDir's (the server then stays recovering
  // until it is shut down). Call once, before Shutdown.
  absl::Status Recover();

  // Shutdown()s and waits.
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // The port actually listened on (the chosen one when the address asked for port 0).
  int bound_port() const;
  // The listen address with the bound port in place of port 0.
  std::string listening_address() const;
  // The port /metrics is served on; 0 when metrics are off.
  int metrics_port() const;
  // What recovery from --data_dir found and did; empty without a data dir.
  const std::optional<WalRecoveryReport>& recovery() const;
  // Takes a snapshot now (the Snapshot rpc's path). kFailedPrecondition without a data dir.
  absl::StatusOr<SnapshotResult> TakeSnapshot();

  // Graceful shutdown: the health service turns NOT_SERVING and /healthz and /readyz answer 503
  // (until the
  // Server is destroyed, which stops the metrics endpoint); new Ingest and ListPages streams
  // are refused with UNAVAILABLE; open Ingest streams stop reading, answer the batches they have
  // read and end; then the gRPC server stops (calls still running after a grace period are
  // cancelled). Returns when all of this is done. Idempotent; concurrent callers all wait.
  void Shutdown();
  // Blocks until Shutdown has completed.
  void Wait();

  // SIGHUP: re-reads the token file (the new tokens answer the next call; open streams go on)
  // and checks the TLS files (gRPC re-reads them itself within kTlsRefreshSeconds; the http
  // listener takes them now). On an error what is in force stays, and the error is returned.
  // OK when there is nothing to reload.
  absl::Status Reload();

 private:
  struct Impl;
  explicit Server(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace pageowner::server

#endif  // PAGEOWNER_SERVER_SERVER_H_
