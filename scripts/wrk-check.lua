-- wrk script: POST /v1/check for grants made by the seed generator.
-- Grant i belongs to user-(i % 10000) for read on resource-(i / 10000).
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer demo-svc"
local grants = tonumber(os.getenv("GRANTS") or "100000")
local counter = 0
request = function()
  counter = counter + 1
  local i = (counter * 7919) % grants
  local body = string.format('{"principal":"user-%d","resource":"resource-%d","action":"read"}', i % 10000, math.floor(i / 10000))
  return wrk.format(nil, nil, nil, body)
end
