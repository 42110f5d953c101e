-- Argo CD health for tote.dev/SalvageRecord (installed as resource.customizations.health.tote.dev_SalvageRecord).
-- Argo CD runs this with gopher-lua (Lua 5.1) and the object as the global `obj`; it returns {status, message}.
-- The record's phase is the summary its state machine keeps (docs/architecture.md):
--   Completed                            -> Healthy      (the image is on the target node)
--   Failed, NotActionable, Skipped       -> Degraded     (final: tote will not carry this request out by itself)
--   Pending ... Pushing, or no phase yet -> Progressing  (the controller is working on it)
-- A status written for an older spec (observedGeneration behind generation) is Progressing too: it says nothing yet
-- about the spec Argo CD applied.
local hs = {}

local inFlight = {
  Pending = true, Resolving = true, Locating = true, Transferring = true,
  Importing = true, Restarting = true, Pushing = true,
}
local degraded = { Failed = true, NotActionable = true, Skipped = true }

local status = obj.status
local generation = obj.metadata and obj.metadata.generation
if status == nil or status.phase == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the tote controller to take up the record"
  return hs
end
if generation ~= nil and (status.observedGeneration == nil or status.observedGeneration < generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for the tote controller to observe generation " .. tostring(generation)
  return hs
end

local phase = status.phase
local detail = status.message or ""
if detail ~= "" then detail = ": " .. detail end
if phase == "Completed" then
  hs.status = "Healthy"
elseif degraded[phase] then
  hs.status = "Degraded"
elseif inFlight[phase] then
  hs.status = "Progressing"
else
  hs.status = "Unknown"
end
hs.message = phase .. detail
return hs
