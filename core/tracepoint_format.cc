#include "core/tracepoint_format.h"

#include <sys/stat.h>

#include <charconv>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "core/procfs.h"
#include "core/strings.h"

namespace pageowner {
namespace {

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t' || s.front() == '\r')) {
    s.remove_prefix(1);
  }
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) {
    s.remove_suffix(1);
  }
  return s;
}

bool ParseU32(std::string_view s, uint32_t* out) {
  s = Trim(s);
  if (s.empty()) return false;
  const auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), *out);
  return ec == std::errc() && ptr == s.data() + s.size();
}

// Finds `key:` in `line` and returns the text up to the next ';'.
bool Attribute(std::string_view line, std::string_view key, std::string_view* value) {
  size_t pos = 0;
  while ((pos = line.find(key, pos)) != std::string_view::npos) {
    const bool starts =
        pos == 0 || line[pos - 1] == '\t' || line[pos - 1] == ' ' || line[pos - 1] == ';';
    if (starts && pos + key.size() < line.size() && line[pos + key.size()] == ':') {
      const size_t begin = pos + key.size() + 1;
      const size_t end = line.find(';', begin);
      if (end == std::string_view::npos) return false;
      *value = line.substr(begin, end - begin);
      return true;
    }
    pos += key.size();
  }
  return false;
}

absl::Status LineError(size_t line_no, std::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("line ", line_no, ": ", Sv(what)));
}

}  // namespace

absl::StatusOr<TracepointFormat> TracepointFormat::Parse(std::string_view text) {
  TracepointFormat f;
  bool have_name = false;
  bool have_id = false;
  size_t line_no = 0;
  while (!text.empty()) {
    const size_t nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text.remove_prefix(nl == std::string_view::npos ? text.size() : nl + 1);
    ++line_no;
    const std::string_view t = Trim(line);
    if (t.rfind("name:", 0) == 0) {
      f.name_ = std::string(Trim(t.substr(5)));
      have_name = !f.name_.empty();
      if (!have_name) return LineError(line_no, "empty name");
    } else if (t.rfind("ID:", 0) == 0) {
      if (!ParseU32(t.substr(3), &f.id_)) {
        return LineError(line_no, absl::StrCat("bad ID \"", Sv(Trim(t.substr(3))), "\""));
      }
      have_id = true;
    } else if (t.rfind("field:", 0) == 0) {
      const size_t semi = t.find(';');
      if (semi == std::string_view::npos) return LineError(line_no, "field without ';'");
      std::string_view decl = Trim(t.substr(6, semi - 6));
      TracepointField field;
      // The name is the last word of the declaration; an array's [N] follows it.
      if (!decl.empty() && decl.back() == ']') {
        const size_t open = decl.rfind('[');
        if (open == std::string_view::npos) return LineError(line_no, "unbalanced '['");
        field.is_array = true;
        // "__data_loc char[] name" keeps its brackets in the type; "char comm[16]" loses them.
        decl = Trim(decl.substr(0, open));
      }
      const size_t sp = decl.find_last_of(" \t*");
      const std::string_view name = sp == std::string_view::npos ? decl : decl.substr(sp + 1);
      if (name.empty()) return LineError(line_no, "field without a name");
      field.name = std::string(name);
      field.type = std::string(
          Trim(sp == std::string_view::npos ? std::string_view() : decl.substr(0, sp + 1)));
      std::string_view v;
      uint32_t is_signed = 0;
      if (!Attribute(t, "offset", &v) || !ParseU32(v, &field.offset)) {
        return LineError(line_no, "field without a valid offset:");
      }
      if (!Attribute(t, "size", &v) || !ParseU32(v, &field.size)) {
        return LineError(line_no, "field without a valid size:");
      }
      if (!Attribute(t, "signed", &v) || !ParseU32(v, &is_signed) || is_signed > 1) {
        return LineError(line_no, "field without a valid signed:");
      }
      field.is_signed = is_signed == 1;
      if (f.Find(field.name) != nullptr) {
        return LineError(line_no, absl::StrCat("duplicate field \"", field.name, "\""));
      }
      f.fields_.push_back(std::move(field));
    }
  }
  if (!have_name) return absl::InvalidArgumentError("format without a name: line");
  if (!have_id) return absl::InvalidArgumentError("format without an ID: line");
  if (f.fields_.empty()) return absl::InvalidArgumentError("format without field: lines");
  return f;
}

absl::StatusOr<TracepointFormat> TracepointFormat::ReadFromTracefs(const std::string& tracefs_root,
                                                                   std::string_view system,
                                                                   std::string_view event) {
  const std::string events = tracefs_root + "/events";
  struct stat st;
  if (stat(events.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    return absl::FailedPreconditionError(
        absl::StrCat("tracefs is not mounted at ", tracefs_root, " (no ", events,
                     "); mount it with: mount -t tracefs nodev ", tracefs_root));
  }
  const std::string path = absl::StrCat(events, "/", Sv(system), "/", Sv(event), "/format");
  absl::StatusOr<std::string> text = ReadTextFile(path);
  if (!text.ok()) {
    if (absl::IsNotFound(text.status())) {
      return absl::NotFoundError(absl::StrCat("this kernel has no tracepoint ", Sv(system), ":",
                                              Sv(event), " (", text.status().message(), ")"));
    }
    return text.status();
  }
  absl::StatusOr<TracepointFormat> f = Parse(*text);
  if (!f.ok()) {
    return absl::Status(f.status().code(), absl::StrCat(path, ": ", f.status().message()));
  }
  return f;
}

const TracepointField* TracepointFormat::Find(std::string_view name) const {
  for (const TracepointField& f : fields_) {
    if (f.name == name) return &f;
  }
  return nullptr;
}

absl::StatusOr<const TracepointField*> TracepointFormat::IntegerField(
    absl::Span<const uint8_t> payload, std::string_view name) const {
  const TracepointField* f = Find(name);
  if (f == nullptr) {
    return absl::NotFoundError(absl::StrCat(name_, " has no field \"", Sv(name), "\""));
  }
  if (f->is_array || (f->size != 1 && f->size != 2 && f->size != 4 && f->size != 8)) {
    return absl::InvalidArgumentError(absl::StrCat(name_, ".", f->name, " (", f->type, ", size ",
                                                   f->size, ") is not an integer field"));
  }
  if (uint64_t{f->offset} + f->size > payload.size()) {
    return absl::OutOfRangeError(absl::StrCat(name_, ".", f->name, " at offset ", f->offset,
                                              " size ", f->size, " passes the payload's ",
                                              payload.size(), " bytes"));
  }
  return f;
}

absl::StatusOr<uint64_t> TracepointFormat::ReadUnsigned(absl::Span<const uint8_t> payload,
                                                        std::string_view field) const {
  absl::StatusOr<const TracepointField*> f = IntegerField(payload, field);
  if (!f.ok()) return f.status();
  uint64_t v = 0;
  for (uint32_t i = 0; i < (*f)->size; ++i) {
    v |= uint64_t{payload[(*f)->offset + i]} << (8 * i);
  }
  return v;
}

absl::StatusOr<int64_t> TracepointFormat::ReadSigned(absl::Span<const uint8_t> payload,
                                                     std::string_view field) const {
  absl::StatusOr<uint64_t> u = ReadUnsigned(payload, field);
  if (!u.ok()) return u.status();
  const TracepointField* f = Find(field);
  uint64_t v = *u;
  if (f->is_signed && f->size < 8) {
    const unsigned bits = 8 * f->size;
    if (v & (uint64_t{1} << (bits - 1))) v |= ~uint64_t{0} << bits;
  }
  return static_cast<int64_t>(v);
}

}  // namespace pageowner
