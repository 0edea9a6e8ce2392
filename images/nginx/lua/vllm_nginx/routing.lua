-- The balancer inside nginx (Debian's libnginx-mod-http-lua): picks a replica for every request, in
-- every balancing mode, from the replicas in rotation that pass their active /health checks.
--
--   init_worker_by_lua   routing.start(config)   this worker's groups, peers, rings and health-check timer
--   access_by_lua        routing.access()        the request's group (by its body's `model`, with model
--                                                groups), and in cache_aware and consistent_hash its key
--   balancer_by_lua      routing.balance()       the replica, and again on each retry
--   log_by_lua           routing.log()           the request no longer counts as in flight
--   content_by_lua       routing.status()        JSON: every replica's rotation, health and load
--
-- A fleet of several model groups routes each request by the `model` of its JSON body to the group
-- that serves that name (a model or an adapter): each group has its replicas, its balancing method and
-- settings, and its ring. A name no group serves gets vLLM's own 404, and no replica sees the request.
-- `GET /v1/models` lists every group's models (routing.models). A fleet of one group reads no body but
-- for its routing key, as before groups.
--
-- State shared by the workers (and kept across reloads) lives in `lua_shared_dict vllm_routing`:
-- requests in flight per replica, passive failures (maxFails within failTimeout), and health; and in
-- `vllm_routing_keys`: each cache_aware key's home.
local balancer = require("ngx.balancer")
local cjson = require("cjson.safe")

local ngx = ngx
local dict = ngx.shared.vllm_routing
-- Keys' homes, one entry per session or conversation: apart, so that when it is full its least
-- recently used homes make room, never the counts above.
local homes = ngx.shared.vllm_routing_keys
local md5 = ngx.md5
local floor, ceil, random = math.floor, math.ceil, math.random

local M = {}

-- Points per replica on the hash ring (nginx's `hash ... consistent` uses 160 per weight unit).
local RING_POINTS = 160
-- Consecutive failed (passed) probes that take a replica out of (back into) service. A failure is an
-- answer other than 200 (vLLM's 503 once its engine died) or a connection that fails.
local HEALTH_FALL, HEALTH_RISE = 2, 2
-- A probe that connects but gets no answer in time counts apart: vLLM answers /health on the event loop
-- that renders chat templates and tokenizes, so a busy replica can answer late. Only this many such
-- probes in a row (with no answer between) take it out of service.
local HEALTH_SLOW_FALL = 3
-- A connection is made by the replica's kernel even while its event loop is busy: a connect that fails
-- or times out is a failure; the answer may take longer.
local HEALTH_CONNECT_TIMEOUT_MS = 1000
-- System prompts' share of the traffic is counted over two windows of this many seconds, once at
-- least this many requests were counted.
local POPULARITY_WINDOW = 10
local POPULARITY_MIN_REQUESTS = 20
-- How long a key's home is remembered after its last request.
local KEY_TTL = 1800
-- Idle health-check connections are closed before vLLM closes them (after 5 s).
local KEEPALIVE_IDLE_MS = 4000
-- Completions prompts have no message boundaries: their key is their first characters.
local PROMPT_KEY_CHARS = 4096
-- How much of a body too large for memory its key reads (see body_route_key).
local LARGE_BODY_KEY_BYTES = 65536

-- How often each replica's adapters are checked against its group's (see lora_upkeep), and how long
-- loading one may take (vLLM reads it from disk, or downloads it from the Hugging Face hub).
local LORA_CHECK_SECONDS = 5
local LORA_RETRY_SECONDS = 15
local LORA_TIMEOUT_MS = 120000

-- 32 bits of MD5: keys such as "user-1", "user-2" spread over the ring, where CRC32's (nginx's own
-- hash) cluster.
local function hash32(text)
    return tonumber(md5(text):sub(1, 8), 16)
end

local conf -- this worker's config: settings, groups and peers
-- The Authorization header replicas take (their `apiKey`), for the adapters' runtime endpoints: read by
-- nginx's master, as root, from the edge's root-only file at every (re)load (routing.init).
local replica_authorization
local own_rotation -- "name@address ..." of the replicas this worker's config has in rotation
local newer_rotation, newer_members -- the newest config's, when a reload replaced this worker's
local peers = {} -- every group's: { name, address, host, port, in_rotation, group }
local in_rotation_by_name = {}
-- { name, method, session_var, load_bound, models, peers, ring_points, ring_peers, rotation_size }
local groups = {}
local group_by_model = {} -- served name (a model or an adapter) -> its group
local groups_by_name = {}
local by_model = false -- whether requests are routed by their body's `model` (model groups)
local valid_aliases = "" -- every group's served names, as vLLM lists its own in the unknown-model error
local client_models = {} -- key name -> { [name] = true }: the models a client key is limited to

local function build_ring(group)
    local points = {}
    for i, p in ipairs(group.peers) do
        for v = 1, RING_POINTS do
            points[#points + 1] = { hash32(p.name .. "#" .. v), i }
        end
    end
    table.sort(points, function(a, b)
        return a[1] < b[1]
    end)
    group.ring_points, group.ring_peers = {}, {}
    for i, point in ipairs(points) do
        group.ring_points[i], group.ring_peers[i] = point[1], point[2]
    end
end

-- Index of the first of the group's ring points at or after `hash` (wrapping to 1).
local function ring_start(group, hash)
    local ring_points = group.ring_points
    local lo, hi = 1, #ring_points
    if hi == 0 or hash > ring_points[hi] then
        return 1
    end
    while lo < hi do
        local mid = floor((lo + hi) / 2)
        if ring_points[mid] < hash then
            lo = mid + 1
        else
            hi = mid
        end
    end
    return lo
end

local function load_of(p)
    return dict:get("inflight:" .. p.name) or 0
end

local function healthy(p)
    return not dict:get("hc:down:" .. p.address)
end

local function banned(p)
    return dict:get("banned:" .. p.name) ~= nil
end

local function release(p)
    local n = dict:incr("inflight:" .. p.name, -1, 0)
    if n and n < 0 then
        dict:set("inflight:" .. p.name, 0)
    end
end

-- A connection error or timeout, as nginx's max_fails counts them: maxFails of them within
-- failTimeout keep the replica out for failTimeout.
local function record_failure(p)
    if conf.max_fails == 0 then
        return
    end
    local n = dict:incr("fails:" .. p.name, 1, 0, conf.fail_timeout)
    if n and n >= conf.max_fails then
        dict:set("banned:" .. p.name, true, conf.fail_timeout)
        dict:delete("fails:" .. p.name)
        ngx.log(ngx.WARN, "vllm-nginx: ", p.name, " (", p.address, ") failed ", n, " time(s): skipped for ", conf.fail_timeout, "s")
    end
end

-- Replicas this request may go to: in rotation and not tried yet; healthy and not failing unless no
-- replica in rotation is (then every one in rotation is tried rather than none).
--
-- For 100 ms after a reload nginx runs the old workers beside the new ones, and both accept requests:
-- every worker follows the rotation of the newest config (published in the shared dict by the
-- workers it started), so a replica that left rotation gets nothing new from an old worker either.
local function in_newest_rotation(p)
    local newest = dict:get("rotation")
    if newest == nil or newest == own_rotation then
        return true
    end
    if newest ~= newer_rotation then
        newer_rotation, newer_members = newest, {}
        for member in newest:gmatch("%S+") do
            newer_members[member] = true
        end
    end
    return newer_members[p.name .. "@" .. p.address] == true
end

local function candidates(group, tried)
    local strict, relaxed = {}, {}
    for _, p in ipairs(group.peers) do
        if p.in_rotation and not tried[p.name] and in_newest_rotation(p) then
            relaxed[#relaxed + 1] = p
            if healthy(p) and not banned(p) then
                strict[#strict + 1] = p
            end
        end
    end
    if #strict > 0 then
        return strict
    end
    return relaxed
end

local function least_conn(group, list, loads)
    local start = (dict:incr(group.rr, 1, 0) or 0) % #list
    local best, best_load
    for k = 0, #list - 1 do
        local i = (start + k) % #list + 1
        if best == nil or loads[i] < best_load then
            best, best_load = i, loads[i]
        end
    end
    return list[best]
end

-- Candidates (indexes into `list`) in ring order from the key: the ring's replica for it first.
local function ring_order(group, list, key)
    local index = {}
    for i, p in ipairs(list) do
        index[p.name] = i
    end
    local order, seen, distinct = {}, {}, 0
    local n = #group.ring_points
    local at = ring_start(group, key)
    local peers = group.peers
    for _ = 1, n do
        local p = peers[group.ring_peers[at]]
        if not seen[p.name] then
            seen[p.name] = true
            distinct = distinct + 1
            if index[p.name] then
                order[#order + 1] = index[p.name]
            end
            if distinct == #peers then
                break
            end
        end
        at = at % n + 1
    end
    return order, index
end

-- Consistent hashing with bounded loads (Mirrokni et al.; KubeAI's CHWBL): a key's requests go to its
-- home while that replica's requests in flight, with this one, stay within ceil(load_bound x the mean);
-- else to the next replica clockwise on the ring that has room; else to the least loaded.
--
-- A key's home is remembered from its first request (in the shared dict, for KEY_TTL seconds after
-- its last): the ring's replica for the key ("@ring": it follows the ring, so a new replica takes over
-- its arcs' keys and only those) when that replica is among the least busy, else the first of the
-- least busy in ring order, pinned by name. So keys spread as evenly as least_conn spreads requests
-- (a key seen once, such as a one-shot prompt, costs nothing against least_conn), and a busy ring
-- arc does not collect more new keys.
local function bounded_hash(group, list, loads, key)
    local total, least = 0, math.huge
    for i = 1, #list do
        total = total + loads[i]
        if loads[i] < least then
            least = loads[i]
        end
    end
    local capacity = ceil(group.load_bound * (total + 1) / #list)
    local order, index = ring_order(group, list, key)
    local entry_key = tostring(key)
    local entry = homes:get(entry_key)
    local home
    if entry == "@ring" then
        home = order[1]
    elseif entry ~= nil then
        home = index[entry]
        if home == nil and not in_rotation_by_name[entry] then
            entry = nil -- its replica left the rotation: a new home
        end
    end
    if entry == nil then
        for _, i in ipairs(order) do
            if loads[i] == least then
                homes:set(entry_key, i == order[1] and "@ring" or list[i].name, KEY_TTL)
                return list[i]
            end
        end
    end
    homes:expire(entry_key, KEY_TTL)
    if home and loads[home] + 1 <= capacity then
        return list[home]
    end
    for _, i in ipairs(order) do
        if loads[i] + 1 <= capacity then
            return list[i]
        end
    end
    return least_conn(group, list, loads)
end

-- The set of names in "a,b,c".
local function lora_names(text)
    local set = {}
    for name in (text or ""):gmatch("[^,]+") do
        set[name] = true
    end
    return set
end

-- Of the candidates, those that have the adapter loaded (see lora_upkeep), when any has: a replica that
-- just joined, or whose load failed, answers its requests once it has it.
local function with_adapter(list, adapter)
    local having = {}
    for _, p in ipairs(list) do
        if lora_names(dict:get("lora:loaded:" .. p.address))[adapter] then
            having[#having + 1] = p
        end
    end
    return #having > 0 and having or list
end

local function choose(ctx, group)
    local list = candidates(group, ctx.tried or {})
    if #list == 0 then
        return nil
    end
    if ctx.by_adapter and group.lora then
        list = with_adapter(list, ctx.adapter)
    end
    local loads = {}
    for i, p in ipairs(list) do
        loads[i] = load_of(p)
    end
    local method = group.method
    if ctx.by_adapter and ctx.route_key then
        return bounded_hash(group, list, loads, ctx.route_key)
    end
    if method == "round_robin" then
        return list[(dict:incr(group.rr, 1, 0) or 0) % #list + 1]
    elseif method == "random_two_least_conn" then
        if #list == 1 then
            return list[1]
        end
        local a = random(#list)
        local b = random(#list - 1)
        if b >= a then
            b = b + 1
        end
        return loads[b] < loads[a] and list[b] or list[a]
    elseif method == "cache_aware" and ctx.route_key then
        return bounded_hash(group, list, loads, ctx.route_key)
    end
    return least_conn(group, list, loads)
end

-- Text of a message's content: a string, or the text parts of a list.
local function content_text(content)
    if type(content) == "string" then
        return content
    end
    if type(content) == "table" then
        local parts = {}
        for _, part in ipairs(content) do
            if type(part) == "table" and type(part.text) == "string" then
                parts[#parts + 1] = part.text
            end
        end
        return table.concat(parts, "\n")
    end
    return ""
end

-- Share of a group's recent cache-keyed requests whose leading system prompt is `preamble`: requests
-- are counted in two windows of POPULARITY_WINDOW seconds (the current and the last), under the
-- group's prefix (`pop`, "pop:" or "pop:GROUP:").
local function preamble_share(preamble, pop)
    local bucket = floor(ngx.now() / POPULARITY_WINDOW)
    local h = tostring(hash32(preamble))
    local ttl = 2 * POPULARITY_WINDOW + 1
    local mine = dict:incr(pop .. bucket .. ":" .. h, 1, 0, ttl) + (dict:get(pop .. (bucket - 1) .. ":" .. h) or 0)
    local all = (dict:get(pop .. bucket .. ":*") or 0) + (dict:get(pop .. (bucket - 1) .. ":*") or 0)
    if all < POPULARITY_MIN_REQUESTS then
        return 1
    end
    return mine / all
end

-- The routing key of a request without a session header: what every turn of its conversation repeats.
-- Chat: the messages before the first user message (system prompts) and that message. A system prompt
-- alone is the key when it carries at most one replica's share of the traffic (a document a group of
-- users asks about: they all reuse its cache); one that more requests share (an application's prompt
-- for every user) is followed by the opening user message, so conversations do not collapse onto one
-- replica. Completions: the prompt's first characters. `pop` is the group's popularity prefix.
function M.body_key(doc, replicas, pop)
    if type(doc) ~= "table" then
        return nil
    end
    if type(doc.messages) == "table" then
        local preamble, opening = {}, nil
        for _, m in ipairs(doc.messages) do
            if type(m) == "table" then
                local part = tostring(m.role) .. "\n" .. content_text(m.content)
                if m.role == "user" then
                    opening = part
                    break
                end
                preamble[#preamble + 1] = part
            end
        end
        local shared = table.concat(preamble, "\n")
        if opening == nil then
            return shared ~= "" and shared or nil
        end
        if shared ~= "" and preamble_share(shared, pop or "pop:") * replicas <= 1 then
            return shared
        end
        return shared .. "\n" .. opening
    end
    if type(doc.prompt) == "string" then
        return doc.prompt:sub(1, PROMPT_KEY_CHARS)
    end
    if type(doc.prompt) == "table" then
        local ids = {}
        for i = 1, math.min(#doc.prompt, PROMPT_KEY_CHARS / 4) do
            ids[i] = tostring(doc.prompt[i])
        end
        return #ids > 0 and table.concat(ids, ",") or nil
    end
    return nil
end

-- The request's body: decoded when nginx holds it in memory (up to client_body_buffer_size, 1 MB);
-- else, for a larger one that nginx wrote to a temp file, its first LARGE_BODY_KEY_BYTES as sent (and
-- its last as many, where a client may have put `model`). Reading back and decoding a document of up
-- to maxBodySize would hold the worker, and every stream it serves, for as long. Read once a request.
local function read_body(ctx)
    if ctx.body_read then
        return ctx.body_doc, ctx.body_head, ctx.body_tail
    end
    ctx.body_read = true
    ngx.req.read_body()
    local body = ngx.req.get_body_data()
    if body then
        ctx.body_doc = cjson.decode(body)
        return ctx.body_doc
    end
    local path = ngx.req.get_body_file()
    local f = path and io.open(path, "rb")
    if not f then
        return nil
    end
    ctx.body_head = f:read(LARGE_BODY_KEY_BYTES)
    local size = f:seek("end")
    if size and size > LARGE_BODY_KEY_BYTES then
        f:seek("set", math.max(LARGE_BODY_KEY_BYTES, size - LARGE_BODY_KEY_BYTES))
        ctx.body_tail = f:read(LARGE_BODY_KEY_BYTES)
    end
    f:close()
    return nil, ctx.body_head, ctx.body_tail
end

-- The routing key of a request body: its leading content (M.body_key) when it was decoded; for a
-- large one, its first bytes from its "messages" (or "prompt") on, as sent.
local function body_route_key(ctx, group)
    local doc, head = read_body(ctx)
    if doc then
        return M.body_key(doc, group.rotation_size, group.pop)
    end
    if not head then
        return nil
    end
    local at = head:find('"messages"', 1, true) or head:find('"prompt"', 1, true) or 1
    return head:sub(at)
end

-- The `model` a request names: its body's `model` field (nil when it names none).
local function body_model(ctx)
    local doc, head, tail = read_body(ctx)
    if type(doc) == "table" then
        return type(doc.model) == "string" and doc.model or nil
    end
    for _, part in ipairs({ head or "", tail or "" }) do
        local model = part:match('"model"%s*:%s*"([^"\\]*)"')
        if model then
            return model
        end
    end
    return nil
end

-- vLLM's answer to a model its server does not serve (`OpenAIServing._check_model`), with every
-- group's names as the aliases: no replica sees the request.
local function unknown_model(model)
    ngx.status = 404
    ngx.header["Content-Type"] = "application/json"
    ngx.print('{"error":{"message":', cjson.encode("The model `" .. model .. "` does not exist. Valid aliases: " .. valid_aliases .. "."),
        ',"type":"NotFoundError","param":"model","code":404}}')
    return ngx.exit(ngx.HTTP_OK)
end

-- 403 for a key limited to other models (its `models`): as LiteLLM's virtual keys answer, in vLLM's error
-- format. No replica sees the request.
local function forbidden_model(model)
    ngx.status = 403
    ngx.header["Content-Type"] = "application/json"
    ngx.print('{"error":{"message":', cjson.encode("This key may not use the model `" .. model .. "`."), ',"type":"PermissionDeniedError","param":"model","code":403}}')
    return ngx.exit(ngx.HTTP_OK)
end

-- The models the request's client key may use (a set), or nil when it may use every one.
local function allowed_models()
    local client = ngx.var.vllm_client
    return client and client_models[client]
end

-- The group of a request: by its body's `model` with model groups (a request that names none goes to
-- the first group, as vLLM serves its first name then); the only group without them.
local function request_group(ctx)
    if not by_model or ngx.req.get_method() ~= "POST" then
        return groups[1]
    end
    local model = body_model(ctx)
    if model == nil or model == "" then
        return groups[1]
    end
    local group = group_by_model[model]
    if not group then
        return nil, model
    end
    return group, model
end

function M.access()
    local ctx = ngx.ctx
    local allowed = allowed_models()
    if by_model and ngx.var.uri == "/v1/models" and ngx.req.get_method() == "GET" then
        return M.models(allowed)
    end
    if allowed and ngx.req.get_method() == "POST" then
        -- A request that names no model is served the first group's first name.
        local model = body_model(ctx)
        if model == nil or model == "" then
            model = groups[1].models[1] and groups[1].models[1].id or ""
        end
        if not allowed[model] then
            return forbidden_model(model)
        end
    end
    local group, model = request_group(ctx)
    if not group then
        return unknown_model(model)
    end
    ctx.group = group
    if model and group.adapters[model] then
        -- An adapter's requests go to its home on the group's ring, within the load bound, whatever the
        -- group's method: the replicas that served it lately hold it in their GPU's adapter slots
        -- (--max-loras), where another replica would first have to swap one out.
        local hash = hash32("adapter:" .. model)
        ctx.route_key = hash
        ctx.by_adapter = true
        ctx.adapter = model
        ngx.var.vllm_route_key = tostring(hash)
        ngx.var.vllm_route_source = "adapter"
        return
    end
    if group.method ~= "cache_aware" and group.method ~= "consistent_hash" then
        return
    end
    dict:incr(group.pop .. floor(ngx.now() / POPULARITY_WINDOW) .. ":*", 1, 0, 2 * POPULARITY_WINDOW + 1)
    local key = ngx.var[group.session_var]
    local source = "header"
    if key == nil or key == "" then
        source = "body"
        key = body_route_key(ctx, group)
        if key == "" then
            key = nil
        end
    end
    if key then
        local hash = hash32(key)
        ctx.route_key = hash
        ngx.var.vllm_route_key = tostring(hash)
        ngx.var.vllm_route_source = source
    end
end

-- A model card as vLLM's /v1/models has it, from the config: for a group none of whose replicas
-- answered (each one restarting in a rollout), so that its names stay listed.
local function config_card(entry)
    return {
        id = entry.id,
        object = "model",
        created = ngx.time(),
        owned_by = "vllm",
        root = entry.root,
        parent = entry.parent or cjson.null,
        max_model_len = cjson.null,
        permission = {},
    }
end

-- GET /v1/models with model groups: every group's cards, as one of its replicas lists them, keeping
-- the names the group serves; a group none of whose replicas answers is listed from the config. Each
-- group is asked with a subrequest of this location, its group in the subrequest's ctx (subrequests
-- skip the access phase) for routing.balance; nginx runs no log phase for a subrequest, so its replica
-- is released here.
function M.models(allowed)
    local requests, contexts = {}, {}
    for i, group in ipairs(groups) do
        contexts[i] = { group = group }
        requests[i] = { "/v1/models", { method = ngx.HTTP_GET, ctx = contexts[i] } }
    end
    local answers = { ngx.location.capture_multi(requests) }
    for _, sub in ipairs(contexts) do
        if sub.peer then
            release(sub.peer)
            sub.peer = nil
        end
    end
    local data = {}
    for i, group in ipairs(groups) do
        local answer = answers[i]
        local listed = answer and answer.status == 200 and cjson.decode(answer.body)
        local seen = {}
        if type(listed) == "table" and type(listed.data) == "table" then
            for _, card in ipairs(listed.data) do
                if type(card) == "table" and group.serves[card.id] and not seen[card.id] and (not allowed or allowed[card.id]) then
                    seen[card.id] = true
                    if type(card.permission) == "table" and #card.permission == 0 then
                        card.permission = cjson.empty_array or {}
                    end
                    data[#data + 1] = card
                end
            end
            -- A name the replica does not list yet (an adapter added moments ago) is listed from the config.
            for _, entry in ipairs(group.models) do
                if not seen[entry.id] and (not allowed or allowed[entry.id]) then
                    data[#data + 1] = config_card(entry)
                end
            end
        else
            ngx.log(ngx.WARN, "vllm-nginx: no replica of group ", group.name, " listed its models (", answer and answer.status or "no answer", "): listed from the config")
            for _, entry in ipairs(group.models) do
                if not allowed or allowed[entry.id] then
                    data[#data + 1] = config_card(entry)
                end
            end
        end
    end
    ngx.status = 200
    ngx.header["Content-Type"] = "application/json"
    ngx.print(cjson.encode({ object = "list", data = data }))
    return ngx.exit(ngx.HTTP_OK)
end

function M.balance()
    local ctx = ngx.ctx
    local previous = ctx.peer
    if previous then
        release(previous)
        ctx.peer = nil
        if balancer.get_last_failure() then
            record_failure(previous)
        end
        ctx.tried = ctx.tried or {}
        ctx.tried[previous.name] = true
    end
    -- Set by routing.access, or by routing.models for its subrequests.
    local group = ctx.group or groups[1]
    local p = choose(ctx, group)
    if not p then
        ngx.log(ngx.ERR, "vllm-nginx: no replica in rotation", group.name ~= "" and " in group " .. group.name or "")
        return ngx.exit(502)
    end
    dict:incr("inflight:" .. p.name, 1, 0)
    ctx.peer = p
    local ok, err = balancer.set_current_peer(p.host, p.port)
    if not ok then
        release(p)
        ctx.peer = nil
        ngx.log(ngx.ERR, "vllm-nginx: cannot use ", p.address, ": ", err)
        return ngx.exit(502)
    end
end

-- The last value of one of nginx's per-attempt lists ("a, b : c").
local function last_of(list)
    return list and list:match("([^,:%s]+)%s*$")
end

function M.log()
    local p = ngx.ctx.peer
    if p then
        release(p)
        ngx.ctx.peer = nil
        -- The request's last attempt: nginx asks for no other peer after it, so M.balance never sees it.
        -- A 502 or 504 nginx made itself (no header came from the replica) is a connection error or a
        -- timeout, which counts as nginx's max_fails does.
        local status = last_of(ngx.var.upstream_status)
        if (status == "502" or status == "504") and last_of(ngx.var.upstream_header_time) == "-" then
            record_failure(p)
        end
    end
end

-- One HTTP request to a replica from a timer (the health probes, the adapters' upkeep): its status and
-- body, or nil and why. The connection is kept for the next call (idle for less than vLLM's 5 s
-- keep-alive), so probes do not open a connection every interval.
local function call(p, method, path, options)
    options = options or {}
    local sock = ngx.socket.tcp()
    local timeout = options.timeout_ms or conf.health_timeout_ms
    sock:settimeouts(HEALTH_CONNECT_TIMEOUT_MS, timeout, timeout)
    local ok, err = sock:connect(p.host, p.port)
    if not ok then
        return nil, "connect: " .. tostring(err)
    end
    local head = { method, " ", path, " HTTP/1.1\r\nHost: ", p.address, "\r\nUser-Agent: vllm-nginx-health\r\n" }
    if options.authorization then
        head[#head + 1] = "Authorization: " .. options.authorization .. "\r\n"
    end
    if options.body then
        head[#head + 1] = "Content-Type: application/json\r\nContent-Length: " .. #options.body .. "\r\n\r\n" .. options.body
    else
        head[#head + 1] = "\r\n"
    end
    local sent
    sent, err = sock:send(table.concat(head))
    if not sent then
        sock:close()
        return nil, err
    end
    local line
    line, err = sock:receive("*l")
    if not line then
        sock:close()
        return nil, err
    end
    local status = tonumber(line:match("^HTTP/%d%.%d (%d%d%d)"))
    local length, close, chunked
    while true do
        local header
        header, err = sock:receive("*l")
        if not header then
            sock:close()
            return nil, err
        end
        if header == "" then
            break
        end
        local name, value = header:match("^([^:]+):%s*(.-)%s*$")
        name = name and name:lower()
        if name == "content-length" then
            length = tonumber(value)
        elseif name == "connection" and value:lower() == "close" then
            close = true
        elseif name == "transfer-encoding" and value:lower():find("chunked", 1, true) then
            chunked = true
        end
    end
    local body = ""
    if length and length > 0 then
        body, err = sock:receive(length)
        if not body then
            sock:close()
            return nil, err
        end
    elseif chunked then
        local parts = {}
        while true do
            local size_line = sock:receive("*l")
            local size = size_line and tonumber(size_line:match("^%x+"), 16)
            if not size then
                sock:close()
                return nil, "bad chunk"
            end
            if size == 0 then
                sock:receive("*l")
                break
            end
            local part
            part, err = sock:receive(size)
            if not part then
                sock:close()
                return nil, err
            end
            parts[#parts + 1] = part
            sock:receive("*l")
        end
        body = table.concat(parts)
    elseif not length then
        body = sock:receive("*a") or ""
        close = true
    end
    if close then
        sock:close()
    else
        sock:setkeepalive(KEEPALIVE_IDLE_MS, 1)
    end
    return status, body
end

-- One GET of the health path; true when it answers 200.
local function probe(p)
    local status, err = call(p, "GET", conf.health_path)
    if not status then
        return false, err
    end
    return status == 200, "status " .. tostring(status)
end

-- LoRA adapters, in a group with `lora`: the balancer keeps the adapters each replica has loaded equal to
-- its group's, through vLLM's runtime endpoints (`VLLM_ALLOW_RUNTIME_LORA_UPDATING`), which the front door
-- never forwards. A replica is checked once it passes /health, so a replica that restarted, or joined,
-- gets its group's adapters before it is back in service; then again every LORA_CHECK_SECONDS, and at once
-- after a reload that changed its group's adapters: an adapter added or removed by `pulumi up` is loaded
-- or unloaded within seconds, and no replica restarts.
local function lora_upkeep(p, group)
    local checked_key = "lora:checked:" .. p.address
    if dict:get(checked_key) == group.lora_signature or not dict:add("lora:busy:" .. p.address, true, LORA_TIMEOUT_MS / 1000 + 5) then
        return
    end
    local auth = { authorization = replica_authorization }
    local status, body = call(p, "GET", "/v1/models", auth)
    local listed = status == 200 and cjson.decode(body)
    if type(listed) ~= "table" or type(listed.data) ~= "table" then
        ngx.log(ngx.WARN, "vllm-nginx: ", p.name, " (", p.address, ") did not list its adapters (", tostring(status), "): tried again at the next check")
        dict:delete("lora:busy:" .. p.address)
        return
    end
    local have = {}
    for _, card in ipairs(listed.data) do
        if type(card) == "table" and type(card.parent) == "string" then
            have[card.id] = card.root
        end
    end
    local loaded, complete = {}, true
    for name, source in pairs(group.lora) do
        if have[name] == source then
            loaded[#loaded + 1] = name
        else
            local request = cjson.encode({ lora_name = name, lora_path = source, load_inplace = have[name] ~= nil })
            local answer, why = call(p, "POST", "/v1/load_lora_adapter", { authorization = replica_authorization, body = request, timeout_ms = LORA_TIMEOUT_MS })
            if answer == 200 then
                loaded[#loaded + 1] = name
                ngx.log(ngx.NOTICE, "vllm-nginx: ", p.name, " (", p.address, ") loaded the adapter ", name, " from ", source)
            else
                complete = false
                ngx.log(ngx.ERR, "vllm-nginx: ", p.name, " (", p.address, ") could not load the adapter ", name, " from ", source, ": ", tostring(answer or why), " ", answer and why or "")
            end
        end
    end
    for name in pairs(have) do
        if group.lora[name] == nil then
            local answer, why = call(p, "POST", "/v1/unload_lora_adapter", { authorization = replica_authorization, body = cjson.encode({ lora_name = name }) })
            if answer == 200 or answer == 404 then
                ngx.log(ngx.NOTICE, "vllm-nginx: ", p.name, " (", p.address, ") unloaded the adapter ", name, ", which its group no longer serves")
            else
                complete = false
                ngx.log(ngx.ERR, "vllm-nginx: ", p.name, " (", p.address, ") could not unload the adapter ", name, ": ", tostring(answer or why), " ", answer and why or "")
            end
        end
    end
    table.sort(loaded)
    dict:set("lora:loaded:" .. p.address, table.concat(loaded, ","))
    -- After a failure (a source that does not load), tried again later, not at every probe.
    dict:set(checked_key, group.lora_signature, complete and LORA_CHECK_SECONDS or LORA_RETRY_SECONDS)
    dict:delete("lora:busy:" .. p.address)
end

local function check(p)
    local ok, why = probe(p)
    local down_key = "hc:down:" .. p.address
    if ok then
        local group = groups_by_name[p.group]
        if group and group.lora then
            lora_upkeep(p, group)
        end
        dict:set("hc:fails:" .. p.address, 0)
        dict:set("hc:slow:" .. p.address, 0)
        local passes = dict:incr("hc:passes:" .. p.address, 1, 0)
        if dict:get(down_key) and passes >= HEALTH_RISE then
            dict:delete(down_key)
            ngx.log(ngx.WARN, "vllm-nginx: ", p.name, " (", p.address, ") passes ", conf.health_path, " again: back in service")
        end
    else
        -- Checked again once it answers: a replica that restarted has lost the adapters loaded at run time.
        dict:delete("lora:checked:" .. p.address)
        dict:set("hc:passes:" .. p.address, 0)
        local fails, limit
        if why == "timeout" then
            fails, limit = dict:incr("hc:slow:" .. p.address, 1, 0), HEALTH_SLOW_FALL
            why = "no answer within " .. conf.health_timeout_ms .. " ms, " .. fails .. " times in a row"
        else
            fails, limit = dict:incr("hc:fails:" .. p.address, 1, 0), HEALTH_FALL
        end
        if not dict:get(down_key) and fails >= limit then
            dict:set(down_key, true)
            ngx.log(ngx.WARN, "vllm-nginx: ", p.name, " (", p.address, ") fails ", conf.health_path, " (", tostring(why), "): no new requests until it passes again")
        end
    end
    dict:delete("hc:probing:" .. p.address)
end

local function check_all(premature)
    if premature or ngx.worker.exiting() then
        return
    end
    -- One worker per interval probes every replica; the others find the lock taken.
    if not dict:add("hc:lock", true, conf.health_interval * 0.8) then
        return
    end
    -- Replicas out of rotation are not probed: a deploy admits one only once its /health answers.
    -- A replica whose last probe is still waiting for its answer is not probed again: one late answer is
    -- one slow probe, not several.
    local threads = {}
    for _, p in ipairs(peers) do
        if not p.in_rotation then
            -- Whatever comes back at this address (a new container) is checked afresh.
            dict:delete("lora:checked:" .. p.address)
            dict:delete("lora:loaded:" .. p.address)
        end
        if p.in_rotation and dict:add("hc:probing:" .. p.address, true, conf.health_timeout_ms / 1000 + HEALTH_CONNECT_TIMEOUT_MS / 1000 + 1) then
            threads[#threads + 1] = ngx.thread.spawn(check, p)
        end
    end
    for _, t in ipairs(threads) do
        ngx.thread.wait(t)
    end
end

-- A group of the config, with its settings (a fleet of one group has them at the top level), its
-- replicas and its ring. `index` numbers groups for the shared dict's keys.
local function new_group(spec, index)
    local name = spec.name or ""
    local group = {
        name = name,
        method = spec.method or conf.method,
        session_var = "http_" .. (spec.session_header or conf.session_header):lower():gsub("-", "_"),
        load_bound = spec.load_bound or conf.load_bound,
        models = spec.models or {},
        serves = {},
        adapters = {},
        peers = {},
        -- The legacy keys of a fleet of one group, so that adding groups keeps its counts across a reload.
        rr = index == 1 and name == "" and "rr" or "rr:" .. name,
        pop = name == "" and "pop:" or "pop:" .. name .. ":",
    }
    for _, entry in ipairs(group.models) do
        group.serves[entry.id] = true
        if entry.parent then
            group.adapters[entry.id] = true
        end
    end
    if spec.lora then
        -- The adapters its replicas keep loaded (name -> source), and a signature that changes with them.
        group.lora = {}
        local signature = {}
        for _, entry in ipairs(group.models) do
            if entry.parent then
                group.lora[entry.id] = entry.root
                signature[#signature + 1] = entry.id .. "=" .. entry.root
            end
        end
        table.sort(signature)
        group.lora_signature = table.concat(signature, ",")
    end
    return group
end

-- In nginx's master, at every (re)load: reads the replicas' Authorization (`default "Bearer KEY";`, the edge's
-- map file) for the adapters' upkeep. options: { replica_authorization_file }.
function M.init(options)
    replica_authorization = nil
    local file = options.replica_authorization_file and io.open(options.replica_authorization_file, "r")
    if file then
        local text = file:read("*a") or ""
        file:close()
        replica_authorization = text:match('default%s+"(Bearer [^"]+)"')
    end
end

-- config: { method, session_header, load_bound, max_fails, fail_timeout, health_interval,
-- health_timeout_ms, health_path, peers = { { name, address, out, group } }, groups }, where `out` is
-- "" for a replica in rotation (the rotation fills it in, as it fills in nginx's `down`). `groups`, with
-- model groups only: { { name, method, session_header, load_bound, lora, models = { { id, root, parent } } } },
-- each peer naming its group; requests are then routed by their body's `model`.
function M.start(config)
    conf = config
    peers, in_rotation_by_name, groups, group_by_model, groups_by_name = {}, {}, {}, {}, {}
    by_model = config.groups ~= nil
    for i, spec in ipairs(config.groups or { {} }) do
        local group = new_group(spec, i)
        groups[i] = group
        groups_by_name[group.name] = group
        for _, entry in ipairs(group.models) do
            group_by_model[entry.id] = group
        end
    end
    local aliases = {}
    for _, group in ipairs(groups) do
        for _, entry in ipairs(group.models) do
            if not entry.parent then
                aliases[#aliases + 1] = entry.id
            end
        end
    end
    valid_aliases = table.concat(aliases, ", ")
    client_models = {}
    for client, models in pairs(config.client_models or {}) do
        client_models[client] = {}
        for _, model in ipairs(models) do
            client_models[client][model] = true
        end
    end
    for _, spec in ipairs(config.peers) do
        in_rotation_by_name[spec.name] = spec.out == ""
        local host, port = spec.address:match("^%[?(.-)%]?:(%d+)$")
        local group = groups_by_name[spec.group or ""] or groups[1]
        local p = { name = spec.name, address = spec.address, host = host, port = tonumber(port), in_rotation = spec.out == "", group = group.name }
        peers[#peers + 1] = p
        group.peers[#group.peers + 1] = p
    end
    local members = {}
    for _, group in ipairs(groups) do
        build_ring(group)
        local in_group = 0
        for _, p in ipairs(group.peers) do
            if p.in_rotation then
                in_group = in_group + 1
            end
        end
        group.rotation_size = math.max(1, in_group)
    end
    for _, p in ipairs(peers) do
        if p.in_rotation then
            members[#members + 1] = p.name .. "@" .. p.address
        end
    end
    own_rotation = table.concat(members, " ")
    dict:set("rotation", own_rotation)
    math.randomseed(ngx.now() * 1000 + ngx.worker.pid())
    if conf.health_interval > 0 then
        local ok, err = ngx.timer.every(conf.health_interval, check_all)
        if not ok then
            ngx.log(ngx.ERR, "vllm-nginx: cannot start health checks: ", err)
        end
    end
end

function M.status()
    local out = {}
    for _, p in ipairs(peers) do
        out[#out + 1] = {
            name = p.name,
            address = p.address,
            in_rotation = p.in_rotation,
            healthy = healthy(p),
            failing = banned(p),
            in_flight = load_of(p),
            group = by_model and p.group or nil,
            adapters = groups_by_name[p.group] and groups_by_name[p.group].lora and dict:get("lora:loaded:" .. p.address) or nil,
        }
    end
    local by_group
    if by_model then
        by_group = {}
        for _, group in ipairs(groups) do
            by_group[#by_group + 1] = { name = group.name, method = group.method }
        end
    end
    ngx.header["Content-Type"] = "application/json"
    ngx.say(cjson.encode({ method = conf.method, replicas = out, groups = by_group }))
end

return M
