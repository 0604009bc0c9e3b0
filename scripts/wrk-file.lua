-- wrk script: file automatically approved requests (staging-db read, as alice), each with its
-- own reason; any answer but 201 is counted as an error.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer demo-alice"
local counter = 0
request = function()
  counter = counter + 1
  local body = string.format('{"resource":"staging-db","action":"read","duration":"1h","reason":"load %d"}', counter)
  return wrk.format(nil, nil, nil, body)
end
local refused = 0
response = function(status, headers, body)
  if status ~= 201 then
    refused = refused + 1
    if refused <= 3 then io.stderr:write("answer " .. status .. ": " .. body .. "\n") end
  end
end
done = function(summary, latency, requests)
  io.write(string.format("non-201 answers: %d\n", refused))
end
