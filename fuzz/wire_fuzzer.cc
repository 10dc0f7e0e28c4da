// The wire path of Ingest: bytes -> v1::EventBatch (protobuf parse) -> IngestStream::Prepare ->
// SharedMachine::ApplyBatch on a small machine -> FillBatchResult, the machine's invariants
// checked after every batch.
//
// Input: one flags byte, then up to 16 batches, each a varint length and that many bytes of a
// serialized EventBatch (the framing of a length-delimited stream). Flag bit 0: the machine
// starts with tracking off; bit 1: tracking is toggled after each batch (SetTracking, as the
// SetTracking rpc does between batches).
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "fuzz/fuzz_util.h"
#include "google/protobuf/io/coded_stream.h"
#include "pageowner/v1/pageowner.pb.h"
#include "server/ingest.h"
#include "server/shared_machine.h"

namespace pageowner::fuzz {
namespace {

void Run(const uint8_t* data, size_t size) {
  if (size == 0) return;
  const uint8_t flags = data[0];
  server::SharedMachine machine(FuzzMachineOptions(/*tracking=*/(flags & 1) == 0));
  server::IngestStream stream(&machine.symbols(),
                              server::IngestLimits{.max_batch_events = 256,
                                                   .max_symbol_bytes = 64 << 10,
                                                   .max_stream_definition_bytes = 64 << 10});
  google::protobuf::io::CodedInputStream in(data + 1, static_cast<int>(size - 1));
  v1::EventBatch batch;
  server::PreparedBatch prepared;
  std::vector<EventResult> results;
  v1::BatchResult answer;
  for (int n = 0; n < 16; ++n) {
    uint32_t len = 0;
    if (!in.ReadVarint32(&len)) break;
    const auto limit = in.PushLimit(static_cast<int>(std::min<uint32_t>(len, 1 << 20)));
    const bool parsed = batch.ParseFromCodedStream(&in) && in.ConsumedEntireMessage();
    in.PopLimit(limit);
    if (!parsed) break;  // the server ends the stream INVALID_ARGUMENT
    prepared.Clear();
    const absl::Status s = stream.Prepare(batch, &prepared);
    PO_FUZZ_CHECK(s.ok() == prepared.malformed.ok(), "Prepare and the batch disagree");
    results.clear();
    if (s.ok()) {
      PO_FUZZ_CHECK(prepared.events.size() == prepared.prechecked.size(), "precheck per event");
      PO_FUZZ_CHECK(prepared.hints.empty() || prepared.hints.size() == prepared.events.size(),
                    "hint per event");
      machine.ApplyBatch(absl::MakeSpan(prepared.events), prepared.prechecked, prepared.hints,
                         &results);
    } else {
      PO_FUZZ_CHECK(prepared.events.empty(), "a malformed batch with events");
      PO_FUZZ_CHECK(s.code() == absl::StatusCode::kInvalidArgument ||
                        s.code() == absl::StatusCode::kResourceExhausted,
                    s.ToString());
    }
    server::FillBatchResult(prepared, results, &answer);
    machine.Read([](const Machine& m) { CheckMachine(m); });
    if (flags & 2) {
      machine.Write([&](Machine& m) { m.SetTracking(!m.tracking(), batch.sequence()); });
      machine.Read([](const Machine& m) { CheckMachine(m); });
    }
  }
}

}  // namespace
}  // namespace pageowner::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  pageowner::fuzz::Run(data, size);
  return 0;
}
