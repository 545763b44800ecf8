-- wrk script for bench/sim_throughput.sh: OA template sends to wxsim, one openid per request.
--
-- Every request is a valid typed-template send for TPL_ORDER (thing1, amount2, time3,
-- character_string4) to a new openid (`oBench<thread>x<n>`), so each one runs the token check,
-- JSON parsing, keyword validation, the follower check, fingerprinting and the delivery log.
-- The path (with the access token) comes from the URL on wrk's command line.
--
-- wrk shares the 2 CPUs with wxsim, so the per-request Lua is kept lean: one string.format for
-- the body and one concatenation for the request, instead of wrk.format's header loop (about
-- 1.3 us less wrk CPU per request). There is deliberately no `response` callback either:
-- defining one makes wrk hand every reply to Lua. The shell script checks correctness afterwards
-- from /_sim/stats/wxdemo_oa instead (every request accepted, none rejected).

local next_id = 0

function setup(thread)
  thread:set("tid", next_id)
  next_id = next_id + 1
end

local counter = 0
local head, body_fmt
local format = string.format

function init(args)
  head = "POST " .. wrk.path .. " HTTP/1.1\r\nHost: " .. wrk.headers["Host"] ..
    "\r\nContent-Type: application/json\r\nContent-Length: "
  body_fmt = '{"touser":"oBench' .. tostring(tid) .. 'x%d","template_id":"TPL_ORDER",' ..
    '"url":"https://example.com/orders/%d","data":{"thing1":{"value":"Order shipped"},' ..
    '"amount2":{"value":"¥9.90"},"time3":{"value":"15:01"},' ..
    '"character_string4":{"value":"SN%d"}}}'
end

function request()
  counter = counter + 1
  local body = format(body_fmt, counter, counter, counter)
  return head .. #body .. "\r\n\r\n" .. body
end

-- One machine-readable line for the shell script (latencies in microseconds).
function done(summary, latency, requests)
  local e = summary.errors
  io.write(format(
    "BENCH_RESULT requests=%d duration_us=%d p50_us=%d p90_us=%d p99_us=%d max_us=%d " ..
    "err_connect=%d err_read=%d err_write=%d err_status=%d err_timeout=%d\n",
    summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    e.connect, e.read, e.write, e.status, e.timeout))
end
