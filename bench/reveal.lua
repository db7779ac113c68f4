-- wrk script: card reveals spread over many users and orders.
--
--   BENCH_TARGETS=targets.txt [BENCH_DELAY_MS=n] wrk -s bench/reveal.lua URL
--
-- targets.txt: "token topup_id ..." a line (bench/node/seed.js). Every
-- request picks a random line: the session and the order change with
-- each request, so neither the database's nor anyone's caches see the
-- same row twice in a row. BENCH_DELAY_MS paces each connection: a
-- pause drawn uniformly from [0.5, 1.5] times that many milliseconds
-- before each request (wrk's delay()), so N connections send about
-- N * 1000 / BENCH_DELAY_MS requests a second at light load.
--
-- done() prints one line "BENCH_JSON {...}" with the counts and the
-- latency percentiles in microseconds.

local targets = os.getenv("BENCH_TARGETS")
local delay_ms = tonumber(os.getenv("BENCH_DELAY_MS") or "0") or 0

local threads = {}
local reqs = {}
local n = 0

function setup(thread)
   thread:set("tid", #threads + 1)
   table.insert(threads, thread)
end

function init(args)
   local f = assert(io.open(targets, "r"))

   for line in f:lines() do
      local token, id = line:match("^(%S+)%s+(%S+)")

      if token then
         n = n + 1
         reqs[n] = wrk.format("GET", "/api/internet-orders/" .. id .. "/card",
                              { ["Authorization"] = "Bearer " .. token,
                                ["User-Agent"] = "ocdz-bench/wrk",
                                ["Accept"] = "application/json" })
      end
   end

   f:close()
   assert(n > 0, "no targets in " .. targets)
   math.randomseed(os.time() * 1000 + (tid or 0) * 7919)
end

function request()
   return reqs[math.random(n)]
end

if delay_ms > 0 then
   function delay()
      return math.floor(delay_ms * (0.5 + math.random()))
   end
end

function done(summary, latency, requests)
   local e = summary.errors

   io.write(string.format(
      'BENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,' ..
      '"errors_connect":%d,"errors_read":%d,"errors_write":%d,' ..
      '"errors_status":%d,"errors_timeout":%d,"mean_us":%.1f,' ..
      '"p50_us":%d,"p90_us":%d,"p99_us":%d,"p999_us":%d,"max_us":%d}\n',
      summary.requests, summary.duration, summary.bytes,
      e.connect, e.read, e.write, e.status, e.timeout, latency.mean,
      latency:percentile(50), latency:percentile(90),
      latency:percentile(99), latency:percentile(99.9), latency.max))
end
