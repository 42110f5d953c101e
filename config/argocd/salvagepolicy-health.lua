-- Argo CD health for tote.dev/SalvagePolicy (installed as resource.customizations.health.tote.dev_SalvagePolicy).
-- Argo CD runs this with gopher-lua (Lua 5.1) and the object as the global `obj`; it returns {status, message}.
-- A policy's Ready condition says whether it is in force (docs/api-reference.md):
--   Ready=True                                  -> Healthy
--   Ready=False (then Stalled=True, same reason) -> Degraded, with the reason and the field at fault
--   no Ready yet, or status older than the spec -> Progressing (the controller has not checked this generation)
local hs = {}

local function findCondition(conditions, type)
  if conditions == nil then return nil end
  for _, condition in ipairs(conditions) do
    if condition.type == type then return condition end
  end
  return nil
end

local status = obj.status
local generation = obj.metadata and obj.metadata.generation
if status == nil or (generation ~= nil and (status.observedGeneration == nil or status.observedGeneration < generation)) then
  hs.status = "Progressing"
  hs.message = "Waiting for the tote controller to check the policy"
  return hs
end

local ready = findCondition(status.conditions, "Ready")
if ready == nil or ready.status == "Unknown" then
  hs.status = "Progressing"
  hs.message = "Waiting for the tote controller to check the policy"
elseif ready.status == "True" then
  hs.status = "Healthy"
  hs.message = ready.message or "policy is in force"
else
  hs.status = "Degraded"
  hs.message = (ready.reason or "NotReady") .. ": " .. (ready.message or "")
end
return hs
