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
-- The message: "<Phase>[ (<reason>)][: <progress> steps finished][ in
-- <duration>][; <status.message>]", the reason being the Succeeded
-- condition's when it differs from the phase (DeadlineExceeded,
-- WorkflowNotFound, InvalidWorkflow, ...).
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
if phase == nil and condition ~= nil then
  finished = condition.status == "True" or condition.status == "False"
end

local generation = obj.metadata.generation
local observed = status.observedGeneration
if not finished and generation ~= nil and (observed == nil or observed < generation) then
  hs.status = "Progressing"
  if observed == nil then
    hs.message = "Waiting for the operator to observe generation " .. generation
  else
    hs.message = "Waiting for the operator to observe generation " .. generation
      .. " (status is of generation " .. observed .. ")"
  end
  return hs
end

local text = status.message
if (text == nil or text == "") and condition ~= nil then
  text = condition.message
end

local parts = { phase or ("Succeeded=" .. tostring(condition.status)) }
if condition ~= nil and condition.reason ~= nil and condition.reason ~= ""
    and condition.reason ~= phase then
  table.insert(parts, " (" .. condition.reason .. ")")
end
if status.progress ~= nil and status.progress ~= "" then
  table.insert(parts, ": " .. status.progress .. " steps finished")
end
if finished and status.duration ~= nil and status.duration ~= "" then
  table.insert(parts, " in " .. status.duration)
end
if text ~= nil and text ~= "" then
  table.insert(parts, "; " .. text)
end

hs.status = health
hs.message = table.concat(parts)
return hs
