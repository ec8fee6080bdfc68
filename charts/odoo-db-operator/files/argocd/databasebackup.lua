-- Argo CD health check for DatabaseBackup (odoo.dbmanager.io), installed in argocd-cm as
-- resource.customizations.health.odoo.dbmanager.io_DatabaseBackup (docs/gitops.md).
-- Reads status.observedGeneration, the Ready, Reconciling and Stalled conditions, and the result the
-- backup Jobs write themselves (lastSuccessfulTime, lastFailure). Uses no string library (argocd-cm
-- scripts get base and table only).
local hs = {}

local function condition(conditionType)
  for _, c in ipairs(obj.status.conditions or {}) do
    if c.type == conditionType then
      return c
    end
  end
  return {}
end

local function explain(c)
  if c.message ~= nil and c.message ~= "" then
    if c.reason ~= nil and c.reason ~= "" then
      return c.reason .. ": " .. c.message
    end
    return c.message
  end
  return c.reason or ""
end

if obj.status == nil then
  hs.status = "Progressing"
  hs.message = "waiting for the operator to report a status"
  return hs
end

local generation = obj.metadata.generation
local observed = obj.status.observedGeneration
if generation ~= nil and (observed == nil or observed < generation) then
  hs.status = "Progressing"
  hs.message = "waiting for the operator to observe generation " .. generation
  return hs
end

local stalled = condition("Stalled")
if stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = explain(stalled)
  return hs
end

local spec = obj.spec or {}
if spec.suspend == true and spec.schedule ~= nil then
  hs.status = "Suspended"
  hs.message = "scheduled backups are suspended (spec.suspend)"
  return hs
end

-- The operator and the Jobs write both times as RFC 3339 UTC to the second, so string order is time order.
local failure = obj.status.lastFailure
local success = obj.status.lastSuccessfulTime
if failure ~= nil and failure.time ~= nil and (success == nil or failure.time > success) then
  hs.status = "Degraded"
  hs.message = "the last backup failed at " .. failure.time .. ": " .. (failure.message or "unknown error")
  return hs
end

local ready = condition("Ready")
if ready.status == "True" then
  hs.status = "Healthy"
  hs.message = ready.message or ""
  return hs
end

local reconciling = condition("Reconciling")
hs.status = "Progressing"
if reconciling.status == "True" then
  hs.message = explain(reconciling)
else
  hs.message = explain(ready)
end
return hs
