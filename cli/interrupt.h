// Ctrl-C for long commands: while an InterruptStop lives, the first SIGINT asks the run to stop
// at its next safe point (through the flag handed to the simulation), a second one kills.
#pragma once

#include <signal.h>
#include <atomic>

namespace moesim::cli {

// The exit status of a run that a SIGINT stopped early (128 + SIGINT, as shells report it).
inline constexpr int kInterruptedExitCode = 130;

// Installs the SIGINT handler for its lifetime and restores the previous disposition after.
// The one piece of global mutable state in moesim lives behind it: the lock-free atomic flag the
// handler sets (a signal handler can reach nothing else; storing to a lock-free atomic is
// async-signal-safe). The handler is installed with SA_RESETHAND, so a second Ctrl-C meets the
// default action and kills at once. Not nestable: one at a time per process.
class InterruptStop {
 public:
  InterruptStop();
  ~InterruptStop();
  InterruptStop(const InterruptStop&) = delete;
  InterruptStop& operator=(const InterruptStop&) = delete;

  // The flag to pass down as SimulationOptions/SweepOptions::stop_requested.
  const std::atomic<bool>* token() const;
  bool requested() const { return token()->load(); }

 private:
  struct sigaction previous_ {};
};

}  // namespace moesim::cli
