#include "core/content_id.h"

#include <string>

namespace pageowner {

uint64_t StackContentId(absl::Span<const uint64_t> frames, const SymbolTable& symbols) {
  ContentIdHasher hasher;
  std::string printed;
  for (uint64_t ip : frames) {
    printed.clear();
    symbols.AppendFrame(ip, &printed);
    hasher.AddFrame(printed);
  }
  return hasher.id();
}

}  // namespace pageowner
