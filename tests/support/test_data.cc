#include "tests/support/test_data.h"

#include <lzma.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>

namespace pageowner::testing {
namespace {

[[noreturn]] void Fail(const std::string& path, const char* what, int code = 0) {
  std::fprintf(stderr, "test data %s: %s (%d)\n", path.c_str(), what, code);
  std::abort();
}

}  // namespace

std::string TestDataPath(std::string_view name) {
  return std::string(PAGEOWNER_TEST_DATA_DIR) + "/" + std::string(name);
}

std::string ReadTestFile(std::string_view name) {
  const std::string path = TestDataPath(name);
  std::ifstream in(path, std::ios::binary);
  if (!in.good()) Fail(path, "cannot open");
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string ReadXz(std::string_view name) {
  const std::string in = ReadTestFile(name);
  lzma_stream strm = LZMA_STREAM_INIT;
  if (lzma_ret r = lzma_stream_decoder(&strm, UINT64_MAX, 0); r != LZMA_OK) {
    Fail(TestDataPath(name), "lzma_stream_decoder", r);
  }
  std::string out;
  char buf[1 << 16];
  strm.next_in = reinterpret_cast<const uint8_t*>(in.data());
  strm.avail_in = in.size();
  lzma_ret ret = LZMA_OK;
  while (ret == LZMA_OK) {
    strm.next_out = reinterpret_cast<uint8_t*>(buf);
    strm.avail_out = sizeof(buf);
    ret = lzma_code(&strm, LZMA_FINISH);
    out.append(buf, sizeof(buf) - strm.avail_out);
  }
  lzma_end(&strm);
  if (ret != LZMA_STREAM_END) Fail(TestDataPath(name), "not a complete xz stream", ret);
  return out;
}

}  // namespace pageowner::testing
