// pageownerd: the page_owner daemon. Parses flags, starts the server, serves until SIGINT or
// SIGTERM, then shuts down gracefully and exits 0. A bad flag is one line on stderr and exit 2.
#include <csignal>
#include <cstdio>
#include <string>
#include <string_view>
#include <thread>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "core/build_info.h"
#include "server/failpoints.h"
#include "server/flags.h"
#include "server/server.h"

ABSL_FLAG(std::string, listen, "127.0.0.1:50051",
          "Address to serve gRPC on, host:port (port 0 picks a free port; the chosen address is "
          "printed on stderr).");
ABSL_FLAG(std::string, memory, "4GiB",
          "Size of the simulated machine's memory: bytes, or a whole number with a KiB, MiB, GiB "
          "or TiB suffix (powers of 1024). A multiple of 4 KiB (one page), at most 16TiB.");
ABSL_FLAG(int32_t, stack_depth, pageowner::kDefaultStackDepth,
          "Frames kept a stack, 1..64; deeper stacks are cut to their innermost frames and the cut "
          "is counted.");
ABSL_FLAG(uint32_t, depot_max_pools, pageowner::kDefaultDepotMaxPools,
          "Stack depot pool limit, 1..131071 pools of 16 KiB each (8192 = 128 MiB); a stack that "
          "needs a pool beyond it gets the failure handle.");
ABSL_FLAG(uint32_t, max_batch_events, pageowner::server::kDefaultMaxBatchEvents,
          "Events an Ingest batch may hold (at least 1); a longer batch is answered with "
          "INVALID_ARGUMENT and not applied.");
ABSL_FLAG(uint32_t, max_streams, pageowner::server::kDefaultMaxStreams,
          "Ingest streams open at once (at least 1); one more is refused with RESOURCE_EXHAUSTED.");
ABSL_FLAG(uint64_t, max_symbol_bytes, pageowner::server::kDefaultMaxSymbolBytes,
          "Bytes of frame names the daemon keeps over all streams; a batch whose new names would "
          "pass it is refused whole with RESOURCE_EXHAUSTED.");
ABSL_FLAG(uint64_t, max_stream_definition_bytes,
          pageowner::server::kDefaultMaxStreamDefinitionBytes,
          "Bytes of stack, task and extras definitions one Ingest stream keeps; a batch that would "
          "pass it is refused whole with RESOURCE_EXHAUSTED.");
ABSL_FLAG(std::string, max_grpc_memory, "1GiB",
          "Memory gRPC may use for all calls' buffers together (a gRPC ResourceQuota), with a KiB, "
          "MiB or GiB suffix; at least 64MiB.");
ABSL_FLAG(
    std::string, metrics_listen, "127.0.0.1:9464",
    "Address to serve Prometheus metrics (/metrics), /healthz and /readyz on over http, host:port "
    "(port 0 picks a free port; the chosen address is printed on stderr), or none.");
ABSL_FLAG(std::string, tls_cert, "",
          "PEM certificate (then any intermediates) to serve gRPC and http over TLS 1.2+ with; "
          "needs --tls_key. Re-read when the file changes (within a second) and on SIGHUP.");
ABSL_FLAG(std::string, tls_key, "", "PEM private key of --tls_cert (unencrypted).");
ABSL_FLAG(std::string, tls_client_ca, "",
          "PEM CA bundle: turns on mutual TLS; a gRPC client without a certificate signed by it is "
          "refused in the handshake (http: a presented certificate must chain to it).");
ABSL_FLAG(std::string, auth_tokens, "",
          "Token file: one `ROLE SHA256HEX` line a token (reader, writer or admin; the hex SHA-256 "
          "of the token, as `pageowner token new ROLE` prints it), # comments. Every call and http "
          "path but health needs a token with its role (README: Secure set-up). Re-read on "
          "SIGHUP.");
ABSL_FLAG(bool, insecure, false,
          "Allow a non-loopback --listen or --metrics_listen without TLS or without tokens: anyone "
          "who can reach the port may use it.");
ABSL_FLAG(std::string, data_dir, "",
          "Directory to keep the machine in (a write-ahead log of every accepted batch), created "
          "if missing; at start the machine is recovered from it. Empty: in memory only, lost on "
          "exit.");
ABSL_FLAG(std::string, fsync, "always",
          "With --data_dir: always (a batch is answered only after its log record is on disk, "
          "fdatasync; batches arriving meanwhile share one) or interval (answered once written to "
          "the OS, fdatasync every --fsync_interval_ms: a crash of pageownerd loses nothing, a "
          "power cut or kernel crash up to that much of acknowledged batches).");
ABSL_FLAG(uint32_t, fsync_interval_ms, 1000,
          "With --fsync=interval: ms between fdatasyncs, 1..60000.");
ABSL_FLAG(std::string, wal_segment_bytes, "64MiB",
          "Size of a log segment file before the next one is started (KiB, MiB, GiB suffixes).");
ABSL_FLAG(std::string, wal_recovery, "strict",
          "strict: refuse to start when the log is corrupt before its tail (a torn tail from a "
          "crash is always cut and reported); truncate: drop the log from the first bad record "
          "on, and say how much.");
ABSL_FLAG(std::string, snapshot_interval, "30m",
          "With --data_dir: take a snapshot of the machine this often when the log has grown "
          "since the last (a duration: 10m, 1h; 0: never by time). Recovery loads the newest "
          "snapshot and replays only the log after it; the log it covers is deleted.");
ABSL_FLAG(std::string, snapshot_log_bytes, "512MiB",
          "With --data_dir: also take a snapshot after this much log was written since the last "
          "(KiB, MiB, GiB suffixes; 0: never by size).");
ABSL_FLAG(bool, tracking, true,
          "Start with page_owner tracking on (--notracking: off; SetTracking turns it on later and "
          "gives the pages allocated meanwhile the early handle).");

namespace {

int Fail(const std::string& message) {
  std::fprintf(stderr, "pageownerd: %s\n", message.c_str());
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  // Debian builds Abseil with deadlock detection on: it costs every lock a graph update.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  namespace srv = pageowner::server;
  constexpr char kUsage[] =
      "pageownerd [flags]: the page_owner daemon. Serves pageowner.v1.PageOwner, grpc.health.v1 "
      "and server reflection;\nSIGINT or SIGTERM shuts it down gracefully (exit 0); SIGHUP "
      "re-reads "
      "the token file and the TLS files; a bad flag exits 2.";
  absl::SetProgramUsageMessage(kUsage);
  // Ours, before Abseil's --version (which prints only whether NDEBUG was defined).
  for (int i = 1; i < argc && std::string_view(argv[i]) != "--"; ++i) {
    if (std::string_view(argv[i]) == "--version" || std::string_view(argv[i]) == "-version") {
      std::printf("pageownerd %s\n", std::string(pageowner::BuildVersion()).c_str());
      return 0;
    }
  }
  if (srv::WantsHelp(argc, argv)) {
    std::fputs(srv::HelpText(kUsage, __FILE__).c_str(), stdout);
    return 0;
  }
  if (absl::Status s = srv::CheckCommandLine(argc, argv); !s.ok()) {
    return Fail(std::string(s.message()));
  }
  absl::ParseCommandLine(argc, argv);
  absl::StatusOr<srv::ServerOptions> options = srv::MakeServerOptions(
      {.listen = absl::GetFlag(FLAGS_listen),
       .memory = absl::GetFlag(FLAGS_memory),
       .stack_depth = absl::GetFlag(FLAGS_stack_depth),
       .depot_max_pools = absl::GetFlag(FLAGS_depot_max_pools),
       .max_batch_events = absl::GetFlag(FLAGS_max_batch_events),
       .max_symbol_bytes = absl::GetFlag(FLAGS_max_symbol_bytes),
       .max_stream_definition_bytes = absl::GetFlag(FLAGS_max_stream_definition_bytes),
       .max_streams = absl::GetFlag(FLAGS_max_streams),
       .max_grpc_memory = absl::GetFlag(FLAGS_max_grpc_memory),
       .tracking = absl::GetFlag(FLAGS_tracking),
       .tls_cert = absl::GetFlag(FLAGS_tls_cert),
       .tls_key = absl::GetFlag(FLAGS_tls_key),
       .tls_client_ca = absl::GetFlag(FLAGS_tls_client_ca),
       .auth_tokens = absl::GetFlag(FLAGS_auth_tokens),
       .insecure = absl::GetFlag(FLAGS_insecure),
       .metrics_listen = absl::GetFlag(FLAGS_metrics_listen),
       .data_dir = absl::GetFlag(FLAGS_data_dir),
       .fsync = absl::GetFlag(FLAGS_fsync),
       .fsync_interval_ms = absl::GetFlag(FLAGS_fsync_interval_ms),
       .wal_segment_bytes = absl::GetFlag(FLAGS_wal_segment_bytes),
       .wal_recovery = absl::GetFlag(FLAGS_wal_recovery),
       .snapshot_interval = absl::GetFlag(FLAGS_snapshot_interval),
       .snapshot_log_bytes = absl::GetFlag(FLAGS_snapshot_log_bytes)});
  if (!options.ok()) return Fail(std::string(options.status().message()));

  // Block the signals in every thread (gRPC's start after this) and take them in one.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGHUP);  // reload tokens and certificates
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  // A log write past RLIMIT_FSIZE must fail with EFBIG (and be answered UNAVAILABLE), not kill us.
  signal(SIGXFSZ, SIG_IGN);
  srv::InitFailpoints();
  // The ports open first: while a big data dir is recovered (seconds to a minute), probes see a
  // live daemon (/healthz 200 "recovering", /readyz 503, gRPC health NOT_SERVING) and every rpc
  // is answered UNAVAILABLE saying why, instead of a refused connection.
  absl::StatusOr<std::unique_ptr<srv::Server>> server = srv::Server::Open(*options);
  if (!server.ok()) {
    std::fprintf(stderr, "pageownerd: %s\n", std::string(server.status().message()).c_str());
    return 1;
  }
  std::fprintf(stderr, "pageownerd: listening on %s (memory %llu pages)%s\n",
               (*server)->listening_address().c_str(),
               static_cast<unsigned long long>(options->machine.pages.raw()),
               options->wal.has_value() ? "; recovering its state first" : "");
  if ((*server)->metrics_port() != 0) {
    const std::string& address = options->metrics_listen_address;
    std::fprintf(stderr, "pageownerd: metrics on %s://%s:%d/metrics\n",
                 options->tls.enabled() ? "https" : "http",
                 address.substr(0, address.rfind(':')).c_str(), (*server)->metrics_port());
  }
  if (absl::Status s = (*server)->Recover(); !s.ok()) {
    std::fprintf(stderr, "pageownerd: %s\n", std::string(s.message()).c_str());
    return 1;
  }
  // After the listening line, which tests and tools read first.
  if (const auto& recovery = (*server)->recovery(); recovery.has_value()) {
    for (const std::string& note : recovery->notes) {
      std::fprintf(stderr, "pageownerd: recovery: %s\n", note.c_str());
    }
    const std::string snapshot =
        recovery->snapshot.empty()
            ? std::string("no snapshot")
            : absl::StrFormat("snapshot %s (records 1..%u, %u bytes, loaded in %.3f s)",
                              recovery->snapshot, recovery->snapshot_seq, recovery->snapshot_bytes,
                              absl::ToDoubleSeconds(recovery->snapshot_duration));
    std::fprintf(stderr,
                 "pageownerd: state in %s: recovered %s and %llu log records (%llu bytes, %llu "
                 "segments) in %.3f s; --fsync=%s\n",
                 options->wal->dir.c_str(), snapshot.c_str(),
                 static_cast<unsigned long long>(recovery->records),
                 static_cast<unsigned long long>(recovery->bytes),
                 static_cast<unsigned long long>(recovery->segments),
                 absl::ToDoubleSeconds(recovery->duration),
                 options->wal->fsync == srv::FsyncMode::kAlways ? "always" : "interval");
  } else {
    std::fprintf(stderr,
                 "pageownerd: no --data_dir: the machine is in memory only and lost on exit\n");
  }
  std::thread waiter([&] {
    int signal = 0;
    while (sigwait(&signals, &signal) == 0 && signal == SIGHUP) {
      if (absl::Status s = (*server)->Reload(); !s.ok()) {
        std::fprintf(stderr, "pageownerd: SIGHUP: %s; still using what was loaded before\n",
                     std::string(s.message()).c_str());
      }
    }
    std::fprintf(stderr, "pageownerd: %s, shutting down\n",
                 signal == SIGINT ? "SIGINT" : "SIGTERM");
    (*server)->Shutdown();
  });
  (*server)->Wait();
  waiter.join();
  return 0;
}
