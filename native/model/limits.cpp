#include "limits.h"

#include <cstdio>

namespace ternorm::limits {

namespace {
std::string number(double v) {
  if (v == kFloatMax) return "3.4e38";
  if (v == kPow2_40) return "2^40";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.9g", v);
  return buf;
}

std::string range_of(const Limit& l, double max) {
  if (l.integer) return "an integer in " + number(l.min) + ".." + number(max);
  return std::string("a number in ") + (l.min_open ? "(" : "[") + number(l.min) + ", " +
         number(max) + (l.max_open ? ")" : "]");
}
}  // namespace

std::string Limit::range() const { return range_of(*this, max); }

void check(const Limit& l, double v, double max, const char* where) {
  Limit bounded = l;
  if (max < bounded.max) {
    bounded.max = max;
    bounded.max_open = false;
  }
  if (!bounded.contains(v))
    throw std::invalid_argument(std::string(where) + "." + l.name + " must be " +
                                range_of(bounded, bounded.max) + ", got " + number(v));
}

void check(const Limit& l, double v, const char* where) { check(l, v, l.max, where); }

}  // namespace ternorm::limits
