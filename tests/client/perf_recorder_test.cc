#include "client/perf_recorder.h"

#include <linux/perf_event.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "core/kallsyms.h"
#include "core/tracepoint_format.h"
#include "gtest/gtest.h"

namespace pageowner::client {
namespace {

const std::string kFormats = std::string(PAGEOWNER_TEST_DATA_DIR) + "/tracepoint/";

TracepointFormat Format(const std::string& kernel, const std::string& event) {
  absl::StatusOr<TracepointFormat> f =
      TracepointFormat::ReadFromTracefs(kFormats + kernel, "kmem", event);
  EXPECT_TRUE(f.ok()) << f.status();
  return *f;
}

// Little-endian record builder.
class Bytes {
 public:
  template <typename T>
  Bytes& Put(T v) {
    const size_t at = b_.size();
    b_.resize(at + sizeof v);
    std::memcpy(b_.data() + at, &v, sizeof v);
    return *this;
  }
  Bytes& Raw(const std::vector<uint8_t>& v) {
    b_.insert(b_.end(), v.begin(), v.end());
    return *this;
  }
  std::vector<uint8_t>& get() { return b_; }

 private:
  std::vector<uint8_t> b_;
};

std::vector<uint8_t> Record(uint32_t type, Bytes body) {
  Bytes r;
  r.Put(type)
      .Put(uint16_t{PERF_RECORD_MISC_KERNEL})
      .Put(static_cast<uint16_t>(sizeof(perf_event_header) + body.get().size()));
  return r.Raw(body.get()).get();
}

// The sample_id_all trailer of non-sample records: pid, tid, time, cpu, res, identifier.
void Trailer(Bytes& b, uint32_t pid, uint32_t tid) {
  b.Put(pid).Put(tid).Put(uint64_t{5}).Put(uint32_t{1}).Put(uint32_t{0}).Put(uint64_t{99});
}

std::vector<uint8_t> Comm(uint32_t pid, uint32_t tid, const char (&name)[8]) {
  Bytes b;
  b.Put(pid).Put(tid);
  for (char c : name) b.Put(c);
  Trailer(b, pid, tid);
  return Record(PERF_RECORD_COMM, b);
}

std::vector<uint8_t> Fork(uint32_t pid, uint32_t ppid, uint32_t tid, uint32_t ptid) {
  Bytes b;
  b.Put(pid).Put(ppid).Put(tid).Put(ptid).Put(uint64_t{7});
  Trailer(b, pid, tid);
  return Record(PERF_RECORD_FORK, b);
}

std::vector<uint8_t> Lost(uint64_t n) {
  Bytes b;
  b.Put(uint64_t{99}).Put(n);
  Trailer(b, 0, 0);
  return Record(PERF_RECORD_LOST, b);
}

// A 6.18 payload: common header then pfn@8, order@16, gfp_flags@24, migratetype@32.
std::vector<uint8_t> Payload618(uint16_t type, uint64_t pfn, uint32_t order, uint64_t gfp,
                                int32_t mt, size_t size) {
  Bytes b;
  b.Put(type).Put(uint8_t{0}).Put(uint8_t{0}).Put(int32_t{1234}).Put(pfn);
  if (size > 16) b.Put(order).Put(uint32_t{0}).Put(gfp).Put(mt);
  b.get().resize(size);
  return b.get();
}

std::vector<uint8_t> Sample(uint32_t pid, uint32_t tid, uint64_t time, uint32_t cpu,
                            const std::vector<uint64_t>& chain, std::vector<uint8_t> raw) {
  Bytes b;
  b.Put(uint64_t{99}).Put(pid).Put(tid).Put(time).Put(cpu).Put(uint32_t{0});
  b.Put(uint64_t{chain.size()});
  for (uint64_t ip : chain) b.Put(ip);
  // The kernel pads the raw block so that the record stays 8-byte aligned.
  const uint32_t raw_size = static_cast<uint32_t>((raw.size() + 4 + 7) / 8 * 8 - 4);
  raw.resize(raw_size);
  b.Put(raw_size).Raw(raw);
  return Record(PERF_RECORD_SAMPLE, b);
}

void WriteRing(std::vector<uint8_t>& ring, uint64_t pos, const std::vector<uint8_t>& rec) {
  for (size_t i = 0; i < rec.size(); ++i) ring[(pos + i) % ring.size()] = rec[i];
}

constexpr uint64_t kKernel = static_cast<uint64_t>(PERF_CONTEXT_KERNEL);

TEST(PerfRecorderTest, RingRecordsWrapAroundTheEnd) {
  absl::StatusOr<PerfRecordDecoder> d = PerfRecordDecoder::Create(
      Format("linux-6.18", "mm_page_alloc"), Format("linux-6.18", "mm_page_free"),
      Format("linux-6.18", "mm_page_free_batched"));
  ASSERT_TRUE(d.ok()) << d.status();
  absl::StatusOr<Kallsyms> k = Kallsyms::Parse(
      "ffffffff81000000 T perf_trace_mm_page_alloc\n"
      "ffffffff81000100 T __alloc_frozen_pages_noprof\n"
      "ffffffff81000400 T end\n");
  ASSERT_TRUE(k.ok());
  d->set_kallsyms(&*k);
  d->set_proc_root("/nonexistent");

  // 232 bytes of records in a 256-byte ring, starting 24 bytes before its end: the COMM record
  // wraps (its header and pid/tid before the end, its name after), and in the second pass the
  // free sample wraps in its call chain.
  std::vector<uint8_t> ring(256, 0xcc);
  const std::vector<uint8_t> comm = Comm(77, 78, "dd\0\0\0\0\0");
  const std::vector<uint8_t> lost = Lost(5);
  const std::vector<uint8_t> alloc =
      Sample(77, 78, 1000, 1, {kKernel, 0xffffffff81000010, 0xffffffff81000150, 0xffffffff8100016b},
             Payload618(653, 0x12345, 3, 0x140cca, 1, 36));
  ASSERT_EQ(comm.size(), 56u);
  ASSERT_EQ(lost.size(), 56u);
  ASSERT_EQ(alloc.size(), 120u);
  uint64_t head = 1000;  // free-running: 1000 % 256 == 232, 24 bytes before the end
  const uint64_t tail0 = head;
  for (const auto* r : {&comm, &lost, &alloc}) {
    WriteRing(ring, head, *r);
    head += r->size();
  }
  std::vector<KernelPageEvent> events;
  std::vector<uint8_t> scratch;
  uint64_t malformed = 0;
  uint64_t tail =
      DrainRing(ring.data(), ring.size(), tail0, head, scratch, &malformed,
                [&](absl::Span<const uint8_t> rec) {
                  d->Decode(rec, [&](const KernelPageEvent& e) { events.push_back(e); });
                });
  EXPECT_EQ(tail, head);
  EXPECT_EQ(malformed, 0u);
  ASSERT_EQ(events.size(), 1u);
  const KernelPageEvent& a = events[0];
  EXPECT_EQ(a.kind, KernelPageEventKind::kAlloc);
  EXPECT_EQ(a.pfn, 0x12345u);
  EXPECT_EQ(a.order, 3u);
  EXPECT_EQ(a.gfp_flags, 0x140ccau);
  EXPECT_EQ(a.migratetype, 1);
  EXPECT_EQ(a.pid, 77);
  EXPECT_EQ(a.tid, 78);
  EXPECT_EQ(a.cpu, 1u);
  EXPECT_EQ(a.time_ns, 1000u);
  EXPECT_EQ(a.comm, "dd");
  // The marker and the perf-internal top frame are gone.
  EXPECT_EQ(a.ips, (std::vector<uint64_t>{0xffffffff81000150, 0xffffffff8100016b}));
  EXPECT_EQ(k->Symbolize(a.ips[1]), "__alloc_frozen_pages_noprof+0x6b/0x300");

  // Second pass: a free, a batched free by the idle task, a failed allocation, and a thread
  // nobody named; the free sample wraps.
  const std::vector<uint8_t> free =
      Sample(500, 501, 2000, 0, {kKernel, 0xffffffff81000150}, Payload618(655, 0x400, 2, 0, 0, 20));
  const std::vector<uint8_t> batched =
      Sample(0, 0, 2001, 1, {kKernel}, Payload618(654, 0x401, 0, 0, 0, 16));
  const std::vector<uint8_t> failed =
      Sample(77, 78, 2002, 1, {kKernel}, Payload618(653, ~uint64_t{0}, 9, 0xcc0, 0, 36));
  // A thread forked from dd's is named dd without a COMM record or /proc.
  const std::vector<uint8_t> fork = Fork(77, 77, 79, 78);
  const std::vector<uint8_t> child_free =
      Sample(77, 79, 2003, 0, {kKernel}, Payload618(655, 0x800, 0, 0, 0, 20));
  events.clear();
  // 168 bytes, then 104, then 144: each pass fits the 256-byte ring.
  for (const auto& pass :
       {std::vector{&free, &batched}, std::vector{&failed}, std::vector{&fork, &child_free}}) {
    for (const auto* r : pass) {
      WriteRing(ring, head, *r);
      head += r->size();
    }
    tail = DrainRing(ring.data(), ring.size(), tail, head, scratch, &malformed,
                     [&](absl::Span<const uint8_t> rec) {
                       d->Decode(rec, [&](const KernelPageEvent& e) { events.push_back(e); });
                     });
    EXPECT_EQ(tail, head);
  }
  ASSERT_EQ(events.size(), 3u);
  EXPECT_EQ(events[2].tid, 79);
  EXPECT_EQ(events[2].comm, "dd");
  EXPECT_EQ(events[0].kind, KernelPageEventKind::kFree);
  EXPECT_EQ(events[0].pfn, 0x400u);
  EXPECT_EQ(events[0].order, 2u);
  EXPECT_EQ(events[0].comm, "");
  EXPECT_EQ(events[1].kind, KernelPageEventKind::kFreeBatched);
  EXPECT_EQ(events[1].pfn, 0x401u);
  EXPECT_EQ(events[1].order, 0u);
  EXPECT_EQ(events[1].comm, "swapper/1");
  EXPECT_TRUE(events[1].ips.empty());

  const PerfRecorderStats& s = d->stats();
  EXPECT_EQ(s.records, 8u);
  EXPECT_EQ(s.samples, 5u);
  EXPECT_EQ(s.alloc, 1u);
  EXPECT_EQ(s.free, 2u);
  EXPECT_EQ(s.fork_records, 1u);
  EXPECT_EQ(s.free_batched, 1u);
  EXPECT_EQ(s.failed_allocs, 1u);
  EXPECT_EQ(s.lost, 5u);
  EXPECT_EQ(s.lost_records, 1u);
  EXPECT_EQ(s.comm_records, 1u);
  EXPECT_EQ(s.comm_unknown, 1u);
  EXPECT_EQ(s.dropped_frames, 1u);
  EXPECT_EQ(s.malformed, 0u);

  // A header that claims more than the ring holds: skipped to head, counted.
  WriteRing(ring, head, Record(PERF_RECORD_SAMPLE, Bytes().Put(uint64_t{0})));
  tail = DrainRing(ring.data(), ring.size(), head, head + 8, scratch, &malformed,
                   [&](absl::Span<const uint8_t>) { ADD_FAILURE(); });
  EXPECT_EQ(tail, head + 8);
  EXPECT_EQ(malformed, 1u);
}

TEST(PerfRecorderTest, OlderFormatsAreRefusedByName) {
  absl::StatusOr<PerfRecordDecoder> d =
      PerfRecordDecoder::Create(Format("linux-3.x-derived", "mm_page_alloc"),
                                Format("linux-3.x-derived", "mm_page_free"), std::nullopt);
  EXPECT_EQ(d.status().code(), absl::StatusCode::kUnimplemented);
  EXPECT_EQ(d.status().message(),
            "kmem:mm_page_alloc records `page` (a struct page pointer), not `pfn`: this kernel's "
            "page events are not supported (a pfn would need vmemmap_base and sizeof(struct "
            "page))");
}

TEST(PerfRecorderTest, CpuListsAndOptions) {
  EXPECT_EQ(*ParseCpuList("0-1\n"), (std::vector<int>{0, 1}));
  EXPECT_EQ(*ParseCpuList("0,2-4,7"), (std::vector<int>{0, 2, 3, 4, 7}));
  EXPECT_EQ(ParseCpuList("").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ParseCpuList("3-1").status().message(), "bad cpu list \"3-1\"");
  EXPECT_EQ(ParseCpuList("0,,1").status().code(), absl::StatusCode::kInvalidArgument);
  PerfRecorderOptions o;
  o.ring_pages = 3;
  EXPECT_EQ(PerfRecorder::Open(o).status().message(), "ring_pages 3 is not a power of two");
  o.ring_pages = 8;
  o.tracefs_root = "/nonexistent/tracing";
  absl::StatusOr<std::unique_ptr<PerfRecorder>> r = PerfRecorder::Open(o);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(r.status().message(),
            "tracefs is not mounted at /nonexistent/tracing (no /nonexistent/tracing/events); "
            "mount it with: mount -t tracefs nodev /nonexistent/tracing");
}

// The real kernel, as root: ~1 s of sampling while dd writes 50 MiB through the page cache.
TEST(PerfRecorderRealTest, RecordsDd) {
  const std::string root = "/sys/kernel/tracing";
  bool mounted_here = false;
  if (!TracefsMounted(root)) {
    const absl::Status m = MountTracefs(root);
    if (absl::IsPermissionDenied(m)) GTEST_SKIP() << m;
    ASSERT_TRUE(m.ok()) << m;
    mounted_here = true;
  }
  absl::StatusOr<Kallsyms> k = Kallsyms::ReadFile();
  ASSERT_TRUE(k.ok()) << k.status();
  PerfRecorderOptions o;
  o.tracefs_root = root;
  o.kallsyms = &*k;
  absl::StatusOr<std::unique_ptr<PerfRecorder>> rec = PerfRecorder::Open(o);
  if (mounted_here) {
    // The ids are read; perf needs tracefs no longer.
    const absl::Status u = UnmountTracefs(root);
    EXPECT_TRUE(u.ok()) << u;
  }
  if (absl::IsPermissionDenied(rec.status())) GTEST_SKIP() << rec.status();
  ASSERT_TRUE(rec.ok()) << rec.status();

  uint64_t events = 0, dd_allocs = 0, frees = 0;
  std::map<std::string, uint64_t> by_comm;
  std::vector<uint64_t> dd_chain;
  bool dd_chain_has_alloc = false;
  absl::Status run_status;
  std::thread reader([&] {
    run_status = (*rec)->Run([&](const KernelPageEvent& e) {
      ++events;
      ++by_comm[e.comm];
      if (e.kind != KernelPageEventKind::kAlloc) ++frees;
      if (e.kind == KernelPageEventKind::kAlloc && e.comm == "dd") {
        ++dd_allocs;
        if (!dd_chain_has_alloc) {
          for (uint64_t ip : e.ips) {
            if (k->Symbolize(ip).find("alloc") != std::string::npos) dd_chain_has_alloc = true;
          }
          if (dd_chain_has_alloc) dd_chain = e.ips;
        }
      }
    });
  });
  const auto start = std::chrono::steady_clock::now();
  ASSERT_EQ(
      std::system("dd if=/dev/zero of=/tmp/perf_recorder_test.x bs=1M count=50 2>/dev/null && "
                  "rm -f /tmp/perf_recorder_test.x"),
      0);
  std::this_thread::sleep_until(start + std::chrono::seconds(1));
  (*rec)->Stop();
  reader.join();
  ASSERT_TRUE(run_status.ok()) << run_status;
  const PerfRecorderStats& s = (*rec)->stats();
  std::printf(
      "cpus %d: %lu events (alloc %lu, free %lu, free_batched %lu, failed %lu), lost %lu "
      "in %lu records, comm records %lu, comm from /proc %lu, unknown %lu, dropped frames "
      "%lu, malformed %lu, throttled %lu, unthrottled %lu, fork %lu, exit %lu, other %lu; dd "
      "allocs "
      "%lu\n",
      (*rec)->cpus(), (unsigned long)events, (unsigned long)s.alloc, (unsigned long)s.free,
      (unsigned long)s.free_batched, (unsigned long)s.failed_allocs, (unsigned long)s.lost,
      (unsigned long)s.lost_records, (unsigned long)s.comm_records, (unsigned long)s.comm_from_proc,
      (unsigned long)s.comm_unknown, (unsigned long)s.dropped_frames, (unsigned long)s.malformed,
      (unsigned long)s.throttled, (unsigned long)s.unthrottled, (unsigned long)s.fork_records,
      (unsigned long)s.exit_records, (unsigned long)s.other_records, (unsigned long)dd_allocs);
  for (uint64_t ip : dd_chain) std::printf("  %s\n", k->Symbolize(ip).c_str());
  EXPECT_GT(events, 0u);
  EXPECT_GT(frees, 0u);
  EXPECT_GT(dd_allocs, 0u);
  EXPECT_TRUE(dd_chain_has_alloc);
  EXPECT_EQ(s.malformed, 0u);
  EXPECT_FALSE(mounted_here && TracefsMounted(root));
}

}  // namespace
}  // namespace pageowner::client
