#include "core/kallsyms.h"

#include <algorithm>
#include <charconv>
#include <map>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/procfs.h"
#include "core/strings.h"

namespace pageowner {
namespace {

struct RawSymbol {
  uint64_t address;
  size_t order;  // file order, for rule 4
  bool text;
  std::string_view name;
};

bool IsText(char type) { return type == 't' || type == 'T' || type == 'w' || type == 'W'; }

}  // namespace

absl::StatusOr<Kallsyms> Kallsyms::Parse(std::string_view text) {
  // Group by module name (empty: the core kernel), keeping file order inside a group.
  std::map<std::string_view, std::vector<RawSymbol>> groups;
  size_t line_no = 0;
  size_t order = 0;
  bool any_nonzero = false;
  bool any_line = false;
  while (!text.empty()) {
    const size_t nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text.remove_prefix(nl == std::string_view::npos ? text.size() : nl + 1);
    ++line_no;
    if (line.empty()) continue;
    const size_t sp1 = line.find(' ');
    if (sp1 == std::string_view::npos || sp1 == 0 || sp1 + 3 > line.size() ||
        line[sp1 + 2] != ' ') {
      return absl::InvalidArgumentError(
          absl::StrCat("line ", line_no, ": expected \"ADDRESS TYPE NAME\""));
    }
    uint64_t address = 0;
    const std::string_view hex = line.substr(0, sp1);
    const auto [ptr, ec] = std::from_chars(hex.data(), hex.data() + hex.size(), address, 16);
    if (ec != std::errc() || ptr != hex.data() + hex.size()) {
      return absl::InvalidArgumentError(
          absl::StrCat("line ", line_no, ": bad address \"", Sv(hex), "\""));
    }
    const char type = line[sp1 + 1];
    std::string_view rest = line.substr(sp1 + 3);
    std::string_view module;
    // A module symbol: NAME\t[MODULE]. The tab cannot be part of a symbol name.
    if (const size_t tab = rest.find('\t'); tab != std::string_view::npos) {
      std::string_view m = rest.substr(tab + 1);
      if (m.size() >= 2 && m.front() == '[' && m.back() == ']') {
        module = m.substr(1, m.size() - 2);
        rest = rest.substr(0, tab);
      }
    }
    if (rest.empty()) {
      return absl::InvalidArgumentError(absl::StrCat("line ", line_no, ": empty symbol name"));
    }
    any_line = true;
    any_nonzero = any_nonzero || address != 0;
    groups[module].push_back(RawSymbol{address, order++, IsText(type), rest});
  }
  if (any_line && !any_nonzero) {
    return absl::PermissionDeniedError(
        "every kallsyms address is 0: the kernel hides symbol addresses from this reader "
        "(reading them needs CAP_SYSLOG and kernel.kptr_restrict below 2)");
  }
  Kallsyms k;
  for (auto& [module, syms] : groups) {
    std::stable_sort(syms.begin(), syms.end(),
                     [](const RawSymbol& a, const RawSymbol& b) { return a.address < b.address; });
    uint32_t module_begin = 0;
    if (!module.empty()) {
      module_begin = static_cast<uint32_t>(k.strings_.size());
      k.strings_.append(module);
    }
    for (size_t i = 0; i < syms.size(); ++i) {
      if (!syms[i].text) continue;
      // Rule 4: only the first text alias of an address is kept.
      bool alias = false;
      for (size_t j = i; j-- > 0 && syms[j].address == syms[i].address;) {
        if (syms[j].text) alias = true;
      }
      if (alias) continue;
      size_t next = i + 1;
      while (next < syms.size() && syms[next].address == syms[i].address) ++next;
      if (next == syms.size()) continue;  // rule 3
      Symbol s;
      s.address = syms[i].address;
      s.size = syms[next].address - syms[i].address;
      s.name_begin = static_cast<uint32_t>(k.strings_.size());
      s.name_len = static_cast<uint32_t>(syms[i].name.size());
      k.strings_.append(syms[i].name);
      s.module_begin = module_begin;
      s.module_len = static_cast<uint32_t>(module.size());
      k.symbols_.push_back(s);
    }
  }
  if (k.symbols_.empty()) return absl::NotFoundError("kallsyms holds no sized text symbol");
  // Groups do not overlap in practice (modules live above the kernel's text); sorting all
  // symbols by address lets Find search once, and Find checks the size so that a gap between
  // groups resolves to nothing.
  std::stable_sort(k.symbols_.begin(), k.symbols_.end(),
                   [](const Symbol& a, const Symbol& b) { return a.address < b.address; });
  return k;
}

absl::StatusOr<Kallsyms> Kallsyms::ReadFile(const std::string& path) {
  absl::StatusOr<std::string> text = ReadTextFile(path);
  if (!text.ok()) return text.status();
  absl::StatusOr<Kallsyms> k = Parse(*text);
  if (!k.ok()) {
    std::string message = absl::StrCat(path, ": ", k.status().message());
    if (absl::IsPermissionDenied(k.status())) {
      absl::StatusOr<std::string> restrict = ReadTextFile("/proc/sys/kernel/kptr_restrict");
      if (restrict.ok()) {
        std::string v = * restrict;
        while (!v.empty() && (v.back() == '\n' || v.back() == ' ')) v.pop_back();
        absl::StrAppend(&message, "; kernel.kptr_restrict is ", v);
      }
    }
    return absl::Status(k.status().code(), message);
  }
  return k;
}

std::optional<KallsymsMatch> Kallsyms::Find(uint64_t ip) const {
  auto it = std::upper_bound(symbols_.begin(), symbols_.end(), ip,
                             [](uint64_t v, const Symbol& s) { return v < s.address; });
  if (it == symbols_.begin()) return std::nullopt;
  --it;
  // Several entries may share an address only across groups; the one found is the last such,
  // which is fine: its own size decides.
  if (ip - it->address >= it->size) return std::nullopt;
  KallsymsMatch m;
  m.name = std::string_view(strings_).substr(it->name_begin, it->name_len);
  m.module = std::string_view(strings_).substr(it->module_begin, it->module_len);
  m.offset = ip - it->address;
  m.size = it->size;
  return m;
}

std::string Kallsyms::Symbolize(uint64_t ip) const {
  const std::optional<KallsymsMatch> m = Find(ip);
  // The kernel's %#lx prints 0 as 0x0, unlike printf's %#lx.
  if (!m) return absl::StrFormat("0x%x", ip);
  std::string out(m->name);
  absl::StrAppendFormat(&out, "+0x%x/0x%x", m->offset, m->size);
  if (!m->module.empty()) absl::StrAppend(&out, " [", Sv(m->module), "]");
  return out;
}

}  // namespace pageowner
