#include "core/symbols.h"

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

}  // namespace pageowner
