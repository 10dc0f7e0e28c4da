#include "client/json_out.h"

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "absl/strings/str_format.h"
#include "google/protobuf/descriptor.h"
#include "nlohmann/json.hpp"

namespace pageowner::cli {
namespace {

using google::protobuf::FieldDescriptor;
using google::protobuf::Message;
using google::protobuf::Reflection;
using Json = nlohmann::ordered_json;

constexpr uint64_t kMaxExactInDouble = uint64_t{1} << 53;

// The length of the well-formed UTF-8 sequence at s[i] (no overlong forms, no surrogates, at most
// U+10FFFF), or 0.
size_t Utf8SequenceLength(std::string_view s, size_t i) {
  const auto byte = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  const unsigned char c = byte(i);
  if (c < 0x80) return 1;
  size_t n;
  unsigned char lo = 0x80, hi = 0xBF;  // the range of the second byte
  if (c >= 0xC2 && c <= 0xDF) {
    n = 2;
  } else if (c >= 0xE0 && c <= 0xEF) {
    n = 3;
    if (c == 0xE0) lo = 0xA0;
    if (c == 0xED) hi = 0x9F;
  } else if (c >= 0xF0 && c <= 0xF4) {
    n = 4;
    if (c == 0xF0) lo = 0x90;
    if (c == 0xF4) hi = 0x8F;
  } else {
    return 0;
  }
  if (i + n > s.size()) return 0;
  if (byte(i + 1) < lo || byte(i + 1) > hi) return 0;
  for (size_t k = 2; k < n; ++k) {
    if (byte(i + k) < 0x80 || byte(i + k) > 0xBF) return 0;
  }
  return n;
}

Json Unsigned(uint64_t v) {
  if (v <= kMaxExactInDouble) return Json(v);
  return Json(std::to_string(v));
}

Json Signed(int64_t v) {
  if (v >= -static_cast<int64_t>(kMaxExactInDouble) && v <= static_cast<int64_t>(kMaxExactInDouble))
    return Json(v);
  return Json(std::to_string(v));
}

Json Floating(double v) {
  if (std::isfinite(v)) return Json(v);
  return Json(std::isnan(v) ? "NaN" : v > 0 ? "Infinity" : "-Infinity");
}

// Addresses and hashes print as hex; content_id with the 16 digits the text output uses.
bool IsHexField(const FieldDescriptor* f) {
  return f->name() == "ip" || f->name() == "page_flags" || f->name() == "content_id";
}

Json MessageJson(const Message& m);

// Element `index` of a repeated field, or the singular value when index < 0.
Json FieldValue(const Message& m, const FieldDescriptor* f, int index) {
  const Reflection* r = m.GetReflection();
  const bool rep = index >= 0;
  switch (f->cpp_type()) {
    case FieldDescriptor::CPPTYPE_INT32:
      return Json(rep ? r->GetRepeatedInt32(m, f, index) : r->GetInt32(m, f));
    case FieldDescriptor::CPPTYPE_UINT32:
      return Json(rep ? r->GetRepeatedUInt32(m, f, index) : r->GetUInt32(m, f));
    case FieldDescriptor::CPPTYPE_INT64:
      return Signed(rep ? r->GetRepeatedInt64(m, f, index) : r->GetInt64(m, f));
    case FieldDescriptor::CPPTYPE_UINT64: {
      const uint64_t v = rep ? r->GetRepeatedUInt64(m, f, index) : r->GetUInt64(m, f);
      if (IsHexField(f)) {
        return Json(f->name() == "content_id" ? absl::StrFormat("0x%016x", v)
                                              : absl::StrFormat("0x%x", v));
      }
      return Unsigned(v);
    }
    case FieldDescriptor::CPPTYPE_DOUBLE:
      return Floating(rep ? r->GetRepeatedDouble(m, f, index) : r->GetDouble(m, f));
    case FieldDescriptor::CPPTYPE_FLOAT:
      return Floating(rep ? r->GetRepeatedFloat(m, f, index) : r->GetFloat(m, f));
    case FieldDescriptor::CPPTYPE_BOOL:
      return Json(rep ? r->GetRepeatedBool(m, f, index) : r->GetBool(m, f));
    case FieldDescriptor::CPPTYPE_ENUM: {
      const int v = rep ? r->GetRepeatedEnumValue(m, f, index) : r->GetEnumValue(m, f);
      const google::protobuf::EnumValueDescriptor* e = f->enum_type()->FindValueByNumber(v);
      return e != nullptr ? Json(e->name()) : Json(v);
    }
    case FieldDescriptor::CPPTYPE_STRING: {
      std::string scratch;
      const std::string& s = rep ? r->GetRepeatedStringReference(m, f, index, &scratch)
                                 : r->GetStringReference(m, f, &scratch);
      return Json(BytesToJsonText(s));
    }
    case FieldDescriptor::CPPTYPE_MESSAGE:
      return MessageJson(rep ? r->GetRepeatedMessage(m, f, index) : r->GetMessage(m, f));
  }
  return Json();
}

// A map entry's key as the object key: strings as text, integers in decimal.
std::string MapKey(const Message& entry) {
  const FieldDescriptor* key = entry.GetDescriptor()->map_key();
  const Json k = FieldValue(entry, key, -1);
  return k.is_string() ? k.get<std::string>() : k.dump();
}

Json MessageJson(const Message& m) {
  const google::protobuf::Descriptor* d = m.GetDescriptor();
  const Reflection* r = m.GetReflection();
  Json out = Json::object();
  for (int i = 0; i < d->field_count(); ++i) {
    const FieldDescriptor* f = d->field(i);
    if (f->is_map()) {
      Json obj = Json::object();
      for (int j = 0; j < r->FieldSize(m, f); ++j) {
        const Message& entry = r->GetRepeatedMessage(m, f, j);
        obj[MapKey(entry)] = FieldValue(entry, entry.GetDescriptor()->map_value(), -1);
      }
      out[f->name()] = std::move(obj);
    } else if (f->is_repeated()) {
      Json arr = Json::array();
      for (int j = 0; j < r->FieldSize(m, f); ++j) arr.push_back(FieldValue(m, f, j));
      out[f->name()] = std::move(arr);
    } else if (f->has_presence() && !r->HasField(m, f)) {
      continue;
    } else {
      out[f->name()] = FieldValue(m, f, -1);
    }
  }
  return out;
}

}  // namespace

std::string BytesToJsonText(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size());
  for (size_t i = 0; i < bytes.size();) {
    const size_t n = bytes[i] == '\\' ? 0 : Utf8SequenceLength(bytes, i);
    if (n == 0) {
      absl::StrAppendFormat(&out, "\\x%02x", static_cast<unsigned char>(bytes[i]));
      ++i;
    } else {
      out.append(bytes.substr(i, n));
      i += n;
    }
  }
  return out;
}

std::string MessageToReadableJson(const Message& m) { return MessageJson(m).dump(2) + "\n"; }

}  // namespace pageowner::cli
