// The daemon's default limits, defined once (flags, ServerOptions and ServiceOptions use them).
#ifndef PAGEOWNER_SERVER_LIMITS_H_
#define PAGEOWNER_SERVER_LIMITS_H_

#include <cstdint>

namespace pageowner::server {

// Events an Ingest batch may hold (--max_batch_events); a longer batch is malformed.
inline constexpr uint32_t kDefaultMaxBatchEvents = 65536;

}  // namespace pageowner::server

#endif  // PAGEOWNER_SERVER_LIMITS_H_
