// The http routes beside /metrics that let people and profile stores look at the machine:
//   GET /debug/pprof/heap[?pid=N&comm=C&order=K]  the gzipped pprof heap profile (server/pprof.h)
//   GET /                                         the web page (server/web/index.html)
//   GET /viz/app.js                               its script
//   GET /viz/map?by=B&start=P&end=P&cell=N        the memory map, binary (below)
//   GET /viz/summary[?top=N]                      counters and the top stacks, JSON
//   GET /viz/page?pfn=P                           one page's block text and stack, JSON
//
// The map (little-endian, every field 4-byte aligned):
//   "POMAP001"; u64 start_pfn, end_pfn, pages_per_cell; u32 coloring (core/memory_map.h),
//   cells; u32 runs, then runs x (u32 value, u32 count) run-length encoding the cells;
//   u32 mixed, then mixed x u32 pageblock number; u32 legend, then legend x (u32 handle,
//   u32 content_id low, u32 content_id high) for every handle in the cells (coloring stack).
// Response headers X-Pageowner-Walk-Us (wall time of the walk), X-Pageowner-Lock-Holds (reader
// lock holds) and X-Pageowner-Max-Hold-Us (the longest) say what the request cost the daemon.
//
// Every walk takes the machine's reader lock a slice at a time (kVizBlocksPerHold blocks), so
// ingest waits for at most one slice.
#ifndef PAGEOWNER_SERVER_VIZ_HTTP_H_
#define PAGEOWNER_SERVER_VIZ_HTTP_H_

#include <cstdint>
#include <vector>

#include "server/http_route.h"
#include "server/shared_machine.h"

namespace pageowner::server {

inline constexpr uint64_t kVizBlocksPerHold = 16384;

// The routes above; `machine` must outlive them.
std::vector<HttpRoute> VizRoutes(const SharedMachine* machine);

}  // namespace pageowner::server

#endif  // PAGEOWNER_SERVER_VIZ_HTTP_H_
