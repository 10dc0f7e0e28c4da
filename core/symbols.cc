#include "core/symbols.h"

#include <algorithm>
#include <tuple>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace pageowner {
namespace {

// FNV-1a, 64 bits: a fixed function of the name, the same on every host.
uint64_t Fnv1a64(std::string_view s) {
  uint64_t h = 0xcbf29ce484222325ULL;
  for (unsigned char c : s) {
    h ^= c;
    h *= 0x100000001b3ULL;
  }
  return h;
}

}  // namespace

bool SymbolTable::Register(uint64_t ip, std::string_view name) {
  if (name.empty()) return true;
  absl::MutexLock lock(&mu_);
  auto it = by_ip_.find(ip);
  if (it != by_ip_.end()) {
    if (it->second == name) return true;
    ++conflicts_;
    return false;
  }
  names_.emplace_back(name);
  name_bytes_ += name.size();
  by_ip_.emplace(ip, std::string_view(names_.back()));
  return true;
}

bool SymbolTable::Named(uint64_t ip) const {
  absl::ReaderMutexLock lock(&mu_);
  return by_ip_.contains(ip);
}

bool SymbolTable::HasSyntheticAddress(std::string_view name) const {
  absl::ReaderMutexLock lock(&mu_);
  return synthetic_.contains(name);
}

uint64_t SymbolTable::name_bytes() const {
  absl::ReaderMutexLock lock(&mu_);
  return name_bytes_;
}

uint64_t SymbolTable::SyntheticAddress(std::string_view name) {
  absl::MutexLock lock(&mu_);
  if (auto it = synthetic_.find(name); it != synthetic_.end()) return it->second;
  uint64_t ip = kSyntheticBase | (Fnv1a64(name) & 0xffffffffffULL);
  // Probe past addresses another name already holds.
  while (by_ip_.contains(ip)) ip = kSyntheticBase | ((ip + 1) & 0xffffffffffULL);
  names_.emplace_back(name);
  name_bytes_ += name.size();
  std::string_view stored(names_.back());
  by_ip_.emplace(ip, stored);
  synthetic_.emplace(stored, ip);
  return ip;
}

void SymbolTable::AppendFrameLocked(uint64_t ip, std::string* out) const {
  if (auto it = by_ip_.find(ip); it != by_ip_.end()) {
    out->append(it->second);
  } else {
    absl::StrAppendFormat(out, "0x%x", ip);
  }
}

void SymbolTable::AppendFrame(uint64_t ip, std::string* out) const {
  absl::ReaderMutexLock lock(&mu_);
  AppendFrameLocked(ip, out);
}

void SymbolTable::AppendStack(absl::Span<const uint64_t> ips, std::string_view prefix,
                              std::string* out) const {
  absl::ReaderMutexLock lock(&mu_);
  for (uint64_t ip : ips) {
    out->append(prefix);
    AppendFrameLocked(ip, out);
    out->push_back('\n');
  }
}

std::string SymbolTable::FormatFrame(uint64_t ip) const {
  std::string out;
  AppendFrame(ip, &out);
  return out;
}

std::string SymbolTable::Name(uint64_t ip) const {
  absl::ReaderMutexLock lock(&mu_);
  auto it = by_ip_.find(ip);
  return it == by_ip_.end() ? std::string() : std::string(it->second);
}

uint64_t SymbolTable::size() const {
  absl::ReaderMutexLock lock(&mu_);
  return by_ip_.size();
}

uint64_t SymbolTable::conflicts() const {
  absl::ReaderMutexLock lock(&mu_);
  return conflicts_;
}

size_t SymbolTable::MemoryBytes() const {
  absl::ReaderMutexLock lock(&mu_);
  return name_bytes_ + names_.size() * sizeof(std::string) +
         by_ip_.capacity() * (sizeof(uint64_t) + sizeof(std::string_view) + 1) +
         synthetic_.capacity() * (sizeof(uint64_t) + sizeof(std::string_view) + 1);
}

void SymbolTable::SaveState(SnapshotWriter& w) const {
  // (ip, name, synthetic): a synthetic name is the one its name's synthetic_ entry points to.
  std::vector<std::tuple<uint64_t, std::string_view, bool>> entries;
  entries.reserve(by_ip_.size());
  for (const auto& [ip, name] : by_ip_) {
    const auto it = synthetic_.find(name);
    entries.emplace_back(ip, name, it != synthetic_.end() && it->second == ip);
  }
  std::sort(entries.begin(), entries.end());
  w.Tag(SnapshotTag("SYMS"));
  w.U64(conflicts_);
  w.U64(entries.size());
  for (const auto& [ip, name, synthetic] : entries) {
    w.U64(ip);
    w.U8(synthetic ? 1 : 0);
    w.String(name);
  }
}

absl::Status SymbolTable::LoadState(SnapshotReader& r) {
  r.ExpectTag(SnapshotTag("SYMS"), "symbols");
  const uint64_t conflicts = r.U64();
  // 2^40 synthetic addresses at most; real ones are bounded by the file.
  const uint64_t n = r.Count(uint64_t{1} << 40, "symbols");
  absl::MutexLock lock(&mu_);
  if (!by_ip_.empty()) r.Fail("the symbol table to load into is not empty");
  for (uint64_t i = 0; i < n && r.ok(); ++i) {
    const uint64_t ip = r.U64();
    const uint8_t synthetic = r.U8();
    std::string name = r.String(1 << 20);
    if (!r.ok()) break;
    if (synthetic > 1 || name.empty() || by_ip_.contains(ip) ||
        (synthetic == 1 && synthetic_.contains(std::string_view(name)))) {
      r.Fail(absl::StrCat("symbol ", i, " at 0x", absl::Hex(ip), " is not a new name"));
      break;
    }
    names_.push_back(std::move(name));
    name_bytes_ += names_.back().size();
    const std::string_view stored(names_.back());
    by_ip_.emplace(ip, stored);
    if (synthetic == 1) synthetic_.emplace(stored, ip);
  }
  conflicts_ = conflicts;
  return r.status();
}

void SymbolTable::WithLockHeld(absl::FunctionRef<void()> fn) const {
  absl::MutexLock lock(&mu_);
  fn();
}

}  // namespace pageowner
