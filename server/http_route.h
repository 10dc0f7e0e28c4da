// HttpRoute: a GET handler on the daemon's http listener (MetricsHttpServer) that knows nothing
// of the http library: it gets the query parameters and returns a status, a content type and a
// body. The listener registers each route's path as an exact path.
#ifndef PAGEOWNER_SERVER_HTTP_ROUTE_H_
#define PAGEOWNER_SERVER_HTTP_ROUTE_H_

#include <functional>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace pageowner::server {

struct HttpReply {
  int status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;  // extra response headers
};

struct HttpRoute {
  std::string path;  // exact, e.g. "/debug/pprof/heap"
  // Called with the query parameters (the first value of each name); from any thread.
  std::function<HttpReply(const std::map<std::string, std::string>& params)> handler;
};

}  // namespace pageowner::server

#endif  // PAGEOWNER_SERVER_HTTP_ROUTE_H_
