-- Argo CD health check for szal.dev/Workflow (docs/argocd.md).
-- Written for argocd-cm's default sandbox: no string library.
--
-- A Workflow is a definition; nothing runs until a WorkflowRun names it.
-- Its status holds only what the operator derives from the spec
-- (stepCount, observedGeneration): the operator writes them for every
-- generation it can read. So:
--
--   status.observedGeneration == metadata.generation   Healthy "<n> steps"
--   no status, or observedGeneration behind            Progressing
--
-- A spec the operator cannot read is refused by the admission webhook; with
-- the webhook off, such a Workflow is never observed and stays Progressing
-- (and a run of it fails with reason InvalidWorkflow: Degraded).
local hs = {}
local generation = obj.metadata.generation
local status = obj.status

if status == nil or status.observedGeneration == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator"
  return hs
end

if generation ~= nil and status.observedGeneration < generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. generation
    .. " (status is of generation " .. status.observedGeneration .. ")"
  return hs
end

hs.status = "Healthy"
if status.stepCount == 1 then
  hs.message = "1 step"
elseif status.stepCount ~= nil then
  hs.message = status.stepCount .. " steps"
else
  hs.message = "Observed generation " .. status.observedGeneration
end
return hs
