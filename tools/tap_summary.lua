-- tap_summary.lua: reads busted's TAP output on stdin, echoes it, and ends with the line
-- "N passed, N failed" (plus ", N skipped"); exits non-zero when anything failed or when no
-- test ran (a crash before the plan, for instance).
local passed, failed, skipped, planned = 0, 0, 0, nil
for line in io.lines() do
  io.write(line, "\n")
  if line:match("^ok ") then
    if line:match("# SKIP") then skipped = skipped + 1 else passed = passed + 1 end
  elseif line:match("^not ok ") then
    failed = failed + 1
  elseif line:match("^1%.%.(%d+)") then
    planned = tonumber(line:match("^1%.%.(%d+)"))
  end
end
io.stdout:flush()
local total = passed + failed + skipped
if planned and total < planned then failed = failed + (planned - total) end
local summary = string.format("%d passed, %d failed", passed, failed)
if skipped > 0 then summary = summary .. string.format(", %d skipped", skipped) end
print(summary)
os.exit((failed == 0 and passed > 0 and planned ~= nil) and 0 or 1)
