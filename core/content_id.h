// Stack content ids: a 64-bit name for a stack that is the same on every host, so that stacks
// can be joined across a fleet of daemons whose handles (and synthetic addresses) differ.
#ifndef PAGEOWNER_CORE_CONTENT_ID_H_
#define PAGEOWNER_CORE_CONTENT_ID_H_

#include <cstdint>
#include <string_view>

#include "absl/types/span.h"
#include "core/symbols.h"

namespace pageowner {

// Builds a content id frame by frame, innermost first.
//
// The id is FNV-1a 64 (offset basis 0xcbf29ce484222325, prime 0x100000001b3) over the bytes of
// each frame's printed text (as `%pS` prints it: the symbol name when known, else "0x" and the
// lower-case hex ip), each followed by one '\n' byte. It depends only on those texts: not on
// the ips of named frames, the handle, the host or the order stacks were stored in. It is not
// std::hash, whose values may change between builds. Not a cryptographic hash: two stacks may
// collide (about 2^-64 a pair).
class ContentIdHasher {
 public:
  static constexpr uint64_t kOffsetBasis = 0xcbf29ce484222325ULL;
  static constexpr uint64_t kPrime = 0x100000001b3ULL;

  void AddFrame(std::string_view printed) {
    for (char c : printed) Mix(static_cast<unsigned char>(c));
    Mix('\n');
  }
  uint64_t id() const { return hash_; }

 private:
  void Mix(unsigned char byte) {
    hash_ ^= byte;
    hash_ *= kPrime;
  }
  uint64_t hash_ = kOffsetBasis;
};

// The content id of `frames` (innermost first) named through `symbols`.
uint64_t StackContentId(absl::Span<const uint64_t> frames, const SymbolTable& symbols);

}  // namespace pageowner

#endif  // PAGEOWNER_CORE_CONTENT_ID_H_
