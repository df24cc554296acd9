// RateLimiter (rate_limiter.hpp): multiplicative decrease on throttling, linear climb back,
// additive probing; the same rule and constants as awsio/s3/ratelimit.py.
#include "rate_limiter.hpp"

#include <algorithm>
#include <chrono>

namespace awsio {

double RateLimiter::now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

double RateLimiter::rate_at(double t) const {
  const double dt = t - cut_at_, low = kBeta * peak_;
  if (dt < kRecoverS) return std::max(kMinRate, low + (peak_ - low) * dt / kRecoverS);
  return std::max(kMinRate, peak_ * (1.0 + kProbe * (dt - kRecoverS)));
}

void RateLimiter::Window::roll(double t) {
  if (t - start >= kWindowS) {
    prev = t - start >= 2 * kWindowS ? 0 : count;
    start = t;
    count = 0;
  }
}

void RateLimiter::Window::add(double t) {
  roll(t);
  count += 1;
}

double RateLimiter::Window::per_s(double t) {
  roll(t);
  const double span = t - start + (prev ? kWindowS : 0.0);
  return double(count + prev) / std::max(span, 1e-3);
}

double RateLimiter::reserve(int64_t* generation) {
  std::lock_guard<std::mutex> lock(mu_);
  const double t = now();
  *generation = generation_;
  if (!limited_) {
    sent_.add(t);
    return t;
  }
  const double r = rate_at(t);
  if (r >= kRelease * peak_) {
    limited_ = false;
    return t;
  }
  next_free_ = std::max(next_free_, t - 1.0 / r);  // no saved-up burst
  const double when = next_free_;
  next_free_ += 1.0 / r;
  return when;
}

void RateLimiter::throttled(int64_t generation) {
  std::lock_guard<std::mutex> lock(mu_);
  const double t = now();
  if (generation != generation_) return;
  double current = limited_ ? rate_at(t) : ok_.per_s(t);  // what the server let through,
  if (current <= 0) current = sent_.per_s(t);              // else what was sent
  peak_ = std::max(kMinRate, current);
  cut_at_ = t;
  generation_ += 1;
  limited_ = true;
  next_free_ = std::max(next_free_, t);
}

void RateLimiter::succeeded() {
  std::lock_guard<std::mutex> lock(mu_);
  if (!limited_) ok_.add(now());
}

double RateLimiter::rate() {
  std::lock_guard<std::mutex> lock(mu_);
  return limited_ ? rate_at(now()) : -1.0;
}

}  // namespace awsio
