// Placeholder: the serve subcommand is being written.
#include "cli/commands.h"

namespace llama31::cli {

void add_serve_command(CLI::App& app) { app.add_subcommand("serve", "(not yet available)"); }

}  // namespace llama31::cli
