-- A node joining the bus: makes sure a history exists, so that even a
-- client greeted before the first event holds a position of a named history
-- (after Redis restarts empty, that position is recognisably foreign).
-- Creates an empty stream and a new epoch when there is none, by the same
-- rule as publish.lua.
--
-- KEYS[1]  the history stream; KEYS[2] its epoch
-- ARGV[1]  an epoch for a new history (8 lowercase hex digits)
--
-- Returns {epoch, last-generated-id}.
local epoch = redis.call('GET', KEYS[2])
if (not epoch) or redis.call('EXISTS', KEYS[1]) == 0 then
  epoch = ARGV[1]
  redis.call('SET', KEYS[2], epoch)
  -- The keyed state belonged to the old history (as in publish.lua).
  local tag = string.match(KEYS[2], '^(.*):epoch$')
  for _, kind in ipairs(redis.call('SMEMBERS', tag .. ':keyed')) do
    redis.call('DEL', tag .. ':state:' .. kind, tag .. ':state-age:' .. kind)
  end
  redis.call('DEL', tag .. ':keyed')
  if redis.call('EXISTS', KEYS[1]) == 0 then
    -- An empty stream with nothing ever added (a consumer group's MKSTREAM,
    -- the group dropped again): last id 0-0, so "nothing trimmed" holds.
    redis.call('XGROUP', 'CREATE', KEYS[1], 'init', '$', 'MKSTREAM')
    redis.call('XGROUP', 'DESTROY', KEYS[1], 'init')
  end
end
local raw = redis.call('XINFO', 'STREAM', KEYS[1])
for i = 1, #raw, 2 do
  if raw[i] == 'last-generated-id' then
    return {epoch, raw[i + 1]}
  end
end
return {epoch, '0-0'}
