#define PCRE2_CODE_UNIT_WIDTH 8
#include "tokenizer/regex_splitter.h"

#include <pcre2.h>

#include "tokenizer/utf8.h"
#include "util/error.h"

namespace llama31 {

namespace {

std::string pcre2_message(int error_code) {
  PCRE2_UCHAR buffer[256];
  const int length = pcre2_get_error_message(error_code, buffer, sizeof(buffer));
  if (length < 0) return fmt::format("PCRE2 error {}", error_code);
  return std::string(reinterpret_cast<const char*>(buffer), static_cast<size_t>(length));
}

// Per-thread JIT stack: long whitespace runs make `\s+(?!\S)` backtrack deeper than PCRE2's
// default 32 KiB machine-stack allowance.
struct JitStack {
  pcre2_jit_stack* stack = nullptr;
  JitStack() { stack = pcre2_jit_stack_create(64 * 1024, 64 * 1024 * 1024, nullptr); }
  ~JitStack() {
    if (stack) pcre2_jit_stack_free(stack);
  }
  JitStack(const JitStack&) = delete;
  JitStack& operator=(const JitStack&) = delete;
};

struct MatchScratch {
  pcre2_match_data* data = nullptr;
  pcre2_match_context* context = nullptr;
  explicit MatchScratch(const pcre2_code* code) {
    data = pcre2_match_data_create(1, nullptr);  // only the whole match is read
    context = pcre2_match_context_create(nullptr);
    thread_local JitStack jit_stack;
    if (context && jit_stack.stack) pcre2_jit_stack_assign(context, nullptr, jit_stack.stack);
    (void)code;
  }
  ~MatchScratch() {
    pcre2_match_data_free(data);
    pcre2_match_context_free(context);
  }
  MatchScratch(const MatchScratch&) = delete;
  MatchScratch& operator=(const MatchScratch&) = delete;
};

}  // namespace

struct RegexSplitter::Compiled {
  std::string pattern;
  pcre2_code* code = nullptr;
  bool jit = false;
  ~Compiled() { pcre2_code_free(code); }
};

RegexSplitter::RegexSplitter(const std::string& pattern) : compiled_(std::make_unique<Compiled>()) {
  compiled_->pattern = pattern;
  int error_code = 0;
  PCRE2_SIZE error_offset = 0;
  compiled_->code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                                  PCRE2_UTF | PCRE2_UCP, &error_code, &error_offset, nullptr);
  if (!compiled_->code) {
    fail("pre-tokenizer regex {:?} does not compile at offset {}: {}", pattern, error_offset,
         pcre2_message(error_code));
  }
  compiled_->jit = pcre2_jit_compile(compiled_->code, PCRE2_JIT_COMPLETE) == 0;
}

RegexSplitter::~RegexSplitter() = default;
RegexSplitter::RegexSplitter(RegexSplitter&&) noexcept = default;
RegexSplitter& RegexSplitter::operator=(RegexSplitter&&) noexcept = default;

bool RegexSplitter::uses_jit() const { return compiled_->jit; }
const std::string& RegexSplitter::pattern() const { return compiled_->pattern; }

void RegexSplitter::split(std::string_view text, const std::function<void(std::string_view)>& on_piece) const {
  MatchScratch scratch(compiled_->code);
  if (!scratch.data || !scratch.context) fail("out of memory for PCRE2 match data");
  const auto subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  size_t piece_start = 0;  // start of text not yet handed out
  size_t search_from = 0;
  while (search_from < text.size()) {
    int rc = pcre2_match(compiled_->code, subject, text.size(), search_from, PCRE2_NO_UTF_CHECK, scratch.data,
                         scratch.context);
    if (rc == PCRE2_ERROR_JIT_STACKLIMIT) {
      // Retry once with the interpreter, which keeps its backtracking state on the heap.
      rc = pcre2_match(compiled_->code, subject, text.size(), search_from, PCRE2_NO_UTF_CHECK | PCRE2_NO_JIT,
                       scratch.data, scratch.context);
    }
    if (rc == PCRE2_ERROR_NOMATCH) break;
    if (rc < 0) {
      fail("pre-tokenizer regex failed at byte {} of a {}-byte text: {}", search_from, text.size(),
           pcre2_message(rc));
    }
    const PCRE2_SIZE* ovector = pcre2_get_ovector_pointer(scratch.data);
    const size_t match_start = ovector[0];
    const size_t match_end = ovector[1];
    if (match_end == match_start) {
      // An empty match yields no piece; step over one character.
      size_t length = utf8::sequence_length(text.substr(match_start));
      search_from = match_start + (length == 0 ? 1 : length);
      continue;
    }
    if (match_start > piece_start) on_piece(text.substr(piece_start, match_start - piece_start));
    on_piece(text.substr(match_start, match_end - match_start));
    piece_start = match_end;
    search_from = match_end;
  }
  if (piece_start < text.size()) on_piece(text.substr(piece_start));
}

}  // namespace llama31
