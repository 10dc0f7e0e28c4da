#include "server/shared_machine.h"

#include <atomic>
#include <thread>
#include <vector>

#include "core/kernel_flags.h"
#include "gtest/gtest.h"

namespace pageowner::server {
namespace {

MachineOptions Small() {
  MachineOptions o;
  o.pages = PageCount(16384);
  return o;
}

AllocEvent Alloc(absl::Span<const uint64_t> frames) {
  return AllocEvent{.order = Order(0), .gfp_mask = kGfpKernel, .frames = frames};
}

TEST(SharedMachineTest, AppliesInOrderAndSkipsPrecheckedFailures) {
  SharedMachine m(Small());
  const std::vector<uint64_t> frames = {0xffffffff81000010, 0xffffffff81000020};
  std::vector<Event> events = {Alloc(frames), Alloc(frames), Alloc(frames)};
  const std::vector<absl::Status> checks = {absl::OkStatus(), absl::InvalidArgumentError("no"),
                                            absl::OkStatus()};
  std::vector<EventResult> results;
  m.ApplyBatch(absl::MakeSpan(events), checks, {}, &results);
  ASSERT_EQ(results.size(), 3u);
  EXPECT_TRUE(results[0].status.ok());
  EXPECT_EQ(results[1].status, checks[1]);
  EXPECT_TRUE(results[2].status.ok());
  EXPECT_EQ(results[2].handle, results[0].handle);
  EXPECT_EQ(m.Read([](const Machine& mm) { return mm.counters().allocs; }), 2u);
}

TEST(SharedMachineTest, HandleHintsAreCachedAndChecked) {
  SharedMachine m(Small());
  const std::vector<uint64_t> a = {0xffffffff81000010, 0xffffffff81000020};
  const std::vector<uint64_t> b = {0xffffffff81000030};
  std::atomic<uint32_t> hint_a{0}, hint_b{0};
  std::vector<Event> events = {Alloc(a), Alloc(b), Alloc(a)};
  const std::vector<absl::Status> ok(3);
  const std::vector<std::atomic<uint32_t>*> hints = {&hint_a, &hint_b, &hint_a};
  std::vector<EventResult> results;
  m.ApplyBatch(absl::MakeSpan(events), ok, hints, &results);
  EXPECT_EQ(hint_a.load(), results[0].handle.raw());
  EXPECT_EQ(hint_b.load(), results[1].handle.raw());
  EXPECT_EQ(results[2].handle, results[0].handle);
  // The third event was given the hint its stack cached from the first.
  EXPECT_EQ(std::get<AllocEvent>(events[2]).stack_hint, results[0].handle);

  // A wrong hint costs nothing but the lookup: the right handle comes back and is cached.
  const StackHandle handle_a = results[0].handle;
  hint_a.store(results[1].handle.raw());
  std::vector<Event> again = {Alloc(a)};
  const std::vector<std::atomic<uint32_t>*> one = {&hint_a};
  m.ApplyBatch(absl::MakeSpan(again), std::vector<absl::Status>(1), one, &results);
  EXPECT_EQ(results[0].handle, handle_a);
  EXPECT_EQ(hint_a.load(), handle_a.raw());
  EXPECT_EQ(m.Read([&](const Machine& mm) { return mm.depot().Usage(handle_a).pages; }), 3);
}

TEST(SharedMachineTest, ReadersRunBesideTheWriter) {
  SharedMachine m(Small());
  const std::vector<uint64_t> frames = {0xffffffff81000010};
  std::atomic<bool> done{false};
  std::thread reader([&] {
    while (!done) {
      // Between two events, the tracked pages always equal the allocated ones.
      m.Read([](const Machine& mm) {
        EXPECT_EQ(mm.tracked_pages().raw(), mm.allocator().allocated_pages().raw());
      });
    }
  });
  std::vector<Event> events(5000, Alloc(frames));
  std::vector<EventResult> results;
  m.ApplyBatch(absl::MakeSpan(events), std::vector<absl::Status>(events.size()), {}, &results);
  done = true;
  reader.join();
  for (const EventResult& r : results) EXPECT_TRUE(r.status.ok());
}

}  // namespace
}  // namespace pageowner::server
