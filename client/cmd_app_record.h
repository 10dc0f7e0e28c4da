// `pageowner record [--leaks-at-exit=keep|free] [--ring-slots N] [--verbose] -- CMD ARGS...`:
// an unmodified program recorded through the preload library (client/app_record.h). Its own
// table row until `record --kernel` (client/cmd_record.cc) exists; then that row's `-- CMD`
// branch calls ParseAppRecord.
#ifndef PAGEOWNER_CLIENT_CMD_APP_RECORD_H_
#define PAGEOWNER_CLIENT_CMD_APP_RECORD_H_

#include "absl/status/statusor.h"
#include "client/command.h"

namespace pageowner::cli {

// The `record -- CMD` row.
const Command& AppRecordCommand();

// Checks a `record -- CMD` line (CMD ARGS are its positionals) and returns its runner:
// kInvalidArgument for a bad --leaks-at-exit or --ring-slots, or no CMD.
absl::StatusOr<Runner> ParseAppRecord(const CommandLine& line);

}  // namespace pageowner::cli

#endif  // PAGEOWNER_CLIENT_CMD_APP_RECORD_H_
