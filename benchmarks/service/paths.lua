-- Cycles through the request paths listed (one per line) in the file named by env PATHS_FILE,
-- and prints latency percentiles and error counts as one JSON line when done, with the latency
-- at 1000 evenly spaced quantiles (µs) so that consecutive runs can be merged into one
-- distribution (reload_benchmark.py). With env DELAY_MS > 0 each connection waits that long
-- between a response and its next request (a bounded rate instead of as fast as possible).
local paths = {}
for line in io.lines(os.getenv("PATHS_FILE")) do paths[#paths + 1] = line end
local counter = 0
local delay_ms = tonumber(os.getenv("DELAY_MS") or "0")
if delay_ms > 0 then
  delay = function() return delay_ms end
end

request = function()
  counter = counter + 1
  return wrk.format("GET", paths[(counter % #paths) + 1])
end

done = function(summary, latency, requests)
  local errors = summary.errors.connect + summary.errors.read + summary.errors.write
    + summary.errors.status + summary.errors.timeout
  local quantiles = {}
  for k = 1, 1000 do quantiles[k] = string.format("%d", latency:percentile((k - 0.5) / 10)) end
  io.write(string.format(
    '{"requests": %d, "seconds": %.3f, "p50_ms": %.3f, "p95_ms": %.3f, "p99_ms": %.3f, "errors": %d, '
      .. '"quantiles_us": [%s]}\n',
    summary.requests, summary.duration / 1e6, latency:percentile(50) / 1000,
    latency:percentile(95) / 1000, latency:percentile(99) / 1000, errors, table.concat(quantiles, ",")))
end
