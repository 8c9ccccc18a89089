-- wrk script for bench/run.
--
-- Counts responses whose status is not 2xx (wrk itself only counts >= 400)
-- and prints one line that bench/run parses:
--
--   BENCH requests=… duration_us=… non2xx=… connect=… read=… write=…
--         timeout=… p50_us=… p90_us=… p99_us=… max_us=… mean_us=…
--
-- With BENCH_ID_PREFIX set, every request carries a new X-Request-Id:
-- the prefix (which bench/run makes new for each run), the wrk thread's
-- number and a counter, so no two requests of a bench/run share an id.
-- Without it or BENCH_PATHS, wrk sends one fixed request over and over (no Lua per
-- request).

local threads = {}

function setup(thread)
   table.insert(threads, thread)
   thread:set("thread_no", #threads)
end

local id_prefix = os.getenv("BENCH_ID_PREFIX")
-- With BENCH_PATHS set (paths separated by spaces), the requests go to
-- them in turn, each thread starting at its own place in the list.
local paths = {}
for p in string.gmatch(os.getenv("BENCH_PATHS") or "", "%S+") do
   table.insert(paths, p)
end
if (id_prefix and id_prefix ~= "") or #paths > 0 then
   local headers, n, prefix = {}, 0, nil
   function request()
      n = n + 1
      if id_prefix and id_prefix ~= "" then
         if prefix == nil then
            prefix = id_prefix .. "-" .. tostring(thread_no) .. "-"
         end
         headers["X-Request-Id"] = prefix .. n
      end
      local path = nil
      if #paths > 0 then
         path = paths[(n + thread_no) % #paths + 1]
      end
      return wrk.format(nil, path, headers)
   end
end

-- Per-thread state (each wrk thread has its own Lua state); done() reads
-- it back through the thread objects that setup() kept.
function init(args)
   non2xx = 0
end

function response(status, headers, body)
   if status < 200 or status > 299 then
      non2xx = non2xx + 1
   end
end

function done(summary, latency, requests)
   local bad = 0
   for _, t in ipairs(threads) do
      bad = bad + (t:get("non2xx") or 0)
   end
   local e = summary.errors
   io.write(string.format(
      "BENCH requests=%d duration_us=%d bytes=%d non2xx=%d connect=%d read=%d write=%d timeout=%d " ..
      "p50_us=%d p90_us=%d p99_us=%d max_us=%d mean_us=%.0f\n",
      summary.requests, summary.duration, summary.bytes, bad,
      e.connect, e.read, e.write, e.timeout,
      latency:percentile(50), latency:percentile(90), latency:percentile(99),
      latency.max, latency.mean))
end
