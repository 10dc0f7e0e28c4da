// The byte encoding of a Machine's state (Machine::SaveState, Machine::LoadState): what each core
// part writes of itself and reads back, as plain little-endian bytes with no gRPC or protobuf.
// Where the bytes go (a file with a header and CRC32C-checked chunks, a string in a test) is the
// caller's: it hands a ByteSink to write and a ByteSource to read.
//
// A state stream is a sequence of sections, each opened by a four-byte tag (SnapshotTag) so that
// a reader that lost its place says where, not what garbage it read next.
#ifndef PAGEOWNER_CORE_SNAPSHOT_H_
#define PAGEOWNER_CORE_SNAPSHOT_H_

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "absl/status/status.h"

namespace pageowner {

// Where SnapshotWriter's bytes go. Append returns an error to stop the writer (disk full).
class ByteSink {
 public:
  virtual ~ByteSink() = default;
  virtual absl::Status Append(const void* data, size_t n) = 0;
};

// Where SnapshotReader's bytes come from. Read fills exactly `n` bytes, or fails: kDataLoss
// when fewer remain (a truncated file) or the bytes fail their check (a CRC mismatch).
class ByteSource {
 public:
  virtual ~ByteSource() = default;
  virtual absl::Status Read(void* data, size_t n) = 0;
};

// A ByteSink into a string and a ByteSource over one, for tests and small states.
class StringSink : public ByteSink {
 public:
  absl::Status Append(const void* data, size_t n) override {
    out_.append(static_cast<const char*>(data), n);
    return absl::OkStatus();
  }
  const std::string& data() const { return out_; }

 private:
  std::string out_;
};
class StringSource : public ByteSource {
 public:
  explicit StringSource(std::string_view data) : data_(data) {}
  absl::Status Read(void* data, size_t n) override;
  size_t remaining() const { return data_.size() - at_; }

 private:
  std::string_view data_;
  size_t at_ = 0;
};

// Section tags: four ASCII letters read as a little-endian u32.
constexpr uint32_t SnapshotTag(const char (&s)[5]) {
  return static_cast<uint32_t>(static_cast<unsigned char>(s[0])) |
         static_cast<uint32_t>(static_cast<unsigned char>(s[1])) << 8 |
         static_cast<uint32_t>(static_cast<unsigned char>(s[2])) << 16 |
         static_cast<uint32_t>(static_cast<unsigned char>(s[3])) << 24;
}

// Encodes values into a ByteSink through a 64 KiB buffer. The first sink error is kept and every
// later write is dropped, so a caller writes everything and checks Finish() once.
// Thread-safety: none (one writer).
class SnapshotWriter {
 public:
  explicit SnapshotWriter(ByteSink* sink) : sink_(sink) { buffer_.reserve(kBufferBytes); }
  SnapshotWriter(const SnapshotWriter&) = delete;
  SnapshotWriter& operator=(const SnapshotWriter&) = delete;

  void Bytes(const void* data, size_t n);
  template <typename T>
  void Pod(const T& v) {
    static_assert(std::is_trivially_copyable_v<T>);
    Bytes(&v, sizeof(T));
  }
  void U8(uint8_t v) { Pod(v); }
  void U32(uint32_t v) { Pod(v); }
  void U64(uint64_t v) { Pod(v); }
  void I64(int64_t v) { Pod(v); }
  // u32 length, then the bytes.
  void String(std::string_view s);
  void Tag(uint32_t tag) { U32(tag); }
  // A run of bytes that is mostly zero in a sparse machine: 64 KiB blocks, each a u8 (0: all
  // zero, 1: the bytes follow). SnapshotReader::SparseBytes reads it back.
  void SparseBytes(const void* data, size_t n);

  // Flushes the buffer; the first error any write met, or OK.
  absl::Status Finish();
  // Bytes written so far (buffered ones included).
  uint64_t bytes() const { return flushed_ + buffer_.size(); }

 private:
  static constexpr size_t kBufferBytes = 64 * 1024;
  void Flush();

  ByteSink* const sink_;
  std::vector<char> buffer_;
  uint64_t flushed_ = 0;
  absl::Status status_;
};

// Decodes what SnapshotWriter wrote. The first error (from the source, or a Fail() of the caller
// finding a value out of range) is kept; later reads return zeros, so a caller reads a section,
// checks ok() before any loop whose bound it read, and returns status() at the end.
// Thread-safety: none (one reader).
class SnapshotReader {
 public:
  explicit SnapshotReader(ByteSource* source) : source_(source) {}
  SnapshotReader(const SnapshotReader&) = delete;
  SnapshotReader& operator=(const SnapshotReader&) = delete;

  bool ok() const { return status_.ok(); }
  const absl::Status& status() const { return status_; }
  // Records kDataLoss("snapshot: <why>") unless an error is already kept.
  void Fail(std::string_view why);

  void Bytes(void* data, size_t n);
  template <typename T>
  T Pod() {
    static_assert(std::is_trivially_copyable_v<T>);
    T v;
    std::memset(&v, 0, sizeof(T));
    Bytes(&v, sizeof(T));
    return v;
  }
  uint8_t U8() { return Pod<uint8_t>(); }
  uint32_t U32() { return Pod<uint32_t>(); }
  uint64_t U64() { return Pod<uint64_t>(); }
  int64_t I64() { return Pod<int64_t>(); }
  // A String of at most max_len bytes (longer: Fail).
  std::string String(size_t max_len);
  // Reads a u32 and Fails naming `section` unless it is `tag`.
  void ExpectTag(uint32_t tag, std::string_view section);
  // A count that bounds a loop or an allocation: Fails when above `max`.
  uint64_t Count(uint64_t max, std::string_view what);
  // What SparseBytes wrote, into data[0..n); zero blocks are left as they are (the caller's
  // memory is zero already, e.g. from calloc, so untouched pages stay untouched).
  void SparseBytes(void* data, size_t n);

 private:
  ByteSource* const source_;
  absl::Status status_;
};

}  // namespace pageowner

#endif  // PAGEOWNER_CORE_SNAPSHOT_H_
