// CRC32C (Castagnoli, the polynomial of iSCSI, ext4 metadata, LevelDB and Prometheus' WAL): the
// checksum of every write-ahead log record. SSE4.2's crc32 instruction when the CPU has it, a
// slicing-by-8 table otherwise; both give the same value.
#ifndef PAGEOWNER_SERVER_CRC32C_H_
#define PAGEOWNER_SERVER_CRC32C_H_

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace pageowner::server {

// The CRC32C of `data` continuing from `crc` (0 to start): Crc32c("123456789") == 0xe3069283.
// Thread-safety: any thread.
uint32_t Crc32cExtend(uint32_t crc, const void* data, size_t n);
inline uint32_t Crc32c(std::string_view data) { return Crc32cExtend(0, data.data(), data.size()); }

// The portable table version, for the test that compares both.
uint32_t Crc32cPortable(uint32_t crc, const void* data, size_t n);

}  // namespace pageowner::server

#endif  // PAGEOWNER_SERVER_CRC32C_H_
