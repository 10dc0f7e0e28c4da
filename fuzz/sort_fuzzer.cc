// page_owner_sort: the command-line parser over fuzzed arguments, then the sorter over a fuzzed
// dump with the options that parsed. Input: the arguments on the first line, separated by
// spaces (byte 0 of the line picks the tool's version: '1' for 6.1), then the dump.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "core/page_owner_sort.h"
#include "core/page_owner_sort_args.h"
#include "fuzz/fuzz_util.h"

namespace pageowner::fuzz {
namespace {

void Run(std::string_view input) {
  const size_t nl = input.find('\n');
  std::string_view line = input.substr(0, nl);
  const std::string_view dump = nl == std::string_view::npos ? "" : input.substr(nl + 1);
  PageOwnerSortVersion version = PageOwnerSortVersion::k6_12;
  if (!line.empty() && line[0] == '1') {
    version = PageOwnerSortVersion::k6_1;
    line.remove_prefix(1);
  }
  std::vector<std::string> args;
  for (std::string_view a : Split(line, ' ')) {
    if (args.size() == 16) break;
    if (!a.empty()) args.emplace_back(a);
  }
  absl::StatusOr<SortOptions> options = ParseSortArgs(args, version);
  if (!options.ok()) {
    PO_FUZZ_CHECK(options.status().code() == absl::StatusCode::kInvalidArgument,
                  options.status().ToString());
    SortOptions defaults;
    defaults.version = version;
    options = defaults;
    if (version == PageOwnerSortVersion::k6_1) options->sort.clear();
  }
  PageOwnerSorter sorter;
  const size_t half = dump.size() / 2;  // split anywhere: a line may span calls
  sorter.AddText(dump.substr(0, half));
  sorter.AddText(dump.substr(half));
  const SortReport report = sorter.Report(*options);
  PO_FUZZ_CHECK(report.records >= 0 && report.loaded >= 0, "negative counts");
  // Split or whole, the tool reads the same dump.
  const SortReport whole = SortPageOwnerDump(dump, *options);
  PO_FUZZ_CHECK(whole.output == report.output && whole.loaded == report.loaded,
                "a split dump sorted differently");
}

}  // namespace
}  // namespace pageowner::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  pageowner::fuzz::Run(pageowner::fuzz::AsText(data, size));
  return 0;
}
