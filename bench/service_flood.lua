-- wrk script for `make bench-service`: the unauthenticated flood of issue 12,
-- wrong admin tokens on an admin route with a 60,000-character path.
--   FLOOD_PATH      the path;  BENCH_RESULT  where done() writes the run's summary as JSON
--   FLOOD_DELAY_MS  if set, each connection waits this long between its requests
--                   (16 connections and 16 ms: about 1,000 requests a second)
wrk.method = "POST"
local pause = tonumber(os.getenv("FLOOD_DELAY_MS") or "")
if pause then
  function delay()
    return pause
  end
end
wrk.path = os.getenv("FLOOD_PATH")
wrk.headers["authorization"] = "Bearer not-the-admin-token"

function done(summary, latency, requests)
  local path = os.getenv("BENCH_RESULT")
  if not path then return end
  local f = io.open(path, "w")
  f:write(string.format('{"requests": %d, "duration_us": %d, "non2xx": %d, "errors": %d}',
    summary.requests, summary.duration, summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
  f:close()
end
