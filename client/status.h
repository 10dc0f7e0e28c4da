// The client's names for the status conversions of the wire library (wire/status.h).
#ifndef PAGEOWNER_CLIENT_STATUS_H_
#define PAGEOWNER_CLIENT_STATUS_H_

#include "wire/status.h"

namespace pageowner::client {

using wire::CodeFromRpc;
using wire::CodeName;
using wire::FromGrpcStatus;
using wire::StatusFromRpc;

}  // namespace pageowner::client

#endif  // PAGEOWNER_CLIENT_STATUS_H_
