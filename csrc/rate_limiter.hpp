// Adaptive pacing of request attempts after throttling (503 SlowDown, 429): see RateLimiter.
#pragma once

#include <cstdint>
#include <mutex>

namespace awsio {

// Paces request attempts after throttling (503, 429): off until the first throttled reply, then
// multiplicative decrease and additive increase (awsio/s3/ratelimit.py is the Python backend's,
// with the same rule and constants). Shared by every engine of one client; thread-safe. Times
// are steady-clock seconds.
class RateLimiter {
 public:
  static constexpr double kBeta = 0.7, kRecoverS = 1.0, kProbe = 0.05, kRelease = 4.0, kMinRate = 1.0;
  // The time one attempt may be sent (now, unless pacing asks to wait); *generation: the pacing
  // generation to hand to throttled() if its reply is throttled.
  double reserve(int64_t* generation);
  // A throttled reply to an attempt paced in `generation`: cuts the rate unless a cut came since
  // (an attempt paced at the old rate is the congestion that cut answered).
  void throttled(int64_t generation);
  // A reply that was not throttled (measures what the server lets through).
  void succeeded();
  // The paced rate in requests per second, or -1 while not pacing.
  double rate();
  static double now();

 private:
  // Events per second over the current and the previous window of kWindowS.
  struct Window {
    static constexpr double kWindowS = 0.25;
    double start = RateLimiter::now();
    int64_t count = 0, prev = 0;
    void roll(double t);
    void add(double t);
    double per_s(double t);
  };
  double rate_at(double now) const;
  std::mutex mu_;
  bool limited_ = false;
  double peak_ = 0, cut_at_ = -1e300, next_free_ = 0;
  int64_t generation_ = 0;
  Window sent_, ok_;
};

}  // namespace awsio
