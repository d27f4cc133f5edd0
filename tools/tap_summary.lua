-- tap_summary.lua: reads busted's TAP output on stdin (one run or several in a row), echoes
-- it, and ends with the line "N passed, N failed" (plus ", N skipped"); exits non-zero when
-- anything failed or when a run's tests did not all report (a crash before the plan, say).
-- Usage: busted -o TAP ... | lua5.4 tools/tap_summary.lua [number of runs expected, 1]
local expected_runs = tonumber(arg and arg[1]) or 1
local passed, failed, skipped, planned, runs = 0, 0, 0, nil, 0
for line in io.lines() do
  io.write(line, "\n")
  if line:match("^ok ") then
    if line:match("# SKIP") then skipped = skipped + 1 else passed = passed + 1 end
  elseif line:match("^not ok ") then
    failed = failed + 1
  elseif line:match("^1%.%.(%d+)") then
    planned = (planned or 0) + tonumber(line:match("^1%.%.(%d+)"))
    runs = runs + 1
  end
end
io.stdout:flush()
local total = passed + failed + skipped
if planned and total < planned then failed = failed + (planned - total) end
if runs < expected_runs then -- a run ended before its plan: count it as one failure at least
  print(string.format("# %d of %d test runs ended without a plan", expected_runs - runs,
    expected_runs))
  failed = failed + (expected_runs - runs)
end
local summary = string.format("%d passed, %d failed", passed, failed)
if skipped > 0 then summary = summary .. string.format(", %d skipped", skipped) end
print(summary)
os.exit((failed == 0 and passed > 0 and planned ~= nil) and 0 or 1)
