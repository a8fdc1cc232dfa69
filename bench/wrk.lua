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

function done(summary, latency, requests)
	local secs = summary.duration / 1e6
	local e = summary.errors
	io.write(string.format(
		"JGBENCH requests=%d duration_s=%.3f rps=%.1f p50_us=%d p99_us=%d non2xx=%d errors=%d\n",
		summary.requests, secs, summary.requests / secs, latency:percentile(50), latency:percentile(99),
		e.status, e.connect + e.read + e.write + e.timeout))
end
