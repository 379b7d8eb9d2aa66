-- wrk script for `make bench` (driven by bench/run.py through the environment).
--
--   BENCH_HEADERS     request headers, one "Name: value" per line (the token
--                     of a single-token variant is one of them)
--   BENCH_POOL        a file of tokens, one per line: each request carries the
--                     next one (round-robin) as "Authorization: Bearer <token>"
--   BENCH_POOL_START  index of the first token of the pool to send
--   BENCH_RESULT      where done() writes the run's summary as JSON
--
-- Without BENCH_POOL no request() function is defined, so wrk builds the
-- request once and sends it as is (its fast, static path).

local result_path = os.getenv("BENCH_RESULT")
local pool_path = os.getenv("BENCH_POOL")
local pool_start = tonumber(os.getenv("BENCH_POOL_START") or "0") or 0

for line in (os.getenv("BENCH_HEADERS") or ""):gmatch("[^\n]+") do
  local name, value = line:match("^([^:]+):%s*(.-)%s*$")
  if name then
    wrk.headers[name] = value
  end
end

if pool_path then
  local requests, count, next_index = {}, 0, 0

  -- Every request is formatted once, up front, so that the per-request work
  -- in wrk is a table lookup (wrk has a core of its own, but should stay far
  -- from being the bottleneck).
  function init(args)
    for token in io.lines(pool_path) do
      if #token > 0 then
        local headers = {}
        for name, value in pairs(wrk.headers) do
          headers[name] = value
        end
        headers["Authorization"] = "Bearer " .. token
        count = count + 1
        requests[count] = wrk.format(nil, nil, headers)
      end
    end
    assert(count > 0, "BENCH_POOL " .. pool_path .. " holds no token")
    next_index = pool_start % count
  end

  function request()
    next_index = next_index % count + 1
    return requests[next_index]
  end
end

-- Runs once, after the measurement, in wrk's main Lua state. Latencies in
-- microseconds.
function done(summary, latency, requests)
  if not result_path then
    return
  end
  local e = summary.errors
  local f = assert(io.open(result_path, "w"))
  f:write(string.format(
    '{"requests": %d, "duration_us": %d, "bytes": %d, ' ..
    '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, ' ..
    '"latency_us": {"mean": %.1f, "max": %d, "p50": %d, "p90": %d, "p99": %d, "p999": %d}}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean, latency.max,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency:percentile(99.9)))
  f:close()
end
