// Real kernels in and out: `pageowner import` (a /sys/kernel/debug/page_owner dump into the
// daemon), `pageowner sort` (page_owner_sort computed in the daemon) and `pageowner replay
// --format=ftrace` (kmem:mm_page_alloc / mm_page_free text traces).
#ifndef PAGEOWNER_CLIENT_REAL_KERNELS_H_
#define PAGEOWNER_CLIENT_REAL_KERNELS_H_

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "client/client.h"
#include "client/commands.h"
#include "core/reports.h"

namespace pageowner::cli {

// Reads a whole input: "-" is `in`; a name ending in ".gz" is gunzipped (zlib) and one ending in
// ".xz" is unxzed (liblzma), in-process. Errors: kNotFound / kInvalidArgument with the file name.
absl::Status ReadInputFile(const std::string& file, std::istream& in, std::string* out);

// "today", "v6.2" (DumpFormat::kFreeTs) or "2016"; kInvalidArgument otherwise.
absl::StatusOr<DumpFormat> ParseDumpFormat(std::string_view name);

struct ImportOptions {
  std::string file;  // "-": io.in
  size_t batch = 4096;
  // Import even when the dump's highest pfn lies beyond the daemon's memory (those blocks then
  // fail with OUT_OF_RANGE).
  bool force = false;
  size_t max_listed = 20;  // problems and failed blocks listed (all are counted)
  bool progress = true;    // a progress line on io.err each second for inputs over 8 MiB
};
// Streams a page_owner dump into the daemon, each block at its pfn. Exit 0 when every block was
// read and imported, 1 when the daemon refused some (or the dump does not fit), 2 for a file it
// cannot read. Lines it does not understand are reported, never fatal.
int RunImport(client::Client& client, const ImportOptions& options, Io io);

// page_owner_sort in the daemon: `args` are the tool's options; prints its output file's text
// on io.out (and what the tool prints on stdout/stderr on io.err). Exit 2 for arguments the tool
// refuses (its message on io.err).
int RunSort(client::Client& client, const std::vector<std::string>& args, DumpFormat format, Io io);

// Replays an ftrace text trace of kmem:mm_page_alloc and kmem:mm_page_free: allocs at their pfn
// (order, gfp mask, pid, comm, tgid = pid unless the trace records it, the trace's timestamp),
// frees of their block; stacks from the <stack trace> entries. Events that do not fit the state
// are counted by kind and code. Exit 0 when every event was applied, 1 otherwise.
int RunReplayFtrace(client::Client& client, const ReplayOptions& options, Io io);

}  // namespace pageowner::cli

#endif  // PAGEOWNER_CLIENT_REAL_KERNELS_H_
