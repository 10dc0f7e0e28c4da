// The CLI's text renderers: what `page`, `stack`, `stacks` and `stats` print, in the kernel's
// formats where the kernel has one. Pure functions of what the daemon sent; dump's blocks are
// core's AppendPageOwnerBlock.
#ifndef PAGEOWNER_CLIENT_RENDER_H_
#define PAGEOWNER_CLIENT_RENDER_H_

#include <string>

#include "core/symbols.h"
#include "pageowner/v1/pageowner.pb.h"

namespace pageowner::cli {

// A page the way dump renders it when dump would print it, else dump_page_owner's lines.
std::string RenderPage(const v1::GetPageResponse& resp, const v1::Stack& alloc_stack);

// A stack's frames, then "handle:", "content_id:", "nr_base_pages:" and "allocations:" lines.
std::string RenderStack(const v1::Stack& stack);

// One show_stacks entry (show_stacks_handles' with `handles`, with our content_id and
// nr_base_pages lines under its closing "handle: H", so that hosts can be joined by content id
// with their numbers). With `allocations`, an "allocations: N" line (what --sort allocs sorts
// by) before the blank line. `symbols` collects the names of every stack rendered with it.
void AppendStacksEntry(const v1::Stack& stack, bool handles, bool allocations, SymbolTable* symbols,
                       std::string* out);

// Every counter as "name: value", a blank line, stackdepot/stats, and the mixed pageblocks.
std::string RenderStats(const v1::Stats& stats);

}  // namespace pageowner::cli

#endif  // PAGEOWNER_CLIENT_RENDER_H_
