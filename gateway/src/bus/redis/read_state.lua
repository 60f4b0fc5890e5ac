-- The keyed state (see publish.lua), read atomically with where the
-- history stands: every event in it is at or before the returned id, and
-- every event after it reaches the node through the stream, so a node
-- loading it and then following the stream from that id misses nothing
-- and applies nothing twice.
--
-- KEYS[1]  the history stream; KEYS[2] its epoch
--
-- Returns {epoch or nil, last-generated-id or nil, {event, ...}}: each event
-- the latest of its key, as published live (with its id).
local epoch = redis.call('GET', KEYS[2])
if (not epoch) or redis.call('EXISTS', KEYS[1]) == 0 then
  return {epoch, false, {}}
end
local last = '0-0'
local raw = redis.call('XINFO', 'STREAM', KEYS[1])
for i = 1, #raw, 2 do
  if raw[i] == 'last-generated-id' then
    last = raw[i + 1]
  end
end
local tag = string.match(KEYS[2], '^(.*):epoch$')
local events = {}
for _, kind in ipairs(redis.call('SMEMBERS', tag .. ':keyed')) do
  for _, event in ipairs(redis.call('HVALS', tag .. ':state:' .. kind)) do
    events[#events + 1] = event
  end
end
return {epoch, last, events}
