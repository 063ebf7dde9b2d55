// Prometheus text-format metrics of the server: requests by route and status, latencies, and the
// scheduler's queue, batch, token and KV-cache figures.
#pragma once

#include <map>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "engine/scheduler.h"

namespace llama31::server {

class Histogram {
 public:
  explicit Histogram(std::vector<double> bounds) : bounds_(std::move(bounds)), counts_(bounds_.size() + 1, 0) {}
  void observe(double v);
  // Lines "<name>_bucket{le=..} n", _sum and _count.
  std::string render(const std::string& name) const;

 private:
  std::vector<double> bounds_;
  std::vector<unsigned long long> counts_;
  double sum_ = 0;
  unsigned long long count_ = 0;
};

class Metrics {
 public:
  Metrics();
  void count_request(const std::string& route, int status);
  void observe_time_to_first_token(double seconds);
  void observe_inter_token_latency(double seconds);
  std::string render(const SchedulerStats& stats) const;

 private:
  mutable std::mutex mutex_;
  std::map<std::pair<std::string, int>, unsigned long long> requests_;
  Histogram ttft_;
  Histogram itl_;
};

}  // namespace llama31::server
