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
-- Without it, BENCH_PATHS or BENCH_AGENTS, wrk sends one fixed request over and over (no Lua per
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
-- With BENCH_AGENTS set, every request carries a browser's User-Agent:
-- the families and systems readers use, their versions varied by the
-- request's number, so that a million requests bring thousands of
-- distinct agents (a parser's or a cache's memory shows under them),
-- with referrers and languages as readers send them.
local agents = {}
if (os.getenv("BENCH_AGENTS") or "") ~= "" then
   agents = {
      "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/1%d.0.%d.0 Safari/537.36",
      "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/1%d.%d Safari/605.1.15",
      "Mozilla/5.0 (X11; Linux x86_64; rv:1%d.0) Gecko/20100101 Firefox/1%d.0",
      "Mozilla/5.0 (iPhone; CPU iPhone OS 1%d_%d like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
      "Mozilla/5.0 (Linux; Android 1%d; SM-S9%dB) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Mobile Safari/537.36",
      "Mozilla/5.0 (iPad; CPU OS 1%d_%d like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
      "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36 Edg/1%d.0.%d.51",
      "Mozilla/5.0 (Linux; Android 1%d; SM-X7%d0) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
   }
end
local languages = { "en-US,en;q=0.9", "de-DE,de;q=0.8", "fr-FR", "es-ES,es", "ja-JP", "pt-BR", "nl", "zh-CN,zh;q=0.9" }
if (id_prefix and id_prefix ~= "") or #paths > 0 or #agents > 0 then
   local headers, n, prefix = {}, 0, nil
   function request()
      n = n + 1
      if id_prefix and id_prefix ~= "" then
         if prefix == nil then
            prefix = id_prefix .. "-" .. tostring(thread_no) .. "-"
         end
         headers["X-Request-Id"] = prefix .. n
      end
      if #agents > 0 then
         local agent = agents[n % #agents + 1]
         headers["User-Agent"] = string.format(agent, n % 30, math.floor(n / #agents) % 500)
         -- A Referer (40 sites, one in five hits none: on a counting
         -- route it names the page the hit came from) and the language
         -- the reader reads (one of 8).
         if n % 5 == 0 then
            headers["Referer"] = nil
         else
            headers["Referer"] = string.format("https://news%d.example/item?id=%d", n % 40, n)
         end
         headers["Accept-Language"] = languages[n % #languages + 1]
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
