-- wrk script for `make bench-service`: the edge's API-key lookup, repeated.
--   SERVICE_TOKEN  the service token;  KEY_HASH  the SHA-256 of a valid key
--   BENCH_RESULT   where done() writes the run's summary as JSON
wrk.method = "POST"
wrk.body = '{"key_hash":"' .. os.getenv("KEY_HASH") .. '"}'
wrk.headers["content-type"] = "application/json"
wrk.headers["authorization"] = "Bearer " .. os.getenv("SERVICE_TOKEN")

function done(summary, latency, requests)
  local path = os.getenv("BENCH_RESULT")
  if not path then return end
  local f = io.open(path, "w")
  f:write(string.format(
    '{"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, "non2xx": %d, "errors": %d}',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    summary.errors.status, summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
  f:close()
end
