-- wrk script for bench/server_runs_bench.sh: RUNS run requests
-- (POST /api/v1/applications/run of APP) on -t1, then only slow GET /status
-- (one per connection every 50 ms, no runs). Prints to stderr
--   "server_runs_post generated=RUNS"          once the last run request is made
--   "server_runs_post accepted=A refused=R"    at exit (SIGINT), A = 202 answers
-- wrk sleeps for the whole -d duration whatever the threads do, so the bench
-- script interrupts it once the server is idle.
-- Environment: AUTH (base64 user:pass), APP, RUNS.
local app = os.getenv("APP") or "bench_ten_steps"
local runs = tonumber(os.getenv("RUNS") or "20000")
local auth = "Basic " .. os.getenv("AUTH")
local post_headers = {["Content-Type"] = "application/json", ["Authorization"] = auth}
local status_req = nil
local threads = {}
sent, accepted, refused = 0, 0, 0

setup = function(thread)
  table.insert(threads, thread)
end

request = function()
  if sent >= runs then
    status_req = status_req or wrk.format("GET", "/api/v1/status")
    return status_req
  end
  sent = sent + 1
  if sent == runs then
    io.stderr:write(string.format("server_runs_post generated=%d\n", runs))
  end
  return wrk.format("POST", "/api/v1/applications/run", post_headers,
                    '{"name": "' .. app .. '", "params": {"n": ' .. sent .. '}}')
end

delay = function()
  if sent >= runs then
    return 50
  end
  return 0
end

response = function(status, headers, body)
  if status == 202 then
    accepted = accepted + 1
  elseif status ~= 200 then
    refused = refused + 1
  end
end

done = function(summary, latency, requests)
  local a, r = 0, 0
  for _, t in ipairs(threads) do
    a = a + t:get("accepted")
    r = r + t:get("refused")
  end
  io.stderr:write(string.format("server_runs_post accepted=%d refused=%d\n", a, r))
end
