-- Argo CD health check for szal.dev/WorkflowRun (docs/argocd.md).
-- Written for argocd-cm's default sandbox: base, table and os.time/os.date
-- only, no string library (string.format, s:find ... are not available).
--
--   no status yet                     Progressing  Waiting for the operator
--   Succeeded                         Healthy
--   Failed, RolledBack, Cancelled     Degraded
--   Paused (spec.suspend)             Suspended
--   Pending, Running, RollingBack     Progressing
--   any other phase                   the Succeeded condition decides
--                                     (True Healthy, False Degraded,
--                                     Unknown Progressing), else Unknown
--
-- A finished run is final: the operator never changes it again, so its
-- health ignores later spec edits. An unfinished run whose
-- status.observedGeneration is behind metadata.generation (suspend, resume
-- or cancel not yet seen by the operator) is Progressing until the operator
-- catches up, so Argo CD never reports a stale phase as current.
--
-- The message:
--   unfinished  <Phase>[ (<reason>)]: <progress> steps finished[; <text>][; <failed steps>]
--   finished    <Phase>[ (<reason>)] in <duration>: <n>/<all> steps succeeded[, <k> skipped][; <text>][; <failed steps>]
-- <reason> is the Succeeded condition's when it differs from the phase
-- (DeadlineExceeded, WorkflowNotFound, InvalidWorkflow, ...), <text> is
-- status.message (else the condition's), <failed steps> names up to three
-- Failed or TimedOut steps by name with their exit code and message.
local hs = {}

local HEALTH = {
  Succeeded = "Healthy",
  Failed = "Degraded",
  RolledBack = "Degraded",
  Cancelled = "Degraded",
  Paused = "Suspended",
  Pending = "Progressing",
  Running = "Progressing",
  RollingBack = "Progressing",
}
local TERMINAL = { Succeeded = true, Failed = true, RolledBack = true, Cancelled = true }
local BY_CONDITION = { True = "Healthy", False = "Degraded", Unknown = "Progressing" }
local SHOWN_FAILURES = 3

local function present(s)
  return s ~= nil and s ~= ""
end

local status = obj.status or {}
local phase = status.phase
local condition = nil
if status.conditions ~= nil then
  for _, c in ipairs(status.conditions) do
    if c.type == "Succeeded" then
      condition = c
      break
    end
  end
end
if phase == nil and condition == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator"
  return hs
end

local health = HEALTH[phase]
if health == nil and condition ~= nil then
  health = BY_CONDITION[condition.status]
end
if health == nil then
  hs.status = "Unknown"
  hs.message = "Unknown phase " .. tostring(phase)
  return hs
end

local finished = TERMINAL[phase] == true
if HEALTH[phase] == nil then
  finished = condition.status == "True" or condition.status == "False"
end

local generation = obj.metadata.generation
local observed = status.observedGeneration
if not finished and generation ~= nil and (observed == nil or observed < generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. generation
  if observed ~= nil then
    hs.message = hs.message .. " (status is of generation " .. observed .. ")"
  end
  return hs
end

-- The steps: counts, and the failed ones in name order (pairs has none).
local total, succeeded, skipped = 0, 0, 0
local failed = {}
if status.steps ~= nil then
  for name, step in pairs(status.steps) do
    total = total + 1
    if step.phase == "Succeeded" then
      succeeded = succeeded + 1
    elseif step.phase == "Skipped" then
      skipped = skipped + 1
    elseif step.phase == "Failed" or step.phase == "TimedOut" then
      table.insert(failed, name)
    end
  end
  table.sort(failed)
end

local parts = { phase or ("Succeeded=" .. tostring(condition.status)) }
if condition ~= nil and present(condition.reason) and condition.reason ~= phase then
  table.insert(parts, " (" .. condition.reason .. ")")
end
if finished then
  if present(status.duration) then
    table.insert(parts, " in " .. status.duration)
  end
  if total > 0 then
    table.insert(parts, ": " .. succeeded .. "/" .. total .. " steps succeeded")
    if skipped > 0 then
      table.insert(parts, ", " .. skipped .. " skipped")
    end
  elseif status.steps == nil and present(status.progress) then
    table.insert(parts, ": " .. status.progress .. " steps finished")
  end
elseif present(status.progress) then
  table.insert(parts, ": " .. status.progress .. " steps finished")
end

local text = status.message
if not present(text) and condition ~= nil then
  text = condition.message
end
if present(text) then
  table.insert(parts, "; " .. text)
end

for i, name in ipairs(failed) do
  if i > SHOWN_FAILURES then
    table.insert(parts, "; and " .. (#failed - SHOWN_FAILURES) .. " more failed")
    break
  end
  local step = status.steps[name]
  local detail = "; " .. name
  if step.phase == "TimedOut" then
    detail = detail .. " timed out"
  end
  if step.exitCode ~= nil then
    detail = detail .. " (exit code " .. step.exitCode .. ")"
  end
  if present(step.message) then
    detail = detail .. ": " .. step.message
  end
  table.insert(parts, detail)
end

hs.status = health
hs.message = table.concat(parts)
return hs
