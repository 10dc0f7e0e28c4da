// What pageowner-bench's benchmarks share: their flags, the numbers and formats of their tables,
// and a pageownerd child to measure.
#ifndef PAGEOWNER_BENCH_BENCH_UTIL_H_
#define PAGEOWNER_BENCH_BENCH_UTIL_H_

#include <signal.h>

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "tests/support/daemon_process.h"

namespace pageowner::bench {

using Clock = std::chrono::steady_clock;

// Seconds since `t0`.
double Since(Clock::time_point t0);

// A field of /proc/PID/status ("VmRSS", "VmHWM") in bytes; 0 when absent. `pid` may be "self".
uint64_t StatusBytes(const std::string& pid, const char* field);
uint64_t RssBytes();  // this process's

// 1234567 -> "1,234,567".
std::string Commas(uint64_t v);
double Median(std::vector<double> v);
// The value at fraction `p` (0..1) of the sorted values; sorts *v.
double Percentile(std::vector<double>* v, double p);
// "/proc/loadavg"'s first three fields.
std::string LoadAverage();

// Pages in a "4GiB"-style size; exits 2 on a bad one.
uint64_t ParsePages(const std::string& text);

// "--name=value" or "--name value" flags; a bare "--name" is "true". Exits 2 on a bad value or
// an argument that is not a flag.
class Flags {
 public:
  Flags(int argc, char** argv);
  uint64_t Int(const std::string& name, uint64_t def);
  double Double(const std::string& name, double def);
  std::string String(const std::string& name, const std::string& def);
  bool Bool(const std::string& name);
  // Exits 2 when a flag was given that no one asked for.
  void CheckAllUsed();

 private:
  std::optional<std::string> Take(const std::string& name);
  [[noreturn]] static void Bad(const std::string& name, const std::string& v);
  std::map<std::string, std::string> values_;
};

// The directory of this binary, where pageownerd and pageowner are built too.
std::string BinDir();

// A pageownerd child (BinDir()'s) with `memory`, no metrics listener (several run at once here,
// and no benchmark reads one); its stderr copied to ours behind "[pageownerd] ". Stopped with
// SIGTERM at the end of its scope. Exits the benchmark with 1 when it does not start.
class Daemon {
 public:
  // `time_v`: run it under /usr/bin/time -v (which prints its report when the daemon exits);
  // `extra`: more flags.
  explicit Daemon(const std::string& memory, bool time_v = false,
                  const std::vector<std::string>& extra = {});
  bool alive() const { return process_.pid() > 0 && ::kill(process_.pid(), 0) == 0; }
  ~Daemon() { process_.Stop(); }

  const std::string& address() const { return process_.address(); }
  uint64_t rss() const { return StatusBytes(std::to_string(process_.pid()), "VmRSS"); }
  uint64_t hwm() const { return StatusBytes(std::to_string(process_.pid()), "VmHWM"); }

 private:
  testing::DaemonProcess process_;
};

// ---- The benchmarks, one file each ----

// Prints the usage on stderr; returns 2.
int Usage();
int MemoryBench(int argc, char** argv);  // memory_bench.cc
int IngestBench(Flags flags);            // ingest_bench.cc
int SoakBench(Flags flags);              // soak_bench.cc
int GetPageBench(Flags flags);           // getpage_bench.cc
int ListStacksBench(Flags flags);        // liststacks_bench.cc
int DumpBench(Flags flags);              // dump_bench.cc
int RssBench(Flags flags);               // rss_bench.cc
int DurabilityBench(Flags flags);        // durability_bench.cc

}  // namespace pageowner::bench

#endif  // PAGEOWNER_BENCH_BENCH_UTIL_H_
