-- wrk script for benches/token.sh: every request is the same token request,
-- a POST to the URL's path with client_secret_basic, and every answer
-- that is not 200 is counted. wrk's own "Non-2xx or 3xx" count would let a 3xx
-- through; this one does not.
--
-- Environment:
--   BENCH_AUTH  the whole Authorization header value, "Basic ..." (required)
--   BENCH_BODY  the form body (default grant_type=client_credentials)
--
-- At the end it prints `non-200 responses: N` (and the first such status),
-- which token.sh reads. It never prints the credentials.

local auth = os.getenv("BENCH_AUTH")
if auth == nil or auth == "" then
    error("BENCH_AUTH (the Authorization header value) is required")
end

wrk.method = "POST"
wrk.body = os.getenv("BENCH_BODY") or "grant_type=client_credentials"
wrk.headers["Authorization"] = auth
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"

-- Every thread has its own Lua state; `done` sums their counters.
local threads = {}

function setup(thread)
    table.insert(threads, thread)
end

function init(args)
    non200 = 0
    first_status = 0
end

function response(status, headers, body)
    if status ~= 200 then
        non200 = non200 + 1
        if first_status == 0 then
            first_status = status
        end
    end
end

function done(summary, latency, requests)
    local total, first = 0, 0
    for _, thread in ipairs(threads) do
        total = total + thread:get("non200")
        if first == 0 then
            first = thread:get("first_status")
        end
    end
    io.write(string.format("non-200 responses: %d\n", total))
    if first ~= 0 then
        io.write(string.format("first non-200 status: %d\n", first))
    end
end
