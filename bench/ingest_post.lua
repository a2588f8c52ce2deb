-- wrk script: POST /api/v1/applications/run for a trivial application.
-- Set AUTH (base64 user:pass) and APP in the environment.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Basic " .. os.getenv("AUTH")
local app = os.getenv("APP") or "integration_template"
local n = 0
request = function()
  n = n + 1
  return wrk.format(nil, nil, nil, '{"name": "' .. app .. '", "params": {"message": "event ' .. n .. '"}}')
end
