#include "dispatch.h"

#include <stdexcept>
#include <string>

namespace ternorm {

void throw_unsupported_isa(const char* caller, const char* family, Isa isa) {
  std::string supported;
  for (Isa s : supported_isas())
    supported += (supported.empty() ? "" : ", ") + std::string(isa_name(s));
  throw std::invalid_argument(std::string(caller) + ": ISA path '" + isa_name(isa) +
                              "' is not supported by this CPU or build (" + family +
                              " kernels; supported here: " + supported + ")");
}

}  // namespace ternorm
