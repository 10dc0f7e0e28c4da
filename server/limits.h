// The daemon's default limits, defined once (flags, ServerOptions and ServiceOptions use them).
#ifndef PAGEOWNER_SERVER_LIMITS_H_
#define PAGEOWNER_SERVER_LIMITS_H_

#include <cstddef>
#include <cstdint>

namespace pageowner::server {

// Events an Ingest batch may hold (--max_batch_events); a longer batch is malformed.
inline constexpr uint32_t kDefaultMaxBatchEvents = 65536;

// A frame's symbol on the wire: the kernel's KSYM_NAME_LEN (512) for the name, and room for
// "+0xoff/0xsize [module]" (MODULE_NAME_LEN is 56).
inline constexpr size_t kMaxSymbolBytes = 640;
// A TaskDef's comm on the wire; the kernel keeps 15 bytes and so do we, but a client may send a
// longer name for us to cut.
inline constexpr size_t kMaxCommBytes = 64;

// Bytes of frame names the daemon keeps, over all streams (--max_symbol_bytes).
inline constexpr uint64_t kDefaultMaxSymbolBytes = uint64_t{256} << 20;
// Bytes of definitions one Ingest stream keeps (--max_stream_definition_bytes).
inline constexpr uint64_t kDefaultMaxStreamDefinitionBytes = uint64_t{64} << 20;
// Ingest streams open at once (--max_streams); one more is refused with RESOURCE_EXHAUSTED.
inline constexpr uint32_t kDefaultMaxStreams = 256;
// Memory gRPC may use for all calls' buffers (--max_grpc_memory): a gRPC ResourceQuota.
inline constexpr uint64_t kDefaultMaxGrpcMemory = uint64_t{1} << 30;

}  // namespace pageowner::server

#endif  // PAGEOWNER_SERVER_LIMITS_H_
