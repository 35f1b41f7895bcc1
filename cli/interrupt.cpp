#include "cli/interrupt.h"

#include <unistd.h>

namespace moesim::cli {
namespace {

// The signal handler's flag: the documented exception to "no global mutable state" (see
// interrupt.h). Only the handler stores to it and only through InterruptStop is it read.
std::atomic<bool> stop_requested_by_signal{false};
static_assert(std::atomic<bool>::is_always_lock_free, "the handler needs a lock-free flag");

void on_sigint(int) {
  stop_requested_by_signal.store(true);
  static constexpr char kNote[] =
      "\nmoesim: stopping at the next safe point (Ctrl-C again to kill)\n";
  // write(2) is async-signal-safe; its result does not matter here.
  [[maybe_unused]] const ssize_t written = ::write(STDERR_FILENO, kNote, sizeof kNote - 1);
}

}  // namespace

InterruptStop::InterruptStop() {
  stop_requested_by_signal.store(false);
  struct sigaction action {};
  action.sa_handler = on_sigint;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_RESETHAND | SA_RESTART;
  sigaction(SIGINT, &action, &previous_);
}

InterruptStop::~InterruptStop() {
  sigaction(SIGINT, &previous_, nullptr);
}

const std::atomic<bool>* InterruptStop::token() const {
  return &stop_requested_by_signal;
}

}  // namespace moesim::cli
