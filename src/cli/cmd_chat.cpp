// Placeholder: the chat subcommand is being written.
#include "cli/commands.h"

namespace llama31::cli {

void add_chat_command(CLI::App& app) { app.add_subcommand("chat", "(not yet available)"); }

}  // namespace llama31::cli
