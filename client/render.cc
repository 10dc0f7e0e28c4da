#include "client/render.h"

#include <cstdint>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "client/client.h"
#include "core/reports.h"
#include "google/protobuf/descriptor.h"
#include "wire/convert.h"

namespace pageowner::cli {
namespace {

// "content_id: 0x%016x\n": a stack's host-independent id (proto Stack.content_id).
std::string ContentIdLine(uint64_t content_id) {
  return absl::StrFormat("content_id: 0x%016x\n", content_id);
}

// Every scalar field of `m` as "name: value" (repeated ones space-separated), in field order.
void AppendStatsLines(const google::protobuf::Message& m, std::string* out) {
  using google::protobuf::FieldDescriptor;
  const google::protobuf::Descriptor* d = m.GetDescriptor();
  const google::protobuf::Reflection* r = m.GetReflection();
  for (int i = 0; i < d->field_count(); ++i) {
    const FieldDescriptor* f = d->field(i);
    if (f->cpp_type() == FieldDescriptor::CPPTYPE_STRING ||
        f->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE) {
      continue;  // the texts follow below
    }
    std::vector<std::string> values;
    const int n = f->is_repeated() ? r->FieldSize(m, f) : 1;
    for (int j = 0; j < n; ++j) {
      const bool rep = f->is_repeated();
      switch (f->cpp_type()) {
        case FieldDescriptor::CPPTYPE_UINT64:
          values.push_back(absl::StrCat(rep ? r->GetRepeatedUInt64(m, f, j) : r->GetUInt64(m, f)));
          break;
        case FieldDescriptor::CPPTYPE_UINT32:
          values.push_back(absl::StrCat(rep ? r->GetRepeatedUInt32(m, f, j) : r->GetUInt32(m, f)));
          break;
        case FieldDescriptor::CPPTYPE_INT64:
          values.push_back(absl::StrCat(rep ? r->GetRepeatedInt64(m, f, j) : r->GetInt64(m, f)));
          break;
        case FieldDescriptor::CPPTYPE_INT32:
          values.push_back(absl::StrCat(rep ? r->GetRepeatedInt32(m, f, j) : r->GetInt32(m, f)));
          break;
        case FieldDescriptor::CPPTYPE_BOOL:
          values.push_back((rep ? r->GetRepeatedBool(m, f, j) : r->GetBool(m, f)) ? "true"
                                                                                  : "false");
          break;
        case FieldDescriptor::CPPTYPE_DOUBLE:
          values.push_back(
              absl::StrFormat("%.2f", rep ? r->GetRepeatedDouble(m, f, j) : r->GetDouble(m, f)));
          break;
        case FieldDescriptor::CPPTYPE_FLOAT:
          values.push_back(
              absl::StrFormat("%.2f", rep ? r->GetRepeatedFloat(m, f, j) : r->GetFloat(m, f)));
          break;
        case FieldDescriptor::CPPTYPE_ENUM:
          values.push_back(rep ? r->GetRepeatedEnum(m, f, j)->name() : r->GetEnum(m, f)->name());
          break;
        default:
          break;
      }
    }
    absl::StrAppend(out, f->name(), ":", values.empty() ? "" : " ", absl::StrJoin(values, " "),
                    "\n");
  }
}

}  // namespace

// Renders a page the way dump renders it when dump would print it, else dump_page_owner's lines.
std::string RenderPage(const v1::GetPageResponse& resp, const v1::Stack& alloc_stack) {
  SymbolTable symbols;
  PrintedExtras extras;
  const PageOwner p = wire::FromProto(resp.page(), &extras);
  const wire::ReceivedStack alloc = wire::FromProto(alloc_stack, &symbols);
  std::string out;
  if (p.owner && p.allocated && p.handle.valid()) {
    AppendPageOwnerBlock(p, alloc.ips, symbols, DumpFormat::kToday, &out);
  } else {
    if (p.reserved) {
      absl::StrAppend(&out, "PFN 0x", absl::Hex(p.pfn.raw()),
                      " is reserved: not RAM on the machine recorded (a hole, memblock-reserved "
                      "memory or not System RAM); never handed out, never owned\n");
    }
    const wire::ReceivedStack freed = wire::FromProto(resp.free_stack(), &symbols);
    out += DumpPageOwnerText(p, alloc.ips, freed.ips, symbols);
  }
  return out;
}

std::string RenderStack(const v1::Stack& stack) {
  SymbolTable symbols;
  const wire::ReceivedStack s = wire::FromProto(stack, &symbols);
  std::string out;
  for (uint64_t ip : s.ips) {
    out.push_back(' ');
    symbols.AppendFrame(ip, &out);
    out.push_back('\n');
  }
  absl::StrAppend(&out, "handle: ", s.handle.raw(), "\n", ContentIdLine(stack.content_id()),
                  "nr_base_pages: ", s.pages, "\nallocations: ", s.allocations, "\n");
  return out;
}

void AppendStacksEntry(const v1::Stack& stack, bool handles, bool allocations, SymbolTable* symbols,
                       std::string* out) {
  const wire::ReceivedStack s = wire::FromProto(stack, symbols);
  AppendStackEntry(s.usage(), *symbols, handles ? StacksView::kStacksHandles : StacksView::kStacks,
                   out);
  // Ours, not the kernel's, before the entry's blank line: the content id and the pages under
  // the closing "handle: H" line, and the allocation count.
  std::string extra;
  if (handles)
    absl::StrAppend(&extra, ContentIdLine(stack.content_id()), "nr_base_pages: ", s.pages, "\n");
  if (allocations) absl::StrAppend(&extra, "allocations: ", s.allocations, "\n");
  out->insert(out->size() - 1, extra);
}

std::string RenderStats(const v1::Stats& stats) {
  std::string out;
  AppendStatsLines(stats, &out);
  StackDepotStats depot;
  depot.pools = stats.depot_pools();
  depot.persistent_count = stats.depot_persistent_count();
  depot.persistent_bytes = stats.depot_persistent_bytes();
  depot.truncated = stats.depot_truncated();
  depot.failed = stats.depot_failed();
  absl::StrAppend(&out, "\n", StackDepotStatsText(depot));
  if (!stats.mixed_blocks_text().empty()) absl::StrAppend(&out, "\n", stats.mixed_blocks_text());
  return out;
}

}  // namespace pageowner::cli
