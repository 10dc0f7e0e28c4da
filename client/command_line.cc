// The command table and the command line: `pageowner help`'s text, ParseCommandLine shaping argv
// by the table, and Dispatch running a parsed line through its command's parse and run steps.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "client/cli_checks.h"
#include "client/cmd_app_record.h"
#include "client/command.h"
#include "client/commands.h"
#include "client/credentials.h"
#include "core/strings.h"

namespace pageowner::cli {
namespace {

const Command& HelpCommand() {
  static const auto* const kCommand = new Command{
      .name = "help",
      .synopsis = "help",
      .summary = "this text",
      .min_positional = 0,
      .max_positional = 1,
      .flags = {},
      .parse = nullptr,
  };
  return *kCommand;
}

const std::vector<const Command*>& Commands() {
  static const auto* const kCommands = new std::vector<const Command*>{
      &PageCommand(),   &StackCommand(), &StacksCommand(),   &DumpCommand(),
      &ImportCommand(), &SortCommand(),  &StatsCommand(),    &ReplayCommand(),
      &LoadCommand(),   &ResetCommand(), &SnapshotCommand(), &TrackingCommand(),
      &RecordCommand(), &TokenCommand(), &PprofCommand(),    &HelpCommand(),
  };
  return *kCommands;
}

const Command* FindCommand(std::string_view name) {
  for (const Command* c : Commands()) {
    if (c->name == name) return c;
  }
  return nullptr;
}

const FlagSpec* FindFlag(const Command& c, std::string_view name) {
  for (const FlagSpec& f : c.flags) {
    if (f.name == name) return &f;
  }
  return nullptr;
}

// "unknown command 'stat' (did you mean 'stats'?)".
std::string UnknownCommandMessage(std::string_view name) {
  std::vector<std::string_view> names;
  for (const Command* c : Commands()) names.push_back(c->name);
  const std::string nearest = NearestName(name, names);
  return absl::StrCat("unknown command '", Sv(name), "'",
                      nearest.empty() ? "" : absl::StrCat(" (did you mean '", nearest, "'?)"));
}

absl::Status UsageStatus(std::string_view command, std::string_view message) {
  return absl::InvalidArgumentError(absl::StrCat(Sv(message), "\n", UsageHint(command)));
}

// One "--name[=value]" at args[*i] (taking the value from the next argument when the flag needs
// one), into line->server or line->flags. `spec` is null before the command.
absl::Status ParseFlag(const std::vector<std::string>& args, size_t* i, const Command* spec,
                       CommandLine* line) {
  const std::string_view cmd = spec ? spec->name : "";
  std::string name = args[*i].substr(2);
  std::optional<std::string> value;
  if (size_t eq = name.find('='); eq != std::string::npos) {
    value = name.substr(eq + 1);
    name.resize(eq);
  }
  const FlagSpec* f = spec ? FindFlag(*spec, name) : nullptr;
  std::string* connection = client::ConnectionFlag(&line->connection, name);
  const bool is_server = name == "server" || connection != nullptr;
  if (f == nullptr && !is_server) {
    return UsageStatus(cmd, spec ? absl::StrCat("unknown flag --", name, " for ", Sv(cmd))
                                 : absl::StrCat("unknown flag --", name));
  }
  if (!is_server && !f->takes_value) {
    if (value && *value != "true" && *value != "false") {
      return UsageStatus(cmd, absl::StrCat("flag --", name, " takes no value (or true|false)"));
    }
    if (!value || *value == "true") line->flags.emplace_back(name, "true");
    return absl::OkStatus();
  }
  if (!value) {
    if (*i + 1 >= args.size())
      return UsageStatus(cmd, absl::StrCat("flag --", name, " needs a value"));
    value = args[++*i];
  }
  if (!is_server) {
    line->flags.emplace_back(name, *value);
  } else if (value->empty()) {
    return UsageStatus(cmd, connection != nullptr ? absl::StrCat("flag --", name, " needs a FILE")
                                                  : "flag --server needs HOST:PORT");
  } else if (connection != nullptr) {
    *connection = *value;
  } else {
    line->server = *value;
  }
  return absl::OkStatus();
}

// The checks once every argument is read: help wins, then a command and its positional count.
absl::StatusOr<CommandLine> Finish(CommandLine line, const Command* spec, bool help) {
  if (help || (spec != nullptr && spec->name == "help")) {
    line.command = "help";
    line.positional.clear();
    line.flags.clear();
    return line;
  }
  if (spec == nullptr) return UsageStatus("", "no command given");
  if (line.positional.size() < spec->min_positional) {
    return UsageStatus(spec->name, absl::StrCat(Sv(spec->name), ": missing argument"));
  }
  if (line.positional.size() > spec->max_positional) {
    return UsageStatus(spec->name, absl::StrCat(Sv(spec->name), ": unexpected argument '",
                                                line.positional[spec->max_positional], "'"));
  }
  return line;
}

}  // namespace

std::string Usage() {
  std::string out =
      "usage: pageowner [--server=HOST:PORT] COMMAND [ARGS]\n"
      "\n"
      "Asks a pageownerd daemon who owns the pages of its simulated machine, in the Linux\n"
      "kernel's page_owner formats, and feeds it events.\n"
      "\n"
      "commands:\n";
  for (const Command* c : Commands()) {
    absl::StrAppend(&out, "  ", Sv(c->synopsis), "\n");
    for (absl::string_view line : absl::StrSplit(Sv(c->summary), '\n')) {
      absl::StrAppend(&out, "      ", line, "\n");
    }
  }
  absl::StrAppend(
      &out,
      "\n"
      "flags:\n"
      "  --server=HOST:PORT   the daemon (default ",
      Sv(kDefaultServer),
      "; HOST alone:\n"
      "                       port 50051; not a URL)\n"
      "  --tls_ca=FILE        TLS: the CA that signed the daemon's certificate "
      "(PAGEOWNER_TLS_CA)\n"
      "  --tls_cert=FILE, --tls_key=FILE\n"
      "                       mutual TLS: this client's certificate and key (PAGEOWNER_TLS_CERT,\n"
      "                       PAGEOWNER_TLS_KEY)\n"
      "  --token_file=FILE    a file holding the token sent with every call "
      "(PAGEOWNER_TOKEN_FILE)\n"
      "  --help, -h           this text\n"
      "  --version            the version of this build\n"
      "  --batch N            replay, load, import: events a batch on the stream (default\n"
      "                       4096; above the daemon's --max_batch_events, batches of that)\n"
      "\n"
      "Numbers are decimal or 0x hex.\n"
      "\n"
      "--json: the proto's field names; bytes (comm, symbols, texts) as strings, valid UTF-8 as\n"
      "is and every other byte (and the backslash) as \\xHH; 64-bit integers as numbers up to\n"
      "2^53, above as decimal strings; ip, page_flags and content_id as \"0x...\" strings.\n"
      "\n"
      "Exit codes, the same for every command:\n"
      "  0    everything printed, every event or block applied\n"
      "  1    an rpc failed, or the daemon refused something (even one event of many)\n"
      "  2    bad usage, or an input with nothing usable in it (a directory, no valid line)\n"
      "  3    the output could not be written (a full disk, a closed pipe)\n"
      "  130  interrupted (Ctrl-C), after printing what was sent and applied\n");
  return out;
}

std::string UsageHint(std::string_view command) {
  if (const Command* c = FindCommand(command); c != nullptr && command != "help") {
    return absl::StrCat("usage: pageowner [--server=HOST:PORT] ", Sv(c->synopsis),
                        " ('pageowner help' lists all commands)");
  }
  std::vector<absl::string_view> names;
  for (const Command* c : Commands()) names.push_back(Sv(c->name));
  return absl::StrCat("usage: pageowner [--server=HOST:PORT] COMMAND [ARGS], COMMAND one of ",
                      absl::StrJoin(names, " "), " ('pageowner help' for more)");
}

absl::StatusOr<CommandLine> ParseCommandLine(const std::vector<std::string>& args) {
  CommandLine line;
  const Command* spec = nullptr;
  bool help = false;
  bool version = false;
  bool only_positional = false;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    // sort passes page_owner_sort's options through; only --server, the connection flags and
    // --format are ours.
    if (spec != nullptr && spec->name == "sort" && a.rfind("--server", 0) != 0 &&
        a.rfind("--tls_", 0) != 0 && a.rfind("--token_file", 0) != 0 &&
        a.rfind("--format", 0) != 0 && a != "--help" && a != "-h") {
      line.positional.push_back(a);
      continue;
    }
    if (!only_positional && (a == "--help" || a == "-h")) {
      help = true;
      continue;
    }
    if (!only_positional && a == "--version") {
      version = true;
      continue;
    }
    if (!only_positional && a == "--" && spec != nullptr) {
      only_positional = true;
      continue;
    }
    if (!only_positional && a.size() > 2 && a.rfind("--", 0) == 0) {
      if (absl::Status s = ParseFlag(args, &i, spec, &line); !s.ok()) return s;
      continue;
    }
    // A one-letter flag the command declares ("-o FILE" of pprof) is its "--o".
    if (!only_positional && spec != nullptr && a.size() == 2 && a[0] == '-' &&
        FindFlag(*spec, a.substr(1)) != nullptr) {
      std::vector<std::string> long_form = args;
      long_form[i] = absl::StrCat("-", a);
      if (absl::Status s = ParseFlag(long_form, &i, spec, &line); !s.ok()) return s;
      continue;
    }
    // "-" is stdin and "-5" a (bad) number, for the value checks to report.
    const bool negative_number = a.size() > 1 && a[0] == '-' && a[1] >= '0' && a[1] <= '9';
    if (!only_positional && a.size() > 1 && a[0] == '-' && !negative_number) {
      return UsageStatus(spec ? spec->name : "", absl::StrCat("unknown flag ", a));
    }
    if (spec == nullptr) {
      spec = FindCommand(a);
      if (spec == nullptr) return UsageStatus("", UnknownCommandMessage(a));
      line.command = a;
      continue;
    }
    line.positional.push_back(a);
  }
  if (version && !help) {
    line.command = "version";
    return line;
  }
  return Finish(std::move(line), spec, help);
}

int Dispatch(const CommandLine& line, Io io) {
  if (line.command == "help") {
    io.out << Usage();
    return FinishOutput(io, kExitOk);
  }
  if (line.command == "version") {
    io.out << VersionLine("pageowner") << "\n";
    return FinishOutput(io, kExitOk);
  }
  const Command* command = FindCommand(line.command);
  if (command == nullptr || !command->parse) {
    return UsageError(io, "", UnknownCommandMessage(line.command));
  }
  // Values are checked before anything is sent, so that bad usage never reaches the daemon.
  absl::StatusOr<Runner> run = command->parse(line);
  if (!run.ok()) return UsageError(io, line.command, std::string(run.status().message()));
  const absl::StatusOr<std::string> target = ServerTarget(line.server);
  if (!target.ok()) return UsageError(io, line.command, std::string(target.status().message()));
  io.server = *target;
  client::ConnectionOptions connection = line.connection;
  client::FillFromEnvironment(&connection);
  absl::StatusOr<std::shared_ptr<grpc::Channel>> channel = client::MakeChannel(*target, connection);
  if (!channel.ok()) return UsageError(io, line.command, std::string(channel.status().message()));
  client::Client client(*channel);
  return FinishOutput(io, (*run)(client, io));
}

}  // namespace pageowner::cli
