#include "core/stack_depot.h"

#include <algorithm>
#include <bit>
#include <cassert>
#include <cstring>
#include <new>
#include <vector>

#include "absl/strings/str_cat.h"

namespace pageowner {
namespace {

constexpr uint32_t kPoolIndexBits = 17;
constexpr uint32_t kOffsetBits = 10;
constexpr uint32_t kAlign = 16;  // record alignment: the handle's offset unit

constexpr uint32_t MakeHandle(uint32_t pool_index, uint32_t offset_bytes) {
  return (pool_index + 1) | ((offset_bytes / kAlign) << kPoolIndexBits);
}

inline uint32_t Rol32(uint32_t w, int s) { return std::rotl(w, s); }

// jhash2 (include/linux/jhash.h), the kernel depot's hash over the frames' 32-bit words.
uint32_t Jhash2(const uint32_t* k, uint32_t length, uint32_t initval) {
  uint32_t a, b, c;
  a = b = c = 0xdeadbeef + (length << 2) + initval;
  auto mix = [&] {
    a -= c;
    a ^= Rol32(c, 4);
    c += b;
    b -= a;
    b ^= Rol32(a, 6);
    a += c;
    c -= b;
    c ^= Rol32(b, 8);
    b += a;
    a -= c;
    a ^= Rol32(c, 16);
    c += b;
    b -= a;
    b ^= Rol32(a, 19);
    a += c;
    c -= b;
    c ^= Rol32(b, 4);
    b += a;
  };
  auto final = [&] {
    c ^= b;
    c -= Rol32(b, 14);
    a ^= c;
    a -= Rol32(c, 11);
    b ^= a;
    b -= Rol32(a, 25);
    c ^= b;
    c -= Rol32(b, 16);
    a ^= c;
    a -= Rol32(c, 4);
    b ^= a;
    b -= Rol32(a, 14);
    c ^= b;
    c -= Rol32(b, 24);
  };
  while (length > 3) {
    a += k[0];
    b += k[1];
    c += k[2];
    mix();
    length -= 3;
    k += 3;
  }
  switch (length) {
    case 3:
      c += k[2];
      [[fallthrough]];
    case 2:
      b += k[1];
      [[fallthrough]];
    case 1:
      a += k[0];
      final();
      break;
    case 0:
      break;
  }
  return c;
}

uint32_t BucketCount(uint64_t memory_pages) {
  // One bucket per 16 KiB of memory, 4K..1M, a power of two.
  uint64_t n = std::clamp<uint64_t>(memory_pages / 4, 4096, 1 << 20);
  return static_cast<uint32_t>(std::bit_ceil(n));
}

}  // namespace

struct StackDepot::Record {
  std::atomic<uint32_t> next;  // next record's handle in the bucket chain, 0 at the end
  uint32_t hash;
  uint32_t size;  // frames
  uint32_t handle;
  std::atomic<int64_t> pages;
  std::atomic<uint64_t> allocations;

  uint64_t* frames() { return reinterpret_cast<uint64_t*>(this + 1); }
  const uint64_t* frames() const { return reinterpret_cast<const uint64_t*>(this + 1); }
  static size_t BytesFor(size_t n) {
    return (sizeof(Record) + n * sizeof(uint64_t) + kAlign - 1) / kAlign * kAlign;
  }
};

struct StackDepot::Pool {
  alignas(64) std::byte data[kPoolBytes];
  // Bit i set: a record starts at offset i * kAlign. Lets Fetch reject handles that point into
  // the middle of a record.
  std::atomic<uint64_t> starts[kPoolBytes / kAlign / 64];
};

StackDepot::StackDepot(const StackDepotOptions& options, PoolAllocator pool_allocator)
    : max_depth_(options.max_depth),
      max_pools_(options.max_pools),
      bucket_mask_(BucketCount(options.memory_pages) - 1),
      pool_allocator_(std::move(pool_allocator)),
      buckets_(new std::atomic<uint32_t>[bucket_mask_ + 1]),
      pools_(new std::atomic<Pool*>[options.max_pools]) {
  assert(max_depth_ >= 1 && max_depth_ <= kMaxStackDepth);
  assert(max_pools_ >= 1 && max_pools_ <= kMaxPoolsLimit);
  for (uint32_t i = 0; i <= bucket_mask_; ++i) buckets_[i].store(0, std::memory_order_relaxed);
  for (uint32_t i = 0; i < max_pools_; ++i) pools_[i].store(nullptr, std::memory_order_relaxed);
}

StackDepot::~StackDepot() {
  for (uint32_t i = 0; i < max_pools_; ++i) delete pools_[i].load(std::memory_order_relaxed);
  delete spare_;
}

uint32_t StackDepot::Hash(absl::Span<const uint64_t> frames) {
  static_assert(sizeof(uint64_t) == 2 * sizeof(uint32_t));
  return Jhash2(reinterpret_cast<const uint32_t*>(frames.data()),
                static_cast<uint32_t>(frames.size() * 2), kHashSeed);
}

StackDepot::Record* StackDepot::MutableLookup(StackHandle handle) const {
  const uint32_t h = handle.raw();
  const uint32_t pool_plus_1 = h & ((1u << kPoolIndexBits) - 1);
  const uint32_t offset = ((h >> kPoolIndexBits) & ((1u << kOffsetBits) - 1)) * kAlign;
  if (pool_plus_1 == 0 || (h >> (kPoolIndexBits + kOffsetBits)) != 0) return nullptr;
  if (pool_plus_1 > pools_in_use_.load(std::memory_order_acquire)) return nullptr;
  Pool* pool = pools_[pool_plus_1 - 1].load(std::memory_order_acquire);
  if (pool == nullptr) return nullptr;
  const uint32_t slot = offset / kAlign;
  if ((pool->starts[slot / 64].load(std::memory_order_acquire) & (uint64_t{1} << (slot % 64))) ==
      0) {
    return nullptr;
  }
  return std::launder(reinterpret_cast<Record*>(pool->data + offset));
}

const StackDepot::Record* StackDepot::Lookup(StackHandle handle) const {
  return MutableLookup(handle);
}

const StackDepot::Record* StackDepot::FindInBucket(uint32_t bucket, uint32_t hash,
                                                   absl::Span<const uint64_t> frames) const {
  uint32_t h = buckets_[bucket].load(std::memory_order_acquire);
  while (h != 0) {
    const Record* r = Lookup(StackHandle(h));
    assert(r != nullptr);
    if (r->hash == hash && r->size == frames.size() &&
        std::memcmp(r->frames(), frames.data(), frames.size() * sizeof(uint64_t)) == 0) {
      return r;
    }
    h = r->next.load(std::memory_order_acquire);
  }
  return nullptr;
}

StackHandle StackDepot::Find(absl::Span<const uint64_t> frames) const {
  if (frames.size() > static_cast<size_t>(max_depth_)) frames = frames.first(max_depth_);
  if (frames.empty()) return StackHandle();
  const uint32_t hash = Hash(frames);
  const Record* r = FindInBucket(hash & bucket_mask_, hash, frames);
  return r == nullptr ? StackHandle() : StackHandle(r->handle);
}

void StackDepot::RefillSpare(size_t bytes) {
  absl::MutexLock pool_lock(&pool_mu_);
  uint32_t index;
  {
    absl::MutexLock lock(&mu_);
    const uint32_t in_use = pools_in_use_.load(std::memory_order_relaxed);
    if (spare_ != nullptr || (in_use > 0 && current_used_ + bytes <= kPoolBytes)) return;
    index = in_use;
  }
  if (index >= max_pools_) return;
  // Outside mu_: the allocator may re-enter the page allocator and page_owner.
  if (pool_allocator_ && !pool_allocator_(index)) return;
  auto* pool = new Pool;
  for (auto& w : pool->starts) w.store(0, std::memory_order_relaxed);
  absl::MutexLock lock(&mu_);
  spare_ = pool;
}

StackHandle StackDepot::Save(absl::Span<const uint64_t> frames) {
  if (frames.size() > static_cast<size_t>(max_depth_)) {
    frames = frames.first(max_depth_);
    truncated_.fetch_add(1, std::memory_order_relaxed);
  }
  if (frames.empty()) return StackHandle();
  const uint32_t hash = Hash(frames);
  const uint32_t bucket = hash & bucket_mask_;
  if (const Record* r = FindInBucket(bucket, hash, frames)) return StackHandle(r->handle);

  const size_t bytes = Record::BytesFor(frames.size());
  for (int attempt = 0; attempt < 2; ++attempt) {
    {
      absl::MutexLock lock(&mu_);
      // Another thread may have stored it since the lock-free look.
      if (const Record* r = FindInBucket(bucket, hash, frames)) return StackHandle(r->handle);
      uint32_t in_use = pools_in_use_.load(std::memory_order_relaxed);
      if (in_use == 0 || current_used_ + bytes > kPoolBytes) {
        if (spare_ != nullptr) {
          pools_[in_use].store(spare_, std::memory_order_release);
          spare_ = nullptr;
          pools_in_use_.store(++in_use, std::memory_order_release);
          current_used_ = 0;
        }
      }
      if (in_use > 0 && current_used_ + bytes <= kPoolBytes) {
        Pool* pool = pools_[in_use - 1].load(std::memory_order_relaxed);
        const auto offset = static_cast<uint32_t>(current_used_);
        auto* r = new (pool->data + offset) Record;
        r->hash = hash;
        r->size = static_cast<uint32_t>(frames.size());
        r->handle = MakeHandle(in_use - 1, offset);
        r->pages.store(0, std::memory_order_relaxed);
        r->allocations.store(0, std::memory_order_relaxed);
        std::memcpy(r->frames(), frames.data(), frames.size() * sizeof(uint64_t));
        r->next.store(buckets_[bucket].load(std::memory_order_relaxed), std::memory_order_relaxed);
        const uint32_t slot = offset / kAlign;
        pool->starts[slot / 64].fetch_or(uint64_t{1} << (slot % 64), std::memory_order_release);
        buckets_[bucket].store(r->handle, std::memory_order_release);
        current_used_ += bytes;
        persistent_bytes_ += bytes;
        stored_.push_back(StackHandle(r->handle));
        return StackHandle(r->handle);
      }
    }
    RefillSpare(bytes);
  }
  failed_.fetch_add(1, std::memory_order_relaxed);
  return StackHandle();
}

absl::Span<const uint64_t> StackDepot::Fetch(StackHandle handle) const {
  const Record* r = Lookup(handle);
  if (r == nullptr) return {};
  return absl::MakeConstSpan(r->frames(), r->size);
}

void StackDepot::AddPages(StackHandle handle, int64_t delta) {
  Record* r = MutableLookup(handle);
  assert(r != nullptr);
  r->pages.fetch_add(delta, std::memory_order_relaxed);
}

void StackDepot::CountAllocation(StackHandle handle) { Charge(handle, 0); }

void StackDepot::Charge(StackHandle handle, int64_t pages) {
  Record* r = MutableLookup(handle);
  assert(r != nullptr);
  r->pages.fetch_add(pages, std::memory_order_relaxed);
  if (r->allocations.fetch_add(1, std::memory_order_relaxed) == 0) {
    absl::MutexLock lock(&mu_);
    owner_list_.push_back(handle);
  }
}

StackUsage StackDepot::UsageOf(StackHandle handle, const Record& r) const {
  return StackUsage{handle, absl::MakeConstSpan(r.frames(), r.size),
                    r.pages.load(std::memory_order_relaxed),
                    r.allocations.load(std::memory_order_relaxed)};
}

StackUsage StackDepot::Usage(StackHandle handle) const {
  const Record* r = Lookup(handle);
  return r == nullptr ? StackUsage{} : UsageOf(handle, *r);
}

void StackDepot::ForEachOwnerStack(absl::FunctionRef<void(const StackUsage&)> visit) const {
  std::vector<StackHandle> list;
  {
    absl::MutexLock lock(&mu_);
    list = owner_list_;
  }
  for (auto it = list.rbegin(); it != list.rend(); ++it) visit(UsageOf(*it, *Lookup(*it)));
}

void StackDepot::ForEachStack(absl::FunctionRef<void(const StackUsage&)> visit) const {
  std::vector<StackHandle> list;
  {
    absl::MutexLock lock(&mu_);
    list = stored_;
  }
  for (StackHandle h : list) visit(UsageOf(h, *Lookup(h)));
}

StackDepotStats StackDepot::stats() const {
  StackDepotStats s;
  s.pools = pools_in_use_.load(std::memory_order_acquire);
  {
    absl::MutexLock lock(&mu_);
    s.persistent_count = stored_.size();
    s.persistent_bytes = persistent_bytes_;
  }
  s.truncated = truncated_.load(std::memory_order_relaxed);
  s.failed = failed_.load(std::memory_order_relaxed);
  return s;
}

size_t StackDepot::MemoryBytes() const {
  absl::MutexLock lock(&mu_);
  return pools_in_use_.load(std::memory_order_relaxed) * sizeof(Pool) +
         (spare_ != nullptr ? sizeof(Pool) : 0) + (bucket_mask_ + 1) * sizeof(uint32_t) +
         max_pools_ * sizeof(Pool*) + stored_.capacity() * sizeof(StackHandle) +
         owner_list_.capacity() * sizeof(StackHandle);
}

void StackDepot::SaveState(SnapshotWriter& w) const {
  w.Tag(SnapshotTag("DEPT"));
  w.U32(static_cast<uint32_t>(max_depth_));
  w.U32(max_pools_);
  w.U32(bucket_mask_ + 1);
  w.U64(stored_.size());
  for (StackHandle h : stored_) {
    const Record* r = Lookup(h);
    w.U32(h.raw());
    w.U32(r->size);
    w.Bytes(r->frames(), r->size * sizeof(uint64_t));
    w.I64(r->pages.load(std::memory_order_relaxed));
    w.U64(r->allocations.load(std::memory_order_relaxed));
  }
  w.U64(owner_list_.size());
  for (StackHandle h : owner_list_) w.U32(h.raw());
  w.U64(truncated_.load(std::memory_order_relaxed));
  w.U64(failed_.load(std::memory_order_relaxed));
  w.U8(spare_ != nullptr ? 1 : 0);
}

absl::Status StackDepot::LoadState(SnapshotReader& r) {
  r.ExpectTag(SnapshotTag("DEPT"), "stack depot");
  const uint32_t depth = r.U32();
  const uint32_t pools = r.U32();
  const uint32_t buckets = r.U32();
  if (r.ok() && (depth != static_cast<uint32_t>(max_depth_) || pools != max_pools_ ||
                 buckets != bucket_mask_ + 1)) {
    r.Fail(absl::StrCat("depot of depth ", depth, ", ", pools, " pools, ", buckets,
                        " buckets; this one has ", max_depth_, ", ", max_pools_, ", ",
                        bucket_mask_ + 1));
  }
  const uint64_t n = r.Count(uint64_t{max_pools_} * (kPoolBytes / kAlign), "stored stacks");
  absl::MutexLock pool_lock(&pool_mu_);
  absl::MutexLock lock(&mu_);
  if (!stored_.empty() || pools_in_use_.load(std::memory_order_relaxed) != 0) {
    r.Fail("the depot to load into is not empty");
  }
  std::vector<uint64_t> frames;
  for (uint64_t i = 0; i < n && r.ok(); ++i) {
    const uint32_t handle = r.U32();
    const uint32_t size = r.U32();
    if (r.ok() && (size == 0 || size > static_cast<uint32_t>(max_depth_))) {
      r.Fail(absl::StrCat("stack ", i, " has ", size, " frames"));
    }
    if (!r.ok()) break;
    frames.resize(size);
    r.Bytes(frames.data(), size * sizeof(uint64_t));
    const int64_t pages = r.I64();
    const uint64_t allocations = r.U64();
    if (!r.ok()) break;
    // Where Save put it: the newest pool when it fits, else the next one.
    const size_t bytes = Record::BytesFor(size);
    uint32_t in_use = pools_in_use_.load(std::memory_order_relaxed);
    if (in_use == 0 || current_used_ + bytes > kPoolBytes) {
      if (in_use >= max_pools_) {
        r.Fail(absl::StrCat("stack ", i, " needs pool ", in_use + 1, " of ", max_pools_));
        break;
      }
      auto* pool = new Pool;
      for (auto& word : pool->starts) word.store(0, std::memory_order_relaxed);
      pools_[in_use].store(pool, std::memory_order_release);
      pools_in_use_.store(++in_use, std::memory_order_release);
      current_used_ = 0;
    }
    const auto offset = static_cast<uint32_t>(current_used_);
    if (MakeHandle(in_use - 1, offset) != handle) {
      r.Fail(absl::StrCat("stack ", i, " was saved with handle ", handle, " but lands at ",
                          MakeHandle(in_use - 1, offset)));
      break;
    }
    if (Find(frames).valid()) {
      r.Fail(absl::StrCat("stack ", i, " (handle ", handle, ") is stored twice"));
      break;
    }
    Pool* pool = pools_[in_use - 1].load(std::memory_order_relaxed);
    auto* rec = new (pool->data + offset) Record;
    rec->hash = Hash(frames);
    rec->size = size;
    rec->handle = handle;
    rec->pages.store(pages, std::memory_order_relaxed);
    rec->allocations.store(allocations, std::memory_order_relaxed);
    std::memcpy(rec->frames(), frames.data(), size * sizeof(uint64_t));
    const uint32_t bucket = rec->hash & bucket_mask_;
    rec->next.store(buckets_[bucket].load(std::memory_order_relaxed), std::memory_order_relaxed);
    const uint32_t slot = offset / kAlign;
    pool->starts[slot / 64].fetch_or(uint64_t{1} << (slot % 64), std::memory_order_release);
    buckets_[bucket].store(handle, std::memory_order_release);
    current_used_ += bytes;
    persistent_bytes_ += bytes;
    stored_.push_back(StackHandle(handle));
  }
  const uint64_t owners = r.Count(n, "owner stacks");
  for (uint64_t i = 0; i < owners && r.ok(); ++i) {
    const StackHandle h(r.U32());
    const Record* rec = Lookup(h);
    if (r.ok() && (rec == nullptr || rec->allocations.load(std::memory_order_relaxed) == 0)) {
      r.Fail(absl::StrCat("owner stack ", h.raw(), " is not a charged stack"));
    }
    owner_list_.push_back(h);
  }
  truncated_.store(r.U64(), std::memory_order_relaxed);
  failed_.store(r.U64(), std::memory_order_relaxed);
  const uint8_t spare = r.U8();
  if (r.ok() && spare > 1) r.Fail(absl::StrCat("spare pool marker ", int{spare}));
  if (r.ok() && spare == 1) {
    spare_ = new Pool;
    for (auto& word : spare_->starts) word.store(0, std::memory_order_relaxed);
  }
  return r.status();
}

void StackDepot::WithLocksHeld(absl::FunctionRef<void()> fn) const {
  absl::MutexLock pool_lock(&pool_mu_);
  absl::MutexLock lock(&mu_);
  fn();
}

}  // namespace pageowner
