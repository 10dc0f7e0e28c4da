// The kernel's symbol table as /proc/kallsyms prints it, and the kernel's own `%pS` rendering of
// a code address (sprint_symbol in kernel/kallsyms.c): `name+0xoff/0xsize`, followed by
// ` [module]` for a module's symbol, and `0x<hex>` for an address no symbol covers. This is how
// page_owner prints its frames, so frames recorded from perf call chains print the same way.
#ifndef PAGEOWNER_CORE_KALLSYMS_H_
#define PAGEOWNER_CORE_KALLSYMS_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace pageowner {

// A text symbol found for an address.
struct KallsymsMatch {
  std::string_view name;
  std::string_view module;  // empty for the core kernel
  uint64_t offset = 0;      // address - symbol start
  uint64_t size = 0;        // next symbol's start - symbol start
};

// An immutable, address-sorted table of the text symbols (types t, T, w, W) of /proc/kallsyms.
//
// Rules, chosen to match the kernel's lookup (get_symbol_pos, find_kallsyms_symbol):
//  1. Symbols are grouped by module (the core kernel is one group, `[name]` another each);
//     an address resolves only within a group.
//  2. A symbol's size is the distance to the next higher address among *all* symbols of its group
//     (data and absolute symbols included, as the kernel's table includes them).
//  3. The last address of a group has no next symbol, so its size is unknown: an address at or
//     past it resolves to no symbol (the kernel would use the module's or kernel's text end,
//     which /proc/kallsyms does not show).
//  4. Several text symbols at one address (aliases): the first in file order wins, as the kernel
//     picks the first alias of its address-sorted table, which /proc/kallsyms lists in order.
//  5. Names and module names are bytes: everything between the type's separator and the end of
//     the line (or the tab before `[module]`) is kept as is.
//
// Thread-safety: const methods may be called from any thread.
class Kallsyms {
 public:
  // Parses /proc/kallsyms text: `ADDR TYPE NAME` or `ADDR TYPE NAME\t[MODULE]` lines.
  // Errors: kInvalidArgument naming the 1-based line for a line without three fields or a bad
  // hex address; kPermissionDenied when every address is 0 (the kernel hides addresses from this
  // reader: reading them needs CAP_SYSLOG and kernel.kptr_restrict below 2; the message says so);
  // kNotFound when the text holds no text symbol.
  static absl::StatusOr<Kallsyms> Parse(std::string_view text);

  // Reads and parses `path` (default /proc/kallsyms). The kPermissionDenied message adds the
  // current kernel.kptr_restrict value when /proc/sys/kernel/kptr_restrict is readable.
  // Errors: Parse's, and the file's (ReadTextFile).
  static absl::StatusOr<Kallsyms> ReadFile(const std::string& path = "/proc/kallsyms");

  // The text symbol covering `ip`, or nullopt.
  std::optional<KallsymsMatch> Find(uint64_t ip) const;

  // The kernel's %pS text for `ip`: "name+0xoff/0xsize", "name+0xoff/0xsize [module]", or
  // "0x<hex>" (lower case, no padding) when no symbol covers it.
  std::string Symbolize(uint64_t ip) const;

  // The number of text symbols kept (aliases included).
  size_t size() const { return symbols_.size(); }

 private:
  struct Symbol {
    uint64_t address;
    uint64_t size;  // 0: unknown (rule 3)
    uint32_t name_begin, name_len;
    uint32_t module_begin, module_len;
  };
  std::string strings_;          // every name and module name, back to back
  std::vector<Symbol> symbols_;  // sorted by address, then file order; only sized symbols
};

}  // namespace pageowner

#endif  // PAGEOWNER_CORE_KALLSYMS_H_
