package subscribers

import "github.com/redis/go-redis/v9"

// The Lua scripts make each change to a device or an endpoint one atomic
// step: a fan-out reading the audience indexes never sees a device half
// moved. They build the audience and device keys from the prefix, which is
// safe on Redis Cluster because the prefix holds a hash tag.
type scripts struct {
	upsert, remove, rotate                         *redis.Script
	createEndpoint, updateEndpoint, deleteEndpoint *redis.Script
	rotateSecret                                   *redis.Script
}

func newScripts() scripts {
	return scripts{
		upsert:         redis.NewScript(luaAudience + luaUpsert),
		remove:         redis.NewScript(luaAudience + luaRemove),
		rotate:         redis.NewScript(luaAudience + luaRotate),
		createEndpoint: redis.NewScript(luaCreateEndpoint),
		updateEndpoint: redis.NewScript(luaUpdateEndpoint),
		deleteEndpoint: redis.NewScript(luaDeleteEndpoint),
		rotateSecret:   redis.NewScript(luaRotateSecret),
	}
}

// luaAudience lists the audience index keys of a device: one per topic in
// its index language.
const luaAudience = `
local function audience(prefix, lang, topics)
  local out = {}
  if lang and topics then
    for topic in string.gmatch(topics, '[^,]+') do
      out[#out + 1] = prefix .. 'a:' .. lang .. ':' .. topic
    end
  end
  return out
end
`

// luaUpsert registers or updates devices. Index keys a device keeps keep
// its score; indexes it joins give it the next sequence number, so it goes
// to the end of their iteration order.
//
// KEYS: last-seen set, sequence.
// ARGV: prefix, now (unix ms), then per device: token, platform, lang,
// index lang, topics (comma separated), region.
// Returns per device: 1 if created else 0, created unix ms.
const luaUpsert = `
local prefix, now = ARGV[1], ARGV[2]
local out = {}
for n = 3, #ARGV, 6 do
  local token, lang, topics = ARGV[n], ARGV[n + 3], ARGV[n + 4]
  local key = prefix .. 'd:' .. token
  local old = redis.call('HMGET', key, 'i', 't', 'c')
  local created = now
  local oldKeys = {}
  if old[3] then
    created = old[3]
    oldKeys = audience(prefix, old[1], old[2])
  end
  local newKeys = audience(prefix, lang, topics)
  local inOld, inNew = {}, {}
  for _, k in ipairs(oldKeys) do inOld[k] = true end
  for _, k in ipairs(newKeys) do inNew[k] = true end
  for _, k in ipairs(oldKeys) do
    if not inNew[k] then redis.call('ZREM', k, token) end
  end
  for _, k in ipairs(newKeys) do
    if not inOld[k] then redis.call('ZADD', k, 'NX', redis.call('INCR', KEYS[2]), token) end
  end
  redis.call('HSET', key, 'p', ARGV[n + 1], 'l', ARGV[n + 2], 'i', lang, 't', topics, 'r', ARGV[n + 5], 'c', created, 's', now)
  redis.call('ZADD', KEYS[1], now, token)
  out[#out + 1] = old[3] and 0 or 1
  out[#out + 1] = created
end
return out
`

// luaRemove removes devices and their index entries. With a cutoff it
// removes only devices last seen at or before it (expiry), and repairs a
// last-seen entry that lags its device, so an expiry pass always ends.
//
// KEYS: last-seen set.
// ARGV: prefix, cutoff (unix ms, or empty for none), tokens...
// Returns how many devices were removed.
const luaRemove = `
local prefix, cutoff = ARGV[1], tonumber(ARGV[2])
local removed = 0
for n = 3, #ARGV do
  local token = ARGV[n]
  local key = prefix .. 'd:' .. token
  local d = redis.call('HMGET', key, 'i', 't', 's')
  if not d[3] then
    redis.call('ZREM', KEYS[1], token)
  elseif cutoff and tonumber(d[3]) > cutoff then
    redis.call('ZADD', KEYS[1], d[3], token)
  else
    for _, k in ipairs(audience(prefix, d[1], d[2])) do redis.call('ZREM', k, token) end
    redis.call('DEL', key)
    redis.call('ZREM', KEYS[1], token)
    removed = removed + 1
  end
end
return removed
`

// luaRotate moves a device to a new token. The new token takes the old
// one's score in every index, so a fan-out in progress reaches the device
// at most once.
//
// KEYS: old device hash, new device hash, last-seen set, sequence.
// ARGV: prefix, old token, new token, now (unix ms).
// Returns 1, or -1 if the old token is unknown, -2 if the new one exists.
const luaRotate = `
local prefix, old, new = ARGV[1], ARGV[2], ARGV[3]
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
if redis.call('EXISTS', KEYS[2]) == 1 then return -2 end
local d = redis.call('HMGET', KEYS[1], 'i', 't')
for _, k in ipairs(audience(prefix, d[1], d[2])) do
  local score = redis.call('ZSCORE', k, old)
  if not score then score = redis.call('INCR', KEYS[4]) end
  redis.call('ZREM', k, old)
  redis.call('ZADD', k, score, new)
end
redis.call('RENAME', KEYS[1], KEYS[2])
redis.call('HSET', KEYS[2], 's', ARGV[4])
redis.call('ZREM', KEYS[3], old)
redis.call('ZADD', KEYS[3], ARGV[4], new)
return 1
`

// luaCreateEndpoint stores a new endpoint unless one exists for its URL.
//
// KEYS: endpoint hash, endpoint set, URL index, sequence.
// ARGV: id, url, field, value...
// Returns "" or the ID of the endpoint in the way.
const luaCreateEndpoint = `
local owner = redis.call('HGET', KEYS[3], ARGV[2])
if owner then return owner end
if redis.call('EXISTS', KEYS[1]) == 1 then return ARGV[1] end
redis.call('HSET', KEYS[1], unpack(ARGV, 3))
redis.call('ZADD', KEYS[2], redis.call('INCR', KEYS[4]), ARGV[1])
redis.call('HSET', KEYS[3], ARGV[2], ARGV[1])
return ''
`

// luaUpdateEndpoint sets fields of an existing endpoint and, when the URL
// changes, moves its URL index entry.
//
// KEYS: endpoint hash, URL index.
// ARGV: id, new url (or empty), field, value...
// Returns 1, or -1 if there is no such endpoint, -2 if another endpoint
// has the new URL.
const luaUpdateEndpoint = `
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
if ARGV[2] ~= '' then
  local owner = redis.call('HGET', KEYS[2], ARGV[2])
  if owner and owner ~= ARGV[1] then return -2 end
  local old = redis.call('HGET', KEYS[1], 'url')
  if old then redis.call('HDEL', KEYS[2], old) end
  redis.call('HSET', KEYS[2], ARGV[2], ARGV[1])
  redis.call('HSET', KEYS[1], 'url', ARGV[2])
end
if #ARGV > 2 then redis.call('HSET', KEYS[1], unpack(ARGV, 3)) end
return 1
`

// luaDeleteEndpoint removes an endpoint and its index entries.
//
// KEYS: endpoint hash, endpoint set, URL index. ARGV: id.
// Returns 1, or 0 if there was no such endpoint.
const luaDeleteEndpoint = `
local url = redis.call('HGET', KEYS[1], 'url')
if not url then return 0 end
if redis.call('HGET', KEYS[3], url) == ARGV[1] then redis.call('HDEL', KEYS[3], url) end
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
return 1
`

// luaRotateSecret makes the current secret the previous one, valid until
// a deadline, and installs a new one.
//
// KEYS: endpoint hash. ARGV: new secret, previous valid until (unix ms).
// Returns 1, or 0 if there is no such endpoint.
const luaRotateSecret = `
local cur = redis.call('HGET', KEYS[1], 'secret')
if not cur then return 0 end
redis.call('HSET', KEYS[1], 'secret', ARGV[1], 'prev', cur, 'prev_until', ARGV[2])
return 1
`
