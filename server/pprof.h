// The heap profile in pprof's format (perftools.profiles.Profile, gzipped), as `go tool pprof`,
// Pyroscope, Parca and Grafana read it, and the one place the daemon builds it: GetProfile and
// GET /debug/pprof/heap both call BuildPprof.
//
// Sample types, with Go's heap profile names: alloc_objects (count), alloc_space (bytes),
// inuse_objects (count: blocks owned now), inuse_space (bytes: 4096 x 2^order);
// default_sample_type inuse_space. In-use samples are labelled pid, comm, gfp (the %pGg text),
// order, content_id (0x%016x) and handle; "ever" samples (one a stack, see core/heap_profile.h)
// carry content_id, handle and order only, with 0 in use. One Location an ip (its address is
// the ip), one Function a symbol name (without +0xoff/0xsize).
#ifndef PAGEOWNER_SERVER_PPROF_H_
#define PAGEOWNER_SERVER_PPROF_H_

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "core/heap_profile.h"
#include "core/queries.h"
#include "core/symbols.h"
#include "server/shared_machine.h"

namespace pageowner::server {

// The serialized Profile (not gzipped) of `profile`. `time_nanos` goes into the profile.
std::string SerializePprof(const HeapProfile& profile, const SymbolTable& symbols,
                           int64_t time_nanos);

// `data` in the gzip format (RFC 1952).
std::string Gzip(std::string_view data);

// Walks the machine's allocated blocks matching `filter` a slice at a time under the reader
// lock (kBlocksPerHold blocks a hold) and returns the gzipped profile.
inline constexpr uint64_t kProfileBlocksPerHold = 16384;
std::string BuildPprof(const SharedMachine& machine, const PageFilter& filter);

}  // namespace pageowner::server

#endif  // PAGEOWNER_SERVER_PPROF_H_
