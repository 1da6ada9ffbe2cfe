-- The one wrk script of `make bench` (bench/run.py runs it for every row). Configured by
-- environment variables, read when wrk loads the script (before any thread starts):
--   BENCH_METHOD      GET or POST
--   BENCH_BODY        the request body (form-encoded); "{cred}" stands for a credential
--   BENCH_BEARER      "1": send each credential as "Authorization: Bearer <credential>"
--   BENCH_CREDS       a file of credentials, one a line; unset: every request is the same
--   BENCH_START       1-based line of the first credential this run may use
--   BENCH_SINGLE_USE  "1": each credential is used once (codes, refresh tokens); else they cycle
--   BENCH_THREADS     wrk's -t: thread i of n takes lines start+i, start+i+n, start+i+2n, ...
-- Fixed headers (Host, X-Forwarded-*, client authentication, Content-Type) come from wrk's -H.
-- done() prints one line, "BENCH_JSON {...}", that bench/run.py reads.

local body = os.getenv("BENCH_BODY") or ""
local bearer = os.getenv("BENCH_BEARER") == "1"
local creds_path = os.getenv("BENCH_CREDS") or ""
local start = tonumber(os.getenv("BENCH_START") or "1")
local single_use = os.getenv("BENCH_SINGLE_USE") == "1"
local nthreads = tonumber(os.getenv("BENCH_THREADS") or "1")

wrk.method = os.getenv("BENCH_METHOD") or "GET"
if body ~= "" then
  wrk.body = body
end

-- Main state: one entry per thread, to collect what each used in done().
local threads = {}

function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end

if creds_path ~= "" then
  -- A function named request makes wrk build every request anew (a "dynamic" script).
  local creds = {}
  local prefix, suffix = body, ""
  local at = string.find(body, "{cred}", 1, true)
  if at then
    prefix, suffix = string.sub(body, 1, at - 1), string.sub(body, at + 6)
  end
  local headers = {}
  used = 0
  exhausted = 0

  function init(args)
    for line in io.lines(creds_path) do
      creds[#creds + 1] = line
    end
    for name, value in pairs(wrk.headers) do
      headers[name] = value
    end
  end

  function request()
    local index = start + tid + used * nthreads
    used = used + 1
    if index > #creds then
      if single_use then
        -- Out of credentials: stop rather than present a used one; bench/run.py reports it.
        exhausted = 1
        wrk.thread:stop()
      end
      index = (index - 1) % #creds + 1
    end
    local cred = creds[index]
    if bearer then
      headers["Authorization"] = "Bearer " .. cred
      return wrk.format(nil, nil, headers, nil)
    end
    return wrk.format(nil, nil, headers, prefix .. cred .. suffix)
  end
end

function done(summary, latency, requests)
  local used_max, exhausted_any = 0, 0
  for _, thread in ipairs(threads) do
    used_max = math.max(used_max, tonumber(thread:get("used")) or 0)
    exhausted_any = math.max(exhausted_any, tonumber(thread:get("exhausted")) or 0)
  end
  local errors = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests": %d, "duration_us": %d, "p50_us": %.0f, "p99_us": %.0f, "connect": %d, "read": %d, '
      .. '"write": %d, "status": %d, "timeout": %d, "used": %d, "exhausted": %d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99), errors.connect, errors.read,
    errors.write, errors.status, errors.timeout, used_max, exhausted_any
  ))
end
