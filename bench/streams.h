// The workload on the wire for pageowner-bench: channels of their own, the workload's events
// recorded once against an in-process twin, and the ingest streams that send them.
#ifndef PAGEOWNER_BENCH_STREAMS_H_
#define PAGEOWNER_BENCH_STREAMS_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "client/session.h"
#include "core/workload.h"
#include "grpcpp/grpcpp.h"

namespace pageowner::bench {

// No receive limit, and a channel argument of its own, so that runs share no connection.
grpc::ChannelArguments BenchChannelArgs();
std::shared_ptr<grpc::Channel> Channel(const std::string& address);

// The benchmarks' workload: 10,000 stacks of 16 frames, about 70% of `pages` allocated.
WorkloadOptions BenchWorkload(uint64_t pages, uint64_t seed);

// The workload's events, generated once against an in-process twin of the daemon's machine
// (the Machine is deterministic, so the daemon gives the same results for the same events).
struct Recorded {
  std::unique_ptr<Workload> workload;
  std::vector<WorkloadEvent> events;
  std::vector<uint64_t> result_pfn;  // what the twin answered, 0 on failure
  uint64_t failed = 0;
  double seconds = 0;
};
Recorded Pregenerate(uint64_t pages, uint64_t events, uint64_t seed);

struct StreamOutcome {
  uint64_t events = 0;
  uint64_t failed = 0;      // results not OK
  uint64_t mismatched = 0;  // results that differ from the twin's
  double seconds = 0;
};

// Streams the recorded events with one Session and checks each result against the twin's.
StreamOutcome StreamRecorded(const std::shared_ptr<grpc::Channel>& channel, const Recorded& rec,
                             size_t batch);

// One stream of a live workload (it observes its own results as they arrive), for concurrent
// streams, whose interleaving on the daemon no twin can predict. Each stream keeps `fill` of the
// machine allocated. With `free_at_end`, once every event is answered it frees every block it
// holds (more events, counted), so that streams run one after another do not pile memory up.
// `stack_seed` (not 0): the streams share their stacks' frames, as one kernel's call sites.
StreamOutcome StreamLive(const std::shared_ptr<grpc::Channel>& channel, uint64_t pages, double fill,
                         uint64_t events, uint64_t seed, size_t batch, bool free_at_end = false,
                         uint64_t stack_seed = 0);

// Allocations of one order until `fill` of the machine is allocated, on one Session.
StreamOutcome FillOrder(const std::string& address, uint64_t pages, int order, double fill);

}  // namespace pageowner::bench

#endif  // PAGEOWNER_BENCH_STREAMS_H_
