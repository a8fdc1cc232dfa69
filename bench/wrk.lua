-- bench/wrk.lua: loaded by bench/run.sh into every wrk run.
-- done() prints one machine-readable line, "JGBENCH key=value ...", that run.sh parses.
-- With WRK_TOKENS=<file> (one JWT a line), each request carries "Authorization: Bearer <next token>",
-- every thread starting at a different place in the file (cache-miss runs). Without it, request() is
-- left undefined so wrk keeps its pre-built request and pays no Lua call per request.

local thread_count = 0

function setup(thread)
	thread:set("thread_index", thread_count)
	thread_count = thread_count + 1
end

local token_file = os.getenv("WRK_TOKENS")
if token_file ~= nil and token_file ~= "" then
	local tokens = {}
	local pos = 0

	function init(args)
		for line in io.lines(token_file) do
			if #line > 0 then
				tokens[#tokens + 1] = "Bearer " .. line
			end
		end
		if #tokens == 0 then
			error("no tokens in " .. token_file)
		end
		pos = ((thread_index or 0) * math.floor(#tokens / 4)) % #tokens
	end

	function request()
		pos = pos % #tokens + 1
		wrk.headers["Authorization"] = tokens[pos]
		return wrk.format()
	end
end

-- With WRK_BODY_BYTES=N every request is a POST with an N-byte body: with Content-Length, or with
-- WRK_BODY_CHUNK=M (M > 0) chunked in M-byte chunks (bench/run-body.sh uploads). The request is built
-- once in init() and request() returns it as it is.
local body_bytes = tonumber(os.getenv("WRK_BODY_BYTES") or "")
if body_bytes ~= nil and body_bytes > 0 and (token_file == nil or token_file == "") then
	local req

	function init(args)
		local body = string.rep("x", body_bytes)
		local chunk = tonumber(os.getenv("WRK_BODY_CHUNK") or "") or 0
		if chunk > 0 then
			local parts = {}
			for off = 1, body_bytes, chunk do
				local piece = body:sub(off, off + chunk - 1)
				parts[#parts + 1] = string.format("%x\r\n%s\r\n", #piece, piece)
			end
			parts[#parts + 1] = "0\r\n\r\n"
			wrk.headers["Transfer-Encoding"] = "chunked"
			req = wrk.format("POST", nil, nil, nil) .. table.concat(parts)
		else
			req = wrk.format("POST", nil, nil, body)
		end
	end

	function request()
		return req
	end
end

function done(summary, latency, requests)
	local secs = summary.duration / 1e6
	local e = summary.errors
	io.write(string.format(
		"JGBENCH requests=%d duration_s=%.3f rps=%.1f p50_us=%d p99_us=%d non2xx=%d errors=%d\n",
		summary.requests, secs, summary.requests / secs, latency:percentile(50), latency:percentile(99),
		e.status, e.connect + e.read + e.write + e.timeout))
end
