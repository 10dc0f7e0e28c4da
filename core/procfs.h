// Reading the kernel's pseudo files (/proc, /sys, tracefs): whole small text files, and byte
// ranges of large binary ones, with errno mapped to one absl status code each.
#ifndef PAGEOWNER_CORE_PROCFS_H_
#define PAGEOWNER_CORE_PROCFS_H_

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace pageowner {

// The status for a failed system call on `path`: ENOENT/ENOTDIR -> kNotFound, EACCES/EPERM ->
// kPermissionDenied, EINVAL -> kInvalidArgument, anything else kInternal. The message is
// "<what> <path>: <strerror>".
absl::Status ErrnoStatus(int err, const std::string& what, const std::string& path);

// The whole content of `path`, read until end of file (pseudo files report size 0, so the size
// is never trusted). Errors: those of ErrnoStatus.
absl::StatusOr<std::string> ReadTextFile(const std::string& path);

// Reads up to `size` bytes at byte `offset` of the open file `fd` into `buf`, retrying short
// reads and EINTR; returns the bytes read (less than `size` only at end of file).
// Errors: those of ErrnoStatus, naming `path`.
absl::StatusOr<size_t> PreadFully(int fd, const std::string& path, uint64_t offset, void* buf,
                                  size_t size);

}  // namespace pageowner

#endif  // PAGEOWNER_CORE_PROCFS_H_
