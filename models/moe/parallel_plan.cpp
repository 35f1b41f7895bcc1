#include "models/moe/parallel_plan.h"

namespace moesim {

std::string plan_label(const ParallelPlan& p) {
  std::string s =
      "TP" + std::to_string(p.tp) + " EP" + std::to_string(p.ep) + " DP" + std::to_string(p.dp);
  if (p.pp > 1) s += " PP" + std::to_string(p.pp);
  return s;
}

}  // namespace moesim
