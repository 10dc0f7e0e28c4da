#include "server/wal_record.h"

#include <cstring>
#include <deque>
#include <optional>
#include <utility>
#include <variant>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "core/strings.h"
#include "server/crc32c.h"

namespace pageowner::server {
namespace {

constexpr uint32_t kNoStack = 0xffffffffu;
constexpr uint8_t kNoMigratetype = 0xff;

enum Kind : uint8_t { kAlloc = 0, kFree = 1, kMigrate = 2, kImport = 3 };
// An event's flags word: AllocEvent/FreeEvent::trusted, AllocEvent::early and ::reserved.
constexpr uint32_t kWalTrusted = 1;
constexpr uint32_t kWalEarly = 2;
constexpr uint32_t kWalReserved = 4;

template <typename T>
void Put(std::string* out, T v) {
  char b[sizeof(T)];
  std::memcpy(b, &v, sizeof(T));  // little-endian hosts only (x86_64, arm64)
  out->append(b, sizeof(T));
}

void PutString(std::string* out, std::string_view s) {
  Put<uint32_t>(out, static_cast<uint32_t>(s.size()));
  out->append(s);
}

// The stacks of one record, each once, and whether their frames' names must be looked up.
class StackTable {
 public:
  uint32_t Index(absl::Span<const uint64_t> frames, bool logged = false) {
    if (frames.empty()) return kNoStack;
    auto [it, inserted] =
        index_.try_emplace(std::make_pair(frames.data(), frames.size()), stacks_.size());
    if (inserted) {
      stacks_.push_back(frames);
      unlogged_.push_back(!logged);
    } else if (!logged) {
      unlogged_[it->second] = true;
    }
    return it->second;
  }
  const std::vector<absl::Span<const uint64_t>>& stacks() const { return stacks_; }
  bool unlogged(size_t i) const { return unlogged_[i]; }

 private:
  absl::flat_hash_map<std::pair<const uint64_t*, size_t>, uint32_t> index_;
  std::vector<absl::Span<const uint64_t>> stacks_;
  std::vector<bool> unlogged_;
};

void PutTask(std::string* out, int32_t pid, int32_t tgid) {
  Put<int32_t>(out, pid);
  Put<int32_t>(out, tgid);
}

// Reads what AppendBatchRecord wrote; every read is bounds-checked.
class Cursor {
 public:
  explicit Cursor(std::string_view data) : data_(data) {}
  template <typename T>
  bool Get(T* v) {
    if (data_.size() - pos_ < sizeof(T)) return false;
    std::memcpy(v, data_.data() + pos_, sizeof(T));
    pos_ += sizeof(T);
    return true;
  }
  bool GetBytes(size_t n, std::string_view* v) {
    if (data_.size() - pos_ < n) return false;
    *v = data_.substr(pos_, n);
    pos_ += n;
    return true;
  }
  bool GetString(std::string_view* v) {
    uint32_t n = 0;
    return Get(&n) && GetBytes(n, v);
  }
  bool done() const { return pos_ == data_.size(); }
  size_t pos() const { return pos_; }

 private:
  std::string_view data_;
  size_t pos_ = 0;
};

absl::Status Bad(const Cursor& c, std::string_view what) {
  return absl::DataLossError(
      absl::StrCat("undecodable log record: ", Sv(what), " at payload byte ", c.pos()));
}

}  // namespace

void SealRecord(size_t frame_offset, std::string* out) {
  const size_t payload = frame_offset + kWalFrameBytes;
  const uint32_t len = static_cast<uint32_t>(out->size() - payload);
  const uint32_t crc = Crc32cExtend(0, out->data() + payload, len);
  std::memcpy(out->data() + frame_offset, &len, 4);
  std::memcpy(out->data() + frame_offset + 4, &crc, 4);
}

void AppendTrackingRecord(uint64_t seq, bool on, uint64_t ts_ns, std::string* out) {
  const size_t frame = out->size();
  out->append(kWalFrameBytes, '\0');
  Put<uint8_t>(out, kWalTrackingRecord);
  Put<uint64_t>(out, seq);
  Put<uint8_t>(out, on ? 1 : 0);
  Put<uint64_t>(out, ts_ns);
  SealRecord(frame, out);
}

void AppendBatchRecord(uint64_t seq, absl::Span<const Event> events,
                       absl::Span<const absl::Status> prechecked, const SymbolTable& symbols,
                       const WalNames& names, const std::vector<bool>& logged,
                       std::vector<uint64_t>* new_names, std::string* out) {
  StackTable stacks;
  // The events first, into a scratch string, so that the stacks and names they use are known.
  std::string body;
  body.reserve(events.size() * 48);  // an alloc takes ~47 bytes, a free 33
  uint32_t count = 0;
  for (size_t i = 0; i < events.size(); ++i) {
    if (!prechecked[i].ok()) continue;
    ++count;
    const bool known = !logged.empty() && logged[i];
    std::visit(
        [&](const auto& e) {
          using T = std::decay_t<decltype(e)>;
          if constexpr (std::is_same_v<T, AllocEvent>) {
            Put<uint8_t>(&body, kAlloc);
            Put<uint32_t>(&body, (e.trusted ? kWalTrusted : 0u) | (e.early ? kWalEarly : 0u) |
                                     (e.reserved ? kWalReserved : 0u));
            Put<uint32_t>(&body, e.order.raw());
            Put<uint32_t>(&body, e.gfp_mask);
            Put<uint32_t>(&body, stacks.Index(e.frames, known));
            PutTask(&body, e.pid, e.tgid);
            PutString(&body, e.comm);
            Put<uint64_t>(&body, e.ts_ns);
            Put<uint8_t>(&body, e.pfn.has_value() ? 1 : 0);
            Put<uint64_t>(&body, e.pfn.has_value() ? e.pfn->raw() : 0);
          } else if constexpr (std::is_same_v<T, FreeEvent>) {
            Put<uint8_t>(&body, kFree);
            Put<uint32_t>(&body, e.trusted ? kWalTrusted : 0u);
            Put<uint64_t>(&body, e.pfn.raw());
            Put<uint32_t>(&body, e.order.raw());
            Put<uint32_t>(&body, stacks.Index(e.frames, known));
            PutTask(&body, e.pid, e.tgid);
            Put<uint64_t>(&body, e.ts_ns);
          } else if constexpr (std::is_same_v<T, MigrateEvent>) {
            Put<uint8_t>(&body, kMigrate);
            Put<uint32_t>(&body, 0);
            Put<uint64_t>(&body, e.pfn.raw());
            Put<int8_t>(&body, static_cast<int8_t>(e.reason));
            Put<uint8_t>(&body, e.target.has_value() ? 1 : 0);
            Put<uint64_t>(&body, e.target.has_value() ? e.target->raw() : 0);
            Put<uint32_t>(&body, stacks.Index(e.frames, known));
            PutTask(&body, e.pid, e.tgid);
            Put<uint64_t>(&body, e.ts_ns);
          } else {
            static_assert(std::is_same_v<T, ImportEvent>);
            Put<uint8_t>(&body, kImport);
            Put<uint32_t>(&body, 0);
            Put<uint64_t>(&body, e.pfn.raw());
            Put<uint32_t>(&body, e.order.raw());
            Put<uint32_t>(&body, e.gfp_mask);
            Put<uint32_t>(&body, stacks.Index(e.frames, known));
            PutTask(&body, e.pid, e.tgid);
            PutString(&body, e.comm);
            Put<uint64_t>(&body, e.ts_ns);
            Put<uint64_t>(&body, e.free_ts_ns);
            Put<int8_t>(&body, static_cast<int8_t>(e.last_migrate_reason));
            Put<uint8_t>(&body, e.pageblock_migratetype.has_value()
                                    ? static_cast<uint8_t>(*e.pageblock_migratetype)
                                    : kNoMigratetype);
            Put<uint8_t>(&body, e.extras != nullptr ? 1 : 0);
            if (e.extras != nullptr) {
              Put<uint64_t>(&body, e.extras->page_flags);
              PutString(&body, e.extras->flags_text);
              PutString(&body, e.extras->gfp_names);
              Put<uint8_t>(&body, e.extras->slab_cache ? 1 : 0);
              PutString(&body, e.extras->memcg);
            }
          }
        },
        events[i]);
  }

  const size_t frame = out->size();
  out->append(kWalFrameBytes, '\0');
  Put<uint8_t>(out, kWalBatchRecord);
  Put<uint64_t>(out, seq);
  // Names of the frames the log has not named yet.
  const size_t names_at = out->size();
  Put<uint32_t>(out, 0);
  uint32_t named = 0;
  const size_t first_new = new_names->size();
  for (size_t s = 0; s < stacks.stacks().size(); ++s) {
    if (!stacks.unlogged(s)) continue;
    for (uint64_t ip : stacks.stacks()[s]) {
      if (names.Contains(ip)) continue;
      bool seen = false;  // within this record
      for (size_t j = first_new; j < new_names->size() && !seen; ++j) seen = (*new_names)[j] == ip;
      if (seen) continue;
      const std::string name = symbols.Name(ip);
      if (name.empty()) continue;  // unnamed now; logged once it gets a name
      new_names->push_back(ip);
      Put<uint64_t>(out, ip);
      PutString(out, name);
      ++named;
    }
  }
  std::memcpy(out->data() + names_at, &named, 4);
  Put<uint32_t>(out, static_cast<uint32_t>(stacks.stacks().size()));
  for (absl::Span<const uint64_t> stack : stacks.stacks()) {
    Put<uint32_t>(out, static_cast<uint32_t>(stack.size()));
    const size_t at = out->size();
    out->resize(at + stack.size() * sizeof(uint64_t));
    std::memcpy(out->data() + at, stack.data(), stack.size() * sizeof(uint64_t));
  }
  Put<uint32_t>(out, count);
  out->append(body);
  SealRecord(frame, out);
}

absl::StatusOr<WalRecordHeader> PeekRecord(std::string_view payload) {
  Cursor c(payload);
  WalRecordHeader h;
  if (!c.Get(&h.type) || !c.Get(&h.seq)) return Bad(c, "short header");
  if (h.type != kWalBatchRecord && h.type != kWalTrackingRecord) {
    return Bad(c, absl::StrCat("unknown record type ", h.type));
  }
  return h;
}

absl::Status DecodeRecord(std::string_view payload, WalRecord* out) {
  *out = WalRecord();
  Cursor c(payload);
  uint8_t& type = out->type;
  if (!c.Get(&type) || !c.Get(&out->seq)) return Bad(c, "short header");
  if (type == kWalTrackingRecord) {
    uint8_t on = 0;
    if (!c.Get(&on) || !c.Get(&out->tracking_ts_ns) || on > 1 || !c.done()) {
      return Bad(c, "tracking record");
    }
    out->tracking_on = on == 1;
    return absl::OkStatus();
  }
  if (type != kWalBatchRecord) return Bad(c, absl::StrCat("unknown record type ", type));

  uint32_t n_names = 0;
  if (!c.Get(&n_names)) return Bad(c, "name count");
  for (uint32_t i = 0; i < n_names; ++i) {
    uint64_t ip = 0;
    std::string_view name;
    if (!c.Get(&ip) || !c.GetString(&name) || name.empty()) return Bad(c, "name");
    out->names.emplace_back(ip, std::string(name));
  }
  uint32_t n_stacks = 0;
  if (!c.Get(&n_stacks)) return Bad(c, "stack count");
  std::vector<std::vector<uint64_t>>& stacks = out->stacks;
  stacks.reserve(std::min<uint32_t>(n_stacks, 1 << 16));
  for (uint32_t i = 0; i < n_stacks; ++i) {
    uint32_t n = 0;
    std::string_view bytes;
    if (!c.Get(&n) || n > (1u << 20) || !c.GetBytes(size_t{n} * 8, &bytes)) return Bad(c, "stack");
    std::vector<uint64_t>& frames = stacks.emplace_back(n);
    std::memcpy(frames.data(), bytes.data(), bytes.size());
  }
  const auto stack = [&](uint32_t index, absl::Span<const uint64_t>* out) {
    if (index == kNoStack) {
      *out = {};
      return true;
    }
    if (index >= stacks.size()) return false;
    *out = stacks[index];
    return true;
  };
  uint32_t n_events = 0;
  if (!c.Get(&n_events)) return Bad(c, "event count");
  // Kept strings move with the deque's growth no more than the frames do.
  const auto keep = [out](std::string_view s) -> std::string_view {
    return out->strings.emplace_back(s);
  };
  for (uint32_t i = 0; i < n_events; ++i) {
    uint8_t kind = 0;
    uint32_t flags = 0;
    uint32_t stack_index = 0;
    if (!c.Get(&kind) || !c.Get(&flags)) return Bad(c, "event header");
    out->flags.push_back(flags);
    switch (kind) {
      case kAlloc: {
        AllocEvent e;
        uint32_t order = 0;
        uint8_t has_pfn = 0;
        uint64_t pfn = 0;
        if (!c.Get(&order) || !c.Get(&e.gfp_mask) || !c.Get(&stack_index) ||
            !stack(stack_index, &e.frames) || !c.Get(&e.pid) || !c.Get(&e.tgid) ||
            !c.GetString(&e.comm) || !c.Get(&e.ts_ns) || !c.Get(&has_pfn) || !c.Get(&pfn)) {
          return Bad(c, "alloc event");
        }
        e.order = Order(order);
        e.comm = keep(e.comm);
        if (has_pfn) e.pfn = Pfn(pfn);
        e.trusted = (flags & kWalTrusted) != 0;
        e.early = (flags & kWalEarly) != 0;
        e.reserved = (flags & kWalReserved) != 0;
        out->events.emplace_back(e);
        break;
      }
      case kFree: {
        FreeEvent e;
        uint64_t pfn = 0;
        uint32_t order = 0;
        if (!c.Get(&pfn) || !c.Get(&order) || !c.Get(&stack_index) ||
            !stack(stack_index, &e.frames) || !c.Get(&e.pid) || !c.Get(&e.tgid) ||
            !c.Get(&e.ts_ns)) {
          return Bad(c, "free event");
        }
        e.pfn = Pfn(pfn);
        e.order = Order(order);
        e.trusted = (flags & kWalTrusted) != 0;
        out->events.emplace_back(e);
        break;
      }
      case kMigrate: {
        MigrateEvent e;
        uint64_t pfn = 0, target = 0;
        int8_t reason = 0;
        uint8_t has_target = 0;
        if (!c.Get(&pfn) || !c.Get(&reason) || !c.Get(&has_target) || !c.Get(&target) ||
            !c.Get(&stack_index) || !stack(stack_index, &e.frames) || !c.Get(&e.pid) ||
            !c.Get(&e.tgid) || !c.Get(&e.ts_ns)) {
          return Bad(c, "migrate event");
        }
        e.pfn = Pfn(pfn);
        e.reason = static_cast<MigrateReason>(reason);
        if (has_target) e.target = Pfn(target);
        out->events.emplace_back(e);
        break;
      }
      case kImport: {
        ImportEvent e;
        uint64_t pfn = 0;
        uint32_t order = 0;
        int8_t reason = 0;
        uint8_t mt = 0, has_extras = 0;
        if (!c.Get(&pfn) || !c.Get(&order) || !c.Get(&e.gfp_mask) || !c.Get(&stack_index) ||
            !stack(stack_index, &e.frames) || !c.Get(&e.pid) || !c.Get(&e.tgid) ||
            !c.GetString(&e.comm) || !c.Get(&e.ts_ns) || !c.Get(&e.free_ts_ns) || !c.Get(&reason) ||
            !c.Get(&mt) || !c.Get(&has_extras)) {
          return Bad(c, "import event");
        }
        e.pfn = Pfn(pfn);
        e.order = Order(order);
        e.comm = keep(e.comm);
        e.last_migrate_reason = static_cast<MigrateReason>(reason);
        if (mt != kNoMigratetype) {
          if (mt >= kNumMigrateTypes) return Bad(c, "import migratetype");
          e.pageblock_migratetype = static_cast<MigrateType>(mt);
        }
        if (has_extras) {
          std::string_view flags_text, gfp_names, memcg;
          uint8_t slab = 0;
          PrintedExtras& extras = out->extras.emplace_back();
          if (!c.Get(&extras.page_flags) || !c.GetString(&flags_text) || !c.GetString(&gfp_names) ||
              !c.Get(&slab) || !c.GetString(&memcg)) {
            return Bad(c, "import extras");
          }
          extras.flags_text = flags_text;
          extras.gfp_names = gfp_names;
          extras.slab_cache = slab != 0;
          extras.memcg = memcg;
          e.extras = &extras;
        }
        out->events.emplace_back(e);
        break;
      }
      default:
        return Bad(c, absl::StrCat("event kind ", kind));
    }
  }
  if (!c.done()) return Bad(c, "trailing bytes");
  return absl::OkStatus();
}

absl::Status ReplayRecord(std::string_view payload, Machine* machine, WalNames* names) {
  WalRecord r;
  if (absl::Status s = DecodeRecord(payload, &r); !s.ok()) return s;
  if (r.type == kWalTrackingRecord) {
    machine->SetTracking(r.tracking_on, r.tracking_ts_ns);
    return absl::OkStatus();
  }
  SymbolTable& symbols = machine->symbols();
  for (const auto& [ip, name] : r.names) {
    // A synthetic address is derived from its name; probing past collisions depends on the
    // order names came in, so name the address directly when the derivation differs. A real
    // address (0xffffffff8...) lies above the synthetic range: asking for its name's synthetic
    // address would invent one the original never had.
    if (!SymbolTable::InSyntheticRange(ip) || symbols.SyntheticAddress(name) != ip) {
      symbols.Register(ip, name);
    }
    if (names != nullptr) names->Add(ip);
  }
  for (const Event& e : r.events) machine->Apply(e);
  return absl::OkStatus();
}

}  // namespace pageowner::server
