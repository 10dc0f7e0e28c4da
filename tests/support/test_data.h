// The test data readers: files under tests/data (PAGEOWNER_TEST_DATA_DIR), plain or xz-compressed.
// No gtest here, so that benchmarks can read the same files.
#ifndef PAGEOWNER_TESTS_SUPPORT_TEST_DATA_H_
#define PAGEOWNER_TESTS_SUPPORT_TEST_DATA_H_

#include <string>
#include <string_view>

namespace pageowner::testing {

// The absolute path of `name`, a path relative to tests/data (e.g. "import/dump_today.txt").
std::string TestDataPath(std::string_view name);

// The bytes of tests/data/`name`. A missing or unreadable file is a broken checkout, not a test
// result: it prints the path on stderr and aborts.
std::string ReadTestFile(std::string_view name);

// The decompressed bytes of tests/data/`name`, an .xz file (decoded in memory with liblzma).
// Aborts, with the path and liblzma's code on stderr, when the file is missing or not valid xz.
std::string ReadXz(std::string_view name);

}  // namespace pageowner::testing

#endif  // PAGEOWNER_TESTS_SUPPORT_TEST_DATA_H_
