#include "bench/bench_util.h"

#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <string_view>
#include <utility>

#include "absl/strings/numbers.h"

namespace pageowner::bench {

double Since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// A field of /proc/PID/status ("VmRSS", "VmHWM") in bytes; 0 when absent.
uint64_t StatusBytes(const std::string& pid, const char* field) {
  std::ifstream in("/proc/" + pid + "/status");
  const std::string prefix = std::string(field) + ":";
  for (std::string line; std::getline(in, line);) {
    if (line.rfind(prefix, 0) == 0) {
      return std::strtoull(line.c_str() + prefix.size(), nullptr, 10) * 1024;
    }
  }
  return 0;
}

uint64_t RssBytes() { return StatusBytes("self", "VmRSS"); }

std::string Commas(uint64_t v) {
  const std::string digits = std::to_string(v);
  std::string out;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out.push_back(',');
    out.push_back(digits[i]);
  }
  return out;
}

double Median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 == 1 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

double Percentile(std::vector<double>* v, double p) {
  if (v->empty()) return 0;
  std::sort(v->begin(), v->end());
  const size_t i = std::min(v->size() - 1, static_cast<size_t>(p * static_cast<double>(v->size())));
  return (*v)[i];
}

std::string LoadAverage() {
  std::ifstream in("/proc/loadavg");
  std::string a, b, c;
  in >> a >> b >> c;
  return a + " " + b + " " + c;
}

// Pages in a "4GiB"-style size.
uint64_t ParsePages(const std::string& text) {
  static const std::pair<const char*, int> kUnits[] = {
      {"KiB", 10}, {"MiB", 20}, {"GiB", 30}, {"TiB", 40}};
  for (const auto& [suffix, shift] : kUnits) {
    const size_t n = std::strlen(suffix);
    if (text.size() > n && text.compare(text.size() - n, n, suffix) == 0) {
      uint64_t v;
      if (absl::SimpleAtoi(text.substr(0, text.size() - n), &v)) return (v << shift) >> 12;
    }
  }
  uint64_t v;
  if (absl::SimpleAtoi(text, &v)) return v >> 12;
  std::cerr << "pageowner-bench: bad memory size " << text << "\n";
  std::exit(2);
}

// The directory of this binary, where pageownerd and pageowner are built too.
std::string BinDir() {
  char buf[4096];
  const ssize_t n = readlink("/proc/self/exe", buf, sizeof(buf) - 1);
  if (n <= 0) return ".";
  std::string path(buf, static_cast<size_t>(n));
  return path.substr(0, path.rfind('/'));
}

Flags::Flags(int argc, char** argv) {
  for (int i = 0; i < argc; ++i) {
    std::string a = argv[i];
    if (a.rfind("--", 0) != 0) {
      std::cerr << "pageowner-bench: unexpected argument " << a << "\n";
      std::exit(2);
    }
    a = a.substr(2);
    const size_t eq = a.find('=');
    if (eq != std::string::npos) {
      values_[a.substr(0, eq)] = a.substr(eq + 1);
    } else if (i + 1 < argc && std::string_view(argv[i + 1]).rfind("--", 0) != 0) {
      values_[a] = argv[++i];
    } else {
      values_[a] = "true";
    }
  }
}

uint64_t Flags::Int(const std::string& name, uint64_t def) {
  auto it = Take(name);
  if (!it) return def;
  uint64_t v;
  if (!absl::SimpleAtoi(*it, &v)) Bad(name, *it);
  return v;
}

double Flags::Double(const std::string& name, double def) {
  auto it = Take(name);
  if (!it) return def;
  double v;
  if (!absl::SimpleAtod(*it, &v)) Bad(name, *it);
  return v;
}

std::string Flags::String(const std::string& name, const std::string& def) {
  auto it = Take(name);
  return it ? *it : def;
}

bool Flags::Bool(const std::string& name) { return Take(name).has_value(); }

void Flags::CheckAllUsed() {
  if (values_.empty()) return;
  std::cerr << "pageowner-bench: unknown flag --" << values_.begin()->first << "\n";
  std::exit(2);
}

std::optional<std::string> Flags::Take(const std::string& name) {
  auto it = values_.find(name);
  if (it == values_.end()) return std::nullopt;
  std::string v = it->second;
  values_.erase(it);
  return v;
}

void Flags::Bad(const std::string& name, const std::string& v) {
  std::cerr << "pageowner-bench: bad value for --" << name << ": " << v << "\n";
  std::exit(2);
}

namespace {

testing::DaemonOptions BenchDaemonOptions(const std::string& memory, bool time_v,
                                          const std::vector<std::string>& extra) {
  testing::DaemonOptions o;
  o.flags = {"--memory=" + memory};
  o.flags.insert(o.flags.end(), extra.begin(), extra.end());
  if (time_v) o.wrapper = {"/usr/bin/time", "-v"};
  o.echo_stderr_prefix = "[pageownerd] ";
  return o;
}

}  // namespace

Daemon::Daemon(const std::string& memory, bool time_v, const std::vector<std::string>& extra)
    : process_(BinDir() + "/pageownerd", BenchDaemonOptions(memory, time_v, extra)) {
  if (process_.address().empty()) {
    std::cerr << "pageowner-bench: pageownerd did not start\n";
    std::exit(1);
  }
  std::cerr << "pageowner-bench: pageownerd pid " << process_.pid() << " on " << address() << "\n";
}

}  // namespace pageowner::bench
