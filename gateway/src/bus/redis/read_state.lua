-- Where the history stands, for a node about to load the keyed state (see
-- publish.lua): the epoch, the stream's last id, and the types that have
-- state. The node then reads each type's hash page by page (HSCAN), so
-- Redis never sends a large state in one call; what is published while it
-- reads reaches the node through the stream, later than the returned id,
-- and the node keeps each key's newest event, so nothing read late or
-- twice makes it wrong.
--
-- KEYS[1]  the history stream; KEYS[2] its epoch
--
-- Returns {epoch or nil, last-generated-id or nil, {type, ...}}.
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
return {epoch, last, redis.call('SMEMBERS', tag .. ':keyed')}
