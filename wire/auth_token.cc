#include "wire/auth_token.h"

#include <openssl/evp.h>

#include <cstdio>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/string_view.h"

namespace pageowner::wire {

Sha256Digest Sha256(std::string_view data) {
  Sha256Digest digest{};
  unsigned int size = 0;
  // One-shot EVP digest: the same code path OpenSSL's own `openssl dgst -sha256` uses.
  EVP_Digest(data.data(), data.size(), digest.data(), &size, EVP_sha256(), nullptr);
  return digest;
}

std::string HexDigest(const Sha256Digest& digest) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(digest.size() * 2);
  for (uint8_t b : digest) {
    out.push_back(kHex[b >> 4]);
    out.push_back(kHex[b & 15]);
  }
  return out;
}

absl::StatusOr<std::string> NewToken() {
  std::FILE* f = std::fopen("/dev/urandom", "rb");
  if (f == nullptr) return absl::UnavailableError("cannot open /dev/urandom");
  std::string bytes(kTokenBytes, '\0');
  const size_t got = std::fread(bytes.data(), 1, bytes.size(), f);
  std::fclose(f);
  if (got != bytes.size()) return absl::UnavailableError("short read from /dev/urandom");
  std::string token;
  absl::WebSafeBase64Escape(absl::string_view(bytes.data(), bytes.size()), &token);
  return token;
}

absl::StatusOr<std::string> CleanToken(std::string_view file_contents) {
  const absl::string_view token =
      absl::StripAsciiWhitespace(absl::string_view(file_contents.data(), file_contents.size()));
  if (token.empty()) return absl::InvalidArgumentError("the token file is empty");
  for (char c : token) {
    if (c < 0x21 || c > 0x7e) {
      return absl::InvalidArgumentError(
          "the token has a character outside visible ASCII (one token, one line)");
    }
  }
  return std::string(token);
}

}  // namespace pageowner::wire
