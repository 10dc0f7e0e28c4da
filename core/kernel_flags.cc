#include "core/kernel_flags.h"

#include <array>
#include <cstddef>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"

namespace pageowner {
namespace {

struct FlagName {
  uint64_t mask;
  std::string_view name;
};

// Today's `__def_gfpflag_names`, in its order: composites first (most bits first), then one entry
// a bit in bit order. GFP_DMA and GFP_DMA32 shadow the single __GFP_DMA and __GFP_DMA32 entries,
// which are kept so that either spelling parses.
constexpr std::array<FlagName, 37> kGfpNames = {{
    {kGfpTranshuge, "GFP_TRANSHUGE"},
    {kGfpTranshugeLight, "GFP_TRANSHUGE_LIGHT"},
    {kGfpHighuserMovable, "GFP_HIGHUSER_MOVABLE"},
    {kGfpHighuser, "GFP_HIGHUSER"},
    {kGfpUser, "GFP_USER"},
    {kGfpKernelAccount, "GFP_KERNEL_ACCOUNT"},
    {kGfpKernel, "GFP_KERNEL"},
    {kGfpNofs, "GFP_NOFS"},
    {kGfpAtomic, "GFP_ATOMIC"},
    {kGfpNoio, "GFP_NOIO"},
    {kGfpNowait, "GFP_NOWAIT"},
    {kGfpDma, "GFP_DMA"},
    {kGfpDma32, "GFP_DMA32"},
    {kGfpReclaim, "__GFP_RECLAIM"},
    {kGfpDma, "__GFP_DMA"},
    {kGfpHighmem, "__GFP_HIGHMEM"},
    {kGfpDma32, "__GFP_DMA32"},
    {kGfpMovable, "__GFP_MOVABLE"},
    {kGfpReclaimable, "__GFP_RECLAIMABLE"},
    {kGfpHigh, "__GFP_HIGH"},
    {kGfpIo, "__GFP_IO"},
    {kGfpFs, "__GFP_FS"},
    {kGfpZero, "__GFP_ZERO"},
    {kGfpDirectReclaim, "__GFP_DIRECT_RECLAIM"},
    {kGfpKswapdReclaim, "__GFP_KSWAPD_RECLAIM"},
    {kGfpWrite, "__GFP_WRITE"},
    {kGfpNowarn, "__GFP_NOWARN"},
    {kGfpRetryMayfail, "__GFP_RETRY_MAYFAIL"},
    {kGfpNofail, "__GFP_NOFAIL"},
    {kGfpNoretry, "__GFP_NORETRY"},
    {kGfpMemalloc, "__GFP_MEMALLOC"},
    {kGfpComp, "__GFP_COMP"},
    {kGfpNomemalloc, "__GFP_NOMEMALLOC"},
    {kGfpHardwall, "__GFP_HARDWALL"},
    {kGfpThisnode, "__GFP_THISNODE"},
    {kGfpAccount, "__GFP_ACCOUNT"},
    {kGfpZerotags, "__GFP_ZEROTAGS"},
}};

constexpr uint64_t Bit(int n) { return uint64_t{1} << n; }

// The 6.12 `__def_pageflag_names` for this configuration, in its order (not bit order).
constexpr std::array<FlagName, kNumPageFlags> kPageFlagNames = {{
    {Bit(kPgLocked), "locked"},
    {Bit(kPgWaiters), "waiters"},
    {Bit(kPgReferenced), "referenced"},
    {Bit(kPgUptodate), "uptodate"},
    {Bit(kPgDirty), "dirty"},
    {Bit(kPgLru), "lru"},
    {Bit(kPgActive), "active"},
    {Bit(kPgWorkingset), "workingset"},
    {Bit(kPgOwnerPriv1), "owner_priv_1"},
    {Bit(kPgOwner2), "owner_2"},
    {Bit(kPgArch1), "arch_1"},
    {Bit(kPgReserved), "reserved"},
    {Bit(kPgPrivate), "private"},
    {Bit(kPgPrivate2), "private_2"},
    {Bit(kPgWriteback), "writeback"},
    {Bit(kPgHead), "head"},
    {Bit(kPgReclaim), "reclaim"},
    {Bit(kPgSwapbacked), "swapbacked"},
    {Bit(kPgUnevictable), "unevictable"},
    {Bit(kPgMlocked), "mlocked"},
}};

// The kernel's `%#x`/`%#lx`: "0x" and lowercase hex, also for 0.
std::string KernelHex(uint64_t v) { return absl::StrCat("0x", absl::Hex(v)); }

// The kernel's format_flags(): names in table order while bits remain, then the rest as hex.
template <size_t N>
void AppendFlagNames(uint64_t flags, const std::array<FlagName, N>& names, std::string* out) {
  for (const FlagName& f : names) {
    if (flags == 0) break;
    if (f.mask == 0 || (flags & f.mask) != f.mask) continue;
    out->append(f.name);
    flags &= ~f.mask;
    if (flags != 0) out->push_back('|');
  }
  if (flags != 0) out->append(KernelHex(flags));
}

// Reads "0x" followed by 1 or more hex digits whose value fits 32 bits.
bool ParseHexToken(std::string_view token, uint32_t* value) {
  if (token.size() < 3 || token[0] != '0' || (token[1] != 'x' && token[1] != 'X')) return false;
  uint64_t v = 0;
  for (char c : token.substr(2)) {
    int digit;
    if (c >= '0' && c <= '9') {
      digit = c - '0';
    } else if (c >= 'a' && c <= 'f') {
      digit = c - 'a' + 10;
    } else if (c >= 'A' && c <= 'F') {
      digit = c - 'A' + 10;
    } else {
      return false;
    }
    v = v * 16 + static_cast<uint64_t>(digit);
    if (v > UINT32_MAX) return false;
  }
  *value = static_cast<uint32_t>(v);
  return true;
}

const FlagName* FindGfpName(std::string_view name) {
  for (const FlagName& f : kGfpNames) {
    if (f.name == name) return &f;
  }
  return nullptr;
}

}  // namespace

std::string FormatGfpNames(uint32_t mask) {
  std::string out;
  AppendFlagNames(mask, kGfpNames, &out);
  return out;
}

std::string FormatGfpMask(uint32_t mask) {
  std::string out = KernelHex(mask);
  out.push_back('(');
  AppendFlagNames(mask, kGfpNames, &out);
  out.push_back(')');
  return out;
}

absl::StatusOr<uint32_t> ParseGfpNames(std::string_view names) {
  while (!names.empty() && absl::ascii_isspace(static_cast<unsigned char>(names.front()))) {
    names.remove_prefix(1);
  }
  while (!names.empty() && absl::ascii_isspace(static_cast<unsigned char>(names.back()))) {
    names.remove_suffix(1);
  }
  if (names.empty() || names == "none") return 0u;
  uint32_t mask = 0;
  std::string_view rest = names;
  while (true) {
    const size_t bar = rest.find('|');
    const std::string_view token = rest.substr(0, bar);
    if (token.empty()) {
      return absl::InvalidArgumentError("empty gfp flag name in \"" + std::string(names) + "\"");
    }
    uint32_t hex;
    if (ParseHexToken(token, &hex)) {
      mask |= hex;
    } else if (const FlagName* f = FindGfpName(token); f != nullptr) {
      mask |= static_cast<uint32_t>(f->mask);
    } else {
      return absl::InvalidArgumentError("unknown gfp flag name \"" + std::string(token) +
                                        "\" in \"" + std::string(names) + "\"");
    }
    if (bar == std::string_view::npos) break;
    rest.remove_prefix(bar + 1);
  }
  return mask;
}

MigrateType GfpMigrateType(uint32_t mask) {
  return static_cast<MigrateType>((mask & (kGfpReclaimable | kGfpMovable)) >> 3);
}

std::string FormatPageFlags(uint64_t flags) {
  std::string out = KernelHex(flags);
  out.push_back('(');
  const uint64_t main_flags = flags & (Bit(kNumPageFlags) - 1);
  if (main_flags != 0) {
    AppendFlagNames(main_flags, kPageFlagNames, &out);
    out.push_back('|');
  }
  const uint64_t node = (flags >> kPageFlagsNodeShift) & (Bit(kPageFlagsNodeWidth) - 1);
  const uint64_t zone = (flags >> kPageFlagsZoneShift) & (Bit(kPageFlagsZoneWidth) - 1);
  absl::StrAppend(&out, "node=", node, "|zone=", zone, ")");
  return out;
}

std::string FormatPageFlagNames(uint64_t flags) {
  std::string out;
  const uint64_t main_flags = flags & (Bit(kNumPageFlags) - 1);
  if (main_flags != 0) AppendFlagNames(main_flags, kPageFlagNames, &out);
  return out;
}

uint64_t SimulatedPageFlags(Pfn pfn, Order order, uint32_t gfp_mask) {
  uint64_t zone = kZoneNormal;
  if (pfn.raw() < kZoneDma32StartPfn) {
    zone = kZoneDma;
  } else if (pfn.raw() < kZoneNormalStartPfn) {
    zone = kZoneDma32;
  }
  constexpr uint64_t kNode = 0;
  uint64_t flags = (kNode << kPageFlagsNodeShift) | (zone << kPageFlagsZoneShift);
  if (order.raw() > 0 && (gfp_mask & kGfpComp) != 0) flags |= Bit(kPgHead);
  return flags;
}

}  // namespace pageowner
