// Placeholder: the guard subcommand is being written.
#include "cli/commands.h"

namespace llama31::cli {

void add_guard_command(CLI::App& app) { app.add_subcommand("guard", "(not yet available)"); }

}  // namespace llama31::cli
