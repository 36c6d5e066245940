// Error-message text for the format readers and writers: one home for the
// "concatenate anything streamable" helper their one-line errors are built with.
#pragma once
#include <sstream>
#include <string>

namespace ternorm::io {

template <typename... Args>
std::string cat(const Args&... args) {
  std::ostringstream os;
  (os << ... << args);
  return os.str();
}

}  // namespace ternorm::io
