// Small pieces the service's reactors share.
#ifndef PAGEOWNER_SERVER_REACTOR_UTIL_H_
#define PAGEOWNER_SERVER_REACTOR_UTIL_H_

#include <utility>

#include "grpcpp/grpcpp.h"

namespace pageowner::server {

// UNAVAILABLE: the daemon is draining and takes no new stream.
const grpc::Status& ShuttingDown();

// A reactor that only finishes the call with a status (a refused stream).
template <typename Base>
class FinishedReactor final : public Base {
 public:
  explicit FinishedReactor(grpc::Status status) { this->Finish(std::move(status)); }
  void OnDone() override { delete this; }
};

}  // namespace pageowner::server

#endif  // PAGEOWNER_SERVER_REACTOR_UTIL_H_
