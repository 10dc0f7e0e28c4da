#include "core/snapshot.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "core/strings.h"

namespace pageowner {
namespace {

constexpr size_t kSparseBlock = 64 * 1024;

bool AllZero(const char* p, size_t n) {
  // Word at a time: the records of a full machine are rarely zero, so this mostly stops early.
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t w;
    std::memcpy(&w, p + i, 8);
    if (w != 0) return false;
  }
  for (; i < n; ++i) {
    if (p[i] != 0) return false;
  }
  return true;
}

std::string TagName(uint32_t tag) {
  std::string s(4, '?');
  for (int i = 0; i < 4; ++i) {
    const char c = static_cast<char>((tag >> (8 * i)) & 0xff);
    if (c >= 0x20 && c < 0x7f) s[i] = c;
  }
  return s;
}

}  // namespace

absl::Status StringSource::Read(void* data, size_t n) {
  if (data_.size() - at_ < n) {
    return absl::DataLossError(absl::StrCat("snapshot cut short: ", n, " bytes wanted at offset ",
                                            at_, " of ", data_.size()));
  }
  std::memcpy(data, data_.data() + at_, n);
  at_ += n;
  return absl::OkStatus();
}

void SnapshotWriter::Bytes(const void* data, size_t n) {
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    if (buffer_.size() == kBufferBytes) Flush();
    const size_t take = std::min(n, kBufferBytes - buffer_.size());
    buffer_.insert(buffer_.end(), p, p + take);
    p += take;
    n -= take;
  }
}

void SnapshotWriter::String(std::string_view s) {
  U32(static_cast<uint32_t>(s.size()));
  Bytes(s.data(), s.size());
}

void SnapshotWriter::SparseBytes(const void* data, size_t n) {
  const char* p = static_cast<const char*>(data);
  for (size_t at = 0; at < n; at += kSparseBlock) {
    const size_t len = std::min(kSparseBlock, n - at);
    if (AllZero(p + at, len)) {
      U8(0);
    } else {
      U8(1);
      Bytes(p + at, len);
    }
  }
}

void SnapshotWriter::Flush() {
  if (status_.ok() && !buffer_.empty()) status_ = sink_->Append(buffer_.data(), buffer_.size());
  flushed_ += buffer_.size();
  buffer_.clear();
}

absl::Status SnapshotWriter::Finish() {
  Flush();
  return status_;
}

void SnapshotReader::Fail(std::string_view why) {
  if (status_.ok()) status_ = absl::DataLossError(absl::StrCat("snapshot: ", Sv(why)));
}

void SnapshotReader::Bytes(void* data, size_t n) {
  if (!status_.ok()) {
    std::memset(data, 0, n);
    return;
  }
  status_ = source_->Read(data, n);
  if (!status_.ok()) std::memset(data, 0, n);
}

std::string SnapshotReader::String(size_t max_len) {
  const uint32_t n = U32();
  if (n > max_len) {
    Fail(absl::StrCat("a string of ", n, " bytes where at most ", max_len, " fit"));
    return "";
  }
  std::string s(n, '\0');
  Bytes(s.data(), n);
  return s;
}

void SnapshotReader::ExpectTag(uint32_t tag, std::string_view section) {
  const uint32_t got = U32();
  if (ok() && got != tag) {
    Fail(absl::StrCat("section ", Sv(section), " expected (tag ", TagName(tag), "), found tag ",
                      TagName(got)));
  }
}

uint64_t SnapshotReader::Count(uint64_t max, std::string_view what) {
  const uint64_t n = U64();
  if (ok() && n > max) {
    Fail(absl::StrCat(Sv(what), ": ", n, " where at most ", max, " can be"));
    return 0;
  }
  return n;
}

void SnapshotReader::SparseBytes(void* data, size_t n) {
  char* p = static_cast<char*>(data);
  for (size_t at = 0; at < n && ok(); at += kSparseBlock) {
    const size_t len = std::min(kSparseBlock, n - at);
    const uint8_t kind = U8();
    if (kind == 1) {
      Bytes(p + at, len);
    } else if (kind != 0 && ok()) {
      Fail(absl::StrCat("a sparse block marker ", int{kind}, " at byte ", at));
    }
  }
}

}  // namespace pageowner
