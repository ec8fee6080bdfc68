-- Argo CD health check for DomainMapping (odoo.dbmanager.io), installed in argocd-cm as
-- resource.customizations.health.odoo.dbmanager.io_DomainMapping (docs/gitops.md).
-- Reads only what the operator publishes: status.observedGeneration and the Ready, Reconciling and
-- Stalled conditions. Uses no string library (argocd-cm scripts get base and table only).
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

local ready = condition("Ready")
if ready.status == "True" then
  -- Routed to a database whose app is scaled to 0 (spec.app.suspended): the route is kept, nothing serves.
  if ready.reason == "Suspended" then
    hs.status = "Suspended"
  else
    hs.status = "Healthy"
  end
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
