-- wrk script: GET /v1/resources searches over a generated catalog (see bench-resources.sh).
-- Rotates through searches of every shape a person or a script sends: text, labels, kind,
-- a first page with nothing narrowed, and a later page.
local searches = {
  "/v1/resources?q=payments",
  "/v1/resources?label=env=prod",
  "/v1/resources?kind=postgres&label=team=payments",
  "/v1/resources?q=pg-payments-0",
  "/v1/resources?limit=20",
  "/v1/resources?q=ledger&limit=10",
  "/v1/resources?label=env=staging,team=payments",
  "/v1/resources?before=pg-payments-05000&limit=50",
  "/v1/resources?q=no-such-thing-at-all",
}
local tokens = { "gen-token-alice", "gen-token-bob", "gen-token-ledger-1" }
local counter = 0
request = function()
  counter = counter + 1
  local path = searches[(counter % #searches) + 1]
  local token = tokens[(math.floor(counter / #searches) % #tokens) + 1]
  return wrk.format("GET", path, { ["Authorization"] = "Bearer " .. token })
end
