#include "server/pprof.h"

#include <zlib.h>

#include <cstring>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "core/kernel_flags.h"
#include "profile.pb.h"

namespace pageowner::server {
namespace {

namespace pp = perftools::profiles;

// The string table: index 0 is "".
class Strings {
 public:
  explicit Strings(pp::Profile* p) : p_(p) { Id(""); }
  int64_t Id(const std::string& s) {
    auto [it, inserted] = ids_.try_emplace(s, static_cast<int64_t>(ids_.size()));
    if (inserted) p_->add_string_table(s);
    return it->second;
  }

 private:
  pp::Profile* p_;
  absl::flat_hash_map<std::string, int64_t> ids_;
};

// "func+0x1a/0x50 [mod]" -> ("func", "mod"); a bare "0x..." stays itself.
std::pair<std::string, std::string> FunctionOf(const std::string& printed) {
  std::string name = printed;
  std::string module;
  if (const size_t sp = name.find(" ["); sp != std::string::npos && name.back() == ']') {
    module = name.substr(sp + 2, name.size() - sp - 3);
    name.resize(sp);
  }
  if (const size_t plus = name.rfind("+0x"); plus != std::string::npos && plus > 0) {
    name.resize(plus);
  }
  return {name, module};
}

void AddLabel(pp::Sample* s, Strings& strings, const std::string& key, const std::string& value) {
  pp::Label* l = s->add_label();
  l->set_key(strings.Id(key));
  l->set_str(strings.Id(value));
}

}  // namespace

std::string SerializePprof(const HeapProfile& profile, const SymbolTable& symbols,
                           int64_t time_nanos) {
  pp::Profile p;
  Strings strings(&p);
  for (const auto& [type, unit] : {std::pair<std::string, std::string>{"alloc_objects", "count"},
                                   {"alloc_space", "bytes"},
                                   {"inuse_objects", "count"},
                                   {"inuse_space", "bytes"}}) {
    pp::ValueType* vt = p.add_sample_type();
    vt->set_type(strings.Id(type));
    vt->set_unit(strings.Id(unit));
  }
  p.set_default_sample_type(strings.Id("inuse_space"));
  p.mutable_period_type()->set_type(strings.Id("space"));
  p.mutable_period_type()->set_unit(strings.Id("bytes"));
  p.set_period(static_cast<int64_t>(kPageSize));
  p.set_time_nanos(time_nanos);
  p.add_comment(strings.Id(absl::StrCat("pageownerd: page_owner of a simulated machine of ",
                                        profile.total_pages.raw(), " pages")));
  // One mapping for the kernel text: the frames are named already, nothing to symbolize.
  pp::Mapping* kernel = p.add_mapping();
  kernel->set_id(1);
  kernel->set_memory_start(0);
  kernel->set_memory_limit(~uint64_t{0});
  kernel->set_filename(strings.Id("[kernel.kallsyms]"));
  kernel->set_has_functions(true);

  absl::flat_hash_map<uint64_t, uint64_t> location_of_ip;
  absl::flat_hash_map<std::string, uint64_t> function_of_name;
  // Location ids of each stack, innermost first (pprof's order).
  absl::flat_hash_map<uint32_t, std::vector<uint64_t>> locations;
  absl::flat_hash_map<uint32_t, std::string> content_ids;
  for (const ProfileStack& s : profile.stacks) {
    std::vector<uint64_t>& ids = locations[s.handle.raw()];
    for (uint64_t ip : s.frames) {
      auto [it, inserted] = location_of_ip.try_emplace(ip, location_of_ip.size() + 1);
      if (inserted) {
        const auto [name, module] = FunctionOf(symbols.FormatFrame(ip));
        auto [fit, fnew] = function_of_name.try_emplace(name, function_of_name.size() + 1);
        if (fnew) {
          pp::Function* f = p.add_function();
          f->set_id(fit->second);
          f->set_name(strings.Id(name));
          f->set_system_name(strings.Id(name));
          f->set_filename(strings.Id(module));
        }
        pp::Location* loc = p.add_location();
        loc->set_id(it->second);
        loc->set_mapping_id(1);
        loc->set_address(ip);
        loc->add_line()->set_function_id(fit->second);
      }
      ids.push_back(it->second);
    }
    content_ids[s.handle.raw()] = absl::StrFormat("0x%016x", s.content_id);
  }

  auto add_sample = [&](StackHandle handle, int64_t alloc_objects, int64_t alloc_space,
                        int64_t inuse_objects, int64_t inuse_space) {
    pp::Sample* s = p.add_sample();
    for (uint64_t id : locations[handle.raw()]) s->add_location_id(id);
    s->add_value(alloc_objects);
    s->add_value(alloc_space);
    s->add_value(inuse_objects);
    s->add_value(inuse_space);
    AddLabel(s, strings, "content_id", content_ids[handle.raw()]);
    AddLabel(s, strings, "handle", absl::StrCat(handle.raw()));
    return s;
  };
  for (const InUseSample& u : profile.in_use) {
    pp::Sample* s = add_sample(u.handle, 0, 0, static_cast<int64_t>(u.blocks),
                               static_cast<int64_t>(u.pages.in_bytes()));
    AddLabel(s, strings, "pid", absl::StrCat(u.pid));
    AddLabel(s, strings, "comm", u.comm);
    // The %pGg names; a mask without one (0, the early handle's) as its number.
    const std::string gfp = FormatGfpNames(u.gfp_mask);
    AddLabel(s, strings, "gfp", gfp.empty() ? absl::StrFormat("%#x", u.gfp_mask) : gfp);
    AddLabel(s, strings, "order", absl::StrCat(u.order.raw()));
  }
  for (const EverSample& e : profile.ever) {
    pp::Sample* s = add_sample(e.handle, static_cast<int64_t>(e.allocations),
                               static_cast<int64_t>(e.pages.in_bytes()), 0, 0);
    AddLabel(s, strings, "order", absl::StrCat(e.order.raw()));
  }
  return p.SerializeAsString();
}

std::string Gzip(std::string_view data) {
  z_stream z;
  std::memset(&z, 0, sizeof(z));
  // 15 window bits + 16: a gzip header and trailer instead of zlib's.
  if (deflateInit2(&z, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
    return {};
  }
  std::string out(deflateBound(&z, data.size()) + 32, '\0');
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
  z.avail_in = static_cast<uInt>(data.size());
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = static_cast<uInt>(out.size());
  deflate(&z, Z_FINISH);  // one call: the output buffer holds the bound
  out.resize(z.total_out);
  deflateEnd(&z);
  return out;
}

std::string BuildPprof(const SharedMachine& machine, const PageFilter& filter) {
  HeapProfileScan scan(filter);
  while (!scan.done()) {
    machine.Read([&](const Machine& m) { scan.Step(m, kProfileBlocksPerHold); });
  }
  const HeapProfile profile = machine.Read([&](const Machine& m) { return scan.Finish(m); });
  return Gzip(SerializePprof(profile, machine.symbols(), absl::ToUnixNanos(absl::Now())));
}

}  // namespace pageowner::server
