// The CLI's --json writer: a protobuf message as JSON, built by reflection, readable by people and
// by jq. Not proto3's canonical JSON mapping (which writes bytes as base64 and every 64-bit
// integer as a string); the rules, also in `pageowner help`:
//  - Field names are the proto's own (snake_case); every field without presence is written,
//    defaults included; a message or `optional` field that is not set is left out.
//  - bytes fields (comm, symbol, the kernel's texts) are strings: valid UTF-8 as is, each byte
//    that is not part of valid UTF-8 (and the backslash itself, so that the text decodes one way)
//    as the four characters \xHH.
//  - 64-bit integers are JSON numbers when their magnitude is at most 2^53 (exact in a double),
//    else decimal strings.
//  - Addresses and hashes are "0x..." hex strings: `ip`, `page_flags`, and `content_id`
//    (16 digits, as `stack` and `stacks --handles` print it).
//  - Enums are their value names; doubles are numbers (a NaN or infinity as a string).
#ifndef PAGEOWNER_CLIENT_JSON_OUT_H_
#define PAGEOWNER_CLIENT_JSON_OUT_H_

#include <string>
#include <string_view>

#include "google/protobuf/message.h"

namespace pageowner::cli {

// `m` as indented JSON (two spaces) following the rules above, ending in a newline.
std::string MessageToReadableJson(const google::protobuf::Message& m);

// The string a bytes field becomes: valid UTF-8 as is, other bytes and '\\' as \xHH.
std::string BytesToJsonText(std::string_view bytes);

}  // namespace pageowner::cli

#endif  // PAGEOWNER_CLIENT_JSON_OUT_H_
