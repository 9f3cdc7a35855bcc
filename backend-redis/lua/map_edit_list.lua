-- map_edit_list: append / append-unique / remove items of a list value.
-- KEYS[1] hash; ARGV[1..4] see prelude; ARGV[5] edit ("append" | "unique" | "remove"),
-- ARGV[6] key, ARGV[7] largest resulting value in bytes, ARGV[8..] items.
-- Returns {epoch, rev, changed (0|1), exists (0|1), encoded list or nil};
-- error PULSE_INVALID when the stored value is not a list, PULSE_TOO_LARGE <size> <limit> when the
-- resulting list would be larger than ARGV[7] (nothing changed either way).

-- List values use postcard's layout: a varint count, then varint-length items.
local function varint(n)
  local out = {}
  while n >= 128 do
    out[#out + 1] = string.char(n % 128 + 128)
    n = math.floor(n / 128)
  end
  out[#out + 1] = string.char(n)
  return table.concat(out)
end

local function str(s)
  return varint(#s) .. s
end

local function get_varint(s, pos)
  local n, mul = 0, 1
  while true do
    local b = string.byte(s, pos)
    if not b then return nil end
    pos = pos + 1
    n = n + (b % 128) * mul
    if b < 128 then return n, pos end
    mul = mul * 128
    if mul > 2 ^ 49 then return nil end
  end
end

-- Decodes a list value; nil when it is not a well-formed list.
local function decode_list(s)
  local count, pos = get_varint(s, 1)
  if not count then return nil end
  local items = {}
  for i = 1, count do
    local len
    len, pos = get_varint(s, pos)
    if not len or pos + len - 1 > #s then return nil end
    items[i] = string.sub(s, pos, pos + len - 1)
    pos = pos + len
  end
  if pos ~= #s + 1 then return nil end
  return items
end

local function encode_list(items)
  local parts = { varint(#items) }
  for _, v in ipairs(items) do parts[#parts + 1] = str(v) end
  return table.concat(parts)
end

local edit, key, max_value = ARGV[5], ARGV[6], tonumber(ARGV[7])
local stored = redis.call('HGET', hash, key)
local list = {}
if stored then
  list = decode_list(stored)
  if not list then return redis.error_reply('PULSE_INVALID value is not a list') end
end
local changed = false
if edit == 'append' or edit == 'unique' then
  local present = {}
  if edit == 'unique' then for _, v in ipairs(list) do present[v] = true end end
  for i = 8, #ARGV do
    local item = ARGV[i]
    if edit == 'append' or not present[item] then
      list[#list + 1] = item
      present[item] = true
      changed = true
    end
  end
else
  local drop = {}
  for i = 8, #ARGV do drop[ARGV[i]] = true end
  local kept = {}
  for _, v in ipairs(list) do
    if drop[v] then changed = true else kept[#kept + 1] = v end
  end
  list = kept
end
if not changed then
  local epoch, rev = current()
  apply_ttl()
  if stored then return { epoch, rev, 0, 1, stored } end
  return { epoch, rev, 0, 0, false }
end
local epoch, rev
if #list == 0 and edit == 'remove' then
  redis.call('HDEL', hash, key)
  epoch, rev = bump('del')
  publish_del(epoch, rev, key)
  apply_ttl()
  return { epoch, rev, 1, 0, false }
end
local value = encode_list(list)
if #value > max_value then
  return redis.error_reply(string.format('PULSE_TOO_LARGE %d %d', #value, max_value))
end
redis.call('HSET', hash, key, value)
epoch, rev = bump('set')
publish_set(epoch, rev, key, value)
apply_ttl()
return { epoch, rev, 1, 1, value }
